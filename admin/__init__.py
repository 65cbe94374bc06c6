"""The web panel and the JSON API. Views validate input, call a service, and answer."""

from __future__ import annotations

from flask import Flask

#: the largest whole number a request may carry: ids, counts and orders are 32-bit in the database
MAX_INT = 2**31 - 1


def whole(value: str) -> int:
    """``request.args.get(name, type=whole)``: a whole number the database can hold; anything else (junk
    or a number beyond ±MAX_INT) is a ValueError, so the argument's default applies."""
    number = int(value)
    if not -MAX_INT <= number <= MAX_INT:
        raise ValueError("out of range")
    return number


def init_admin(app: Flask) -> None:
    from admin.api import init_api
    from admin.headers import init_headers
    from admin.health import bp as health_bp
    from admin.home import bp as home_bp
    from admin.i18n import init_i18n
    from admin.views import init_panel

    init_headers(app)
    app.register_blueprint(health_bp)
    init_api(app)
    app.register_blueprint(home_bp)
    init_i18n(app)
    init_panel(app)
