"""Run Alembic programmatically (``hehe db upgrade`` and application start-up)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(sync_url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def upgrade(sync_url: str, target: str = "heads") -> None:
    command.upgrade(alembic_config(sync_url), target)


def downgrade(sync_url: str, target: str = "base") -> None:
    command.downgrade(alembic_config(sync_url), target)
