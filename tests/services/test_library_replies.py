"""Quick replies: groups, scripts checked, the store scope, what members find, and the variables filled in for
the customer in front of the member."""

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, FollowRelation, QuickReply
from bot.services.errors import Conflict, Forbidden, Invalid, NotFound
from bot.services.library import replies
from bot.services.users.permissions import NotPermitted
from tests.services.library_helpers import member, store, user


def _reply(owner, group, title, text=None, stores=()):
    return replies.save_reply(
        {"group_id": group.id, "title": title, "text": text or title, "store_ids": list(stores)}, owner
    )


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"title": "t", "text": "x"}, "group_id", "分组不存在"),
        ({"group_id": 424242, "title": "t", "text": "x"}, "group_id", "分组不存在"),
        ({"title": "", "text": "x"}, "title", "不能为空"),
        ({"title": "长" * 65, "text": "x"}, "title", "字节"),
        ({"title": "t", "text": " \n "}, "text", "不能为空"),
        ({"title": "t", "text": "字" * 1334}, "text", "4000 字节"),
        ({"title": "t", "text": "x", "store_ids": ["2"]}, "store_ids", "门店 ID"),
    ],
)
def test_bad_replies_are_refused_with_the_field_at_fault(app, roles, raw, field, words):
    with app.app_context():
        ops = user(roles["ops"])
        group = replies.save_group({"name": "开场白"}, ops)
        raw = {"group_id": group.id, **raw} if "group_id" not in raw and field != "group_id" else raw
        with pytest.raises((Invalid, NotFound)) as refused:
            replies.save_reply(raw, ops)
        assert refused.value.field == field and words in refused.value.text()


def test_groups_are_the_corps_and_go_only_when_their_replies_are_archived(app, roles):
    with app.app_context():
        ops = user(roles["ops"])
        later = replies.save_group({"name": "售后", "order": 5}, ops)
        first = replies.save_group({"name": "开场白", "order": 1}, ops)
        assert [g.name for g in replies.groups()] == ["开场白", "售后"]
        with pytest.raises(NotPermitted):
            replies.save_group({"name": "店长的"}, user(roles["mgr2"]))
        with pytest.raises(Invalid):
            replies.save_group({"name": "售后"}, ops)
        reply = _reply(ops, later, "退换货", "7 天无理由退换")
        with pytest.raises(Conflict):
            replies.delete_group(later, ops)
        replies.set_archived(reply, ops, True)
        replies.delete_group(later, ops)
        replies.save_group({"name": "欢迎"}, ops, first)
        db.session.commit()
        assert [g.name for g in replies.groups()] == ["欢迎"]
        assert db.session.scalar(select(QuickReply.id)) is None


def test_store_managers_write_their_stores_replies_and_members_find_theirs(app, roles):
    with app.app_context():
        ops, mgr2, mgr3 = user(roles["ops"]), user(roles["mgr2"]), user(roles["mgr3"])
        hello = replies.save_group({"name": "开场白", "order": 1}, ops)
        after = replies.save_group({"name": "售后", "order": 2}, ops)
        _reply(ops, hello, "问候", "您好{customer_name}，我是{staff_name}")
        ours = _reply(mgr2, hello, "静安寺店地址", "静安寺店在南京西路 1 号", [store(2).id])
        _reply(ops, after, "退换货", "7 天无理由退换")
        theirs = _reply(ops, after, "陆家嘴店营业时间", "10:00–22:00", [store(3).id])
        replies.set_archived(_reply(ops, after, "旧话术"), ops, True)
        with pytest.raises(Forbidden):
            _reply(mgr2, hello, "全公司", stores=())
        with pytest.raises(Forbidden):
            replies.save_reply({"text": "改"}, mgr2, theirs)
        with pytest.raises(NotFound):
            replies.get_reply(mgr3, ours.id)
        with pytest.raises(NotPermitted):
            _reply(user(roles["viewer"]), hello, "只读")
        assert replies.may_edit(mgr2, ours) and not replies.may_edit(mgr3, ours)
        db.session.commit()
        staff = member("staff0201")
        assert [r.title for r in replies.replies_for_member(staff)] == ["问候", "静安寺店地址", "退换货"]
        assert [r.title for r in replies.replies_for_member(staff, query="南京西路")] == ["静安寺店地址"]
        assert [r.title for r in replies.replies_for_member(staff, query="退换")] == ["退换货"]
        assert [r.title for r in replies.replies_for_member(staff, group_id=hello.id)] == ["问候", "静安寺店地址"]
        assert "陆家嘴店营业时间" in {r.title for r in replies.replies_for_member(member("staff0301"))}
        assert {r.title for r in db.session.scalars(replies.visible_replies(mgr3))} == {
            "问候",
            "退换货",
            "陆家嘴店营业时间",
        }
        assert [r.title for r in db.session.scalars(replies.visible_replies(ops, archived=True))] == ["旧话术"]


def test_variables_are_filled_for_the_customer_in_front_of_the_member(app, roles):
    with app.app_context():
        ops = user(roles["ops"])
        group = replies.save_group({"name": "开场白"}, ops)
        reply = _reply(ops, group, "问候", "{customer_name}您好，我是{store_name}的{staff_name}。订单号 {order_no} {")
        staff, other = member("staff0201"), member("staff0202")
        customer = Customer(external_userid="wm-lib-1", name="微信昵称")
        db.session.add(customer)
        db.session.flush()
        db.session.add_all(
            [
                FollowRelation(customer_id=customer.id, staff_id=staff.id, remark="王女士"),
                FollowRelation(customer_id=customer.id, staff_id=other.id, remark=""),
            ]
        )
        db.session.commit()
        store_name = store(2).name
        assert replies.render_reply(reply, customer=customer, staff=staff) == (
            f"王女士您好，我是{store_name}的{staff.name}。订单号 {{order_no}} {{"
        )  # the member's remark first; an unknown variable and a lone brace as written
        assert replies.render_reply(reply, customer=customer, staff=other).startswith("微信昵称您好")
        assert replies.render_reply(reply, customer=None, staff=staff).startswith(f"您好，我是{store_name}")
