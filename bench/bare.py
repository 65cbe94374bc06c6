"""The yardsticks: a Flask endpoint that answers an empty 200 (served exactly like the webhook) and a bare
redirect (served exactly like the radar links)."""

from flask import Flask, Response

app = Flask(__name__)


@app.post("/wecom/callback")
def callback() -> Response:
    return Response("", status=200)


@app.get("/r/<token>")
def redirect_link(token: str) -> Response:
    """The radar benchmark's yardstick: a redirect to a fixed URL, nothing looked up or recorded."""
    return Response("", status=302, headers={"Location": "https://shop.example.com/autumn"})
