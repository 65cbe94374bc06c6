"""GET /api/v1/openapi.json: generated from the operations' declarations, it covers every /api/v1 route (and
no route that is not there), it is valid OpenAPI 3.1, and what it documents is what the API validates."""

import re

import pytest
from openapi_spec_validator import validate

from bot.models import Role
from bot.services.users.permissions import POLICY


@pytest.fixture
def document(client):
    res = client.get("/api/v1/openapi.json")  # public: no token
    assert res.status_code == 200
    return res.get_json()


def test_every_route_is_documented_and_every_documented_operation_exists(app, document):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            routes |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == routes


def test_the_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_path_parameters_and_the_shared_answers_are_declared(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (method, path)
            if path != "/openapi.json":
                assert {"400", "401"} <= set(op["responses"]), (method, path)
    assert document["paths"]["/openapi.json"]["get"]["security"] == []


def test_a_permission_is_documented_from_the_policy(document):
    """The 403 of an operation that needs an action names the roles the policy gives it."""
    create = document["paths"]["/channels"]["post"]
    assert create["responses"]["403"]["description"] == "Needs the admin or operator role"
    assert {r.value for r in POLICY[next(iter(POLICY))]} <= {r.value for r in Role}


def test_request_bodies_come_from_the_models(document):
    schemas = document["components"]["schemas"]
    body = document["paths"]["/channels"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChannelCreate"}
    assert "name" in schemas["ChannelCreate"]["required"]
    assert schemas["ChannelCreate"]["properties"]["daily_cap"]["anyOf"][0] == {
        "maximum": 10000,
        "minimum": 1,
        "type": "integer",
    }
    query = {p["name"]: p for p in document["paths"]["/customers"]["get"]["parameters"]}
    assert query["per_page"]["schema"]["maximum"] == 200 and query["q"]["schema"]["maxLength"] == 64


def test_a_body_the_document_refuses_is_refused_naming_the_field(admin_api):
    res = admin_api.post("/api/v1/channels", {"name": "n", "daily_cap": "ten"})
    assert res.status_code == 400
    error = res.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["field"] == "daily_cap"
    assert error["message"].startswith("daily_cap: ")
    res = admin_api.post("/api/v1/join-ways", {"name": "码", "chat_ids": ["a"], "room_base_id": True})
    assert res.get_json()["error"]["field"] == "room_base_id"  # JSON's true is not a number


def test_a_body_that_is_not_an_object_is_invalid_body(admin_api):
    res = admin_api.client.post("/api/v1/tags", data="[1]", content_type="application/json", headers=admin_api.headers)
    assert res.status_code == 400 and res.get_json()["error"]["code"] == "invalid_body"


def test_the_permission_is_checked_before_the_body(app, client):
    from tests.conftest import make_token, make_user

    viewer = {"Authorization": f"Bearer {make_token(app, make_user(app, 'v', 'viewer')[0])}"}
    res = client.post("/api/v1/tag-groups", json={"name": 5}, headers=viewer)
    assert res.status_code == 403 and res.get_json()["error"]["message"] == "edit tags needs the admin or operator role"


def test_every_webhook_event_type_is_documented_with_its_payload(document):
    from bot.services.webhooks.events import TYPES

    hooks = document["webhooks"]
    assert set(hooks) == {t.name for t in TYPES}
    for event_type in TYPES:
        body = hooks[event_type.name]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["data"] == {"$ref": f"#/components/schemas/{event_type.data.__name__}"}
        assert event_type.data.__name__ in document["components"]["schemas"]
