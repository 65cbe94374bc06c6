"""The panel's languages: Chinese by default, English available; the choice is kept in the session.

The Chinese text is the source (the msgids); `admin/translations/en` translates it. After changing any
text: `make translations`, fill in the new English entries, `make translations` again to compile.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import Babel

LANGUAGES = {"zh": "中文", "en": "English"}
DEFAULT = "zh"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

babel = Babel()
bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    lang = session.get("lang")
    return lang if lang in LANGUAGES else DEFAULT


@bp.get("/lang/<code>")
def switch_language(code: str) -> ResponseReturnValue:
    """A display preference only: safe as a GET, and it changes nothing but the session's language."""
    if code in LANGUAGES:
        session["lang"] = code
    target = request.referrer or ""
    parts = urlsplit(target)
    if parts.netloc and parts.netloc != request.host:
        target = ""
    return redirect(parts.path + (f"?{parts.query}" if parts.query else "") if target else url_for("admin.dashboard"))


def init_i18n(app: Flask) -> None:
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    babel.init_app(app, locale_selector=select_locale)
    app.context_processor(lambda: {"languages": LANGUAGES, "current_language": select_locale()})
    app.register_blueprint(bp)
