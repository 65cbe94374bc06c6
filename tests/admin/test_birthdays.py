"""Birthdays by API: one customer's, and an import (JSON rows or a CSV upload), within the caller's stores."""

import io
from datetime import date

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer
from bot.services.directory.sync import sync_directory
from tests.conftest import ApiClient, make_token, make_user


@pytest.fixture
def two_stores(app, sim, run_worker):
    with app.app_context():
        sync_directory()
        db.session.commit()
    ours = [sim.customer_adds(userid="staff0201")[0] for _ in range(2)]
    theirs = [sim.customer_adds(userid="staff0301")[0]]
    run_worker()
    return ours, theirs


def birthdays(app):
    with app.app_context():
        return dict(db.session.execute(select(Customer.external_userid, Customer.birthday)).all())


def test_one_customers_birthday_and_notes(app, admin_api, two_stores):
    someone = two_stores[0][0].external_userid
    res = admin_api.patch(f"/api/v1/customers/{someone}", {"birthday": "1990-05-12", "notes": "爱喝拿铁"})
    assert res.status_code == 200 and res.get_json()["birthday"] == "1990-05-12"
    assert admin_api.patch(f"/api/v1/customers/{someone}", {"birthday": "05-13"}).get_json()["birthday"] == "1904-05-13"
    bad = admin_api.patch(f"/api/v1/customers/{someone}", {"birthday": "13/45"})
    assert bad.status_code == 400 and bad.get_json()["error"]["message"].startswith("birthday:")
    assert admin_api.patch(f"/api/v1/customers/{someone}", {"birthday": None}).get_json()["birthday"] is None
    assert admin_api.patch("/api/v1/customers/wm-nobody", {"birthday": None}).status_code == 404


def test_an_import_changes_only_customers_in_scope_and_reports_the_rest(app, client, two_stores):
    ours, theirs = two_stores
    user_id, _ = make_user(app, "manager", "store_manager", stores=[2])  # staff0201's store
    api = ApiClient(client, make_token(app, user_id))
    rows = [
        {"external_userid": ours[0].external_userid, "birthday": "1988-02-29"},
        {"external_userid": ours[1].external_userid, "birthday": "not a date"},
        {"external_userid": theirs[0].external_userid, "birthday": "1990-01-01"},
        {"external_userid": "wm-nobody", "birthday": "1990-01-01"},
    ]
    result = api.post("/api/v1/customers/birthdays", {"rows": rows}).get_json()
    assert (result["rows"], result["updated"], result["problems"]) == (4, 1, 3)
    reasons = sorted(p["reason"] for p in result["first_problems"])
    assert reasons == ["invalid birthday", "unknown customer", "unknown customer"]
    known = birthdays(app)
    assert known[ours[0].external_userid] == date(1988, 2, 29) and known[theirs[0].external_userid] is None


def test_a_csv_upload_of_birthdays(app, client, admin_api, two_stores):
    ours, _ = two_stores
    csv = "external_userid,birthday\n" + "\n".join(f"{c.external_userid},1991/03/0{n + 1}" for n, c in enumerate(ours))
    res = client.post(
        "/api/v1/customers/birthdays",
        data={"file": (io.BytesIO(csv.encode("utf-8-sig")), "birthdays.csv")},
        headers=admin_api.headers,
        content_type="multipart/form-data",
    )
    assert res.status_code == 200 and res.get_json()["updated"] == 2
    assert birthdays(app)[ours[1].external_userid] == date(1991, 3, 2)


def test_the_customer_page_imports_a_csv_of_birthdays(app, client, two_stores):
    from tests.admin.panel import post_form, sign_in

    ours, _ = two_stores
    _, password = make_user(app, "ops", "operator")
    sign_in(client, "ops", password)
    csv = f"{ours[0].external_userid},1992-07-08\nwm-nobody,1990-01-01\n"
    res = post_form(
        client,
        "/admin/customers",
        "/admin/customers/birthdays",
        {"file": (io.BytesIO(csv.encode()), "b.csv")},
    )
    assert res.status_code == 302
    page = client.get("/admin/customers").get_data(as_text=True)
    assert "已导入生日：更新 1 位，未变 0 位，有问题 1 行" in page
    assert birthdays(app)[ours[0].external_userid] == date(1992, 7, 8)
