"""What a mass send's ``add_msg_template`` call says for one member: the body, its text and attachments."""

from __future__ import annotations

from typing import Any

from bot.extensions import db
from bot.models import MassSend, MediaFile, Staff
from bot.services.channels.codes import render, variables
from bot.services.radar import links as radar
from bot.services.sends import media
from bot.wecom import WeComClient
from bot.wecom.errors import WeComError

INVALID_MEDIA = 40007


class Payloads:
    """The add_msg_template body per member; media are uploaded once per dispatch (and again when WeCom
    says a media id is no longer valid)."""

    def __init__(self, send: MassSend, api: WeComClient) -> None:
        self.send = send
        self.api = api
        self.media_ids: dict[int, str] = {}
        #: how many times the media were uploaded again: a body built before the last upload may carry a
        #: media id WeCom has forgotten, one built after it may not
        self.uploads = 0

    def _media_id(self, file_id: int, fresh: bool) -> str:
        if fresh or file_id not in self.media_ids:
            kept = db.session.get(MediaFile, file_id)
            if kept is None:
                raise WeComError(INVALID_MEDIA, f"attachment file {file_id} was deleted", "media/upload")
            self.media_ids[file_id] = media.media_id(kept, self.api, fresh=fresh)
        return self.media_ids[file_id]

    def renew_media(self, staff: Staff) -> None:
        """WeCom forgot a media id: every attachment's file uploaded again, once, for all bodies after."""
        self.attachments(staff, fresh=True)
        self.uploads += 1

    def attachments(self, staff: Staff, fresh: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for a in radar.send_attachments(self.send, staff):
            kind = a["type"]
            if kind in ("image", "video", "file"):
                out.append({"msgtype": kind, kind: {"media_id": self._media_id(a["file_id"], fresh)}})
            elif kind == "link":
                link = {k: a[k] for k in ("title", "url", "desc", "picurl") if a.get(k)}
                out.append({"msgtype": "link", "link": link})
            elif kind == "miniprogram":
                mini = {"title": a["title"], "appid": a["appid"], "page": a["page"]}
                out.append(
                    {
                        "msgtype": "miniprogram",
                        "miniprogram": {**mini, "pic_media_id": self._media_id(a["file_id"], fresh)},
                    }
                )
        return out

    def body(self, staff: Staff, recipients: list[str]) -> dict[str, Any]:
        """To customers (external user ids, ≤ 10,000) or, in a send to groups, to the member's group
        chats (chat ids, ≤ 2,000; the sender is required)."""
        body: dict[str, Any] = {"chat_type": self.send.chat_type, "sender": staff.userid, "allow_select": False}
        body["chat_id_list" if self.send.chat_type == "group" else "external_userid"] = recipients
        text = member_text(self.send, staff)
        if text:
            body["text"] = {"content": text}
        attachments = self.attachments(staff)
        if attachments:
            body["attachments"] = attachments
        return body


def member_text(send: MassSend, staff: Staff) -> str:
    """The send's text as ``staff``'s task carries it (their name and store filled in)."""
    return render(send.text, variables("", staff)).strip()
