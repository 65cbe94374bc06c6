"""The event types Siyu pushes and the JSON each carries.

Every delivery's body is one envelope: ``{"id": "evt_…", "type": "customer.added", "occurred_at":
"2026-12-01T08:00:00Z", "data": {…}}``. ``id`` is unique per event and the same on every retry and replay:
receivers dedupe by it (delivery is at least once). Events about a customer reach an endpoint in the order
they happened (the order key is the customer's external_userid); the others carry no order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field


class CustomerRef(BaseModel):
    external_userid: str
    name: str = ""


class MemberRef(BaseModel):
    userid: str = Field(description="the WeCom member (员工); empty when none is known")


class ChannelRef(BaseModel):
    id: int
    name: str


class TagRef(BaseModel):
    id: str = Field(description="the WeCom corp tag id")
    name: str = ""
    group: str = ""


class CustomerAdded(BaseModel):
    customer: CustomerRef
    member: MemberRef
    state: str = Field("", description="the 「联系我」 state the customer came by")
    channel: ChannelRef | None = None
    confirmed: bool = Field(True, description="false: a skip-verify add the member has not confirmed yet")


class CustomerLost(BaseModel):
    customer: CustomerRef
    member: MemberRef
    side: Literal["customer", "member"] = Field(
        description="customer: the customer deleted the member; member: the member deleted the customer"
    )


class CustomerTransferred(BaseModel):
    """WeCom promises no order between the receiver's add and the handing member's removal: when the add
    comes first (an on-job transfer), the receiver's ``customer.added`` precedes this event."""

    customer: CustomerRef
    from_member: MemberRef
    to_member: MemberRef


class TagsChanged(BaseModel):
    customer: CustomerRef
    member: MemberRef
    added: list[TagRef]
    removed: list[TagRef]


class ProfileChanged(BaseModel):
    customer: CustomerRef
    member: MemberRef
    fields: list[str] = Field(
        description="what changed: remark, description, birthday, notes, or the name of a custom field"
    )
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="the new value of each custom field that changed, by its name: text, a number as a decimal"
        " string, an ISO date, the chosen label, a list of labels; null when cleared ([] for a multiple-choice field)",
    )


class GroupRef(BaseModel):
    chat_id: str
    name: str = ""


class GroupMembership(BaseModel):
    group: GroupRef
    external_userid: str = Field("", description="the customer who joined or left (empty for a member)")
    userid: str = Field("", description="the WeCom member who joined or left (empty for a customer)")
    scene: int = Field(0, description="WeCom's JoinScene / QuitScene")


class SendDelivered(BaseModel):
    send_id: int
    name: str = Field(description="the mass send's name in the panel")
    customer: CustomerRef
    member: MemberRef


class TaskRef(BaseModel):
    id: int
    rule_id: int
    rule_name: str
    trigger: str
    due_at: str | None = None


class TaskCreated(BaseModel):
    task: TaskRef
    customer: CustomerRef
    member: MemberRef


class TaskDone(BaseModel):
    task: TaskRef
    customer: CustomerRef
    member: MemberRef
    outcome: str = Field(description="done or skipped")


class ItemRef(BaseModel):
    id: int
    title: str


class RadarOpened(BaseModel):
    customer: CustomerRef
    member: MemberRef
    item: ItemRef = Field(description="the library item the tracked link carries")
    send_id: int | None = Field(None, description="the mass send the link went out in, if it was one")
    via: str = Field(description="link (a per-customer link), or oauth (identified through WeCom's OAuth)")


class StoreRef(BaseModel):
    department_id: int = Field(description="the store's WeCom department id")
    name: str


class OrderAttributed(BaseModel):
    order_no: str
    customer: CustomerRef
    member: MemberRef = Field(description="the member the order counts for (named on it, else serving the store)")
    store: StoreRef
    channel: ChannelRef | None = Field(None, description="the channel that brought the customer")
    amount_cents: int
    paid_at: str
    status: Literal["paid", "refunded"]


class HandoverItem(BaseModel):
    status: str = Field(description="done, refused, limit (the receiver is at their limit), failed or blocked")
    errcode: int = 0


class HandoverCustomer(HandoverItem):
    external_userid: str


class HandoverGroup(HandoverItem):
    chat_id: str


class HandoverFinished(BaseModel):
    handover_id: int
    kind: Literal["resigned", "onjob"] = Field(description="resigned: 离职继承; onjob: 在职继承")
    from_member: MemberRef
    to_member: MemberRef
    customers: list[HandoverCustomer]
    groups: list[HandoverGroup]


class Ping(BaseModel):
    message: str
    endpoint_id: int


@dataclass(frozen=True)
class EventType:
    name: str
    summary: str
    data: type[BaseModel]
    #: deliveries of this type keep order per customer
    ordered: bool = True


TYPES: tuple[EventType, ...] = (
    EventType("customer.added", "A customer added a member (or was added)", CustomerAdded),
    EventType("customer.lost", "A relation ended: the customer or the member deleted the other", CustomerLost),
    EventType("customer.transferred", "A customer was handed over from one member to another", CustomerTransferred),
    EventType("customer.tags_changed", "Corp tags added to or removed from a customer", TagsChanged),
    EventType(
        "customer.profile_changed",
        "A customer's remark, description, birthday, notes or a custom field changed",
        ProfileChanged,
    ),
    EventType("group.member_joined", "Someone joined a customer group", GroupMembership, ordered=False),
    EventType("group.member_left", "Someone left a customer group", GroupMembership, ordered=False),
    EventType("send.delivered", "A mass send reached a customer", SendDelivered),
    EventType("task.created", "A lifecycle task was created for a member about a customer", TaskCreated),
    EventType("task.done", "A member finished or skipped a lifecycle task", TaskDone),
    EventType("order.attributed", "An order of the brand's was matched to a customer and attributed", OrderAttributed),
    EventType("radar.opened", "A customer opened a tracked link (雷达链接): once per link and day", RadarOpened),
    EventType(
        "handover.finished",
        "A handover's every customer and group reached a final status",
        HandoverFinished,
        ordered=False,
    ),
    EventType("ping", "A test event, sent from the panel", Ping, ordered=False),
)
BY_NAME = {t.name: t for t in TYPES}
#: what an endpoint may subscribe to (the test event reaches every endpoint on demand only)
SUBSCRIBABLE = tuple(t.name for t in TYPES if t.name != "ping")
