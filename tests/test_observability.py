"""/metrics and the JSON logs, read after real signed callbacks went through the webhook and the worker."""

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import logs
from bot.sandbox.simulator import event_xml
from tests.services.test_acquisition import new_channel


def scrape(client, **headers):
    res = client.get("/metrics", headers=headers)
    assert res.status_code == 200, res.get_data(as_text=True)
    assert res.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(res.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


ADD = "change_external_contact.add_external_contact"


def test_callbacks_events_wecom_calls_and_welcomes_are_counted(app, client, api, sim, corp, run_worker, callback):
    new_channel(api, corp)
    before = scrape(client)
    contact, delivery = sim.customer_adds(userid="staff0201", state="jingan-poster")
    assert delivery.statuses == [200]
    tag_event = event_xml(corp.corp_id, "change_external_tag", Id="et-metrics", TagType="tag", ChangeType="delete")
    assert [callback(tag_event).status_code for _ in range(2)] == [200, 200]  # WeCom re-sends: one duplicate
    assert callback(tag_event, msg_signature="0" * 40).status_code == 403

    app.extensions["siyu.inbox"].settle()  # queue pushes are coalesced: let them reach Redis
    waiting = scrape(client)
    assert waiting[("siyu_events", (("status", "pending"),))] == 2
    assert waiting[("siyu_queue_depth", (("queue", "siyu-events"),))] == 1
    assert waiting[("siyu_queue_depth", (("queue", "welcome"),))] == 1
    # The waiting job's age is read from its own enqueue time; an empty queue has none.
    assert 0 <= waiting[("siyu_queue_oldest_age_seconds", (("queue", "siyu-events"),))] < 60
    assert waiting[("siyu_queue_oldest_age_seconds", (("queue", "siyu-default"),))] == 0
    assert waiting[("siyu_events_oldest_pending_age_seconds", ())] >= 0
    assert waiting[("siyu_redis_up", ())] == 1 and waiting[("siyu_database_up", ())] == 1

    run_worker()
    after = scrape(client)
    assert delta(before, after, "siyu_callbacks_total", kind=ADD, outcome="stored") == 1
    assert delta(before, after, "siyu_callbacks_total", kind="change_external_tag.delete", outcome="stored") == 1
    assert delta(before, after, "siyu_callbacks_total", kind="change_external_tag.delete", outcome="duplicate") == 1
    assert delta(before, after, "siyu_callbacks_total", kind="-", outcome="refused_403") == 1
    assert delta(before, after, "siyu_events_processed_total", kind=ADD, status="done") == 1
    assert delta(before, after, "siyu_welcomes_total", status="sent") == 1
    assert delta(before, after, "siyu_welcome_latency_seconds_count") == 1
    assert delta(before, after, "siyu_wecom_calls_total", endpoint="externalcontact/send_welcome_msg", errcode="0") == 1
    assert delta(before, after, "siyu_wecom_calls_total", endpoint="externalcontact/get", errcode="0") >= 1
    assert delta(before, after, "siyu_wecom_call_seconds_count", endpoint="externalcontact/get") >= 1
    assert after[("siyu_events", (("status", "pending"),))] == 0
    assert after[("siyu_queue_depth", (("queue", "welcome"),))] == 0
    assert corp.welcomes_sent and contact.external_userid in corp.contacts


def test_wecom_errors_and_job_runs_are_counted(app, client, corp, sim):
    from bot.jobs.scheduler import run_job
    from bot.schedule import PERIODIC_JOBS
    from bot.services.clients import contact_api
    from bot.wecom.errors import WeComError

    before = scrape(client)
    with app.app_context():
        with pytest.raises(WeComError):
            contact_api().get_external_contact("wm-nobody-has-this-id")
        job = next(j for j in PERIODIC_JOBS if j.id == "sync_directory")
        assert run_job(job, claim=False).status == "ok"
    after = scrape(client)
    errors = {
        labels: after[(name, labels)] - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "siyu_wecom_calls_total" and dict(labels)["endpoint"] == "externalcontact/get"
    }
    assert [dict(labels)["errcode"] for labels, n in errors.items() if n] not in ([], ["0"])
    assert delta(before, after, "siyu_job_runs_total", job="sync_directory", status="ok") == 1
    assert delta(before, after, "siyu_job_duration_seconds_count", job="sync_directory") == 1


def test_metrics_can_want_a_token(app, client):
    settings = app.config["SIYU"]
    app.config["SIYU"] = settings.__class__(**{**settings.__dict__, "metrics_token": "scrape-secret-1"})
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong-one"}).status_code == 401
        assert scrape(client, Authorization="Bearer scrape-secret-1")[("siyu_database_up", ())] == 1
    finally:
        app.config["SIYU"] = settings


@pytest.fixture
def json_logs():
    """The root logger in JSON format, writing to a buffer; text again afterwards."""
    stream = io.StringIO()
    level = logging.getLevelName(logging.getLogger().level)
    # The test servers' access lines (werkzeug: the fake WeCom's URLs carry its token) are not Siyu's.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    logs.configure("INFO", "json", stream=stream)
    yield stream
    logs.configure(level, "text")
    werkzeug.setLevel(werkzeug_level)


def test_json_logs_carry_request_and_event_ids_and_no_secrets_or_names(
    app,
    api,
    sim,
    corp,
    run_worker,
    json_logs,
    live_server,
):
    import requests

    new_channel(api, corp)
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    forged = requests.post(
        sim.webhook_url,
        params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "n"},
        data=b"<xml/>",
        headers={"X-Request-ID": "drill-req-0001"},
        timeout=10,
    )
    assert forged.status_code in (400, 403) and forged.headers["X-Request-ID"] == "drill-req-0001"
    assert len(requests.get(live_server + "/healthz", timeout=10).headers["X-Request-ID"]) == 32  # made up
    run_worker()

    records = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message", "process"} <= set(r) for r in records)
    refused = [r for r in records if r["message"].startswith("refused a callback")]
    assert [r["request_id"] for r in refused] == ["drill-req-0001"]
    processed = [r for r in records if r["logger"] == "bot.services.callbacks.processing" and "done" in r["message"]]
    assert processed and all(isinstance(r["event_id"], int) for r in processed)
    assert all(str(r["event_id"]) in r["message"] for r in processed)

    settings = app.config["SIYU"]
    secrets = [settings.wecom_contact_secret, settings.wecom_callback_token, settings.wecom_callback_aes_key]
    with app.app_context():
        from bot.services.clients import contact_api

        secrets.append(contact_api().access_token)  # the token the worker used
    text = json_logs.getvalue()
    info = "\n".join(json.dumps(r, ensure_ascii=False) for r in records if r["level"] in ("INFO", "DEBUG"))
    for secret in filter(None, secrets):
        assert secret not in text
    assert "access_token" not in text
    assert contact.name not in info  # the customer's name never reaches INFO


def test_a_worker_machine_serves_metrics_on_its_own_port(app):
    """`flask worker --metrics-port N`: the same exposition from a thread, for machines with no web process."""
    import requests

    from bot import scrape
    from tests.conftest import free_port

    port = free_port()
    scrape.serve(app, port)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "siyu_database_up 1.0" in text and "siyu_redis_up 1.0" in text
    assert "# TYPE siyu_callbacks_total counter" in text


def test_the_worker_logs_one_line_per_event_not_rqs_four_per_job(app, sim, corp, run_worker, json_logs):
    sim.customer_adds(userid="staff0201")
    run_worker()
    records = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.strip()]
    assert any(r["logger"] == "bot.services.callbacks.processing" for r in records)
    chatter = [r for r in records if r["logger"].startswith("rq.") and r["level"] in ("INFO", "DEBUG")]
    assert chatter == []


def test_rqs_lines_come_back_at_debug():
    stream = io.StringIO()
    level = logging.getLevelName(logging.getLogger().level)
    try:
        logs.configure("DEBUG", "text", stream=stream)
        assert logging.getLogger("rq.worker").isEnabledFor(logging.INFO)
    finally:
        logs.configure(level, "text")
    assert not logging.getLogger("rq.worker").isEnabledFor(logging.INFO)
