"""Helpers of the radar link tests: a tracked link item, the corp's quiet hours set for a test, opening a link
through the app as a browser would (the sandbox playing WeCom's OAuth), and the opens recorded."""

import dataclasses
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import select

from bot.extensions import db
from bot.models import MassSend, RadarOpen, User
from bot.services.library import items
from bot.services.radar import visits
from tests.services.library_helpers import tag

WECHAT = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.50 NetType/WIFI"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
TARGET = "https://shop.example.com/autumn?from=siyu"


def a_send(admin_id: int) -> int:
    """A mass send on record (a link of a send names one), its id."""
    send = MassSend(name="秋季上新", text="", target={"external_userids": []}, created_by=admin_id)
    db.session.add(send)
    db.session.commit()
    return int(send.id)


def tracked_item(admin_id: int, *, tags: tuple[str, ...] = ("VIP",), title: str = "秋季新品") -> int:
    """A tracked link item giving its openers ``tags``; its id (inside an app context)."""
    admin = db.session.get(User, admin_id)
    item = items.save_item(
        {
            "kind": "link",
            "title": title,
            "url": TARGET,
            "tracked": True,
            "open_tag_ids": [tag(t) for t in tags],
        },
        admin,
    )
    db.session.commit()
    visits.forget_targets()
    return int(item.id)


@contextmanager
def quiet_hours(app, start: int, end: int):
    """The corp's quiet hours set to ``start``-``end`` for the block."""
    before = app.config["SIYU"]
    app.config["SIYU"] = dataclasses.replace(before, quiet_hours=(start, end))
    try:
        yield
    finally:
        app.config["SIYU"] = before


def through_oauth(client, token: str, who: str, agent: str = WECHAT):
    """Open a mass send's link in WeChat: Siyu's redirect to WeCom's authorize page, the sandbox naming
    ``who`` (``customer:<external_userid>`` or ``guest``), and the way back. Returns the last answer and the
    way-back path (to replay)."""
    first = client.get(f"/r/{token}", headers={"User-Agent": agent})
    assert first.status_code == 302, first.get_data(as_text=True)
    url = first.headers["Location"].split("#", 1)[0]
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    picked = requests.post(url, data={**params, "pick": who}, allow_redirects=False, timeout=10)
    assert picked.status_code == 302, picked.text
    back = urlsplit(picked.headers["Location"])
    path = f"{back.path}?{back.query}"
    return client.get(path, headers={"User-Agent": agent}), path


def opens():
    return db.session.scalars(select(RadarOpen).order_by(RadarOpen.id)).all()
