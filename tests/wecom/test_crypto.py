import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.wecom.crypto import CallbackCrypto, signature
from bot.wecom.errors import MalformedCallback, ReceiverMismatch, SignatureMismatch

# Tencent's published known-answer vectors for the callback crypto (public test data, kept in the repository).
VECTORS_PATH = Path(__file__).resolve().parent / "fixtures" / "crypto_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"


@pytest.fixture
def crypto():
    return CallbackCrypto(VECTORS["token"], VECTORS["encoding_aes_key"], VECTORS["receive_id"])


def test_url_verification_known_answer(crypto):
    v = VECTORS["verify_url"]
    assert crypto.verify_url(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"]) == v["expected_reply"]


def test_url_verification_accepts_plus_decoded_as_space(crypto):
    v = VECTORS["verify_url"]
    mangled = v["echostr"].replace("+", " ")
    assert "+" in v["echostr"]
    assert crypto.verify_url(v["msg_signature"], v["timestamp"], v["nonce"], mangled) == v["expected_reply"]


def test_post_decryption_known_answer(crypto):
    v = VECTORS["decrypt_post"]
    plain = crypto.decrypt(v["body"].encode(), v["msg_signature"], v["timestamp"], v["nonce"])
    assert plain == v["expected_plaintext"]


def test_signature_known_answer():
    v = VECTORS["decrypt_post"]
    encrypted = v["body"].split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    assert signature(VECTORS["token"], v["timestamp"], v["nonce"], encrypted) == v["msg_signature"]


@pytest.mark.parametrize("field", ["msg_signature", "timestamp", "nonce"])
def test_tampered_query_is_a_signature_mismatch(crypto, field):
    v = dict(VECTORS["decrypt_post"])
    v[field] = "1" + v[field][1:] if v[field][0] != "1" else "2" + v[field][1:]
    with pytest.raises(SignatureMismatch):
        crypto.decrypt(v["body"].encode(), v["msg_signature"], v["timestamp"], v["nonce"])


def test_message_for_another_corp_is_refused():
    v = VECTORS["decrypt_post"]
    other = CallbackCrypto(VECTORS["token"], VECTORS["encoding_aes_key"], "wwsomeoneelse000000")
    with pytest.raises(ReceiverMismatch):
        other.decrypt(v["body"].encode(), v["msg_signature"], v["timestamp"], v["nonce"])


@pytest.mark.parametrize(
    "encrypted",
    ["not base64 at all!!", "QUJD", "", "A" * 64],
    ids=["junk", "short", "empty", "unaligned-or-bad-padding"],
)
def test_undecryptable_payloads_are_malformed(crypto, encrypted):
    body = f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    sig = signature(VECTORS["token"], "1", "2", encrypted)
    with pytest.raises((MalformedCallback, ReceiverMismatch)):
        crypto.decrypt(body, sig, "1", "2")


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(min_size=0, max_size=3000),
    nonce=st.text(alphabet="0123456789abcdef", min_size=1, max_size=16),
    timestamp=st.integers(min_value=0, max_value=2**31).map(str),
)
def test_round_trip_any_text(text, nonce, timestamp):
    crypto = CallbackCrypto("tok", KEY, "ww1436e0e65a779aee")
    body, query = crypto.encrypt(text, nonce, timestamp)
    assert crypto.decrypt(body.encode(), query["msg_signature"], query["timestamp"], query["nonce"]) == text


@settings(max_examples=30, deadline=None)
@given(echo=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=200))
def test_echostr_round_trip(echo):
    crypto = CallbackCrypto("tok", KEY, "ww1436e0e65a779aee")
    q = crypto.encrypt_echostr(echo, "n", "1")
    assert crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]) == echo


@pytest.mark.parametrize("key", ["short", "x" * 42, "#" * 43, "=" * 43])
def test_bad_aes_key_is_refused(key):
    with pytest.raises(ValueError):
        CallbackCrypto("tok", key, "ww1")
