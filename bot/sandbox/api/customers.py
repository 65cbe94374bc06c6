"""Customers, contact ways (「联系我」 codes) and welcome messages."""

from __future__ import annotations

from flask import request

from bot.sandbox.api.endpoints import Body, Endpoints, ok, require
from bot.sandbox.corp import ApiError, FakeCorp

ENDPOINTS = Endpoints()


# -- customers (doc path/92113, path/92114, path/96316) ------------------------------------------


@ENDPOINTS.route("externalcontact/get_follow_user_list")
def follow_user_list(corp: FakeCorp, body: Body) -> Body:
    return ok(follow_user=sorted(corp.users))


@ENDPOINTS.route("externalcontact/list")
def contact_list(corp: FakeCorp, body: Body) -> Body:
    userid = body.get("userid", "")
    ids = [c.external_userid for c in corp.contacts.values() if userid in c.follows]
    return ok(external_userid=ids)


@ENDPOINTS.route("externalcontact/get")
def contact_get(corp: FakeCorp, body: Body) -> Body:
    require(body, "external_userid")
    return ok(**corp.contact_json(body["external_userid"]))


@ENDPOINTS.route("externalcontact/batch/get_by_user")
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
                "remark_mobiles": list(follow.remark_mobiles),
                "add_way": follow.add_way,
                "oper_userid": follow.oper_userid or contact.external_userid,
            },
        }
        for contact, follow in page
    ]
    more = start + limit < len(pairs)
    return ok(external_contact_list=items, next_cursor=format(start + limit, "x") if more else "")


@ENDPOINTS.route("externalcontact/remark")
def remark(corp: FakeCorp, body: Body) -> Body:
    require(body, "userid", "external_userid")
    if len(str(body.get("remark", ""))) > 20:
        raise ApiError(40058, "remark longer than 20 characters")
    contact = corp.contacts.get(body["external_userid"])
    follow = contact.follows.get(body["userid"]) if contact else None
    if follow is None:
        raise ApiError(84061, "not external contact")
    if "remark" in body:
        follow.remark = str(body["remark"])
    if isinstance(body.get("remark_mobiles"), list):
        follow.remark_mobiles = [str(m) for m in body["remark_mobiles"]]
    return ok()


# -- contact ways (「联系我」, doc path/92228) ----------------------------------------------------


@ENDPOINTS.route("externalcontact/add_contact_way")
def add_contact_way(corp: FakeCorp, body: Body) -> Body:
    require(body, "type", "scene")
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
    return ok(config_id=config_id, qr_code=way["qr_code"])


@ENDPOINTS.route("externalcontact/get_contact_way")
def get_contact_way(corp: FakeCorp, body: Body) -> Body:
    way = corp.contact_ways.get(body.get("config_id", ""))
    if way is None:
        raise ApiError(41044, "invalid config_id")
    return ok(contact_way=way)


@ENDPOINTS.route("externalcontact/update_contact_way")
def update_contact_way(corp: FakeCorp, body: Body) -> Body:
    way = corp.contact_ways.get(body.get("config_id", ""))
    if way is None:
        raise ApiError(41044, "invalid config_id")
    way.update({k: v for k, v in body.items() if k != "config_id"})
    return ok()


@ENDPOINTS.route("externalcontact/del_contact_way")
def del_contact_way(corp: FakeCorp, body: Body) -> Body:
    if corp.contact_ways.pop(body.get("config_id", ""), None) is None:
        raise ApiError(41044, "invalid config_id")
    return ok()


@ENDPOINTS.route("externalcontact/list_contact_way")
def list_contact_way(corp: FakeCorp, body: Body) -> Body:
    return ok(contact_way=[{"config_id": c} for c in corp.contact_ways], next_cursor="")


# -- welcome messages ------------------------------------------------------------------------------


@ENDPOINTS.route("externalcontact/send_welcome_msg")
def send_welcome_msg(corp: FakeCorp, body: Body) -> Body:
    corp.send_welcome(body)
    return ok()
