"""Run Alembic programmatically (``hehe db upgrade`` and application start-up).

Upgrades never race: on PostgreSQL ``migrations/env.py`` takes an advisory lock; on SQLite the
upgrade holds an exclusive lock on ``<database>.migrate.lock`` (two ``hehe serve`` or
``hehe db upgrade`` at once had failed with "table … already exists")."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(sync_url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def sqlite_file(sync_url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    url = make_url(sync_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


@contextmanager
def _upgrade_lock(sync_url: str):
    db = sqlite_file(sync_url)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.migrate.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(sync_url: str, target: str = "heads") -> None:
    with _upgrade_lock(sync_url):
        command.upgrade(alembic_config(sync_url), target)


def downgrade(sync_url: str, target: str = "base") -> None:
    with _upgrade_lock(sync_url):
        command.downgrade(alembic_config(sync_url), target)
