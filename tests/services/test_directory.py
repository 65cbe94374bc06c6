from sqlalchemy import select

from bot.extensions import db
from bot.models import Staff, Store
from bot.services.directory.sync import ensure_staff, sync_directory


def test_directory_sync_makes_stores_and_staff(ctx, sim, corp):
    progress = []
    counts = sync_directory(lambda done, total: progress.append((done, total)))
    db.session.commit()
    assert counts == {"stores": 3, "staff": 4}  # 总部 + 2 stores, 2 members each
    assert progress[-1] == (3, 3)
    stores = {s.name: s for s in db.session.scalars(select(Store))}
    member = db.session.scalar(select(Staff).where(Staff.userid == "staff0201"))
    assert member.name == corp.users["staff0201"]["name"] and member.position == "店长"
    assert [s.department_id for s in member.stores] == [2] and stores["总部"].parent_department_id == 0


def test_sync_fills_in_a_placeholder_and_retires_who_left(ctx, sim, corp):
    placeholder = ensure_staff("staff0201")
    ensure_staff("gone")
    db.session.commit()
    assert placeholder.name == "staff0201"
    sync_directory()
    db.session.commit()
    names = {s.userid: (s.name, s.active) for s in db.session.scalars(select(Staff))}
    assert names["staff0201"] == (corp.users["staff0201"]["name"], True)
    assert names["gone"] == ("gone", False)


def test_removed_department_is_inactive(ctx, sim, corp):
    sync_directory()
    del corp.departments[3]
    for user in corp.users.values():
        user["department"] = [d for d in user["department"] if d != 3] or [1]
    sync_directory()
    db.session.commit()
    assert {s.department_id: s.active for s in db.session.scalars(select(Store))}[3] is False
