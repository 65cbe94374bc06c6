"""The yardstick: a Flask endpoint that answers an empty 200, served exactly like the webhook."""

from flask import Flask, Response

app = Flask(__name__)


@app.post("/wecom/callback")
def callback() -> Response:
    return Response("", status=200)
