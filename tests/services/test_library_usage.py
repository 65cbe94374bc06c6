"""Sends from the sidebar: recorded with the member's store of the day, counted per item, reply, store and
member over a period, and only those of the viewer's stores for a store manager."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import ContentSend, Customer
from bot.models._time import utcnow
from bot.services.customers import growth
from bot.services.errors import Invalid
from bot.services.library import items, replies, usage
from tests.services.library_helpers import member, store, user


def test_sends_are_recorded_and_counted_per_item_store_and_member(app, roles):
    with app.app_context():
        ops = user(roles["ops"])
        opener = items.save_item({"kind": "text", "title": "开场白", "text": "您好"}, ops)
        poster = items.save_item({"kind": "link", "title": "会员日", "url": "https://e.com"}, ops)
        group = replies.save_group({"name": "售后"}, ops)
        reply = replies.save_reply({"group_id": group.id, "title": "退换", "text": "7 天无理由"}, ops)
        customer = Customer(external_userid="wm-usage-1", name="客户")
        db.session.add(customer)
        db.session.flush()
        a, b, c = member("staff0201"), member("staff0202"), member("staff0301")
        first = usage.record_send(a, item=opener, customer=customer)
        assert (first.staff_id, first.store_id, first.customer_id, first.item_id) == (
            a.id,
            store(2).id,
            customer.id,
            opener.id,
        )
        usage.record_send(a, item=opener, chat_id="wr-group-1")
        usage.record_send(b, item=opener)
        usage.record_send(c, item=poster)
        usage.record_send(c, reply=reply, customer=customer)
        old = usage.record_send(c, item=poster)
        old.at = utcnow() - timedelta(days=40)  # outside the last 30 days
        with pytest.raises(Invalid) as nothing:
            usage.record_send(a)
        assert nothing.value.field == "item_id"
        db.session.commit()
        assert db.session.scalar(select(ContentSend.chat_id).where(ContentSend.chat_id.is_not(None))) == "wr-group-1"

        w = growth.window(30)
        boss, mgr2 = user(roles["boss"]), user(roles["mgr2"])
        used = usage.item_usage(boss, w)
        assert (used[opener.id].sends, used[opener.id].members) == (3, 2) and used[poster.id].sends == 1
        assert used[opener.id].last_sent_at is not None
        assert usage.item_usage(boss, growth.window(90))[poster.id].sends == 2
        assert usage.reply_usage(boss, w)[reply.id].sends == 1
        assert [(i.title, u.sends) for i, u in usage.top_items(boss, w)] == [("开场白", 3), ("会员日", 1)]
        assert [(r.title, u.sends) for r, u in usage.top_replies(boss, w)] == [("退换", 1)]
        stores = {r.name: (r.sends, r.members, r.items, r.replies) for r in usage.by_store(boss, w)}
        assert stores == {store(2).name: (3, 2, 1, 0), store(3).name: (2, 1, 1, 1)}
        members = {r.name: r.sends for r in usage.by_member(boss, w)}
        assert members == {a.name: 2, b.name: 1, c.name: 2}
        assert {r.name for r in usage.by_member(boss, w, store_id=store(3).id)} == {c.name}
        # A store manager counts the sends of their stores' members only.
        assert set(usage.item_usage(mgr2, w)) == {opener.id}
        assert [r.name for r in usage.by_store(mgr2, w)] == [store(2).name]
        assert {r.name for r in usage.by_member(mgr2, w)} == {a.name, b.name}
        assert usage.top_replies(mgr2, w) == []
