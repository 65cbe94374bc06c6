"""The fake WeCom HTTP API: the endpoints Siyu calls, answering as WeCom documents them.

Served on loopback (``flask --app wsgi sandbox``, or a thread of ``flask --app wsgi dev`` and of the
tests). Each family of WeCom's API is a module beside this one (directory, customers, mass, groups, media, moments,
jssdk), with its table of endpoints; test and operator controls live under ``/sandbox/`` (controls: faults,
token expiry, state dumps), and WeCom's browser side for the chat sidebar beside them (client_pages: the
OAuth2 member picker, the JS-SDK stand-in, the client page).
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from flask import Flask, Response, request

from bot.sandbox.api import customers, directory, groups, handover, jssdk, mass, media, moments, onjob
from bot.sandbox.api.client_pages import add_client_pages
from bot.sandbox.api.controls import add_controls
from bot.sandbox.api.endpoints import Body, Endpoint, answer
from bot.sandbox.api.receiver_pages import add_receiver
from bot.sandbox.corp import LATE, TIMEOUT, TIMEOUT_SECONDS, ApiError, FakeCorp
from bot.sandbox.simulator import Simulator


def _every_endpoint(*families: dict[str, Endpoint]) -> dict[str, Endpoint]:
    table: dict[str, Endpoint] = {}
    for family in families:
        if twice := table.keys() & family.keys():
            raise ValueError(f"endpoints served by two families: {sorted(twice)}")
        table.update(family)
    return table


#: every endpoint the sandbox implements, by its path under /cgi-bin/
ENDPOINTS = _every_endpoint(
    directory.ENDPOINTS,
    customers.ENDPOINTS,
    mass.ENDPOINTS,
    groups.ENDPOINTS,
    handover.ENDPOINTS,
    onjob.ENDPOINTS,
    media.ENDPOINTS,
    moments.ENDPOINTS,
    jssdk.ENDPOINTS,
)


def create_fake_wecom(corp: FakeCorp, simulator: Simulator | None = None, *, siyu_url: str | None = None) -> Flask:
    """The fake API over ``corp``; tests may swap ``app.config["CORP"]``/``["SIMULATOR"]`` between runs.

    ``siyu_url``: where Siyu is served (``http://127.0.0.1:5000/``), for the client page to open its sidebar;
    by default the origin of the simulator's webhook."""
    app = Flask("siyu-sandbox")
    if siyu_url is None and simulator is not None:
        parts = urlsplit(simulator.webhook_url)
        siyu_url = f"{parts.scheme}://{parts.netloc}/"
    app.config.update(CORP=corp, SIMULATOR=simulator, SIYU_URL=siyu_url)

    def the_corp() -> FakeCorp:
        return app.config["CORP"]

    @app.get("/cgi-bin/gettoken")
    def gettoken() -> Response:
        try:
            return answer(the_corp().issue_token(request.args.get("corpid", ""), request.args.get("corpsecret", "")))
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg})

    @app.route("/cgi-bin/<path:path>", methods=["GET", "POST"])
    def api(path: str) -> Response:
        corp = the_corp()
        func = ENDPOINTS.get(path)
        if func is None:
            return answer({"errcode": 40078, "errmsg": f"sandbox does not implement {path}"})
        with corp.lock:
            corp.calls.append(path)
        try:
            corp.check_token(request.args.get("access_token"))
            fault = corp.take_fault(path)
            if fault == TIMEOUT:
                time.sleep(TIMEOUT_SECONDS)  # the caller gave up long ago
                return Response("too late", status=504)
            if fault == 500:
                return Response("upstream error", status=500)
            if fault is not None and fault != LATE:
                raise ApiError(fault, "injected by the sandbox")
            # GET endpoints take their parameters from the query, POST endpoints from the JSON body.
            body: Body = {k: v for k, v in request.args.items() if k != "access_token"}
            if request.method == "POST" and not request.files:
                try:
                    body = json.loads(request.get_data() or b"{}")
                except ValueError:
                    raise ApiError(47001, "data format error") from None
                if not isinstance(body, dict):
                    raise ApiError(47001, "data format error")
            with corp.lock:
                result = func(corp, body)
            if fault == LATE:
                time.sleep(TIMEOUT_SECONDS)  # done, but the caller gave up waiting for the answer
            hold = corp.take_hold(path)
            if hold is not None:
                hold.reached.set()
                hold.release.wait(120)
            return answer(result)
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg})

    add_controls(app)
    add_client_pages(app)
    add_receiver(app)
    return app
