"""Mass sends to customers and to customer groups: tasks that wait for the member to confirm them."""

from __future__ import annotations

from bot.sandbox.api.endpoints import Body, Endpoints, ok, paged
from bot.sandbox.corp import ApiError, FakeCorp, MassTask

ENDPOINTS = Endpoints()


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


@ENDPOINTS.route("externalcontact/add_msg_template")
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
    to_send = [r for r in recipients if r not in fail_list]
    if not to_send:
        raise ApiError(41048, "no customer to send to")
    msgid = corp.new_id("msg")
    corp.mass_tasks[msgid] = MassTask(msgid, sender, to_send, body, corp.clock())
    return ok(fail_list=fail_list, msgid=msgid)


def _task(corp: FakeCorp, body: Body) -> MassTask:
    task = corp.mass_tasks.get(body.get("msgid", ""))
    if task is None:
        raise ApiError(41063, "msgid not found")
    return task


@ENDPOINTS.route("externalcontact/get_groupmsg_list_v2")
def get_groupmsg_list_v2(corp: FakeCorp, body: Body) -> Body:
    """获取群发记录列表: each row's text and attachments; ``creator`` only for a message a member made in the
    admin console — "API接口创建的群发消息不返回该字段", so a creator filter finds no API-made message (every
    task of the sandbox is made through add_msg_template)."""
    start, end = int(body.get("start_time") or 0), int(body.get("end_time") or 0)
    if not start or not end or end < start or end - start > 31 * 86400:
        raise ApiError(40058, "start_time/end_time: a range of at most a month")
    creator = body.get("creator") or ""
    chat_type = body.get("chat_type") or "single"
    filter_type = int(body.get("filter_type", 2))  # 0 made by the corp, 1 by members themselves, 2 both
    rows = []
    for t in corp.mass_tasks.values():
        if not start <= t.created_at <= end or t.chat_type != chat_type or filter_type == 1:
            continue
        if creator:  # an API-made message has no creator: no creator filter matches it
            continue
        row: Body = {"msgid": t.msgid, "create_time": str(int(t.created_at)), "create_type": 0}
        if (t.payload.get("text") or {}).get("content"):
            row["text"] = {"content": t.payload["text"]["content"]}
        if t.payload.get("attachments"):
            row["attachments"] = list(t.payload["attachments"])
        rows.append(row)
    limit = int(body.get("limit") or 50)
    page, cursor = paged(rows, {**body, "limit": limit if 1 <= limit <= 100 else 50})  # over 100: the default
    return ok(group_msg_list=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/get_groupmsg_task")
def get_groupmsg_task(corp: FakeCorp, body: Body) -> Body:
    task = _task(corp, body)
    rows = [
        {
            "userid": task.sender,
            "status": 2 if task.confirmed else 0,
            "send_time": int(task.confirmed_at) if task.confirmed else 0,
        }
    ]
    page, cursor = paged(rows, body)
    return ok(task_list=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/get_groupmsg_send_result")
def get_groupmsg_send_result(corp: FakeCorp, body: Body) -> Body:
    task = _task(corp, body)
    key = "chat_id" if task.chat_type == "group" else "external_userid"
    rows = [
        {key: r, "userid": task.sender, "status": task.results.get(r, 0)}
        for r in task.recipients
        if body.get("userid") in (None, "", task.sender)
    ]
    page, cursor = paged(rows, body)
    return ok(send_list=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/cancel_groupmsg_send")
def cancel_groupmsg_send(corp: FakeCorp, body: Body) -> Body:
    _task(corp, body).cancelled = True
    return ok()


@ENDPOINTS.route("externalcontact/remind_groupmsg_send")
def remind_groupmsg_send(corp: FakeCorp, body: Body) -> Body:
    task = _task(corp, body)
    now = corp.clock()
    recent = [t for t in task.reminders if now - t < 86400]
    if len(recent) >= 3:
        # WeCom's doc 97610 names no errcode for a fourth reminder within 24 h: 41066 is the sandbox's own choice.
        raise ApiError(41066, "reminded 3 times in 24 hours")
    task.reminders = [*recent, now]
    return ok()
