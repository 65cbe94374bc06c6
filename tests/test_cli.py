"""The flask commands, run through Flask's CLI runner against the test app."""

import pytest
from sqlalchemy import select, text

from bot.extensions import db
from bot.models import ApiToken, CallbackEvent, EventStatus
from tests.conftest import BACKEND


def test_create_admin_then_a_token_acting_as_them(app, client):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["create-admin", "owner"])
    assert created.exit_code == 0 and "owner created; password: " in created.output
    assert runner.invoke(args=["create-admin", "owner"]).exit_code != 0  # the name is taken
    assert runner.invoke(args=["create-api-token", "crm-sync", "--user", "ghost"]).exit_code != 0
    result = runner.invoke(args=["create-api-token", "crm-sync", "--user", "owner"])
    assert result.exit_code == 0
    token = result.output.strip()
    assert token.startswith("siyu_")
    assert client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(ApiToken.name)) == "crm-sync"
        assert token not in db.session.scalar(select(ApiToken.token_hash))  # only the hash is kept


def test_sync_commands_report_what_they_pulled(app, sim):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sync-directory"])
    assert result.exit_code == 0 and "3 stores, 4 staff" in result.output
    result = runner.invoke(args=["sync-tags"])
    assert result.exit_code == 0 and "3 tag groups, 9 tags" in result.output
    for n in range(3):
        sim.corp.add_contact(f"客{n}", 1, "staff0201")
    result = runner.invoke(args=["sync-customers"])
    assert result.exit_code == 0 and "seen: 3, new customers: 3" in result.output, result.output


def test_rebuild_facets_repairs_them_on_postgresql_and_says_so_elsewhere(app, sim, run_worker):
    sim.customer_adds(userid="staff0201")
    run_worker()
    runner = app.test_cli_runner()
    if BACKEND != "services":
        result = runner.invoke(args=["rebuild-facets"])
        assert result.exit_code == 0 and "nothing to rebuild" in result.output
        return
    with app.app_context():
        db.session.execute(text("UPDATE customer_facets SET store_ids = '{999}'"))
        db.session.commit()
    result = runner.invoke(args=["rebuild-facets"])
    assert result.exit_code == 0 and "facets rebuilt; customers changed: 1" in result.output, result.output
    with app.app_context():
        assert 999 not in db.session.scalar(text("SELECT store_ids FROM customer_facets"))
    assert "facets rebuilt; customers changed: 0" in runner.invoke(args=["rebuild-facets"]).output


def test_events_retry_requeues_dead_events(app, sim, corp, run_worker):
    corp.inject("externalcontact/get", 48002)
    sim.customer_adds(userid="staff0201")
    run_worker()
    with app.app_context():
        event_id = db.session.scalar(select(CallbackEvent.id))
    result = app.test_cli_runner().invoke(args=["events", "retry", str(event_id), "999"])
    assert result.exit_code == 0
    assert f"queued again: [{event_id}]" in result.output and "[999]" in result.output
    run_worker()
    with app.app_context():
        assert db.session.scalar(select(CallbackEvent.status)) == EventStatus.done


def test_simulate_drives_the_running_sandbox(app, sim, fake_wecom_app, run_worker):
    fake_wecom_app.config["SIMULATOR"] = sim
    try:
        result = app.test_cli_runner().invoke(args=["simulate", "--count", "3", "--state", "poster-1"])
        tagged = app.test_cli_runner().invoke(args=["simulate", "--count", "2", "--action", "tag"])
        assert tagged.exit_code == 0 and "2/2 callbacks acknowledged" in tagged.output
    finally:
        fake_wecom_app.config["SIMULATOR"] = None
    assert result.exit_code == 0 and "3/3 callbacks acknowledged" in result.output
    run_worker()
    with app.app_context():
        assert db.session.query(CallbackEvent).filter_by(status=EventStatus.done).count() == 5


@pytest.mark.skipif(BACKEND == "services", reason="only the in-process Redis stand-in is refused")
def test_worker_and_scheduler_refuse_the_in_process_redis(app):
    for command in ("worker", "scheduler"):
        result = app.test_cli_runner().invoke(args=[command])
        assert result.exit_code != 0
        assert "REDIS_URL is not set" in result.output


def test_a_worker_that_loses_redis_waits_for_it_and_works_on(app, monkeypatch):
    """A Redis restart under `flask worker`: a fresh worker starts once Redis answers, instead of the
    process exiting (the queues' lost jobs are pending events, which the sweeper queues again)."""
    import redis

    from bot import cli

    runs, pings, sleeps = [], [], []

    class Worker:
        def work(self, **options):
            runs.append(options)
            if len(runs) < 3:
                raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    class Client:
        def ping(self):
            pings.append(1)
            if len(pings) < 2:
                raise redis.exceptions.ConnectionError("still restarting")

    monkeypatch.setattr(cli.time, "sleep", sleeps.append)
    monkeypatch.setattr(cli.redis_conn, "_client", Client())
    cli._work_through_redis_outages(Worker, logging_level="INFO")
    assert len(runs) == 3 and all(r == {"with_scheduler": False, "logging_level": "INFO"} for r in runs)
    assert sleeps[:2] == [1, cli.REDIS_RETRY[-1]]  # the first back-off, then a ping that failed once
    with pytest.raises(redis.exceptions.ConnectionError):  # a burst worker (tests, one-off runs) just fails
        runs.clear()
        cli._work_through_redis_outages(Worker, burst=True)
