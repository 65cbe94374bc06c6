"""Customer facets (PostgreSQL only): what segment counts read instead of the relations.

``customer_facets`` holds one narrow row per customer: ``tag_keys``, the keys (``tag_keys``) of every tag on
any of the customer's follow relations, and ``store_ids``, the stores of every member who follows or
followed them; each array has a GIN index. "Has tag A or B, in stores 1–10, without tag C" is then a bitmap
scan of one table instead of semi-joins over the customers, the relations and the tag links.

The migration that makes them (``customer_facets_for_segment_counts``) also makes the statement triggers
that keep them in step with ``customers``, ``follow_relations``, ``follow_tags`` and ``staff_stores``, and
``siyu_rebuild_facets()``, which recomputes them all. The database maintains them, so they are not models:
they sit in their own metadata, out of ``db.create_all`` and of the model/migration comparison.
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.dialects.postgresql import ARRAY

metadata = MetaData()

customer_facets = Table(
    "customer_facets",
    metadata,
    Column("customer_id", Integer, primary_key=True),
    Column("tag_keys", ARRAY(Integer), nullable=False),
    Column("store_ids", ARRAY(Integer), nullable=False),
)

tag_keys = Table(
    "tag_keys",
    metadata,
    Column("key", Integer, primary_key=True),
    Column("tag_id", String(64), nullable=False, unique=True),
)

TABLES = frozenset(metadata.tables)
