"""Customers and their follow relations, kept as WeCom reports them."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, insert, literal, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bot.extensions import db
from bot.models import Customer, CustomerEvent, FollowRelation, FollowStatus, FollowTag, Staff
from bot.models._time import from_epoch, utcnow
from bot.services import corp_time
from bot.services.callbacks import readahead
from bot.services.clients import contact_api, settings
from bot.services.customers import announcements, batch
from bot.services.rows import get_or_insert_created, insert_or_get_created
from bot.services.signals import customer_seen

log = logging.getLogger(__name__)

#: Timeline kinds that count as an interaction (what "dormant" is measured from): a member added the
#: customer, a member edited them in WeCom (remark, description or tags), a welcome message reached them,
#: a mass or lifecycle message reached them (the member confirmed it and WeCom reports it sent), they opened a
#: radar link (雷达链接). Siyu's own writes (tags a rule or a job put on, a sync, a loss) are not interactions.
INTERACTIONS = frozenset(
    {"added", "edited", "welcome_sent", "send_delivered", "link_opened", "moment_liked", "moment_commented"}
)


#: the most objects a session may hold for ``_known`` to look through them
KNOWN_SCAN = 200


def _known(external_userid: str) -> Customer | None:
    """The customer if this session already holds them (read or written earlier in the unit of work): an
    event's handler asks for its customer several times (a takeover check, the upsert), a round trip each."""
    held = db.session.identity_map
    if len(held) > KNOWN_SCAN:  # a long unit of work (a bulk job): a query is cheaper than the scan
        return None
    for obj in list(held.values()):
        if isinstance(obj, Customer) and obj.external_userid == external_userid:
            return obj
    return None


#: session.info key: (the transaction, the external_userids it found no customer for)
ABSENT = "siyu.customers.absent"


def _absent() -> set[str]:
    """The customers this transaction looked for and found missing: their insert need not look again."""
    transaction = db.session().get_transaction()
    held = db.session.info.get(ABSENT)
    if held is None or held[0] is not transaction:
        held = db.session.info[ABSENT] = (transaction, set())
    absent: set[str] = held[1]
    return absent


def find_customer(external_userid: str) -> Customer | None:
    named = batch.named_customers()
    if named is not None and external_userid in named:
        return named[external_userid]
    known = _known(external_userid)
    if known is not None:
        return known
    found = db.session.scalar(select(Customer).where(Customer.external_userid == external_userid))
    if found is None:
        _absent().add(external_userid)
    return found


def added_within(first: date | None, last: date | None) -> list[ColumnElement[bool]]:
    """Conditions on a follow relation: added on ``first`` or later, on ``last`` or earlier (whole days; a
    bound left out is open). The dates are within ``corp_time.in_range``: the front doors refuse others."""
    conditions = []
    if first is not None:
        conditions.append(FollowRelation.added_at >= datetime.combine(first, datetime.min.time()))
    if last is not None:
        conditions.append(FollowRelation.added_at < datetime.combine(last, datetime.min.time()) + timedelta(days=1))
    return conditions


def find_follow(external_userid: str, userid: str) -> FollowRelation | None:
    """The relation of ``userid`` to the customer, if Siyu knows it."""
    return db.session.scalar(
        select(FollowRelation)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(Customer.external_userid == external_userid, Staff.userid == userid)
    )


def record_relation(external_userid: str, userid: str, data: dict[str, Any]) -> FollowRelation:
    """The customer upserted from an externalcontact/get answer, and ``userid``'s relation to them; flushes."""
    customer, _ = _sync_customer(external_userid, data)
    return _follow(customer, userid)


def _customer(external_userid: str, **values: Any) -> Customer:
    return _customer_created(external_userid, **values)[0]


def _customer_created(external_userid: str, **values: Any) -> tuple[Customer, bool]:
    """The customer's row (inserted with ``values`` if new: one statement, not an insert and an update), and
    whether this call inserted it."""
    keys = {"external_userid": external_userid}
    named = batch.named_customers()
    if named is not None and external_userid in named:
        held = named[external_userid]
        if held is not None:
            return held, False
        # not there when the batch began: insert at once (one inserted by another worker since is found then)
        inserted, created = insert_or_get_created(Customer, keys, **values)
        named[external_userid] = inserted
        return inserted, created
    known = _known(external_userid)
    if known is not None:
        return known, False
    if external_userid in _absent():  # looked for already in this transaction: insert at once
        return insert_or_get_created(Customer, keys, **values)
    return get_or_insert_created(Customer, keys, **values)


def _follow(customer: Customer, userid: str, **values: Any) -> FollowRelation:
    return _follow_created(customer, userid, **values)[0]


def _follow_created(
    customer: Customer, userid: str, *, customer_new: bool = False, **values: Any
) -> tuple[FollowRelation, bool]:
    """``customer_new``: the customer was inserted in this transaction, so none of their relations exist yet."""
    staff = batch.staff(userid)
    keys = {"customer_id": customer.id, "staff_id": staff.id}
    follow, created = (insert_or_get_created if customer_new else get_or_insert_created)(FollowRelation, keys, **values)
    # The relation is the customer's and the member's by its key: spare the queries that would load what is
    # known here (the member's row is only held weakly by the session: it would be read again).
    set_committed_value(follow, "customer", customer)
    set_committed_value(follow, "staff", staff)
    if created:
        set_committed_value(follow, "tags", [])  # a new relation has none
    return follow, created


def sync_customer(external_userid: str) -> Customer:
    """Re-read one customer from externalcontact/get (doc path/92114) and upsert them; flushes."""
    return _sync_customer(external_userid)[0]


def fetch_customer(external_userid: str) -> dict[str, Any]:
    """externalcontact/get (doc path/92114): the customer and every follower, as WeCom has them — the
    answer read ahead for the batch of events being processed, if there is one."""
    key, fetch = customer_read(external_userid)
    answer: dict[str, Any] = readahead.read(key, fetch)
    return answer


def customer_read(external_userid: str) -> readahead.Read:
    """Reading one customer from WeCom (externalcontact/get), to be made ahead for a batch of events."""
    api = contact_api()  # resolved here, in the app context: the read may run in another thread
    return ("externalcontact/get", external_userid), lambda: api.get_external_contact(external_userid)


def _sync_customer(
    external_userid: str, data: dict[str, Any] | None = None, seen_at: datetime | None = None
) -> tuple[Customer, dict[str, FollowRelation]]:
    """The upserted customer, and the relations of the members WeCom lists as following them. ``seen_at``:
    the interaction the caller records next (an add), written with a new customer's row rather than after."""
    data = data if data is not None else fetch_customer(external_userid)
    contact = data.get("external_contact", {})
    values = {
        "name": contact.get("name", "") or "",
        "avatar": contact.get("avatar", "") or "",
        "type": int(contact.get("type", 1) or 1),
        "gender": int(contact.get("gender", 0) or 0),
        "unionid": contact.get("unionid") or None,
        "corp_name": contact.get("corp_name", "") or "",
    }
    customer, created = _customer_created(
        external_userid, **values, **({"last_interaction_at": seen_at} if seen_at is not None else {})
    )
    _assign(customer, values)  # a customer known before: what changed (nothing, for a new one)
    db.session.flush()
    follows: dict[str, FollowRelation] = {}
    for item in data.get("follow_user", []):
        if customer.birthday is None:
            found = birthday_from_text(item.get("remark", "") or "") or birthday_from_text(
                item.get("description") or ""
            )
            if found is not None:
                customer.birthday = found
                record_event(customer, "birthday_found", item["userid"], found.isoformat())
        follow, follow_created = _follow_created(customer, item["userid"], customer_new=created, **_listed(item))
        follows[item["userid"]] = follow
        # A relation already on record that changed is news to the brand's systems; a new one is an add.
        known = not follow_created and follow.added_at is not None
        profile_before = (follow.remark, follow.description)
        _assign(follow, {"remark": item.get("remark", "") or "", "description": item.get("description", "") or ""})
        if known:
            fields = [
                f
                for f, a, b in zip(
                    ("remark", "description"), profile_before, (follow.remark, follow.description), strict=True
                )
                if a != b
            ]
            announcements.profile_changed(customer, item["userid"], fields)
        _assign(
            follow,
            {
                "add_way": int(item.get("add_way", 0) or 0),
                "oper_userid": item.get("oper_userid", "") or "",
                "state": item.get("state", "") or follow.state or "",
                "added_at": from_epoch(item.get("createtime")) or follow.added_at,
            },
        )
        # WeCom keeps listing a relation the customer deleted (it is one-sided from then on): only a new
        # add brings it back. Listed again after the member deleted the customer, or once a skip-verify
        # add is confirmed, it is active.
        if follow.status in (FollowStatus.pending, FollowStatus.deleted_by_staff):
            _reactivate(follow)
        tags_before = announcements.corp_tags(follow.tags)
        before = set(tags_before)
        if not follow.tags and not item.get("tags"):
            continue  # no tags before or now (a new relation, mostly): nothing to write or announce
        follow.tags = [
            FollowTag(
                tag_id=t.get("tag_id") or None,
                group_name=t.get("group_name", "") or "",
                tag_name=t.get("tag_name", "") or "",
                type=int(t.get("type", 1) or 1),
            )
            for t in item.get("tags", [])
        ]
        # "A tag was added" is a trigger of lifecycle rules: one timeline entry per new tag on the relation.
        for ft in follow.tags:
            if ft.tag_id and ft.tag_id not in before:
                record_event(customer, "tag_added", item["userid"], ft.tag_id)
        if known:
            announcements.tags_changed(follow, tags_before)
    db.session.flush()
    mobiles = [m for item in data.get("follow_user", []) for m in item.get("remark_mobiles") or []]
    customer_seen.send(None, customer=customer, mobiles=mobiles, complete=True, new=created)
    return customer, follows


def _assign(row: Any, values: dict[str, Any]) -> None:
    """Set the attributes of ``values`` that differ: a row set to what it holds is not left to the flush to
    compare (an add mirrors a new customer and relation with the values they were just inserted with)."""
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    """What a relation new to Siyu is inserted with from its member's entry in externalcontact/get (the rest —
    status, tags, a profile change — is settled as for a relation known before)."""
    return {
        "remark": item.get("remark", "") or "",
        "description": item.get("description", "") or "",
        "add_way": int(item.get("add_way", 0) or 0),
        "oper_userid": item.get("oper_userid", "") or "",
        "state": item.get("state", "") or "",
        "added_at": from_epoch(item.get("createtime")),
    }


#: the year stored for a birthday written without one (a leap year, so that 29 February is a date)
NO_YEAR = 1904


def birthday_from_text(text: str) -> date | None:
    """A birthday written in a remark or description, by the corp's pattern (SIYU_BIRTHDAY_PATTERN)."""
    if not text:
        return None
    found = re.search(settings().birthday_pattern, text)
    if found is None:
        return None
    parts = found.groupdict()
    try:
        return date(int(parts.get("year") or NO_YEAR), int(parts["month"]), int(parts["day"]))
    except (TypeError, ValueError):
        return None


def _reactivate(follow: FollowRelation) -> None:
    follow.status = FollowStatus.active
    follow.lost_at = None
    follow.lost_reason = None


def record_customer_added(
    external_userid: str, userid: str, state: str, *, confirmed: bool, data: dict[str, Any] | None = None
) -> FollowRelation:
    """add_external_contact / add_half_external_contact: upsert from WeCom, keep the event's state.

    Returns the follow relation (its ``customer`` is the upserted customer)."""
    now = utcnow()
    customer, listed = _sync_customer(external_userid, data, seen_at=now if confirmed else None)
    follow = listed.get(userid) or _follow(customer, userid)
    if confirmed:
        _reactivate(follow)  # an add after a loss is a comeback
    if not follow.state and state:
        follow.state = state
    if follow.added_at is None:
        follow.added_at = utcnow()
    if not confirmed and userid not in listed:
        # A skip-verify add the member has not confirmed yet: WeCom does not list the relation.
        follow.status = FollowStatus.pending
    # flushed with the handler's next write (the welcome's entry): one round trip for both
    record_event(customer, "added" if confirmed else "half_added", userid, state, flush=False, at=now)
    return follow


def record_follow_lost(external_userid: str, userid: str, status: FollowStatus, reason: str) -> FollowRelation:
    """del_external_contact / del_follow_user: the relation ends; the customer and history stay."""
    customer = _customer(external_userid)
    follow = _follow(customer, userid)
    follow.status = status
    follow.lost_at = utcnow()
    follow.lost_reason = reason
    record_event(customer, status.value, userid, reason)
    announcements.lost(follow)
    return follow


def record_transfer_failed(external_userid: str, userid: str, reason: str) -> None:
    """transfer_fail (WeCom doc 92130): ``userid`` is the takeover member, who never had the customer —
    no relation is made for them; the timeline says why the transfer failed."""
    customer = find_customer(external_userid)
    if customer is None:
        return
    follow = find_follow(external_userid, userid)
    if follow is not None:
        follow.lost_reason = f"transfer_fail: {reason}"
    record_event(customer, "transfer_failed", userid, reason)


def record_event(
    customer: Customer,
    kind: str,
    staff_userid: str = "",
    detail: str = "",
    flush: bool = True,
    at: datetime | None = None,
) -> None:
    """Add one entry to the customer's timeline (at ``at``, else now); flushes with the caller's transaction
    (``flush=False``: the caller adding many flushes them together, in one round trip). Within a batch of
    events the entry goes in with the batch's others (``batch.add_entry``), before anything reads them."""
    at = at or utcnow()
    if kind in INTERACTIONS:
        customer.last_interaction_at = at
    if batch.add_entry(customer, at, kind, staff_userid, detail[:512]):
        return  # inserted with the batch's others, before anything reads the timeline
    event = CustomerEvent(customer=customer, kind=kind, staff_userid=staff_userid, detail=detail[:512])
    event.at = at
    db.session.add(event)
    if flush:
        db.session.flush()


def record_many(customer_ids: Any, kind: str, staff_userid: str = "", detail: str = "") -> None:
    """The same timeline entry for every customer of ``customer_ids`` (a select of ids), in two statements."""
    now = utcnow()
    chosen = select(Customer.id, literal(now), literal(kind), literal(staff_userid), literal(detail[:512])).where(
        Customer.id.in_(customer_ids)
    )
    db.session.execute(
        insert(CustomerEvent).from_select(["customer_id", "at", "kind", "staff_userid", "detail"], chosen)
    )
    if kind in INTERACTIONS:
        db.session.execute(update(Customer).where(Customer.id.in_(customer_ids)).values(last_interaction_at=now))


def update_profile(customer: Customer, *, birthday: date | None, notes: str, staff_userid: str = "") -> None:
    """Birthday and notes as edited in the panel, or by the member ``staff_userid`` in the sidebar; flushes."""
    changed = []
    if customer.birthday != birthday:
        changed.append("birthday")
    if customer.notes != notes:
        changed.append("notes")
    customer.birthday = birthday
    customer.notes = notes
    if changed:
        record_event(customer, "profile_edited", staff_userid, detail=",".join(changed))
        announcements.profile_changed(customer, staff_userid, changed)
    db.session.flush()


def record_customer_edited(external_userid: str, userid: str) -> Customer:
    """edit_external_contact: the member changed remark, description or tags; re-read from WeCom."""
    customer = sync_customer(external_userid)
    record_event(customer, "edited", userid)
    return customer


def find_followed(staff: Staff, query: str, limit: int = 5) -> list[tuple[Customer, FollowRelation]]:
    """The member's current customers whose name or the member's remark contains ``query``."""
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")[:64] + "%"
    rows = db.session.execute(
        select(Customer, FollowRelation)
        .join(FollowRelation, FollowRelation.customer_id == Customer.id)
        .where(
            FollowRelation.staff_id == staff.id,
            FollowRelation.status == FollowStatus.active,
            or_(Customer.name.ilike(pattern, escape="\\"), FollowRelation.remark.ilike(pattern, escape="\\")),
        )
        .order_by(FollowRelation.added_at.desc())
        .limit(limit)
    ).all()
    return [(c, f) for c, f in rows]


def summary(customer: Customer, follow: FollowRelation) -> str:
    """A few lines about a customer, for the member who follows them (the assistant's 「客户」)."""
    lines = [customer.name + (f"（备注：{follow.remark}）" if follow.remark and follow.remark != customer.name else "")]
    if follow.added_at:
        added = corp_time.local(follow.added_at)
        channel = f"，来自「{follow.channel.name}」" if follow.channel else ""
        lines.append(f"添加于 {added:%Y-%m-%d}{channel}")
    tags = [t.tag_name for t in follow.tags if t.tag_name]
    if tags:
        lines.append("标签：" + "、".join(tags[:10]))
    if customer.birthday:
        lines.append(f"生日：{customer.birthday:%m-%d}")
    if customer.last_interaction_at:
        last = corp_time.local(customer.last_interaction_at)
        lines.append(f"最近互动：{last:%Y-%m-%d}")
    if customer.notes:
        lines.append("备注：" + customer.notes[:80])
    return "\n".join(lines)


MAX_IMPORT = 100_000


def parse_birthday(raw: str) -> date | None:
    """ "YYYY-MM-DD", "YYYY/MM/DD" or "MM-DD" (no year: kept with NO_YEAR); None if it is not a date."""
    text = raw.strip().replace("/", "-").replace(".", "-")
    parts = text.split("-")
    try:
        if len(parts) == 3:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
        if len(parts) == 2:
            return date(NO_YEAR, int(parts[0]), int(parts[1]))
    except ValueError:
        return None
    return None


def import_birthdays(rows: list[tuple[str, str]], scope: Any) -> dict[str, Any]:
    """Birthdays from (external_userid, birthday) rows, for customers within ``scope`` (a customer
    condition). Returns counts and the first 100 problems by line (1 = the first row given). Flushes."""
    if len(rows) > MAX_IMPORT:
        raise ValueError(f"at most {MAX_IMPORT} rows")
    wanted: dict[str, date] = {}
    problems: list[dict[str, Any]] = []
    for line, (external_userid, raw) in enumerate(rows, 1):
        birthday = parse_birthday(raw)
        if not external_userid or birthday is None or birthday > date.today():
            problems.append({"line": line, "external_userid": external_userid[:64], "reason": "invalid birthday"})
            continue
        wanted[external_userid] = birthday
    ids = list(wanted)
    updated = 0
    for i in range(0, len(ids), 1000):
        batch = ids[i : i + 1000]
        for customer in db.session.scalars(select(Customer).where(Customer.external_userid.in_(batch), scope)):
            birthday = wanted.pop(customer.external_userid)
            if customer.birthday != birthday:
                customer.birthday = birthday
                record_event(customer, "birthday_imported", detail=birthday.isoformat())
                updated += 1
    for external_userid in wanted:  # not found, or outside the user's stores
        problems.append({"external_userid": external_userid[:64], "reason": "unknown customer"})
    db.session.flush()
    return {
        "rows": len(rows),
        "updated": updated,
        "unchanged": len(ids) - updated - len(wanted),
        "problems": len(problems),
        "first_problems": problems[:100],
    }
