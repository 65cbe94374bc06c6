"""Driving a search picker (Tom Select over a plain select) in Chromium the way a person does: typing."""

from urllib.parse import quote

from playwright.sync_api import expect


def pick(page, select_id, text, option_text=None):
    """Type ``text`` into the picker of ``select_id`` key by key, wait for the server's suggestions for it,
    and choose the one showing ``option_text`` (``text`` by default)."""
    control = page.locator(f"#{select_id}-ts-control")
    control.click()
    with page.expect_response(lambda r: "/admin/pick/" in r.url and r.url.endswith("q=" + quote(text))):
        control.press_sequentially(text)
    option = page.locator(f"[data-picker-for='{select_id}'] .ts-dropdown .option", has_text=option_text or text)
    expect(option.first).to_be_visible()
    option.first.click()
    control.press("Escape")
    return control
