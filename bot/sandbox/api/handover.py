"""离职继承: the unassigned list, customer transfers of resigned members and their results, group transfers
(WeCom doc 92124, 94081, 94082, 92127). A transfer waits (status 2) until the simulator moves the clock on
(``Simulator.transfers_take_effect``): taken over (1), refused (3) or the receiver at the limit (4)."""

from __future__ import annotations

from bot.sandbox.api.endpoints import Body, Endpoints, ok, paged, require
from bot.sandbox.corp import ApiError, FakeCorp
from bot.sandbox.handover import GROUPS_PER_DAY, ledger

ENDPOINTS = Endpoints()

DAY = 86400


@ENDPOINTS.route("externalcontact/get_unassigned_list")
def get_unassigned_list(corp: FakeCorp, body: Body) -> Body:
    size = int(body.get("page_size") or 1000)
    if not 1 <= size <= 1000:
        raise ApiError(40058, "page_size is 1–1000")
    # Only resigned members who still have customers appear (one with groups alone does not).
    rows = [
        {"handover_userid": userid, "external_userid": c.external_userid, "dimission_time": left["dimission_time"]}
        for userid, left in sorted(corp.resigned.items())
        for c in corp.contacts.values()
        if userid in c.follows
    ]
    page, cursor = paged(rows, {"limit": size, "cursor": body.get("cursor")})
    return ok(info=page, is_last=not cursor, next_cursor=cursor)


def _pair(corp: FakeCorp, body: Body) -> tuple[str, str]:
    require(body, "handover_userid", "takeover_userid")
    return str(body["handover_userid"]), str(body["takeover_userid"])


@ENDPOINTS.route("externalcontact/resigned/transfer_customer")
def resigned_transfer_customer(corp: FakeCorp, body: Body) -> Body:
    handover, takeover = _pair(corp, body)
    require(body, "external_userid")
    customers = list(body["external_userid"])
    if not 1 <= len(customers) <= 100:
        raise ApiError(40058, "external_userid holds 1 to 100 customers")
    if handover not in corp.resigned:
        raise ApiError(40097, "handover_userid has not resigned")
    if takeover not in corp.users:
        raise ApiError(60111, f"userid not found: {takeover}")
    if takeover == handover:
        raise ApiError(40130, "handover and takeover are the same member")
    now = int(corp.clock())
    result = []
    for external_userid in customers:
        contact = corp.contacts.get(external_userid)
        record = corp.transfers.get((handover, external_userid))
        if contact is None:
            errcode = 40096
        elif record is not None and record["status"] == 2:
            errcode = 40129  # being transferred: WeCom has no idempotency key, a second call is refused
        elif handover not in contact.follows:
            errcode = 40131
        else:
            errcode = 0
            ledger(corp).accepted[external_userid] += 1
            corp.transfers[(handover, external_userid)] = {
                "handover": handover,
                "takeover": takeover,
                "external_userid": external_userid,
                "status": 2,
                "takeover_time": now + DAY,
            }
        result.append({"external_userid": external_userid, "errcode": errcode})
    return ok(customer=result)


@ENDPOINTS.route("externalcontact/resigned/transfer_result")
def resigned_transfer_result(corp: FakeCorp, body: Body) -> Body:
    handover, takeover = _pair(corp, body)
    rows = [
        {
            "external_userid": r["external_userid"],
            "status": r["status"],
            "takeover_time": 0 if r["status"] == 3 else r["takeover_time"],
        }
        for r in corp.transfers.values()
        if r["handover"] == handover and r["takeover"] == takeover
    ]
    page, cursor = paged(rows, {"limit": 1000, "cursor": body.get("cursor")})
    return ok(customer=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/groupchat/transfer")
def groupchat_transfer(corp: FakeCorp, body: Body) -> Body:
    require(body, "chat_id_list", "new_owner")
    chats = list(body["chat_id_list"])
    if not 1 <= len(chats) <= 100:
        raise ApiError(40058, "chat_id_list holds 1 to 100 groups")
    owner = str(body["new_owner"])
    if owner not in corp.users:
        raise ApiError(60111, f"userid not found: {owner}")
    failed = []
    counts, now = ledger(corp), corp.clock()
    for chat_id in chats:
        group = corp.groups.get(chat_id)
        if group is None or group.dismissed:
            failed.append({"chat_id": chat_id, "errcode": 40050, "errmsg": "chat_id not exist"})
        elif group.owner not in corp.resigned:
            failed.append({"chat_id": chat_id, "errcode": 90500, "errmsg": "the owner of this chat is not resigned"})
        elif counts.given_today(group.owner, now) >= GROUPS_PER_DAY:
            # the 300-a-day cap (doc 92127); its errcode is UNCONFIRMED
            failed.append({"chat_id": chat_id, "errcode": 40128, "errmsg": "over 300 chats of one owner today"})
        else:
            counts.give(group.owner, now)
            group.owner, group.status = owner, 3  # 离职继承完成
    return ok(failed_chat_list=failed)
