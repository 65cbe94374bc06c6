"""Sign-in throttling per (username, address): growing delays for the pair that keeps failing, a cap of its
own for an address across usernames, and never a lock-out of the same username from elsewhere."""

import pytest

from bot.services.users import accounts
from tests.admin.panel import sign_in
from tests.conftest import make_user


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """The clock the throttle reads, moved by hand."""
    fake = Clock()
    monkeypatch.setattr(accounts, "_now", fake)
    return fake


def browser(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def refusal(res) -> str:
    assert res.status_code == 401
    return res.get_data(as_text=True)


def test_an_attacker_failing_from_one_address_does_not_lock_the_admin_out(app, clock):
    _, password = make_user(app, "boss", "admin")
    attacker = browser(app, "203.0.113.66")
    for _ in range(accounts.FREE_FAILURES_PER_PAIR):
        assert "用户名或密码错误" in refusal(sign_in(attacker, "boss", "guess-guess-guess"))
    assert "请 15 秒后再试" in refusal(sign_in(attacker, "boss", "another-guess-here"))
    # The admin, from their own address, at the same moment: not slowed at all.
    office = browser(app, "198.51.100.10")
    assert sign_in(office, "boss", password).status_code == 302
    assert office.get("/admin/").status_code == 200
    # ...and the attacker still waits.
    assert "登录失败次数过多" in refusal(sign_in(attacker, "boss", password))


def test_the_delay_doubles_with_each_failure_and_the_right_password_works_after_it(app, clock):
    _, password = make_user(app, "clerk", "viewer")
    me = browser(app, "192.0.2.5")
    for _ in range(accounts.FREE_FAILURES_PER_PAIR):
        sign_in(me, "clerk", "wrong-password")
    waits = []
    for _ in range(4):
        text = refusal(sign_in(me, "clerk", password))  # refused before the password is even looked at
        seconds = int(text.split("请 ")[1].split(" 秒后再试")[0])
        waits.append(seconds)
        clock.now += seconds - 1
        assert "请 1 秒后再试" in refusal(sign_in(me, "clerk", password))
        clock.now += 1
        assert "用户名或密码错误" in refusal(sign_in(me, "clerk", "wrong-password"))
    assert waits == [15, 30, 60, 120]
    clock.now += 240
    assert sign_in(me, "clerk", password).status_code == 302
    # A success clears the pair: a typo now is just a typo.
    other = browser(app, "192.0.2.5")
    assert "用户名或密码错误" in refusal(sign_in(other, "clerk", "wrong-password"))


def test_the_delay_is_capped(app, clock):
    make_user(app, "clerk", "viewer")
    me = browser(app, "192.0.2.5")
    for _ in range(accounts.FREE_FAILURES_PER_PAIR + 12):
        clock.now += accounts.MAX_DELAY
        refusal(sign_in(me, "clerk", "wrong-password"))
    assert f"请 {accounts.MAX_DELAY} 秒后再试" in refusal(sign_in(me, "clerk", "wrong-password"))


def test_one_address_trying_many_usernames_meets_a_cap_of_its_own(app, clock):
    _, password = make_user(app, "boss", "admin")
    sprayer = browser(app, "203.0.113.99")
    names = [f"user{n}" for n in range(accounts.FREE_FAILURES_PER_ADDRESS)]
    for name in names:  # one try each: no pair gets near its own allowance
        assert "用户名或密码错误" in refusal(sign_in(sprayer, name, "Password123!"))
    assert "请 15 秒后再试" in refusal(sign_in(sprayer, "someone-new", "Password123!"))
    assert "请 15 秒后再试" in refusal(sign_in(sprayer, "boss", password))
    assert sign_in(browser(app, "198.51.100.10"), "boss", password).status_code == 302
    clock.now += 15
    assert sign_in(sprayer, "boss", password).status_code == 302


def test_failures_are_forgotten_a_day_after_the_last(app, clock):
    from bot.extensions import redis_conn

    make_user(app, "clerk", "viewer")
    me = browser(app, "192.0.2.5")
    sign_in(me, "clerk", "wrong-password")
    with app.app_context():
        keys = redis_conn.client.keys("siyu:signin:*")
        assert len(keys) == 2
        assert all(0 < redis_conn.client.ttl(k) <= accounts.FORGET_AFTER for k in keys)
