"""What every answer of the app carries (security headers) and what it refuses before any view runs (a body
over the limit)."""

import re

import requests

from bot import MAX_REQUEST_BYTES, scrape
from tests.admin.panel import sign_in
from tests.conftest import free_port, make_token, make_user


def test_panel_pages_carry_the_security_headers_and_their_scripts_the_nonce(app, client):
    _, password = make_user(app, "boss", "admin")
    sign_in(client, "boss", password)
    res = client.get("/admin/channels")
    assert res.status_code == 200
    csp = res.headers["Content-Security-Policy"]
    assert (
        "frame-ancestors 'none'" in csp
        and "object-src 'none'" in csp
        and "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    )
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    page = res.get_data(as_text=True)
    scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert scripts and all(f'nonce="{nonce}"' in s for s in scripts)
    assert res.headers["X-Frame-Options"] == "DENY"
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    # a new nonce every answer
    again = client.get("/admin/channels").headers["Content-Security-Policy"]
    assert re.search(r"'nonce-([^']+)'", again).group(1) != nonce


def test_the_api_and_the_webhook_answer_with_the_headers_too(app, client, api_token):
    res = client.get("/api/v1/customers", headers={"Authorization": f"Bearer {api_token}"})
    assert res.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in res.headers
    assert client.get("/wecom/callback").headers["X-Frame-Options"] == "DENY"


def test_a_body_over_the_limit_is_413_before_it_is_read(app, client):
    user_id, _ = make_user(app, "ops", "operator")
    token = make_token(app, user_id)
    too_big = b"x" * (MAX_REQUEST_BYTES + 1)
    res = client.post(
        "/api/v1/segments",
        data=too_big,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert res.status_code == 413
    assert res.get_json()["error"]["code"] == "request_entity_too_large"
    assert client.post("/admin/login", data={"username": "x" * (MAX_REQUEST_BYTES + 1)}).status_code == 413


def _listening_addresses(port):
    """The local addresses sockets listen on at ``port`` (Linux's /proc/net/tcp, hex little-endian IPv4)."""
    found = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.append(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_a_workers_metrics_port_listens_on_this_machine_only_by_default(app):
    port = free_port()
    scrape.serve(app, port)
    assert "siyu_redis_up" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert _listening_addresses(port) == ["127.0.0.1"]


def test_health_says_starting_until_the_process_is_ready(app, client):
    from admin.health import STARTING

    app.extensions[STARTING] = True
    try:
        res = client.get("/healthz")
        assert res.status_code == 503 and res.get_json() == {"ok": False, "status": "starting"}
    finally:
        app.extensions[STARTING] = False
    assert client.get("/healthz").get_json()["ok"] is True
