"""Command-line entry points: ``flask --app wsgi <command>``."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import redis
import requests
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask, current_app
from flask.cli import with_appcontext
from rq import SimpleWorker
from sqlalchemy import select
from werkzeug.security import generate_password_hash
from werkzeug.serving import run_simple

from admin.health import STARTING
from bot import scrape
from bot.demo import seed_demo
from bot.extensions import db, redis_conn
from bot.jobs.context import bind_app
from bot.jobs.queue import QUEUE_NAMES, URGENT, enqueue_events, queue
from bot.jobs.scheduler import configure, run_job, scheduler_kwargs
from bot.models import ApiToken, Role, User
from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread, simulator_for
from bot.schedule import PERIODIC_JOBS
from bot.services.callbacks.processing import reopen_event
from bot.services.customers.jobs import sync_customers
from bot.services.directory.sync import sync_directory
from bot.services.errors import ServiceError
from bot.services.segments.rules import rebuild_facets
from bot.services.tags.library import sync_corp_tags
from bot.services.users.accounts import audit, create_user, end_sessions, generate_password
from bot.services.users.api_tokens import MAX_EXPIRY_DAYS, create_api_token, live_token, revoke_api_token

log = logging.getLogger("siyu")


def _require_shared_redis(what: str) -> None:
    if redis_conn.embedded:
        raise click.ClickException(
            f"REDIS_URL is not set, so the queue lives inside one process and a separate {what} would never "
            "see it. Set REDIS_URL, or run everything in one process with `flask --app wsgi dev` (`make run`)."
        )


def _worker(app: Flask, names: tuple[str, ...] | None = None) -> object:

    bind_app(app)
    connection = redis_conn.client
    # SimpleWorker runs jobs in this process (no fork per job): database pools survive between jobs.
    return SimpleWorker([queue(name, connection) for name in names or QUEUE_NAMES], connection=connection)


def _metrics_port(command: Callable[..., Any]) -> Callable[..., Any]:
    port = click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        help="Serve Prometheus metrics on this port (for a machine with no web process; see bot/scrape.py).",
    )
    address = click.option(
        "--metrics-address",
        default="127.0.0.1",
        show_default=True,
        help="The address the metrics port listens on (0.0.0.0: every interface; it has no token check).",
    )
    return port(address(command))


def _serve_metrics(port: int | None, address: str) -> None:
    if port is not None:
        scrape.serve(current_app._get_current_object(), port, address)  # type: ignore[attr-defined]
        click.echo(f"metrics: http://{address}:{port}/metrics")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option(
    "--welcomes-only",
    is_flag=True,
    help="Read only the welcome queue: a worker kept free for welcomes however long the other queues are.",
)
@_metrics_port
@with_appcontext
def worker_command(burst: bool, welcomes_only: bool, metrics_port: int | None, metrics_address: str) -> None:
    """Run a queue worker (welcomes first, then the rest of each add, then other events, then the rest)."""

    _require_shared_redis("worker")
    _serve_metrics(metrics_port, metrics_address)
    names = (URGENT,) if welcomes_only else None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    gc.freeze()  # the app's objects live as long as the worker: out of the cycle collector's sight
    level = app.config["SIYU"].log_level
    _work_through_redis_outages(lambda: _worker(app, names), burst=burst, logging_level=level)


#: seconds between attempts to reach Redis again after it went away (doubling up to the last)
REDIS_RETRY = (1, 2, 4, 8, 15)


def _work_through_redis_outages(make_worker: Callable[[], Any], **work: Any) -> None:
    """Run a worker; if Redis goes away (a restart), wait for it and start a fresh worker, rather than
    exit: what the lost queues held is pending in the database, and the sweeper queues it again."""

    failures = 0
    while True:
        worker = make_worker()
        started = time.monotonic()
        try:
            worker.work(with_scheduler=False, **work)
            return
        except redis.exceptions.ConnectionError as exc:
            if work.get("burst"):
                raise
            if time.monotonic() - started > 60:
                failures = 0  # a new outage, not the same one going on
            delay = REDIS_RETRY[min(failures, len(REDIS_RETRY) - 1)]
            failures += 1
            log.warning("worker lost Redis (%s); starting again in %d s", exc, delay)
            time.sleep(delay)
            _wait_for_redis(redis_conn.client, REDIS_RETRY[-1])


def _wait_for_redis(client: Any, every: float) -> None:

    while True:
        try:
            client.ping()
            return
        except redis.exceptions.ConnectionError:
            time.sleep(every)


@click.command("scheduler")
@_metrics_port
@with_appcontext
def scheduler_command(metrics_port: int | None, metrics_address: str) -> None:
    """Run the periodic-job scheduler (one or several; each run fires once across them)."""

    _require_shared_redis("scheduler")
    _serve_metrics(metrics_port, metrics_address)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    bind_app(app)
    scheduler = configure(BlockingScheduler(**scheduler_kwargs()), app, PERIODIC_JOBS)
    click.echo(f"scheduler: {len(scheduler.get_jobs())} job(s) registered")
    scheduler.start()


@click.command("create-api-token")
@click.argument("name")
@click.option("--user", "username", required=True, help="The panel user the token acts as (role and stores).")
@click.option(
    "--expires-days",
    type=click.IntRange(1, MAX_EXPIRY_DAYS),
    default=None,
    help="The token stops working this many days from now (default: until revoked).",
)
@with_appcontext
def create_api_token_command(name: str, username: str, expires_days: int | None) -> None:
    """Create a bearer token for /api/v1 acting as a panel user (shown once)."""

    user = _user_named(username)
    try:
        token = create_api_token(name, user, expires_days=expires_days)
    except ServiceError as exc:
        raise click.ClickException(exc.text()) from exc
    audit(None, "create_api_token", f"token:{name}", after={"user": username, "expires_days": expires_days})
    db.session.commit()
    click.echo(token)


@click.command("revoke-api-token")
@click.argument("token")
@click.option("--user", "username", default=None, help="TOKEN is a name: revoke that user's live tokens of that name.")
@with_appcontext
def revoke_api_token_command(token: str, username: str | None) -> None:
    """Revoke an API token: by its id (as the panel's 「API 令牌」 page lists it), or by name with --user."""

    if username is None:
        if not token.isdigit():
            raise click.ClickException("give the token's id, or its name with --user USERNAME")
        row = db.session.get(ApiToken, int(token))
        if row is None:
            raise click.ClickException(f"no API token with id {token}")
        rows = [row]
    else:
        user = _user_named(username)
        rows = list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == token)))
        if not rows:
            raise click.ClickException(f"{username} has no API token named {token!r}")
    revoked = [row for row in rows if revoke_api_token(row)]
    for row in revoked:
        owner = row.user.username if row.user else ""
        audit(None, "revoke_api_token", f"token:{row.id}:{row.name}", after={"user": owner})
    db.session.commit()
    click.echo(
        f"revoked: {[r.id for r in revoked] or 'none'}; already revoked: "
        f"{[r.id for r in rows if r not in revoked] or 'none'}"
    )


def _user_named(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(
            f"no user {username!r}: create one with `flask --app wsgi create-admin` or the panel"
        )
    return user


@click.command("create-admin")
@click.argument("username")
@click.option("--password", default=None, help="Default: a generated one, printed once.")
@with_appcontext
def create_admin_command(username: str, password: str | None) -> None:
    """Create a panel administrator (the first account of a new installation)."""

    password = password or generate_password()
    try:
        user = create_user(username, password, Role.admin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    audit(None, "create_user", f"user:{user.username}", after={"role": "admin"})
    db.session.commit()
    click.echo(f"admin {username} created; password: {password}")


@click.command("sync-directory")
@with_appcontext
def sync_directory_command() -> None:
    """Pull departments (stores) and members (staff) from WeCom now."""

    def progress(done: int, total: int) -> None:
        click.echo(f"\r  departments {done}/{total}", nl=done == total)

    counts = sync_directory(progress)
    db.session.commit()
    click.echo(f"{counts['stores']} stores, {counts['staff']} staff")


@click.command("sync-tags")
@with_appcontext
def sync_tags_command() -> None:
    """Pull the corp tag library from WeCom now."""

    counts = sync_corp_tags()
    db.session.commit()
    click.echo(f"{counts['groups']} tag groups, {counts['tags']} tags")


@click.command("sync-customers")
@with_appcontext
def sync_customers_command() -> None:
    """Pull every member's customers from WeCom now (resumes a run that stopped), repairing drift."""

    counts = sync_customers()
    click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))


@click.command("rebuild-facets")
@with_appcontext
def rebuild_facets_command() -> None:
    """Recompute every customer's segment facets from the relations (PostgreSQL); says how many changed."""

    changed = rebuild_facets()
    db.session.commit()
    if changed is None:
        click.echo("nothing to rebuild: on this database segments count from the relations directly")
    else:
        click.echo(f"facets rebuilt; customers changed: {changed}")


@click.group("events")
def events_group() -> None:
    """Inspect and retry stored callback events."""


@events_group.command("retry")
@click.argument("event_ids", nargs=-1, type=int, required=True)
@with_appcontext
def events_retry(event_ids: tuple[int, ...]) -> None:
    """Put failed or dead events back in the queue."""

    reopened = [i for i in event_ids if reopen_event(i)]
    db.session.commit()
    if reopened:
        enqueue_events([], reopened, redis_conn.client)
    click.echo(
        f"queued again: {reopened or 'none'}; not failed or dead: "
        f"{[i for i in event_ids if i not in reopened] or 'none'}"
    )


@click.command("sandbox")
@click.option("--port", type=int, default=None, help="Port of the fake WeCom API (default SIYU_SANDBOX_PORT).")
@click.option("--webhook", default="http://127.0.0.1:5000/wecom/callback", show_default=True)
@with_appcontext
def sandbox_command(port: int | None, webhook: str) -> None:
    """Serve the fake WeCom API and its simulator on its own (for a Siyu run under gunicorn)."""

    s = current_app.config["SIYU"]
    if not s.sandbox:
        raise click.ClickException("SIYU_SANDBOX is not set: Siyu is talking to a real corp, not the sandbox")
    corp = corp_for(s)
    simulator = simulator_for(s, corp, webhook)
    simulator.seed_corp()
    run_simple("127.0.0.1", port or s.sandbox_port, create_fake_wecom(corp, simulator), threaded=True)


@click.command("simulate")
@click.option("--count", type=int, default=5, show_default=True, help="How many customers add a member.")
@click.option("--state", default="", help="The channel state they scan.")
@click.option(
    "--action",
    type=click.Choice(["add", "tag", "delete"]),
    default="add",
    show_default=True,
    help="add: customers scan and add a member; tag: members tag customers; delete: customers leave.",
)
@with_appcontext
def simulate_command(count: int, state: str, action: str) -> None:
    """Ask the running sandbox to do ACTION COUNT times, each through a real callback."""
    s = current_app.config["SIYU"]
    base = (s.wecom_api_base or "").removesuffix("cgi-bin/")
    try:
        res = requests.post(
            base + "sandbox/simulate", json={"count": count, "state": state, "action": action}, timeout=120
        )
    except requests.RequestException as exc:
        raise click.ClickException(f"the sandbox at {base} is not answering: {exc}") from exc
    data = res.json()
    click.echo(f"{data.get('acknowledged', 0)}/{data.get('count', 0)} callbacks acknowledged by Siyu")


@click.command("dev")
@click.option("--port", type=int, default=5000, show_default=True)
@click.option(
    "--interval",
    type=float,
    default=4.0,
    show_default=True,
    help="Seconds between simulated customer actions (0: no simulation).",
)
@with_appcontext
def dev_command(port: int, interval: float) -> None:
    """Everything in one process: web server, worker, scheduler and (in sandbox mode) the fake WeCom."""

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    s = app.config["SIYU"]
    bind_app(app)
    webhook = f"http://127.0.0.1:{port}/wecom/callback"
    simulator = None
    if s.sandbox:
        corp = corp_for(s)
        simulator = simulator_for(s, corp, webhook)
        simulator.seed_corp()
        serve_in_thread(create_fake_wecom(corp, simulator), port=s.sandbox_port)
    # /healthz says "starting" (503) until the sandbox's admin and token exist: a script that waits for it and
    # then signs in finds them.
    app.extensions[STARTING] = True
    serve_in_thread(app, port=port)
    # One line per request from two servers buries what matters; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if s.sandbox:
        for job in PERIODIC_JOBS:
            if job.id in ("sync_directory", "sync_corp_tags"):
                run_job(job, claim=False)
    admin, password = _sandbox_admin() if s.sandbox else (None, None)
    token, minted = _dev_token(admin, s.instance_dir / DEV_TOKEN_FILE) if admin else (None, False)
    db.session.commit()
    if admin is not None and simulator is not None:
        try:
            seed_demo(admin, simulator.corp)  # the first start's demo corp: every page with life in it
        except Exception:
            db.session.rollback()
            log.exception("sandbox: the demo corp could not be set up; starting without it")
    scheduler = configure(BackgroundScheduler(**scheduler_kwargs()), app, PERIODIC_JOBS)
    scheduler.start()
    app.extensions[STARTING] = False
    click.echo(
        "\n  私域助手 Siyu is running"
        + (" in SANDBOX mode (fake WeCom, simulated customers)" if s.sandbox else "")
        + f"\n  panel:     http://127.0.0.1:{port}/admin/"
        + (f"\n  sign in:   {admin.username} / {password}" if admin else "")
        + f"\n  callback:  {webhook}"
        + (
            f"\n  client:    http://127.0.0.1:{s.sandbox_port}/sandbox/client   (the chat sidebar in a WeCom stand-in)"
            if s.sandbox
            else ""
        )
        + (
            f"\n  API token: {token}   (curl -H 'Authorization: Bearer …' http://127.0.0.1:{port}/api/v1/customers)"
            if minted
            else f"\n  API token: the one in {s.instance_dir / DEV_TOKEN_FILE}, still live"
            if token
            else ""
        )
        + "\n  Ctrl-C stops everything.\n"
    )
    if simulator is not None and token:
        # the demo brand's systems send a purchase now and then to the API, as the brand's would
        simulator.brand_api = (f"http://127.0.0.1:{port}/api/v1/orders", token)
    if simulator is not None and interval > 0:
        sim = simulator

        def simulate() -> None:
            while True:
                time.sleep(interval)
                try:
                    log.info("sandbox: %s", sim.random_activity())
                except Exception:
                    log.exception("sandbox: simulated activity failed")

        threading.Thread(target=simulate, name="simulator", daemon=True).start()
    worker = _worker(app)
    try:
        worker.work(with_scheduler=False)  # type: ignore[attr-defined]
    finally:
        scheduler.shutdown(wait=False)
    sys.exit(0)


def _sandbox_admin() -> tuple[User, str]:
    """Sandbox mode's administrator, with a fresh password each start (printed, never stored in clear)."""

    password = generate_password()
    user = db.session.scalar(select(User).where(User.username == "admin"))
    if user is None:
        user = create_user("admin", password, Role.admin, display_name="沙箱管理员")
    else:
        user.password_hash = generate_password_hash(password)
        user.active = True
        end_sessions(user)  # a new password: the last run's sessions end
    return user, password


#: the file under the instance directory (SIYU_INSTANCE_DIR) that keeps `flask dev`'s sandbox API token
DEV_TOKEN_FILE = "dev-api-token"  # noqa: S105 - a file name


def _dev_token(admin: User, path: Path) -> tuple[str, bool]:
    """The sandbox's API token for `flask dev` and whether it is new: the one kept in ``path`` while its row
    is live (not revoked, not expired, still the admin's), else a new one, written there (mode 0600)."""

    try:
        kept = path.read_text(encoding="utf-8").strip()
    except OSError:
        kept = ""
    row = live_token(kept) if kept else None
    if row is not None and row.user_id == admin.id:
        return kept, False
    token = create_api_token("dev", admin)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        f.write(token + "\n")
    return token, True


def register_cli(app: Flask) -> None:
    for command in (
        worker_command,
        scheduler_command,
        create_api_token_command,
        revoke_api_token_command,
        create_admin_command,
        sync_directory_command,
        sync_tags_command,
        sync_customers_command,
        rebuild_facets_command,
        events_group,
        sandbox_command,
        simulate_command,
        dev_command,
    ):
        app.cli.add_command(command)
