"""The directory and the corp's customer tags: departments, members, tag groups, tagging a customer."""

from __future__ import annotations

from bot.sandbox.api.endpoints import Body, Endpoints, ok, require
from bot.sandbox.corp import ApiError, FakeCorp

ENDPOINTS = Endpoints()


# -- directory (doc path/90208, path/90201) ------------------------------------------------------


@ENDPOINTS.route("department/list")
def department_list(corp: FakeCorp, body: Body) -> Body:
    return ok(department=list(corp.departments.values()))


@ENDPOINTS.route("user/list")
def user_list(corp: FakeCorp, body: Body) -> Body:
    dep = int(body.get("department_id", 0) or 0)
    if dep not in corp.departments:
        raise ApiError(60123, "invalid department")
    return ok(userlist=[u for u in corp.users.values() if dep in u["department"]])


# -- customer tags ---------------------------------------------------------------------------------


@ENDPOINTS.route("externalcontact/get_corp_tag_list")
def get_corp_tag_list(corp: FakeCorp, body: Body) -> Body:
    return ok(tag_group=corp.list_tags(body))


@ENDPOINTS.route("externalcontact/add_corp_tag")
def add_corp_tag(corp: FakeCorp, body: Body) -> Body:
    return ok(**corp.add_tags(body))


@ENDPOINTS.route("externalcontact/edit_corp_tag")
def edit_corp_tag(corp: FakeCorp, body: Body) -> Body:
    require(body, "id")
    for group in corp.tag_groups.values():
        if group["group_id"] == body["id"]:
            group["group_name"] = body.get("name", group["group_name"])
            group["order"] = int(body.get("order", group["order"]))
            return ok()
        for tag in group["tag"]:
            if tag["id"] == body["id"]:
                tag["name"] = body.get("name", tag["name"])
                tag["order"] = int(body.get("order", tag["order"]))
                return ok()
    raise ApiError(40068, "invalid tag id")


@ENDPOINTS.route("externalcontact/del_corp_tag")
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
    return ok()


@ENDPOINTS.route("externalcontact/mark_tag")
def mark_tag(corp: FakeCorp, body: Body) -> Body:
    require(body, "userid", "external_userid")
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
    return ok()
