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

from flask import Flask
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


def init_headers(app: Flask) -> None:
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
