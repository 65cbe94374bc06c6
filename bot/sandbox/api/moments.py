"""客户朋友圈 (WeCom doc 95094, 93333, 95098, 97612): attachments uploaded for moments, the asynchronous moment
task (status 1 → 2 → 3 over a poll or two, or a second of the corp's clock), its result with the senders and
tags WeCom did not know, the corp's list of moments, and per member: asked and posted (``get_moment_task``),
the customers it was meant for and the ones who can see it, likes and comments, and cancel — with WeCom's
limits and error codes. What WeCom keeps of them, and members posting, customers reacting and members' own
moments, are in ``bot.sandbox.moments``."""

from __future__ import annotations

from typing import Any

from flask import request

from bot.sandbox.api.endpoints import Body, Endpoints, ok, paged, require
from bot.sandbox.corp import ApiError, FakeCorp
from bot.sandbox.moments import Job, Post, ledger, post_of, settle

ENDPOINTS = Endpoints()

MAX_TEXT = 2000
MAX_IMAGES = 9
MAX_BYTES = 10 * 1024 * 1024
#: moments a corp may create a minute (doc 95094, from a copy of the page; the errcode is the usual 45009)
PER_MINUTE = 10
#: tasks whose job is not done yet beyond which WeCom answers 41078 (the code is documented, the number is
#: not: the sandbox's own choice)
IN_FLIGHT = 5
LIST_SPAN = 30 * 86400


def _resolve(corp: FakeCorp, users: list[str], departments: list[Any], tags: list[str]) -> dict[str, list[str]]:
    """doc 95094's visible_range: senders only → each posts to all their customers; tags only → the tagged
    customers' members post; both → the senders, to their tagged customers; neither → every member."""
    in_departments = {u for u, info in corp.users.items() if set(info.get("department") or []) & set(departments)}
    if users or departments:
        chosen = set(users) | in_departments
        senders = [u for u in corp.users if u in chosen]
    elif tags:
        senders = sorted(
            {u for c in corp.contacts.values() for u, f in c.follows.items() if set(f.tag_ids) & set(tags)}
            & set(corp.users)
        )
    else:
        senders = list(corp.users)
    visible: dict[str, list[str]] = {sender: [] for sender in senders}
    for c in corp.contacts.values():  # one pass over the customers, however many senders
        for userid, f in c.follows.items():
            if userid in visible and not f.deleted_by_customer and (not tags or set(f.tag_ids) & set(tags)):
                visible[userid].append(c.external_userid)
    return visible


@ENDPOINTS.route("media/upload_attachment")
def upload_attachment(corp: FakeCorp, body: Body) -> Body:
    upload = request.files.get("media")
    if upload is None:
        raise ApiError(40058, "missing media")
    content = upload.read()
    kind = request.args.get("media_type", "")
    if request.args.get("attachment_type") not in ("1", "2"):
        raise ApiError(40058, "attachment_type is 1 (moments) or 2 (product albums)")
    if kind not in ("image", "video") or (kind == "video" and content[4:8] != b"ftyp"):
        raise ApiError(41065 if kind not in ("image", "video") else 41090, "invalid attachment type or format")
    if len(content) <= 5 or len(content) > MAX_BYTES:
        raise ApiError(41080, "attachment size over the limit")
    media_id = corp.new_id("mom")
    corp.media[media_id] = content
    corp.media_uploaded_at[media_id] = corp.clock()
    return ok(type=kind, media_id=media_id, created_at=int(corp.clock()))


def _media(corp: FakeCorp, media_id: Any) -> str:
    if not media_id:
        raise ApiError(40058, "invalid msg")
    uploaded = corp.media_uploaded_at.get(str(media_id))
    if uploaded is None or corp.clock() - uploaded > 3 * 86400:
        raise ApiError(40007, "invalid media_id")
    return str(media_id)


def _attachments(corp: FakeCorp, raw: list[Body]) -> Body:
    """What get_moment_list shows of the attachments, each checked as add_moment_task checks it."""
    kinds = {a.get("msgtype") for a in raw}
    if len(kinds) > 1:
        raise ApiError(41065, "invalid attachments msgtype")
    kind = next(iter(kinds), None)
    if kind not in (None, "image", "video", "link"):
        raise ApiError(41065, "invalid attachments msgtype")
    if len(raw) > (MAX_IMAGES if kind == "image" else 1):
        raise ApiError(41064, "invalid attachments size")
    if kind == "image":
        return {"image": [{"media_id": _media(corp, a.get("image", {}).get("media_id"))} for a in raw]}
    if kind == "video":
        media_id = _media(corp, raw[0].get("video", {}).get("media_id"))
        return {"video": {"media_id": media_id, "thumb_media_id": media_id + "-thumb"}}
    if kind == "link":
        link = raw[0].get("link") or {}
        if not link.get("url") or len(str(link.get("title", "")).encode()) > 64:
            raise ApiError(40058, "invalid msg")
        _media(corp, link.get("media_id"))
        return {"link": {"title": link.get("title", ""), "url": link["url"]}}
    return {}


@ENDPOINTS.route("externalcontact/add_moment_task")
def add_moment_task(corp: FakeCorp, body: Body) -> Body:
    text = str((body.get("text") or {}).get("content") or "")
    if len(text) > MAX_TEXT:
        raise ApiError(40058, "invalid text size")  # doc 95094 gives the errmsg only; the code is UNCONFIRMED
    raw = list(body.get("attachments") or [])
    if not text and not raw:
        raise ApiError(41089, "text and attachments are both empty")
    shown = _attachments(corp, raw)
    counts, now = ledger(corp), corp.clock()
    for job in list(counts.jobs.values()):
        settle(corp, job)
    if sum(not job.done for job in counts.jobs.values()) >= IN_FLIGHT:
        raise ApiError(41078, "too many async moment tasks in flight")
    counts.created = [t for t in counts.created if now - t < 60]
    if len(counts.created) >= PER_MINUTE:
        raise ApiError(45009, "api freq out of limit")
    counts.created.append(now)
    visible = body.get("visible_range") or {}
    senders = (visible.get("sender_list") or {}).get("user_list") or []
    departments = (visible.get("sender_list") or {}).get("department_list") or []
    tags = (visible.get("external_contact_list") or {}).get("tag_list") or []
    known_tags = {t["id"] for g in corp.tag_groups.values() for t in g["tag"]}
    moment_id = corp.new_id("mom")
    moment = {
        "moment_id": moment_id,
        "create_time": int(now),
        "create_type": 0,
        "visible_type": 0 if tags else 1,
        "text": {"content": text},
        **shown,
    }
    result = ok(
        moment_id=moment_id,
        invalid_sender_list={
            "user_list": [u for u in senders if u not in corp.users],
            "department_list": [d for d in departments if int(d) not in corp.departments],
        },
        invalid_external_contact_list={"tag_list": [t for t in tags if t not in known_tags]},
    )
    jobid = corp.new_id("job")
    counts.jobs[jobid] = Job(jobid, now, moment, result)
    counts.pending[jobid] = Post(moment_id, _resolve(corp, list(senders), list(departments), list(tags)))
    return ok(jobid=jobid)


@ENDPOINTS.route("externalcontact/get_moment_task_result")
def get_moment_task_result(corp: FakeCorp, body: Body) -> Body:
    require(body, "jobid")
    job = ledger(corp).jobs.get(str(body["jobid"]))
    if job is None or corp.clock() - job.created > 86400:  # a job id lives 24 hours
        raise ApiError(40058, "invalid jobid")
    job.polls += 1
    settle(corp, job)
    if not job.done:
        return ok(status=2 if job.polls > 1 else 1, type="add_moment_task")
    return ok(status=3, type="add_moment_task", result=job.result)


@ENDPOINTS.route("externalcontact/get_moment_list")
def get_moment_list(corp: FakeCorp, body: Body) -> Body:
    require(body, "start_time", "end_time")
    start, end = int(body["start_time"]), int(body["end_time"])
    if not 0 < end - start <= LIST_SPAN:
        raise ApiError(40058, "the span of start_time and end_time is at most 30 days")
    limit = int(body.get("limit") or 20)
    if not 1 <= limit <= 20:
        raise ApiError(40058, "limit is 1–20")
    counts = ledger(corp)
    for job in list(counts.jobs.values()):
        settle(corp, job)
    filter_type = int(body.get("filter_type", 2))
    creator = str(body.get("creator") or "")
    rows = [
        m
        for m in counts.moments
        if start < m["create_time"] < end
        and filter_type in (2, m["create_type"])
        and (not creator or m.get("creator") == creator)
    ]
    offset = int(body.get("cursor") or 0)
    page = rows[offset : offset + limit]
    more = offset + limit < len(rows)
    return ok(next_cursor=str(offset + limit) if more else "", moment_list=page)


# -- per member (doc 93333) and cancel (doc 97612) -------------------------------------------------------


def _sender(post: Post, body: Body) -> str:
    require(body, "userid")
    userid = str(body["userid"])
    if userid not in post.visible:
        raise ApiError(41061, "moment not posted by this userid")
    return userid


def _limit(body: Body, default: int, most: int) -> Body:
    limit = int(body.get("limit") or default)
    return {**body, "limit": min(max(limit, 1), most)}  # doc 93333: the limit is clamped, not refused


@ENDPOINTS.route("externalcontact/get_moment_task")
def get_moment_task(corp: FakeCorp, body: Body) -> Body:
    post = post_of(corp, body)
    rows = [{"userid": u, "publish_status": 1 if u in post.published else 0} for u in post.visible]
    page, cursor = paged(rows, _limit(body, 500, 1000))
    return ok(task_list=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/get_moment_customer_list")
def get_moment_customer_list(corp: FakeCorp, body: Body) -> Body:
    post = post_of(corp, body)
    userid = _sender(post, body)
    rows = [{"userid": userid, "external_userid": e} for e in post.visible[userid]]
    page, cursor = paged(rows, _limit(body, 500, 1000))
    return ok(customer_list=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/get_moment_send_result")
def get_moment_send_result(corp: FakeCorp, body: Body) -> Body:
    post = post_of(corp, body)
    userid = _sender(post, body)
    if userid not in post.published:
        raise ApiError(41062, "corp moment not yet posted by this userid")
    rows = [{"external_userid": e} for e in post.seen.get(userid, [])]
    limit = int(_limit(body, 3000, 5000)["limit"])
    start = int(body.get("cursor") or 0)
    more = start + limit < len(rows)
    return ok(customer_list=rows[start : start + limit], next_cursor=str(start + limit) if more else "")


@ENDPOINTS.route("externalcontact/get_moment_comments")
def get_moment_comments(corp: FakeCorp, body: Body) -> Body:
    post = post_of(corp, body)
    userid = _sender(post, body)
    if userid not in post.published:
        raise ApiError(41062, "corp moment not yet posted by this userid")
    return ok(comment_list=list(post.comments.get(userid, [])), like_list=list(post.likes.get(userid, [])))


@ENDPOINTS.route("externalcontact/cancel_moment_task")
def cancel_moment_task(corp: FakeCorp, body: Body) -> Body:
    post_of(corp, body).cancelled = True  # what was posted stays; nobody else can post it now
    return ok()
