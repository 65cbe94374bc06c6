"""The handover calls of ``WeComClient`` (离职继承 and 在职继承, WeCom doc 92124, 94081, 94082, 92127, 92125,
94088, 95703): the unassigned list, customer transfers and their results, group transfers.

A mixin so the client module stays readable; it uses the client's ``post`` and ``_pages``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

#: transfer_success_msg: what WeCom sends the customer once the takeover is done (doc 92125), ≤ 200 chars
SUCCESS_MSG_MAX = 200


class HandoverCalls:
    if TYPE_CHECKING:  # provided by WeComClient (wechatpy's post, the client's cursor pager)

        def post(self, url: str, **kwargs: Any) -> Any: ...

        def _pages(self, path: str, body: dict[str, Any], key: str) -> Iterator[dict[str, Any]]: ...

    def get_unassigned_list(self, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """get_unassigned_list (doc path/92124), by cursor: ``{handover_userid, external_userid,
        dimission_time}`` of every customer a resigned member left unassigned."""
        cursor = ""
        while True:
            body: dict[str, Any] = {"page_size": page_size}
            if cursor:
                body["cursor"] = cursor
            page = self.post("externalcontact/get_unassigned_list", data=body)
            yield from page.get("info") or []
            cursor = str(page.get("next_cursor") or "")
            if page.get("is_last") or not cursor:
                return

    # -- 离职继承 ------------------------------------------------------------------------------------

    def transfer_resigned_customers(self, handover: str, takeover: str, external_userids: list[str]) -> list[Any]:
        """resigned/transfer_customer (doc path/94081): ≤ 100 customers of a resigned member; per customer
        ``{external_userid, errcode}`` (0: waiting for the takeover, 24 h)."""
        body = {"handover_userid": handover, "takeover_userid": takeover, "external_userid": external_userids}
        return list(self.post("externalcontact/resigned/transfer_customer", data=body).get("customer") or [])

    def resigned_transfer_result(self, handover: str, takeover: str) -> Iterator[dict[str, Any]]:
        """resigned/transfer_result (doc path/94082): ``{external_userid, status, takeover_time}`` per
        customer; status 1 taken over, 2 waiting, 3 refused, 4 receiver at the customer limit."""
        body = {"handover_userid": handover, "takeover_userid": takeover}
        return self._pages("externalcontact/resigned/transfer_result", body, "customer")

    def transfer_resigned_groups(self, chat_ids: list[str], new_owner: str) -> list[Any]:
        """groupchat/transfer (doc path/92127): ≤ 100 groups of resigned owners to ``new_owner``; the
        groups that failed, ``{chat_id, errcode, errmsg}`` (90500: the owner has not resigned)."""
        body = {"chat_id_list": chat_ids, "new_owner": new_owner}
        return list(self.post("externalcontact/groupchat/transfer", data=body).get("failed_chat_list") or [])

    # -- 在职继承 ------------------------------------------------------------------------------------

    def transfer_customers(
        self, handover: str, takeover: str, external_userids: list[str], message: str = ""
    ) -> list[Any]:
        """transfer_customer (doc path/92125): ≤ 100 customers of a member who stays; per customer
        ``{external_userid, errcode}`` (0: the takeover happens in 24 h unless the customer refuses;
        40128 moved twice in 90 days, 40129 being moved, 40130 same member, 40131 not their customer).
        ``message`` is sent to the customer once taken over (WeCom's default text when empty)."""
        body: dict[str, Any] = {"handover_userid": handover, "takeover_userid": takeover}
        body["external_userid"] = external_userids
        if message:
            body["transfer_success_msg"] = message[:SUCCESS_MSG_MAX]
        return list(self.post("externalcontact/transfer_customer", data=body).get("customer") or [])

    def transfer_result(self, handover: str, takeover: str) -> Iterator[dict[str, Any]]:
        """transfer_result (doc path/94088), the on-job one: ``{external_userid, status, takeover_time}``;
        status 1 taken over, 2 waiting, 3 refused, 4 receiver at the limit, 5 no such transfer."""
        body = {"handover_userid": handover, "takeover_userid": takeover}
        return self._pages("externalcontact/transfer_result", body, "customer")

    def transfer_onjob_groups(self, chat_ids: list[str], new_owner: str) -> list[Any]:
        """groupchat/onjob_transfer (doc path/95703): ≤ 100 groups of members who stay to ``new_owner``
        (each group twice in 90 days; 300 of one owner's groups a day); the groups that failed."""
        body = {"chat_id_list": chat_ids, "new_owner": new_owner}
        return list(self.post("externalcontact/groupchat/onjob_transfer", data=body).get("failed_chat_list") or [])
