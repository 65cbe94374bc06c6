"""The sandbox playing WeCom's browser side for the chat sidebar: the OAuth2 authorize page (a member picker),
the JS-SDK stand-in (/sandbox/jssdk.js) and the WeCom client page (/sandbox/client) that frames the sidebar and
answers the stand-in. Plain HTML, CSS and JS from ``bot/sandbox/pages/``: nothing loaded from elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from flask import Flask, Response, render_template_string, request

from bot.sandbox.api.endpoints import answer
from bot.sandbox.client import CHAT_ENTRIES, MEDIA_TTL, chat_send_problem, openid_of
from bot.sandbox.corp import FakeCorp

PAGES = Path(__file__).resolve().parent.parent / "pages"
#: what WeCom sends in ``state`` (doc 91022)
STATE_MAX_BYTES = 128


def _page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def authorize_problem(corp: FakeCorp, values: Any) -> tuple[str, int] | None:
    """Why WeCom would refuse this authorize request (its words for the page, and the errcode), or None."""
    if values.get("appid") != corp.corp_id:
        return f"appid 不是本企业的 CorpID（收到 {values.get('appid') or '空'}）", 40013
    if not _http_url(values.get("redirect_uri", "")):
        return "redirect_uri 缺失或不是 http(s) 地址", 40058
    if values.get("response_type") != "code":
        return "response_type 必须是 code", 40058
    if values.get("scope") not in ("snsapi_base", "snsapi_privateinfo"):
        return "scope 必须是 snsapi_base 或 snsapi_privateinfo", 40058
    agentid = values.get("agentid", "")
    if agentid and (not agentid.isdigit() or int(agentid) not in corp.client.agents):
        return f"agentid 不是本企业的应用（收到 {agentid}）", 40056
    if not agentid and values.get("scope") == "snsapi_privateinfo":
        return "snsapi_privateinfo 需要 agentid", 40058
    if len(values.get("state", "").encode()) > STATE_MAX_BYTES:
        return "state 超过 128 字节", 40058
    return None


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def add_client_pages(app: Flask) -> None:
    """The client's routes on the fake API ``app`` (over ``app.config["CORP"]``; ``["SIYU_URL"]`` is where the
    client page finds the sidebar, ``<SIYU_URL>sidebar/``, unless ``?frame=`` names another page)."""

    def the_corp() -> FakeCorp:
        return app.config["CORP"]

    # -- OAuth2 (doc 91022): the member picker stands for the client's silent snsapi_base --------------

    def members(corp: FakeCorp) -> list[dict[str, Any]]:
        return [corp.users[u] for u in sorted(corp.users)]

    @app.get("/connect/oauth2/authorize")
    def authorize() -> Response | str:
        corp = the_corp()
        with corp.lock:
            problem = authorize_problem(corp, request.args)
            if problem is not None:
                page = render_template_string(_page("authorize.html"), error=problem[0], errcode=problem[1])
                return Response(page, status=400, mimetype="text/html")
            guest = next(iter(corp.contacts.values()), None)
            return render_template_string(
                _page("authorize.html"),
                error=None,
                members=members(corp),
                guest=guest.name if guest else "访客",
                **{k: request.args.get(k, "") for k in ("appid", "redirect_uri", "state", "agentid")},
            )

    @app.post("/connect/oauth2/authorize")
    def authorize_pick() -> Response:
        corp = the_corp()
        values = {**request.form, "response_type": "code", "scope": "snsapi_base"}
        with corp.lock:
            problem = authorize_problem(corp, values)
            pick = request.form.get("pick", "")
            identity: dict[str, str]
            if problem is None and pick.startswith("member:") and pick[7:] in corp.users:
                identity = {"userid": pick[7:]}
            elif problem is None and pick == "guest":
                # A customer opening the app: WeCom names them by openid, and by external_userid when they
                # are a customer of a member the app can see (every member, here).
                guest = next(iter(corp.contacts), None)
                identity = {"openid": openid_of(guest or "guest")}
                if guest:
                    identity["external_userid"] = guest
            elif problem is None and pick.startswith("customer:") and pick[9:] in corp.contacts:
                # One customer in WeChat (a radar link of a mass send): named by openid and external_userid.
                identity = {"openid": openid_of(pick[9:]), "external_userid": pick[9:]}
            else:
                page = render_template_string(
                    _page("authorize.html"), error=problem[0] if problem else "请选择成员", errcode=40058
                )
                return Response(page, status=400, mimetype="text/html")
            agentid = int(values.get("agentid") or 0)
            code = corp.client.issue_code(identity, agentid, corp.clock())
        target = _with_query(values["redirect_uri"], code=code, state=values.get("state", ""))
        return Response(status=302, headers={"Location": target})

    # -- the JS-SDK stand-in and the checks the client makes for it (doc 90506) -----------------------

    @app.get("/sandbox/jssdk.js")
    def jssdk_js() -> Response:
        # The stand-in answers only messages from the sandbox's origin: the one it is served from.
        origin = request.host_url.rstrip("/")
        script = _page("jssdk.js").replace("__SANDBOX_ORIGIN__", json.dumps(origin))
        return Response(script, mimetype="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/sandbox/client.js", endpoint="sandbox_client_js")
    def client_js() -> Response:
        return Response(_page("client.js"), mimetype="text/javascript", headers={"Cache-Control": "no-store"})

    @app.post("/sandbox/jssdk/verify")
    def jssdk_verify() -> Response:
        """The client checking a page's wx.config or wx.agentConfig against the tickets WeCom issued."""
        # JSON only: a form posted from another site cannot reach it (its preflight is never answered).
        data = request.get_json(silent=True) if request.is_json else None
        if not isinstance(data, dict) or data.get("api") not in ("config", "agentConfig"):
            return answer({"error": "send JSON {api: config|agentConfig, corpid, agentid, url, ...}"}, 400)
        fields = {k: str(data.get(k, "")) for k in ("url", "nonceStr", "timestamp", "signature")}
        corp = the_corp()
        with corp.lock:
            if data.get("corpid") != corp.corp_id:
                return answer({"errcode": 40013, "errmsg": "invalid corpid"})
            agentid = str(data.get("agentid", ""))
            if data["api"] == "agentConfig" and not (agentid.isdigit() and int(agentid) in corp.client.agents):
                return answer({"errcode": 40056, "errmsg": "invalid agentid"})
            errcode = corp.client.check_signature(
                data["api"], int(agentid) if agentid.isdigit() else None, fields, corp.clock()
            )
        errmsg = {0: "ok", 40093: "invalid signature", 42012: "api ticket not available for this app"}[errcode]
        return answer({"errcode": errcode, "errmsg": errmsg})

    # -- the client page --------------------------------------------------------------------------

    @app.get("/sandbox/client")
    def client_page() -> str:
        corp = the_corp()
        member = request.args.get("member", "")
        chat = request.args.get("chat", "")
        siyu = app.config.get("SIYU_URL")
        frame = request.args.get("frame", "").strip() or (urljoin(siyu, "sidebar/") if siyu else "")
        problem = None
        context: dict[str, Any] | None = None
        title = ""
        with corp.lock:
            if member not in corp.users:
                member, chat = "", ""
            customers = [c for c in corp.contacts.values() if member in c.follows]
            groups = [g for g in corp.groups.values() if not g.dismissed and member in g.members]
            if member and chat:
                entry, external_userid, chat_id = "", "", ""
                if chat == "normal":
                    entry, title = "normal", "工作台"
                elif chat.startswith("single:") and any(c.external_userid == chat[7:] for c in customers):
                    entry, external_userid = "single_chat_tools", chat[7:]
                    title = f"与 {corp.contacts[external_userid].name} 的聊天"
                elif chat.startswith("group:") and any(g.chat_id == chat[6:] for g in groups):
                    entry, chat_id = "group_chat_tools", chat[6:]
                    title = f"群聊：{corp.groups[chat_id].name}"
                if not entry:
                    problem = "这个聊天不属于所选成员，请重新选择。"
                elif not _http_url(frame):
                    problem = "不知道工具栏页面在哪里：在上方填写它的地址（http(s)://…）。"
                else:
                    context = {
                        "userid": member,
                        "entry": entry,
                        "external_userid": external_userid,
                        "chat_id": chat_id,
                        "frame_origin": _origin(frame),
                        "corp_id": corp.corp_id,
                    }
            return render_template_string(
                _page("client.html"),
                members=members(corp),
                member=member,
                chat=chat,
                customers=customers,
                groups=groups,
                frame=frame,
                problem=problem,
                context=context,
                chat_title=title,
            )

    @app.get("/sandbox/chat-sends")
    def chat_sends() -> Response:
        """Every message members sent into chats with sendChatMessage, oldest first."""
        corp = the_corp()
        with corp.lock:
            return answer({"sends": list(corp.client.chat_sends)})

    @app.post("/sandbox/chat-sends")
    def chat_send() -> Response:
        """The client page reporting a sendChatMessage the member confirmed: recorded, or refused as WeCom
        would (an unknown or expired mediaid, a missing field, a page outside a chat)."""
        data = request.get_json(silent=True) if request.is_json else None
        if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
            return answer({"error": "send JSON {userid, entry, external_userid, chat_id, payload}"}, 400)
        corp = the_corp()
        args: dict[str, Any] = data["payload"]
        entry = str(data.get("entry", ""))
        with corp.lock:
            now = corp.clock()

            def media_ok(mediaid: str) -> bool:
                uploaded = corp.media_uploaded_at.get(mediaid)
                return uploaded is not None and now - uploaded < MEDIA_TTL

            problem = chat_send_problem(entry, args, media_ok)
            userid = str(data.get("userid", ""))
            if problem is None and userid not in corp.users:
                problem = "unknown member"
            if problem is not None:
                return answer({"err_msg": f"sendChatMessage:fail {problem}"})
            corp.client.chat_sends.append(
                {
                    "userid": userid,
                    "entry": entry,
                    "external_userid": str(data.get("external_userid") or "") if entry == CHAT_ENTRIES[0] else "",
                    "chat_id": str(data.get("chat_id") or "") if entry == CHAT_ENTRIES[1] else "",
                    "msgtype": args["msgtype"],
                    "payload": args,
                    "sent_at": now,
                }
            )
        return answer({"err_msg": "sendChatMessage:ok"})
