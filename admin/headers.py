"""Security headers on every answer, set by Flask-Talisman (a maintained Flask extension for exactly this).

- Content-Security-Policy: scripts only from Siyu itself or inline with this response's nonce (the panel's
  own scripts carry ``nonce="{{ csp_nonce() }}"``), so an injected ``<script>`` does not run; styles may be
  inline (the templates use style attributes; CSS cannot run code); nothing may frame the panel.
- X-Frame-Options DENY (for browsers without frame-ancestors), X-Content-Type-Options nosniff, a
  same-origin referrer policy.
- No HTTPS redirect and no HSTS here: TLS ends at the reverse proxy, which sets HSTS
  (``deploy/nginx.conf``); session cookies are marked secure by SIYU_SECURE_COOKIES.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_talisman import Talisman

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _policy(header: str) -> dict[str, str]:
    return dict((part.strip() + " ").split(" ", 1) for part in header.split(";") if part.strip())


def sidebar_headers(response: Response) -> Response:
    """The sidebar's pages differ from the panel's in two ways: customers' avatars and link covers come from
    WeCom's image hosts (any https image), and in sandbox mode the sandbox's "WeCom client" page frames them
    (in WeCom they open in the client's own webview, framed by nothing)."""
    if request.blueprint != "sidebar" or "Content-Security-Policy" not in response.headers:
        return response
    policy = _policy(response.headers["Content-Security-Policy"])
    policy["img-src"] = "'self' data: https:"
    settings = current_app.config["SIYU"]
    if settings.sandbox:
        port = settings.sandbox_port
        policy["frame-ancestors"] = f"'self' http://127.0.0.1:{port} http://localhost:{port}"
        response.headers.pop("X-Frame-Options", None)
    response.headers["Content-Security-Policy"] = "; ".join(f"{k} {v.strip()}" for k, v in policy.items())
    return response


def init_headers(app: Flask) -> None:
    # Registered before Talisman, so that it runs after it (Flask runs after_request functions last-in
    # first-out) and adjusts the policy Talisman set.
    app.after_request(sidebar_headers)
    Talisman(
        app,
        force_https=False,
        strict_transport_security=False,
        session_cookie_secure=app.config["SIYU"].secure_cookies,
        frame_options="DENY",
        content_security_policy=CSP,
        content_security_policy_nonce_in=["script-src"],
        referrer_policy="same-origin",
        x_content_type_options=True,
    )
