"""Media uploads and app messages (to members, from the corp's app)."""

from __future__ import annotations

import json

from flask import request

from bot.sandbox.api.endpoints import Body, Endpoints, ok
from bot.sandbox.corp import ApiError, FakeCorp

ENDPOINTS = Endpoints()


# -- media and app messages (doc path/90253, path/90236) -------------------------------------------


@ENDPOINTS.route("media/upload")
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
    corp.media_uploaded_at[media_id] = corp.clock()
    return ok(type=kind, media_id=media_id, created_at=str(int(corp.clock())))


@ENDPOINTS.route("message/send")
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
        return ok(invaliduser="|".join(invalid), msgid=corp.new_id("am"))
    corp.app_message_times[key] = corp.clock()
    corp.app_messages.append(dict(body))
    return ok(invaliduser="|".join(invalid), msgid=corp.new_id("am"))
