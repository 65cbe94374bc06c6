"""The corp tag library changed from Siyu: WeCom first, then the mirror; refusals in words; customers' tags."""

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import FollowTag, Tag, TagGroup, User
from tests.admin.panel import sign_in
from tests.conftest import ApiClient, make_token, make_user


def _group(corp, name):
    return next(g for g in corp.tag_groups.values() if g["group_name"] == name)


def test_groups_and_tags_are_made_renamed_reordered_and_deleted_in_wecom_and_the_mirror(app, api, corp):
    res = api.post("/api/v1/tag-groups", {"name": "会员等级", "tags": ["银卡", "金卡"]})
    assert res.status_code == 201, res.get_json()
    group = res.get_json()
    assert [t["name"] for t in group["tags"]] == ["银卡", "金卡"]
    assert [t["name"] for t in _group(corp, "会员等级")["tag"]] == ["银卡", "金卡"]
    more = api.post("/api/v1/tags", {"group_id": group["id"], "names": ["钻石卡"]})
    assert more.status_code == 201 and more.get_json()["items"][0]["name"] == "钻石卡"
    gold = next(t["id"] for t in group["tags"] if t["name"] == "金卡")
    assert api.patch(f"/api/v1/tags/{gold}", {"name": "黄金卡", "order": 5}).status_code == 200
    assert api.patch(f"/api/v1/tag-groups/{group['id']}", {"name": "会员卡"}).status_code == 200
    listed = {g["name"]: g for g in api.get("/api/v1/tag-groups").get_json()["items"]}
    assert {t["name"] for t in listed["会员卡"]["tags"]} == {"银卡", "黄金卡", "钻石卡"}
    assert any(t["name"] == "黄金卡" and t["order"] == 5 for t in _group(corp, "会员卡")["tag"])
    assert api.delete(f"/api/v1/tags/{gold}").status_code == 200
    assert gold not in corp.tag_index()
    assert api.delete(f"/api/v1/tag-groups/{group['id']}").get_json()["deleted_tags"] == 2
    assert "会员卡" not in {g["name"] for g in api.get("/api/v1/tag-groups").get_json()["items"]}
    with app.app_context():
        assert db.session.scalar(select(TagGroup.deleted).where(TagGroup.group_id == group["id"])) is True
        assert all(db.session.scalars(select(Tag.deleted).where(Tag.group.has(group_id=group["id"]))))


@pytest.mark.parametrize(
    ("url", "body", "message"),
    [
        ("/api/v1/tag-groups", {"name": "客户等级", "tags": ["VIP"]}, "name: 同名标签已存在 (WeCom 40071)"),
        ("/api/v1/tag-groups", {"name": "", "tags": ["x"]}, "group: 名称为 1–30 个字符"),
        ("/api/v1/tag-groups", {"name": "g", "tags": []}, "name: 至少一个标签名"),
        ("/api/v1/tag-groups", {"name": "g", "tags": ["x" * 31]}, "tags[0]: String should have at most 30 characters"),
        ("/api/v1/tag-groups", {"name": "g", "tags": "VIP"}, "tags: Input should be a valid list"),
        ("/api/v1/tags", {"group_id": "no-such-group", "names": ["x"]}, "group: 标签组不存在"),
    ],
)
def test_refusals_are_400_with_the_field(api, corp, sim, url, body, message):
    res = api.post(url, body)
    assert res.status_code == 400 and res.get_json()["error"]["message"] == message


def test_the_3000_tag_cap_is_a_clear_message(api, corp):
    corp.inject("externalcontact/add_corp_tag", 40126)
    res = api.post("/api/v1/tag-groups", {"name": "新组", "tags": ["新"]})
    assert res.status_code == 400 and "3000" in res.get_json()["error"]["message"]


def test_a_customer_is_tagged_and_untagged_in_wecom_and_the_mirror(app, api, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    run_worker()
    vip = next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")
    res = api.post(f"/api/v1/customers/{contact.external_userid}/tags", {"add": [vip]})
    assert res.status_code == 200 and [t["tag_name"] for t in res.get_json()["tags"]] == ["VIP"]
    assert corp.contacts[contact.external_userid].follows["staff0201"].tag_ids == [vip]
    res = api.post(f"/api/v1/customers/{contact.external_userid}/tags", {"remove": [vip]})
    assert res.get_json()["tags"] == [] and corp.contacts[contact.external_userid].follows["staff0201"].tag_ids == []
    bad = api.post(f"/api/v1/customers/{contact.external_userid}/tags", {"add": ["'; DROP TABLE tags;--"]})
    assert bad.status_code == 400 and bad.get_json()["error"]["message"].startswith("tag:")
    assert api.post("/api/v1/customers/nobody/tags", {"add": [vip]}).status_code == 404


def test_deleting_a_tag_takes_it_off_customers(app, api, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    run_worker()
    vip = next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")
    api.post(f"/api/v1/customers/{contact.external_userid}/tags", {"add": [vip]})
    assert api.delete(f"/api/v1/tags/{vip}").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(FollowTag).where(FollowTag.tag_id == vip)) is None


def test_only_writers_change_the_library_and_scope_holds_for_customers(app, api, sim, corp, client, run_worker):
    from tests.conftest import make_token, make_user

    viewer = {"Authorization": f"Bearer {make_token(app, make_user(app, 'v', 'viewer')[0])}"}
    assert client.post("/api/v1/tag-groups", json={"name": "x", "tags": ["y"]}, headers=viewer).status_code == 403
    assert client.get("/api/v1/tag-groups", headers=viewer).status_code == 200
    contact, _ = sim.customer_adds(userid="staff0201")
    run_worker()
    other = {"Authorization": f"Bearer {make_token(app, make_user(app, 'm3', 'store_manager', [3])[0])}"}
    res = client.post(f"/api/v1/customers/{contact.external_userid}/tags", json={"add": []}, headers=other)
    assert res.status_code == 403


def _vip(corp):
    return next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")


def test_a_bulk_job_tags_a_segment_and_reports(app, api, sim, corp, run_worker):
    mine = [sim.customer_adds(userid="staff0201")[0] for _ in range(4)]
    sim.customer_adds(userid="staff0301")
    run_worker()
    rule = {"conditions": [{"type": "staff", "userids": ["staff0201"]}]}
    sid = api.post("/api/v1/segments", {"name": "静安", "rule": rule}).get_json()["id"]
    corp.inject("externalcontact/mark_tag", 84061)  # the first customer is refused
    res = api.post("/api/v1/tag-jobs", {"action": "add", "tag_ids": [_vip(corp)], "segment_id": sid})
    assert res.status_code == 202 and res.get_json()["total"] == 4
    run_worker()
    job = api.get(f"/api/v1/tag-jobs/{res.get_json()['id']}").get_json()
    assert (job["status"], job["done"], job["failed"]) == ("done", 3, 1)
    assert job["failures"][0]["external_userid"] == mine[0].external_userid and "84061" in job["failures"][0]["error"]
    tagged = [c for c in mine if _vip(corp) in corp.contacts[c.external_userid].follows["staff0201"].tag_ids]
    assert len(tagged) == 3
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(FollowTag).where(FollowTag.tag_id == _vip(corp))) == 3
    res = api.post(
        "/api/v1/tag-jobs", {"action": "remove", "tag_ids": [_vip(corp)], "external_userids": [mine[1].external_userid]}
    )
    run_worker()
    assert api.get(f"/api/v1/tag-jobs/{res.get_json()['id']}").get_json()["done"] == 1
    assert corp.contacts[mine[1].external_userid].follows["staff0201"].tag_ids == []


def test_a_killed_bulk_job_resumes_without_redoing_items(app, api, sim, corp, run_worker, monkeypatch):
    from contextlib import contextmanager

    from bot.models import TagJob, TagJobItem
    from bot.services import claims
    from bot.services.tags import bulk as tag_jobs
    from bot.services.tags.jobs import run_tag_job

    people = [sim.customer_adds(userid="staff0201")[0] for _ in range(5)]
    run_worker()
    monkeypatch.setattr(tag_jobs, "COMMIT_EVERY", 2)
    with app.app_context():
        job_id = tag_jobs.create_job(
            db.session.get(User, make_user(app, "ops2", "operator")[0]),
            "add",
            [_vip(corp)],
            external_userids=[p.external_userid for p in people],
        ).id
        db.session.commit()

    on_record = claims.on_record

    @contextmanager
    def on_record_then_die():
        with on_record():
            yield
        if db.session.get(TagJob, job_id).done >= 2:
            raise KeyboardInterrupt  # the worker process is killed once the first batch is on record

    monkeypatch.setattr(claims, "on_record", on_record_then_die)
    with app.app_context(), pytest.raises(KeyboardInterrupt):
        run_tag_job(job_id)
    monkeypatch.setattr(claims, "on_record", on_record)
    corp.calls.clear()
    with app.app_context():
        assert run_tag_job(job_id) == {"done": 5, "failed": 0}
        assert db.session.scalar(select(func.count()).where(TagJobItem.status == "pending")) == 0
    assert corp.calls.count("externalcontact/mark_tag") == 3  # only the items not yet done


def test_a_bulk_job_waits_out_the_rate_limit_with_what_it_did_on_record(app, api, sim, corp, run_worker):
    from bot.extensions import redis_conn
    from bot.models import TagJob, TagJobItem
    from bot.services.tags import bulk as tag_jobs

    people = [sim.customer_adds(userid="staff0201")[0] for _ in range(3)]
    run_worker()
    with app.app_context():
        job = tag_jobs.create_job(None, "add", [_vip(corp)], external_userids=[p.external_userid for p in people])
        db.session.commit()
        job_id = job.id
    corp.calls.clear()
    corp.inject("externalcontact/mark_tag", 45009)  # the first item: WeCom's rate limit
    seen = []

    def sleep(seconds):  # while it waits, the items done so far are on record
        with db.engine.connect() as other:
            seen.append(other.execute(select(TagJob.status).where(TagJob.id == job_id)).scalar())
        redis_conn.client.delete("siyu:wecom:budget:blocked:externalcontact/mark_tag")

    with app.app_context():
        job = tag_jobs.run_job(db.session.get(TagJob, job_id), sleep=sleep)
        db.session.commit()
        assert (job.status, job.done, job.failed) == ("done", 3, 0)
        assert db.session.scalar(select(func.count()).where(TagJobItem.status == "pending")) == 0
    assert seen == ["running"]
    assert corp.calls.count("externalcontact/mark_tag") == 4  # the refused call, then each item once


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "toggle", "tag_ids": ["x"], "external_userids": ["a"]}, "action:"),
        ({"action": "add", "tag_ids": ["no-such-tag"], "external_userids": ["a"]}, "tag_ids:"),
        ({"action": "add", "tag_ids": [], "external_userids": ["a"]}, "tag_ids:"),
        ({"action": "add", "tag_ids": ["VIP"]}, "target:"),
        ({"action": "add", "tag_ids": ["VIP"], "segment_id": 999}, "segment_id: no such segment"),
        (
            {"action": "add", "tag_ids": ["VIP"], "external_userids": "wm1"},
            "external_userids: Input should be a valid list",
        ),
    ],
)
def test_bad_bulk_jobs_are_400(api, corp, body, message):
    body = {**body, "tag_ids": [_vip(corp) if t == "VIP" else t for t in body["tag_ids"]]}
    res = api.post("/api/v1/tag-jobs", body)
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith(message)


def test_a_burst_of_tag_events_in_one_second_leaves_the_mirror_as_wecom_has_it(app, api, sim, corp, run_worker):
    from bot.sandbox.simulator import event_xml

    second = 1_790_000_000
    made = corp.add_tags({"group_name": "季节", "tag": [{"name": "春"}, {"name": "夏"}]})["tag_group"]
    spring, summer = (t["id"] for t in made["tag"])
    sim.deliver(event_xml(corp.corp_id, "change_external_tag", second, Id=spring, TagType="tag", ChangeType="create"))
    run_worker()
    for tag in made["tag"]:  # renamed and reordered in the console, in the same second
        if tag["id"] == spring:
            tag["name"], tag["order"] = "春季", 9
    sim.deliver(event_xml(corp.corp_id, "change_external_tag", second, Id=spring, TagType="tag", ChangeType="update"))
    sim.deliver(event_xml(corp.corp_id, "change_external_tag", second, Id="", ChangeType="shuffle"))
    run_worker()
    with app.app_context():
        assert db.session.scalar(select(Tag.name).where(Tag.tag_id == spring)) == "春季"
        assert db.session.scalar(select(Tag.order).where(Tag.tag_id == spring)) == 9
    corp.tag_groups.pop(made["group_id"])  # the whole group deleted: WeCom calls back for the group only
    sim.deliver(
        event_xml(
            corp.corp_id, "change_external_tag", second, Id=made["group_id"], TagType="tag_group", ChangeType="delete"
        )
    )
    run_worker()
    with app.app_context():
        rows = {t.tag_id: (t.name, t.order, t.deleted) for t in db.session.scalars(select(Tag))}
        assert rows[spring] == ("春季", 9, True) and rows[summer][2] is True
        assert db.session.scalar(select(TagGroup.deleted).where(TagGroup.group_id == made["group_id"])) is True
    listed = {g["name"] for g in api.get("/api/v1/tag-groups").get_json()["items"]}
    assert "季节" not in listed and "客户等级" in listed


def test_a_store_manager_sees_a_bulk_jobs_report_for_their_customers_only(app, api, sim, corp, client, run_worker):
    """The job's failures and counts, in the API and on the panel: their stores' customers only (issue 20)."""
    mine = sim.customer_adds(userid="staff0201")[0]
    theirs = [sim.customer_adds(userid="staff0301")[0] for _ in range(2)]
    run_worker()
    corp.inject("externalcontact/mark_tag", 84061, times=3)  # every one refused
    ids = [c.external_userid for c in [*theirs, mine]]
    res = api.post("/api/v1/tag-jobs", {"action": "add", "tag_ids": [_vip(corp)], "external_userids": ids})
    run_worker()
    job_id = res.get_json()["id"]
    everyone = api.get(f"/api/v1/tag-jobs/{job_id}").get_json()
    assert (everyone["total"], everyone["failed"], len(everyone["failures"])) == (3, 3, 3)
    manager_id, password = make_user(app, "jingan", "store_manager", stores=[2])
    manager = ApiClient(client, make_token(app, manager_id))
    scoped = manager.get(f"/api/v1/tag-jobs/{job_id}").get_json()
    assert (scoped["total"], scoped["done"], scoped["failed"]) == (1, 0, 1)
    assert [f["external_userid"] for f in scoped["failures"]] == [mine.external_userid]
    panel = app.test_client()
    assert sign_in(panel, "jingan", password).status_code == 302
    report = panel.get(f"/admin/tags/jobs/{job_id}").get_json()
    assert (report["total"], report["failed"]) == (1, 1)
    assert [f["external_userid"] for f in report["failures"]] == [mine.external_userid]
    page = panel.get("/admin/tags").get_data(as_text=True)
    assert '<td class="failed"><a' in page and f">{len(theirs) + 1}</a>" not in page
