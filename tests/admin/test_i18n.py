"""Chinese by default, English through the catalogue, and a catalogue that covers every text."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from tests.admin.panel import sign_in
from tests.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "admin" / "translations" / "en" / "LC_MESSAGES"


def source_texts():
    """Every text the extraction finds, read with the same babel.cfg that `make translations` uses."""
    with open(ROOT / "admin" / "translations" / "babel.cfg", encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {"_": None, "_l": None, "N_": None, "gettext": None}
    found = extract_from_dir(str(ROOT), method_map=method_map, options_map=options_map, keywords=keywords)
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def test_every_text_in_the_sources_has_an_english_translation():
    with open(CATALOGUE / "messages.po", "rb") as f:
        catalogue = read_po(f)
    translated = {m.id: m.string for m in catalogue if m.id}
    missing = sorted(t for t in source_texts() if not translated.get(t))
    assert missing == [], "run `make translations` and translate: " + ", ".join(missing)


def test_the_compiled_catalogue_matches_the_po_file():
    with open(CATALOGUE / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    with open(CATALOGUE / "messages.mo", "rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    assert po == mo, "run `make translations` to compile the catalogue"


def test_chinese_by_default_and_english_on_request(app, client):
    _, password = make_user(app, "boss", "admin")
    assert "登录" in client.get("/admin/login").get_data(as_text=True)
    sign_in(client, "boss", password)
    page = client.get("/admin/").get_data(as_text=True)
    assert "仪表盘" in page and 'lang="zh-CN"' in page
    res = client.get("/lang/en", headers={"Referer": "http://localhost/admin/customers?q=x"})
    assert res.location.endswith("/admin/customers?q=x")
    page = client.get("/admin/").get_data(as_text=True)
    assert "Dashboard" in page and "仪表盘" not in page and 'lang="en"' in page
    assert "Search" in client.get("/admin/customers").get_data(as_text=True)
    client.get("/lang/zh")
    assert "仪表盘" in client.get("/admin/").get_data(as_text=True)


def test_language_switch_never_redirects_off_site(client):
    res = client.get("/lang/en", headers={"Referer": "https://evil.example.com/phish"})
    assert res.location.endswith("/admin/")
    assert client.get("/lang/xx").status_code == 302  # unknown languages are ignored
