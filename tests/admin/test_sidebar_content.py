"""Sending from the sidebar: the library and quick replies a member may send (corp-wide and their stores'),
previews with the customer's variables, sendChatMessage arguments with a media id the fake WeCom issued (and
a new one when the client refused it), each send recorded — and nothing for a chat or an item not theirs."""

import re

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import ContentSend, User
from bot.services.library import items, replies
from tests.admin.test_sidebar import sign_in_member
from tests.conftest import customers_of, make_user
from tests.services.library_helpers import png, store, tag


@pytest.fixture
def shelf(app, sim, corp, run_worker):
    """Customers of staff0201 (store of department 2) and staff0301 (department 3); an image for everyone,
    tagged VIP; a text for department 3 only; a reply with variables."""
    people = customers_of(app, sim, run_worker, ["staff0201", "staff0301"])
    admin_id, _ = make_user(app, "content-admin", "admin")
    with app.app_context():
        admin = db.session.get(User, admin_id)
        image = items.save_item(
            {"kind": "image", "title": "新品海报", "tag_ids": [tag("VIP")]}, admin, file=("p.png", png())
        )
        other = items.save_item(
            {"kind": "text", "title": "三店活动", "text": "三店专属", "store_ids": [store(3).id]}, admin
        )
        group = replies.save_group({"name": "开场白"}, admin)
        reply = replies.save_reply(
            {
                "group_id": group.id,
                "title": "问候",
                "text": "{customer_name}您好，我是{store_name}的{staff_name}{未知}",
            },
            admin,
        )
        db.session.commit()
        ids = {"image": image.id, "other": other.id, "reply": reply.id}
    return people, ids


def token_of(client, url):
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get(url).get_data(as_text=True)).group(1)


def post(client, url, token, body):
    return client.post(url, json=body, headers={"X-CSRFToken": token, "Accept": "application/json"})


def test_the_library_page_lists_what_the_member_may_send_with_variables_filled(app, client, shelf):
    (mine, *_), ids = shelf
    sign_in_member(client, "staff0201")
    page = client.get(f"/sidebar/library?external_userid={mine.external_userid}").get_data(as_text=True)
    assert "新品海报" in page and "三店活动" not in page
    assert f"{mine.name}您好，我是" in page and "{未知}" in page
    assert "{customer_name}" not in page
    searched = client.get(f"/sidebar/library?external_userid={mine.external_userid}&q=海报").get_data(as_text=True)
    assert "新品海报" in searched and "问候" not in searched
    # the customer page suggests the image once the customer has the tag it is tagged with
    customer_url = f"/sidebar/customers/{mine.external_userid}"
    client.post(customer_url + "/tags", data={"tag_ids": [tag_id(app)], "csrf_token": token_of(client, customer_url)})
    todo = client.get(customer_url).get_data(as_text=True).split('id="todo"', 1)[1].split("</section>", 1)[0]
    assert "新品海报" in todo and "VIP" in todo


def tag_id(app):
    with app.app_context():
        return tag("VIP")


def test_an_image_goes_out_with_a_fresh_media_id_and_the_send_is_recorded(app, client, corp, shelf):
    (mine, *_), ids = shelf
    sign_in_member(client, "staff0201")
    token = token_of(client, f"/sidebar/library?external_userid={mine.external_userid}")
    chat = {"external_userid": mine.external_userid}
    res = post(client, f"/sidebar/items/{ids['image']}/message", token, chat)
    assert res.status_code == 200, res.get_json()
    message = res.get_json()["message"]
    assert message["msgtype"] == "image" and message["image"]["mediaid"] in corp.media_uploaded_at
    again = post(client, f"/sidebar/items/{ids['image']}/message", token, chat).get_json()["message"]
    assert again == message  # reused while valid
    fresh = post(client, f"/sidebar/items/{ids['image']}/message", token, {**chat, "fresh": True}).get_json()["message"]
    assert fresh["image"]["mediaid"] != message["image"]["mediaid"]  # the client refused it: uploaded again
    recorded = post(client, res.get_json()["record"], token, chat)
    assert recorded.status_code == 201
    reply = post(client, f"/sidebar/replies/{ids['reply']}/message", token, chat).get_json()
    assert reply["message"]["text"]["content"].startswith(f"{mine.name}您好")
    assert post(client, reply["record"], token, chat).status_code == 201
    with app.app_context():
        sends = db.session.execute(select(ContentSend.item_id, ContentSend.reply_id, ContentSend.customer_id)).all()
    assert [(i, r) for i, r, _c in sends] == [(ids["image"], None), (None, ids["reply"])]


@pytest.mark.parametrize(
    ("what", "body", "status"),
    [
        ("other", "mine", 404),  # another store's item
        ("image", "theirs", 404),  # a customer the member does not follow
        ("image", "none", 400),  # no chat named
        ("image", "both", 400),  # a customer and a group at once
        ("image", "junk", 400),  # not a JSON object
    ],
)
def test_nothing_is_prepared_for_an_item_or_chat_not_the_members(app, client, shelf, what, body, status):
    (mine, _m2, theirs, _t2), ids = shelf
    sign_in_member(client, "staff0201")
    token = token_of(client, "/sidebar/home")
    bodies = {
        "mine": {"external_userid": mine.external_userid},
        "theirs": {"external_userid": theirs.external_userid},
        "none": {},
        "both": {"external_userid": mine.external_userid, "chat_id": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"},
        "junk": ["not", "an", "object"],
    }
    res = post(client, f"/sidebar/items/{ids[what]}/message", token, bodies[body])
    assert res.status_code == status and "error" in res.get_json()
    assert theirs.name not in res.get_data(as_text=True)
    assert post(client, f"/sidebar/items/{ids[what]}/sent", token, bodies[body]).status_code == status
    with app.app_context():
        assert db.session.scalar(select(ContentSend.id)) is None
