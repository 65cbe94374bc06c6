"""The callback crypto (WeCom doc 91144) over wechatpy's AES implementation.

wechatpy's own ``decrypt_message`` parses the envelope with plain xmltodict and compares signatures
with ``!=``; here the envelope goes through defusedxml and the signature is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.exceptions import WeChatException

from bot.wecom.errors import MalformedCallback, ReceiverMismatch, SignatureMismatch, StaleCallback
from bot.wecom.xml import parse_flat_xml


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    parts = sorted([token, timestamp, nonce, encrypted])
    return hashlib.sha1("".join(parts).encode()).hexdigest()  # noqa: S324 - WeCom's protocol


@dataclass(frozen=True)
class Envelope:
    """What a POST callback carries before decryption."""

    to_user: str
    encrypted: str
    agent_id: str | None


class CallbackCrypto:
    """``max_age``: how far (seconds, either way) a callback's signed timestamp may be from now; None
    accepts any (Tencent's known-answer vectors are years old)."""

    def __init__(
        self, token: str, encoding_aes_key: str, receive_id: str, *, max_age: int | None = None, clock: Any = time.time
    ) -> None:
        self.token = token
        self.receive_id = receive_id
        self.max_age = max_age
        self.clock = clock
        self._key = base64.b64decode(encoding_aes_key + "=")
        if len(self._key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")

    def check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, (msg_signature or "").lower()):
            raise SignatureMismatch("msg_signature does not match")
        if self.max_age is not None:
            self._check_fresh(timestamp)

    def _check_fresh(self, timestamp: str) -> None:
        # A signature proves who sent a callback, not when: a captured one could be replayed for ever. WeCom
        # signs its Unix time (doc 91144), so a genuine callback is fresh give or take clock skew and retries.
        if not timestamp.isdigit():
            raise MalformedCallback("timestamp is not a Unix time")
        if abs(self.clock() - int(timestamp)) > self.max_age:
            raise StaleCallback(f"timestamp outside ±{self.max_age} s of now")

    def _decrypt(self, encrypted: str) -> str:
        try:
            plain: str = PrpCrypto(self._key).decrypt(encrypted, self.receive_id)  # wechatpy: untyped
            return plain
        except WeChatException as exc:  # InvalidCorpIdException is not an InvalidSignatureException
            raise ReceiverMismatch("the message was not encrypted for this corp") from exc
        except Exception as exc:  # bad base64, bad padding, truncated length prefix, bad UTF-8
            raise MalformedCallback(f"cannot decrypt: {type(exc).__name__}") from exc

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """GET URL verification (§1.1): returns the plaintext to echo back."""
        # Some proxies turn '+' into ' ' when they decode the query string.
        echostr = echostr.replace(" ", "+")
        self.check(msg_signature, timestamp, nonce, echostr)
        return self._decrypt(echostr)

    def open_envelope(self, body: bytes) -> Envelope:
        fields = parse_flat_xml(body)
        encrypted = fields.get("Encrypt")
        if not encrypted:
            raise MalformedCallback("the envelope has no Encrypt element")
        return Envelope(fields.get("ToUserName", ""), encrypted, fields.get("AgentID"))

    def decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        """POST: verify the signature over Encrypt, decrypt, check the receive id; returns the XML."""
        envelope = self.open_envelope(body)
        self.check(msg_signature, timestamp, nonce, envelope.encrypted)
        return self._decrypt(envelope.encrypted)

    def encrypt(self, plaintext: str, nonce: str, timestamp: str | None = None) -> tuple[str, dict[str, str]]:
        """Encrypt as WeCom does; returns (envelope XML body, query parameters) for a POST."""
        timestamp = timestamp or str(int(time.time()))
        encrypted = PrpCrypto(self._key).encrypt(plaintext, self.receive_id)
        if isinstance(encrypted, bytes):
            encrypted = encrypted.decode()
        sig = signature(self.token, timestamp, nonce, encrypted)
        body = (
            f"<xml><ToUserName><![CDATA[{escape(self.receive_id)}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        )
        return body, {"msg_signature": sig, "timestamp": timestamp, "nonce": nonce}

    def encrypt_echostr(self, plaintext: str, nonce: str, timestamp: str) -> dict[str, str]:
        """The query WeCom sends for GET URL verification."""
        encrypted = PrpCrypto(self._key).encrypt(plaintext, self.receive_id)
        if isinstance(encrypted, bytes):
            encrypted = encrypted.decode()
        sig = signature(self.token, timestamp, nonce, encrypted)
        return {"msg_signature": sig, "timestamp": timestamp, "nonce": nonce, "echostr": encrypted}
