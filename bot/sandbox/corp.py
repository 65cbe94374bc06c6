"""The state of the fake corp and WeCom's rules over it, in memory and thread-safe.

Rules follow WeCom's documentation: access tokens expire (42001) and can be revoked early (40014); a welcome
code is valid 20 s and usable once (41050 expired or unknown, 41051 already used); mass-send tasks
wait for the member to confirm; each customer receives a limited number of corp mass messages per
period (status 3 beyond it); faults (45009, -1, 45033, HTTP 500) can be injected per endpoint.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.client import ClientState


class ApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


#: a fault's errcode meaning "answer nothing for TIMEOUT_SECONDS" (the caller's timeout runs out)
TIMEOUT = -408
#: a fault's errcode meaning "carry the call out, then answer only after TIMEOUT_SECONDS" (an answer lost)
LATE = -504
TIMEOUT_SECONDS = 15.0


@dataclass
class Fault:
    endpoint: str  # "*" for every endpoint but gettoken
    errcode: int  # a WeCom errcode, 500 for an HTTP 500 answer, TIMEOUT or LATE
    remaining: int
    until: float | None = None  # wall-clock end of a timed fault (every call until then; remaining unused)

    def active(self, now: float) -> bool:
        return now < self.until if self.until is not None else self.remaining > 0


@dataclass
class Hold:
    """A call that WeCom carries out and then answers late (or never, if the caller dies meanwhile)."""

    endpoint: str
    skip: int  # calls answered at once before the held one
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Follow:
    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    add_way: int = 1  # 1: scanned a QR code
    state: str = ""
    oper_userid: str = ""
    tag_ids: list[str] = field(default_factory=list)
    remark_mobiles: list[str] = field(default_factory=list)  # numbers the member typed in (doc 92114)
    deleted_by_customer: bool = False  # WeCom keeps listing the relation, one-sided


@dataclass
class Contact:
    external_userid: str
    name: str
    gender: int
    avatar: str = ""
    type: int = 1
    unionid: str = ""
    follows: dict[str, Follow] = field(default_factory=dict)
    # the customer's phone: WeCom never tells it, a member may type it into remark_mobiles
    mobile: str = ""


@dataclass
class WelcomeCode:
    code: str
    issued_at: float
    used: bool = False


@dataclass
class MassTask:
    msgid: str
    sender: str
    recipients: list[str]
    payload: dict[str, Any]
    created_at: float
    confirmed: bool = False
    confirmed_at: float = 0.0
    cancelled: bool = False
    results: dict[str, int] = field(default_factory=dict)  # external_userid -> status (0,1,2,3)
    reminders: list[float] = field(default_factory=list)

    @property
    def chat_type(self) -> str:
        return str(self.payload.get("chat_type") or "single")


@dataclass
class GroupMemberInfo:
    userid: str
    type: int  # 1 corp member, 2 external
    join_time: int
    join_scene: int  # 1 invited directly, 2 by link, 3 scanned a QR code
    invitor: str = ""
    state: str = ""  # the join code's state, for those who came through one
    name: str = ""
    group_nickname: str = ""


@dataclass
class FakeGroup:
    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    members: dict[str, GroupMemberInfo] = field(default_factory=dict)
    admins: list[str] = field(default_factory=list)
    dismissed: bool = False
    status: int = 0  # groupchat/list's: 0 normal, 1 owner resigned, 2 being inherited, 3 inherited


class FakeCorp:
    def __init__(
        self,
        corp_id: str,
        secrets_: dict[str, str],
        *,
        token_ttl: int = 7200,
        welcome_ttl: float = 20.0,
        mass_cap: int = 4,
        mass_cap_period: float = 30 * 86400,
        group_capacity: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.corp_id = corp_id
        self.secrets = dict(secrets_)  # secret -> app name
        self.token_ttl = token_ttl
        self.welcome_ttl = welcome_ttl
        self.mass_cap = mass_cap
        self.mass_cap_period = mass_cap_period
        self.group_capacity = group_capacity
        self.clock = clock
        self.lock = threading.RLock()
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (secret, expires_at)
        self.departments: dict[int, dict[str, Any]] = {1: {"id": 1, "name": "总部", "parentid": 0, "order": 0}}
        self.users: dict[str, dict[str, Any]] = {}
        self.resigned: dict[str, dict[str, Any]] = {}  # members who left, by userid (see bot.sandbox.handover)
        self.transfers: dict[tuple[str, str], dict[str, Any]] = {}  # (handover, external_userid) -> record
        self.contacts: dict[str, Contact] = {}
        self.tag_groups: dict[str, dict[str, Any]] = {}
        self.contact_ways: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, FakeGroup] = {}
        self.join_ways: dict[str, dict[str, Any]] = {}
        self.welcome_codes: dict[str, WelcomeCode] = {}
        self.welcomes_sent: list[dict[str, Any]] = []
        self.media: dict[str, bytes] = {}
        self.media_uploaded_at: dict[str, float] = {}  # media id -> upload time (temporary media lives 3 days)
        self.welcome_sent_at: dict[str, float] = {}  # welcome code -> wall-clock time of the accepted call
        self.welcome_attempts: dict[str, int] = {}  # welcome code -> send_welcome_msg calls, accepted or not
        self.app_messages: list[dict[str, Any]] = []
        self.app_message_times: dict[tuple[str, str], float] = {}
        self.mass_tasks: dict[str, MassTask] = {}
        self.mass_received: dict[str, deque[float]] = {}
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.calls: list[str] = []
        self.token_fetches = 0
        self.client = ClientState(ticket_ttl=token_ttl)  # the chat sidebar's tickets, OAuth2 codes, chat sends
        self._ids = itertools.count(1)

    # -- helpers --------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{secrets.token_hex(6)}"

    def inject(self, endpoint: str, errcode: int, times: int = 1, seconds: float | None = None) -> None:
        """Answer the next ``times`` calls of ``endpoint`` with ``errcode`` or, with ``seconds``, every call
        for that long (an outage)."""
        with self.lock:
            until = time.time() + seconds if seconds is not None else None
            self.faults.append(Fault(endpoint, errcode, times, until))

    def take_fault(self, endpoint: str) -> int | None:
        now = time.time()
        with self.lock:
            for fault in self.faults:
                if fault.active(now) and fault.endpoint in (endpoint, "*"):
                    fault.remaining -= 1
                    return fault.errcode
            self.faults = [f for f in self.faults if f.active(now)]
            return None

    def hold(self, endpoint: str, skip: int = 0) -> Hold:
        """Answer the (skip+1)-th call of ``endpoint`` only once ``release`` is set: the call's effect is
        done, its answer is late. A test kills the caller meanwhile to see how it recovers."""
        hold = Hold(endpoint, skip)
        with self.lock:
            self.holds.append(hold)
        return hold

    def take_hold(self, endpoint: str) -> Hold | None:
        with self.lock:
            for hold in self.holds:
                if hold.endpoint == endpoint:
                    if hold.skip > 0:
                        hold.skip -= 1
                        return None
                    self.holds.remove(hold)
                    return hold
            return None

    # -- tokens (doc path/91039) ----------------------------------------------------------------

    def issue_token(self, corpid: str, secret: str) -> dict[str, Any]:
        with self.lock:
            if corpid != self.corp_id:
                raise ApiError(40013, "invalid corpid")
            if secret not in self.secrets:
                raise ApiError(40001, "invalid credential")
            token = secrets.token_urlsafe(48)
            self.tokens[token] = (secret, self.clock() + self.token_ttl)
            self.token_fetches += 1
            return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl}

    def check_token(self, token: str | None) -> str:
        if not token:
            raise ApiError(41001, "access_token missing")
        with self.lock:
            entry = self.tokens.get(token)
            if entry is None:
                raise ApiError(40014, "invalid access_token")
            secret, expires_at = entry
            if self.clock() >= expires_at:
                raise ApiError(42001, "access_token expired")
            return secret

    def expire_tokens(self) -> None:
        """Every token expires now, as if 2 hours had passed."""
        with self.lock:
            self.tokens = {t: (s, self.clock() - 1) for t, (s, _) in self.tokens.items()}

    # -- directory ------------------------------------------------------------------------------

    def add_department(self, name: str, parentid: int = 1) -> int:
        with self.lock:
            dep_id = max(self.departments) + 1
            self.departments[dep_id] = {
                "id": dep_id,
                "name": name,
                "parentid": parentid,
                "order": 100 - dep_id,
                "department_leader": [],
            }
            return dep_id

    def add_user(self, userid: str, name: str, department: int, position: str = "", *, leader: bool = False) -> None:
        with self.lock:
            if leader:
                self.departments[department].setdefault("department_leader", []).append(userid)
            self.users[userid] = {
                "userid": userid,
                "name": name,
                "department": [department],
                "main_department": department,
                "position": position,
                "status": 1,
            }

    # -- customers ------------------------------------------------------------------------------

    def add_contact(self, name: str, gender: int, userid: str, state: str = "") -> tuple[Contact, str]:
        """A customer adds a member; returns the contact and a fresh welcome code."""
        with self.lock:
            if userid not in self.users:
                raise ApiError(60111, f"userid not found: {userid}")
            contact = Contact(self.new_id("wm"), name, gender)
            self.contacts[contact.external_userid] = contact
            follow = Follow(userid, remark=name, createtime=int(self.clock()), state=state)
            contact.follows[userid] = follow
            return contact, self.issue_welcome_code()

    def add_follow(self, external_userid: str, userid: str) -> str:
        """A customer already known adds another member; returns a fresh welcome code."""
        with self.lock:
            if userid not in self.users:
                raise ApiError(60111, f"userid not found: {userid}")
            contact = self.contacts[external_userid]
            contact.follows[userid] = Follow(userid, remark=contact.name, createtime=int(self.clock()))
            return self.issue_welcome_code()

    def contact_way_for_state(self, state: str) -> str | None:
        with self.lock:
            return next((c for c, w in self.contact_ways.items() if w.get("state") == state), None)

    def issue_welcome_code(self) -> str:
        with self.lock:
            code = secrets.token_urlsafe(24)
            self.welcome_codes[code] = WelcomeCode(code, self.clock())
            return code

    def contact_json(self, external_userid: str) -> dict[str, Any]:
        with self.lock:
            contact = self.contacts.get(external_userid)
            if contact is None:
                raise ApiError(84061, "not external contact")
            tags = self.tag_index()
            return {
                "external_contact": {
                    "external_userid": contact.external_userid,
                    "name": contact.name,
                    "type": contact.type,
                    "gender": contact.gender,
                    "avatar": contact.avatar,
                    "unionid": contact.unionid,
                },
                "follow_user": [
                    {
                        "userid": f.userid,
                        "remark": f.remark,
                        "description": f.description,
                        "createtime": f.createtime,
                        "add_way": f.add_way,
                        "remark_mobiles": list(f.remark_mobiles),
                        "state": f.state,
                        "oper_userid": f.oper_userid or contact.external_userid,
                        "tags": [
                            {"group_name": tags[t][0], "tag_name": tags[t][1], "type": 1, "tag_id": t}
                            for t in f.tag_ids
                            if t in tags
                        ],
                    }
                    for f in contact.follows.values()
                ],
            }

    def tag_index(self) -> dict[str, tuple[str, str]]:
        return {
            tag["id"]: (group["group_name"], tag["name"]) for group in self.tag_groups.values() for tag in group["tag"]
        }

    # -- welcome messages (doc path/92599) ------------------------------------------------------

    def send_welcome(self, body: dict[str, Any]) -> None:
        with self.lock:
            given = str(body.get("welcome_code", ""))
            self.welcome_attempts[given] = self.welcome_attempts.get(given, 0) + 1
            code = self.welcome_codes.get(given)
            if code is None or self.clock() - code.issued_at > self.welcome_ttl:
                raise ApiError(41050, "welcome code invalid or expired")
            if code.used:
                raise ApiError(41051, "welcome message already sent")
            if "text" not in body and not body.get("attachments"):
                raise ApiError(41048, "no message content")
            if len(body.get("attachments", [])) > 9:
                raise ApiError(40058, "too many attachments")
            for attachment in body.get("attachments") or []:  # an image may name a media id or a pic_url
                kind = attachment.get("msgtype")
                content = attachment.get(kind) or {}
                media_id = content.get("pic_media_id" if kind == "miniprogram" else "media_id")
                uploaded = media_id in self.media or (kind == "image" and content.get("pic_url"))
                if kind in ("image", "video", "file", "miniprogram") and not uploaded:
                    raise ApiError(40007, "invalid media_id")
            code.used = True
            self.welcomes_sent.append(dict(body))
            self.welcome_sent_at[code.code] = time.time()

    # -- corp tags (doc path/92117) -------------------------------------------------------------

    def add_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            group = self.tag_groups.get(body.get("group_id", "")) if body.get("group_id") else None
            if group is None:
                name = body.get("group_name") or ""
                group = next((g for g in self.tag_groups.values() if g["group_name"] == name), None)
            if group is None:
                if not body.get("group_name"):
                    raise ApiError(40068, "invalid tag group")
                group = {
                    "group_id": self.new_id("et"),
                    "group_name": body["group_name"],
                    "create_time": int(self.clock()),
                    "order": int(body.get("order", 0)),
                    "tag": [],
                }
                self.tag_groups[group["group_id"]] = group
            existing = {t["name"] for t in group["tag"]}
            total = sum(len(g["tag"]) for g in self.tag_groups.values())
            for tag in body.get("tag", []):
                if tag["name"] in existing:
                    raise ApiError(40071, "tag name already exists")
                if total >= 3000:
                    raise ApiError(40126, "最多为3000个")
                group["tag"].append(
                    {
                        "id": self.new_id("et"),
                        "name": tag["name"],
                        "create_time": int(self.clock()),
                        "order": int(tag.get("order", 0)),
                    }
                )
                total += 1
            return {"tag_group": group}

    def list_tags(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self.lock:
            group_ids = body.get("group_id") or []
            tag_ids = set(body.get("tag_id") or [])
            groups = [g for g in self.tag_groups.values() if not group_ids or g["group_id"] in group_ids]
            out = []
            for g in groups:
                tags = [t for t in g["tag"] if group_ids or not tag_ids or t["id"] in tag_ids]
                if tags or not tag_ids:
                    out.append({**g, "tag": [dict(t) for t in tags]})
            return out

    # -- customer groups (doc path/92122) and join codes (doc path/92229) -----------------------

    def create_group(
        self, owner: str, name: str, customers: list[str] | None = None, members: list[str] | None = None
    ) -> FakeGroup:
        """A member creates a customer group in the client with some of their customers (and colleagues)."""
        with self.lock:
            if owner not in self.users:
                raise ApiError(60111, f"userid not found: {owner}")
            now = int(self.clock())
            group = FakeGroup(self.new_id("wr"), name, owner, now)
            group.members[owner] = GroupMemberInfo(owner, 1, now, 1, name=self.users[owner]["name"])
            for userid in members or []:
                group.members[userid] = GroupMemberInfo(userid, 1, now, 1, owner, name=self.users[userid]["name"])
            for external_userid in customers or []:
                self._join(group, external_userid, scene=1, invitor=owner)
            self.groups[group.chat_id] = group
            return group

    def _join(self, group: FakeGroup, external_userid: str, *, scene: int, invitor: str = "", state: str = "") -> None:
        contact = self.contacts.get(external_userid)
        group.members[external_userid] = GroupMemberInfo(
            external_userid,
            2,
            int(self.clock()),
            scene,
            invitor,
            state,
            name=contact.name if contact else "",
        )

    def join_group(
        self, chat_id: str, external_userid: str, *, scene: int = 1, invitor: str = "", state: str = ""
    ) -> None:
        with self.lock:
            group = self.groups[chat_id]
            if group.dismissed:
                raise ApiError(40050, "group dismissed")
            self._join(group, external_userid, scene=scene, invitor=invitor or group.owner, state=state)

    def join_by_code(self, config_id: str, external_userid: str) -> tuple[FakeGroup, FakeGroup | None]:
        """A customer scans a join code: they enter its first group with room; when every group is full
        and the code auto-creates rooms, WeCom makes a new one (returned second) owned by the first
        group's owner and named after the code's base name and number."""
        with self.lock:
            way = self.join_ways.get(config_id)
            if way is None:
                raise KeyError(config_id)
            groups = [self.groups[c] for c in way["chat_id_list"] if c in self.groups and not self.groups[c].dismissed]
            group = next((g for g in groups if len(g.members) < self.group_capacity), None)
            created = None
            if group is None:
                if not way.get("auto_create_room", 1) or not groups:
                    raise ApiError(40050, "every group of the code is full")
                number = int(way.get("room_base_id") or 1) + len(way["chat_id_list"])
                created = self.create_group(groups[0].owner, f"{way.get('room_base_name') or groups[0].name}{number}")
                way["chat_id_list"] = [*way["chat_id_list"], created.chat_id]
                group = created
            self._join(group, external_userid, scene=3, state=str(way.get("state", "")))
            return group, created

    def group_json(self, chat_id: str, need_name: bool) -> dict[str, Any]:
        with self.lock:
            group = self.groups.get(chat_id)
            if group is None or group.dismissed:
                raise ApiError(40050, "chat_id not exist")
            members = []
            for m in group.members.values():
                row: dict[str, Any] = {
                    "userid": m.userid,
                    "type": m.type,
                    "join_time": m.join_time,
                    "join_scene": m.join_scene,
                    "invitor": {"userid": m.invitor} if m.invitor else {},
                    "group_nickname": m.group_nickname,
                }
                if m.state:
                    row["state"] = m.state
                if need_name:
                    row["name"] = m.name
                members.append(row)
            return {
                "chat_id": group.chat_id,
                "name": group.name,
                "owner": group.owner,
                "create_time": group.create_time,
                "notice": group.notice,
                "member_list": members,
                "admin_list": [{"userid": a} for a in group.admins],
            }
