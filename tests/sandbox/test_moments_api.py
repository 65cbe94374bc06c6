"""The sandbox's 客户朋友圈 endpoints over HTTP, through Siyu's client: WeCom's limits and error codes for
moment attachments and tasks, the asynchronous job, and the corp's list of moments."""

import time

import pytest

from bot.services.clients import contact_api
from bot.wecom.errors import WeComError
from tests.services.library_helpers import MP4, png


@pytest.fixture
def api(app, corp, sim):
    with app.app_context():
        yield contact_api()


def _image(api):
    return api.upload_attachment("image", "p.png", png(), "image/png")


@pytest.mark.parametrize(
    ("kind", "content", "errcode"),
    [("file", b"%PDF-1.4 hello", 41065), ("video", png(), 41090), ("image", b"tiny", 41080)],
)
def test_upload_attachment_takes_images_and_mp4_videos_only(api, kind, content, errcode):
    with pytest.raises(WeComError) as refused:
        api.upload_attachment(kind, "x", content, "application/octet-stream")
    assert refused.value.errcode == errcode
    assert api.upload_attachment("video", "v.mp4", MP4, "video/mp4").startswith("mom")


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ("mixed", 41065),
        ("ten_images", 41064),
        ({"text": {"content": "字" * 2001}}, 40058),
        ({}, 41089),
        ({"attachments": [{"msgtype": "image", "image": {"media_id": "never-uploaded"}}]}, 40007),
        ({"attachments": [{"msgtype": "link", "link": {"title": "t", "media_id": "x"}}]}, 40058),
    ],
)
def test_add_moment_task_refuses_what_wecom_refuses(api, body, errcode):
    if body == "mixed":
        video = api.upload_attachment("video", "v.mp4", MP4, "video/mp4")
        body = {
            "attachments": [
                {"msgtype": "image", "image": {"media_id": _image(api)}},
                {"msgtype": "video", "video": {"media_id": video}},
            ]
        }
    elif body == "ten_images":
        media_id = _image(api)
        body = {"attachments": [{"msgtype": "image", "image": {"media_id": media_id}}] * 10}
    with pytest.raises(WeComError) as refused:
        api.add_moment_task(body)
    assert refused.value.errcode == errcode


def test_a_task_is_done_after_a_poll_or_two_and_then_listed(api, corp):
    body = {
        "text": {"content": "新品上市"},
        "attachments": [{"msgtype": "image", "image": {"media_id": _image(api)}}],
        "visible_range": {"sender_list": {"user_list": ["staff0201", "ghost"]}},
    }
    started = int(time.time()) - 1
    jobid = api.add_moment_task(body)
    first = api.get_moment_task_result(jobid)
    assert first["status"] in (1, 3)
    answer = first if first["status"] == 3 else api.get_moment_task_result(jobid)
    assert answer["status"] == 3
    result = answer["result"]
    assert result["invalid_sender_list"]["user_list"] == ["ghost"]
    (listed,) = api.list_moments(started, int(time.time()) + 1)
    assert listed["moment_id"] == result["moment_id"] and listed["create_type"] == 0 and "creator" not in listed
    assert listed["visible_type"] == 1 and listed["text"]["content"] == "新品上市"
    assert list(api.list_moments(started, int(time.time()) + 1, filter_type=1)) == []
    with pytest.raises(WeComError) as refused:
        list(api.list_moments(started, started + 31 * 86400))
    assert refused.value.errcode == 40058
    with pytest.raises(WeComError):
        api.get_moment_task_result("no-such-job")


def _made(api, corp, visible):
    """A text moment with ``visible_range``, its job followed to the end: WeCom's moment id."""
    jobid = api.add_moment_task({"text": {"content": "新品"}, "visible_range": visible})
    answer = api.get_moment_task_result(jobid)
    answer = answer if answer["status"] == 3 else api.get_moment_task_result(jobid)
    return answer["result"]["moment_id"]


def test_visible_range_resolves_senders_and_tags_and_members_post_and_react(api, corp, sim):
    from bot.sandbox.corp import ApiError
    from bot.sandbox.moments import post_moment, react_to_moment

    mine = [sim.customer_adds(userid="staff0201")[0].external_userid for _ in range(2)]
    other = sim.customer_adds(userid="staff0301")[0].external_userid
    tag_id = next(t["id"] for g in corp.tag_groups.values() for t in g["tag"])
    corp.contacts[mine[0]].follows["staff0201"].tag_ids = [tag_id]
    everyone = _made(api, corp, {})
    assert {r["userid"] for r in api.get_moment_task(everyone)} == set(corp.users)  # neither: every member
    tagged = _made(api, corp, {"external_contact_list": {"tag_list": [tag_id]}})
    assert [r["userid"] for r in api.get_moment_task(tagged)] == ["staff0201"]  # tags only: their members
    both = _made(api, corp, {"sender_list": {"user_list": ["staff0201", "staff0301"]}})
    assert [r["external_userid"] for r in api.get_moment_customer_list(both, "staff0201")] == mine
    assert [r["external_userid"] for r in api.get_moment_customer_list(both, "staff0301")] == [other]
    with pytest.raises(WeComError) as refused:
        list(api.get_moment_send_result(both, "staff0201"))
    assert refused.value.errcode == 41062  # not posted yet
    assert post_moment(corp, both, "staff0201") == mine
    assert [r["publish_status"] for r in api.get_moment_task(both)] == [1, 0]
    react_to_moment(corp, both, "staff0201", mine[1], "comment")
    react_to_moment(corp, both, "staff0201", "staff0301", "like")
    comments = api.get_moment_comments(both, "staff0201")
    assert [c["external_userid"] for c in comments["comment_list"]] == [mine[1]]
    assert [(lk.get("userid"), lk.get("external_userid")) for lk in comments["like_list"]] == [("staff0301", None)]
    assert [r["external_userid"] for r in api.get_moment_send_result(both, "staff0201")] == mine
    api.cancel_moment_task(both)
    with pytest.raises(ApiError):  # WeCom no longer lets them post
        post_moment(corp, both, "staff0301")
    assert post_moment(corp, both, "staff0201") == mine  # what was posted stays


@pytest.mark.parametrize(
    ("path", "body", "errcode"),
    [
        ("externalcontact/get_moment_task", {}, 41059),
        ("externalcontact/get_moment_task", {"moment_id": "mom-nobody"}, 41060),
        ("externalcontact/get_moment_customer_list", {"moment_id": "MADE", "userid": "staff0202x"}, 41061),
        ("externalcontact/get_moment_comments", {"moment_id": "MADE", "userid": "staff0201"}, 41062),
        ("externalcontact/cancel_moment_task", {"moment_id": "mom-nobody"}, 41060),
    ],
)
def test_the_per_member_reads_answer_wecoms_error_codes(api, corp, path, body, errcode):
    made = _made(api, corp, {"sender_list": {"user_list": ["staff0201"]}})
    body = {k: made if v == "MADE" else v for k, v in body.items()}
    with pytest.raises(WeComError) as refused:
        api.post(path, data=body)
    assert refused.value.errcode == errcode


def test_a_page_of_get_moment_task_is_clamped_to_1000_and_members_own_moments_are_listed(api, corp):
    from bot.sandbox.moments import post_own_moment

    made = _made(api, corp, {})
    page = api.post("externalcontact/get_moment_task", data={"moment_id": made, "limit": 5000})
    assert len(page["task_list"]) == len(corp.users) and page["next_cursor"] == ""
    own = post_own_moment(corp, "staff0201", "我的日常")
    now = int(time.time())
    (listed,) = api.list_member_moments(now - 60, now + 60)
    assert listed["moment_id"] == own and listed["creator"] == "staff0201" and listed["create_type"] == 1


def test_too_many_tasks_in_flight_answer_41078(api, corp):
    from bot.sandbox.api.moments import IN_FLIGHT

    now = corp.clock()
    corp.clock = lambda: now  # the corp's clock stands still: no job finishes by itself
    jobs = [api.add_moment_task({"text": {"content": f"第 {i} 条"}}) for i in range(IN_FLIGHT)]
    with pytest.raises(WeComError) as refused:
        api.add_moment_task({"text": {"content": "再一条"}})
    assert refused.value.errcode == 41078
    api.get_moment_task_result(jobs[0])
    assert api.get_moment_task_result(jobs[0])["status"] == 3  # done after a poll or two: room for one more
    assert api.add_moment_task({"text": {"content": "再一条"}})
