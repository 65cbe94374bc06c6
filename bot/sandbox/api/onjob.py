"""在职继承: customers and groups of a member who stays moved to another (WeCom doc 92125, 94088, 95703).

A customer's move waits (status 2) for 24 hours, then the simulator completes it
(``Simulator.transfers_take_effect``): taken over (1), refused by the customer (3, who stays with the
member) or the receiver at the limit (4). WeCom counts two moves per customer and per group in 90 days and
300 of one owner's groups a day (``bot.sandbox.handover.ledger``)."""

from __future__ import annotations

from bot.sandbox.api.endpoints import Body, Endpoints, ok, paged, require
from bot.sandbox.corp import ApiError, FakeCorp
from bot.sandbox.handover import DAY, GROUPS_PER_DAY, MOVES_PER_QUARTER, ledger

ENDPOINTS = Endpoints()

MESSAGE_MAX = 200  # transfer_success_msg


def _member(corp: FakeCorp, userid: str) -> None:
    if userid not in corp.users:
        raise ApiError(60111, f"userid not found: {userid}")


@ENDPOINTS.route("externalcontact/transfer_customer")
def transfer_customer(corp: FakeCorp, body: Body) -> Body:
    require(body, "handover_userid", "takeover_userid", "external_userid")
    handover, takeover = str(body["handover_userid"]), str(body["takeover_userid"])
    customers = list(body["external_userid"])
    if not 1 <= len(customers) <= 100:
        raise ApiError(40058, "external_userid holds 1 to 100 customers")
    message = str(body.get("transfer_success_msg") or "")
    if len(message) > MESSAGE_MAX:
        raise ApiError(40058, "transfer_success_msg is at most 200 characters")
    _member(corp, handover)
    _member(corp, takeover)
    if takeover == handover:
        raise ApiError(40130, "handover and takeover are the same member")
    counts = ledger(corp)
    result = []
    with corp.lock:
        now = corp.clock()
        pending = {r["external_userid"] for r in corp.transfers.values() if r["status"] == 2}
        for external_userid in customers:
            contact = corp.contacts.get(external_userid)
            if contact is None:
                errcode = 40096
            elif external_userid in pending:
                errcode = 40129  # a move is waiting: no second one (nor the same one again)
            elif handover not in contact.follows:
                errcode = 40131
            elif counts.moves(counts.customer_moves, external_userid, now) >= MOVES_PER_QUARTER:
                errcode = 40128
            else:
                errcode = 0
                counts.moved(counts.customer_moves, external_userid, now)
                counts.accepted[external_userid] += 1
                pending.add(external_userid)
                corp.transfers[(handover, external_userid)] = {
                    "kind": "onjob",
                    "handover": handover,
                    "takeover": takeover,
                    "external_userid": external_userid,
                    "status": 2,
                    "takeover_time": int(now) + DAY,
                    "message": message,
                }
            result.append({"external_userid": external_userid, "errcode": errcode})
    return ok(customer=result)


@ENDPOINTS.route("externalcontact/transfer_result")
def transfer_result(corp: FakeCorp, body: Body) -> Body:
    require(body, "handover_userid", "takeover_userid")
    handover, takeover = str(body["handover_userid"]), str(body["takeover_userid"])
    rows = [
        {
            "external_userid": r["external_userid"],
            "status": r["status"],
            "takeover_time": 0 if r["status"] == 3 else r["takeover_time"],
        }
        for r in corp.transfers.values()
        if r.get("kind") == "onjob" and r["handover"] == handover and r["takeover"] == takeover
    ]
    page, cursor = paged(rows, {"limit": 1000, "cursor": body.get("cursor")})
    return ok(customer=page, next_cursor=cursor)


@ENDPOINTS.route("externalcontact/groupchat/onjob_transfer")
def groupchat_onjob_transfer(corp: FakeCorp, body: Body) -> Body:
    require(body, "chat_id_list", "new_owner")
    chats = list(body["chat_id_list"])
    if not 1 <= len(chats) <= 100:
        raise ApiError(40058, "chat_id_list holds 1 to 100 groups")
    owner = str(body["new_owner"])
    _member(corp, owner)
    counts = ledger(corp)
    failed = []
    with corp.lock:
        now = corp.clock()
        for chat_id in chats:
            group = corp.groups.get(chat_id)
            if group is None or group.dismissed:
                failed.append({"chat_id": chat_id, "errcode": 90501, "errmsg": "chat is not external group chat"})
            elif group.owner in corp.resigned:
                # the errcode is UNCONFIRMED (a resigned owner's groups go by groupchat/transfer)
                failed.append({"chat_id": chat_id, "errcode": 90500, "errmsg": "the owner of this chat is resigned"})
            elif counts.moves(counts.group_moves, chat_id, now) >= MOVES_PER_QUARTER:
                # UNCONFIRMED errcode: WeCom documents the rule (doc 95703), not its code
                failed.append({"chat_id": chat_id, "errcode": 40128, "errmsg": "chat transferred too often"})
            elif counts.given_today(group.owner, now) >= GROUPS_PER_DAY:
                failed.append({"chat_id": chat_id, "errcode": 40128, "errmsg": "over 300 chats of one owner today"})
            elif group.owner != owner:
                counts.moved(counts.group_moves, chat_id, now)
                counts.give(group.owner, now)
                group.owner = owner
    return ok(failed_chat_list=failed)
