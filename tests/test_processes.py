"""The real processes: `flask dev` as a newcomer runs it, and the webhook under gunicorn with several workers."""

import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from bot.sandbox.simulator import event_xml
from tests.conftest import BACKEND, child_env, free_port, post_at_once

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_until(predicate, timeout=30.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except requests.RequestException:
            pass
        time.sleep(every)
    raise AssertionError("timed out")


def clean_env(**extra):
    return child_env(**extra)


def test_dev_command_shows_simulated_customers_arriving(tmp_path):
    port, sandbox_port = free_port(), free_port()
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}",
        SIYU_SANDBOX_PORT=str(sandbox_port),
        SIYU_INSTANCE_DIR=str(tmp_path / "instance"),  # not the checkout's: its dev token stays as it is
    )
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [str(BIN / "flask"), "dev", "--port", str(port), "--interval", "0.3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        base = f"http://127.0.0.1:{port}"
        # Healthy means ready: by the first 200 the sandbox's admin and API token exist.
        wait_until(lambda: requests.get(base + "/healthz", timeout=2).status_code == 200, timeout=60)
        with sqlite3.connect(tmp_path / "dev.sqlite3") as conn:
            assert conn.execute("SELECT count(*) FROM users WHERE username = 'admin'").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0] >= 1
        token = wait_until(
            lambda: next((m.group(1) for m in map(re.compile(r"API token: (\S+)").search, lines) if m), None)
        )
        assert requests.get(base + "/healthz", timeout=5).json()["ok"] is True
        kept = tmp_path / "instance" / "dev-api-token"  # the next start uses it again while it lives
        assert kept.read_text().strip() == token and kept.stat().st_mode & 0o777 == 0o600
        headers = {"Authorization": f"Bearer {token}"}
        customers = wait_until(
            lambda: requests.get(base + "/api/v1/customers", headers=headers, timeout=5).json()["total"] >= 3
        )
        assert customers
        login = next(m for m in map(re.compile(r"sign in:\s+(\S+) / (\S+)").search, lines) if m)
        session = requests.Session()
        page = session.get(base + "/", timeout=5)  # / leads to the panel, which asks for a sign-in
        assert page.url.endswith("/admin/login?next=/admin/?") and "沙箱模式" in page.text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        signed_in = session.post(
            base + "/admin/login",
            timeout=5,
            data={"username": login.group(1), "password": login.group(2), "csrf_token": token},
        )
        assert signed_in.url.endswith("/admin/") and "仪表盘" in signed_in.text
        # the demo's customers are there from the start (its brand data); the simulator's arrive by callback
        assert wait_until(
            lambda: requests.get(base + "/api/v1/events?status=done", headers=headers, timeout=5).json()["total"] >= 3
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)
        proc.stdout.close()
    assert any("panel:" in line for line in lines)


def test_same_callback_at_two_gevent_gunicorn_workers_is_stored_once(app, sim, tmp_path):
    """As deployed (deploy/gunicorn.conf.py, multiprocess metrics): stored once, counted by both workers."""
    settings = app.config["SIYU"]
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = clean_env(
        DATABASE_URL=settings.database_url,
        SIYU_SANDBOX_PORT=str(settings.sandbox_port),
        SIYU_LOG_LEVEL="WARNING",
        SIYU_BIND=f"127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    if BACKEND == "services":
        env["REDIS_URL"] = settings.redis_url
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/wecom/callback"
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok)
        plaintext = event_xml(
            settings.corp_id,
            "change_external_contact",
            ChangeType="del_follow_user",
            UserID="staff0201",
            ExternalUserID="wmTwoProcs",
        )
        body, query = sim.envelope(plaintext)
        # a fresh connection each: gunicorn spreads them over both worker processes
        assert post_at_once(url, query, body, 16) == [200] * 16
        # Whichever worker answers the scrape reports both workers' counts.
        assert len(list(metrics_dir.glob("histogram_*.db"))) == 2  # one file per worker process
        kind = "change_external_contact.del_follow_user"
        for _ in range(4):
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            stored = _sample(text, f'siyu_callbacks_total{{kind="{kind}",outcome="stored"}}')
            duplicates = _sample(text, f'siyu_callbacks_total{{kind="{kind}",outcome="duplicate"}}')
            assert (stored, duplicates) == (1, 15)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    from sqlalchemy import func, select

    from bot.extensions import db
    from bot.models import CallbackEvent

    with app.app_context():
        assert db.session.scalar(select(func.count(CallbackEvent.id))) == 1


def _sample(exposition, series):
    line = next((line for line in exposition.splitlines() if line.startswith(series + " ")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0
