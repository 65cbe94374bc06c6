"""Radar links (雷达链接): the tracked links that went out, each open of them, and the alerts they raised.

A link is named by a signed token (``bot.services.radar.tokens``): per customer (item, member, customer) where
the send reaches one customer — the sidebar, a welcome message —, per send (item, member, mass send) where one
WeCom task carries it to many, per group (item, member, customer group) where a member sends it into a group,
per moment (item, moment) where the corp's members post it to their customers' moments.
Its row is written when it goes out (or, for a welcome sent from a thread without a session, at its first
open) and keyed by the token's payload, so a link is one row however often it is sent.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.extensions import db
from bot.models._time import utcnow


class RadarLink(db.Model):  # type: ignore[name-defined]
    """One tracked link as it went out: a library item, the member it went out for, and the customer or the send."""

    __tablename__ = "radar_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)  # the token's signed payload
    kind: Mapped[str] = mapped_column(String(8))  # customer | send | group | moment
    item_id: Mapped[int] = mapped_column(ForeignKey("library_items.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    # The member's store when the link went out (members move; a store's figures stay its own).
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id", ondelete="SET NULL"), index=True)
    external_userid: Mapped[str | None] = mapped_column(String(64))  # a per-customer link's customer
    send_id: Mapped[int | None] = mapped_column(ForeignKey("mass_sends.id", ondelete="CASCADE"), index=True)
    # A group link's group, and how many customers were in it when the link was first sent (its reach).
    group_id: Mapped[int | None] = mapped_column(ForeignKey("group_chats.id", ondelete="SET NULL"), index=True)
    reached: Mapped[int | None] = mapped_column(Integer)
    # A moment link's moment (its reach is the moment's: the customers who can see it).
    moment_id: Mapped[int | None] = mapped_column(ForeignKey("moments.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RadarOpen(db.Model):  # type: ignore[name-defined]
    """Opens of a link by one visitor on one corp day: the first is the open, the rest reloads (``count``).

    ``visitor`` is ``c:<external_userid>`` for a known customer (named by the link, or by WeCom's OAuth for a
    link of a mass send), else ``a:<digest>`` of the opener's address and browser (an anonymous open). The
    unique key is what makes an open count once per (link, customer, day) however many workers record it."""

    __tablename__ = "radar_opens"

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("radar_links.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(Integer)  # the link's, for the per-item figures without a join
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    visitor: Mapped[str] = mapped_column(String(80))
    day: Mapped[date] = mapped_column(Date)
    via: Mapped[str] = mapped_column(String(12))  # link (the token names them) | oauth | anonymous
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        UniqueConstraint("link_id", "visitor", "day", name="uq_radar_opens_link_visitor_day"),
        Index("ix_radar_opens_item_id_first_at", "item_id", "first_at"),
    )


class RadarAlert(db.Model):  # type: ignore[name-defined]
    """The app message telling the serving member a customer opened an item: at most one per (customer,
    item, corp day). ``status``: pending → calling → sent, or quiet (opened in the corp's quiet hours: held,
    and pending again once they end), failed (WeCom refused), none (no member to tell)."""

    __tablename__ = "radar_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("library_items.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("customer_id", "item_id", "day", name="uq_radar_alerts_customer_item_day"),)
