"""Who is in front of the sidebar, and what they may open: a member identified by WeCom OAuth sees only the
customers they follow and the groups they own or are in (the one policy: ``users.scope``'s member part).
Anything else is "not found", so that nothing about it leaks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.extensions import db
from bot.models import Customer, FollowRelation, GroupChat, Staff
from bot.services.clients import agent_api, agent_id, settings
from bot.services.errors import Forbidden, Invalid, NotFound, translates_wecom_errors
from bot.services.users.accounts import N_
from bot.services.users.scope import member_follow_condition, member_group_condition
from bot.wecom.errors import WeComError
from bot.wecom.jsapi import authorize_url as oauth_authorize_url

#: WeCom's answer to a code that is unknown, used or older than 5 minutes (doc 91023)
INVALID_CODE = 40029


class CodeRefused(Invalid):
    """The OAuth code was used already, has expired (5 minutes), or never came from WeCom."""


class NotAMember(Forbidden):
    """The visitor is not an active member Siyu knows (a customer, or someone who left)."""


def active_member(userid: str) -> Staff:
    """The active member ``userid``, or ``NotAMember``."""
    staff: Staff | None = db.session.scalar(select(Staff).where(Staff.userid == userid)) if userid else None
    if staff is None or not staff.active:
        raise NotAMember(N_("只有在职的企业成员可以使用侧边栏"), "userid")
    return staff


@translates_wecom_errors
def identify(code: str) -> Staff:
    """The member an OAuth code stands for (``auth/getuserinfo``, WeCom doc 91023; a code serves once, for 5
    minutes). A visitor who is not a member — WeCom answers an openid / external_userid — is refused."""
    if not code or len(code) > 512:
        raise CodeRefused(N_("登录链接无效，请从企业微信重新打开"), "code")
    try:
        info: dict[str, Any] = agent_api().user_info(code)
    except WeComError as exc:
        if exc.errcode == INVALID_CODE:
            raise CodeRefused(N_("登录链接已使用或已过期，请从企业微信重新打开"), "code") from exc
        raise
    return active_member(str(info.get("userid") or info.get("UserId") or ""))


def followed_customer(staff: Staff, external_userid: str) -> tuple[Customer, FollowRelation]:
    """The customer ``staff`` follows, with their relation; ``NotFound`` for anyone else."""
    row = db.session.execute(
        select(Customer, FollowRelation)
        .join(FollowRelation, FollowRelation.customer_id == Customer.id)
        .where(Customer.external_userid == external_userid, member_follow_condition(staff))
        .options(
            selectinload(Customer.follows).selectinload(FollowRelation.staff).selectinload(Staff.stores),
            selectinload(Customer.follows).selectinload(FollowRelation.tags),
        )
    ).first()
    if row is None:
        raise NotFound(N_("没有这位客户，或你没有添加这位客户"), "external_userid")
    return row[0], row[1]


def visible_group(staff: Staff, chat_id: str) -> GroupChat:
    """The customer group ``staff`` owns or is in; ``NotFound`` for any other."""
    group: GroupChat | None = db.session.scalar(
        select(GroupChat).where(GroupChat.chat_id == chat_id, member_group_condition(staff))
    )
    if group is None:
        raise NotFound(N_("没有这个客户群，或你不在群里"), "chat_id")
    return group


def authorize_url(redirect_uri: str, state: str) -> str:
    """WeCom's OAuth2 authorize URL for the app (``snsapi_base``, WeCom doc 91022); its base is configurable so
    that the sandbox can play it."""
    s = settings()
    return oauth_authorize_url(s.oauth_url, s.corp_id, redirect_uri, state, agent_id())
