"""The offline WeCom: a fake API served on loopback and a simulator that sends real signed callbacks."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from bot.config import Settings
from bot.sandbox.api.app import create_fake_wecom
from bot.sandbox.corp import FakeCorp
from bot.sandbox.simulator import Simulator
from bot.wecom.crypto import CallbackCrypto

__all__ = ["FakeCorp", "Simulator", "corp_for", "create_fake_wecom", "serve_in_thread", "simulator_for"]


def corp_for(settings: Settings, **kwargs: Any) -> FakeCorp:
    """A fake corp whose credentials are the ones Siyu is configured with."""
    secrets_ = {settings.wecom_contact_secret or "": "contact", settings.wecom_agent_secret or "": "agent"}
    corp = FakeCorp(settings.corp_id, secrets_, **kwargs)
    corp.client.agents[settings.wecom_agent_id or 0] = "agent"  # the app whose sidebar and agentConfig Siyu uses
    return corp


def simulator_for(settings: Settings, corp: FakeCorp, webhook_url: str, **kwargs: Any) -> Simulator:
    crypto = CallbackCrypto(
        settings.wecom_callback_token or "", settings.wecom_callback_aes_key or "", settings.corp_id
    )
    return Simulator(corp, crypto, webhook_url, **kwargs)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """Serve a WSGI app from a daemon thread (port 0: any free port; see ``server.server_port``)."""
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"serve-{server.server_port}", daemon=True)
    thread.start()
    return server
