"""The chat sidebar's WeCom calls against the fake WeCom over real HTTP: JS-SDK tickets shared through the test
Redis (fetched once per expiry, under a lock) and the OAuth2 member identity (WeCom doc 90506, 91023)."""

import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine

from bot.extensions import redis_conn
from bot.wecom import WeComClient
from bot.wecom.budget import CallBudget
from bot.wecom.client import CallObserver
from bot.wecom.errors import NoPermission, OAuthCodeInvalid, RateLimited, SystemBusy, WeComUnavailable
from bot.wecom.tickets import TICKET_MARGIN


class Recorder(CallObserver):
    def __init__(self):
        self.tickets = []

    def ticket_fetch(self, kind, outcome):
        self.tickets.append((kind, outcome))


@pytest.fixture
def make_client(app, corp, fake_wecom_app):
    settings = app.config["SIYU"]

    def make(observer=None):
        # The sidebar's client: the app's own secret (its agent_config ticket is the app's).
        return WeComClient(
            settings.corp_id,
            settings.wecom_agent_secret,
            api_base=settings.wecom_api_base,
            redis=redis_conn.client,
            timeout=5.0,
            budget=CallBudget(redis_conn.client, per_minute=1000),
            sleep=lambda _: None,
            observer=observer,
        )

    return make


TICKETS = [("jsapi", WeComClient.jsapi_ticket), ("agent_config", WeComClient.agent_config_ticket)]


@pytest.mark.parametrize(("kind", "ticket"), TICKETS)
def test_a_ticket_is_fetched_once_and_shared_between_clients(make_client, corp, kind, ticket):
    first, second = make_client(), make_client()
    issued = ticket(first)
    assert ticket(second) == issued and ticket(first) == issued
    assert corp.client.ticket_fetches[kind] == 1
    assert corp.client.tickets[issued].kind == kind and corp.client.tickets[issued].app == "agent"


def test_the_two_tickets_differ_and_are_counted_apart(make_client, corp):
    client = make_client()
    assert client.jsapi_ticket() != client.agent_config_ticket()
    assert corp.client.ticket_fetches == {"jsapi": 1, "agent_config": 1}
    state = requests.get(corp_url(client) + "sandbox/state", timeout=5).json()
    assert state["ticket_fetches"] == {"jsapi": 1, "agent_config": 1}


def corp_url(client):
    return client.API_BASE_URL.removesuffix("cgi-bin/")


@pytest.mark.parametrize(("kind", "ticket"), TICKETS)
def test_a_ticket_is_kept_for_its_lifetime_less_a_margin_then_fetched_again(make_client, corp, kind, ticket):
    client = make_client()
    first = ticket(client)
    key = f"siyu:wecom:ticket:{kind}:{client.access_token_key}"
    assert (
        corp.client.ticket_ttl - TICKET_MARGIN - 5
        <= redis_conn.client.ttl(key)
        <= corp.client.ticket_ttl - TICKET_MARGIN
    )
    redis_conn.client.delete(key)  # the margin ran out: Redis forgets it, as its expiry does
    second = ticket(client)
    assert second != first and corp.client.ticket_fetches[kind] == 2


@pytest.mark.parametrize(("kind", "ticket"), TICKETS)
def test_concurrent_first_asks_fetch_one_ticket(make_client, corp, kind, ticket):
    clients = [make_client() for _ in range(8)]
    got, errors = [], []

    def ask(c):
        try:
            got.append(ticket(c))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(got)) == 1 and len(got) == 8
    assert corp.client.ticket_fetches[kind] == 1


@pytest.mark.parametrize(
    ("errcode", "cls"),
    [(48002, NoPermission), (45009, RateLimited), (-1, SystemBusy), (500, WeComUnavailable)],
)
@pytest.mark.parametrize(("kind", "ticket"), TICKETS)
def test_a_wecom_error_on_a_ticket_fetch_is_typed_observed_and_not_cached(
    make_client, corp, kind, ticket, errcode, cls
):
    recorder = Recorder()
    client = make_client(recorder)
    endpoint = "get_jsapi_ticket" if kind == "jsapi" else "ticket/get"
    corp.inject(endpoint, errcode, times=5)
    with pytest.raises(cls):
        ticket(client)
    assert recorder.tickets == [(kind, "unavailable" if errcode == 500 else str(errcode))]
    assert corp.client.ticket_fetches[kind] == 0
    corp.faults.clear()
    redis_conn.client.flushdb()  # 45009 closed the endpoint client-side until the window ends
    assert ticket(client)
    assert recorder.tickets[-1] == (kind, "0") and corp.client.ticket_fetches[kind] == 1


def test_the_metrics_observer_counts_ticket_fetches(ctx, corp):
    from prometheus_client import REGISTRY

    from bot.services.clients import agent_api

    def count(outcome):
        return REGISTRY.get_sample_value("siyu_wecom_ticket_fetches_total", {"kind": "jsapi", "outcome": outcome})

    before = count("0") or 0
    agent_api().jsapi_ticket()
    agent_api().jsapi_ticket()
    assert count("0") == before + 1


# -- the member's identity (WeCom doc 91023) -----------------------------------------------------


def oauth_code(settings, pick):
    """What the member's client does on the authorize page: pick who is opening the app; WeCom's code."""
    res = requests.post(
        settings.oauth_url,
        data={
            "appid": settings.corp_id,
            "redirect_uri": "http://127.0.0.1:5000/sidebar/auth?next=%2Fsidebar%2F",
            "state": "s1",
            "agentid": str(settings.wecom_agent_id),
            "pick": pick,
        },
        allow_redirects=False,
        timeout=5,
    )
    assert res.status_code == 302, res.text
    location = urlsplit(res.headers["Location"])
    query = parse_qs(location.query)
    assert location.path == "/sidebar/auth" and query["next"] == ["/sidebar/"] and query["state"] == ["s1"]
    return query["code"][0]


@pytest.fixture
def shop(corp):
    dep = corp.add_department("静安寺店")
    corp.add_user("staff0201", "王芳", dep, "导购")
    contact, _ = corp.add_contact("李娜", 2, "staff0201")
    return contact


def test_a_member_is_named_by_userid(app, make_client, shop):
    code = oauth_code(app.config["SIYU"], "member:staff0201")
    assert make_client().user_info(code) == {"userid": "staff0201"}


def test_a_non_member_is_named_by_openid_and_external_userid(app, make_client, shop):
    code = oauth_code(app.config["SIYU"], "guest")
    who = make_client().user_info(code)
    assert set(who) == {"openid", "external_userid"} and who["external_userid"] == shop.external_userid
    assert who["openid"].startswith("o")


def test_a_code_is_good_once(app, make_client, shop):
    client = make_client()
    code = oauth_code(app.config["SIYU"], "member:staff0201")
    client.user_info(code)
    with pytest.raises(OAuthCodeInvalid) as info:
        client.user_info(code)
    assert info.value.errcode == 40029


def test_a_code_lives_five_minutes(app, make_client, shop):
    client = make_client()
    client.list_departments()  # the token is fetched before the clock moves
    code = oauth_code(app.config["SIYU"], "member:staff0201")
    with time_machine.travel(timedelta(minutes=5, seconds=2), tick=True), pytest.raises(OAuthCodeInvalid):
        client.user_info(code)


def test_a_code_within_five_minutes_is_good(app, make_client, shop):
    client = make_client()
    code = oauth_code(app.config["SIYU"], "member:staff0201")
    with time_machine.travel(timedelta(minutes=4, seconds=50), tick=True):
        assert client.user_info(code) == {"userid": "staff0201"}


@pytest.mark.parametrize("code", ["not-a-code", "x" * 64])
def test_an_unknown_code_is_refused(make_client, shop, code):
    with pytest.raises(OAuthCodeInvalid):
        make_client().user_info(code)
