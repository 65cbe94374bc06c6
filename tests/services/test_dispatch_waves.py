"""Mass-send dispatch calls WeCom for different members side by side, each member's own chunks in order."""

from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import MassSend, SendChunk, SendStatus, Staff
from bot.services.sends import compose as sends
from bot.services.sends import dispatch, recipients
from tests.services.test_mass_sends import MEMBERS, _admin, new_send, people  # noqa: F401 - people is a fixture


def _approved_send(app, admin_api, people):  # noqa: F811 - the fixture's value
    send = new_send(admin_api, people)
    with app.app_context():
        sends.approve(db.session.get(MassSend, send["id"]), _admin(app))
        db.session.commit()
    return send["id"]


def test_a_members_chunks_go_out_in_order_and_never_two_at_once(app, corp, people, admin_api, monkeypatch):  # noqa: F811 - people is the fixture imported above
    monkeypatch.setattr(recipients, "CHUNK", 1)  # one customer per chunk: two chunks for most members
    waves = []
    call_wave = dispatch.call_wave

    def recorded(chunks, *args, **kwargs):
        waves.append([(c.staff_id, c.seq, c.id) for c in chunks])
        return call_wave(chunks, *args, **kwargs)

    monkeypatch.setattr(dispatch, "call_wave", recorded)
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
    assert len(waves) >= 2  # members with a second chunk wait for the next wave
    assert len(waves[0]) == len({staff for staff, _, _ in waves[0]}) > 1  # side by side, one chunk per member
    for wave in waves:
        assert len({staff for staff, _, _ in wave}) == len(wave)  # never two chunks of one member at once
    seen = {}
    for wave in waves:
        for staff, seq, _ in wave:
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
