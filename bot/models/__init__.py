"""SQLAlchemy 2 typed models, one module per aggregate."""

from bot.models import facets
from bot.models.api_tokens import ApiToken
from bot.models.callbacks import CallbackEvent, EventStatus
from bot.models.channels import (
    Channel,
    WelcomeMessage,
    WelcomeSend,
    WelcomeStatus,
    channel_backup_staff,
    channel_staff,
)
from bot.models.commerce import (
    RFM_CLASSES,
    BrandImport,
    CustomerMobile,
    CustomerValue,
    Membership,
    MembershipLevel,
    Order,
    OrderStatus,
    RfmSettings,
    Target,
)
from bot.models.customers import Customer, CustomerEvent, FollowRelation, FollowStatus, FollowTag
from bot.models.directory import Staff, Store, staff_stores
from bot.models.fields import CustomerField, CustomerFieldValue, FieldEditors, FieldKind
from bot.models.groups import GroupChat, GroupInvite, GroupMember, JoinWay
from bot.models.handover import FINAL, Handover, HandoverCustomer, HandoverGroup, ItemStatus, UnassignedCustomer
from bot.models.jobs import JobRun
from bot.models.library import (
    ContentSend,
    ItemKind,
    LibraryFolder,
    LibraryItem,
    LibraryItemTag,
    QuickReply,
    QuickReplyGroup,
    library_item_stores,
    quick_reply_stores,
)
from bot.models.lifecycle import LifecycleRule, LifecycleTask, RuleRun, Step, Trigger
from bot.models.moments import MemberMoment, Moment, MomentMember, MomentReaction, MomentStatus
from bot.models.radar import RadarAlert, RadarLink, RadarOpen
from bot.models.segments import Segment
from bot.models.sends import (
    ChunkStatus,
    MassSend,
    MediaFile,
    RecipientStatus,
    SendChunk,
    SendRecipient,
    SendReminder,
    SendStatus,
)
from bot.models.tags import Tag, TagGroup, TagJob, TagJobItem
from bot.models.users import AuditEntry, Role, User, user_stores
from bot.models.webhooks import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent

#: indexes a migration makes by hand on PostgreSQL only (trigram search); not part of the models
HAND_MANAGED_INDEXES = frozenset({"ix_customers_name_trgm", "ix_follow_relations_remark_trgm"})


def include_in_autogenerate(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's include_object: leave the hand-managed indexes and tables out of model comparisons."""
    if type_ == "table" and name in facets.TABLES:
        return False
    return not (type_ == "index" and name in HAND_MANAGED_INDEXES)


__all__ = [
    "CustomerField",
    "CustomerFieldValue",
    "FieldEditors",
    "FieldKind",
    "DeliveryStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "HAND_MANAGED_INDEXES",
    "include_in_autogenerate",
    "ApiToken",
    "AuditEntry",
    "Role",
    "User",
    "user_stores",
    "CallbackEvent",
    "Channel",
    "WelcomeMessage",
    "WelcomeSend",
    "WelcomeStatus",
    "channel_backup_staff",
    "channel_staff",
    "Customer",
    "RFM_CLASSES",
    "BrandImport",
    "CustomerMobile",
    "CustomerValue",
    "Membership",
    "MembershipLevel",
    "Order",
    "OrderStatus",
    "RfmSettings",
    "Target",
    "CustomerEvent",
    "EventStatus",
    "FollowRelation",
    "FollowStatus",
    "FollowTag",
    "Segment",
    "MemberMoment",
    "Moment",
    "MomentMember",
    "MomentReaction",
    "MomentStatus",
    "RadarAlert",
    "RadarLink",
    "RadarOpen",
    "GroupChat",
    "GroupInvite",
    "GroupMember",
    "JoinWay",
    "ChunkStatus",
    "MassSend",
    "MediaFile",
    "RecipientStatus",
    "SendChunk",
    "SendReminder",
    "SendRecipient",
    "SendStatus",
    "JobRun",
    "ContentSend",
    "ItemKind",
    "LibraryFolder",
    "LibraryItem",
    "LibraryItemTag",
    "QuickReply",
    "QuickReplyGroup",
    "library_item_stores",
    "quick_reply_stores",
    "LifecycleRule",
    "LifecycleTask",
    "FINAL",
    "Handover",
    "HandoverCustomer",
    "HandoverGroup",
    "ItemStatus",
    "UnassignedCustomer",
    "RuleRun",
    "Step",
    "Trigger",
    "Staff",
    "Store",
    "Tag",
    "TagGroup",
    "TagJob",
    "TagJobItem",
    "staff_stores",
]
