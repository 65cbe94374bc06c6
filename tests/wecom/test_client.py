"""The WeCom client against the fake WeCom over real HTTP, with tokens and budgets in the test Redis."""

import threading

import pytest

from bot.extensions import redis_conn
from bot.wecom import WeComClient
from bot.wecom.budget import BudgetExhausted, CallBudget
from bot.wecom.errors import (
    ConcurrencyLimited,
    CredentialRejected,
    DownloadFailed,
    MemberNotActive,
    NoPermission,
    RateLimited,
    SystemBusy,
    TokenInvalid,
    UnknownExternalContact,
    WeComError,
    WeComUnavailable,
    WelcomeAlreadySent,
    WelcomeBeingSent,
    WelcomeCodeInvalid,
)


@pytest.fixture
def make_client(app, corp, fake_wecom_app):
    settings = app.config["SIYU"]
    sleeps = []

    def make(secret=None, per_minute=1000, timeout=5.0):
        return WeComClient(
            settings.corp_id,
            secret or settings.wecom_contact_secret,
            api_base=settings.wecom_api_base,
            redis=redis_conn.client,
            timeout=timeout,
            budget=CallBudget(redis_conn.client, per_minute=per_minute),
            sleep=sleeps.append,
        )

    make.sleeps = sleeps
    return make


def test_token_is_fetched_once_and_shared_between_clients(make_client, corp):
    corp.add_department("门店A")
    first, second = make_client(), make_client()
    assert first.list_departments() and second.list_departments()
    first.list_departments()
    assert corp.token_fetches == 1


def test_concurrent_first_calls_refresh_the_token_once(make_client, corp):
    clients = [make_client() for _ in range(8)]
    errors = []

    def call(c):
        try:
            c.list_departments()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert corp.token_fetches == 1


def test_token_expiry_mid_call_refreshes_once_and_retries(make_client, corp):
    client = make_client()
    client.list_departments()
    corp.expire_tokens()  # WeCom now answers 42001 to the cached token
    assert client.list_departments()[0]["name"] == "总部"
    assert corp.token_fetches == 2


@pytest.mark.parametrize("errcode", [40014, 42001, 41001])
def test_token_errors_retry_exactly_once(make_client, corp, errcode):
    client = make_client()
    corp.inject("department/list", errcode, times=5)
    with pytest.raises(TokenInvalid) as info:
        client.list_departments()
    assert info.value.errcode == errcode
    assert corp.calls.count("department/list") == 2  # the call and one retry, never a loop


def test_system_busy_backs_off_then_succeeds(make_client, corp):
    client = make_client()
    corp.inject("department/list", -1, times=2)
    assert client.list_departments()
    assert make_client.sleeps == [0.2, 0.8]


def test_system_busy_gives_up_after_three_retries(make_client, corp):
    client = make_client()
    corp.inject("department/list", -1, times=10)
    with pytest.raises(SystemBusy):
        client.list_departments()
    assert corp.calls.count("department/list") == 4


def test_45009_closes_the_api_for_every_process_until_the_window_ends(make_client, corp):
    first, second = make_client(), make_client()
    corp.inject("department/list", 45009)
    with pytest.raises(RateLimited) as info:
        first.list_departments()
    assert 0 < info.value.retry_after <= 60
    calls = corp.calls.count("department/list")
    with pytest.raises(RateLimited):
        second.list_departments()  # refused client-side: WeCom is not called again
    assert corp.calls.count("department/list") == calls
    second.list_department_users(1)  # other endpoints are unaffected


def test_client_side_budget_stops_before_wecom_does(make_client, corp):
    client = make_client(per_minute=3)
    for _ in range(3):
        client.list_departments()
    with pytest.raises(RateLimited) as info:
        client.list_departments()
    assert "budget" in info.value.errmsg
    assert corp.calls.count("department/list") == 3


def test_a_process_takes_its_calls_in_blocks_and_gives_back_what_it_did_not_spend(app, make_client, corp):
    minute = 29_000_000  # one window throughout: the clock is fixed inside it
    count = f"siyu:wecom:budget:department/list:{minute}"

    def budget(**kw):
        return CallBudget(redis_conn.client, per_minute=1000, clock=lambda: minute * 60 + 1.0, **kw)

    first = budget(block=8)
    for _ in range(5):
        first.take("department/list")
    assert int(redis_conn.client.get(count)) == 8  # one reservation served the five calls
    second = budget(block=8)  # another process: its own block from the same count
    second.take("department/list")
    assert int(redis_conn.client.get(count)) == 16
    refreshing = budget(block=8, hold=0.0)  # a block spent at once: each call asks again, giving back the rest
    for _ in range(3):
        refreshing.take("department/list")
    assert int(redis_conn.client.get(count)) == 16 + 3 + 7
    # through the client: WeCom called each time, Redis asked once for the block
    client = make_client()
    client.list_departments()
    client.list_departments()
    assert corp.calls.count("department/list") == 2


def test_the_limit_holds_across_processes_whose_blocks_are_not_spent(app):
    clock = lambda: 29_000_000 * 60 + 1.0  # noqa: E731 - a fixed clock inside one window
    first = CallBudget(redis_conn.client, per_minute=20, clock=clock, block=16)
    second = CallBudget(redis_conn.client, per_minute=20, clock=clock, block=16)
    first.take("user/list")  # holds 16 of the 20
    for _ in range(4):
        second.take("user/list")  # the 4 left
    with pytest.raises(BudgetExhausted) as info:
        second.take("user/list")
    assert 0 < info.value.retry_after <= 60
    for _ in range(15):
        first.take("user/list")  # its own block, still its own
    with pytest.raises(BudgetExhausted):
        first.take("user/list")


def test_a_45009_drops_the_calls_a_process_holds_and_closes_the_api_for_the_others(app):
    clock = lambda: 29_000_000 * 60 + 1.0  # noqa: E731 - a fixed clock inside one window
    seeing = CallBudget(redis_conn.client, per_minute=1000, clock=clock, block=16)
    other = CallBudget(redis_conn.client, per_minute=1000, clock=clock, block=16, hold=0.0)
    seeing.take("tag/list")
    other.take("tag/list")
    seeing.block("tag/list", 30)
    with pytest.raises(BudgetExhausted) as info:
        seeing.take("tag/list")  # its block is dropped with the 45009
    assert 29 < info.value.retry_after <= 30
    with pytest.raises(BudgetExhausted):
        other.take("tag/list")  # its block's hold is over: it asks, and hears the API is closed


def test_http_500_is_unavailable(make_client, corp):
    corp.inject("department/list", 500)
    with pytest.raises(WeComUnavailable) as info:
        make_client().list_departments()
    assert info.value.retryable


def test_unreachable_wecom_is_unavailable(app):
    client = WeComClient("ww1", "secret", api_base="http://127.0.0.1:9/cgi-bin/", redis=redis_conn.client, timeout=1.0)
    with pytest.raises(WeComUnavailable):
        client.list_departments()


def test_wrong_secret_is_a_credential_error(make_client):
    with pytest.raises(CredentialRejected) as info:
        make_client(secret="not-the-secret").list_departments()
    assert info.value.errcode == 40001 and not info.value.retryable


@pytest.mark.parametrize(
    ("errcode", "cls", "retryable"),
    [
        (45033, ConcurrencyLimited, True),
        (48002, NoPermission, False),
        (60020, NoPermission, False),
        (41054, MemberNotActive, False),
        (84061, UnknownExternalContact, False),
        (40096, UnknownExternalContact, False),
        (41050, WelcomeCodeInvalid, False),
        (41051, WelcomeAlreadySent, False),
        (41096, WelcomeBeingSent, True),
        (45035, WeComError, False),
    ],
)
def test_error_codes_raise_typed_exceptions(make_client, corp, errcode, cls, retryable):
    corp.inject("externalcontact/get", errcode, times=10)
    with pytest.raises(cls) as info:
        make_client().get_external_contact("wm1")
    assert type(info.value) is cls
    assert info.value.errcode == errcode and info.value.retryable is retryable
    assert info.value.endpoint == "externalcontact/get"


def test_wechatpy_endpoints_go_through_the_same_request_path(make_client, corp, sim):
    contact, _ = sim.customer_adds(userid=sorted(corp.users)[0])
    client = make_client()
    client.list_departments()
    corp.expire_tokens()
    # wechatpy's own API object (not one of ours) still gets the single refresh.
    result = client.external_contact.list(sorted(corp.users)[0])
    assert result["external_userid"] == [contact.external_userid]
    assert corp.token_fetches == 2


def test_welcome_message_is_accepted_once_per_code(make_client, corp):
    dep = corp.add_department("门店")
    corp.add_user("u1", "店员", dep)
    contact, code = corp.add_contact("客人", 1, "u1")
    client = make_client()
    payload = {"welcome_code": code, "text": {"content": "欢迎光临"}, "attachments": []}
    assert client.send_welcome_msg(payload)["errcode"] == 0
    with pytest.raises(WelcomeAlreadySent):
        client.send_welcome_msg(payload)
    with pytest.raises(WelcomeCodeInvalid):
        client.send_welcome_msg({**payload, "welcome_code": "never-issued"})
    assert corp.welcomes_sent == [payload]


def test_app_text_reaches_members_and_all_invalid_is_an_error(app, make_client, corp):
    dep = corp.add_department("门店")
    corp.add_user("u1", "店员", dep)
    client = make_client(secret=app.config["SIYU"].wecom_agent_secret)
    assert client.send_app_text(1000002, ["u1", "ghost"], "今天有3位客户生日")["invaliduser"] == "ghost"
    with pytest.raises(WeComError) as info:
        client.send_app_text(1000002, ["ghost"], "x")
    assert info.value.errcode == 81013
    assert [m["text"]["content"] for m in corp.app_messages] == ["今天有3位客户生日"]


def test_an_image_download_never_follows_a_redirect():
    """The URL of an image comes from an API answer: a redirect elsewhere is refused, not followed."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # http.server names its handlers so
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/"
        client = WeComClient("ww1", "secret", api_base=base + "cgi-bin/", redis=redis_conn.client, timeout=2.0)
        with pytest.raises(DownloadFailed, match="redirect"):
            client.download(base + "qr.png")
    finally:
        server.shutdown()
        server.server_close()
        client._http.close()


def test_a_refused_token_put_back_by_a_racing_thread_is_not_used_again(make_client, corp):
    """Side-by-side calls (a mass send's wave): one thread read the token just before another had WeCom refuse
    it and dropped it, then put it back in the client's local cache. The retry must not meet it again."""
    client = make_client()
    client.list_departments()
    stale = client.access_token
    corp.expire_tokens()  # WeCom now refuses the cached token
    client._drop_token(stale)  # the thread that met the refusal
    client._local_token = (stale, float("inf"))  # the racing thread, caching what it read before the drop
    assert client.access_token != stale
    assert client.list_departments()[0]["name"] == "总部"
    assert corp.token_fetches == 2


def test_a_refused_token_gettoken_hands_out_again_is_trusted_again(make_client, corp, monkeypatch):
    """A 40014 on a token that is still valid (a hiccup): WeCom's gettoken gives the same token back while it
    lives (the fake issues a new one each time, so gettoken is played here), and from then on it is used as
    before — not fetched anew on every call for the rest of its life."""
    client = make_client()
    token = client.access_token
    fetches = []

    def gettoken():
        fetches.append(1)
        client.session.set(client.access_token_key, token, 7000)
        return {"access_token": token, "expires_in": 7200}

    monkeypatch.setattr(client, "fetch_access_token", gettoken)
    client._drop_token(token)  # refused once
    assert [client.access_token for _ in range(5)] == [token] * 5
    assert len(fetches) == 1
