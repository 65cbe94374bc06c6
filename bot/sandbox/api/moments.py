"""客户朋友圈 (WeCom doc 95094, 93333, 95098): attachments uploaded for moments, the asynchronous moment task
(status 1 → 2 → 3 over a poll or two, or a second of the corp's clock), its result with the senders and tags
WeCom did not know, and the corp's list of moments — with WeCom's limits and error codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from flask import request

from bot.sandbox.api.endpoints import Body, Endpoints, ok, require
from bot.sandbox.corp import ApiError, FakeCorp

ENDPOINTS = Endpoints()

MAX_TEXT = 2000
MAX_IMAGES = 9
MAX_BYTES = 10 * 1024 * 1024
#: moments a corp may create a minute (doc 95094, from a copy of the page; the errcode is the usual 45009)
PER_MINUTE = 10
#: a job is done after this many polls, or this many seconds of the corp's clock
POLLS_TO_FINISH = 2
JOB_SECONDS = 1.0
LIST_SPAN = 30 * 86400


@dataclass
class Job:
    jobid: str
    created: float
    moment: Body  # as get_moment_list shows it once the job is done
    result: Body
    polls: int = 0
    done: bool = False


@dataclass
class Ledger:
    jobs: dict[str, Job] = field(default_factory=dict)
    moments: list[Body] = field(default_factory=list)  # done, in creation order
    created: list[float] = field(default_factory=list)  # add_moment_task times, for the rate limit


_LEDGERS: WeakKeyDictionary[FakeCorp, Ledger] = WeakKeyDictionary()


def ledger(corp: FakeCorp) -> Ledger:
    if corp not in _LEDGERS:
        _LEDGERS[corp] = Ledger()
    return _LEDGERS[corp]


def _settle(corp: FakeCorp, job: Job) -> None:
    if not job.done and (job.polls >= POLLS_TO_FINISH or corp.clock() - job.created >= JOB_SECONDS):
        job.done = True
        ledger(corp).moments.append(job.moment)


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
    return ok(jobid=jobid)


@ENDPOINTS.route("externalcontact/get_moment_task_result")
def get_moment_task_result(corp: FakeCorp, body: Body) -> Body:
    require(body, "jobid")
    job = ledger(corp).jobs.get(str(body["jobid"]))
    if job is None or corp.clock() - job.created > 86400:  # a job id lives 24 hours
        raise ApiError(40058, "invalid jobid")
    job.polls += 1
    _settle(corp, job)
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
        _settle(corp, job)
    filter_type = int(body.get("filter_type", 2))
    rows = [m for m in counts.moments if start < m["create_time"] < end and filter_type in (2, m["create_type"])]
    offset = int(body.get("cursor") or 0)
    page = rows[offset : offset + limit]
    more = offset + limit < len(rows)
    return ok(next_cursor=str(offset + limit) if more else "", moment_list=page)
