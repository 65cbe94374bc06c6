"""Who may do what: the one permission policy, asked by the panel, the API and the services alike.

Each action names the roles that may take it; what a user may *see* is the store scope (``scope``), applied
to every read. A front door asks ``allows`` to show a button and ``require`` (or its own guard built on it)
before it acts; a service that is a use case of its own (save a draft, enable a rule) asks ``require`` too,
so that no door can forget it. The refusal (``NotPermitted``) is a ``ServiceError``, translated by each door
like any other.
"""

from __future__ import annotations

import enum

from bot.models import Role, User
from bot.services.errors import Forbidden
from bot.services.users.accounts import N_


class Action(enum.StrEnum):
    manage_users = "manage_users"
    read_audit_log = "read_audit_log"
    sync_directory = "sync_directory"
    edit_channels = "edit_channels"
    edit_tags = "edit_tags"
    tag_customers = "tag_customers"
    bulk_tag_customers = "bulk_tag_customers"
    edit_customers = "edit_customers"
    edit_segments = "edit_segments"
    edit_rules = "edit_rules"
    enable_sending_rules = "enable_sending_rules"
    edit_join_ways = "edit_join_ways"
    sync_groups = "sync_groups"
    draft_sends = "draft_sends"
    attach_any_media = "attach_any_media"
    approve_sends = "approve_sends"
    remind_any_send = "remind_any_send"
    read_events = "read_events"
    retry_events = "retry_events"
    drive_sandbox = "drive_sandbox"
    manage_library = "manage_library"
    organize_library = "organize_library"
    manage_own_api_tokens = "manage_own_api_tokens"
    manage_any_api_token = "manage_any_api_token"  # noqa: S105 - an action's name
    hand_over = "hand_over"
    manage_webhooks = "manage_webhooks"
    import_brand_data = "import_brand_data"
    manage_customer_fields = "manage_customer_fields"
    set_targets = "set_targets"


_ADMIN = frozenset({Role.admin})
_WRITERS = frozenset({Role.admin, Role.operator})
_STORE_WRITERS = frozenset({Role.admin, Role.operator, Role.store_manager})

#: the roles that may take each action (admins: everything; operators: the corp's marketing set-up; store
#: managers: their own stores' customers and drafts; viewers: read only)
POLICY: dict[Action, frozenset[Role]] = {
    Action.manage_users: _ADMIN,
    Action.read_audit_log: _ADMIN,
    # Webhooks carry every customer's events out of Siyu: only admins point them somewhere.
    Action.manage_webhooks: _ADMIN,
    Action.sync_directory: _ADMIN,
    Action.edit_channels: _WRITERS,
    Action.edit_tags: _WRITERS,
    Action.tag_customers: _STORE_WRITERS,
    Action.bulk_tag_customers: _WRITERS,
    Action.edit_customers: _STORE_WRITERS,
    Action.edit_segments: _WRITERS,
    Action.edit_rules: _WRITERS,
    # A rule that sends to customers is a standing approval of mass sends.
    Action.enable_sending_rules: _ADMIN,
    Action.edit_join_ways: _WRITERS,
    Action.sync_groups: _WRITERS,
    Action.draft_sends: _STORE_WRITERS,
    # Anyone who may draft attaches the files they uploaded; these roles any kept file.
    Action.attach_any_media: _WRITERS,
    Action.approve_sends: _ADMIN,
    # Anyone who may draft may remind the members of their own sends; these roles those of any send.
    Action.remind_any_send: _WRITERS,
    # Store managers see their stores' customers; the corp-wide event log is not theirs.
    Action.read_events: frozenset({Role.admin, Role.operator, Role.viewer}),
    Action.retry_events: _WRITERS,
    Action.drive_sandbox: _WRITERS,
    # Library items and quick replies: store managers those of their own stores (never corp-wide ones).
    Action.manage_library: _STORE_WRITERS,
    # The library's folders and the quick replies' groups are the corp's one structure.
    Action.organize_library: _WRITERS,
    # A token acts as its user, with no more than their role and stores: anyone may hold their own; only
    # admins see and revoke everyone's.
    Action.manage_own_api_tokens: frozenset(Role),
    Action.manage_any_api_token: _ADMIN,
    # 离职继承: admins any member's customers, store managers those of their own stores' members.
    Action.hand_over: frozenset({Role.admin, Role.store_manager}),
    # The brand's memberships, orders, ladder and RFM settings are corp-wide data.
    Action.import_brand_data: _WRITERS,
    # Which fields the brand keeps on every customer, and who may edit each, is the corp's data model.
    Action.manage_customer_fields: _ADMIN,
    # 全员营销 targets are what members and stores are measured against: admins set them.
    Action.set_targets: _ADMIN,
}
assert set(POLICY) == set(Action), "every action has its roles"

#: what each action is, for the message of a refusal
_WHAT = {
    Action.manage_users: N_("管理账号"),
    Action.read_audit_log: N_("查看操作日志"),
    Action.sync_directory: N_("同步通讯录"),
    Action.edit_channels: N_("修改渠道码"),
    Action.edit_tags: N_("修改标签库"),
    Action.tag_customers: N_("给客户打标签"),
    Action.bulk_tag_customers: N_("批量打标签"),
    Action.edit_customers: N_("修改客户资料"),
    Action.edit_segments: N_("修改客户分群"),
    Action.edit_rules: N_("修改生命周期规则"),
    Action.enable_sending_rules: N_("启用会给客户发消息的规则"),
    Action.edit_join_ways: N_("修改加群码"),
    Action.sync_groups: N_("同步客户群"),
    Action.draft_sends: N_("起草群发"),
    Action.attach_any_media: N_("使用他人上传的附件"),
    Action.approve_sends: N_("审批群发"),
    Action.remind_any_send: N_("提醒他人群发的成员"),
    Action.read_events: N_("查看回调事件"),
    Action.retry_events: N_("重试回调事件"),
    Action.drive_sandbox: N_("操作沙箱"),
    Action.manage_library: N_("管理素材和话术"),
    Action.organize_library: N_("管理素材文件夹和话术分组"),
    Action.manage_own_api_tokens: N_("管理自己的 API 令牌"),
    Action.manage_any_api_token: N_("管理他人的 API 令牌"),
    Action.hand_over: N_("交接离职员工的客户和群"),
    Action.import_brand_data: N_("导入会员和订单"),
    Action.manage_customer_fields: N_("定义自定义客户字段"),
    Action.set_targets: N_("设置门店和成员的目标"),
}


class NotPermitted(Forbidden):
    """The user's role may not take ``action``."""

    def __init__(self, action: Action) -> None:
        super().__init__(_WHAT[action], "user")
        self.action = action

    def english(self) -> str:
        """The API's words: the action and the roles that may take it."""
        roles = sorted(r.value for r in POLICY[self.action])
        return f"{self.action.value.replace('_', ' ')} needs the {' or '.join(roles)} role"


def roles_for(action: Action) -> frozenset[Role]:
    return POLICY[action]


def allows(user: User, action: Action) -> bool:
    """Whether ``user`` may take ``action`` (an inactive account may take none)."""
    return bool(user.active) and Role(user.role) in POLICY[action]


def require(user: User, action: Action) -> None:
    """Raise ``NotPermitted`` (a ``Forbidden`` on the field "user") unless ``user`` may take ``action``."""
    if not allows(user, action):
        raise NotPermitted(action)


def token_action(user: User, owner_id: int | None) -> Action:
    """The action managing a token of the user ``owner_id`` is for ``user``: their own, or someone else's."""
    return Action.manage_own_api_tokens if owner_id is not None and owner_id == user.id else Action.manage_any_api_token


def allows_token(user: User, owner_id: int | None) -> bool:
    """Whether ``user`` may see and revoke the tokens of the user ``owner_id`` (or create one acting as them)."""
    return allows(user, token_action(user, owner_id))


def require_token(user: User, owner_id: int | None) -> None:
    """``NotPermitted`` unless ``user`` may manage the tokens of the user ``owner_id``."""
    require(user, token_action(user, owner_id))
