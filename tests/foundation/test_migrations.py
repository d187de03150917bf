"""Alembic migrations on an empty database (SQLite and PostgreSQL): every head applies,
the schema they build is exactly what the models declare, and everything downgrades to base.

Covers whatever migrations exist, the foundation's and every slice's branch."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from backend.core import migrate
from backend.models import metadata

IGNORED_TABLES = {"apscheduler_jobs"}  # created by APScheduler's job store, not by us
FOUNDATION_TABLES = {"users", "jurisdictions", "invite_codes", "audit_log", "fsm_state", "outbox", "stored_files"}


def _include(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and name in IGNORED_TABLES | {"alembic_version"})


def _diff(sync_url: str) -> list:
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _include})
            return compare_metadata(mc, metadata)
    finally:
        engine.dispose()


def _tables(sync_url: str) -> set[str]:
    engine = create_engine(sync_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _current_heads(sync_url: str) -> set[str]:
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def test_every_revision_chains_to_the_foundation():
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    revs = list(script.walk_revisions())
    assert any(r.revision == "0001_foundation" for r in revs)
    bases = script.get_bases()
    assert bases == ["0001_foundation"], f"a migration branch does not start from 0001_foundation: {bases}"


def test_upgrade_matches_models_then_downgrade_to_base(db_settings):
    db_settings.ensure_dirs()
    url = db_settings.sync_db_url
    assert _tables(url) == set()

    migrate.upgrade(url, "heads")
    heads = set(ScriptDirectory.from_config(migrate.alembic_config(url)).get_heads())
    assert _current_heads(url) == heads
    model_tables = set(metadata.tables)
    assert model_tables <= _tables(url), f"tables missing after upgrade: {model_tables - _tables(url)}"

    diff = _diff(url)
    assert diff == [], f"models and migrations disagree (write a migration): {diff}"

    # Idempotent: a second upgrade is a no-op.
    migrate.upgrade(url, "heads")

    migrate.downgrade(url, "base")
    assert _tables(url) - IGNORED_TABLES <= {"alembic_version"}
    assert _current_heads(url) == set()

    # And back up again: downgrade left nothing behind that blocks a fresh upgrade.
    migrate.upgrade(url, "heads")
    assert _diff(url) == []


def test_hehe_db_upgrade_command(tmp_path, monkeypatch):
    """`hehe db upgrade` / `hehe db downgrade base` through the real CLI."""
    from typer.testing import CliRunner

    from backend.cli import app
    from backend.core.config import get_settings

    monkeypatch.setenv("HEHE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["db", "upgrade"])
        assert res.exit_code == 0, res.output
        url = get_settings().sync_db_url
        assert FOUNDATION_TABLES <= _tables(url)
        res = runner.invoke(app, ["db", "downgrade", "base"])
        assert res.exit_code == 0, res.output
        assert _tables(url) <= {"alembic_version"}
    finally:
        get_settings.cache_clear()
