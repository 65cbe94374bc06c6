"""The welcome job's wait for more adds (LINGER) and the rescue's wake-up, on the real queue and webhook."""

import threading
import time

from bot.extensions import redis_conn
from bot.jobs.queue import URGENT, WELCOME_LIST, WELCOME_WAKE, queue
from bot.services.channels import jobs
from tests.services.test_acquisition import new_channel


def _until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_add_pushed_while_a_job_waits_is_taken_by_it_without_another_job(app, api, sim, corp, monkeypatch):
    monkeypatch.setattr(jobs, "LINGER", 3.0)  # under the Redis client's 5 s socket timeout
    channel = new_channel(api, corp)
    sim.scan(channel["config_id"])
    inbox = app.extensions["siyu.inbox"]
    inbox.settle()
    urgent = queue(URGENT, redis_conn.client)
    assert urgent.count == 1  # the first add woke a worker
    counts = {}

    def job():
        with app.app_context():
            counts.update(jobs.send_welcomes())

    worker = threading.Thread(target=job)
    worker.start()
    _until(lambda: len(corp.welcomes_sent) == 1 and redis_conn.client.exists(WELCOME_WAKE))  # done, waiting
    second, _ = sim.scan(channel["config_id"])
    inbox.settle()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert counts == {"sent": 2}
    assert [s["text"]["content"].split("您好")[0] for s in corp.welcomes_sent][1] == second.name
    assert urgent.count == 1  # the second add enqueued no job: the waiting one took it
    assert not redis_conn.client.exists(WELCOME_WAKE)  # nothing waits now: the next add wakes a worker


def test_ids_left_on_the_list_without_a_job_get_one_from_the_rescue(app, api, sim, corp, run_worker):
    channel = new_channel(api, corp)
    sim.scan(channel["config_id"])
    app.extensions["siyu.inbox"].settle()
    client = redis_conn.client
    ids = client.lrange(WELCOME_LIST, 0, -1)
    assert len(ids) == 1
    # A welcome worker killed while it waited: its job is gone, the id was pushed while its flag was up.
    queue(URGENT, client).empty()
    client.set(WELCOME_WAKE, 1)
    with app.app_context():
        assert jobs.rescue_welcomes() == 0  # a worker is (as far as anyone knows) on its way
    assert queue(URGENT, client).count == 0
    client.delete(WELCOME_WAKE)  # the flag of the dead worker ran out
    with app.app_context():
        assert jobs.rescue_welcomes() == 0  # nothing lost: the id is on the list …
    assert queue(URGENT, client).count == 1  # … and now a worker is woken for it
    run_worker()
    assert len(corp.welcomes_sent) == 1
