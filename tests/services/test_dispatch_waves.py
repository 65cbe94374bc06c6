"""Mass-send dispatch calls WeCom for different members side by side, each member's own chunks in order."""

from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import MassSend, SendChunk, SendStatus, Staff
from bot.services.sends import compose as sends
from bot.services.sends import dispatch, recipients, waves
from tests.services.test_mass_sends import MEMBERS, _admin, new_send, people  # noqa: F401 - people is a fixture


def _approved_send(app, admin_api, people):  # noqa: F811 - the fixture's value
    send = new_send(admin_api, people)
    with app.app_context():
        sends.approve(db.session.get(MassSend, send["id"]), _admin(app))
        db.session.commit()
    return send["id"]


def test_a_members_chunks_go_out_in_order_and_never_two_at_once(app, corp, people, admin_api, monkeypatch):  # noqa: F811 - people is the fixture imported above
    monkeypatch.setattr(recipients, "CHUNK", 1)  # one customer per chunk: two chunks for most members
    monkeypatch.setattr(waves, "WAVE", 3)  # three members a wave: a wave is called while the one before it answers
    waves_called, in_flight, overlapped = [], {}, []
    claim_and_call, record = waves.Caller.claim_and_call, waves.Caller.record

    def claimed(caller, wave):
        staff = [staff_id for staff_id, _ in wave.keys]
        # never a member with a chunk in flight (called, its answer not on record), nor twice in one wave
        assert len(set(staff)) == len(staff) and not set(staff) & set(in_flight)
        overlapped.append(bool(in_flight))
        waves_called.append(list(wave.keys))
        in_flight.update(dict(wave.keys))
        return claim_and_call(caller, wave)

    def recorded(caller, wave, outcome):
        record(caller, wave, outcome)
        for staff_id, _ in wave.keys:
            del in_flight[staff_id]

    monkeypatch.setattr(waves.Caller, "claim_and_call", claimed)
    monkeypatch.setattr(waves.Caller, "record", recorded)
    send_id = _approved_send(app, admin_api, people)
    with app.app_context():
        row = db.session.get(MassSend, send_id)
        dispatch.dispatch(row)
        db.session.commit()
        assert row.status == SendStatus.tracking
        chunks = db.session.scalars(select(SendChunk).where(SendChunk.send_id == send_id).order_by(SendChunk.id)).all()
        assert {str(c.status) for c in chunks} == {"created"} and len(chunks) == 8
        userid = {staff_id: name for staff_id, name in db.session.execute(select(Staff.id, Staff.userid))}
        # the order each member's chunks were recorded in: by chunk, and the fake made their tasks in that order
        expected = {}
        for c in chunks:
            expected.setdefault(userid[c.staff_id], []).extend(recipients.chunk_recipients(c))
    assert not in_flight and len(waves_called) >= 3  # members with a second chunk wait for a later wave
    assert len(waves_called[0]) == 3  # side by side, one chunk per member
    assert any(overlapped)  # a wave was called while the one before it was still answering
    seen = {}
    for wave in waves_called:
        for staff, seq in wave:
            assert seq == seen.get(staff, -1) + 1  # each member's chunks one after the other, in order
            seen[staff] = seq
    made = {}
    for task in corp.mass_tasks.values():  # in the order WeCom made them
        made.setdefault(task.sender, []).extend(task.recipients)
    assert made == expected
    assert sorted(made) == MEMBERS


def test_a_45009_in_a_wave_is_shared_and_nothing_is_sent_twice(app, corp, people, admin_api):  # noqa: F811 - people is the fixture imported above
    corp.inject("externalcontact/add_msg_template", 45009, times=1)
    send_id = _approved_send(app, admin_api, people)
    waits = []

    def sleep(seconds):  # the minute window passes; WeCom and our budget open again
        waits.append(seconds)
        assert redis_conn.client.get("siyu:wecom:budget:blocked:externalcontact/add_msg_template") is not None
        redis_conn.client.delete("siyu:wecom:budget:blocked:externalcontact/add_msg_template")

    with app.app_context():
        row = db.session.get(MassSend, send_id)
        dispatch.dispatch(row, sleep=sleep)
        db.session.commit()
        assert waits and row.status == SendStatus.tracking
        assert dispatch.counts(row) == {"created": 4}
    received = [e for t in corp.mass_tasks.values() for e in t.recipients]
    assert sorted(received) == sorted(p.external_userid for p in people)  # each customer once
