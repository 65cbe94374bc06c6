import json

import pytest


@pytest.fixture
def auth(api_token):
    return {"Authorization": f"Bearer {api_token}"}


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer not-a-token"])
def test_api_needs_a_valid_bearer_token(client, header):
    headers = {"Authorization": header} if header else {}
    res = client.get("/api/v1/customers", headers=headers)
    assert res.status_code == 401
    assert res.get_json()["error"]["code"] == "unauthorized"


def test_revoked_token_is_refused(app, client, api_token):
    from bot.extensions import db
    from bot.models import ApiToken
    from bot.models._time import utcnow

    with app.app_context():
        for row in db.session.query(ApiToken):
            row.revoked_at = utcnow()
        db.session.commit()
    assert client.get("/api/v1/customers", headers={"Authorization": f"Bearer {api_token}"}).status_code == 401


def test_customer_list_pages_and_filters(app, sim, run_worker, client, auth):
    contacts = [sim.customer_adds(userid="staff0201")[0] for _ in range(3)]
    contacts.append(sim.customer_adds(userid="staff0301")[0])
    run_worker()
    page = client.get("/api/v1/customers?per_page=2", headers=auth).get_json()
    assert page["total"] == 4 and len(page["items"]) == 2 and page["page"] == 1
    assert page["items"][0]["external_userid"] == contacts[-1].external_userid  # newest first
    second = client.get("/api/v1/customers?per_page=2&page=2", headers=auth).get_json()
    assert {c["external_userid"] for c in page["items"] + second["items"]} == {c.external_userid for c in contacts}
    by_staff = client.get("/api/v1/customers?staff=staff0301", headers=auth).get_json()
    assert [c["external_userid"] for c in by_staff["items"]] == [contacts[-1].external_userid]
    by_name = client.get("/api/v1/customers", query_string={"q": contacts[0].name}, headers=auth).get_json()
    assert contacts[0].external_userid in {c["external_userid"] for c in by_name["items"]}


@pytest.mark.parametrize("query", ["page=0", "page=abc", "per_page=0", "per_page=201", "per_page=1.5", "q=" + "x" * 65])
def test_bad_list_parameters_are_400(client, auth, query):
    res = client.get(f"/api/v1/customers?{query}", headers=auth)
    assert res.status_code == 400
    assert res.get_json()["error"]["code"] == "invalid_parameter"


def test_customer_profile_has_followers_and_tags(app, sim, corp, run_worker, client, auth):
    from bot.services.directory.jobs import sync_directory

    with app.app_context():
        sync_directory()
    contact, _ = sim.customer_adds(userid="staff0201", state="store-qr")
    vip = next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")
    sim.member_tags_customer(contact.external_userid, "staff0201", [vip])
    run_worker()
    data = client.get(f"/api/v1/customers/{contact.external_userid}", headers=auth).get_json()
    assert data["name"] == contact.name and data["following"] == 1
    [follower] = data["followers"]
    assert follower["userid"] == "staff0201" and follower["state"] == "store-qr" and follower["status"] == "active"
    assert follower["name"] == corp.users["staff0201"]["name"]
    assert data["tags"] == [{"tag_id": vip, "group_name": "客户等级", "tag_name": "VIP", "type": 1}]


def test_unknown_customer_is_404(client, auth):
    res = client.get("/api/v1/customers/wm-nobody", headers=auth)
    assert res.status_code == 404 and res.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("headers", [True, False])
def test_unknown_paths_and_methods_under_the_api_answer_its_json_error(client, auth, headers):
    """Unmatched URLs reach no blueprint handler: the app answers them in the API's shape under /api/v1 (with or
    without a token: there is nothing to authenticate against), Flask's page elsewhere."""
    given = auth if headers else {}
    for path in ("/api/v1/nowhere", "/api/v1/customers/wm1/nowhere", "/api/v1"):
        res = client.get(path, headers=given)
        assert res.status_code == 404 and res.is_json, path
        assert res.get_json()["error"]["code"] == "not_found" and res.get_json()["error"]["message"]
    res = client.delete("/api/v1/customers", headers=given)
    assert res.status_code == 405 and res.is_json
    assert res.get_json()["error"]["code"] == "method_not_allowed" and "GET" in res.headers["Allow"]
    assert not client.get("/api/v1x/nowhere").is_json and not client.get("/nowhere").is_json
    assert client.get("/admin/nowhere").status_code == 404


def test_the_customer_list_filters_by_added_dates_within_1900_to_2100(sim, run_worker, client, auth):
    contact, _ = sim.customer_adds(userid="staff0201")
    run_worker()

    def listed(query):
        return [
            c["external_userid"] for c in client.get(f"/api/v1/customers?{query}", headers=auth).get_json()["items"]
        ]

    assert listed("added_from=1900-01-01&added_to=2100-12-31") == [contact.external_userid]
    assert listed("added_to=1999-12-31") == [] and listed("added_from=2100-12-31") == []
    for field, day in (("added_to", "9999-12-31"), ("added_from", "0001-01-01"), ("added_to", "1899-12-31")):
        res = client.get(f"/api/v1/customers?{field}={day}", headers=auth)
        assert res.status_code == 400 and res.get_json()["error"]["field"] == field, res.get_json()
        assert "1900-01-01" in res.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/groups?created_from=0001-01-01", "created_from"),  # found by the fuzz drill: a 500 before
        ("/api/v1/groups?created_to=9999-12-31", "created_to"),
        ("/api/v1/channels?start=0001-01-01&end=0001-01-02", "start"),
    ],
)
def test_dates_outside_1900_to_2100_are_refused_by_every_filter(client, auth, path, field):
    res = client.get(path, headers=auth)
    assert res.status_code == 400 and res.get_json()["error"]["field"] == field, res.get_json()
    assert "1900-01-01" in res.get_json()["error"]["message"]


def test_events_filter_rejects_unknown_status(client, auth):
    assert client.get("/api/v1/events?status=weird", headers=auth).status_code == 400


def test_health_reports_database_and_redis(client, app):
    data = client.get("/healthz").get_json()
    assert data["ok"] is True and data["database"]["ok"] and data["redis"]["ok"]
    assert data["database"]["backend"] in ("sqlite", "postgresql")


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/v1/customers/{HUGE}", 404),
        (f"/api/v1/sends/{HUGE}", 404),
        (f"/api/v1/segments/{HUGE}/members", 404),
        (f"/api/v1/customers?page={HUGE}", 400),
        (f"/api/v1/events?page={HUGE}", 400),
    ],
)
def test_numbers_beyond_the_database_are_a_clear_answer(client, auth, path, status):
    """Found by schemathesis: on PostgreSQL an id over 32 bits was a server error (integer out of range)."""
    assert client.get(path, headers=auth).status_code == status


def test_nul_in_a_query_is_a_clear_answer(client, auth):
    res = client.get("/api/v1/customers?q=a%00b", headers=auth)
    assert res.status_code == 400 and "NUL" in res.get_json()["error"]["message"]


def test_a_body_the_database_could_not_hold_is_refused(client, auth):
    nul = {"name": "a\x00b", "rule": {"conditions": []}}
    for data, problem in [
        (
            json.dumps({"name": "x", "rule": {"conditions": [{"type": "channel", "channel_ids": [2**40]}]}}),
            "±2147483647",
        ),
        (json.dumps({"name": "x", "rule": {"conditions": [{"type": "channel", "channel_ids": [-(2**40)]}]}}), "±"),
        (json.dumps({"name": "\ud83d", "rule": {"conditions": []}}), "lone surrogates"),
        (json.dumps(nul), "NUL"),
        (json.dumps(nul, ensure_ascii=False), "NUL"),
        # JSON in UTF-16 is read too: its text is checked as well
        (json.dumps(nul).encode("utf-16"), "NUL"),
        # a surrogate as raw bytes rather than an escape: the parser lets it through (found by review)
        (b'{"name": "x\xed\xa0\xbdy", "rule": {"conditions": []}}', "lone surrogates"),
        # numbers that are not finite: Python's parser takes them, PostgreSQL's JSON does not (found by review)
        (b'{"name": "x", "rule": {"conditions": []}, "extra": NaN}', "finite"),
        (b'{"name": "x", "rule": {"conditions": []}, "extra": -Infinity}', "finite"),
        (b'{"name": "x", "rule": {"conditions": []}, "extra": [1e400]}', "finite"),
    ]:
        res = client.post("/api/v1/segments", data=data, content_type="application/json", headers=auth)
        assert res.status_code == 400 and problem in res.get_json()["error"]["message"], data
