"""Helpers for driving the panel through Flask's test client with real CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def sign_in(client: Any, username: str, password: str) -> Any:
    page = client.get("/admin/login").get_data(as_text=True)
    return client.post("/admin/login", data={"username": username, "password": password, "csrf_token": csrf_from(page)})


def post_form(client: Any, page_url: str, action: str, data: dict[str, Any]) -> Any:
    """Open ``page_url``, take its CSRF token and POST ``data`` to ``action``."""
    token = csrf_from(client.get(page_url).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token})
