"""The WeCom API client: wechatpy's enterprise client with the fixes Siyu needs.

What changes against wechatpy 1.8.18 (its own client, read in its source):
- the access token lives in Redis, shared by every process, and one process refreshes it at a time
  (a Redis lock; the others wait and read the new token) instead of a per-process ``expires_at``;
- the token fetch honours ``api_base`` and the HTTP timeout (wechatpy hard-codes the host, no timeout);
- 40014/42001/41001 refresh the token and retry exactly once (wechatpy recurses without a cap);
- -1 and 45033 back off and retry a few times; 45009 closes the API for every process until the
  window ends and raises ``RateLimited`` so the caller's job is rescheduled, not slept;
- every call is counted against a per-API budget (``CallBudget``);
- every WeCom error is raised as a typed exception from ``bot.wecom.errors``;
- the JS-SDK tickets are cached in Redis for every process, like the token (``bot.wecom.tickets``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
from wechatpy.enterprise import WeChatClient
from wechatpy.session.redisstorage import RedisStorage

from bot.wecom.budget import BudgetExhausted, CallBudget
from bot.wecom.errors import (
    ConcurrencyLimited,
    DownloadFailed,
    RateLimited,
    SystemBusy,
    TokenInvalid,
    WeComError,
    WeComUnavailable,
)
from bot.wecom.handover import HandoverCalls
from bot.wecom.moments import MomentCalls
from bot.wecom.tickets import cached_ticket

log = logging.getLogger(__name__)

#: seconds before WeCom's own expiry at which a cached token is considered stale
TOKEN_MARGIN = 300
#: backoff schedule for -1 (system busy) and 45033 (concurrency), in seconds
BUSY_BACKOFF = (0.2, 0.8, 2.0)
#: where WeCom serves the images its answers link to (contact ways' and join codes' ``qr_code``)
WECOM_IMAGE_HOSTS = (".qpic.cn", ".qq.com")
#: how long a process reuses the shared token before reading Redis again
LOCAL_TOKEN_SECONDS = 10.0


#: connections kept to WeCom per process (a mass send calls up to 128 members' chunks side by side)
POOL_SIZE = 128


class CallObserver:
    """How the app sees the client's traffic (it installs one that counts calls for its metrics); this
    library keeps no counters of its own. The base observes nothing."""

    def call(self, endpoint: str, outcome: str) -> None:
        """An API call ended: ``outcome`` is WeCom's errcode ("0" for success) or "unavailable"."""

    def call_time(self, endpoint: str, seconds: float) -> None:
        """An API call took ``seconds``, whatever its outcome."""

    def token_fetch(self, outcome: str) -> None:
        """``gettoken`` was asked: its errcode or "unavailable"."""

    def ticket_fetch(self, kind: str, outcome: str) -> None:
        """A JS-SDK ticket (``kind``: "jsapi" or "agent_config") was asked: its errcode or "unavailable"."""


# wechatpy ships no type information: its client is Any to mypy.
class WeComClient(HandoverCalls, MomentCalls, WeChatClient):  # type: ignore[misc]
    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        api_base: str,
        redis: Any,
        timeout: float = 10.0,
        budget: CallBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        observer: CallObserver | None = None,
    ) -> None:
        super().__init__(
            corp_id, secret, session=RedisStorage(redis, prefix="siyu:wecom"), timeout=timeout, auto_retry=False
        )
        self.API_BASE_URL = api_base
        # Welcomes and a mass send's waves of add_msg_template go out side by side from one process: room
        # for that many connections to WeCom (POOL_SIZE), kept rather than opened again for every call.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        self._http.mount("https://", adapter)
        self._http.mount("http://", adapter)
        if not getproxies():
            # No proxy in the environment: spare requests from looking for one on every call.
            self._http.trust_env = False
        self.redis = redis
        self.budget = budget or CallBudget(redis, per_minute=9000)
        self.sleep = sleep
        self.observer = observer or CallObserver()
        self._local_token: tuple[str, float] | None = None
        # tokens WeCom refused, never cached or handed out again by this client: a thread that read the token
        # just before another dropped it would otherwise put it back in the local cache, and a call's one
        # retry would meet it again (40014 on a mass send's side-by-side calls)
        self._refused: deque[str] = deque(maxlen=8)

    # -- access token ---------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        # A few seconds' memory of the shared token spares a Redis round trip per call under load; a
        # refused token is forgotten here too (_drop_token), so a revoked one is not reused.
        cached = self._local_token
        if cached is not None and time.monotonic() < cached[1] and cached[0] not in self._refused:
            return cached[0]
        token = self.session.get(self.access_token_key)
        if token and str(token) not in self._refused:
            self._local_token = (str(token), time.monotonic() + LOCAL_TOKEN_SECONDS)
            return str(token)
        lock = self.redis.lock(f"siyu:wecom:token-lock:{self.access_token_key}", timeout=30, blocking_timeout=30)
        with lock:
            # Another process may have refreshed while we waited for the lock.
            token = self.session.get(self.access_token_key)
            if token and str(token) not in self._refused:
                return str(token)
            fetched: str = self.fetch_access_token()["access_token"]
            # gettoken's answer is the word on it: WeCom hands out the same token while it lives, so one
            # refused on a hiccup is good again (else every call would fetch it anew for its lifetime)
            with suppress(ValueError):
                self._refused.remove(fetched)
            return fetched

    def fetch_access_token(self) -> dict[str, Any]:
        """GET gettoken (doc path/91039): one token per secret, cached for its lifetime less a margin."""
        url = self.API_BASE_URL + "gettoken"
        log.info("fetching a WeCom access token for corp %s", self.corp_id)
        try:
            res = self._http.get(url, params={"corpid": self.corp_id, "corpsecret": self.secret}, timeout=self.timeout)
            res.raise_for_status()
            result: dict[str, Any] = res.json()
        except (requests.RequestException, ValueError) as exc:
            self.observer.token_fetch("unavailable")
            raise WeComUnavailable(None, type(exc).__name__, "gettoken") from exc
        errcode = int(result.get("errcode", 0) or 0)
        self.observer.token_fetch(str(errcode))
        if errcode:
            raise WeComError.for_code(errcode, result.get("errmsg", ""), "gettoken")
        expires_in = int(result.get("expires_in", 7200))
        self.session.set(self.access_token_key, result["access_token"], max(60, expires_in - TOKEN_MARGIN))
        return result

    def _drop_token(self, stale: str) -> None:
        """Forget the cached token if it is still the one WeCom refused (another process may have renewed it)."""
        self._refused.append(stale)
        self._local_token = None
        key = self.session.key_name(self.access_token_key)

        def drop(pipe: Any) -> None:
            current = pipe.get(key)
            if current is not None and json.loads(current) == stale:
                pipe.multi()
                pipe.delete(key)

        self.redis.transaction(drop, key)

    # -- the chat sidebar: JS-SDK tickets and the member's identity (WeCom doc 90506, 91023) ----------

    def jsapi_ticket(self) -> str:
        """get_jsapi_ticket (WeCom doc 90506): the corp's ticket, which signs ``wx.config``."""
        return self._ticket("jsapi", lambda: self._get_json("get_jsapi_ticket", {}))

    def agent_config_ticket(self) -> str:
        """ticket/get?type=agent_config (WeCom doc 90506): the app's ticket, which signs ``wx.agentConfig``.
        WeCom issues it for the app whose secret made the access token: ask the sidebar's app client."""
        return self._ticket("agent_config", lambda: self._get_json("ticket/get", {"type": "agent_config"}))

    def _ticket(self, kind: str, fetch: Callable[[], dict[str, Any]]) -> str:
        # Keyed like the token (corp id and the secret's first characters): each app has its own tickets.
        key = f"siyu:wecom:ticket:{kind}:{self.access_token_key}"
        return cached_ticket(self.redis, key, fetch, lambda outcome: self.observer.ticket_fetch(kind, outcome))

    def user_info(self, code: str) -> dict[str, Any]:
        """auth/getuserinfo (WeCom doc 91023): who opened the page, from the ``code`` of an OAuth2 redirect.

        A member: ``{"userid": …}``; anyone else: ``{"openid": …}``, with ``external_userid`` when they are a
        customer of a member the app can see. A code is good once, for 5 minutes: a used, expired or unknown
        one raises ``OAuthCodeInvalid`` (40029)."""
        answer = self._get_json("auth/getuserinfo", {"code": code})
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}

    # -- requests -------------------------------------------------------------------------------

    def _endpoint_name(self, url: str) -> str:
        path = urlsplit(url).path if url.startswith("http") else url
        marker = "/cgi-bin/"
        return path.split(marker, 1)[1] if marker in path else path.lstrip("/")

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        url = url_or_endpoint
        if not url.startswith(("http://", "https://")):
            url = kwargs.pop("api_base_url", self.API_BASE_URL) + url
        endpoint = self._endpoint_name(url)
        params = dict(kwargs.pop("params", None) or {})
        data = kwargs.pop("data", None)
        if isinstance(data, dict):
            data = json.dumps(data, ensure_ascii=False).encode()
        result_processor = kwargs.pop("result_processor", None)
        kwargs.pop("timeout", None)

        token_retried = False
        busy_attempt = 0
        while True:
            try:
                self.budget.take(endpoint)
            except BudgetExhausted as exc:
                raise RateLimited(45009, "client-side budget spent", endpoint, retry_after=exc.retry_after) from exc
            token = self.access_token
            started = time.perf_counter()
            try:
                res = self._http.request(
                    method, url, params={**params, "access_token": token}, data=data, timeout=self.timeout, **kwargs
                )
                res.raise_for_status()
                result = res.json()
            except (requests.RequestException, ValueError) as exc:
                self.observer.call(endpoint, "unavailable")
                raise WeComUnavailable(None, type(exc).__name__, endpoint) from exc
            finally:
                self.observer.call_time(endpoint, time.perf_counter() - started)
            if not isinstance(result, dict):
                self.observer.call(endpoint, "unavailable")
                raise WeComUnavailable(None, "answer is not a JSON object", endpoint)
            errcode = int(result.get("errcode", 0) or 0)
            self.observer.call(endpoint, str(errcode))
            if errcode == 0:
                return result_processor(result) if result_processor else result
            error = WeComError.for_code(errcode, str(result.get("errmsg", "")), endpoint)
            if isinstance(error, TokenInvalid) and not token_retried:
                token_retried = True
                log.info("WeCom refused the access token on %s (errcode %s); refreshing once", endpoint, errcode)
                self._drop_token(token)
                continue
            if isinstance(error, SystemBusy | ConcurrencyLimited) and busy_attempt < len(BUSY_BACKOFF):
                delay = BUSY_BACKOFF[busy_attempt]
                busy_attempt += 1
                log.warning("WeCom %s answered %s; retrying in %.1fs", endpoint, errcode, delay)
                self.sleep(delay)
                continue
            if isinstance(error, RateLimited):
                wait = self.budget.seconds_to_window_end()
                self.budget.block(endpoint, wait)
                error.retry_after = wait
            raise error

    def _get_json(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET ``endpoint`` through ``_request``: WeCom's answer, a JSON object (checked there)."""
        answer: dict[str, Any] = self.get(endpoint, params=params)
        return answer

    def _post_json(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        """POST ``endpoint`` through ``_request``: WeCom's answer, a JSON object (checked there)."""
        answer: dict[str, Any] = self.post(endpoint, data=data)
        return answer

    # -- endpoints wechatpy 1.8.18's ``wechatpy.enterprise`` lacks or gets wrong -------------------------

    def get_external_contact(self, external_userid: str) -> dict[str, Any]:
        """externalcontact/get (doc path/92114), following ``next_cursor`` past 500 followers."""
        cursor = ""
        merged: dict[str, Any] | None = None
        while True:
            params = {"external_userid": external_userid}
            if cursor:
                params["cursor"] = cursor
            page = self.get("externalcontact/get", params=params)
            if merged is None:
                merged = page
            else:
                merged.setdefault("follow_user", []).extend(page.get("follow_user", []))
            cursor = page.get("next_cursor", "")
            if not cursor:
                return merged

    def list_departments(self) -> list[dict[str, Any]]:
        """department/list (doc path/90208): every department the app can see; departments are stores."""
        return list(self.get("department/list").get("department", []))

    def list_department_users(self, department_id: int) -> list[dict[str, Any]]:
        """user/list (doc path/90201) for one department, without its children."""
        result = self.get("user/list", params={"department_id": department_id, "fetch_child": 0})
        return list(result.get("userlist", []))

    def get_corp_tags(self, tag_ids: list[str] | None = None, group_ids: list[str] | None = None) -> list[Any]:
        """externalcontact/get_corp_tag_list (doc path/92117); group_id filtering is missing in wechatpy."""
        body: dict[str, Any] = {}
        if tag_ids:
            body["tag_id"] = tag_ids
        if group_ids:
            body["group_id"] = group_ids
        return list(self.post("externalcontact/get_corp_tag_list", data=body).get("tag_group", []))

    def send_welcome_msg(self, payload: dict[str, Any]) -> dict[str, Any]:
        """externalcontact/send_welcome_msg (doc path/92599): within 20 s of the event, once per code."""
        return self._post_json("externalcontact/send_welcome_msg", data=payload)

    def send_app_text(
        self, agent_id: int, userids: list[str], content: str, *, dedupe_seconds: int | None = None
    ) -> dict[str, Any]:
        """message/send (doc path/90236) as plain text to members.

        ``dedupe_seconds``: WeCom drops the same content to the same members within that window
        (enable_duplicate_check, ≤ 4 h), so a retried job does not message anyone twice.
        """
        body: dict[str, Any] = {
            "touser": "|".join(userids),
            "msgtype": "text",
            "agentid": agent_id,
            "text": {"content": content},
        }
        if dedupe_seconds:
            body.update(enable_duplicate_check=1, duplicate_check_interval=min(dedupe_seconds, 4 * 3600))
        return self._post_json("message/send", data=body)

    def send_app_card(
        self, agent_id: int, userids: list[str], card: dict[str, str], *, dedupe_seconds: int = 4 * 3600
    ) -> dict[str, Any]:
        """message/send as a textcard (title ≤ 128 B, description ≤ 512 B, url, btntxt ≤ 4 characters),
        with WeCom's duplicate check: the same card to the same members within the window is dropped."""
        body: dict[str, Any] = {
            "touser": "|".join(userids),
            "msgtype": "textcard",
            "agentid": agent_id,
            "textcard": card,
            "enable_duplicate_check": 1,
            "duplicate_check_interval": min(dedupe_seconds, 4 * 3600),
        }
        return self._post_json("message/send", data=body)

    def add_contact_way(self, body: dict[str, Any]) -> dict[str, Any]:
        """externalcontact/add_contact_way (doc path/92228): a 「联系我」 code; returns config_id and qr_code."""
        return self._post_json("externalcontact/add_contact_way", data=body)

    def update_contact_way(self, body: dict[str, Any]) -> dict[str, Any]:
        """externalcontact/update_contact_way: the fields given overwrite the code's."""
        return self._post_json("externalcontact/update_contact_way", data=body)

    def del_contact_way(self, config_id: str) -> dict[str, Any]:
        return self._post_json("externalcontact/del_contact_way", data={"config_id": config_id})

    def mark_tags(self, userid: str, external_userid: str, add: list[str], remove: list[str] | None = None) -> None:
        """externalcontact/mark_tag (doc path/92118); WeCom sends no callback for it."""
        body = {"userid": userid, "external_userid": external_userid, "add_tag": add, "remove_tag": remove or []}
        self.post("externalcontact/mark_tag", data=body)

    def set_remark(self, userid: str, external_userid: str, remark: str) -> None:
        """externalcontact/remark (WeCom doc 96316): the member's remark on the customer, ≤ 20 characters."""
        body = {"userid": userid, "external_userid": external_userid, "remark": remark[:20]}
        self.post("externalcontact/remark", data=body)

    def get_customers_by_members(self, userids: list[str], cursor: str = "", limit: int = 100) -> dict[str, Any]:
        """externalcontact/batch/get_by_user (doc path/96316): one page for ≤ 100 members; ``next_cursor``."""
        body: dict[str, Any] = {"userid_list": userids, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        return dict(self.post("externalcontact/batch/get_by_user", data=body))

    def upload_image(self, filename: str, content: bytes) -> str:
        """media/upload?type=image (doc path/90253): a media id valid for 3 days."""
        return self.upload_media("image", filename, content, "image/png")

    def upload_media(self, kind: str, filename: str, content: bytes, mimetype: str) -> str:
        """media/upload (doc path/90253) of an image, video or file: a media id valid for 3 days."""
        result = self.post("media/upload", params={"type": kind}, files={"media": (filename, content, mimetype)})
        return str(result["media_id"])

    # -- enterprise mass messages (WeCom doc 92135) -------------------------------

    def add_msg_template(self, body: dict[str, Any]) -> dict[str, Any]:
        """externalcontact/add_msg_template: creates a task the sender must confirm; ``msgid``, ``fail_list``."""
        return dict(self.post("externalcontact/add_msg_template", data=body))

    def _pages(self, path: str, body: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
        cursor = ""
        while True:
            page = self.post(path, data={**body, "cursor": cursor} if cursor else body)
            yield from page.get(key) or []
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return

    def list_group_msgs(
        self, start: int, end: int, creator: str = "", chat_type: str = "single"
    ) -> Iterator[dict[str, Any]]:
        """get_groupmsg_list_v2 (获取群发记录列表): the corp's mass messages created in [start, end] (≤ 1 month),
        with their text and attachments. ``creator`` filters by who made a message in the admin console: a
        message made through the API has none (the field is not returned), so such a filter never finds it."""
        body: dict[str, Any] = {"chat_type": chat_type, "start_time": start, "end_time": end, "limit": 100}
        if creator:
            body["creator"] = creator
        body["filter_type"] = 0  # made by the corp (API or admin), not by members themselves
        return self._pages("externalcontact/get_groupmsg_list_v2", body, "group_msg_list")

    def get_groupmsg_task(self, msgid: str) -> Iterator[dict[str, Any]]:
        """get_groupmsg_task: per member, status 0 not sent / 2 sent, and send_time."""
        return self._pages("externalcontact/get_groupmsg_task", {"msgid": msgid, "limit": 1000}, "task_list")

    def get_groupmsg_send_result(self, msgid: str, userid: str) -> Iterator[dict[str, Any]]:
        """get_groupmsg_send_result: per customer, status 0 not sent / 1 sent / 2 not a friend / 3 over the cap."""
        body = {"msgid": msgid, "userid": userid, "limit": 1000}
        return self._pages("externalcontact/get_groupmsg_send_result", body, "send_list")

    def remind_groupmsg_send(self, msgid: str) -> None:
        """Notify the member again; WeCom allows 3 reminders per task per 24 h."""
        self.post("externalcontact/remind_groupmsg_send", data={"msgid": msgid})

    def cancel_groupmsg_send(self, msgid: str) -> None:
        """Stop what the member has not sent yet; delivered messages stay."""
        self.post("externalcontact/cancel_groupmsg_send", data={"msgid": msgid})

    # -- customer groups and group-join codes (WeCom doc 92120, 92122, 92229) ------------------------------

    def list_group_chats(
        self, owners: list[str] | None = None, limit: int = 1000, *, status: int = 0
    ) -> Iterator[dict[str, Any]]:
        """groupchat/list (doc path/92120): ``{chat_id, status}`` of every group, of ``owners`` (≤ 100) when
        given; without an owner filter WeCom refuses corps with over 1000 visible members (81017).
        ``status`` filters: 0 every group, 1 owner resigned (awaiting 离职继承), 2 being inherited, 3 inherited;
        resigned owners may be named in the owner filter."""
        body: dict[str, Any] = {"status_filter": status, "limit": limit}
        if owners:
            body["owner_filter"] = {"userid_list": owners}
        return self._pages("externalcontact/groupchat/list", body, "group_chat_list")

    def get_group_chat(self, chat_id: str) -> dict[str, Any]:
        """groupchat/get (doc path/92122) with members' names: name, owner, notice, member_list, admin_list."""
        result = self.post("externalcontact/groupchat/get", data={"chat_id": chat_id, "need_name": 1})
        return dict(result.get("group_chat") or {})

    def add_join_way(self, body: dict[str, Any]) -> str:
        """groupchat/add_join_way (doc path/92229): a join code for ≤ 5 groups; returns its config_id."""
        return str(self.post("externalcontact/groupchat/add_join_way", data=body)["config_id"])

    def get_join_way(self, config_id: str) -> dict[str, Any]:
        """groupchat/get_join_way: the code as WeCom keeps it, with its ``qr_code`` URL."""
        result = self.post("externalcontact/groupchat/get_join_way", data={"config_id": config_id})
        return dict(result.get("join_way") or {})

    def update_join_way(self, body: dict[str, Any]) -> None:
        """groupchat/update_join_way: overwrites every field of the code (send them all)."""
        self.post("externalcontact/groupchat/update_join_way", data=body)

    def del_join_way(self, config_id: str) -> None:
        self.post("externalcontact/groupchat/del_join_way", data={"config_id": config_id})

    def send_app_image(self, agent_id: int, userids: list[str], media_id: str) -> dict[str, Any]:
        """message/send with an image to members (doc path/90236)."""
        body = {"touser": "|".join(userids), "msgtype": "image", "agentid": agent_id, "image": {"media_id": media_id}}
        return self._post_json("message/send", data=body)

    def download(self, url: str, max_bytes: int = 2 * 1024 * 1024) -> bytes:
        """An image WeCom serves by URL (a contact way's ``qr_code``), with the client's timeout and a size cap.

        Only from WeCom's image hosts (or the API's own host, where the sandbox serves them), and without
        following redirects: the URL comes from an API answer, and Siyu must not become a fetcher of
        whatever address it names."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not (
            parts.netloc == urlsplit(self.API_BASE_URL).netloc or host.endswith(WECOM_IMAGE_HOSTS)
        ):
            raise DownloadFailed(None, f"{host or url[:40]} is not one of WeCom's image hosts", "download")
        try:
            with self._http.get(url, timeout=self.timeout, stream=True, allow_redirects=False) as res:
                if res.is_redirect:
                    raise DownloadFailed(None, f"{host} answered a redirect (HTTP {res.status_code})", "download")
                if res.status_code != 200:
                    raise DownloadFailed(None, f"{host} answered HTTP {res.status_code}", "download")
                content = res.raw.read(max_bytes + 1, decode_content=True)
        except requests.RequestException as exc:
            raise DownloadFailed(None, f"{host} could not be reached ({type(exc).__name__})", "download") from exc
        if len(content) > max_bytes:
            raise DownloadFailed(None, f"the image is over {max_bytes // 1024} KiB", "download")
        return bytes(content)
