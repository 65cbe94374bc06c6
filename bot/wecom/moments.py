"""The customer-moment calls of ``WeComClient`` (客户朋友圈, WeCom doc 95094, 93333, 95098): attachments
uploaded for moments, the asynchronous moment task and its result, and the corp's list of moments.

A mixin so the client module stays readable; it uses the client's ``post``, ``get`` and ``_pages``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

#: get_moment_list lists at most 20 moments a page, over at most 30 days (doc 93333)
LIST_LIMIT = 20
LIST_SPAN = 30 * 86400


class MomentCalls:
    if TYPE_CHECKING:  # provided by WeComClient (wechatpy's get and post, the client's cursor pager)

        def get(self, url: str, **kwargs: Any) -> Any: ...

        def post(self, url: str, **kwargs: Any) -> Any: ...

        def _pages(self, path: str, body: dict[str, Any], key: str) -> Iterator[dict[str, Any]]: ...

    def upload_attachment(self, kind: str, filename: str, content: bytes, mimetype: str) -> str:
        """media/upload_attachment?attachment_type=1 (doc 95098): an image or video for a moment; its media
        id lives 3 days."""
        result = self.post(
            "media/upload_attachment",
            params={"media_type": kind, "attachment_type": 1},
            files={"media": (filename, content, mimetype)},
        )
        return str(result["media_id"])

    def add_moment_task(self, body: dict[str, Any]) -> str:
        """externalcontact/add_moment_task (doc 95094): the job id (valid 24 h) of the asynchronous task."""
        return str(self.post("externalcontact/add_moment_task", data=body)["jobid"])

    def get_moment_task_result(self, jobid: str) -> dict[str, Any]:
        """externalcontact/get_moment_task_result: ``status`` 1 started / 2 running / 3 done, and, when done,
        ``result`` (its own errcode, ``moment_id``, the invalid senders and tags)."""
        return dict(self.get("externalcontact/get_moment_task_result", params={"jobid": jobid}))

    def list_moments(self, start: int, end: int, filter_type: int = 0) -> Iterator[dict[str, Any]]:
        """externalcontact/get_moment_list (doc 93333): moments created in the open interval (start, end), a
        span of at most 30 days; ``filter_type`` 0 the corp's, 1 members' own, 2 both. Moments created
        through the API carry no ``creator``."""
        body = {"start_time": start, "end_time": end, "filter_type": filter_type, "limit": LIST_LIMIT}
        return self._pages("externalcontact/get_moment_list", body, "moment_list")

    # -- per member, after the task (doc 93333; cancel: doc 97612) ------------------------------------

    def get_moment_task(self, moment_id: str) -> Iterator[dict[str, Any]]:
        """get_moment_task: per member asked, ``publish_status`` 0 not yet / 1 posted (corp moments only)."""
        return self._pages("externalcontact/get_moment_task", {"moment_id": moment_id, "limit": 1000}, "task_list")

    def get_moment_customer_list(self, moment_id: str, userid: str) -> Iterator[dict[str, Any]]:
        """get_moment_customer_list: the member's customers the moment was meant for (chosen at creation)."""
        body = {"moment_id": moment_id, "userid": userid, "limit": 1000}
        return self._pages("externalcontact/get_moment_customer_list", body, "customer_list")

    def get_moment_send_result(self, moment_id: str, userid: str) -> Iterator[dict[str, Any]]:
        """get_moment_send_result: the member's customers who can actually see the moment (≤ 5000 a page)."""
        body = {"moment_id": moment_id, "userid": userid, "limit": 5000}
        return self._pages("externalcontact/get_moment_send_result", body, "customer_list")

    def get_moment_comments(self, moment_id: str, userid: str) -> dict[str, Any]:
        """get_moment_comments: ``comment_list`` and ``like_list`` on the member's post, each item with an
        ``external_userid`` or a ``userid`` (a colleague), never both, and ``create_time``."""
        return dict(self.post("externalcontact/get_moment_comments", data={"moment_id": moment_id, "userid": userid}))

    def cancel_moment_task(self, moment_id: str) -> None:
        """cancel_moment_task (doc 97612): members who have not posted no longer can; posts stay."""
        self.post("externalcontact/cancel_moment_task", data={"moment_id": moment_id})

    def list_member_moments(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        """get_moment_list with filter_type 1: the moments members posted themselves (each names its creator)."""
        return self.list_moments(start, end, filter_type=1)
