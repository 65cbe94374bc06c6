"""trigram indexes for customer search

Revision ID: 621841f28ae2
Revises: 7fae1ba676ed
Create Date: 2026-11-22 11:45:49.032098

"""
import logging

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '621841f28ae2'
down_revision = '7fae1ba676ed'
branch_labels = None
depends_on = None


log = logging.getLogger("alembic.runtime.migration")

# Substring search ("LIKE '%王%'") on names and remarks: trigram GIN indexes on PostgreSQL. Other
# databases keep scanning. pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create
# it; where that is refused, the search still works, only slower, and the log says so.
INDEXES = (("ix_customers_name_trgm", "customers", "name"), ("ix_follow_relations_remark_trgm", "follow_relations", "remark"))


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm is not available (%s): customer search will scan instead of using an index", exc.orig)
        return
    for name, table, column in INDEXES:
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({column} gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _table, _column in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
