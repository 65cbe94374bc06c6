"""Radar opens arriving in a burst (a mass send's customers opening at once): recorded a batch at a time by the
real worker through the real redirect, each (link, customer, day) once, the opener tags given side by side, the
members told in one coalesced app message each; a batch WeCom cannot tag now waits whole and is recorded once
later; alerts a dead sender left calling go out as the same card (dropped by WeCom's duplicate check); the
per-address rate limit counted across web processes through Redis."""

import pytest
from sqlalchemy import func, select, update

from bot.extensions import db, redis_conn
from bot.models import CustomerEvent, FollowRelation, RadarAlert
from bot.services.radar import effects, tokens
from bot.services.radar import opens as radar_opens
from bot.services.radar.noter import LocalRate, OpenNoter
from tests.conftest import customers_of, make_user
from tests.services.library_helpers import member, tag
from tests.services.radar_helpers import WECHAT, opens, quiet_hours, tracked_item

MEMBERS = ["staff0201", "staff0301"]


@pytest.fixture
def burst(app, sim, corp, run_worker):
    """Three customers of each of two members, a tracked link giving VIP; no quiet hours. Yields the
    customers and each one's link token."""
    contacts = customers_of(app, sim, run_worker, MEMBERS, each=3)
    people = list(zip(contacts, [m for m in MEMBERS for _ in range(3)], strict=True))  # (contact, their member)
    admin_id, _ = make_user(app, "radar-admin", "admin")
    with app.app_context():
        item_id = tracked_item(admin_id)
        links = {p.external_userid: tokens.for_customer(item_id, member(m).id, p.external_userid) for p, m in people}
    with quiet_hours(app, 0, 0):
        yield people, links


def _cards(corp, since=0):
    return [m for m in corp.app_messages[since:] if "打开了" in m.get("textcard", {}).get("title", "")]


def _open_all(client, links, times=1):
    for _ in range(times):
        for token in links.values():
            assert client.get(f"/r/{token}", headers={"User-Agent": WECHAT}).status_code == 302


def test_a_burst_is_recorded_once_each_tagged_and_told_in_one_message_per_member(app, client, corp, burst, run_worker):
    people, links = burst
    marks = corp.calls.count("externalcontact/mark_tag")
    _open_all(client, links, times=2)  # every customer reloads once
    run_worker()
    with app.app_context():
        recorded = opens()
        assert len(recorded) == 6 and {o.count for o in recorded} == {2}
        assert {o.visitor for o in recorded} == {f"c:{p.external_userid}" for p, _ in people}
        opened = select(func.count()).where(CustomerEvent.kind == "link_opened")
        assert db.session.scalar(opened.select_from(CustomerEvent)) == 6
        tagged = db.session.scalars(select(FollowRelation).where(FollowRelation.staff_id.is_not(None))).all()
        assert all(tag("VIP") in {t.tag_id for t in f.tags} for f in tagged)  # mirrored at once
        assert set(db.session.scalars(select(RadarAlert.status))) == {"sent"}
        assert db.session.scalar(select(func.count()).select_from(RadarAlert)) == 6
    assert corp.calls.count("externalcontact/mark_tag") - marks == 6
    cards = _cards(corp)
    assert sorted(c["touser"] for c in cards) == MEMBERS  # one message per member, not one per customer
    for card in cards:
        mine = [p for p, m in people if m == card["touser"]]
        assert card["textcard"]["title"] == "3 位客户打开了你发的内容"
        assert all(f"{p.name}《秋季新品》" in card["textcard"]["description"] for p in mine)
        assert len(card["textcard"]["description"].encode()) <= effects.DESCRIPTION_BYTES
        assert card["textcard"]["url"].endswith("admin/library/radar?days=1")
    # the same customers again the same day: reloads, no second tag call, no second message
    _open_all(client, links)
    run_worker()
    with app.app_context():
        assert {o.count for o in opens()} == {3}
    assert corp.calls.count("externalcontact/mark_tag") - marks == 6
    assert len(_cards(corp)) == 2


def test_a_coalesced_message_names_what_fits_and_counts_the_rest(app, corp, burst):
    people, _links = burst
    with app.app_context():
        from bot.models import Customer, LibraryItem

        customer = db.session.scalar(select(Customer).where(Customer.external_userid == people[0][0].external_userid))
        item = db.session.scalar(select(LibraryItem))
        card = effects.card_for([(customer, None, item)] * 40)
    assert card["title"] == "1 位客户打开了你发的内容"
    assert len(card["description"].encode()) <= effects.DESCRIPTION_BYTES
    assert card["description"].endswith(" 等 40 条")
    assert 0 < card["description"].count("《秋季新品》") < 40


def test_a_batch_wecom_cannot_tag_now_waits_whole_and_is_recorded_once_later(app, client, corp, burst, run_worker):
    people, links = burst
    corp.inject("externalcontact/mark_tag", 500)  # WeCom away for one call of the batch
    _open_all(client, links)
    run_worker()
    with app.app_context():
        assert opens() == []  # the batch rolled back whole: no open, no alert, nothing told
        assert db.session.scalar(select(func.count()).select_from(RadarAlert)) == 0
        assert redis_conn.client.llen(radar_opens.PENDING) == 6  # nothing trimmed
    assert _cards(corp) == []
    with app.app_context():
        assert radar_opens.drain() == 6  # the next drain (the 15 s sweep) records the batch
        assert {o.count for o in opens()} == {1}
        assert redis_conn.client.llen(radar_opens.PENDING) == 0
        assert set(db.session.scalars(select(RadarAlert.status))) == {"sent"}
    assert sorted(c["touser"] for c in _cards(corp)) == MEMBERS


def test_alerts_a_dead_sender_left_calling_go_out_as_the_same_message(app, client, corp, burst, run_worker):
    _people, links = burst
    _open_all(client, links)
    run_worker()
    assert len(_cards(corp)) == 2
    with app.app_context():
        # the sender died after WeCom took its messages, before their outcome was committed
        db.session.execute(update(RadarAlert).values(status="calling"))
        db.session.commit()
        assert effects.send_alerts() == 6
        assert set(db.session.scalars(select(RadarAlert.status))) == {"sent"}
    assert len(_cards(corp)) == 2  # the same cards again: WeCom's duplicate check dropped them


def test_the_rate_limit_is_counted_across_web_processes(app):
    """Two web processes (each its own counts and noter) against one Redis: a bot spread over both is held
    back at the limit they see together, a reader opening once costs nothing shared."""
    client = redis_conn.client
    rates = [LocalRate(clock=lambda: 600.0), LocalRate(clock=lambda: 600.0)]
    noters = [OpenNoter(client, "test:opens", "test:wake", lambda: None, rate=r) for r in rates]
    bot, limit = "link:203.0.113.9", 10

    def arrive(n):
        allowed = rates[n].take(bot, limit)
        noters[n].note("{}")
        noters[n].settle()
        return allowed

    assert all(arrive(0) for _ in range(6))  # 6 in the first process
    assert all(arrive(1) for _ in range(4))  # 4 in the second: 10 in all, the limit
    assert not arrive(1)  # the 11th, in the second: over (it learnt the first's 6 from Redis)
    arrive(0)  # the first learns the total with its next round trip (a noter's lag: milliseconds)
    assert not rates[0].take(bot, limit) and not rates[1].take(bot, limit)
    # a reader opening once is counted in its process only
    assert rates[0].take("link:198.51.100.7", limit) and rates[1].take("link:198.51.100.7", limit)
    assert not [k for k in client.scan_iter("siyu:radar:rate:*") if b"198.51.100.7" in k]
