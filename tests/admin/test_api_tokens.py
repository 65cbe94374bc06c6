"""API tokens: an optional expiry, the panel's page (everyone their own, admins everyone's), revoking from
the panel and the command line, and `flask dev`'s kept sandbox token."""

import os
import re
import stat
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from bot.extensions import db
from bot.models import ApiToken, AuditEntry, User
from bot.models._time import utcnow
from bot.services.users.permissions import Action, allows_token
from tests.admin.panel import post_form, sign_in
from tests.conftest import make_token, make_user

PAGE = "/admin/api-tokens"


def works(client, token) -> bool:
    res = client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code in (200, 401)
    return res.status_code == 200


def token_row(app, name):
    with app.app_context():
        row = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
        db.session.expunge(row)
        return row


def test_an_expired_token_is_refused_like_a_revoked_one(app, client):
    from bot.services.users.api_tokens import create_api_token

    user_id, _ = make_user(app, "crm", "operator")
    with app.app_context():
        token = create_api_token("crm-sync", db.session.get(User, user_id), expires_days=30)
        db.session.commit()
    assert works(client, token)
    with time_machine.travel(utcnow() + timedelta(days=30, minutes=1)):
        res = client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 401 and "expired" in res.get_json()["error"]["message"]
    assert works(client, token)  # back to now: 30 days left less a moment


def test_a_tokens_last_use_is_written_once_a_minute_not_once_a_request(app, client):
    from bot.services.users.api_tokens import create_api_token

    user_id, _ = make_user(app, "crm", "operator")
    with app.app_context():
        token = create_api_token("crm-batches", db.session.get(User, user_id))
        db.session.commit()
    start = utcnow().replace(second=50, microsecond=0) + timedelta(minutes=5)
    with time_machine.travel(start, tick=False):
        assert works(client, token)
    assert token_row(app, "crm-batches").last_used_at == start
    with time_machine.travel(start + timedelta(seconds=5), tick=False):
        assert works(client, token)
    assert token_row(app, "crm-batches").last_used_at == start  # the same minute shown: not written again
    # 50 seconds later is the next minute on the page: written (found by review: a 60-second step showed the
    # minute before)
    with time_machine.travel(start + timedelta(seconds=50), tick=False):
        assert works(client, token)
    assert token_row(app, "crm-batches").last_used_at == start + timedelta(seconds=50)


def test_creating_a_token_in_the_panel_shows_it_once(app, client):
    make_user(app, "ops", "operator")
    sign_in(client, "ops", "pw-ops-0123456789")
    res = post_form(client, PAGE, PAGE, {"name": "报表脚本", "expires_days": "7"})
    assert res.status_code == 200 and res.headers["Cache-Control"] == "no-store"
    token = re.search(r"<code>(siyu_[^<]+)</code>", res.get_data(as_text=True)).group(1)
    assert works(client, token)
    row = token_row(app, "报表脚本")
    assert timedelta(days=6, hours=23) < row.expires_at - utcnow() <= timedelta(days=7)
    page = client.get(PAGE).get_data(as_text=True)
    assert "报表脚本" in page and token not in page and "有效" in page
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "create_api_token"))
        assert entry.actor == "ops" and token not in (entry.detail or "")
    res = post_form(client, PAGE, PAGE, {"name": "", "expires_days": "99999"})
    assert res.status_code == 400 and "请输入名称" in res.get_data(as_text=True)
    assert "1–3650 之间" in res.get_data(as_text=True)


def test_admins_see_every_token_others_only_their_own(app, client):
    admin_id, admin_pw = make_user(app, "root", "admin")
    viewer_id, viewer_pw = make_user(app, "clerk", "viewer")
    make_token(app, admin_id)
    with app.app_context():
        from bot.services.users.api_tokens import create_api_token

        create_api_token("clerk-laptop", db.session.get(User, viewer_id))
        db.session.commit()
    sign_in(client, "root", admin_pw)
    page = client.get(PAGE).get_data(as_text=True)
    assert "clerk-laptop" in page and "tests" in page and "<th>所属用户</th>" in page
    viewer = app.test_client()
    sign_in(viewer, "clerk", viewer_pw)
    page = viewer.get(PAGE).get_data(as_text=True)
    assert "clerk-laptop" in page and ">tests<" not in page and "<th>所属用户</th>" not in page
    assert "API 令牌" in viewer.get("/admin/").get_data(as_text=True)  # in everyone's menu


def test_revoking_from_the_panel(app, client):
    admin_id, admin_pw = make_user(app, "root", "admin")
    viewer_id, viewer_pw = make_user(app, "clerk", "viewer")
    admins_token = make_token(app, admin_id)
    clerks_token = make_token(app, viewer_id)
    admins_row = token_row(app, "tests")  # the first
    with app.app_context():
        clerks_row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == viewer_id))
        clerks_id = clerks_row.id
    viewer = app.test_client()
    sign_in(viewer, "clerk", viewer_pw)
    # Another's token: 403, whatever its id; none at all: 404; no CSRF token: 400.
    assert post_form(viewer, PAGE, f"{PAGE}/{admins_row.id}/revoke", {}).status_code == 403
    assert post_form(viewer, PAGE, f"{PAGE}/99999/revoke", {}).status_code == 404
    assert viewer.post(f"{PAGE}/{clerks_id}/revoke").status_code == 400
    assert works(client, admins_token) and works(client, clerks_token)
    res = post_form(viewer, PAGE, f"{PAGE}/{clerks_id}/revoke", {})
    assert res.status_code == 302
    assert not works(client, clerks_token)
    assert "已撤销" in viewer.get(PAGE).get_data(as_text=True)
    # An admin revokes anyone's.
    admin = app.test_client()
    sign_in(admin, "root", admin_pw)
    assert post_form(admin, PAGE, f"{PAGE}/{admins_row.id}/revoke", {}).status_code == 302
    assert not works(client, admins_token)
    with app.app_context():
        targets = list(
            db.session.scalars(
                select(AuditEntry.actor).where(AuditEntry.action == "revoke_api_token").order_by(AuditEntry.id)
            )
        )
    assert targets == ["clerk", "root"]


def test_the_policy_says_who_manages_whose_tokens(app):
    admin_id, _ = make_user(app, "root", "admin")
    ops_id, _ = make_user(app, "ops", "operator")
    with app.app_context():
        admin, ops = db.session.get(User, admin_id), db.session.get(User, ops_id)
        assert allows_token(ops, ops_id) and not allows_token(ops, admin_id)
        assert allows_token(admin, ops_id) and allows_token(admin, admin_id)
        from bot.services.users.permissions import NotPermitted, require_token

        with pytest.raises(NotPermitted) as refused:
            require_token(ops, admin_id)
        assert refused.value.action == Action.manage_any_api_token
        assert "admin role" in refused.value.english()
        ops.active = False
        assert not allows_token(ops, ops_id)
        db.session.rollback()


def test_create_with_an_expiry_and_revoke_from_the_command_line(app, client):
    runner = app.test_cli_runner()
    make_user(app, "owner", "admin")
    result = runner.invoke(args=["create-api-token", "crm-sync", "--user", "owner", "--expires-days", "90"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    row = token_row(app, "crm-sync")
    assert timedelta(days=89) < row.expires_at - utcnow() <= timedelta(days=90)
    assert runner.invoke(args=["create-api-token", "x", "--user", "owner", "--expires-days", "0"]).exit_code != 0
    second = runner.invoke(args=["create-api-token", "nightly", "--user", "owner"]).output.strip()
    assert token_row(app, "nightly").expires_at is None

    result = runner.invoke(args=["revoke-api-token", str(row.id)])
    assert result.exit_code == 0 and f"revoked: [{row.id}]" in result.output
    assert not works(client, token) and works(client, second)
    assert f"already revoked: [{row.id}]" in runner.invoke(args=["revoke-api-token", str(row.id)]).output
    assert runner.invoke(args=["revoke-api-token", "nightly"]).exit_code != 0  # a name needs --user
    assert runner.invoke(args=["revoke-api-token", "99999"]).exit_code != 0
    assert runner.invoke(args=["revoke-api-token", "nope", "--user", "owner"]).exit_code != 0
    result = runner.invoke(args=["revoke-api-token", "nightly", "--user", "owner"])
    assert result.exit_code == 0 and not works(client, second)
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "revoke_api_token")))
    assert actions == ["system", "system"]


def test_flask_dev_keeps_its_token_in_the_instance_directory_while_it_lives(app, client, tmp_path):
    from bot.cli import _dev_token

    user_id, _ = make_user(app, "admin", "admin")
    path = tmp_path / "instance" / "dev-api-token"
    with app.app_context():
        admin = db.session.get(User, user_id)
        token, minted = _dev_token(admin, path)
        db.session.commit()
        assert minted and path.read_text().strip() == token
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert _dev_token(admin, path) == (token, False)  # the next start: the same token
        assert db.session.query(ApiToken).count() == 1
        db.session.scalar(select(ApiToken)).revoked_at = utcnow()
        db.session.commit()
        os.chmod(path, 0o644)
        again, minted = _dev_token(admin, path)  # revoked: a new one, written over the old
        db.session.commit()
        assert minted and again != token and path.read_text().strip() == again
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert works(client, again) and not works(client, token)
