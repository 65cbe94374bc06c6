"""The brand's system, played by the sandbox: a webhook receiver at ``/sandbox/webhook-receiver`` that the
demo corp's endpoint points at. It verifies each delivery with the secret it was told (as a brand's operator
pastes the secret the panel showed once) and lists what it got (GET, JSON)."""

from __future__ import annotations

import json

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

from bot.sandbox.receiver import WebhookReceiver


def add_receiver(app: Flask) -> None:
    receiver = WebhookReceiver(keep=1000)
    app.config["WEBHOOK_RECEIVER"] = receiver

    @app.route("/sandbox/webhook-receiver", methods=["GET", "POST"])
    def webhook_receiver() -> ResponseReturnValue:
        return receiver.respond(request)

    @app.post("/sandbox/webhook-receiver/secret")
    def webhook_receiver_secret() -> Response:
        secret = str((request.get_json(silent=True) or {}).get("secret") or "")
        if not secret.startswith("whsec_") or len(secret) > 128:
            return Response(json.dumps({"error": "a whsec_… secret is needed"}), 400, mimetype="application/json")
        receiver.secrets = [*receiver.secrets[-1:], secret]  # the previous one too, as during a rotation
        return Response(json.dumps({"secrets": len(receiver.secrets)}), mimetype="application/json")
