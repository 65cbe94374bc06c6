"""Customer facets (PostgreSQL): the triggers keep them equal to the relations through every kind of write,
concurrent ones included, and counts read from them agree with the relations for any rule."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from bot.extensions import db
from bot.models import Customer, Role, Staff, Store, User
from bot.services.segments import rules as segments
from bot.services.users.scope import customer_condition
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND != "services", reason="facets exist on PostgreSQL only; SQLite counts from the relations"
)

# The facets every customer should have, computed from the relations the slow way.
DRIFT = text("""
    SELECT c.id, f.tag_keys, f.store_ids,
           coalesce((SELECT array_agg(DISTINCT k.key ORDER BY k.key) FROM follow_tags t
                     JOIN tag_keys k ON k.tag_id = t.tag_id WHERE t.customer_id = c.id), '{}') AS want_tags,
           coalesce((SELECT array_agg(DISTINCT s.store_id ORDER BY s.store_id) FROM follow_relations r
                     JOIN staff_stores s ON s.staff_id = r.staff_id WHERE r.customer_id = c.id), '{}') AS want_stores
    FROM customers c LEFT JOIN customer_facets f ON f.customer_id = c.id
""")


def drift() -> list[Any]:
    """Customers whose facet row is missing or differs from their relations."""
    rows = db.session.execute(DRIFT).all()
    return [r for r in rows if r.tag_keys is None or (r.tag_keys, r.store_ids) != (r.want_tags, r.want_stores)]


def facets_of(customer_id: int) -> tuple[set[str], set[int]]:
    row = db.session.execute(
        text("SELECT tag_keys, store_ids FROM customer_facets WHERE customer_id = :c"), {"c": customer_id}
    ).one()
    names = set(db.session.scalars(text("SELECT tag_id FROM tag_keys WHERE key = ANY(:k)"), {"k": row.tag_keys}).all())
    return names, set(row.store_ids)


def seed(n_customers: int = 4) -> None:
    """Stores 1–3, staff 1–3 (staff n in store n), customers 1..n, each followed by staff 1."""
    for n in (1, 2, 3):
        store = Store(id=n, department_id=n, name=f"店{n}")
        db.session.add_all([store, Staff(id=n, userid=f"u{n}", name=f"员工{n}", stores=[store])])
    db.session.flush()
    for sql in (
        """INSERT INTO customers (id, external_userid, name, avatar, type, gender, corp_name, notes, created_at,
           updated_at) SELECT c, 'wm' || c, '客户' || c, '', 1, 0, '', '', now(), now() FROM generate_series(1, :n) c""",
        """INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state,
           status) SELECT c, 1, '', '', 1, '', '', 'active' FROM generate_series(1, :n) c ORDER BY c""",
    ):
        db.session.execute(text(sql), {"n": n_customers})


def tag(customer_id: int, tag_id: str, staff_id: int = 1) -> None:
    """Tag the customer on their relation with the staff member."""
    db.session.execute(
        text("""INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
                SELECT id, customer_id, :t, '', '', 1 FROM follow_relations WHERE customer_id = :c AND staff_id = :s"""),
        {"c": customer_id, "t": tag_id, "s": staff_id},
    )


def test_facets_follow_every_kind_of_write(app):
    with app.app_context():
        seed()
        assert facets_of(1) == (set(), {1}) and drift() == []
        tag(1, "etA")
        tag(1, "etB")
        db.session.execute(
            text("""INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
                    SELECT id, customer_id, 'etC', '', '', 1 FROM follow_relations WHERE customer_id >= 2""")
        )
        assert facets_of(1) == ({"etA", "etB"}, {1}) and facets_of(3) == ({"etC"}, {1})
        # A second follower from store 2, then a member moved from store 1 to store 3.
        db.session.execute(
            text("""INSERT INTO follow_relations (id, customer_id, staff_id, remark, description, add_way,
                    oper_userid, state, status) VALUES (10, 1, 2, '', '', 1, '', '', 'active')""")
        )
        tag(1, "etD", staff_id=2)
        assert facets_of(1) == ({"etA", "etB", "etD"}, {1, 2})
        db.session.execute(text("DELETE FROM staff_stores WHERE staff_id = 1"))
        db.session.execute(text("INSERT INTO staff_stores (staff_id, store_id) VALUES (1, 3)"))
        assert facets_of(1) == ({"etA", "etB", "etD"}, {2, 3}) and facets_of(4) == ({"etC"}, {3})
        # A tag changed in place, a tag removed, a relation handed to another member, a relation deleted
        # (its tags go by cascade).
        db.session.execute(text("UPDATE follow_tags SET tag_id = 'etE' WHERE tag_id = 'etA'"))
        db.session.execute(text("DELETE FROM follow_tags WHERE tag_id = 'etB'"))
        db.session.execute(text("UPDATE follow_relations SET staff_id = 3 WHERE id = 10"))
        assert facets_of(1) == ({"etE", "etD"}, {3})
        db.session.execute(text("DELETE FROM follow_relations WHERE id = 1"))
        assert facets_of(1) == ({"etD"}, {3})
        # Updates that change neither tags nor members leave facets alone; a removed customer takes its row.
        db.session.execute(text("UPDATE follow_relations SET remark = '老客户', status = 'deleted_by_customer'"))
        db.session.execute(text("DELETE FROM customers WHERE id = 2"))
        assert drift() == []
        assert db.session.scalar(text("SELECT count(*) FROM customer_facets")) == 3
        db.session.commit()


def test_facets_follow_the_app_through_real_callbacks(app, sim, corp, run_worker):
    people = [sim.customer_adds(userid="staff0201")[0] for _ in range(3)]
    run_worker()
    tags = list(corp.tag_index())
    sim.member_tags_customer(people[0].external_userid, "staff0201", tags[:2])
    sim.member_tags_customer(people[1].external_userid, "staff0201", tags[1:3])
    sim.customer_deletes_member(people[2].external_userid, "staff0201")
    run_worker()
    with app.app_context():
        assert drift() == []
        rule = segments.parse_rule({"conditions": [{"type": "tags", "match": "any", "tag_ids": [tags[1]]}]})
        assert segments.count(rule, None) == 2


def test_a_second_writer_waits_and_keeps_the_first_writers_tag(app):
    """Two transactions tag one customer at once. The second's trigger waits for the first's facet row
    lock, then reads the relations afresh: both tags are in the facets, not only the last writer's."""
    with app.app_context():
        seed(1)
        db.session.commit()
        engine = db.engine
        first = engine.connect()
        first.begin()
        first.execute(
            text("""INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
                    SELECT id, 1, 'etFirst', '', '', 1 FROM follow_relations WHERE customer_id = 1""")
        )
        done = threading.Event()

        def second() -> None:
            with engine.begin() as conn:
                conn.execute(
                    text("""INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
                            SELECT id, 1, 'etSecond', '', '', 1 FROM follow_relations WHERE customer_id = 1""")
                )
            done.set()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        waited = not done.is_set()
        first.commit()
        first.close()
        thread.join(10)
        assert waited and done.is_set()
        db.session.rollback()
        assert facets_of(1)[0] == {"etFirst", "etSecond"} and drift() == []


def test_rebuild_repairs_facets_and_reports_what_it_changed(app):
    with app.app_context():
        seed()
        tag(1, "etA")
        db.session.execute(text("UPDATE customer_facets SET tag_keys = '{}', store_ids = '{7}' WHERE customer_id <= 2"))
        db.session.execute(text("DELETE FROM customer_facets WHERE customer_id = 3"))
        assert len(drift()) == 3
        assert segments.rebuild_facets() == 3
        assert drift() == [] and segments.rebuild_facets() == 0
        db.session.commit()


# -- counts from facets agree with the relations, for random data and random rules -------------------

TAGS = [f"et{i}" for i in range(6)]
condition = st.one_of(
    st.builds(
        lambda match, ids: {"type": "tags", "match": match, "tag_ids": ids},
        st.sampled_from(["any", "all", "none"]),
        st.lists(st.sampled_from([*TAGS, "etNever"]), min_size=1, max_size=3, unique=True),
    ),
    st.builds(lambda ids: {"type": "store", "store_ids": ids}, st.lists(st.integers(1, 4), min_size=1, max_size=2)),
    st.builds(lambda v: {"type": "lost", "value": v}, st.booleans()),
    st.builds(lambda ids: {"type": "staff", "userids": ids}, st.lists(st.sampled_from(["u1", "u2", "u3"]), min_size=1)),
    # Conditions on customer columns: the count keeps its join to customers for these.
    st.builds(lambda stage: {"type": "stage", "stage": stage}, st.sampled_from(segments.STAGES)),
    st.builds(lambda month: {"type": "birthday_month", "month": month}, st.integers(1, 3)),
)
rules = st.fixed_dictionaries(
    {"op": st.sampled_from(["and", "or"]), "conditions": st.lists(condition, min_size=0, max_size=4)}
)
links = st.lists(st.tuples(st.integers(1, 8), st.integers(1, 3), st.sampled_from(TAGS)), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=rules, data=links, scope=st.sampled_from([None, [], [2], [1, 3]]))
def test_counts_from_facets_equal_counts_from_the_relations(app, rule, data, scope):
    with app.app_context():
        try:
            seed(8)
            # Birthdays in January–March for some, and a relation first added long ago for others.
            db.session.execute(text("UPDATE customers SET birthday = make_date(1990, 1 + id % 3, 1) WHERE id % 2 = 0"))
            db.session.execute(
                text("UPDATE follow_relations SET added_at = now() - interval '30 days' WHERE id % 3 = 0")
            )
            for customer, staff, tag_id in data:
                db.session.execute(
                    text("""INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way,
                            oper_userid, state, status) VALUES (:c, :s, '', '', 1, '', '', 'deleted_by_customer')
                            ON CONFLICT DO NOTHING"""),
                    {"c": customer, "s": staff},
                )
                tag(customer, tag_id, staff)
            user = None if scope is None else _store_manager(scope)
            parsed = segments.parse_rule(rule)
            assert segments.count(parsed, user) == relational_count(parsed.op, parsed.conditions, user)
            explained = segments.explain(parsed, user)
            assert explained["in_scope"] == relational_count("and", (), user)
            for i, (step, c) in enumerate(zip(explained["steps"], parsed.conditions, strict=True)):
                assert step["alone"] == relational_count(parsed.op, (c,), user)
                assert step["combined"] == relational_count(parsed.op, parsed.conditions[: i + 1], user)
        finally:
            db.session.rollback()


def relational_count(op: str, conditions: Any, user: Any) -> int:
    """The count the slow way: customers filtered by EXISTS over the relations."""
    query = select(func.count(Customer.id)).where(segments.rule_sql(segments.Rule(op, tuple(conditions))))
    if user is not None:
        query = query.where(customer_condition(user))
    return int(db.session.scalar(query) or 0)


def _store_manager(stores: list[int]) -> Any:
    user = User(username="manager", role=Role.store_manager, password_hash="x")
    user.stores = [db.session.get(Store, s) for s in stores]
    db.session.add(user)
    db.session.flush()
    return user
