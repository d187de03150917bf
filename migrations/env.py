from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from backend.models import metadata

config = context.config
IGNORED_TABLES = {"apscheduler_jobs"}  # owned by APScheduler's job store


def include_object(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and name in IGNORED_TABLES)


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, include_object=include_object,
                          render_as_batch=conn.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
