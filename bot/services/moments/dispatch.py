"""Dispatching a moment: its media uploaded for moments, one ``add_moment_task`` call, never twice, then its
asynchronous job followed to the end (WeCom doc 95094, 95098, 93333).

The moment is marked ``called_at`` and committed before ``add_moment_task`` is called; the job id WeCom
answers is committed right after (``claims.on_record``). A worker killed between the two leaves a moment
called but without a job id, and WeCom has no idempotency key to ask with. So a resumed dispatch first
lists the corp's moments created since the call (``get_moment_list``, the corp's own: moments made through
the API name no creator) and adopts the one saying what the moment says (its text and attachments) that
no other moment has recorded; only when there is none was the call lost, and it is made again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import MediaFile, Moment, MomentStatus
from bot.models._time import from_epoch, utcnow
from bot.services import claims
from bot.services.clients import contact_api
from bot.services.moments import compose
from bot.services.radar import links as radar
from bot.services.sends import media
from bot.wecom import WeComClient
from bot.wecom.errors import RateLimited, WeComError, WeComUnavailable

log = logging.getLogger(__name__)

MAX_RATE_WAIT = 60.0
#: how far before the recorded call WeCom's create_time may fall (clock skew)
SKEW = timedelta(minutes=5)
#: polls of get_moment_task_result in one dispatch, and the pause between them (the job takes seconds)
POLLS = 30
POLL_PAUSE = 1.0
#: a job id is valid 24 hours (doc 95094): a job not seen done by then is given up
JOBID_LIFETIME = timedelta(hours=24)
#: 41078 (too many moment tasks in flight; WeCom's limit is not documented): waits of this length, this many
#: times, before the dispatch is left for the next resumption instead of failing
IN_FLIGHT = 41078
IN_FLIGHT_PAUSE = 5.0
IN_FLIGHT_WAITS = 6

Said = tuple[str, tuple[tuple[str, ...], ...]]


def said(moment: Moment) -> Said:
    """What a moment says, comparable with get_moment_list: its text and its attachments' kinds (a link's
    url and title). Media ids are left out: they change with every upload."""
    parts = [
        ("link", radar.moment_url(a, moment.id), str(a["title"])) if a["type"] == "link" else (str(a["type"]),)
        for a in moment.attachments
    ]
    return moment.text.strip(), tuple(parts)


def listed_said(row: dict[str, Any]) -> Said:
    text = str((row.get("text") or {}).get("content") or "").strip()
    if row.get("image"):
        return text, tuple(("image",) for _ in row["image"])
    if row.get("video"):
        return text, (("video",),)
    if row.get("link"):
        link = row["link"]
        return text, (("link", str(link.get("url") or ""), str(link.get("title") or "")),)
    return text, ()


def _epoch(at: datetime) -> int:
    return int(at.replace(tzinfo=UTC).timestamp())


def find_created(moment: Moment, api: WeComClient) -> dict[str, Any] | None:
    """The moment WeCom made for a call whose answer was lost, or None (the call never reached WeCom)."""
    called = moment.called_at or utcnow()
    start = _epoch(called - SKEW)
    end = min(int(time.time()) + 60, start + 30 * 86400 - 1)
    mine = said(moment)
    alike = [row for row in api.list_moments(start, end, filter_type=0) if listed_said(row) == mine]
    ids = [str(row.get("moment_id")) for row in alike]
    recorded = set(db.session.scalars(select(Moment.moment_id).where(Moment.moment_id.in_(ids))))
    for row in sorted(alike, key=lambda r: int(r.get("create_time") or 0)):
        if str(row.get("moment_id")) not in recorded:
            return row
    return None


def _media_id(api: WeComClient, file_id: int | None) -> str:
    kept = db.session.get(MediaFile, file_id) if file_id else None
    if kept is None:
        raise WeComError(40007, f"attachment file {file_id} was deleted", "media/upload_attachment")
    mimetype = media.mimetype(kept)
    return api.upload_attachment(kept.kind, kept.filename, kept.content, mimetype)


def payload(moment: Moment, api: WeComClient, senders: list[str]) -> dict[str, Any]:
    """The add_moment_task body; images, a video and a link's cover uploaded as moment attachments."""
    body: dict[str, Any] = {}
    if moment.text:
        body["text"] = {"content": moment.text}
    attachments = []
    for a in moment.attachments:
        if a["type"] == "link":
            # a tracked library link goes out as the moment's radar link, on record as it goes
            radar.sent_in_moment(a, moment.id)
            url = radar.moment_url(a, moment.id)
            link = {"title": a["title"], "url": url, "media_id": _media_id(api, a["cover_id"])}
            attachments.append({"msgtype": "link", "link": link})
        else:
            attachments.append({"msgtype": a["type"], a["type"]: {"media_id": _media_id(api, a["file_id"])}})
    if attachments:
        body["attachments"] = attachments
    visible: dict[str, Any] = {"sender_list": {"user_list": senders}}
    if moment.tag_ids:
        visible["external_contact_list"] = {"tag_list": list(moment.tag_ids)}
    body["visible_range"] = visible
    return body


def _fail(moment: Moment, reason: str) -> None:
    compose.move(moment, (MomentStatus.dispatching,), MomentStatus.failed, error=reason[:300])


def _call(moment: Moment, api: WeComClient, sleep: Callable[[float], None]) -> bool:
    """Claim, call add_moment_task, record the job id. False if WeCom refused the task (recorded)."""
    senders = compose.asked(moment)
    if not senders:
        _fail(moment, "no member in scope is left to post it")
        return False
    try:
        body = payload(moment, api, senders)
    except WeComError as exc:  # an upload refused: nothing was asked of members
        _fail(moment, f"{exc.errcode}: {exc.errmsg}")
        return False
    waits = 0
    while True:
        with claims.on_record():
            moment.called_at = utcnow()
        try:
            jobid = api.add_moment_task(body)
        except RateLimited as exc:
            with claims.on_record():  # refused before anything was made: not called yet
                moment.called_at = None
            wait = min(max(exc.retry_after, 1.0), MAX_RATE_WAIT)
            log.warning("moment %s waits %.0fs for WeCom's rate limit", moment.id, wait)
            sleep(wait)
            continue
        except WeComUnavailable:
            raise  # no answer: the call stays in doubt, settled when the dispatch resumes
        except WeComError as exc:
            with claims.on_record():
                moment.called_at = None  # refused: nothing was made
                if exc.errcode != IN_FLIGHT:
                    _fail(moment, f"{exc.errcode}: {exc.errmsg}")
                    return False
            waits += 1
            log.info("moment %s waits: WeCom has too many moment tasks in flight", moment.id)
            if waits > IN_FLIGHT_WAITS:  # still dispatching: dispatch_due_moments takes it up again
                log.warning("moment %s: WeCom still has too many tasks in flight", moment.id)
                return False
            sleep(IN_FLIGHT_PAUSE)
            continue
        with claims.on_record():
            moment.jobid = jobid
        return True


def _follow(moment: Moment, api: WeComClient, sleep: Callable[[float], None]) -> None:
    """Poll the job until WeCom says it is done (status 3); record the moment id and what WeCom did not
    know. Left dispatching if it is still running after POLLS (the next dispatch polls on)."""
    for attempt in range(POLLS):
        try:
            answer = api.get_moment_task_result(str(moment.jobid))
        except WeComError as exc:
            if moment.called_at is None or utcnow() - moment.called_at < JOBID_LIFETIME:
                raise  # a refusal while the job id lives: the next dispatch polls again
            _give_up(moment, api, exc)
            return
        if int(answer.get("status") or 0) == 3:
            result = answer.get("result") or {}
            if int(result.get("errcode") or 0) != 0:
                _fail(moment, f"{result.get('errcode')}: {result.get('errmsg', '')}")
                return
            senders = (result.get("invalid_sender_list") or {}).get("user_list") or []
            tags = (result.get("invalid_external_contact_list") or {}).get("tag_list") or []
            compose.move(
                moment,
                (MomentStatus.dispatching,),
                MomentStatus.posted,
                moment_id=str(result["moment_id"]),
                posted_at=utcnow(),
                invalid_senders=list(senders),
                invalid_tags=list(tags),
            )
            return
        if attempt + 1 < POLLS:
            sleep(POLL_PAUSE)
    log.info("moment %s: WeCom's job %s is still running", moment.id, moment.jobid)


def _give_up(moment: Moment, api: WeComClient, exc: WeComError) -> None:
    """The job id expired before Siyu saw the job done: the moment is adopted if WeCom lists it, otherwise
    it failed (the reason on the page; nothing was asked of members that Siyu does not know of)."""
    found = find_created(moment, api)
    if found is not None:
        compose.move(
            moment,
            (MomentStatus.dispatching,),
            MomentStatus.posted,
            moment_id=str(found["moment_id"]),
            posted_at=from_epoch(found.get("create_time")),
        )
        return
    log.warning("moment %s: job %s expired unseen (%s)", moment.id, moment.jobid, exc)
    _fail(moment, f"{exc.errcode}: the job id expired before WeCom reported the task done")


def dispatch(moment: Moment, sleep: Callable[[float], None] = time.sleep) -> Moment:
    """Claim the moment, settle a call in doubt, call add_moment_task at most once, follow its job. Each
    claim and answer is on record as it goes; the end is the caller's to commit."""
    with claims.on_record():
        claimed = compose.move(
            moment,
            (MomentStatus.approved, MomentStatus.dispatching),
            MomentStatus.dispatching,
            heartbeat_at=utcnow(),
            error=None,
        )
    if not claimed:
        return moment
    api = contact_api()
    if moment.jobid is None and moment.called_at is not None:
        found = find_created(moment, api)
        with claims.on_record():
            if found is not None:
                log.warning("moment %s was created in WeCom before a crash; adopting %s", moment.id, found["moment_id"])
                compose.move(
                    moment,
                    (MomentStatus.dispatching,),
                    MomentStatus.posted,
                    moment_id=str(found["moment_id"]),
                    posted_at=from_epoch(found.get("create_time")),
                )
                return moment
            moment.called_at = None  # the call never reached WeCom: it is made now
    if moment.jobid is None and not _call(moment, api, sleep):
        return moment
    _follow(moment, api, sleep)
    return moment
