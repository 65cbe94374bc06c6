"""The WeCom clients and callback crypto of this app, built once per process from its settings."""

from __future__ import annotations

from flask import current_app

from bot.config import Settings
from bot.extensions import redis_conn
from bot.metrics import TICKET_FETCHES, TOKEN_FETCHES, WECOM_CALLS, WECOM_SECONDS
from bot.wecom import CallbackCrypto, WeComClient
from bot.wecom.budget import CallBudget
from bot.wecom.client import CallObserver


class _Metrics(CallObserver):
    """The client's traffic in this process's Prometheus counters."""

    def call(self, endpoint: str, outcome: str) -> None:
        WECOM_CALLS.labels(endpoint, outcome).inc()

    def call_time(self, endpoint: str, seconds: float) -> None:
        WECOM_SECONDS.labels(endpoint).observe(seconds)

    def token_fetch(self, outcome: str) -> None:
        TOKEN_FETCHES.labels(outcome).inc()

    def ticket_fetch(self, kind: str, outcome: str) -> None:
        TICKET_FETCHES.labels(kind, outcome).inc()


def settings() -> Settings:
    configured: Settings = current_app.config["SIYU"]
    return configured


def _client(secret: str) -> WeComClient:
    cache: dict[str, WeComClient] = current_app.extensions.setdefault("siyu.wecom_clients", {})
    client = cache.get(secret)
    if client is None:
        s = settings()
        budget = CallBudget(redis_conn.client, per_minute=s.wecom_budget_per_minute)
        client = WeComClient(
            s.corp_id,
            secret,
            api_base=s.wecom_api_base or "",
            redis=redis_conn.client,
            timeout=s.wecom_timeout,
            budget=budget,
            observer=_Metrics(),
        )
        cache[secret] = client
    return client


def contact_api() -> WeComClient:
    """The client for 客户联系 (externalcontact/*) and the directory."""
    return _client(settings().wecom_contact_secret or "")


def agent_api() -> WeComClient:
    """The client of Siyu's own app: app messages to members (message/send), and the chat sidebar's JS-SDK
    tickets and OAuth2 identity (the agent_config ticket must come from the app's own secret)."""
    return _client(settings().wecom_agent_secret or "")


def agent_id() -> int:
    """The app's AgentId for message/send (always set once settings are complete; the sandbox has its own)."""
    return settings().wecom_agent_id or 0


def callback_crypto() -> CallbackCrypto:
    crypto = current_app.extensions.get("siyu.crypto")
    if crypto is None:
        s = settings()
        crypto = CallbackCrypto(
            s.wecom_callback_token or "", s.wecom_callback_aes_key or "", s.corp_id, max_age=s.callback_max_age
        )
        current_app.extensions["siyu.crypto"] = crypto
    return crypto
