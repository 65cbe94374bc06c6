"""The sandbox's own pages under /sandbox/: fault injection, token expiry, a member confirming a mass send,
the simulator (customers adding, scanning codes, joining groups) and state dumps for tests and benchmarks."""

from __future__ import annotations

import io

import qrcode
from flask import Flask, Response, request

from bot.sandbox.api.endpoints import answer
from bot.sandbox.corp import LATE, TIMEOUT, ApiError, FakeCorp
from bot.sandbox.members import confirm_mass_task
from bot.sandbox.moments import post_moment, react_to_moment


def qr_png(url: str) -> Response:
    """A QR code of ``url`` as PNG: what WeCom's code images are, and what a scan opens."""
    image = qrcode.make(url, box_size=8, border=2)
    out = io.BytesIO()
    image.save(out)
    return Response(out.getvalue(), mimetype="image/png")


def add_controls(app: Flask) -> None:
    """The /sandbox/ routes on the fake API ``app`` (over ``app.config["CORP"]`` and ``["SIMULATOR"]``)."""

    def the_corp() -> FakeCorp:
        return app.config["CORP"]

    @app.post("/sandbox/faults")
    def faults() -> Response:
        data = request.get_json(force=True, silent=True) or {}
        try:
            seconds = float(data["seconds"]) if data.get("seconds") is not None else None
            named = {"timeout": TIMEOUT, "late": LATE}
            errcode = named[data["errcode"]] if data.get("errcode") in named else int(data["errcode"])
            the_corp().inject(str(data.get("endpoint", "*")), errcode, int(data.get("times", 1)), seconds)
        except (KeyError, TypeError, ValueError):
            return answer({"error": 'send {endpoint, errcode (or "timeout" or "late"), times or seconds}'}, 400)
        return answer({"ok": True})

    @app.post("/sandbox/expire-tokens")
    def expire_tokens() -> Response:
        the_corp().expire_tokens()
        return answer({"ok": True})

    @app.post("/sandbox/expire-tickets")
    def expire_tickets() -> Response:
        """Every JS-SDK ticket expires now: pages signed with them fail wx.config until Siyu fetches anew."""
        corp = the_corp()
        with corp.lock:
            corp.client.expire_tickets(corp.clock())
        return answer({"ok": True})

    @app.post("/sandbox/mass-tasks/<msgid>/confirm")
    def confirm(msgid: str) -> Response:
        if msgid not in the_corp().mass_tasks:
            return answer({"error": "unknown msgid"}, 404)
        task = confirm_mass_task(the_corp(), msgid)
        return answer({"msgid": msgid, "results": task.results})

    @app.post("/sandbox/moments/<moment_id>/post")
    def member_posts_moment(moment_id: str) -> Response:
        """A member posts a corp moment they were asked to ({userid}); their customers can see it now."""
        data = request.get_json(force=True, silent=True) or {}
        try:
            seen = post_moment(the_corp(), moment_id, str(data.get("userid", "")))
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg}, 400)
        return answer({"moment_id": moment_id, "seen": seen})

    @app.post("/sandbox/moments/<moment_id>/react")
    def customer_reacts(moment_id: str) -> Response:
        """{userid (whose post), who (an external_userid or a colleague's userid), kind: like | comment}."""
        data = request.get_json(force=True, silent=True) or {}
        kind = str(data.get("kind", "like"))
        if kind not in ("like", "comment"):
            return answer({"error": "kind is like or comment"}, 400)
        try:
            react_to_moment(the_corp(), moment_id, str(data.get("userid", "")), str(data.get("who", "")), kind)
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg}, 400)
        return answer({"ok": True})

    @app.post("/sandbox/simulate")
    def simulate() -> Response:
        """Drive the simulator: COUNT times ACTION (add, tag, delete), each a real callback to Siyu."""
        simulator = app.config["SIMULATOR"]
        if simulator is None:
            return answer({"error": "this sandbox has no simulator"}, 404)
        data = request.get_json(force=True, silent=True) or {}
        try:
            count = int(data.get("count", 1))
        except (TypeError, ValueError):
            count = 0
        if not 1 <= count <= 1000:
            return answer({"error": "count is a whole number from 1 to 1000"}, 400)
        action = str(data.get("action", "add"))
        if action not in ("add", "tag", "delete"):
            return answer({"error": "action is add, tag or delete"}, 400)
        state = str(data.get("state", ""))[:30]
        done = [simulator.act(action, state) for _ in range(count)]
        happened = [d for d in done if d is not None]
        acknowledged = sum(delivery.acknowledged for _, delivery in happened)
        return answer({"acknowledged": acknowledged, "count": len(happened), "action": action})

    @app.get("/sandbox/qr/<config_id>.png")
    def qr_image(config_id: str) -> Response:
        """The image behind a contact way's qr_code; scanning it (opening the URL) is a customer adding."""
        if config_id not in the_corp().contact_ways:
            return answer({"error": "unknown or deleted contact way"}, 404)
        return qr_png(f"{request.url_root}sandbox/scan/{config_id}")

    @app.get("/sandbox/join-qr/<config_id>.png")
    def join_qr_image(config_id: str) -> Response:
        """The image behind a join code's qr_code."""
        if config_id not in the_corp().join_ways:
            return answer({"error": "unknown or deleted join code"}, 404)
        return qr_png(f"{request.url_root}sandbox/join/{config_id}")

    @app.route("/sandbox/scan/<config_id>", methods=["GET", "POST"])
    def scan(config_id: str) -> Response:
        simulator = app.config["SIMULATOR"]
        if simulator is None:
            return answer({"error": "this sandbox has no simulator"}, 404)
        try:
            contact, delivery = simulator.scan(config_id)
        except KeyError:
            return answer({"error": "unknown or deleted contact way"}, 404)
        return answer({"customer": contact.name, "member": next(iter(contact.follows)), "statuses": delivery.statuses})

    @app.route("/sandbox/join/<config_id>", methods=["GET", "POST"])
    def join(config_id: str) -> Response:
        """Scanning a join code: a customer who is in none of its groups yet joins (?external_userid=
        picks who)."""
        simulator = app.config["SIMULATOR"]
        corp = the_corp()
        if simulator is None:
            return answer({"error": "this sandbox has no simulator"}, 404)
        with corp.lock:
            way = corp.join_ways.get(config_id)
            if way is None:
                return answer({"error": "unknown or deleted join code"}, 404)
            inside = {m for c in way["chat_id_list"] if c in corp.groups for m in corp.groups[c].members}
            outside = sorted(e for e in corp.contacts if e not in inside)
        external_userid = request.args.get("external_userid") or (simulator.rng.choice(outside) if outside else "")
        if external_userid not in corp.contacts:
            return answer({"error": "no customer to join"}, 404)
        try:
            group, deliveries = simulator.customer_scans_join_code(config_id, external_userid)
        except ApiError as exc:
            return answer({"errcode": exc.errcode, "errmsg": exc.errmsg}, 409)
        return answer(
            {"chat_id": group.chat_id, "external_userid": external_userid, "statuses": [d.statuses for d in deliveries]}
        )

    @app.get("/sandbox/welcome-log")
    def welcome_log() -> Response:
        """Every welcome code's accepted send time and how many times it was tried, for benchmarks."""
        corp = the_corp()
        with corp.lock:
            return answer({"sent_at": dict(corp.welcome_sent_at), "attempts": dict(corp.welcome_attempts)})

    @app.get("/sandbox/state")
    def state() -> Response:
        corp = the_corp()
        with corp.lock:
            return answer(
                {
                    "corp_id": corp.corp_id,
                    "departments": len(corp.departments),
                    "users": len(corp.users),
                    "contacts": len(corp.contacts),
                    "welcomes_sent": len(corp.welcomes_sent),
                    "app_messages": len(corp.app_messages),
                    "token_fetches": corp.token_fetches,
                    "ticket_fetches": dict(corp.client.ticket_fetches),
                    "chat_sends": len(corp.client.chat_sends),
                    "calls": len(corp.calls),
                    "mass_tasks": len(corp.mass_tasks),
                    "mass_recipients": sum(len(t.recipients) for t in corp.mass_tasks.values()),
                    "mass_unique_recipients": len({r for t in corp.mass_tasks.values() for r in t.recipients}),
                    "groups": sum(not g.dismissed for g in corp.groups.values()),
                    "join_ways": len(corp.join_ways),
                }
            )
