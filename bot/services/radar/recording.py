"""Recording a batch of noted opens at once: a burst after a mass send to a million customers is a million
first opens within minutes, each of which tags its customer and tells a member.

One batch (``opens.BATCH`` noted opens) is one transaction, in four steps:

1. the OAuth codes of the batch are exchanged side by side (``auth/getuserinfo``, WeCom docs 91022/91023), in
   the worker's pool of I/O threads (``callbacks.readahead``), before any row is read;
2. what the batch names is read in a few statements — the items, the sends, the customers with their
   relations and tags, the links (written if missing, in one statement) — and every open is written in one
   ``INSERT … ON CONFLICT DO NOTHING … RETURNING``: the unique key (link, visitor, corp day) returns only the
   opens that are new, so an open recorded by an earlier batch, another worker or a reload in this same
   batch is counted as a reload (``count``), never a second open;
3. the first opens' effects (``effects.opened_many``): their timeline entries and alerts in one flush each,
   and their opener tags with ``mark_tag`` calls made side by side in the pool;
4. one commit.

The calls go through the same WeCom client as any other: the per-API budgets and a 45009 stop are shared
with every process through Redis. A call WeCom cannot take now (45009, the budget spent, WeCom away) rolls
the whole batch back (``TagsLater``): nothing is trimmed from the list and the next drain records it again
(``mark_tag`` adds a tag a customer has as a no-op, so the calls of the rolled-back part are harmless)."""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from bot.extensions import db
from bot.models import Customer, FollowRelation, LibraryItem, MassSend, RadarLink, RadarOpen
from bot.services import corp_time
from bot.services.callbacks import readahead
from bot.services.clients import agent_api
from bot.services.radar import effects, tokens
from bot.services.radar.links import record_links
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

LINK, OAUTH, ANONYMOUS = "link", "oauth", "anonymous"


@dataclass
class Arrival:
    """One noted open, resolved: its link's token, when, who (visitor key, customer), how."""

    token: tokens.Token
    at: datetime
    visitor: str
    via: str
    external: str | None


def _insert(model: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def _openers(entries: list[dict[str, Any]]) -> dict[str, str | None]:
    """The external_userid each OAuth code of the batch names (None: a member, a stranger, a refused code),
    the codes exchanged side by side."""
    codes = list(dict.fromkeys(str(e.get("code") or "") for e in entries if e.get("via") == OAUTH))
    if not codes:
        return {}
    api = agent_api()  # resolved here, in the app context: the calls run in the pool's threads
    reads: list[tuple[Hashable, Any]] = [(("auth/getuserinfo", c), (lambda c=c: api.user_info(c))) for c in codes]
    found: dict[str, str | None] = {}
    with readahead.reading_ahead() as ahead:
        ahead.start(reads)
        for (key, fetch), code in zip(reads, codes, strict=True):
            try:
                info: dict[str, Any] = readahead.read(key, fetch)
            except WeComError as exc:
                log.info("radar: OAuth code refused (%s): an anonymous open", exc.errcode)
                found[code] = None
                continue
            external = info.get("external_userid")
            found[code] = str(external) if external else None
    return found


def _arrivals(entries: list[dict[str, Any]]) -> list[Arrival]:
    """The batch's noted opens whose token is good and whose item (and send) still exists."""
    parsed = [(e, tokens.parse(str(e.get("t") or ""))) for e in entries]
    good = [(e, t) for e, t in parsed if t is not None]
    item_ids = {t.item_id for _, t in good}
    items = set(db.session.scalars(select(LibraryItem.id).where(LibraryItem.id.in_(item_ids)))) if item_ids else set()
    send_ids = {t.send_id for _, t in good if t.send_id is not None}
    sends = set(db.session.scalars(select(MassSend.id).where(MassSend.id.in_(send_ids)))) if send_ids else set()
    openers = _openers([e for e, t in good if t.item_id in items])
    out = []
    for entry, token in good:
        if token.item_id not in items or (token.send_id is not None and token.send_id not in sends):
            continue  # the item (or the send) was deleted since: nothing to count it for
        visitor, via, external = str(entry.get("v") or ""), str(entry.get("via") or ANONYMOUS), token.external_userid
        if via == OAUTH:
            external = openers.get(str(entry.get("code") or ""))
            via = OAUTH if external else ANONYMOUS
        if external:
            visitor = f"c:{external}"
        out.append(Arrival(token, datetime.fromisoformat(str(entry["at"])), visitor[:80], via, external))
    return out


def _customers(externals: set[str]) -> dict[str, Customer]:
    """The customers named, with their relations, members and tags (what the effects read), by external_userid."""
    if not externals:
        return {}
    follows = selectinload(Customer.follows)
    query = (
        select(Customer)
        .where(Customer.external_userid.in_(externals))
        .options(follows.selectinload(FollowRelation.staff), follows.selectinload(FollowRelation.tags))
    )
    return {c.external_userid: c for c in db.session.scalars(query)}


def record_batch(entries: list[dict[str, Any]]) -> int:
    """Record a batch of noted opens (see the module); returns how many were first opens. Flushes; the caller
    commits. Raises ``effects.TagsLater`` when WeCom cannot take the opener tags now."""
    arrivals = _arrivals(entries)
    if not arrivals:
        return 0
    links = record_links([a.token for a in arrivals])
    customers = _customers({a.external for a in arrivals if a.external})
    # the batch's arrivals by open: the first names it, the rest are its reloads
    by_key: dict[tuple[int, str, date], list[Arrival]] = {}
    for a in arrivals:
        by_key.setdefault((links[a.token.key].id, a.visitor, corp_time.local(a.at).date()), []).append(a)
    rows: list[dict[str, Any]] = []
    for (link_id, visitor, day), group in by_key.items():
        first = group[0]
        customer = customers.get(first.external) if first.external else None
        rows.append(
            {
                "link_id": link_id,
                "visitor": visitor,
                "day": day,
                "item_id": first.token.item_id,
                "customer_id": customer.id if customer is not None else None,
                "via": first.via,
                "first_at": first.at,
                "last_at": max(a.at for a in group),
                "count": len(group),
            }
        )
    db.session.flush()
    table = RadarOpen.__table__
    # one statement compiled once and sent for all the rows (SQLAlchemy's "insertmanyvalues"), not a VALUES
    # list compiled afresh for every batch
    new = {
        (r.link_id, r.visitor, r.day): r.id
        for r in db.session.connection().execute(
            _insert(table)
            .on_conflict_do_nothing(index_elements=["link_id", "visitor", "day"])
            .returning(table.c.id, table.c.link_id, table.c.visitor, table.c.day),
            rows,
        )
    }
    seen = [r for r in rows if (r["link_id"], r["visitor"], r["day"]) not in new]
    if seen:  # opened before this batch: these arrivals are reloads
        db.session.execute(
            update(table)
            .where(
                table.c.link_id == bindparam("b_link"),
                table.c.visitor == bindparam("b_visitor"),
                table.c.day == bindparam("b_day"),
            )
            .values(count=table.c.count + bindparam("b_count"), last_at=bindparam("b_at")),
            [
                {"b_link": r["link_id"], "b_visitor": r["visitor"], "b_day": r["day"]}
                | {"b_count": r["count"], "b_at": r["last_at"]}
                for r in seen
            ],
        )
    firsts = []
    for row in rows:
        key: tuple[int, str, date] = (row["link_id"], row["visitor"], row["day"])
        first = by_key[key][0]
        customer = customers.get(first.external) if first.external else None
        if key in new and customer is not None:
            link: RadarLink = links[first.token.key]
            firsts.append(effects.FirstOpen(customer, link, first.via, row["day"], first.at))
    effects.opened_many(firsts)
    return len(new)
