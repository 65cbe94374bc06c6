"""Welcome messages: one per welcome code, sent within the 20 s the code lives (doc path/92599).

The welcome code is the idempotency key. It is recorded (status ``sending``) in its own committed
transaction *before* WeCom is called, so a re-delivered callback, a second worker or a retry after a
crash finds it: a finished record is never sent again, and an unfinished one is safe to retry because
WeCom answers 41051 to a code already used.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.extensions import db
from bot.models import Channel, Staff, WelcomeMessage, WelcomeSend, WelcomeStatus
from bot.models._time import utcnow
from bot.services.channels import render, variables
from bot.services.clients import contact_api
from bot.wecom.errors import WeComError, WelcomeAlreadySent, WelcomeBeingSent, WelcomeCodeInvalid

log = logging.getLogger(__name__)

FINAL = (WelcomeStatus.sent, WelcomeStatus.already_sent, WelcomeStatus.expired, WelcomeStatus.no_message)
#: waits before re-trying a 41096 ("another app is sending"), well inside the code's 20 s
BUSY_RETRIES = (0.5, 1.0, 2.0)


def choose_variant(channel: Channel, rng: random.Random | None = None) -> WelcomeMessage | None:
    if not channel.welcomes:
        return None
    chooser = rng or random.SystemRandom()
    return chooser.choices(channel.welcomes, weights=[w.weight for w in channel.welcomes])[0]


def _claim(code: str, values: dict[str, Any]) -> WelcomeStatus | None:
    """Record the code before the call; None if this caller may send, else the status already reached."""
    table = WelcomeSend.__table__
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    with db.engine.begin() as conn:
        created = conn.execute(
            insert(table)
            .values(welcome_code=code, status=WelcomeStatus.sending.value, attempts=0, created_at=utcnow(), **values)
            .on_conflict_do_nothing(index_elements=["welcome_code"])
            .returning(table.c.id)
        ).first()
        if created is not None:
            return None
        status = conn.execute(select(table.c.status).where(table.c.welcome_code == code)).scalar_one()
    status = WelcomeStatus(status)
    return status if status in FINAL else None


def _finish(code: str, status: WelcomeStatus, *, errcode: int | None = None, variant_id: int | None = None) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(WelcomeSend.__table__)
            .where(WelcomeSend.__table__.c.welcome_code == code)
            .values(
                status=status.value,
                errcode=errcode,
                variant_id=variant_id,
                attempts=WelcomeSend.__table__.c.attempts + 1,
                sent_at=utcnow() if status == WelcomeStatus.sent else None,
            )
        )


def send_welcome(
    code: str,
    external_userid: str,
    userid: str,
    channel: Channel | None,
    *,
    customer_name: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[WelcomeStatus, int | None]:
    """Send the channel's welcome for ``code`` at most once; returns (status, variant id).

    Writes only through its own short transactions and reads through the session: called before the
    caller's session writes anything (on SQLite a session holding the write lock would block it).
    """
    values = {
        "channel_id": channel.id if channel else None,
        "external_userid": external_userid,
        "staff_userid": userid,
    }
    done = _claim(code, values)
    if done is not None:
        log.info("welcome code already handled (%s); not sending again", done.value)
        return done, None
    variant = choose_variant(channel) if channel is not None and channel.active else None
    if variant is None:
        _finish(code, WelcomeStatus.no_message)
        return WelcomeStatus.no_message, None
    staff = db.session.scalar(select(Staff).where(Staff.userid == userid))
    payload: dict[str, Any] = {"welcome_code": code}
    text = render(variant.text, variables(customer_name, staff))
    if text:
        payload["text"] = {"content": text}
    if variant.attachments:
        payload["attachments"] = variant.attachments
    for attempt in range(len(BUSY_RETRIES) + 1):
        try:
            contact_api().send_welcome_msg(payload)
        except WelcomeBeingSent:
            if attempt == len(BUSY_RETRIES):
                _finish(code, WelcomeStatus.failed, errcode=41096, variant_id=variant.id)
                return WelcomeStatus.failed, variant.id
            sleep(BUSY_RETRIES[attempt])
            continue
        except WelcomeAlreadySent:
            _finish(code, WelcomeStatus.already_sent, errcode=41051, variant_id=variant.id)
            return WelcomeStatus.already_sent, variant.id
        except WelcomeCodeInvalid:
            _finish(code, WelcomeStatus.expired, errcode=41050, variant_id=variant.id)
            return WelcomeStatus.expired, variant.id
        except WeComError as exc:
            _finish(code, WelcomeStatus.failed, errcode=exc.errcode, variant_id=variant.id)
            raise  # the event is retried; the code may still be alive
        _finish(code, WelcomeStatus.sent, variant_id=variant.id)
        return WelcomeStatus.sent, variant.id
    raise AssertionError("unreachable")
