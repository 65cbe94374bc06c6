"""/api/v1: the JSON API, authenticated with bearer tokens (`flask --app wsgi create-api-token`).

Each route is declared once with ``operations.operation`` (its query and body as Pydantic models, the action
it needs); refusals reach one handler each: ``ApiError`` (the API's own: 400 for a request that fails
validation, 404 …) and ``ServiceError`` (a use case's, with its status, code and field).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from bot.extensions import db
from bot.services.errors import ServiceError, WeComRefused
from bot.services.users.api_tokens import authenticate
from bot.services.users.permissions import NotPermitted

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = {"api.openapi"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error(status: int, code: str, message: str, field: str | None = None) -> ResponseReturnValue:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return jsonify(error=body), status


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
    db.session.rollback()
    return error(exc.status, exc.code, exc.message, exc.field)


@bp.errorhandler(ServiceError)
def on_service_error(exc: ServiceError) -> ResponseReturnValue:
    """Every refusal of a use case, translated once: its status and code, the field at fault, its words."""
    db.session.rollback()
    if isinstance(exc, NotPermitted):
        message = exc.english()
    else:
        message = f"{exc.field}: {exc.text()}" if exc.field else exc.text()
        errcode = getattr(exc, "errcode", None)
        if errcode and not isinstance(exc, WeComRefused):  # Siyu's words for WeCom's refusal: its code too
            message += f" (WeCom {errcode})"
    return error(exc.status, exc.code, message, exc.field)


@bp.errorhandler(HTTPException)
def on_http_error(exc: HTTPException) -> ResponseReturnValue:
    return error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")


def on_unrouted(exc: HTTPException) -> ResponseReturnValue:
    """A URL no route matches (404) or a method its route does not take (405): the request reaches no
    blueprint, so its handlers do not see it. Under /api/v1 it gets the API's JSON error (with the methods
    allowed); elsewhere Flask's own page."""
    prefix = bp.url_prefix or ""
    if request.path != prefix and not request.path.startswith(prefix + "/"):
        return exc
    response = jsonify(error={"code": (exc.name or "error").lower().replace(" ", "_"), "message": exc.description})
    allowed = getattr(exc, "valid_methods", None)
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response, exc.code or 500


def init_api(app: Flask) -> None:
    """The API's routes, and its answer to the URLs and methods none of them match."""
    app.register_blueprint(bp)
    app.register_error_handler(404, on_unrouted)
    app.register_error_handler(405, on_unrouted)


def iso(value: Any) -> str | None:
    """A UTC timestamp as the API writes it (ISO 8601 with a Z); None stays None."""
    return value.isoformat() + "Z" if value is not None else None


def not_found(what: str, key: object) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {key}")


from admin.api import (  # noqa: E402, F401 - importing them registers their routes (last: they use bp)
    channels,
    commerce,
    customer_fields,
    customers,
    events,
    groups,
    handovers,
    library,
    moments,
    openapi,
    radar,
    replies,
    rules,
    segments,
    sends,
    tags,
)
