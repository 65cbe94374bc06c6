"""Fixtures: one Siyu app per session on the backend chosen by SIYU_TEST_BACKEND, served over real HTTP,
beside a fake WeCom served over real HTTP; each test starts from empty tables, an empty Redis and a
freshly seeded fake corp.

- ``embedded`` (default): SQLite in a temporary directory and the in-process Redis stand-in.
- ``services``: the PostgreSQL at DATABASE_URL and the Redis at REDIS_URL (the Makefile points these at a
  scratch database and Redis db 15).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import text

from bot import create_app
from bot.extensions import db, redis_conn
from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread, simulator_for
from bot.sandbox.corp import FakeCorp
from bot.sandbox.simulator import Simulator

BACKEND = os.environ.get("SIYU_TEST_BACKEND", "embedded")


def post_at_once(url: str, query: dict[str, str], body: str, copies: int) -> list[int]:
    """POST the same callback from ``copies`` connections released at the same instant; their statuses."""
    barrier = threading.Barrier(copies)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        statuses.append(requests.post(url, params=query, data=body.encode(), timeout=10).status_code)

    threads = [threading.Thread(target=send) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def child_env(settings: Any = None, **extra: str) -> dict[str, str]:
    """The environment of a Siyu process a test starts: none of this machine's Siyu or WeCom settings, sandbox
    mode, and (given the test app's ``settings``) the same database, Redis and fake WeCom."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SIYU_", "DATABASE_URL", "REDIS_URL"))}
    env.update(FLASK_APP="wsgi", SIYU_SANDBOX="1")
    if settings is not None:
        env.update(DATABASE_URL=settings.database_url, SIYU_SANDBOX_PORT=str(settings.sandbox_port))
        if settings.redis_url:
            env["REDIS_URL"] = settings.redis_url
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def sandbox_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def live_port() -> int:
    """The port the app is served on (``live_server``), known before the app so that it is its public URL."""
    return free_port()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory, sandbox_port: int, live_port: int) -> Iterator[Flask]:
    overrides: dict[str, Any] = {
        "sandbox_port": sandbox_port,
        "public_url": f"http://127.0.0.1:{live_port}/",
        "wecom_api_base": None,
        "wecom_corp_id": None,
        "sandbox_mode": True,
    }
    if BACKEND == "services":
        overrides["database_url"] = os.environ["DATABASE_URL"]
        overrides["redis_url"] = os.environ["REDIS_URL"]
    else:
        overrides["database_url"] = f"sqlite:///{tmp_path_factory.mktemp('db') / 'siyu.sqlite3'}"
        overrides["redis_url"] = None
    application = create_app({**overrides, "TESTING": True})
    with application.app_context():
        from flask_migrate import downgrade, upgrade

        if BACKEND == "services":
            # A scratch database: start from nothing, through every migration.
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
            db.engine.dispose()
        upgrade()
        if BACKEND == "services":
            downgrade(revision="base")
            upgrade()
    yield application
    with application.app_context():
        inbox = application.extensions.get("siyu.inbox")
        if inbox is not None:
            inbox.close()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def fake_wecom_app(app: Flask, live_server: str) -> Flask:
    settings = app.config["SIYU"]
    # The sandbox's client page frames the sidebar of the Siyu under test.
    fake = create_fake_wecom(corp_for(settings), siyu_url=live_server + "/")
    serve_in_thread(fake, port=settings.sandbox_port)
    return fake


@pytest.fixture(scope="session")
def live_server(app: Flask, live_port: int) -> str:
    server = serve_in_thread(app, port=live_port)
    return f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="session")
def webhook_url(live_server: str) -> str:
    return live_server + "/wecom/callback"


@pytest.fixture(autouse=True)
def clean_state(app: Flask) -> Iterator[None]:
    with app.app_context():
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        if (noter := app.extensions.get("siyu.radar_noter")) is not None:
            noter.settle()  # a radar open the last test noted lands before the flush, not in this test
        redis_conn.client.flushdb()
        app.extensions.pop("siyu.radar_rate", None)  # radar links' per-process rate counts
    yield
    with app.app_context():
        db.session.remove()


@pytest.fixture
def corp(app: Flask, fake_wecom_app: Flask) -> FakeCorp:
    """A fresh fake corp behind the fake WeCom for this test."""
    fresh = corp_for(app.config["SIYU"])
    fake_wecom_app.config.update(CORP=fresh, SIMULATOR=None)
    return fresh


@pytest.fixture
def sim(app: Flask, corp: FakeCorp, webhook_url: str, fake_wecom_app: Flask) -> Simulator:
    """The customer simulator, also behind the fake's /sandbox/simulate and /sandbox/scan."""
    simulator = simulator_for(app.config["SIYU"], corp, webhook_url, seed=7)
    simulator.seed_corp(stores=2, staff_per_store=2)
    fake_wecom_app.config["SIMULATOR"] = simulator
    return simulator


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def run_worker(app: Flask) -> Any:
    """Run the queue worker until the queues are empty (as `flask worker --burst` would)."""
    from bot.cli import _worker

    def run() -> None:
        inbox = app.extensions.get("siyu.inbox")
        if inbox is not None:
            inbox.settle()  # queue pushes are coalesced; make every stored event reach the queue first
        noter = app.extensions.get("siyu.radar_noter")
        if noter is not None:
            noter.settle()  # radar opens are noted in batches; make every one reach Redis first
        _worker(app).work(burst=True, with_scheduler=False)  # type: ignore[attr-defined]

    return run


def proxied_app(tmp_path: Any, monkeypatch: Any, proxies: int) -> Flask:
    """A second app of its own (SQLite in ``tmp_path``, the Redis stand-in) trusting ``proxies`` proxies. Making
    it rebinds the process's Redis client, which is put back when the test ends."""
    from bot import create_app

    monkeypatch.setattr(redis_conn, "_client", redis_conn._client)
    return create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'p.sqlite3'}",
            "redis_url": None,
            "trusted_proxies": proxies,
            "sandbox_mode": True,
            "instance_dir": tmp_path,
        }
    )


def make_user(app: Flask, username: str, role: str, stores: list[int] | None = None) -> tuple[int, str]:
    """A panel user (id, password) with the given role and store department ids."""
    from sqlalchemy import select

    from bot.models import Role, Store
    from bot.services.users.accounts import create_user

    password = f"pw-{username}-0123456789"
    with app.app_context():
        scoped = list(db.session.scalars(select(Store).where(Store.department_id.in_(stores or []))))
        user = create_user(username, password, Role(role), stores=scoped)
        db.session.commit()
        return user.id, password


class ApiClient:
    """The JSON API through Flask's test client, as one bearer token's user."""

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def post(self, url: str, body: Any = None) -> Any:
        return self.client.post(url, json=body if body is not None else {}, headers=self.headers)

    def get(self, url: str) -> Any:
        return self.client.get(url, headers=self.headers)

    def patch(self, url: str, body: Any) -> Any:
        return self.client.patch(url, json=body, headers=self.headers)

    def delete(self, url: str) -> Any:
        return self.client.delete(url, headers=self.headers)


def make_token(app: Flask, user_id: int) -> str:
    from bot.models import User
    from bot.services.users.api_tokens import create_api_token

    with app.app_context():
        token = create_api_token("tests", db.session.get(User, user_id))
        db.session.commit()
        return token


@pytest.fixture
def api_token(app: Flask) -> str:
    """A bearer token acting as an administrator."""
    user_id, _ = make_user(app, "api-admin", "admin")
    return make_token(app, user_id)


def customers_of(app: Flask, sim: Simulator, run_worker: Any, members: list[str], each: int = 2) -> list[Any]:
    """The directory and tag library synced, then ``each`` customers added by each of ``members``."""
    from bot.services.directory.sync import sync_directory
    from bot.services.tags.library import sync_corp_tags

    with app.app_context():
        sync_directory()
        sync_corp_tags()
        db.session.commit()
    added = [sim.customer_adds(userid=m)[0] for m in members for _ in range(each)]
    run_worker()
    return added


@pytest.fixture
def admin_api(app: Flask, client: Any) -> ApiClient:
    """The JSON API as an administrator ("boss")."""
    return ApiClient(client, make_token(app, make_user(app, "boss", "admin")[0]))


@pytest.fixture
def operator_api(app: Flask, client: Any) -> ApiClient:
    """The JSON API as an operator ("ops")."""
    return ApiClient(client, make_token(app, make_user(app, "ops", "operator")[0]))


@pytest.fixture
def api(app: Flask, client: Any, sim: Simulator) -> ApiClient:
    """The JSON API as an operator ("ops"), once the directory and the tag library are synced from the fake corp."""
    from bot.services.directory.jobs import sync_directory
    from bot.services.tags.jobs import sync_corp_tags

    with app.app_context():
        sync_directory()
        sync_corp_tags()
    return ApiClient(client, make_token(app, make_user(app, "ops", "operator")[0]))


@pytest.fixture
def roles(app: Flask, sim: Simulator, corp: FakeCorp) -> dict[str, int]:
    """The directory and the tag library synced from the fake corp; a panel user of each role, by name: boss
    (admin), ops (operator), mgr2 and mgr3 (store managers of departments 2 and 3), viewer."""
    from bot.services.directory.sync import sync_directory
    from bot.services.tags.library import sync_corp_tags

    with app.app_context():
        sync_directory()
        sync_corp_tags()
        db.session.commit()
    return {
        "boss": make_user(app, "boss", "admin")[0],
        "ops": make_user(app, "ops", "operator")[0],
        "mgr2": make_user(app, "mgr2", "store_manager", [2])[0],
        "mgr3": make_user(app, "mgr3", "store_manager", [3])[0],
        "viewer": make_user(app, "viewer", "viewer")[0],
    }


@pytest.fixture
def callback(sim: Simulator) -> Any:
    """callback(event_xml) -> requests.Response: sign, encrypt and POST once over real HTTP."""

    def post(plaintext: str, **params: str) -> requests.Response:
        body, query = sim.envelope(plaintext)
        query.update(params)
        return requests.post(sim.webhook_url, params=query, data=body.encode(), timeout=10)

    return post
