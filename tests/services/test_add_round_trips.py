"""What an add costs the database: processing a new customer's add through the real worker writes the customer
and the relation with what WeCom listed in one INSERT each (no insert-then-update, no look for a relation of a
customer just inserted), reads the member once and the customer once, skips the brand-data matching when no
row waits, writes its timeline entries together, and the profile the add mirrored is the one WeCom gave."""

import re

from sqlalchemy import event, select

from bot.extensions import db
from bot.models import Customer, FollowRelation
from bot.services.directory.sync import sync_directory
from bot.services.tags.library import sync_corp_tags


def test_a_new_customers_add_writes_each_row_once(app, sim, corp, run_worker):
    with app.app_context():
        sync_directory()
        sync_corp_tags()
        db.session.commit()
        engine = db.engine
    sim.customer_adds(userid="staff0201", welcome=False)
    run_worker()  # the first add of the run: tokens, caches
    statements: list[str] = []

    def listen(conn, cursor, statement, params, context, executemany):
        statements.append(re.sub(r"\s+", " ", statement))

    contact, _ = sim.customer_adds(userid="staff0301", welcome=False)
    event.listen(engine, "before_cursor_execute", listen)
    try:
        run_worker()
    finally:
        event.remove(engine, "before_cursor_execute", listen)

    def count(prefix: str) -> int:
        return sum(1 for s in statements if s.startswith(prefix))

    assert count("INSERT INTO customers ") == 1 and count("INSERT INTO follow_relations ") == 1
    assert count("UPDATE follow_relations ") == 0  # inserted with what WeCom listed
    assert not [s for s in statements if s.startswith("UPDATE customers SET name")]
    assert count("SELECT staff.") == 1  # the member read once, kept on the relation
    assert count("SELECT customers.") == 1  # the takeover check's look; the insert does not look again
    assert count("SELECT follow_relations.") == 0  # a customer just inserted has no relation yet
    assert count("UPDATE customers ") == 0  # the add's interaction time goes in with the row
    # no membership or order waits: one look for the batch, no mobiles read, nothing matched
    assert count("SELECT customer_mobiles.") == 0 and count("UPDATE memberships ") == 0
    assert count("SELECT (EXISTS (SELECT memberships.") == 1
    assert count("INSERT INTO customer_events ") == 1  # the add's two timeline entries in one statement
    assert count("UPDATE callback_events ") == 1  # the event marked done with its work, in the same commit
    # 19 before the issue 24 work (the matching's five among them), then 12; the event's own lock, status and
    # the batch's read of the events included. In a batch of adds most of these are the batch's, not each
    # add's (tests/handlers/test_batches.py: three statements an add and eight a batch)
    assert len(statements) <= 11, statements
    with app.app_context():
        customer = db.session.scalar(select(Customer).where(Customer.external_userid == contact.external_userid))
        follow = db.session.scalar(select(FollowRelation).where(FollowRelation.customer_id == customer.id))
        assert customer.name == contact.name and customer.last_interaction_at is not None
        assert follow.status == "active" and follow.added_at is not None and follow.staff.userid == "staff0301"
        assert follow.add_way == corp.contacts[contact.external_userid].follows["staff0301"].add_way
