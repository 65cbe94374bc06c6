"""The public radar redirect (/r/<token>) through Flask's test client, the sandbox playing WeCom's OAuth over
real HTTP, the opens recorded by the real worker: a customer's link and a mass send's (named by OAuth, or
anonymous), reloads, previews and prefetches, tampered tokens, replayed codes, archived and deleted items,
enormous query strings, a bot hammering one link — and what a first open does."""

from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from bot.extensions import db, redis_conn
from bot.models import (
    Customer,
    CustomerEvent,
    FollowRelation,
    LibraryItem,
    RadarAlert,
    RadarLink,
)
from bot.services import corp_time
from bot.services.radar import opens as radar_opens
from bot.services.radar import tokens, visits
from tests.conftest import customers_of, make_user
from tests.services.library_helpers import member, tag
from tests.services.radar_helpers import (
    BROWSER,
    TARGET,
    WECHAT,
    a_send,
    opens,
    quiet_hours,
    through_oauth,
    tracked_item,
)


@pytest.fixture
def shop(app, sim, corp, run_worker):
    """Two customers of staff0201, one of staff0301, a tracked link giving VIP; no quiet hours."""
    people = customers_of(app, sim, run_worker, ["staff0201", "staff0301"])
    admin_id, _ = make_user(app, "radar-admin", "admin")
    with app.app_context():
        item_id = tracked_item(admin_id)
        staff_id = member("staff0201").id
        send_id = a_send(admin_id)
    with quiet_hours(app, 0, 0):
        yield people, item_id, staff_id, send_id


def _customer_token(app, item_id, staff_id, external_userid):
    with app.app_context():
        return tokens.for_customer(item_id, staff_id, external_userid)


def _send_token(app, item_id, staff_id, send_id):
    with app.app_context():
        return tokens.for_send(item_id, staff_id, send_id)


def alerts(corp, since=0):
    return [m for m in corp.app_messages[since:] if "打开了" in m.get("textcard", {}).get("title", "")]


def test_a_customer_opening_their_link_is_told_tagged_and_an_interaction_once_a_day(
    app, client, corp, shop, run_worker
):
    (mine, mine2, _theirs, _t2), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    for _ in range(3):  # a reload is not a second open
        res = client.get(f"/r/{token}", headers={"User-Agent": WECHAT})
        assert res.status_code == 302 and res.headers["Location"] == TARGET
        assert res.headers["Referrer-Policy"] == "same-origin"  # the token is not sent to the target site
    run_worker()
    with app.app_context():
        (opened,) = opens()
        assert opened.via == "link" and opened.count == 3 and opened.visitor == f"c:{mine.external_userid}"
        customer = db.session.scalar(select(Customer).where(Customer.external_userid == mine.external_userid))
        assert opened.customer_id == customer.id
        assert customer.last_interaction_at is not None
        kinds = db.session.scalars(
            select(CustomerEvent.detail).where(
                CustomerEvent.customer_id == customer.id, CustomerEvent.kind == "link_opened"
            )
        ).all()
        assert kinds == [str(item_id)]
        follow = db.session.scalar(
            select(FollowRelation).where(FollowRelation.customer_id == customer.id, FollowRelation.staff_id == staff_id)
        )
        assert tag("VIP") in {t.tag_id for t in follow.tags}  # the mirror, at once
        link = db.session.scalar(select(RadarLink))
        assert (link.kind, link.staff_id, link.external_userid) == ("customer", staff_id, mine.external_userid)
    assert corp.calls.count("externalcontact/mark_tag") == 1
    (alert,) = alerts(corp)
    assert alert["touser"] == "staff0201"
    assert alert["textcard"]["title"] == f"客户 {mine.name} 打开了《秋季新品》"
    assert alert["textcard"]["url"].endswith(f"admin/customers/{mine.external_userid}")
    # the same customer opening the item through another link the same day: an open, no second alert
    other = _send_token(app, item_id, staff_id, send_id)
    res, _path = through_oauth(client, other, f"customer:{mine.external_userid}")
    assert res.status_code == 302 and res.headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        assert [o.via for o in opens()] == ["link", "oauth"]
        assert db.session.scalar(select(RadarAlert.status)) == "sent"
    assert len(alerts(corp)) == 1


def test_in_quiet_hours_an_open_counts_and_its_alert_waits_for_the_morning(app, client, corp, shop, run_worker):
    (mine, *_), item_id, staff_id, send_id = shop
    with app.app_context():
        now = corp_time.local().hour
    with quiet_hours(app, now, (now + 1) % 24):
        client.get(f"/r/{_customer_token(app, item_id, staff_id, mine.external_userid)}")
        run_worker()
        with app.app_context():
            assert radar_opens.drain() == 0  # a sweep during the night: still held
            assert len(opens()) == 1
            assert db.session.scalar(select(RadarAlert.status)) == "quiet"
    assert alerts(corp) == []
    # the quiet hours are over: the held alert goes out with the next sweep, once
    with app.app_context():
        radar_opens.drain()
        radar_opens.drain()
        assert db.session.scalar(select(RadarAlert.status)) == "sent"
    (told,) = alerts(corp)
    assert told["touser"] == "staff0201"
    # one held since the night before last is no news any more: it stays held
    with app.app_context():
        db.session.execute(
            update(RadarAlert).values(status="quiet", created_at=RadarAlert.created_at - timedelta(days=2))
        )
        db.session.commit()
        radar_opens.drain()
        assert db.session.scalar(select(RadarAlert.status)) == "quiet"
    assert len(alerts(corp)) == 1


def test_a_mass_sends_link_names_its_opener_through_oauth_else_counts_anonymously(app, client, corp, shop, run_worker):
    (mine, mine2, *_), item_id, staff_id, send_id = shop
    token = _send_token(app, item_id, staff_id, send_id)
    named, back = through_oauth(client, token, f"customer:{mine2.external_userid}")
    assert named.status_code == 302 and named.headers["Location"] == TARGET
    # the same code again (a replay, from this browser or any other): sent on, never an open
    assert client.get(back, headers={"User-Agent": WECHAT}).headers["Location"] == TARGET
    # outside WeChat no OAuth is possible: an anonymous open, once however often reloaded
    for _ in range(2):
        plain = client.get(f"/r/{token}", headers={"User-Agent": BROWSER})
        assert plain.status_code == 302 and plain.headers["Location"] == TARGET
    # a visitor WeCom does not name as a customer (a stranger): anonymous too
    assert through_oauth(client, token, "guest")[0].headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        got = [(o.via, o.visitor.split(":")[0], o.count) for o in opens()]
        assert got[0] == ("oauth", "c", 1) and ("anonymous", "a", 2) in got
        assert len(got) == 3  # the guest is the sandbox's first contact or a stranger: one more open either way
        link = db.session.scalar(select(RadarLink))
        assert (link.kind, link.send_id) == ("send", send_id)
    assert len(alerts(corp)) >= 1


def test_a_fetcher_following_the_oauth_hop_without_cookies_is_no_open(app, client, corp, shop, run_worker):
    (_mine, mine2, *_), item_id, staff_id, send_id = shop
    token = _send_token(app, item_id, staff_id, send_id)
    _res, back = through_oauth(client, token, f"customer:{mine2.external_userid}")
    # through_oauth used (and spent) the code with the cookie; a cookieless fetcher of a fresh code is no open
    client.delete_cookie("siyu_radar_oauth", path="/r/")
    first = client.get(f"/r/{token}", headers={"User-Agent": WECHAT})
    client.delete_cookie("siyu_radar_oauth", path="/r/")
    state = first.headers["Location"].split("state=", 1)[1].split("&", 1)[0]
    res = client.get(f"/r/{token}/o?code=made-up&state={state}", headers={"User-Agent": WECHAT})
    assert res.status_code == 302 and res.headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        assert [o.via for o in opens()] == ["oauth"]


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("HEAD", {"User-Agent": WECHAT}),
        ("GET", {"User-Agent": "facebookexternalhit/1.1"}),
        ("GET", {"User-Agent": "TelegramBot (like TwitterBot)"}),
        ("GET", {"User-Agent": "Slackbot-LinkExpanding 1.0"}),
        ("GET", {"User-Agent": BROWSER, "Sec-Purpose": "prefetch"}),
        ("GET", {"User-Agent": BROWSER, "Purpose": "prefetch"}),
        ("GET", {"User-Agent": BROWSER, "X-Moz": "prefetch"}),
    ],
)
def test_previews_heads_and_prefetches_are_redirected_but_are_not_opens(
    app, client, corp, shop, run_worker, method, headers
):
    (mine, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    res = client.open(f"/r/{token}", method=method, headers=headers)
    assert res.status_code == 302 and res.headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        assert opens() == []
    assert redis_conn.client.llen(radar_opens.PENDING) == 0


def test_unknown_tampered_and_malformed_tokens_are_404s_naming_nothing(app, client, shop):
    (mine, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    payload, sig = token.rsplit(".", 1)
    other = payload.replace(mine.external_userid, shop[0][2].external_userid)
    for bad in (
        "x",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # the signature altered
        f"{other}.{sig}",  # someone else's customer, this signature
        "c.1.1.wm" + "A" * 30 + "." + "B" * 43,  # guessed
        "%00" * 10,
        "é" * 20,
        "a" * 5000,
    ):
        res = client.get(f"/r/{bad}")
        assert res.status_code == 404, bad
        assert "链接无效" in res.get_data(as_text=True) and mine.external_userid not in res.get_data(as_text=True)


@contextmanager
def secret_key(app, key, fallbacks=()):
    """The app's SECRET_KEY (and its retired keys) for a while, as a redeploy with a rotated key has them."""
    before = app.config["SIYU"]
    app.config["SIYU"] = replace(before, secret_key=key, secret_key_fallbacks=tuple(fallbacks))
    try:
        yield
    finally:
        app.config["SIYU"] = before


def test_links_sent_before_a_key_rotation_keep_working_while_the_old_key_is_kept(app, client, shop, run_worker):
    (mine, *_), item_id, staff_id, _send_id = shop
    old, new = "o" * 40, "n" * 40
    with secret_key(app, old):
        sent = _customer_token(app, item_id, staff_id, mine.external_userid)
    with secret_key(app, new, [old]):
        fresh = _customer_token(app, item_id, staff_id, mine.external_userid)
        assert fresh != sent and fresh.rsplit(".", 1)[0] == sent.rsplit(".", 1)[0]  # same link, new signature
        for token in (sent, fresh):
            res = client.get(f"/r/{token}", headers={"User-Agent": WECHAT})
            assert res.status_code == 302 and res.headers["Location"] == TARGET
        run_worker()
        with app.app_context():
            (opened,) = opens()  # one link, one customer, one day: one open however it was signed
            assert opened.count == 2
    with secret_key(app, new):  # the old key dropped: what it signed is retired
        assert client.get(f"/r/{sent}").status_code == 404
        assert client.get(f"/r/{fresh}").status_code == 302


def test_an_archived_or_deleted_item_shows_a_friendly_page(app, client, shop):
    (mine, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    with app.app_context():
        db.session.get(LibraryItem, item_id).archived = True
        db.session.commit()
    visits.forget_targets()
    res = client.get(f"/r/{token}")
    assert res.status_code == 410 and "内容已下架" in res.get_data(as_text=True)
    with app.app_context():
        db.session.execute(delete(LibraryItem).where(LibraryItem.id == item_id))
        db.session.commit()
    visits.forget_targets()
    res = client.get(f"/r/{token}")
    assert res.status_code == 404 and "内容已不存在" in res.get_data(as_text=True)


def test_the_target_is_the_saved_url_whatever_the_request_says(app, client, shop, run_worker):
    (mine, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    huge = "x=" + "a" * 200_000
    for query in (huge, "next=https://evil.example.com/", "url=//evil.example.com"):
        res = client.get(f"/r/{token}?{query}")
        assert res.status_code == 302 and res.headers["Location"] == TARGET
    res = client.get(f"/r/{token}/o?code={'c' * 100_000}&state=x")
    assert res.status_code == 302 and res.headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        assert len(opens()) == 1 and opens()[0].count == 3


def test_a_bot_hammering_one_link_is_held_back_without_touching_real_opens(app, client, shop, run_worker):
    (mine, mine2, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    rate = app.config["SIYU"].radar_rate
    statuses = [
        client.get(f"/r/{token}", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code for _ in range(rate + 5)
    ]
    assert statuses[:rate] == [302] * rate and statuses[rate:] == [429] * 5
    # the real customer on their own address, and another link from the bot's address, are untouched
    assert client.get(f"/r/{token}", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 302
    other = _customer_token(app, item_id, staff_id, mine2.external_userid)
    assert client.get(f"/r/{other}", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 302
    run_worker()
    with app.app_context():
        assert len(opens()) == 2


def test_the_redirect_happens_when_the_open_cannot_be_noted(app, client, shop, monkeypatch):
    (mine, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    from redis.exceptions import ConnectionError as RedisDown

    def down(*_a, **_k):
        raise RedisDown("redis is away")

    monkeypatch.setattr(radar_opens, "admit", down)
    res = client.get(f"/r/{token}")
    assert res.status_code == 302 and res.headers["Location"] == TARGET


def test_an_item_no_longer_tracked_still_redirects_without_recording(app, client, shop, run_worker):
    (mine, *_), item_id, staff_id, send_id = shop
    token = _customer_token(app, item_id, staff_id, mine.external_userid)
    with app.app_context():
        db.session.get(LibraryItem, item_id).tracked = False
        db.session.commit()
    visits.forget_targets()
    assert client.get(f"/r/{token}").headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        assert opens() == []


def test_a_first_open_is_told_to_the_brands_systems_once(app, client, shop, run_worker):
    from tests.services.webhook_helpers import receiving, register

    (mine, *_), item_id, staff_id, _send_id = shop
    with receiving() as crm:
        register(app, crm, types=["radar.opened"])
        token = _customer_token(app, item_id, staff_id, mine.external_userid)
        for _ in range(2):  # a reload the same day is not news
            client.get(f"/r/{token}", headers={"User-Agent": WECHAT})
        run_worker()
    (opened,) = [r.body["data"] for r in crm.of_type("radar.opened")]
    assert opened["customer"]["external_userid"] == mine.external_userid
    assert opened["member"] == {"userid": "staff0201"} and opened["via"] == "link"
    assert opened["item"]["id"] == item_id and opened["send_id"] is None
