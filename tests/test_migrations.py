"""The Alembic migrations build exactly the schema the models describe, on
SQLite and on PostgreSQL, and every step can be undone and redone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import Column, MetaData, String, inspect

from ghimaging import MIGRATIONS_DIR, create_app
from ghimaging.extensions import db


def schema_diff(connection, metadata: MetaData) -> list:
    ctx = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return compare_metadata(ctx, metadata)


def model_tables() -> set[str]:
    return set(db.metadata.tables)


def test_migrated_schema_matches_the_models(app):
    """A model change without a migration makes this fail."""
    with db.engine.connect() as conn:
        assert schema_diff(conn, db.metadata) == []


def test_the_test_database_is_at_the_newest_revision(app):
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert len(heads) == 1, f"several heads, merge them: {heads}"
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == heads[0]


def test_the_comparison_notices_a_column_the_migrations_lack(app):
    changed = MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["patients"].append_column(Column("nickname", String(40), nullable=True))
    with db.engine.connect() as conn:
        diff = schema_diff(conn, changed)
    assert [(d[0], d[2], d[3].name) for d in diff if d[0] == "add_column"] == [("add_column", "patients", "nickname")]


def test_every_migration_downgrades_and_upgrades_again(fresh_url, tmp_path):
    fresh = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": fresh_url, "TESTING": True})
    directory = str(MIGRATIONS_DIR)
    script = ScriptDirectory(directory)
    revisions = list(reversed(list(script.walk_revisions())))  # oldest first
    assert revisions, "no migrations found"
    with fresh.app_context():
        try:
            for rev in revisions:
                upgrade(directory=directory, revision=rev.revision)
                downgrade(directory=directory, revision=rev.down_revision or "base")
                upgrade(directory=directory, revision=rev.revision)

            tables = set(inspect(db.engine).get_table_names())
            assert model_tables() <= tables
            with db.engine.connect() as conn:
                assert schema_diff(conn, db.metadata) == []

            downgrade(directory=directory, revision="base")
            assert set(inspect(db.engine).get_table_names()) - {"alembic_version"} == set()

            upgrade(directory=directory)
            assert model_tables() <= set(inspect(db.engine).get_table_names())
            with db.engine.connect() as conn:
                assert schema_diff(conn, db.metadata) == []
                assert MigrationContext.configure(conn).get_current_revision() == script.get_current_head()
        finally:
            db.session.remove()
            db.engine.dispose()
