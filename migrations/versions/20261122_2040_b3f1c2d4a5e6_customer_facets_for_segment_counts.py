"""customer facets for segment counts (PostgreSQL)

Revision ID: b3f1c2d4a5e6
Revises: 7b621a3809c2
Create Date: 2026-11-22 20:40:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b3f1c2d4a5e6'
down_revision = '7b621a3809c2'
branch_labels = None
depends_on = None

# One narrow row per customer with the keys of every tag on any of their follow relations and the stores of
# every member who follows (or followed) them, each an int array under a GIN index: a segment's count reads
# this table alone (bot/models/facets.py). The database keeps it in step: statement triggers on the tables
# the facets come from recompute the customers a statement touched, whichever code (or hand-written SQL)
# changed them. PostgreSQL only; elsewhere segments count from the relations directly.
#
# A refresh first locks the customers' facet rows (in id order) and only then reads the relations, in a new
# statement and so a new snapshot: of two transactions changing one customer's tags at once, the second waits
# for the first and then sees its rows, so neither overwrites the other's result.
FUNCTIONS = r"""
CREATE FUNCTION siyu_refresh_facets(ids integer[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM customer_facets WHERE customer_id = ANY (ids) ORDER BY customer_id FOR UPDATE;
    UPDATE customer_facets f SET
        tag_keys = coalesce((
            SELECT array_agg(DISTINCT k.key ORDER BY k.key)
            FROM follow_relations r JOIN follow_tags t ON t.follow_id = r.id JOIN tag_keys k ON k.tag_id = t.tag_id
            WHERE r.customer_id = f.customer_id), '{}'),
        store_ids = coalesce((
            SELECT array_agg(DISTINCT s.store_id ORDER BY s.store_id)
            FROM follow_relations r JOIN staff_stores s ON s.staff_id = r.staff_id
            WHERE r.customer_id = f.customer_id), '{}')
    WHERE f.customer_id = ANY (ids);
END $$;

CREATE FUNCTION siyu_rebuild_facets() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    LOCK TABLE customer_facets IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO tag_keys (tag_id) SELECT DISTINCT tag_id FROM follow_tags WHERE tag_id IS NOT NULL
    ON CONFLICT (tag_id) DO NOTHING;
    -- Missing rows are written whole and rows that differ are rewritten; equal rows are not touched.
    WITH tagged AS (
        SELECT t.customer_id, array_agg(DISTINCT k.key ORDER BY k.key) AS keys
        FROM follow_tags t JOIN tag_keys k ON k.tag_id = t.tag_id GROUP BY t.customer_id
    ), stored AS (
        SELECT r.customer_id, array_agg(DISTINCT s.store_id ORDER BY s.store_id) AS ids
        FROM follow_relations r JOIN staff_stores s ON s.staff_id = r.staff_id GROUP BY r.customer_id
    )
    INSERT INTO customer_facets AS f (customer_id, tag_keys, store_ids)
    SELECT c.id, coalesce(tagged.keys, '{}'), coalesce(stored.ids, '{}')
    FROM customers c
    LEFT JOIN tagged ON tagged.customer_id = c.id
    LEFT JOIN stored ON stored.customer_id = c.id
    ON CONFLICT (customer_id) DO UPDATE SET tag_keys = excluded.tag_keys, store_ids = excluded.store_ids
    WHERE f.tag_keys <> excluded.tag_keys OR f.store_ids <> excluded.store_ids;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END $$;

CREATE FUNCTION siyu_facets_customers_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_facets (customer_id) SELECT id FROM new_rows ON CONFLICT (customer_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE FUNCTION siyu_facets_tags_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tag_keys (tag_id) SELECT DISTINCT tag_id FROM new_rows WHERE tag_id IS NOT NULL
    ON CONFLICT (tag_id) DO NOTHING;
    PERFORM siyu_refresh_facets(ARRAY(SELECT DISTINCT customer_id FROM new_rows));
    RETURN NULL;
END $$;

-- The customers of the rows a statement removed (relations or tags), or of the relations it added.
CREATE FUNCTION siyu_facets_old_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM siyu_refresh_facets(ARRAY(SELECT DISTINCT customer_id FROM old_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION siyu_facets_new_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM siyu_refresh_facets(ARRAY(SELECT DISTINCT customer_id FROM new_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION siyu_facets_tags_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tag_keys (tag_id) SELECT DISTINCT tag_id FROM new_rows WHERE tag_id IS NOT NULL
    ON CONFLICT (tag_id) DO NOTHING;
    PERFORM siyu_refresh_facets(ARRAY(
        SELECT DISTINCT unnest(ARRAY[o.customer_id, n.customer_id]) FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE n.tag_id IS DISTINCT FROM o.tag_id OR n.customer_id <> o.customer_id));
    RETURN NULL;
END $$;

CREATE FUNCTION siyu_facets_follows_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM siyu_refresh_facets(ARRAY(
        SELECT DISTINCT unnest(ARRAY[o.customer_id, n.customer_id]) FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE n.staff_id <> o.staff_id OR n.customer_id <> o.customer_id));
    RETURN NULL;
END $$;

CREATE FUNCTION siyu_facets_stores_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM siyu_refresh_facets(ARRAY(
        SELECT DISTINCT r.customer_id FROM follow_relations r WHERE r.staff_id IN (SELECT staff_id FROM new_rows)));
    RETURN NULL;
END $$;

CREATE FUNCTION siyu_facets_stores_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM siyu_refresh_facets(ARRAY(
        SELECT DISTINCT r.customer_id FROM follow_relations r WHERE r.staff_id IN (SELECT staff_id FROM old_rows)));
    RETURN NULL;
END $$;
"""

# (trigger, table, event, transition table, function)
TRIGGERS = (
    ("trg_facets_customers_added", "customers", "INSERT", "NEW TABLE AS new_rows", "siyu_facets_customers_added"),
    ("trg_facets_tags_added", "follow_tags", "INSERT", "NEW TABLE AS new_rows", "siyu_facets_tags_added"),
    ("trg_facets_tags_removed", "follow_tags", "DELETE", "OLD TABLE AS old_rows", "siyu_facets_old_rows"),
    (
        "trg_facets_tags_changed",
        "follow_tags",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "siyu_facets_tags_changed",
    ),
    ("trg_facets_follows_added", "follow_relations", "INSERT", "NEW TABLE AS new_rows", "siyu_facets_new_rows"),
    ("trg_facets_follows_removed", "follow_relations", "DELETE", "OLD TABLE AS old_rows", "siyu_facets_old_rows"),
    (
        "trg_facets_follows_changed",
        "follow_relations",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "siyu_facets_follows_changed",
    ),
    ("trg_facets_stores_added", "staff_stores", "INSERT", "NEW TABLE AS new_rows", "siyu_facets_stores_added"),
    ("trg_facets_stores_removed", "staff_stores", "DELETE", "OLD TABLE AS old_rows", "siyu_facets_stores_removed"),
)

FUNCTION_NAMES = sorted({t[4] for t in TRIGGERS} | {"siyu_refresh_facets(integer[])", "siyu_rebuild_facets()"})


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE tag_keys (key serial PRIMARY KEY, tag_id varchar(64) NOT NULL UNIQUE)")
    op.execute(
        "CREATE TABLE customer_facets ("
        " customer_id integer PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,"
        " tag_keys integer[] NOT NULL DEFAULT '{}',"
        " store_ids integer[] NOT NULL DEFAULT '{}')"
    )
    op.execute(FUNCTIONS)
    for name, table, event, transition, function in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.execute("SELECT siyu_rebuild_facets()")
    # The indexes after the fill: one build instead of a million insertions.
    op.execute("CREATE INDEX ix_customer_facets_tag_keys ON customer_facets USING gin (tag_keys)")
    op.execute("CREATE INDEX ix_customer_facets_store_ids ON customer_facets USING gin (store_ids)")
    op.execute("ANALYZE customer_facets")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, *_ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for function in FUNCTION_NAMES:
        signature = function if "(" in function else f"{function}()"
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute("DROP TABLE IF EXISTS customer_facets")
    op.execute("DROP TABLE IF EXISTS tag_keys")
