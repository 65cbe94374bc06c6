"""Customer moments (客户朋友圈) end to end against the sandbox over HTTP: compose from library items and
approve, media uploaded for moments, one add_moment_task followed until WeCom's job is done (invalid
senders and tags recorded), 45009 waited out, a worker killed between the call and its answer resumed
without a second task, and bad input refused with the field named."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import AuditEntry, Moment, MomentStatus, Staff
from bot.sandbox.api.moments import ledger
from bot.services.library import items
from bot.services.moments import compose, dispatch
from bot.services.moments import jobs as tasks
from bot.services.moments.compose import MomentConflict, MomentError
from bot.services.users.permissions import NotPermitted
from bot.wecom.errors import WeComUnavailable
from tests.conftest import child_env
from tests.services.library_helpers import MP4, png, tag, user

ROOT = Path(__file__).resolve().parents[2]


def _item(ops_id, kind, title="新品海报", **fields):
    files = {"image": ("p.png", png(title)), "video": ("v.mp4", MP4)}
    cover = ("c.png", png("cover")) if kind == "link" else None
    raw = {"kind": kind, "title": title, **fields}
    return items.save_item(raw, user(ops_id), file=files.get(kind), cover=cover).id


def _moment(app, roles, **fields):
    with app.app_context():
        images = [_item(roles["ops"], "image", f"海报{i}") for i in range(2)]
        raw = {"text": "新品上市，到店有礼", "attachments": images, "senders": {"userids": ["staff0201", "staff0301"]}}
        moment = compose.save_draft({**raw, **fields}, user(roles["ops"]))
        db.session.commit()
        return moment.id


def _approve(app, roles, moment_id):
    with app.app_context():
        compose.approve(db.session.get(Moment, moment_id), user(roles["boss"]))
        db.session.commit()


def calls(corp, endpoint):
    return corp.calls.count(endpoint)


def test_a_moment_is_drafted_approved_and_posted_once(app, corp, roles):
    with app.app_context():
        vip = tag("VIP")
    moment_id = _moment(app, roles, tag_ids=[vip])
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        with pytest.raises(NotPermitted):
            compose.approve(moment, user(roles["ops"]))  # operators draft; admins approve
        compose.submit(moment, user(roles["ops"]))
        db.session.commit()
    _approve(app, roles, moment_id)
    corp.users.pop("staff0301")  # left WeCom since: WeCom reports the sender invalid
    with app.app_context():
        assert tasks.dispatch_moment(moment_id) == {"status": "posted"}
        moment = db.session.get(Moment, moment_id)
        assert moment.moment_id and moment.invalid_senders == ["staff0301"] and moment.invalid_tags == []
        actions = set(db.session.scalars(select(AuditEntry.action)))
        assert {"save_moment", "submit_moment", "approve_moment"} <= actions
    assert calls(corp, "media/upload_attachment") == 2
    assert calls(corp, "externalcontact/add_moment_task") == 1
    assert calls(corp, "externalcontact/get_moment_task_result") >= 1
    (posted,) = ledger(corp).moments
    assert posted["moment_id"] == moment.moment_id and posted["visible_type"] == 0
    assert posted["text"]["content"] == "新品上市，到店有礼" and len(posted["image"]) == 2
    with app.app_context():  # done: a second dispatch asks nothing again
        tasks.dispatch_moment(moment_id)
    assert calls(corp, "externalcontact/add_moment_task") == 1


def test_a_link_and_a_video_are_posted_and_a_tag_wecom_no_longer_knows_is_reported(app, corp, roles):
    with app.app_context():
        link = _item(roles["ops"], "link", "会员日", url="https://example.com/day")
        video = _item(roles["ops"], "video", "上妆教程")
        vip = tag("VIP")
        db.session.commit()
    for group in corp.tag_groups.values():  # VIP deleted in WeCom, not yet synced to Siyu
        group["tag"] = [t for t in group["tag"] if t["id"] != vip]
    for attachments in ([link], [video]):
        moment_id = _moment(app, roles, attachments=attachments, tag_ids=[vip], senders={"everyone": True})
        _approve(app, roles, moment_id)
        with app.app_context():
            assert tasks.dispatch_moment(moment_id) == {"status": "posted"}
            assert db.session.get(Moment, moment_id).invalid_tags == [vip]
    link_row, video_row = ledger(corp).moments
    assert link_row["link"] == {"title": "会员日", "url": "https://example.com/day"}
    assert video_row["video"]["media_id"]


def test_45009_is_waited_out_and_a_refusal_is_recorded(app, corp, roles):
    moment_id = _moment(app, roles)
    _approve(app, roles, moment_id)
    corp.inject("externalcontact/add_moment_task", 45009)
    waits = []

    def sleep(seconds):  # the rate window passes (a poll's pause is a second)
        waits.append(seconds)
        redis_conn.client.delete("siyu:wecom:budget:blocked:externalcontact/add_moment_task")

    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        dispatch.dispatch(moment, sleep=sleep)
        db.session.commit()
        assert moment.status == MomentStatus.posted and waits and waits[0] >= 1
    assert calls(corp, "externalcontact/add_moment_task") == 2  # refused once (nothing made), then made
    refused = _moment(app, roles)
    _approve(app, roles, refused)
    corp.inject("externalcontact/add_moment_task", 41065)
    with app.app_context():
        assert tasks.dispatch_moment(refused) == {"status": "failed"}
        moment = db.session.get(Moment, refused)
        assert moment.error.startswith("41065") and moment.moment_id is None and moment.jobid is None


CHILD = """
import sys
from bot import create_app
from bot.jobs.context import bind_app
from bot.services.moments.jobs import dispatch_moment
app = create_app()
bind_app(app)
dispatch_moment(int(sys.argv[1]))
"""


def test_a_worker_killed_between_the_call_and_its_answer_does_not_post_twice(app, corp, roles):
    """The worst moment: WeCom has made the task, the worker dies before it records the job id."""
    other = _moment(app, roles)  # an earlier moment saying the same, already recorded: not adopted
    _approve(app, roles, other)
    with app.app_context():
        tasks.dispatch_moment(other)
    moment_id = _moment(app, roles)
    _approve(app, roles, moment_id)
    hold = corp.hold("externalcontact/add_moment_task")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(moment_id)], cwd=ROOT, env=child_env(app.config["SIYU"]))
    try:
        assert hold.reached.wait(60), "the dispatch never called add_moment_task"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        hold.release.set()
        if child.poll() is None:
            child.kill()
    assert calls(corp, "externalcontact/add_moment_task") == 2
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        assert moment.status == MomentStatus.dispatching and moment.called_at and moment.jobid is None
        assert tasks.due_moments(stale_after=timedelta(seconds=-1)) == [moment_id]
    redis_conn.client.delete(f"siyu:moment:{moment_id}")  # the dead worker's lock has lapsed
    deadline = time.monotonic() + 10
    while len(ledger(corp).jobs) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.1)  # WeCom's job finishes in about a second; then the moment is listed
    with app.app_context():
        assert tasks.dispatch_moment(moment_id) == {"status": "posted"}
        moment = db.session.get(Moment, moment_id)
        earlier = db.session.get(Moment, other)
    assert calls(corp, "externalcontact/add_moment_task") == 2  # adopted, not called again
    listed = [m["moment_id"] for m in ledger(corp).moments]
    assert sorted(listed) == sorted([earlier.moment_id, moment.moment_id]) and len(set(listed)) == 2


def test_a_call_that_never_reached_wecom_is_made_on_resume(app, corp, roles):
    moment_id = _moment(app, roles)
    _approve(app, roles, moment_id)
    corp.inject("externalcontact/add_moment_task", 500)  # no answer: in doubt
    with app.app_context():
        with pytest.raises(WeComUnavailable):
            tasks.dispatch_moment(moment_id)
        assert db.session.get(Moment, moment_id).called_at is not None
    with app.app_context():
        assert tasks.dispatch_moment(moment_id) == {"status": "posted"}
    assert calls(corp, "externalcontact/add_moment_task") == 2  # the first one made nothing
    assert len(ledger(corp).moments) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": "字" * 2001}, "text"),
        ({"text": "", "attachments": []}, "text"),
        ("mixed", "attachments"),
        ("ten_images", "attachments"),
        ({"tag_ids": ["et-nobody-knows"]}, "tag_ids"),
        ({"senders": {"userids": []}}, "senders"),
        ({"senders": {"store_ids": [999]}}, "senders"),
        ({"senders": {}}, "senders"),
    ],
)
def test_bad_input_is_refused_with_its_field(app, roles, change, field):
    with app.app_context():
        ops = user(roles["ops"])
        raw = {"text": "新品", "senders": {"everyone": True}}
        if change == "mixed":
            change = {"attachments": [_item(roles["ops"], "image"), _item(roles["ops"], "video")]}
        elif change == "ten_images":
            change = {"attachments": [_item(roles["ops"], "image", f"图{i}") for i in range(10)]}
        with pytest.raises(MomentError) as refused:
            compose.save_draft({**raw, **change}, ops)
        assert refused.value.field == field
        db.session.rollback()
        assert db.session.scalar(select(Moment.id)) is None


def test_a_store_manager_drafts_only_within_their_stores_and_edits_only_before_approval(app, roles):
    with app.app_context():
        mgr = user(roles["mgr2"])
        with pytest.raises(MomentError):
            compose.save_draft({"text": "新品", "senders": {"userids": ["staff0301"]}}, mgr)
        db.session.rollback()
        moment = compose.save_draft({"text": "新品", "senders": {"everyone": True}}, mgr)
        db.session.commit()
        asked = compose.senders_of(moment, mgr)
        assert asked and all(
            any(s.department_id == 2 for s in db.session.scalar(select(Staff).where(Staff.userid == u)).stores)
            for u in asked
        )
        assert compose.approve(moment, user(roles["boss"])) == len(asked)  # the manager's store only
        db.session.commit()
        with pytest.raises(MomentConflict):
            compose.save_draft({"text": "改", "senders": {"everyone": True}}, mgr, moment)


def test_a_tracked_link_goes_out_as_the_moments_radar_link_and_its_openers_are_named(
    app, client, corp, roles, sim, run_worker
):
    from urllib.parse import urlsplit

    from bot.models import RadarLink
    from bot.services.radar import tokens
    from tests.conftest import customers_of
    from tests.services.radar_helpers import TARGET, opens, through_oauth

    (reader,) = customers_of(app, sim, run_worker, ["staff0201"], 1)
    with app.app_context():
        link = _item(roles["ops"], "link", "会员日", url=TARGET, tracked=True)
        db.session.commit()
    moment_id = _moment(app, roles, attachments=[link], senders={"everyone": True})
    _approve(app, roles, moment_id)
    with app.app_context():
        assert tasks.dispatch_moment(moment_id) == {"status": "posted"}
    (posted,) = ledger(corp).moments
    url = posted["link"]["url"]
    with app.app_context():
        token = tokens.parse(urlsplit(url).path.rsplit("/", 1)[1])
        assert (token.kind, token.item_id, token.moment_id) == ("moment", link, moment_id)
        (row,) = db.session.scalars(select(RadarLink)).all()
        assert (row.kind, row.moment_id, row.staff_id) == ("moment", moment_id, None)
        moment = db.session.get(Moment, moment_id)
        # what a resumed dispatch compares with WeCom's list is what went out
        assert dispatch.said(moment) == dispatch.listed_said(posted)
    res, _ = through_oauth(client, urlsplit(url).path.rsplit("/", 1)[1], f"customer:{reader.external_userid}")
    assert res.headers["Location"] == TARGET
    run_worker()
    with app.app_context():
        (opened,) = opens()
        assert (opened.via, opened.visitor) == ("oauth", f"c:{reader.external_userid}")
        # its reach in the figures is the moment's: the customers who can see it, over the members who posted
        from bot.models import MomentMember, User
        from bot.services.customers.growth import window
        from bot.services.radar import reports

        db.session.add_all(
            [MomentMember(moment_id=moment_id, userid=u, published=True, reached=n) for u, n in (("a", 5), ("b", 3))]
        )
        db.session.commit()
        (row,) = reports.figures(db.session.get(User, roles["boss"]), window(7), by="item")
        assert (row.sends, row.openers) == (8, 1)
