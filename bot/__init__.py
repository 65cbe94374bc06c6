"""Siyu (私域助手): the Enterprise WeChat private-domain assistant."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from bot import logs
from bot.config import Settings
from bot.extensions import db, migrate, redis_conn

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: the largest request body: the largest upload (a 20 MiB file attachment, WeCom's own limit for files) and
#: the form around it; anything bigger is a 413 before it is read (the webhook caps callbacks far lower)
MAX_REQUEST_BYTES = 21 * 1024 * 1024
#: Python's collector of reference cycles runs, by default, every 700 allocations not yet freed. A request
#: or a job that reads a thousand rows makes a hundred thousand objects, and with them the collector ran
#: hundreds of times a second: a third of an import batch's CPU (bench/brand_data.py). Most objects are
#: freed by their reference counts, not the collector, so running it every 20,000 keeps memory as bounded.
GC_THRESHOLDS = (20_000, 10, 10)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app. ``config`` overrides settings by field name (tests) or holds Flask keys."""
    overrides = dict(config or {})
    settings_fields = set(Settings.__dataclass_fields__)
    settings = Settings.from_env(**{k: v for k, v in overrides.items() if k in settings_fields})
    logs.configure(settings.log_level, settings.log_format)
    gc.set_threshold(*GC_THRESHOLDS)

    app = Flask(__name__, template_folder="../admin/templates", static_folder="../admin/static")
    app.url_map.converters["int"] = RowId
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.config.update(
        SIYU=settings,
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        JSON_AS_ASCII=False,
    )
    app.config.update({k: v for k, v in overrides.items() if k not in settings_fields})

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    redis_conn.init_app(app)

    # The factory is the composition root: the front doors, the commands and the models are imported when
    # an app is built, so that importing a library part of the package (``bot.wecom``, ``bot.config``:
    # the gunicorn config, the benchmarks, the sandbox) does not load the whole application.
    import bot.models
    import bot.services.webhooks.outbox  # noqa: F401 - the outbox listens to what the domains announce
    from admin import init_admin
    from bot.cli import register_cli
    from handlers import init_handlers

    _request_hooks(app)
    init_handlers(app)
    init_admin(app)
    register_cli(app)
    if settings.sandbox:
        app.logger.warning("SIYU_SANDBOX=1: sandbox mode, no real corp; WeCom API at %s", settings.wecom_api_base)
    return app


class RowId(IntegerConverter):
    """``<int:…>`` in every route: ids are 32-bit in the database, so a larger number matches no route
    (404) instead of reaching a query that cannot bind it."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def _request_hooks(app: Flask) -> None:
    """Every request's log records carry its id (returned in ``X-Request-ID``); NUL in a query is a 400."""

    @app.before_request
    def bind_request_id() -> None:
        g.request_id = logs.request_id(request.headers.get("X-Request-ID"))
        g.log_token = logs.bind(request_id=g.request_id)

    @app.before_request
    def refuse_nul_in_query() -> None:
        # No text Siyu keeps or searches may hold a NUL (PostgreSQL refuses them): 400, not a failed query.
        if any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            abort(400, description="query parameters may not contain NUL characters")

    @app.after_request
    def return_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.teardown_request
    def unbind_request_id(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.unbind(token)


def _engine_options(url: str) -> dict[str, Any]:
    # Errors are logged and stored on failed events: keep customers' data out of their messages.
    common = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # Several threads (request threads, the group committer) share the file; wait instead of failing.
        return {**common, "connect_args": {"check_same_thread": False, "timeout": 30}}
    return {**common, "pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
