"""The fake WeCom HTTP API: the endpoints Siyu calls, answering as WeCom documents them.

Served on loopback (``flask --app wsgi sandbox``, or a thread of ``flask --app wsgi dev`` and of the
tests). Test and operator controls live under ``/sandbox/`` (faults, token expiry, state dumps).
"""

from __future__ import annotations

import io
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import qrcode
from flask import Flask, Response, request

from bot.sandbox.corp import LATE, TIMEOUT, TIMEOUT_SECONDS, ApiError, FakeCorp, MassTask
from bot.sandbox.simulator import Simulator

Body = dict[str, Any]
Endpoint = Callable[[FakeCorp, Body], Body]
ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(path: str) -> Callable[[Endpoint], Endpoint]:
    def register(func: Endpoint) -> Endpoint:
        ENDPOINTS[path] = func
        return func

    return register


def _ok(**data: Any) -> Body:
    return {"errcode": 0, "errmsg": "ok", **data}


def _require(body: Body, *names: str) -> None:
    for name in names:
        if body.get(name) in (None, "", []):
            raise ApiError(40058, f"missing parameter: {name}")


# -- directory (doc path/90208, path/90201) ------------------------------------------------------


@endpoint("department/list")
def department_list(corp: FakeCorp, body: Body) -> Body:
    return _ok(department=list(corp.departments.values()))


@endpoint("user/list")
def user_list(corp: FakeCorp, body: Body) -> Body:
    dep = int(body.get("department_id", 0) or 0)
    if dep not in corp.departments:
        raise ApiError(60123, "invalid department")
    return _ok(userlist=[u for u in corp.users.values() if dep in u["department"]])


# -- customers (doc path/92113, path/92114, path/96316) ------------------------------------------


@endpoint("externalcontact/get_follow_user_list")
def follow_user_list(corp: FakeCorp, body: Body) -> Body:
    return _ok(follow_user=sorted(corp.users))


@endpoint("externalcontact/list")
def contact_list(corp: FakeCorp, body: Body) -> Body:
    userid = body.get("userid", "")
    ids = [c.external_userid for c in corp.contacts.values() if userid in c.follows]
    return _ok(external_userid=ids)


@endpoint("externalcontact/get")
def contact_get(corp: FakeCorp, body: Body) -> Body:
    _require(body, "external_userid")
    return _ok(**corp.contact_json(body["external_userid"]))


@endpoint("externalcontact/batch/get_by_user")
def batch_get_by_user(corp: FakeCorp, body: Body) -> Body:
    users = body.get("userid_list") or []
    if not users or len(users) > 100:
        raise ApiError(40058, "userid_list must hold 1 to 100 members")
    limit = int(body.get("limit") or 50)
    if not 1 <= limit <= 100:
        raise ApiError(40058, "limit is 1 to 100")
    wanted = set(users)
    pairs = [
        (contact, follow)
        for contact in corp.contacts.values()
        for follow in contact.follows.values()
        if follow.userid in wanted  # one-sided relations (the customer deleted the member) stay listed
    ]
    # The cursor is opaque to callers; here it is the offset into a stable order.
    try:
        start = int(str(body.get("cursor") or "0"), 16)
    except ValueError:
        raise ApiError(40058, "invalid cursor") from None
    page = pairs[start : start + limit]
    items = [
        {
            "external_contact": corp.contact_json(contact.external_userid)["external_contact"],
            "follow_info": {
                "userid": follow.userid,
                "remark": follow.remark,
                "description": follow.description,
                "state": follow.state,
                "createtime": follow.createtime,
                "tag_id": list(follow.tag_ids),
                "add_way": follow.add_way,
                "oper_userid": follow.oper_userid or contact.external_userid,
            },
        }
        for contact, follow in page
    ]
    more = start + limit < len(pairs)
    return _ok(external_contact_list=items, next_cursor=format(start + limit, "x") if more else "")


@endpoint("externalcontact/remark")
def remark(corp: FakeCorp, body: Body) -> Body:
    _require(body, "userid", "external_userid")
    if len(str(body.get("remark", ""))) > 20:
        raise ApiError(40058, "remark longer than 20 characters")
    contact = corp.contacts.get(body["external_userid"])
    follow = contact.follows.get(body["userid"]) if contact else None
    if follow is None:
        raise ApiError(84061, "not external contact")
    if "remark" in body:
        follow.remark = str(body["remark"])
    return _ok()


# -- contact ways (「联系我」, doc path/92228) ----------------------------------------------------


@endpoint("externalcontact/add_contact_way")
def add_contact_way(corp: FakeCorp, body: Body) -> Body:
    _require(body, "type", "scene")
    if len(str(body.get("state", ""))) > 30:
        raise ApiError(40058, "state longer than 30 characters")
    users = body.get("user") or []
    if int(body["type"]) == 1 and len(users) != 1:
        raise ApiError(40058, "a single-member contact way names exactly one user")
    for userid in users:
        if userid not in corp.users:
            raise ApiError(60111, f"userid not found: {userid}")
    config_id = corp.new_id("cw")
    # The sandbox serves the code's image itself; the QR in it points at /sandbox/scan/<config_id>.
    way = {**body, "config_id": config_id, "qr_code": f"{request.url_root}sandbox/qr/{config_id}.png"}
    corp.contact_ways[config_id] = way
    return _ok(config_id=config_id, qr_code=way["qr_code"])


@endpoint("externalcontact/get_contact_way")
def get_contact_way(corp: FakeCorp, body: Body) -> Body:
    way = corp.contact_ways.get(body.get("config_id", ""))
    if way is None:
        raise ApiError(41044, "invalid config_id")
    return _ok(contact_way=way)


@endpoint("externalcontact/update_contact_way")
def update_contact_way(corp: FakeCorp, body: Body) -> Body:
    way = corp.contact_ways.get(body.get("config_id", ""))
    if way is None:
        raise ApiError(41044, "invalid config_id")
    way.update({k: v for k, v in body.items() if k != "config_id"})
    return _ok()


@endpoint("externalcontact/del_contact_way")
def del_contact_way(corp: FakeCorp, body: Body) -> Body:
    if corp.contact_ways.pop(body.get("config_id", ""), None) is None:
        raise ApiError(41044, "invalid config_id")
    return _ok()


@endpoint("externalcontact/list_contact_way")
def list_contact_way(corp: FakeCorp, body: Body) -> Body:
    return _ok(contact_way=[{"config_id": c} for c in corp.contact_ways], next_cursor="")


# -- welcome messages, tags ------------------------------------------------------------------------


@endpoint("externalcontact/send_welcome_msg")
def send_welcome_msg(corp: FakeCorp, body: Body) -> Body:
    corp.send_welcome(body)
    return _ok()


@endpoint("externalcontact/get_corp_tag_list")
def get_corp_tag_list(corp: FakeCorp, body: Body) -> Body:
    return _ok(tag_group=corp.list_tags(body))


@endpoint("externalcontact/add_corp_tag")
def add_corp_tag(corp: FakeCorp, body: Body) -> Body:
    return _ok(**corp.add_tags(body))


@endpoint("externalcontact/edit_corp_tag")
def edit_corp_tag(corp: FakeCorp, body: Body) -> Body:
    _require(body, "id")
    for group in corp.tag_groups.values():
        if group["group_id"] == body["id"]:
            group["group_name"] = body.get("name", group["group_name"])
            group["order"] = int(body.get("order", group["order"]))
            return _ok()
        for tag in group["tag"]:
            if tag["id"] == body["id"]:
                tag["name"] = body.get("name", tag["name"])
                tag["order"] = int(body.get("order", tag["order"]))
                return _ok()
    raise ApiError(40068, "invalid tag id")


@endpoint("externalcontact/del_corp_tag")
def del_corp_tag(corp: FakeCorp, body: Body) -> Body:
    tag_ids, group_ids = set(body.get("tag_id") or []), set(body.get("group_id") or [])
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id and group_id are both empty")
    for gid in group_ids:
        corp.tag_groups.pop(gid, None)
    for group in list(corp.tag_groups.values()):
        group["tag"] = [t for t in group["tag"] if t["id"] not in tag_ids]
        if not group["tag"]:  # deleting every tag of a group deletes the group
            corp.tag_groups.pop(group["group_id"], None)
    return _ok()


@endpoint("externalcontact/mark_tag")
def mark_tag(corp: FakeCorp, body: Body) -> Body:
    _require(body, "userid", "external_userid")
    add, remove = body.get("add_tag") or [], body.get("remove_tag") or []
    if not add and not remove:
        raise ApiError(40058, "add_tag and remove_tag are both empty")
    contact = corp.contacts.get(body["external_userid"])
    follow = contact.follows.get(body["userid"]) if contact else None
    if follow is None:
        raise ApiError(84061, "not external contact")
    known = corp.tag_index()
    for tag in add + remove:
        if tag not in known:
            raise ApiError(40068, f"invalid tag id: {tag}")
    follow.tag_ids = [t for t in follow.tag_ids if t not in remove] + [t for t in add if t not in follow.tag_ids]
    return _ok()


# -- mass sends (doc path/92135) ------------------------------------------------------------------


def _mass_content(corp: FakeCorp, body: Body) -> None:
    text = (body.get("text") or {}).get("content", "")
    if len(text.encode()) > 4000:
        raise ApiError(40058, "text longer than 4000 bytes")
    if len(body.get("attachments") or []) > 9:
        raise ApiError(40058, "more than 9 attachments")
    if not text and not body.get("attachments"):
        raise ApiError(41048, "no message content")
    for attachment in body.get("attachments") or []:
        kind = attachment.get("msgtype")
        media_id = (attachment.get(kind) or {}).get("pic_media_id" if kind == "miniprogram" else "media_id")
        if kind in ("image", "video", "file", "miniprogram") and media_id not in corp.media:
            raise ApiError(40007, "invalid media_id")


@endpoint("externalcontact/add_msg_template")
def add_msg_template(corp: FakeCorp, body: Body) -> Body:
    chat_type = body.get("chat_type", "single")
    sender = body.get("sender") or ""
    if chat_type == "group":
        # To group chats: ≤ 2000 chat ids, the sender required; a chat the sender does not own fails.
        recipients = list(body.get("chat_id_list") or [])
        if not sender:
            raise ApiError(40058, "sender is required for chat_type group")
        if len(recipients) > 2000:
            raise ApiError(40058, "chat_id_list holds more than 2000 ids")
        _mass_content(corp, body)

        def sendable(recipient: str) -> bool:
            group = corp.groups.get(recipient)
            return group is not None and not group.dismissed and group.owner == sender

    elif chat_type == "single":
        recipients = list(body.get("external_userid") or [])
        if len(recipients) > 10000:
            raise ApiError(40058, "external_userid holds more than 10000 ids")
        _mass_content(corp, body)

        def sendable(recipient: str) -> bool:
            contact = corp.contacts.get(recipient)
            return contact is not None and (not sender or sender in contact.follows)

    else:
        raise ApiError(40058, "chat_type is single or group")
    fail_list = [r for r in recipients if not sendable(r)]
    ok = [r for r in recipients if r not in fail_list]
    if not ok:
        raise ApiError(41048, "no customer to send to")
    msgid = corp.new_id("msg")
    corp.mass_tasks[msgid] = MassTask(msgid, sender, ok, body, corp.clock())
    return _ok(fail_list=fail_list, msgid=msgid)


def _task(corp: FakeCorp, body: Body) -> MassTask:
    task = corp.mass_tasks.get(body.get("msgid", ""))
    if task is None:
        raise ApiError(41063, "msgid not found")
    return task


def _page(rows: list[Body], body: Body, default: int = 500) -> tuple[list[Body], str]:
    """WeCom's cursor paging: ``limit`` (≤ 1000) rows from ``cursor`` (here an offset)."""
    limit = int(body.get("limit") or default)
    if not 1 <= limit <= 1000:
        raise ApiError(40058, "limit is 1–1000")
    start = int(body.get("cursor") or 0)
    end = start + limit
    return rows[start:end], str(end) if end < len(rows) else ""


@endpoint("externalcontact/get_groupmsg_list_v2")
def get_groupmsg_list_v2(corp: FakeCorp, body: Body) -> Body:
    start, end = int(body.get("start_time") or 0), int(body.get("end_time") or 0)
    if not start or not end or end < start or end - start > 31 * 86400:
        raise ApiError(40058, "start_time/end_time: a range of at most a month")
    creator = body.get("creator") or ""
    chat_type = body.get("chat_type") or "single"
    rows = [
        {"msgid": t.msgid, "creator": t.sender, "create_time": str(int(t.created_at)), "create_type": 0}
        for t in corp.mass_tasks.values()
        if start <= t.created_at <= end and (not creator or t.sender == creator) and t.chat_type == chat_type
    ]
    page, cursor = _page(rows, body, 50)
    return _ok(group_msg_list=page, next_cursor=cursor)


@endpoint("externalcontact/get_groupmsg_task")
def get_groupmsg_task(corp: FakeCorp, body: Body) -> Body:
    task = _task(corp, body)
    rows = [
        {
            "userid": task.sender,
            "status": 2 if task.confirmed else 0,
            "send_time": int(task.confirmed_at) if task.confirmed else 0,
        }
    ]
    page, cursor = _page(rows, body)
    return _ok(task_list=page, next_cursor=cursor)


@endpoint("externalcontact/get_groupmsg_send_result")
def get_groupmsg_send_result(corp: FakeCorp, body: Body) -> Body:
    task = _task(corp, body)
    key = "chat_id" if task.chat_type == "group" else "external_userid"
    rows = [
        {key: r, "userid": task.sender, "status": task.results.get(r, 0)}
        for r in task.recipients
        if body.get("userid") in (None, "", task.sender)
    ]
    page, cursor = _page(rows, body)
    return _ok(send_list=page, next_cursor=cursor)


@endpoint("externalcontact/cancel_groupmsg_send")
def cancel_groupmsg_send(corp: FakeCorp, body: Body) -> Body:
    _task(corp, body).cancelled = True
    return _ok()


@endpoint("externalcontact/remind_groupmsg_send")
def remind_groupmsg_send(corp: FakeCorp, body: Body) -> Body:
    task = _task(corp, body)
    now = corp.clock()
    recent = [t for t in task.reminders if now - t < 86400]
    if len(recent) >= 3:
        # WeCom's doc 97610 names no errcode for a fourth reminder within 24 h: 41066 is the sandbox's own choice.
        raise ApiError(41066, "reminded 3 times in 24 hours")
    task.reminders = [*recent, now]
    return _ok()


def confirm_mass_task(corp: FakeCorp, msgid: str) -> MassTask:
    """The member taps "send" in their client: deliver, within each customer's cap."""
    with corp.lock:
        task = corp.mass_tasks[msgid]
        if task.confirmed or task.cancelled:
            return task
        task.confirmed = True
        now = corp.clock()
        task.confirmed_at = now
        for r in task.recipients:
            if task.chat_type == "group":
                group = corp.groups.get(r)
                if group is None or group.dismissed:
                    task.results[r] = 2  # the group is gone
                    continue
            elif (contact := corp.contacts.get(r)) is None or task.sender not in contact.follows:
                task.results[r] = 2  # no longer a friend
                continue
            received = corp.mass_received.setdefault(r, deque())
            while received and now - received[0] > corp.mass_cap_period:
                received.popleft()
            if len(received) >= corp.mass_cap:
                task.results[r] = 3  # already received its quota of corp mass messages
            else:
                received.append(now)
                task.results[r] = 1
        return task


# -- customer groups (doc path/92120, path/92122) and join codes (doc path/92229) --------------------


@endpoint("externalcontact/groupchat/list")
def groupchat_list(corp: FakeCorp, body: Body) -> Body:
    if not body.get("limit"):
        raise ApiError(40058, "limit is required")
    owners = (body.get("owner_filter") or {}).get("userid_list") or []
    if len(owners) > 100:
        raise ApiError(40058, "owner_filter holds more than 100 members")
    if not owners and len(corp.users) > 1000:
        raise ApiError(81017, "too many members: filter by owner")
    rows = [
        {"chat_id": g.chat_id, "status": 0}
        for g in corp.groups.values()
        if not g.dismissed and (not owners or g.owner in owners)
    ]
    page, cursor = _page(rows, body)
    return _ok(group_chat_list=page, next_cursor=cursor)


@endpoint("externalcontact/groupchat/get")
def groupchat_get(corp: FakeCorp, body: Body) -> Body:
    _require(body, "chat_id")
    return _ok(group_chat=corp.group_json(str(body["chat_id"]), bool(body.get("need_name"))))


def _join_way_fields(corp: FakeCorp, body: Body) -> Body:
    _require(body, "scene", "chat_id_list")
    if int(body["scene"]) not in (1, 2):
        raise ApiError(40058, "scene is 1 or 2")
    chats = list(body["chat_id_list"])
    if len(chats) > 5:
        raise ApiError(40058, "chat_id_list holds more than 5 groups")
    for chat_id in chats:
        if chat_id not in corp.groups or corp.groups[chat_id].dismissed:
            raise ApiError(40050, f"chat_id not exist: {chat_id}")
    if len(str(body.get("state", ""))) > 30:
        raise ApiError(40058, "state longer than 30 characters")
    if len(str(body.get("room_base_name", ""))) > 40:
        raise ApiError(40058, "room_base_name longer than 40 characters")
    keys = ("scene", "auto_create_room", "room_base_name", "room_base_id", "state")
    fields: Body = {k: body[k] for k in keys if k in body}
    return {**fields, "remark": str(body.get("remark", ""))[:30], "chat_id_list": chats}


def _join_way(corp: FakeCorp, body: Body) -> Body:
    way = corp.join_ways.get(str(body.get("config_id", "")))
    if way is None:
        # WeCom's doc 92229 names no errcode for an unknown join code; 41044 (as for contact ways) is the sandbox's.
        raise ApiError(41044, "invalid config_id")
    return way


@endpoint("externalcontact/groupchat/add_join_way")
def add_join_way(corp: FakeCorp, body: Body) -> Body:
    fields = _join_way_fields(corp, body)
    config_id = corp.new_id("jw")
    qr_code = f"{request.url_root}sandbox/join-qr/{config_id}.png" if int(fields["scene"]) == 2 else ""
    corp.join_ways[config_id] = {"auto_create_room": 1, **fields, "config_id": config_id, "qr_code": qr_code}
    return _ok(config_id=config_id)


@endpoint("externalcontact/groupchat/get_join_way")
def get_join_way(corp: FakeCorp, body: Body) -> Body:
    return _ok(join_way=dict(_join_way(corp, body)))


@endpoint("externalcontact/groupchat/update_join_way")
def update_join_way(corp: FakeCorp, body: Body) -> Body:
    way = _join_way(corp, body)
    fields = _join_way_fields(corp, body)
    way.clear()  # an update overwrites the whole code
    way.update({"auto_create_room": 1, **fields, "config_id": body["config_id"]})
    way["qr_code"] = f"{request.url_root}sandbox/join-qr/{body['config_id']}.png" if int(fields["scene"]) == 2 else ""
    return _ok()


@endpoint("externalcontact/groupchat/del_join_way")
def del_join_way(corp: FakeCorp, body: Body) -> Body:
    corp.join_ways.pop(str(_join_way(corp, body)["config_id"]))
    return _ok()


# -- media and app messages (doc path/90253, path/90236) -------------------------------------------


@endpoint("media/upload")
def media_upload(corp: FakeCorp, body: Body) -> Body:
    upload = request.files.get("media")
    if upload is None:
        raise ApiError(40058, "missing media")
    content = upload.read()
    kind = request.args.get("type", "")
    if kind not in ("image", "voice", "video", "file"):
        raise ApiError(40004, "invalid media type")
    if len(content) <= 5 or (kind == "image" and len(content) > 10 * 1024 * 1024):
        raise ApiError(40006, "invalid media size")
    media_id = corp.new_id("media")
    corp.media[media_id] = content
    return _ok(type=kind, media_id=media_id, created_at=str(int(corp.clock())))


@endpoint("message/send")
def message_send(corp: FakeCorp, body: Body) -> Body:
    users = [u for u in str(body.get("touser", "")).split("|") if u]
    invalid = [u for u in users if u not in corp.users]
    if users and len(invalid) == len(users):
        raise ApiError(81013, "all recipients invalid")
    if body.get("msgtype") == "image" and body.get("image", {}).get("media_id") not in corp.media:
        raise ApiError(40007, "invalid media_id")
    text = body.get("text", {}).get("content", "")
    if len(text.encode()) > 2048:
        raise ApiError(45002, "content over 2048 bytes")
    # enable_duplicate_check: the same content to the same members within the interval is not delivered.
    key = (body.get("touser", ""), json.dumps(body.get("text") or body.get("textcard") or {}, sort_keys=True))
    window = float(body.get("duplicate_check_interval", 1800))
    last = corp.app_message_times.get(key)
    if body.get("enable_duplicate_check") and last is not None and corp.clock() - last < window:
        return _ok(invaliduser="|".join(invalid), msgid=corp.new_id("am"))
    corp.app_message_times[key] = corp.clock()
    corp.app_messages.append(dict(body))
    return _ok(invaliduser="|".join(invalid), msgid=corp.new_id("am"))


# -- the app ---------------------------------------------------------------------------------------


def qr_png(url: str) -> Response:
    """A QR code of ``url`` as PNG: what WeCom's code images are, and what a scan opens."""
    image = qrcode.make(url, box_size=8, border=2)
    out = io.BytesIO()
    image.save(out)
    return Response(out.getvalue(), mimetype="image/png")


def create_fake_wecom(corp: FakeCorp, simulator: Simulator | None = None) -> Flask:
    """The fake API over ``corp``; tests may swap ``app.config["CORP"]``/``["SIMULATOR"]`` between runs."""
    app = Flask("siyu-sandbox")
    app.config.update(CORP=corp, SIMULATOR=simulator)

    def the_corp() -> FakeCorp:
        return app.config["CORP"]

    def answer(data: Body, status: int = 200) -> Response:
        return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")

    @app.get("/cgi-bin/gettoken")
    def gettoken() -> Response:
        try:
            return answer(the_corp().issue_token(request.args.get("corpid", ""), request.args.get("corpsecret", "")))
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg})

    @app.route("/cgi-bin/<path:path>", methods=["GET", "POST"])
    def api(path: str) -> Response:
        corp = the_corp()
        func = ENDPOINTS.get(path)
        if func is None:
            return answer({"errcode": 40078, "errmsg": f"sandbox does not implement {path}"})
        with corp.lock:
            corp.calls.append(path)
        try:
            corp.check_token(request.args.get("access_token"))
            fault = corp.take_fault(path)
            if fault == TIMEOUT:
                time.sleep(TIMEOUT_SECONDS)  # the caller gave up long ago
                return Response("too late", status=504)
            if fault == 500:
                return Response("upstream error", status=500)
            if fault is not None and fault != LATE:
                raise ApiError(fault, "injected by the sandbox")
            # GET endpoints take their parameters from the query, POST endpoints from the JSON body.
            body: Body = {k: v for k, v in request.args.items() if k != "access_token"}
            if request.method == "POST" and not request.files:
                try:
                    body = json.loads(request.get_data() or b"{}")
                except ValueError:
                    raise ApiError(47001, "data format error") from None
                if not isinstance(body, dict):
                    raise ApiError(47001, "data format error")
            with corp.lock:
                result = func(corp, body)
            if fault == LATE:
                time.sleep(TIMEOUT_SECONDS)  # done, but the caller gave up waiting for the answer
            hold = corp.take_hold(path)
            if hold is not None:
                hold.reached.set()
                hold.release.wait(120)
            return answer(result)
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg})

    @app.post("/sandbox/faults")
    def faults() -> Response:
        data = request.get_json(force=True, silent=True) or {}
        try:
            seconds = float(data["seconds"]) if data.get("seconds") is not None else None
            named = {"timeout": TIMEOUT, "late": LATE}
            errcode = named[data["errcode"]] if data.get("errcode") in named else int(data["errcode"])
            the_corp().inject(str(data.get("endpoint", "*")), errcode, int(data.get("times", 1)), seconds)
        except (KeyError, TypeError, ValueError):
            return answer({"error": 'send {endpoint, errcode (or "timeout" or "late"), times or seconds}'}, 400)
        return answer({"ok": True})

    @app.post("/sandbox/expire-tokens")
    def expire_tokens() -> Response:
        the_corp().expire_tokens()
        return answer({"ok": True})

    @app.post("/sandbox/mass-tasks/<msgid>/confirm")
    def confirm(msgid: str) -> Response:
        if msgid not in the_corp().mass_tasks:
            return answer({"error": "unknown msgid"}, 404)
        task = confirm_mass_task(the_corp(), msgid)
        return answer({"msgid": msgid, "results": task.results})

    @app.post("/sandbox/simulate")
    def simulate() -> Response:
        """Drive the simulator: COUNT times ACTION (add, tag, delete), each a real callback to Siyu."""
        simulator = app.config["SIMULATOR"]
        if simulator is None:
            return answer({"error": "this sandbox has no simulator"}, 404)
        data = request.get_json(force=True, silent=True) or {}
        try:
            count = int(data.get("count", 1))
        except (TypeError, ValueError):
            count = 0
        if not 1 <= count <= 1000:
            return answer({"error": "count is a whole number from 1 to 1000"}, 400)
        action = str(data.get("action", "add"))
        if action not in ("add", "tag", "delete"):
            return answer({"error": "action is add, tag or delete"}, 400)
        state = str(data.get("state", ""))[:30]
        done = [simulator.act(action, state) for _ in range(count)]
        happened = [d for d in done if d is not None]
        acknowledged = sum(delivery.acknowledged for _, delivery in happened)
        return answer({"acknowledged": acknowledged, "count": len(happened), "action": action})

    @app.get("/sandbox/qr/<config_id>.png")
    def qr_image(config_id: str) -> Response:
        """The image behind a contact way's qr_code; scanning it (opening the URL) is a customer adding."""
        if config_id not in the_corp().contact_ways:
            return answer({"error": "unknown or deleted contact way"}, 404)
        return qr_png(f"{request.url_root}sandbox/scan/{config_id}")

    @app.get("/sandbox/join-qr/<config_id>.png")
    def join_qr_image(config_id: str) -> Response:
        """The image behind a join code's qr_code."""
        if config_id not in the_corp().join_ways:
            return answer({"error": "unknown or deleted join code"}, 404)
        return qr_png(f"{request.url_root}sandbox/join/{config_id}")

    @app.route("/sandbox/scan/<config_id>", methods=["GET", "POST"])
    def scan(config_id: str) -> Response:
        simulator = app.config["SIMULATOR"]
        if simulator is None:
            return answer({"error": "this sandbox has no simulator"}, 404)
        try:
            contact, delivery = simulator.scan(config_id)
        except KeyError:
            return answer({"error": "unknown or deleted contact way"}, 404)
        return answer({"customer": contact.name, "member": next(iter(contact.follows)), "statuses": delivery.statuses})

    @app.route("/sandbox/join/<config_id>", methods=["GET", "POST"])
    def join(config_id: str) -> Response:
        """Scanning a join code: a customer who is in none of its groups yet joins (?external_userid=
        picks who)."""
        simulator = app.config["SIMULATOR"]
        corp = the_corp()
        if simulator is None:
            return answer({"error": "this sandbox has no simulator"}, 404)
        with corp.lock:
            way = corp.join_ways.get(config_id)
            if way is None:
                return answer({"error": "unknown or deleted join code"}, 404)
            inside = {m for c in way["chat_id_list"] if c in corp.groups for m in corp.groups[c].members}
            outside = sorted(e for e in corp.contacts if e not in inside)
        external_userid = request.args.get("external_userid") or (simulator.rng.choice(outside) if outside else "")
        if external_userid not in corp.contacts:
            return answer({"error": "no customer to join"}, 404)
        try:
            group, deliveries = simulator.customer_scans_join_code(config_id, external_userid)
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg}, 409)
        return answer(
            {"chat_id": group.chat_id, "external_userid": external_userid, "statuses": [d.statuses for d in deliveries]}
        )

    @app.get("/sandbox/welcome-log")
    def welcome_log() -> Response:
        """Every welcome code's accepted send time and how many times it was tried, for benchmarks."""
        corp = the_corp()
        with corp.lock:
            return answer({"sent_at": dict(corp.welcome_sent_at), "attempts": dict(corp.welcome_attempts)})

    @app.get("/sandbox/state")
    def state() -> Response:
        corp = the_corp()
        with corp.lock:
            return answer(
                {
                    "corp_id": corp.corp_id,
                    "departments": len(corp.departments),
                    "users": len(corp.users),
                    "contacts": len(corp.contacts),
                    "welcomes_sent": len(corp.welcomes_sent),
                    "app_messages": len(corp.app_messages),
                    "token_fetches": corp.token_fetches,
                    "calls": len(corp.calls),
                    "mass_tasks": len(corp.mass_tasks),
                    "mass_recipients": sum(len(t.recipients) for t in corp.mass_tasks.values()),
                    "mass_unique_recipients": len({r for t in corp.mass_tasks.values() for r in t.recipients}),
                    "groups": sum(not g.dismissed for g in corp.groups.values()),
                    "join_ways": len(corp.join_ways),
                }
            )

    return app
