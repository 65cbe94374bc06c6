"""Customer groups and their join codes."""

from __future__ import annotations

from flask import request

from bot.sandbox.api.endpoints import Body, Endpoints, ok, paged, require
from bot.sandbox.corp import ApiError, FakeCorp

ENDPOINTS = Endpoints()


# -- customer groups (doc path/92120, path/92122) and join codes (doc path/92229) --------------------


@ENDPOINTS.route("externalcontact/groupchat/list")
def groupchat_list(corp: FakeCorp, body: Body) -> Body:
    if not body.get("limit"):
        raise ApiError(40058, "limit is required")
    owners = (body.get("owner_filter") or {}).get("userid_list") or []
    if len(owners) > 100:
        raise ApiError(40058, "owner_filter holds more than 100 members")
    if not owners and len(corp.users) > 1000:
        raise ApiError(81017, "too many members: filter by owner")
    status = int(body.get("status_filter") or 0)  # 0 every group, else only that status
    rows = [
        {"chat_id": g.chat_id, "status": g.status}
        for g in corp.groups.values()
        if not g.dismissed and (not owners or g.owner in owners) and status in (0, g.status)
    ]
    page, cursor = paged(rows, body)
    return ok(group_chat_list=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/groupchat/get")
def groupchat_get(corp: FakeCorp, body: Body) -> Body:
    require(body, "chat_id")
    return ok(group_chat=corp.group_json(str(body["chat_id"]), bool(body.get("need_name"))))


def _join_way_fields(corp: FakeCorp, body: Body) -> Body:
    require(body, "scene", "chat_id_list")
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


@ENDPOINTS.route("externalcontact/groupchat/add_join_way")
def add_join_way(corp: FakeCorp, body: Body) -> Body:
    fields = _join_way_fields(corp, body)
    config_id = corp.new_id("jw")
    qr_code = f"{request.url_root}sandbox/join-qr/{config_id}.png" if int(fields["scene"]) == 2 else ""
    corp.join_ways[config_id] = {"auto_create_room": 1, **fields, "config_id": config_id, "qr_code": qr_code}
    return ok(config_id=config_id)


@ENDPOINTS.route("externalcontact/groupchat/get_join_way")
def get_join_way(corp: FakeCorp, body: Body) -> Body:
    return ok(join_way=dict(_join_way(corp, body)))


@ENDPOINTS.route("externalcontact/groupchat/update_join_way")
def update_join_way(corp: FakeCorp, body: Body) -> Body:
    way = _join_way(corp, body)
    fields = _join_way_fields(corp, body)
    way.clear()  # an update overwrites the whole code
    way.update({"auto_create_room": 1, **fields, "config_id": body["config_id"]})
    way["qr_code"] = f"{request.url_root}sandbox/join-qr/{body['config_id']}.png" if int(fields["scene"]) == 2 else ""
    return ok()


@ENDPOINTS.route("externalcontact/groupchat/del_join_way")
def del_join_way(corp: FakeCorp, body: Body) -> Body:
    corp.join_ways.pop(str(_join_way(corp, body)["config_id"]))
    return ok()
