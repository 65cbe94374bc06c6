"""The sandbox's customers reading radar links: after the demo's mass send with a tracked link is confirmed,
they open it over real HTTP in WeChat (WeCom's OAuth hop naming them), in a browser (anonymous), twice (a
reload) — and a preview fetcher reads it without an open — so the demo shows radar figures and alerts."""

from sqlalchemy import select

from bot.demo import STORE_STATE, seed_demo
from bot.extensions import db
from bot.models import RadarOpen, User
from bot.sandbox.members import confirm_mass_task
from bot.sandbox.radar import open_link, received_links, someone_reads
from bot.services.directory.sync import sync_directory
from bot.services.tags.library import sync_corp_tags
from tests.conftest import make_user
from tests.services.radar_helpers import quiet_hours


def test_the_demo_customers_open_the_radar_link_every_way(app, sim, corp, run_worker):
    user_id, _ = make_user(app, "admin", "admin")
    with app.app_context():
        sync_directory()
        sync_corp_tags()
        assert "a dispatched mass send with a radar link" in seed_demo(db.session.get(User, user_id), corp)
    scanned = {sim.scan(corp.contact_way_for_state(STORE_STATE))[0].external_userid for _ in range(3)}
    run_worker()  # dispatches the sends
    for msgid in list(corp.mass_tasks):
        confirm_mass_task(corp, msgid)
    links = received_links(corp)
    # the three who scanned got a tracked link (as did the demo's brand customers, bot.demo_brand, already there)
    assert scanned <= {r.external_userid for r in links} and all("/r/" in r.url for r in links)
    ours = [r for r in links if r.external_userid in scanned]
    first, second, third = sorted({r.external_userid: r for r in ours}.values(), key=lambda r: r.external_userid)
    with quiet_hours(app, 0, 0):
        assert "OAuth, 302" in open_link(first, "wechat")
        assert "(302)" in open_link(second, "browser")
        assert "(OAuth, 302, OAuth, 302)" in open_link(third, "reload")
        assert "(302)" in open_link(first, "preview")
        run_worker()
    with app.app_context():
        opened = db.session.scalars(select(RadarOpen).order_by(RadarOpen.id)).all()
        got = {(o.visitor if o.via == "oauth" else "anonymous", o.count) for o in opened}
        assert got == {(f"c:{first.external_userid}", 1), ("anonymous", 1), (f"c:{third.external_userid}", 2)}
    assert any("打开了" in m.get("textcard", {}).get("title", "") for m in corp.app_messages)
    assert someone_reads(corp, sim.rng) is not None  # the simulator's own pick
