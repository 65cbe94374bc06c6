"""Every setting Siyu reads from the environment, typed, one line each.

Siyu talks either to a real corp (``WECOM_CORP_ID`` and the WeCom settings, ``SECRET_KEY`` of at least 32
bytes) or, with ``SIYU_SANDBOX=1`` (``make run`` sets it), to the built-in fake WeCom (``bot.sandbox``) with
credentials of its own and a session key kept under the instance directory. Neither is assumed: with none
of them set, start-up stops, as it does with a setting missing or malformed, naming it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"

SANDBOX_CORP_ID = "ww5a9d0c0ffee5a4d0"
SANDBOX_AGENT_ID = 1000002
SANDBOX_CONTACT_SECRET = "sandbox-contact-secret-000000000000000000"  # noqa: S105 - fake corp only
SANDBOX_AGENT_SECRET = "sandbox-agent-secret-0000000000000000000000"  # noqa: S105 - fake corp only
SANDBOX_CALLBACK_TOKEN = "SiyuSandboxToken"  # noqa: S105 - fake corp only
# A fixed 43-character EncodingAESKey for the fake corp (sha256 of a label, base64 without '=').
SANDBOX_CALLBACK_AES_KEY = base64.b64encode(hashlib.sha256(b"siyu-sandbox").digest()).decode()[:43]
#: WeCom's OAuth2 authorize page (WeCom doc 91022)
WECOM_OAUTH_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
#: WeCom's JS-SDK script for pages inside the client (WeCom doc 90547; jweixin 1.6 is not supported there)
WECOM_JSSDK_URL = "https://res.wx.qq.com/open/js/jweixin-1.2.0.js"


#: the shortest SECRET_KEY accepted for a real corp
MIN_SECRET_KEY_BYTES = 32


def _kept_secret(instance_dir: Path) -> str:
    """The sandbox's session key: random, made once and kept (mode 0600) under the instance directory, so
    sessions survive a restart and no key is written in the code."""
    path = instance_dir / "secret_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    instance_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the same start made it first
        time.sleep(0.1)
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key)
    return key


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _text(value: str) -> str:
    return value.strip()


def _int(value: str) -> int:
    return int(value.strip())


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _url(value: str) -> str:
    v = value.strip()
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return v if v.endswith("/") else v + "/"


def _page_url(value: str) -> str:
    """An http(s) URL taken as it is (a page or a script, so no "/" is added)."""
    v = value.strip()
    if not re.match(r"^https?://[^/\s]+/\S*$", v):
        raise ValueError(f"expected an http(s) URL with a path, got {value!r}")
    return v


DEFAULT_BIRTHDAY_PATTERN = (
    r"生日\s*[:：]?\s*(?:(?P<year>\d{4})\s*[-/.年])?\s*(?P<month>\d{1,2})\s*[-/.月]\s*(?P<day>\d{1,2})"
)


def _pattern(value: str) -> str:
    v = value.strip()
    try:
        groups = re.compile(v).groupindex
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    if not {"month", "day"} <= set(groups):
        raise ValueError("the pattern needs named groups (?P<month>…) and (?P<day>…)")
    return v


def _hour(value: str) -> int:
    v = int(value.strip())
    if not 0 <= v <= 23:
        raise ValueError("an hour is 0–23")
    return v


def _hours(value: str) -> tuple[int, int]:
    start, sep, end = value.strip().partition("-")
    if not sep:
        raise ValueError("quiet hours are START-END, e.g. 22-8 (empty: none)")
    return _hour(start), _hour(end)


def _days(value: str) -> int:
    v = int(value.strip())
    if v < 1:
        raise ValueError("at least 1 day")
    return v


def _corp_id(value: str) -> str:
    v = value.strip()
    if not re.fullmatch(r"ww[0-9a-zA-Z]{8,30}", v):
        raise ValueError("a WeCom corp id starts with 'ww' followed by letters and digits")
    return v


def _token(value: str) -> str:
    v = value.strip()
    # WeCom console: letters and digits, at most 32 characters (WeCom doc 96238).
    if not re.fullmatch(r"[0-9A-Za-z]{1,32}", v):
        raise ValueError("the callback token is 1-32 letters and digits")
    return v


def _aes_key(value: str) -> str:
    v = value.strip()
    if not re.fullmatch(r"[0-9A-Za-z+/]{43}", v):
        raise ValueError("the EncodingAESKey is exactly 43 base64 characters")
    if len(base64.b64decode(v + "=")) != 32:
        raise ValueError("the EncodingAESKey does not decode to 32 bytes")
    return v


def _old_keys(value: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    if any(len(k.encode()) < MIN_SECRET_KEY_BYTES for k in keys):
        raise ValueError(f"each retired key is at least {MIN_SECRET_KEY_BYTES} bytes, keys separated by commas")
    return keys


def _secret(value: str) -> str:
    v = value.strip()
    if len(v) < 8 or any(c.isspace() for c in v):
        raise ValueError("a secret is at least 8 characters with no spaces")
    return v


def _callback_age(value: str) -> int:
    v = int(value.strip())
    if not 300 <= v <= 86400:
        raise ValueError("seconds from 300 (WeCom's re-sends) to 86400 (a day)")
    return v


def _zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("an IANA time zone name such as Asia/Shanghai") from exc


def _proxies(value: str) -> int:
    n = _int(value)
    if not 0 <= n <= 5:
        raise ValueError("a number of proxies from 0 to 5")
    return n


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError("text or json")
    return value


def _directory(value: str) -> Path:
    return Path(value.strip()).expanduser().resolve()


def _mass_cap(value: str) -> str:
    if value not in ("month", "week", "day"):
        raise ValueError("month, week or day")
    return value


def _setting(env: str, parse: Callable[[str], Any], default: Any = None, *, wecom: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "wecom": wecom})


@dataclass(frozen=True)
class Settings:
    database_url: str = _setting("DATABASE_URL", _text)
    redis_url: str | None = _setting("REDIS_URL", _text)
    secret_key: str = _setting("SECRET_KEY", _text)
    # Keys SECRET_KEY had before (comma-separated, oldest first): what they signed — sessions and the radar
    # links already sent to customers — still verifies, while everything new is signed with SECRET_KEY.
    secret_key_fallbacks: tuple[str, ...] = _setting("SECRET_KEY_FALLBACKS", _old_keys, ())
    # The built-in fake WeCom instead of a real corp: asked for explicitly (`make run` does), never assumed
    # because a variable is missing.
    sandbox_mode: bool = _setting("SIYU_SANDBOX", _bool, False)
    wecom_corp_id: str | None = _setting("WECOM_CORP_ID", _corp_id)
    wecom_contact_secret: str | None = _setting("WECOM_CONTACT_SECRET", _secret, wecom=True)
    wecom_agent_id: int | None = _setting("WECOM_AGENT_ID", _int, wecom=True)
    wecom_agent_secret: str | None = _setting("WECOM_AGENT_SECRET", _secret)  # defaults to the contact secret
    wecom_callback_token: str | None = _setting("WECOM_CALLBACK_TOKEN", _token, wecom=True)
    wecom_callback_aes_key: str | None = _setting("WECOM_CALLBACK_AES_KEY", _aes_key, wecom=True)
    wecom_api_base: str | None = _setting("WECOM_API_BASE", _url)
    # WeCom's OAuth2 authorize page, where the sidebar learns who opened it (`oauth_url` is the one in effect).
    wecom_oauth_url: str | None = _setting("WECOM_OAUTH_URL", _page_url)
    # The JS-SDK script the sidebar loads, its only file from WeCom (`jssdk_url` is the one in effect).
    wecom_jssdk_url: str | None = _setting("WECOM_JSSDK_URL", _page_url)
    wecom_timeout: float = _setting("WECOM_TIMEOUT", float, 10.0)
    wecom_budget_per_minute: int = _setting("WECOM_BUDGET_PER_MINUTE", _int, 9000)
    sandbox_port: int = _setting("SIYU_SANDBOX_PORT", _int, 5001)
    callback_max_bytes: int = _setting("SIYU_CALLBACK_MAX_BYTES", _int, 64 * 1024)
    # How far a callback's signed timestamp may be from now, either way: WeCom's re-sends come within
    # minutes, and servers' clocks drift; older ones are replays. Well inside SIYU_HISTORY_DAYS, for which
    # the dedupe keys of processed callbacks are kept.
    callback_max_age: int = _setting("SIYU_CALLBACK_MAX_AGE", _callback_age, 3600)
    event_max_attempts: int = _setting("SIYU_EVENT_MAX_ATTEMPTS", _int, 8)
    # How long processed callbacks and periodic job runs are kept (failed and dead events stay until
    # someone deals with them): WeCom re-sends within minutes, so older dedupe keys catch nothing.
    history_days: int = _setting("SIYU_HISTORY_DAYS", _days, 90)
    log_level: str = _setting("SIYU_LOG_LEVEL", _text, "INFO")
    # text: one line per record for a terminal; json: one JSON object per line for a log pipeline.
    log_format: str = _setting("SIYU_LOG_FORMAT", _log_format, "text")
    # When set, GET /metrics wants "Authorization: Bearer <this>" (keep /metrics off the public site anyway).
    metrics_token: str | None = _setting("SIYU_METRICS_TOKEN", _secret)
    # The corp's clock: where a "day" starts for daily caps.
    timezone: ZoneInfo = _setting("SIYU_TIMEZONE", _zone, ZoneInfo("Asia/Shanghai"))
    # WeCom's per-customer cap on corp mass messages, as set in 群发助手 (WeCom doc 92135): as many as the
    # month has days ("month"), 7 a week ("week") or 1 a day ("day").
    mass_cap: str = _setting("SIYU_MASS_CAP", _mass_cap, "month")
    # Where the panel is reached from members' phones: links in app messages (reminders, digests) start here.
    public_url: str = _setting("SIYU_PUBLIC_URL", _url, "http://127.0.0.1:5000/")
    # The corp-time hour at which each store manager gets the daily digest.
    digest_hour: int = _setting("SIYU_DIGEST_HOUR", _hour, 9)
    # The corp's quiet hours (corp time, START-END, e.g. 22-8; equal: none): no radar alert reaches a member then.
    quiet_hours: tuple[int, int] = _setting("SIYU_QUIET_HOURS", _hours, (22, 8))
    # Radar link opens one address may make of one link in a minute; beyond, it is answered 429 (a bot).
    radar_rate: int = _setting("SIYU_RADAR_RATE", _int, 30)
    # Birthdays written in a member's remark or description, e.g. "生日 1990-05-12" or "生日5月12日": a
    # regular expression with named groups month and day (and optionally year).
    birthday_pattern: str = _setting("SIYU_BIRTHDAY_PATTERN", _pattern, DEFAULT_BIRTHDAY_PATTERN)
    # A CJK font for printable posters; the first of the usual Debian fonts that exists when unset.
    poster_font: str | None = _setting("SIYU_POSTER_FONT", _text)
    # How many reverse proxies (nginx, a load balancer) stand in front of the web process: their
    # X-Forwarded-For/-Proto/-Host are then believed for the client's address and the scheme. 0: none.
    trusted_proxies: int = _setting("SIYU_TRUSTED_PROXIES", _proxies, 0)
    # Session cookies only over HTTPS; on by default with a real corp (Siyu sits behind TLS there).
    secure_cookies: bool | None = _setting("SIYU_SECURE_COOKIES", _bool)
    # Where Siyu keeps its local files: the default SQLite database, `flask dev`'s sandbox API token.
    instance_dir: Path = _setting("SIYU_INSTANCE_DIR", _directory, INSTANCE_DIR)

    @property
    def sandbox(self) -> bool:
        return self.sandbox_mode

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            raw = env.get(f.metadata["env"])
            if raw is None or raw.strip() == "":
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                problems.append(f"{f.metadata['env']}: {exc}")
        if problems:
            raise ConfigError("Invalid configuration:\n  " + "\n  ".join(problems))
        settings = cls(**values)
        return settings._complete()

    def _complete(self) -> Settings:
        """Fill sandbox defaults, or insist on every WeCom setting when a real corp is configured."""
        changes: dict[str, Any] = {}
        if self.secure_cookies is None:
            changes["secure_cookies"] = not self.sandbox
        if self.database_url is None:
            self.instance_dir.mkdir(parents=True, exist_ok=True)
            changes["database_url"] = f"sqlite:///{self.instance_dir / 'siyu.sqlite3'}"
        if self.sandbox_mode and self.wecom_corp_id:
            raise ConfigError("SIYU_SANDBOX=1 and WECOM_CORP_ID are both set: choose the sandbox or a real corp")
        if not self.sandbox_mode and not self.wecom_corp_id:
            raise ConfigError(
                "No corp: set WECOM_CORP_ID (and the WeCom settings) to talk to a real corp, or SIYU_SANDBOX=1 to "
                "run against the built-in sandbox (`make run` does)"
            )
        if self.sandbox:
            changes.update(
                wecom_contact_secret=self.wecom_contact_secret or SANDBOX_CONTACT_SECRET,
                wecom_agent_id=self.wecom_agent_id or SANDBOX_AGENT_ID,
                wecom_agent_secret=self.wecom_agent_secret or SANDBOX_AGENT_SECRET,
                wecom_callback_token=self.wecom_callback_token or SANDBOX_CALLBACK_TOKEN,
                wecom_callback_aes_key=self.wecom_callback_aes_key or SANDBOX_CALLBACK_AES_KEY,
                wecom_api_base=self.wecom_api_base or f"http://127.0.0.1:{self.sandbox_port}/cgi-bin/",
                secret_key=self.secret_key or _kept_secret(self.instance_dir),
            )
        else:
            missing = [f.metadata["env"] for f in fields(self) if f.metadata["wecom"] and getattr(self, f.name) is None]
            if not self.secret_key:
                missing.append("SECRET_KEY")
            if missing:
                raise ConfigError("WECOM_CORP_ID is set, so Siyu talks to a real corp and needs: " + ", ".join(missing))
            # The key signs sessions: a short or copied one lets anyone forge an admin's cookie.
            if len(self.secret_key.encode()) < MIN_SECRET_KEY_BYTES or "CHANGE-ME" in self.secret_key:
                raise ConfigError(
                    f"SECRET_KEY: at least {MIN_SECRET_KEY_BYTES} random bytes, not the example's placeholder "
                    "(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
            if self.wecom_agent_secret is None:
                changes["wecom_agent_secret"] = self.wecom_contact_secret
            changes["wecom_api_base"] = self.wecom_api_base or "https://qyapi.weixin.qq.com/cgi-bin/"
        if not changes:
            return self
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    @property
    def corp_id(self) -> str:
        return self.wecom_corp_id or SANDBOX_CORP_ID

    # Unset, these two follow the API base's rule: WeCom's own, or in sandbox mode the sandbox, which plays the
    # client too (its member picker, its JS-SDK stand-in).
    @property
    def oauth_url(self) -> str:
        """The OAuth2 authorize page in effect: WECOM_OAUTH_URL, else the sandbox's in sandbox mode, else WeCom's."""
        if self.wecom_oauth_url:
            return self.wecom_oauth_url
        return f"http://127.0.0.1:{self.sandbox_port}/connect/oauth2/authorize" if self.sandbox else WECOM_OAUTH_URL

    @property
    def jssdk_url(self) -> str:
        """The JS-SDK script in effect: WECOM_JSSDK_URL, else the sandbox's stand-in in sandbox mode, else WeCom's."""
        if self.wecom_jssdk_url:
            return self.wecom_jssdk_url
        return f"http://127.0.0.1:{self.sandbox_port}/sandbox/jssdk.js" if self.sandbox else WECOM_JSSDK_URL
