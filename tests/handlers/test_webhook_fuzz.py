"""The webhook under random and mutated envelopes: a clear 4xx for every bad one, never a server error, and
nothing stored but what WeCom could have sent. (`bench/drills/fuzz.py` runs many more against gunicorn.)"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.extensions import db
from bot.models import CallbackEvent
from bot.sandbox.simulator import event_xml

REFUSALS = {400, 403, 413}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def post(client, body: bytes, query: dict[str, str]):
    return client.post("/wecom/callback", query_string=query, data=body, content_type="text/xml")


def stored(app):
    with app.app_context():
        return db.session.scalars(select(CallbackEvent.plaintext)).all()


@FUZZ
@given(
    body=st.binary(max_size=2048) | st.text(max_size=2048).map(str.encode),
    query=st.dictionaries(
        st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]), st.text(max_size=60)
    ),
)
def test_random_envelopes_are_refused(app, client, sim, body, query):
    res = post(client, body, query)
    assert res.status_code in REFUSALS, (res.status_code, res.get_data(as_text=True))


MUTATIONS = st.sampled_from(["flip", "truncate", "append", "signature", "timestamp", "nonce", "wrap", "none"])


@FUZZ
@given(mutation=MUTATIONS, at=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=64))
def test_mutated_envelopes_are_refused_or_stored_unchanged(app, client, sim, corp, mutation, at, junk):
    plaintext = event_xml(  # the same event in every example: the table is emptied once per test, not per example
        corp.corp_id,
        "change_external_contact",
        1795000000,
        ChangeType="del_follow_user",
        UserID="staff0201",
        ExternalUserID="wmFz",
    )
    text, query = sim.envelope(plaintext)
    body = text.encode()
    if mutation == "flip":
        i = at % len(body)
        body = body[:i] + bytes([body[i] ^ (junk[0] or 1)]) + body[i + 1 :]
    elif mutation == "truncate":
        body = body[: at % len(body)]
    elif mutation == "append":
        body += junk
    elif mutation in ("signature", "timestamp", "nonce"):
        key = {"signature": "msg_signature"}.get(mutation, mutation)
        query = {**query, key: junk.hex()}
    elif mutation == "wrap":
        body = b"<!DOCTYPE x [<!ENTITY a '" + junk.hex().encode() + b"'>]>" + body
    res = post(client, body, query)
    assert res.status_code in REFUSALS | {200}, (mutation, res.status_code)
    # Whatever was acknowledged is the event WeCom signed, byte for byte.
    assert set(stored(app)) <= {plaintext}


@FUZZ
@given(
    inner=st.text(max_size=300)
    | st.builds(
        lambda event, fields: f"<xml><MsgType>event</MsgType><Event>{event}</Event>{fields}</xml>",
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="<&"), max_size=30),
        st.sampled_from(
            ["", "<CreateTime>x</CreateTime>", "<ChangeType/>", "<ChangeType>" + "a" * 500 + "</ChangeType>"]
        ),
    )
)
def test_signed_garbage_is_a_clear_answer(app, client, sim, inner):
    """Correctly signed and encrypted, so only the plaintext is wrong: 400, or stored when it is a well-formed
    event of a kind Siyu keeps without acting on."""
    text, query = sim.envelope(inner)
    res = post(client, text.encode(), query)
    assert res.status_code in (200, 400), (inner, res.status_code, res.get_data(as_text=True))
    if res.status_code == 200:
        assert inner in stored(app)
