"""The signed tokens of radar links.

A token is a payload and its HMAC-SHA256 signature (itsdangerous' ``Signer``, salted for radar links, keyed
by SECRET_KEY): a guessed or altered token fails the signature and is answered 404, never someone else's
link. It is deterministic — the same item, member and customer (or send) always make the same token — so a
resumed mass-send dispatch says exactly what it said before, and a link is one row however often it goes out.

Payloads, ids in base 36: ``c.<item>.<member>.<external_userid>`` names one customer (the sidebar, a welcome
message); ``s.<item>.<member>.<send>`` one mass send and ``g.<item>.<member>.<group>`` one message into a customer
group (``GroupChat.id``) and ``m.<item>.0.<moment>`` one customer moment (every member posts the same
content, so no member is named), whose openers WeCom's OAuth names. When SECRET_KEY is
rotated, the old key goes in SECRET_KEY_FALLBACKS: links already sent keep working (and keep their rows, the
payload being the link's key), new ones are signed with the new key; a key dropped from the fallbacks retires
the links it signed (their opens are 404s)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer

from bot.services.clients import settings

CUSTOMER = "customer"
SEND = "send"
GROUP = "group"
MOMENT = "moment"
_KINDS = {"c": CUSTOMER, "s": SEND, "g": GROUP, "m": MOMENT}
#: the kinds whose link reaches many customers: the opener is learnt from WeCom's OAuth, else anonymous
BROADCAST = (SEND, GROUP, MOMENT)
#: the longest token Siyu makes is about 120 characters; anything far longer is not one
MAX_TOKEN = 200
#: WeCom's external_userid: letters, digits, - and _ (a token carries it as written)
_EXTERNAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID = re.compile(r"^[0-9a-z]{1,7}$")  # base 36 of a 32-bit id


@dataclass(frozen=True)
class Token:
    kind: str
    item_id: int
    staff_id: int
    external_userid: str | None  # a per-customer link's customer
    send_id: int | None  # a per-send link's send
    key: str  # the signed payload: the link's natural key
    group_id: int | None = None  # a group link's group (GroupChat.id)
    moment_id: int | None = None  # a moment link's moment (Moment.id)

    @property
    def digest(self) -> str:
        """A short fixed-size name of the link (rate-limit keys)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]


def _signer() -> Signer:
    # itsdangerous signs with the last key and verifies with any (oldest first).
    keys = [*settings().secret_key_fallbacks, settings().secret_key]
    return Signer(keys, salt="siyu-radar", digest_method=hashlib.sha256)


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def is_external_userid(value: str) -> bool:
    return bool(_EXTERNAL.match(value))


def for_customer(item_id: int, staff_id: int, external_userid: str) -> str:
    """The token of ``item`` sent by member ``staff_id`` to one customer."""
    if not _EXTERNAL.match(external_userid):
        raise ValueError(f"not an external_userid: {external_userid!r}")
    return _signer().sign(f"c.{_b36(item_id)}.{_b36(staff_id)}.{external_userid}").decode()


def for_send(item_id: int, staff_id: int, send_id: int) -> str:
    """The token of ``item`` in member ``staff_id``'s task of mass send ``send_id``."""
    return _signer().sign(f"s.{_b36(item_id)}.{_b36(staff_id)}.{_b36(send_id)}").decode()


def for_group(item_id: int, staff_id: int, group_id: int) -> str:
    """The token of ``item`` sent by member ``staff_id`` into the customer group ``group_id``."""
    return _signer().sign(f"g.{_b36(item_id)}.{_b36(staff_id)}.{_b36(group_id)}").decode()


def for_moment(item_id: int, moment_id: int) -> str:
    """The token of ``item`` in the customer moment ``moment_id`` (posted by many members alike)."""
    return _signer().sign(f"m.{_b36(item_id)}.0.{_b36(moment_id)}").decode()


def parse(token: str) -> Token | None:
    """The link ``token`` names, if Siyu signed it; None for anything else."""
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        return None
    try:
        payload = _signer().unsign(token).decode()
    except (BadSignature, UnicodeDecodeError):
        return None
    parts = payload.split(".")
    if len(parts) != 4 or parts[0] not in _KINDS or not (_ID.match(parts[1]) and _ID.match(parts[2])):
        return None
    kind, item_id, staff_id = _KINDS[parts[0]], int(parts[1], 36), int(parts[2], 36)
    if kind == CUSTOMER:
        return Token(kind, item_id, staff_id, parts[3], None, payload) if _EXTERNAL.match(parts[3]) else None
    if not _ID.match(parts[3]):
        return None
    if kind == GROUP:
        return Token(kind, item_id, staff_id, None, None, payload, group_id=int(parts[3], 36))
    if kind == MOMENT:
        return Token(kind, item_id, staff_id, None, None, payload, moment_id=int(parts[3], 36))
    return Token(kind, item_id, staff_id, None, int(parts[3], 36), payload)


def url(token: str) -> str:
    """The public address of a link: ``<SIYU_PUBLIC_URL>r/<token>``."""
    return f"{settings().public_url}r/{token}"
