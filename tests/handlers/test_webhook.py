"""/wecom/callback over real HTTP with real signed, encrypted callbacks."""

import hashlib
import time

import pytest
import requests
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import CallbackEvent, EventStatus
from bot.sandbox.simulator import event_xml
from bot.wecom.crypto import CallbackCrypto
from tests.conftest import post_at_once, proxied_app


def stored(app):
    with app.app_context():
        return db.session.scalars(select(CallbackEvent).order_by(CallbackEvent.id)).all()


def count(app):
    with app.app_context():
        return db.session.scalar(select(func.count(CallbackEvent.id)))


def add_event(sim, external="wmX", welcome=True):
    fields = {"ChangeType": "add_external_contact", "UserID": "staff0201", "ExternalUserID": external}
    if welcome:
        fields["WelcomeCode"] = "WC-" + external
    return event_xml(sim.corp.corp_id, "change_external_contact", 1700000000, **fields)


def test_url_verification_echoes_the_plaintext(sim, webhook_url):
    query = sim.crypto.encrypt_echostr("8452619823749283", "nonce1", str(int(time.time())))
    res = requests.get(webhook_url, params=query, timeout=5)
    assert res.status_code == 200
    assert res.content == b"8452619823749283"  # no quotes, no newline, no BOM


@pytest.mark.parametrize("drop", ["msg_signature", "timestamp", "nonce", "echostr"])
def test_url_verification_needs_every_parameter(sim, webhook_url, drop):
    query = sim.crypto.encrypt_echostr("1", "n", "1")
    del query[drop]
    assert requests.get(webhook_url, params=query, timeout=5).status_code == 400


def test_url_verification_with_forged_signature_is_403(sim, webhook_url):
    query = sim.crypto.encrypt_echostr("1", "n", "1")
    query["msg_signature"] = "0" * 40
    assert requests.get(webhook_url, params=query, timeout=5).status_code == 403


def test_event_is_stored_before_the_empty_200(app, sim, callback):
    plaintext = add_event(sim)
    res = callback(plaintext)
    assert res.status_code == 200 and res.content == b""
    [row] = stored(app)
    assert row.kind == "change_external_contact.add_external_contact"
    assert row.status == EventStatus.pending and row.create_time == 1700000000
    assert row.dedupe_key == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row.plaintext == plaintext


def test_redelivery_is_acknowledged_and_stored_once(app, sim, callback, run_worker, corp):
    plaintext = add_event(sim, external="wmDup", welcome=False)
    corp.add_contact("客人", 1, "staff0201")  # so that processing has someone to read
    statuses = [callback(plaintext).status_code for _ in range(4)]  # WeCom's first send and 3 re-sends
    assert statuses == [200, 200, 200, 200]
    assert count(app) == 1


def test_same_event_at_once_from_many_connections_is_stored_once(app, sim):
    plaintext = add_event(sim, external="wmRace")
    body, query = sim.envelope(plaintext)  # one envelope, delivered by 12 connections at the same moment
    assert post_at_once(sim.webhook_url, query, body, 12) == [200] * 12
    assert count(app) == 1


def test_distinct_events_in_the_same_second_from_sys_are_not_collapsed(app, sim, callback):
    # WeCom's FromUserName+CreateTime rule would merge these: both are from "sys" at the same second.
    group = event_xml(
        sim.corp.corp_id, "change_external_tag", 1700000000, Id="etG", TagType="tag_group", ChangeType="create"
    )
    tag = event_xml(sim.corp.corp_id, "change_external_tag", 1700000000, Id="etT", TagType="tag", ChangeType="create")
    assert callback(group).status_code == 200 and callback(tag).status_code == 200
    assert count(app) == 2


def test_forged_signature_is_403_and_stores_nothing(app, sim, webhook_url):
    body, query = sim.envelope(add_event(sim))
    query["msg_signature"] = hashlib.sha1(b"forged").hexdigest()
    res = requests.post(webhook_url, params=query, data=body.encode(), timeout=5)
    assert res.status_code == 403
    assert count(app) == 0


def test_missing_signature_is_403(app, sim, webhook_url):
    body, query = sim.envelope(add_event(sim))
    del query["msg_signature"]
    assert requests.post(webhook_url, params=query, data=body.encode(), timeout=5).status_code == 403
    assert count(app) == 0


def test_message_encrypted_for_another_corp_is_403(app, sim, webhook_url):
    settings = app.config["SIYU"]
    other = CallbackCrypto(settings.wecom_callback_token, settings.wecom_callback_aes_key, "wwanothercorp00000")
    body, query = other.encrypt(add_event(sim), "n1")
    res = requests.post(webhook_url, params=query, data=body.encode(), timeout=5)
    assert res.status_code == 403
    assert count(app) == 0


@pytest.mark.parametrize(
    "plaintext",
    [
        "<xml><ToUserName>broken",
        "plain words",
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><A>&x;</A></xml>',
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><xml><A>&d;</A></xml>',
    ],
    ids=["broken-xml", "not-xml", "xxe", "billion-laughs"],
)
def test_hostile_or_broken_plaintext_is_400(app, callback, plaintext):
    res = callback(plaintext)
    assert res.status_code == 400
    assert count(app) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName>x</ToUserName></xml>",
        b"<xml><Encrypt>",
        b"\x00\xff garbage",
        b"",
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
    ],
    ids=["no-encrypt", "broken-envelope", "binary", "empty", "xxe-envelope"],
)
def test_broken_envelope_is_400(app, sim, webhook_url, body):
    query = {"msg_signature": "a" * 40, "timestamp": "1", "nonce": "2"}
    res = requests.post(webhook_url, params=query, data=body, timeout=5)
    assert res.status_code == 400
    assert count(app) == 0


def test_undecryptable_but_signed_payload_is_400(app, sim, webhook_url):
    from bot.wecom.crypto import signature

    encrypted = "bm90IGFuIEFFUyBibG9jaw=="
    body = f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    stamp = str(int(time.time()))
    query = {"msg_signature": signature(sim.crypto.token, stamp, "2", encrypted), "timestamp": stamp, "nonce": "2"}
    assert requests.post(webhook_url, params=query, data=body, timeout=5).status_code == 400
    assert count(app) == 0


def test_oversized_body_is_413(app, sim, webhook_url):
    cap = app.config["SIYU"].callback_max_bytes
    body, query = sim.envelope(add_event(sim))
    padded = body.replace("</xml>", "<Pad>" + "x" * cap + "</Pad></xml>")
    assert requests.post(webhook_url, params=query, data=padded.encode(), timeout=5).status_code == 413
    assert count(app) == 0


def test_oversized_chunked_body_without_length_is_413(app, sim, webhook_url):
    cap = app.config["SIYU"].callback_max_bytes
    _, query = sim.envelope(add_event(sim))

    def chunks():
        for _ in range(cap // 1024 + 2):
            yield b"x" * 1024

    assert requests.post(webhook_url, params=query, data=chunks(), timeout=5).status_code == 413
    assert count(app) == 0


def test_unknown_event_type_is_stored_and_acknowledged(app, sim, callback, run_worker):
    plaintext = event_xml(sim.corp.corp_id, "some_future_event", ChangeType="whatever", Detail="x")
    assert callback(plaintext).status_code == 200
    run_worker()
    [row] = stored(app)
    assert row.kind == "some_future_event.whatever"
    assert row.status == EventStatus.skipped


def test_storage_failure_answers_503_so_wecom_resends(app, sim, callback, monkeypatch):
    with app.app_context():
        from handlers.webhook import _inbox

        inbox = _inbox()

    def broken_commit(events):
        raise ConnectionError("database went away")

    monkeypatch.setattr(inbox, "_commit", broken_commit)
    assert callback(add_event(sim, external="wmLater")).status_code == 503
    monkeypatch.undo()
    assert callback(add_event(sim, external="wmLater")).status_code == 200  # WeCom's re-send lands
    assert count(app) == 1


@pytest.mark.parametrize("offset", [-3 * 86400 * 365, -3601, 3601])
def test_a_correctly_signed_callback_from_outside_the_window_is_403(app, sim, webhook_url, offset):
    """A signature proves who sent a callback, not when: a captured one replayed years later is refused."""
    stamp = str(int(time.time()) + offset)
    body, query = sim.crypto.encrypt(add_event(sim), "n-old", timestamp=stamp)
    res = requests.post(webhook_url, params=query, data=body.encode(), timeout=5)
    assert res.status_code == 403 and "timestamp" in res.text
    assert count(app) == 0


def test_a_callback_a_few_minutes_off_is_taken(app, sim, webhook_url):
    """Clock skew and WeCom's re-sends stay well inside the window (SIYU_CALLBACK_MAX_AGE, an hour)."""
    body, query = sim.crypto.encrypt(add_event(sim), "n-skew", timestamp=str(int(time.time()) - 600))
    assert requests.post(webhook_url, params=query, data=body.encode(), timeout=5).status_code == 200
    assert count(app) == 1


def test_url_verification_outside_the_window_is_403(sim, webhook_url):
    query = sim.crypto.encrypt_echostr("8452619823749283", "nonce1", str(int(time.time()) - 7200))
    res = requests.get(webhook_url, params=query, timeout=5)
    assert res.status_code == 403 and "timestamp" in res.text


@pytest.mark.parametrize(("proxies", "seen"), [(1, "203.0.113.7"), (0, "127.0.0.1")])
def test_a_refusal_names_the_caller_the_trusted_proxy_forwarded(tmp_path, monkeypatch, caplog, proxies, seen):
    # The POST is answered in front of Flask (handlers.webhook._FastPath): behind ProxyFix all the same.
    app = proxied_app(tmp_path, monkeypatch, proxies)
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "proxy-test-0001"}
    with caplog.at_level("WARNING", logger="handlers.webhook"):
        res = app.test_client().post(
            "/wecom/callback?msg_signature=x&timestamp=1&nonce=n", data=b"<xml/>", headers=headers
        )
    assert res.status_code in (400, 403) and res.headers["X-Request-ID"] == "proxy-test-0001"
    assert [r.getMessage() for r in caplog.records if "refused a callback" in r.getMessage()][0].startswith(
        f"refused a callback from {seen}:"
    )


def test_an_error_in_the_webhook_is_logged_with_its_request_id_and_answered_500(app, client, caplog, monkeypatch):
    # The POST is answered in front of Flask: what Flask would have logged and answered, the fast path does.
    from handlers import webhook

    def broken(*args, **kwargs):
        raise RuntimeError("inbox broke")

    monkeypatch.setattr(webhook, "_accept", broken)
    with caplog.at_level("ERROR", logger="handlers.webhook"):
        res = client.post(
            "/wecom/callback?msg_signature=a&timestamp=1&nonce=n",
            data=b"<xml/>",
            headers={"X-Request-ID": "webhook-err-0001"},
        )
    assert res.status_code == 500 and res.headers["X-Request-ID"] == "webhook-err-0001"
    assert [r for r in caplog.records if r.exc_info and "inbox broke" in str(r.exc_info[1])]
