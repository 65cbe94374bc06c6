"""The assistant members talk to in their WeCom client: a text to the app gets an answer by app message.

Commands are matched loosely (the words members actually type); anything else gets the help text.
Each incoming message (its MsgId) is answered once: the key is taken in Redis before the answer is
sent, so a re-processed event does not answer twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.models import Customer, Staff
from bot.services import corp_time
from bot.services.channels import codes as channels
from bot.services.channels import qr_images
from bot.services.clients import agent_api, agent_id
from bot.services.commerce import targets
from bot.services.customers import growth
from bot.services.customers import relations as customers
from bot.services.lifecycle import actions as lifecycle_actions
from bot.services.lifecycle import reports as lifecycle_reports

log = logging.getLogger(__name__)

RANK_DAYS = 30
HELP = (
    "私域助手可以：\n"
    "· 发送「今日任务」：查看今天需要跟进的客户\n"
    "· 发送「我的二维码」：获取你的专属渠道码\n"
    "· 发送「排行」：查看你近 30 天的拉新排名\n"
    "· 发送「客户 名字」：查看你的客户的简要资料\n"
    "· 发送「帮助」：查看本说明"
)
CUSTOMERS_SHOWN = 3
TASKS_SHOWN = 15
ANSWERED_TTL = 7 * 86400


def _text(userid: str, content: str) -> None:
    agent_api().send_app_text(agent_id(), [userid], content)


def _my_code(staff: Staff) -> str:
    channel = channels.personal_code(staff)
    if channel is None:
        _text(staff.userid, "你还没有专属渠道码，请联系管理员在私域助手的「渠道活码」页一键生成。")
        return "no personal code"
    qr_images.send_code_to_member(channel, staff.userid)
    return f"sent code {channel.state}"


def _goals(staff: Staff) -> list[str]:
    """The member's targets of this month and week: done, percent and gap."""
    lines = []
    for period, label in (("month", "本月目标"), ("week", "本周目标")):
        rows = targets.achievements(None, period, targets.current_start(period), owner="staff", owner_ids=[staff.id])
        line = targets.summary_line(rows, label)
        if line:
            lines.append(line)
    return lines


def _ranking(staff: Staff) -> str:
    w = growth.window(RANK_DAYS)
    corp = growth.rank_of(staff.userid, w)
    if corp is None:
        _text(staff.userid, "\n".join([f"近 {RANK_DAYS} 天你还没有新增或流失的客户，加油！", *_goals(staff)]))
        return "no ranking"
    place, total, row = corp
    lines = [
        f"近 {RANK_DAYS} 天拉新排行（按净增长）",
        f"新增 {row['added']}，流失 {row['lost']}，净增长 {row['net']}",
        f"全公司：第 {place} 名 / 共 {total} 人",
    ]
    for store in staff.stores:
        in_store = growth.rank_of(staff.userid, w, store_id=store.id)
        if in_store is not None:
            lines.append(f"{store.name}：第 {in_store[0]} 名 / 共 {in_store[1]} 人")
    _text(staff.userid, "\n".join(lines + _goals(staff)))
    return f"rank {place}/{total}"


def _help(staff: Staff, _arg: str = "") -> str:
    _text(staff.userid, HELP)
    return "help"


def _today(staff: Staff, _arg: str = "") -> str:
    day = corp_time.today()
    tasks = lifecycle_reports.tasks_of(staff, day)
    if not tasks:
        _text(staff.userid, "今天没有需要跟进的客户。")
        return "no tasks"
    names = dict(
        db.session.execute(
            select(Customer.id, Customer.name).where(Customer.id.in_([t.customer_id for t in tasks]))
        ).all()
    )
    lines = [f"今日任务：{len(tasks)} 位客户"]
    for task in tasks[:TASKS_SHOWN]:
        lines.append(f"· {task.rule.name}：{names.get(task.customer_id) or '客户'}")
    if len(tasks) > TASKS_SHOWN:
        lines.append(f"……还有 {len(tasks) - TASKS_SHOWN} 位")
    lines.append(lifecycle_actions.link(f"admin/lifecycle/tasks?staff={staff.userid}"))
    _text(staff.userid, "\n".join(lines))
    return f"{len(tasks)} tasks"


def _customer(staff: Staff, query: str) -> str:
    query = query.strip()
    if not query:
        _text(staff.userid, "请在「客户」后面加上名字或备注，例如：客户 张三")
        return "customer: no name"
    found = customers.find_followed(staff, query, limit=CUSTOMERS_SHOWN + 1)
    if not found:
        _text(staff.userid, f"没有找到名字或备注含「{query[:20]}」的客户。")
        return "customer: none"
    blocks = [customers.summary(c, f) for c, f in found[:CUSTOMERS_SHOWN]]
    if len(found) > CUSTOMERS_SHOWN:
        blocks.append("还有更多匹配的客户，请输入更完整的名字。")
    _text(staff.userid, "\n\n".join(blocks)[:1800])
    return f"customer: {len(found)}"


#: (words that call it, whether the rest of the text is its argument, the command)
COMMANDS: tuple[tuple[tuple[str, ...], bool, Callable[[Staff, str], str]], ...] = (
    (("客户",), True, _customer),
    (("今日任务", "任务", "待办"), False, _today),
    (("我的二维码", "二维码", "我的码", "专属码", "活码"), False, lambda staff, _arg: _my_code(staff)),
    (("排行", "排名", "榜"), False, lambda staff, _arg: _ranking(staff)),
    (("帮助", "help", "?", "？"), False, _help),
)


def command_for(text: str) -> tuple[Callable[[Staff, str], str], str]:
    """The command a text asks for and its argument; "客户 <名字>" takes what follows the word."""
    words = text.strip().lower()
    for keys, takes_argument, command in COMMANDS:
        for key in keys:
            if takes_argument and words.startswith(key):
                return command, text.strip()[len(key) :].strip(" :：")
            if not takes_argument and key in words:
                return command, ""
    return _help, ""


def reply(userid: str, text: str, msg_id: str) -> str:
    """Answer one message from a member; returns what was done, for the event's log line."""
    staff = db.session.scalar(select(Staff).where(Staff.userid == userid))
    if staff is None or not staff.active:
        return "sender is not a known member"
    key = f"siyu:assistant:answered:{msg_id}"
    if msg_id and not redis_conn.client.set(key, 1, nx=True, ex=ANSWERED_TTL):
        return "already answered"
    try:
        command, argument = command_for(text)
        return command(staff, argument)
    except Exception:
        # Nothing reached the member: let the event's retry answer.
        redis_conn.client.delete(key)
        raise
