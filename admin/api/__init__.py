"""/api/v1: the JSON API, authenticated with bearer tokens (`flask --app wsgi create-api-token`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from admin import MAX_INT
from bot.extensions import db
from bot.services.errors import ServiceError
from bot.services.users.api_tokens import authenticate
from bot.services.users.permissions import NotPermitted

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = {"api.openapi"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error(status: int, code: str, message: str) -> ResponseReturnValue:
    return jsonify(error={"code": code, "message": message}), status


@bp.before_request
def require_token() -> ResponseReturnValue | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error(401, "unauthorized", "send Authorization: Bearer <token>")
    row = authenticate(token.strip())
    if row is None:
        db.session.rollback()
        return error(401, "unauthorized", "unknown, revoked or expired token")
    g.api_user = row.user  # the token acts as its user: same role, same store scope
    db.session.commit()
    return None


@bp.errorhandler(ApiError)
def on_api_error(exc: ApiError) -> ResponseReturnValue:
    return error(exc.status, exc.code, exc.message)


@bp.errorhandler(ServiceError)
def on_service_error(exc: ServiceError) -> ResponseReturnValue:
    """Every refusal of a use case, translated once: its status and code, the field at fault, its words."""
    db.session.rollback()
    if isinstance(exc, NotPermitted):
        message = exc.english()
    else:
        message = f"{exc.field}: {exc.text()}" if exc.field else exc.text()
    body: dict[str, Any] = {"code": exc.code, "message": message}
    if exc.field:
        body["field"] = exc.field
    return jsonify(error=body), exc.status


@bp.errorhandler(HTTPException)
def on_http_error(exc: HTTPException) -> ResponseReturnValue:
    return error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 for what no field could hold: a NUL character or a lone
    surrogate (``\\ud800``) in any text (PostgreSQL refuses both), or a whole number beyond ±MAX_INT."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    problem = _unstorable(body)
    if problem:
        raise ApiError(400, "invalid_body", problem)
    return body


def iso(value: Any) -> str | None:
    """A UTC timestamp as the API writes it (ISO 8601 with a Z); None stays None."""
    return value.isoformat() + "Z" if value is not None else None


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "text may not contain NUL characters"
        if any("\ud800" <= c <= "\udfff" for c in value):
            return "text must be valid Unicode (no lone surrogates)"
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -MAX_INT <= value <= MAX_INT else f"whole numbers must be within ±{MAX_INT}"
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _unstorable(k) or _unstorable(v))), None)
    if isinstance(value, list):
        return next((p for v in value if (p := _unstorable(v))), None)
    return None


def string_list(body: dict[str, Any], name: str) -> list[str] | None:
    """``body[name]`` as a list of strings; None when absent, a 400 when it is anything else."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "invalid_parameter", f"{name} is a list of strings")
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}")
    return value


from admin.api import channels, customers, events, groups, openapi, rules, segments, sends, tags  # noqa: E402,F401 - register the routes
