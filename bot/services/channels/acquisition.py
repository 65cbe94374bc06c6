"""A customer arrives: the welcome within its 20 s, the customer mirrored, attributed to the channel whose
``state`` brought them (an unknown state is "no channel", never dropped) and tagged as the channel says."""

from __future__ import annotations

import logging

from bot.models import Customer, FollowStatus, WelcomeStatus
from bot.services.channels import codes as channels
from bot.services.channels import welcome
from bot.services.clients import agent_api, agent_id
from bot.services.customers import announcements, transfers
from bot.services.customers import relations as customers
from bot.services.handover import takeovers

log = logging.getLogger(__name__)


def customer_added(
    external_userid: str,
    userid: str,
    state: str,
    welcome_code: str,
    *,
    confirmed: bool,
) -> tuple[Customer, WelcomeStatus | None]:
    """add_external_contact / add_half_external_contact; flushes. Returns the customer and the welcome's fate."""
    channel = channels.channel_for_state(state)
    # Read WeCom first (no database writes yet), so the welcome goes out before anything slower.
    data = customers.fetch_customer(external_userid)
    if confirmed and not welcome_code:
        listed = {str(f.get("userid")) for f in data.get("follow_user", [])}
        source = transfers.transfer_source(external_userid, userid, listed)
        if source is None:
            source = takeovers.takeover_source(external_userid, userid)  # ours, even before the deletion
        if source is not None:
            # A takeover (在职/离职继承): not an add, nothing to welcome, the channel stays the customer's.
            follow = customers.record_relation(external_userid, userid, data)
            transfers.record_takeover(follow, source)
            takeovers.taken_over(external_userid, userid)
            return follow.customer, None
    status, variant_id = None, None
    if welcome_code:
        name = str(data.get("external_contact", {}).get("name", ""))
        status, variant_id = welcome.send_welcome(welcome_code, external_userid, userid, channel, customer_name=name)
    follow = customers.record_customer_added(external_userid, userid, state, confirmed=confirmed, data=data)
    customer = follow.customer
    channels.attribute(follow, channel, variant_id)
    announcements.added(follow, channel, confirmed=confirmed)
    if channel is not None and channel.active:
        channels.apply_channel_tags(follow, channel)
        channels.apply_remark(follow, channel, channels.variables(customer.name, follow.staff))
        if channel.daily_cap:
            # This add may have filled the member's quota for today: take them off the code.
            channels.reroute(channel)
    if welcome_code:
        customers.record_event(customer, f"welcome_{status.value}" if status else "welcome", userid)
    else:
        # A welcome set in the WeCom console, a chat already started, or a code used by add_half: nothing to send.
        customers.record_event(customer, "welcome_by_wecom", userid)
    return customer, status


def archiving_approved(external_userid: str, userid: str, welcome_code: str) -> tuple[Customer, WelcomeStatus | None]:
    """msg_audit_approved (WeCom doc 92005): the customer agreed to chat archiving (会话存档); its welcome code
    is the one to welcome them with (their add came without one) — once, within its 20 s, by the channel of
    the state the relation was added with. Flushes.

    An approval processed before its add (it is on the welcome fast path, an add without a code is not) reads
    the relation from WeCom, as an add reads the customer, rather than failing for a retry: the first retry
    comes 10 s later and the code lives 20 s. The customer is mirrored from that answer; their add, processed
    afterwards, attributes and tags them as usual and finds the code handled."""
    follow = customers.find_follow(external_userid, userid)
    # Read WeCom first (no database writes yet), so the welcome goes out before anything slower.
    data = customers.fetch_customer(external_userid) if follow is None else {}
    state = follow.state if follow is not None else welcome.listed_state(data, userid)
    channel = channels.channel_for_state(state)
    status, variant_id = None, None
    if welcome_code:
        name = follow.customer.name if follow is not None else str(data.get("external_contact", {}).get("name", ""))
        status, variant_id = welcome.send_welcome(welcome_code, external_userid, userid, channel, customer_name=name)
    if follow is None:
        follow = customers.record_relation(external_userid, userid, data)
    channels.attribute(follow, channel, variant_id)
    customer = follow.customer
    customers.record_event(customer, "archiving_approved", userid)
    if status is not None:
        customers.record_event(customer, f"welcome_{status.value}", userid)
    return customer, status


def customer_lost(external_userid: str, userid: str) -> Customer:
    """del_follow_user: the customer deleted the member. Record the loss and tell the member (流失提醒)."""
    follow = customers.record_follow_lost(
        external_userid, userid, FollowStatus.deleted_by_customer, "deleted by customer"
    )
    customer = follow.customer
    name = customer.name or external_userid
    remark = f"（备注：{follow.remark}）" if follow.remark and follow.remark != customer.name else ""
    # The same text to the same member within 4 hours is dropped by WeCom: a retried event alerts once.
    agent_api().send_app_text(
        agent_id(),
        [userid],
        f"流失提醒：客户「{name}」{remark}已将你删除。可在私域助手查看该客户的资料和时间线。",
        dedupe_seconds=4 * 3600,
    )
    return customer
