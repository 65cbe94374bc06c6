"""GET /api/v1/openapi.json: the API's OpenAPI 3.1 description (public, no token needed), assembled from the
operations' declarations (``operations.operation``): their Pydantic models' JSON Schemas, path parameters
read from the routes, the answers each declares, and the ones every operation shares."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from admin.api.operations import OPERATIONS, SCHEMAS, Operation, operation, roles_needed
from bot.services.webhooks.events import TYPES

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string", "description": "the field at fault first: `name: …`"},
                "field": {"type": "string", "description": "the input field at fault, when there is one"},
            },
        }
    },
}


@operation("GET", "/openapi.json", "This document", public=True, responses={200: "OpenAPI"})
def openapi() -> ResponseReturnValue:
    return jsonify(document())


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR, **SCHEMAS}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Siyu (私域助手) API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "webhooks": _webhooks(schemas),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
    }


def _webhooks(schemas: dict[str, Any]) -> dict[str, Any]:
    """What Siyu POSTs to the brand's endpoints (Webhook page): one envelope per event, its ``data`` the
    type's own; signed in the ``Siyu-Signature`` header (README: verifying a delivery)."""
    out: dict[str, Any] = {}
    for event_type in TYPES:
        envelope = {
            "type": "object",
            "required": ["id", "type", "occurred_at", "data"],
            "properties": {
                "id": {"type": "string", "description": "evt_…: unique, the same on every retry (dedupe by it)"},
                "type": {"const": event_type.name},
                "occurred_at": {"type": "string", "format": "date-time"},
                "data": _ref(event_type.data, schemas),
            },
        }
        ordered = "in order per customer" if event_type.ordered else "in no particular order"
        out[event_type.name] = {
            "post": {
                "operationId": f"webhook_{event_type.name.replace('.', '_')}",
                "summary": event_type.summary,
                "description": f"Delivered at least once, {ordered}.",
                "parameters": [
                    {
                        "name": "Siyu-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>; two v1 in a rotation",
                    },
                    {"name": "Siyu-Event-Id", "in": "header", "required": True, "schema": {"type": "string"}},
                    {"name": "Siyu-Event-Type", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": envelope}}},
                "responses": {"2XX": {"description": "Received; any other answer is retried with backoff for a day"}},
            }
        }
    return out


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.endpoint, "summary": op.summary, "tags": [op.tag]}
    params = op.path_parameters()
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        doc["parameters"] = params
    content = {}
    if op.body is not None:
        content["application/json"] = {"schema": _ref(op.body, schemas)}
    if op.form is not None:
        content["multipart/form-data"] = {"schema": _ref(op.form, schemas)}
    if content:
        doc["requestBody"] = {"required": op.body_required, "content": content}
    if op.public:
        doc["security"] = []
    doc["responses"] = {str(status): _answer(status, answer) for status, answer in sorted(_answers(op).items())}
    return doc


def _answers(op: Operation) -> dict[int, Any]:
    """What the operation declares, and what every operation may answer besides."""
    shared: dict[int, Any] = {}
    if not op.public:
        shared[401] = "Missing, unknown, revoked or expired token"
        shared[400] = "Invalid parameter or body"
    if op.action is not None:
        shared[403] = roles_needed(op.action)
    return {**shared, **op.responses}


def _answer(status: int, answer: Any) -> dict[str, Any]:
    description, body = (answer, None) if isinstance(answer, str) else answer
    if body is None and status >= 400:
        body = {"$ref": "#/components/schemas/Error"}
    out: dict[str, Any] = {"description": description}
    if isinstance(body, str):  # a media type: an image, a CSV
        out["content"] = {body: {}}
    elif body is not None:
        out["content"] = {"application/json": {"schema": body}}
    return out


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON Schema among the components (with the models it nests); a reference to it."""
    definition = _tidy(model.model_json_schema(ref_template="#/components/schemas/{model}"))
    schemas.update(definition.pop("$defs", {}))
    schemas[model.__name__] = definition
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    definition = _inline(_tidy(model.model_json_schema()))
    required = set(definition.get("required", []))
    params = []
    for name, prop in definition["properties"].items():
        description = prop.pop("description", None)
        if "anyOf" in prop:  # ``X | None = None``: in a query, left out is the only null there is
            prop = {**prop, **next(p for p in prop.pop("anyOf") if p.get("type") != "null")}
            if prop.get("default", 0) is None:
                del prop["default"]
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _inline(definition: dict[str, Any]) -> dict[str, Any]:
    """A query's schema with its nested definitions (an enum) written in place: a parameter stands alone."""
    defs = definition.pop("$defs", {})

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    return resolve(definition)


def _tidy(value: Any) -> Any:
    """Without Pydantic's titles: the names say it."""
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items() if k != "title" or not isinstance(v, str)}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value
