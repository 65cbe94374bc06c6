"""One declaration per API operation: its method and path, the Pydantic models of its query and body, the
action it needs and the answers it documents. ``operation`` registers the route on the blueprint, checks
the permission and validates the request before the view runs, and records the declaration from which
``openapi.py`` assembles ``GET /api/v1/openapi.json``; so the validator and the document cannot drift.

Why our own small decorator over Pydantic v2 rather than a Flask+Pydantic spec library (looked at:
spectree, flask-openapi3, flask-pydantic-spec):

- flask-openapi3 documents only routes of its own ``OpenAPI`` app class (a Flask subclass) and
  ``APIBlueprint``, and injects the models by the view's signature: Siyu's app factory and its one plain
  Blueprint (with the bearer-token guard and the public /openapi.json) would have to change for it.
- spectree and its fork flask-pydantic-spec build the document from the whole app's url_map (the panel's
  routes too) and answer a failed validation with their own body (422 and Pydantic's error list); our
  answer is ``{"error": {"code", "message", "field"}}`` with 400, and the pre-check for text and numbers
  the database cannot hold must run first. Bending either to that takes hooks as long as this module.
- What we need beyond Pydantic is small: parse the query and the body, turn the first error into our
  message, and put ``model_json_schema()`` into an OpenAPI 3.1 document (whose schemas are JSON Schema).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Annotated, Any, TypeVar

from flask import g, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from werkzeug.datastructures import FileStorage

from admin.api import ApiError, bp
from admin.params import MAX_INT
from bot.services.users.permissions import Action, require, roles_for

# -- the types requests are made of ----------------------------------------------------------------------

#: text the database can keep: no NUL (PostgreSQL refuses it; lone surrogates are refused by the pre-check)
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL)]
#: a whole number a 32-bit column holds
Int = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
Id = Annotated[int, Field(ge=1, le=MAX_INT)]
Upload = Annotated[FileStorage, WithJsonSchema({"type": "string", "format": "binary"})]


#: text of at most N characters (``Text64``), or of 1 to N (``Key64``: an id, a name that may not be empty)
Text30 = Annotated[str, Field(pattern=NO_NUL, max_length=30)]
Text32 = Annotated[str, Field(pattern=NO_NUL, max_length=32)]
Text40 = Annotated[str, Field(pattern=NO_NUL, max_length=40)]
Text64 = Annotated[str, Field(pattern=NO_NUL, max_length=64)]
Text300 = Annotated[str, Field(pattern=NO_NUL, max_length=300)]
Text2000 = Annotated[str, Field(pattern=NO_NUL, max_length=2000)]
Text4000 = Annotated[str, Field(pattern=NO_NUL, max_length=4000)]
Key64 = Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)]


class Body(BaseModel):
    """A JSON body: types as JSON has them (no "1" for 1, no 1 for true); fields not declared are ignored,
    as they always were."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Query(BaseModel):
    """Query parameters: text converted to the declared types; an empty value is a value left out."""

    model_config = ConfigDict(extra="ignore")


class Page(Query):
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    per_page: Annotated[int, Field(ge=1, le=200)] = 50


class Form(BaseModel):
    """A multipart form: its text fields and its files."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


# -- the declarations ----------------------------------------------------------------------------------

#: documented answers: a description, or (description, a JSON Schema or a media type such as "image/png")
Answer = str | tuple[str, Any]


@dataclass
class Operation:
    method: str
    rule: str
    endpoint: str
    summary: str
    tag: str
    query: type[Query] | None = None
    body: type[Body] | None = None
    form: type[Form] | None = None
    body_required: bool = True
    action: Action | None = None
    public: bool = False
    responses: dict[int, Answer] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The OpenAPI path (relative to the server URL /api/v1): ``<int:id>`` becomes ``{id}``."""
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", self.rule)

    def path_parameters(self) -> list[dict[str, Any]]:
        params = []
        for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", self.rule):
            schema: dict[str, Any] = (
                {"type": "integer", "minimum": 0, "maximum": MAX_INT}
                if converter == "int"
                else {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
            )
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return params


OPERATIONS: list[Operation] = []
#: named response schemas (``schema``), beside the request models
SCHEMAS: dict[str, dict[str, Any]] = {}


def schema(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    """Name a response schema for the document; the reference to it."""
    SCHEMAS[name] = definition
    return {"$ref": f"#/components/schemas/{name}"}


def operation(
    method: str,
    rule: str,
    summary: str,
    *,
    query: type[Query] | None = None,
    body: type[Body] | None = None,
    form: type[Form] | None = None,
    body_required: bool = True,
    action: Action | None = None,
    public: bool = False,
    responses: dict[int, Answer] | None = None,
) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Route ``method rule`` on the API blueprint. Before the view: ``require(action)``, then the query
    (passed as ``query=``) and the body (``body=``: the JSON model, or the form model for a multipart
    request) validated; a failure is a 400 naming the field."""

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        op = Operation(
            method.upper(),
            rule,
            view.__name__,
            summary,
            view.__module__.rsplit(".", 1)[-1],
            query,
            body,
            form,
            body_required,
            action,
            public,
            responses or {},
        )

        @wraps(view)
        def validated(**path: Any) -> ResponseReturnValue:
            if op.action is not None:
                require(g.api_user, op.action)
            extra: dict[str, Any] = {}
            if op.query is not None:
                extra["query"] = _validate(op.query, {k: v for k, v in request.args.items() if v != ""})
            if op.form is not None and request.mimetype == "multipart/form-data":
                fields = request.form.to_dict()
                _refuse_unstorable(fields)
                extra["body"] = _validate(op.form, {**fields, **request.files.to_dict()})
            elif op.body is not None:
                extra["body"] = _validate(op.body, json_object(required=op.body_required))
            elif op.form is not None:
                raise ApiError(400, "invalid_body", "send a multipart/form-data request")
            return view(**path, **extra)

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=validated, methods=[op.method])
        OPERATIONS.append(op)
        return validated

    return decorate


def roles_needed(action: Action) -> str:
    """The 403 answer's description: the roles that may take the action."""
    return "Needs the " + " or ".join(sorted(r.value for r in roles_for(action))) + " role"


M = TypeVar("M", bound=BaseModel)

# -- validation ----------------------------------------------------------------------------------------


def json_object(*, required: bool = True) -> dict[str, Any]:
    """The request's JSON object (``{}`` when there is none and none is required), or a 400 for what no
    field could hold: a NUL character or a lone surrogate (``\\ud800``) in any text (PostgreSQL refuses
    both), or a whole number beyond ±MAX_INT, anywhere in the body."""
    body = request.get_json(silent=True)
    if body is None and not required and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    if _SUSPECT.search(request.get_data()):  # only then can the body hold one: a thousand-row batch is not walked
        _refuse_unstorable(body)
    return body


#: what the JSON text of a body must contain for it to hold a NUL, a lone surrogate, a number beyond ±MAX_INT
#: or one that is not finite: the escape of a NUL or of a surrogate, a surrogate's UTF-8 bytes (the parser
#: lets them pass), a run of as many digits as MAX_INT has, an exponent, NaN or Infinity, or a zero byte
#: (JSON sent as UTF-16 or UTF-32, which the parser reads too: walked whole)
_SUSPECT = re.compile(
    rb"\\u0000|\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|[0-9]{%d,}|[0-9][eE]|NaN|Infinity|\x00" % len(str(MAX_INT))
)


def _refuse_unstorable(value: Any) -> None:
    problem = _unstorable(value)
    if problem:
        raise ApiError(400, "invalid_body", problem)


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "text may not contain NUL characters"
        if not value.isascii():
            try:
                value.encode("utf-8")  # a lone surrogate cannot be encoded (checked in C, not per character)
            except UnicodeEncodeError:
                return "text must be valid Unicode (no lone surrogates)"
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -MAX_INT <= value <= MAX_INT else f"whole numbers must be within ±{MAX_INT}"
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite (no NaN, Infinity or overflowing exponents)"
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _unstorable(k) or _unstorable(v))), None)
    if isinstance(value, list):
        return next((p for v in value if (p := _unstorable(v))), None)
    return None


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        where = field_path(first["loc"])
        message = f"{where}: {first['msg']}" if where else first["msg"]
        raise ApiError(400, "invalid_parameter", message, where or None) from None


def field_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location as the API names fields: ``rows[0].birthday``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path
