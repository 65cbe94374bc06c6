"""The content library (素材库) and quick replies (话术库): what members send from the chat sidebar, and what
welcome messages, mass sends and lifecycle sends attach; and a record of every send from the sidebar."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String, Table, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.extensions import db
from bot.models._time import utcnow
from bot.models.directory import Store
from bot.models.sends import MediaFile

#: an item's stores; none: corp-wide
library_item_stores = Table(
    "library_item_stores",
    db.metadata,
    Column("item_id", ForeignKey("library_items.id", ondelete="CASCADE"), primary_key=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    # "the items of store S" (a member's stores) starts from the store
    Index("ix_library_item_stores_store_id_item_id", "store_id", "item_id"),
)

#: a quick reply's stores; none: corp-wide
quick_reply_stores = Table(
    "quick_reply_stores",
    db.metadata,
    Column("reply_id", ForeignKey("quick_replies.id", ondelete="CASCADE"), primary_key=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_quick_reply_stores_store_id_reply_id", "store_id", "reply_id"),
)


class ItemKind(enum.StrEnum):
    text = "text"
    image = "image"
    link = "link"  # a web page: title, description, cover (WeCom's link / the JS-SDK's news)
    miniprogram = "miniprogram"
    file = "file"
    video = "video"


class LibraryFolder(db.Model):  # type: ignore[name-defined]
    """A folder of the library: flat, ordered (brands sort by campaign or season, rarely deeper)."""

    __tablename__ = "library_folders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LibraryItem(db.Model):  # type: ignore[name-defined]
    """One piece of content, of one kind; the fields a kind does not use stay empty."""

    __tablename__ = "library_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ItemKind] = mapped_column(String(12))
    # The name in the library; a link's and a mini program's title as WeCom shows it (≤ 128 / 64 bytes).
    title: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text, default="")  # a text item's content
    url: Mapped[str] = mapped_column(String(2048), default="")  # a link's page
    description: Mapped[str] = mapped_column(String(512), default="")  # a link's summary
    appid: Mapped[str] = mapped_column(String(64), default="")  # a mini program's
    page: Mapped[str] = mapped_column(String(256), default="")  # its path, ending in .html
    # An image's, video's or file's file; a link's or mini program's cover.
    file_id: Mapped[int | None] = mapped_column(ForeignKey("media_files.id", ondelete="RESTRICT"), index=True)
    cover_id: Mapped[int | None] = mapped_column(ForeignKey("media_files.id", ondelete="RESTRICT"), index=True)
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("library_folders.id", ondelete="SET NULL"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived: Mapped[bool] = mapped_column(default=False, index=True)
    # A link tracked as a radar link (雷达链接): sent as Siyu's /r/<token>, its opens recorded, and the tags
    # its openers are given (corp tag ids).
    tracked: Mapped[bool] = mapped_column(default=False, server_default=false())
    open_tag_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")

    file: Mapped[MediaFile | None] = relationship(foreign_keys=[file_id])
    cover: Mapped[MediaFile | None] = relationship(foreign_keys=[cover_id])
    folder: Mapped[LibraryFolder | None] = relationship()
    stores: Mapped[list[Store]] = relationship(secondary=library_item_stores, order_by=Store.name)
    tags: Mapped[list[LibraryItemTag]] = relationship(
        back_populates="item", cascade="all, delete-orphan", order_by="LibraryItemTag.tag_id"
    )

    @property
    def tag_ids(self) -> list[str]:
        return [t.tag_id for t in self.tags]


class LibraryItemTag(db.Model):  # type: ignore[name-defined]
    """A WeCom corp tag an item is for: the sidebar suggests it to members chatting with a customer who has it."""

    __tablename__ = "library_item_tags"

    item_id: Mapped[int] = mapped_column(ForeignKey("library_items.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[str] = mapped_column(String(64), primary_key=True)

    item: Mapped[LibraryItem] = relationship(back_populates="tags")

    # "items for any of the customer's tags" starts from the tag
    __table_args__ = (Index("ix_library_item_tags_tag_id_item_id", "tag_id", "item_id"),)


class QuickReplyGroup(db.Model):  # type: ignore[name-defined]
    """A group of quick replies (开场白, 售后 …): corp-wide, ordered."""

    __tablename__ = "quick_reply_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    replies: Mapped[list[QuickReply]] = relationship(back_populates="group", order_by="QuickReply.id")


class QuickReply(db.Model):  # type: ignore[name-defined]
    """A script a member sends as text, with {customer_name}, {staff_name} and {store_name} filled in."""

    __tablename__ = "quick_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("quick_reply_groups.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)  # ≤ 4000 bytes once filled in (a text message's limit)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived: Mapped[bool] = mapped_column(default=False, index=True)

    group: Mapped[QuickReplyGroup] = relationship(back_populates="replies")
    stores: Mapped[list[Store]] = relationship(secondary=quick_reply_stores, order_by=Store.name)


class ContentSend(db.Model):  # type: ignore[name-defined]
    """A library item or a quick reply a member sent from the sidebar, to a customer or a group chat.

    The member's store is kept as it was at the send (members move), so that a store's counts stay its own.
    """

    __tablename__ = "content_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id", ondelete="SET NULL"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    chat_id: Mapped[str | None] = mapped_column(String(64))  # a customer group chat's
    item_id: Mapped[int | None] = mapped_column(ForeignKey("library_items.id", ondelete="SET NULL"))
    reply_id: Mapped[int | None] = mapped_column(ForeignKey("quick_replies.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    # Counts per item, per reply, per store and per member over a period: each starts from its own column.
    __table_args__ = (
        Index("ix_content_sends_item_id_at", "item_id", "at"),
        Index("ix_content_sends_reply_id_at", "reply_id", "at"),
        Index("ix_content_sends_store_id_at", "store_id", "at"),
        Index("ix_content_sends_staff_id_at", "staff_id", "at"),
    )
