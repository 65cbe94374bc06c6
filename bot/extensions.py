"""Extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Explicit constraint names so Alembic can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


class RedisConnection:
    """The Redis client: a real server at REDIS_URL, or an in-process stand-in when it is unset.

    The stand-in (fakeredis) lives in this process only: queued jobs and cached tokens are invisible to
    any other process, so it suits the embedded single-process mode and tests, nothing else.
    """

    def __init__(self) -> None:
        self._client: object | None = None
        self.embedded = False

    def init_app(self, app: Flask) -> None:
        settings = app.config["SIYU"]
        if settings.redis_url:
            self._client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
            self.embedded = False
        else:
            # Imported here: only the embedded mode needs the stand-in (and its Lua engine); a deployment
            # with REDIS_URL never loads it.
            import fakeredis

            self._client = fakeredis.FakeRedis(server=_embedded_server())
            self.embedded = True
            logging.getLogger("siyu").warning(
                "REDIS_URL is not set: using an IN-PROCESS Redis stand-in. Queues and caches are not shared "
                "with any other process; run the web server, worker and scheduler in ONE process "
                "(`flask --app wsgi dev`), or set REDIS_URL for anything else."
            )
        app.extensions["siyu.redis"] = self

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("Redis is not configured: create_app() has not run")
        return self._client


_SERVER: Any = None


def _embedded_server() -> Any:
    global _SERVER
    if _SERVER is None:
        import fakeredis  # the embedded mode only (see init_app)

        _SERVER = fakeredis.FakeServer()
    return _SERVER


redis_conn = RedisConnection()
