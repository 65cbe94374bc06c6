"""SQLAlchemy 2 typed models, one module per aggregate."""

from bot.models.api_tokens import ApiToken
from bot.models.callbacks import CallbackEvent, EventStatus
from bot.models.customers import Customer, FollowRelation, FollowStatus, FollowTag
from bot.models.directory import Staff, Store, staff_stores
from bot.models.jobs import JobRun
from bot.models.tags import Tag, TagGroup

__all__ = [
    "ApiToken",
    "CallbackEvent",
    "Customer",
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
