import pytest

from bot.config import SANDBOX_CORP_ID, ConfigError, Settings
from tests.conftest import proxied_app

REAL = {
    "WECOM_CORP_ID": "ww1436e0e65a779aee",
    "WECOM_CONTACT_SECRET": "contact-secret-value",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_CALLBACK_TOKEN": "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    "WECOM_CALLBACK_AES_KEY": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "SECRET_KEY": "k8Vq2mZ0rT6yN1wX4cB7hJ3pL9sD5fG0aE2uI8oQ",
}


def sandbox(tmp_path, **env):
    return {"SIYU_SANDBOX": "1", "SIYU_INSTANCE_DIR": str(tmp_path / "instance"), **env}


def test_sandbox_mode_is_asked_for_and_has_working_defaults(tmp_path):
    s = Settings.from_env(sandbox(tmp_path))
    assert s.sandbox and s.corp_id == SANDBOX_CORP_ID
    assert s.database_url.startswith("sqlite:///") and s.redis_url is None
    assert s.wecom_api_base == f"http://127.0.0.1:{s.sandbox_port}/cgi-bin/"
    assert len(s.wecom_callback_aes_key) == 43 and s.wecom_callback_token and s.wecom_contact_secret


def test_neither_a_corp_nor_the_sandbox_stops_start_up():
    """A deployment that forgets WECOM_CORP_ID no longer lands silently in sandbox mode."""
    with pytest.raises(ConfigError, match="SIYU_SANDBOX=1"):
        Settings.from_env({"DATABASE_URL": "postgresql+psycopg://siyu@db/siyu", "SECRET_KEY": "x" * 40})
    with pytest.raises(ConfigError, match="both set"):
        Settings.from_env({**REAL, "SIYU_SANDBOX": "1"})


def test_the_sandbox_makes_a_random_session_key_once_and_keeps_it(tmp_path):
    first = Settings.from_env(sandbox(tmp_path)).secret_key
    kept = tmp_path / "instance" / "secret_key"
    assert len(first) >= 32 and kept.read_text() == first and kept.stat().st_mode & 0o777 == 0o600
    assert Settings.from_env(sandbox(tmp_path)).secret_key == first  # the same after a restart
    assert Settings.from_env(sandbox(tmp_path, SECRET_KEY="given-" * 8)).secret_key == "given-" * 8
    other = tmp_path / "elsewhere"
    assert Settings.from_env({"SIYU_SANDBOX": "1", "SIYU_INSTANCE_DIR": str(other)}).secret_key != first


@pytest.mark.parametrize("key", ["short-but-set", "CHANGE-ME-to-64-random-characters", "x" * 31])
def test_a_real_corp_refuses_a_weak_or_placeholder_session_key(key):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({**REAL, "SECRET_KEY": key})


def test_the_instance_directory_holds_the_default_database(tmp_path):
    s = Settings.from_env({"SIYU_SANDBOX": "1", "SIYU_INSTANCE_DIR": str(tmp_path / "local")})
    assert s.instance_dir == tmp_path / "local" and s.instance_dir.is_dir()
    assert s.database_url == f"sqlite:///{tmp_path / 'local' / 'siyu.sqlite3'}"


def test_real_corp_settings_are_taken_as_given():
    s = Settings.from_env({**REAL, "WECOM_API_BASE": "https://proxy.example.com/cgi-bin"})
    assert not s.sandbox and s.corp_id == REAL["WECOM_CORP_ID"] and s.wecom_agent_id == 1000002
    assert s.wecom_api_base == "https://proxy.example.com/cgi-bin/"
    assert s.wecom_agent_secret == REAL["WECOM_CONTACT_SECRET"]  # the agent secret may equal the contact one


def test_real_corp_defaults_to_wecoms_own_api():
    assert Settings.from_env(REAL).wecom_api_base == "https://qyapi.weixin.qq.com/cgi-bin/"


def test_the_sidebar_uses_wecoms_oauth_page_and_js_sdk_or_the_sandboxs(tmp_path):
    real = Settings.from_env(REAL)
    assert real.oauth_url == "https://open.weixin.qq.com/connect/oauth2/authorize"
    assert real.jssdk_url == "https://res.wx.qq.com/open/js/jweixin-1.2.0.js"
    fake = Settings.from_env(sandbox(tmp_path, SIYU_SANDBOX_PORT="5077"))
    assert fake.oauth_url == "http://127.0.0.1:5077/connect/oauth2/authorize"
    assert fake.jssdk_url == "http://127.0.0.1:5077/sandbox/jssdk.js"
    given = {"WECOM_OAUTH_URL": "https://proxy.example.com/oauth", "WECOM_JSSDK_URL": "https://cdn.example.com/j.js"}
    for s in (Settings.from_env({**REAL, **given}), Settings.from_env(sandbox(tmp_path, **given))):
        assert (s.oauth_url, s.jssdk_url) == ("https://proxy.example.com/oauth", "https://cdn.example.com/j.js")


@pytest.mark.parametrize(
    "missing",
    ["WECOM_CONTACT_SECRET", "WECOM_AGENT_ID", "WECOM_CALLBACK_TOKEN", "WECOM_CALLBACK_AES_KEY", "SECRET_KEY"],
)
def test_a_missing_setting_outside_sandbox_stops_start_up(missing):
    env = {k: v for k, v in REAL.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WECOM_CORP_ID", "not-a-corp"),
        ("WECOM_AGENT_ID", "abc"),
        ("WECOM_CALLBACK_TOKEN", "has spaces!"),
        ("WECOM_CALLBACK_AES_KEY", "tooshort"),
        ("WECOM_API_BASE", "ftp://x"),
        ("WECOM_CONTACT_SECRET", "short"),
        ("SIYU_CALLBACK_MAX_BYTES", "lots"),
        ("SIYU_LOG_FORMAT", "xml"),
        ("SIYU_METRICS_TOKEN", "short"),
        ("SIYU_TRUSTED_PROXIES", "-1"),
        ("SIYU_HISTORY_DAYS", "0"),
        ("SIYU_CALLBACK_MAX_AGE", "60"),
        ("WECOM_OAUTH_URL", "open.weixin.qq.com/connect/oauth2/authorize"),
        ("WECOM_JSSDK_URL", "https://res.wx.qq.com"),
        ("SECRET_KEY_FALLBACKS", "short-old-key"),
    ],
)
def test_malformed_settings_are_named(name, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**REAL, name: value})
    assert name in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"WECOM_CORP_ID": "bad", "WECOM_AGENT_ID": "x"})
    assert "WECOM_CORP_ID" in str(info.value) and "WECOM_AGENT_ID" in str(info.value)


def test_create_app_refuses_a_half_configured_corp(monkeypatch):
    from bot import create_app

    monkeypatch.setenv("WECOM_CORP_ID", "ww1436e0e65a779aee")
    with pytest.raises(ConfigError, match="WECOM_CONTACT_SECRET"):
        create_app()


@pytest.mark.parametrize(("proxies", "seen"), [(1, "203.0.113.7 https"), (0, "127.0.0.1 http")])
def test_forwarded_headers_are_believed_only_behind_a_trusted_proxy(tmp_path, monkeypatch, proxies, seen):
    from flask import request

    app = proxied_app(tmp_path, monkeypatch, proxies)

    @app.get("/_whoami")
    def whoami():
        return f"{request.remote_addr} {request.scheme}"

    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    assert app.test_client().get("/_whoami", headers=headers).text == seen
