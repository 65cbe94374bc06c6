"""The staff workspace's H5 pages under /sidebar/: the chat sidebar (聊天工具栏) and the app's home, opened in
the WeCom client. Identified by WeCom OAuth (``session``), never by the panel's sign-in; every read and write
through ``bot.services.workspace``, whose policy shows a member only their own customers and groups."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app

bp = Blueprint("sidebar", __name__, url_prefix="/sidebar")


def init_sidebar(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.context_processor
def jssdk() -> dict[str, str]:
    """Where the pages load WeCom's JS-SDK from (the sandbox's stand-in offline)."""
    return {"jssdk_url": current_app.config["SIYU"].jssdk_url}


# The pages register their views on ``bp``, so they are imported once it exists.
from admin.sidebar import library, pages  # noqa: E402, F401 - register the routes
