"""The web panel and the JSON API. Views validate input, call a service, and answer."""

from __future__ import annotations

from flask import Flask

from admin.api import init_api
from admin.headers import init_headers
from admin.health import bp as health_bp
from admin.home import bp as home_bp
from admin.i18n import init_i18n
from admin.media import bp as media_bp
from admin.radar import bp as radar_bp
from admin.sidebar import init_sidebar
from admin.views import init_panel


def init_admin(app: Flask) -> None:
    init_headers(app)
    app.register_blueprint(health_bp)
    init_api(app)
    app.register_blueprint(home_bp)
    app.register_blueprint(media_bp)
    app.register_blueprint(radar_bp)
    init_i18n(app)
    init_panel(app)
    init_sidebar(app)
