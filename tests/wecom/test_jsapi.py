"""JS-SDK signatures and the OAuth2 authorize URL (WeCom doc 90506, 91022)."""

from urllib.parse import parse_qs, urlsplit

import pytest

from bot.wecom.jsapi import authorize_url, signature

# WeCom doc 90506's example, recomputed.
TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
NONCE = "Wm3WZYTPz0wzccnW"
TIMESTAMP = 1414587457
URL = "http://mp.weixin.qq.com?params=value"
EXPECTED = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


@pytest.mark.parametrize("timestamp", [TIMESTAMP, str(TIMESTAMP)])
def test_signature_matches_wecoms_example(timestamp):
    assert signature(TICKET, NONCE, timestamp, URL) == EXPECTED


@pytest.mark.parametrize("fragment", ["#", "#/chat?x=1", "#section"])
def test_the_signed_url_drops_its_fragment(fragment):
    assert signature(TICKET, NONCE, TIMESTAMP, URL + fragment) == EXPECTED


def test_the_url_is_signed_as_it_is_not_url_encoded():
    plain = "http://siyu.example/sidebar/?q=a b&名=值"
    assert signature(TICKET, NONCE, TIMESTAMP, plain) != signature(
        TICKET, NONCE, TIMESTAMP, "http://siyu.example/sidebar/?q=a%20b&%E5%90%8D=%E5%80%BC"
    )


@pytest.mark.parametrize(
    ("field", "other"),
    [("ticket", "another-ticket"), ("nonce", "another-nonce"), ("timestamp", 1414587458), ("url", URL + "&x=1")],
)
def test_every_part_is_signed(field, other):
    parts = {"ticket": TICKET, "nonce": NONCE, "timestamp": TIMESTAMP, "url": URL, field: other}
    assert signature(**parts) != EXPECTED


def test_authorize_url_is_wecoms_with_the_redirect_encoded():
    url = authorize_url(
        "https://open.weixin.qq.com/connect/oauth2/authorize",
        "ww5a9d0c0ffee5a4d0",
        "https://siyu.example/sidebar/auth?next=/sidebar/&x=1",
        "s7Kx2",
        1000002,
    )
    assert url.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww5a9d0c0ffee5a4d0&redirect_uri=")
    assert url.endswith("#wechat_redirect")
    assert "redirect_uri=https%3A%2F%2Fsiyu.example%2Fsidebar%2Fauth%3Fnext%3D%2Fsidebar%2F%26x%3D1&" in url
    parts = urlsplit(url)
    assert parts.fragment == "wechat_redirect"
    assert parse_qs(parts.query) == {
        "appid": ["ww5a9d0c0ffee5a4d0"],
        "redirect_uri": ["https://siyu.example/sidebar/auth?next=/sidebar/&x=1"],
        "response_type": ["code"],
        "scope": ["snsapi_base"],
        "state": ["s7Kx2"],
        "agentid": ["1000002"],
    }
    # WeCom's order: appid, redirect_uri, response_type, scope, state, agentid
    assert [p.split("=")[0] for p in parts.query.split("&")] == [
        "appid",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "agentid",
    ]
