"""One head, files that sort in the order of the chain, upgrade and downgrade on the suite's database, and models
that match the migrations."""

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from bot import MIGRATIONS_DIR
from bot.extensions import db
from bot.models import include_in_autogenerate


def test_one_head():
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1


def test_file_names_start_with_their_creation_time_and_revision():
    """alembic.ini's file_template: YYYYMMDD_HHMM_<revision>_<slug>.py, the time being the Create Date's."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    for revision in script.walk_revisions():
        path = Path(revision.path)
        created = re.search(r"^Create Date: (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d)", path.read_text(), re.M)
        assert created, path.name
        stamp = "{}{}{}_{}{}".format(*created.groups())
        assert path.name.startswith(f"{stamp}_{revision.revision}_"), path.name


def test_file_names_sort_in_the_order_of_the_chain():
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    chain = [Path(revision.path).name for revision in reversed(list(script.walk_revisions()))]
    assert sorted(path.name for path in (MIGRATIONS_DIR / "versions").glob("*.py")) == chain


def test_models_match_the_migrations(ctx):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_in_autogenerate})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


@pytest.mark.usefixtures("ctx")
def test_downgrade_to_nothing_and_back():
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    assert {"callback_events", "customers", "follow_relations", "staff", "stores", "tags"} <= set(
        inspect(db.engine).get_table_names()
    )
