"""Sessions end with their generation: signing out, a new password or deactivation ends a user's other
sessions (and any copy of their cookies); the browser that changed its own password stays signed in."""

from flask_login.utils import encode_cookie
from sqlalchemy import select

from bot.extensions import db
from bot.models import User
from tests.admin.panel import post_form, sign_in
from tests.conftest import make_user


def signed_in_twice(app, username, role="viewer"):
    user_id, password = make_user(app, username, role)
    first, second = app.test_client(), app.test_client()
    for browser in (first, second):
        assert sign_in(browser, username, password).status_code == 302
        assert browser.get("/admin/").status_code == 200
    return user_id, password, first, second


def at_sign_in(browser) -> bool:
    res = browser.get("/admin/")
    return res.status_code == 302 and "/admin/login" in res.location


def test_signing_out_in_one_browser_ends_the_session_in_the_other(app):
    _, _, laptop, phone = signed_in_twice(app, "clerk")
    cookie = laptop.get_cookie("session").value  # a copy, as someone who took it would keep it
    assert post_form(laptop, "/admin/", "/admin/logout", {}).status_code == 302
    assert at_sign_in(laptop)
    assert at_sign_in(phone)
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    assert at_sign_in(replay)


def test_a_remember_cookie_made_before_sign_out_no_longer_signs_in(app):
    user_id, _, laptop, _ = signed_in_twice(app, "clerk")
    with app.app_context():
        remembered = encode_cookie(db.session.get(User, user_id).get_id())
    kept = app.test_client()
    kept.set_cookie("remember_token", remembered)
    assert kept.get("/admin/").status_code == 200  # Flask-Login signs it in from the cookie
    post_form(laptop, "/admin/", "/admin/logout", {})
    stale = app.test_client()
    stale.set_cookie("remember_token", remembered)
    assert at_sign_in(stale)


def test_an_admin_resetting_a_password_ends_that_users_sessions(app, client):
    make_user(app, "root", "admin")
    assert sign_in(client, "root", "pw-root-0123456789").status_code == 302
    user_id, _, laptop, phone = signed_in_twice(app, "clerk")
    url = f"/admin/users/{user_id}"
    res = post_form(client, url, url, {"role": "viewer", "active": "y", "new_password": "a-brand-new-pw"})
    assert res.status_code == 302
    assert at_sign_in(laptop) and at_sign_in(phone)
    assert client.get("/admin/").status_code == 200  # the admin who reset it is not affected
    assert sign_in(laptop, "clerk", "a-brand-new-pw").status_code == 302
    assert laptop.get("/admin/").status_code == 200


def test_changing_ones_own_password_keeps_this_browser_and_ends_the_others(app):
    user_id, _, laptop, phone = signed_in_twice(app, "root", role="admin")
    url = f"/admin/users/{user_id}"
    res = post_form(laptop, url, url, {"role": "admin", "active": "y", "new_password": "my-own-new-password"})
    assert res.status_code == 302
    assert laptop.get("/admin/").status_code == 200
    assert at_sign_in(phone)


def test_deactivation_and_an_edit_without_a_password(app, client):
    make_user(app, "root", "admin")
    sign_in(client, "root", "pw-root-0123456789")
    user_id, _, laptop, _ = signed_in_twice(app, "clerk")
    url = f"/admin/users/{user_id}"
    post_form(client, url, url, {"display_name": "小王", "role": "viewer", "active": "y"})
    assert laptop.get("/admin/").status_code == 200  # a change of name ends nothing
    with app.app_context():
        version = db.session.scalar(select(User.session_version).where(User.id == user_id))
    post_form(client, url, url, {"role": "viewer"})  # active unticked
    with app.app_context():
        assert db.session.scalar(select(User.session_version).where(User.id == user_id)) == version + 1
    assert at_sign_in(laptop)


def test_a_session_id_of_another_shape_is_refused(app):
    from bot.services.users.accounts import session_user

    user_id, _ = make_user(app, "clerk", "viewer")
    with app.app_context():
        assert session_user(f"{user_id}:0") is not None
        for stale in (str(user_id), f"{user_id}:1", f"{user_id}:x", "x:0", f"{user_id}:0:0", "99999999999:0", ""):
            assert session_user(stale) is None, stale
