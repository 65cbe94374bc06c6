"""SQLAlchemy 2 typed models, one module per aggregate."""

from bot.models.api_tokens import ApiToken
from bot.models.callbacks import CallbackEvent, EventStatus
from bot.models.customers import Customer, CustomerEvent, FollowRelation, FollowStatus, FollowTag
from bot.models.directory import Staff, Store, staff_stores
from bot.models.jobs import JobRun
from bot.models.tags import Tag, TagGroup
from bot.models.users import AuditEntry, Role, User, user_stores

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Role",
    "User",
    "user_stores",
    "CallbackEvent",
    "Customer",
    "CustomerEvent",
    "EventStatus",
    "FollowRelation",
    "FollowStatus",
    "FollowTag",
    "JobRun",
    "Staff",
    "Store",
    "Tag",
    "TagGroup",
    "staff_stores",
]
