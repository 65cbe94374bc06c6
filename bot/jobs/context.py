"""Jobs run outside requests: each gets a fresh app context and a clean database session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, has_app_context

from bot.extensions import db

_APP: Flask | None = None


def bind_app(app: Flask) -> None:
    """Called by the worker and scheduler commands: the app jobs run in."""
    global _APP
    _APP = app


@contextmanager
def job_context() -> Iterator[Flask]:
    if has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            yield app
        finally:
            db.session.remove()
        return
    if _APP is None:
        raise RuntimeError("no app bound for jobs: run them through `flask --app wsgi worker`")
    with _APP.app_context():
        try:
            yield _APP
        finally:
            db.session.remove()
