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
