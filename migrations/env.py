from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from backend.models import metadata

config = context.config
IGNORED_TABLES = {"apscheduler_jobs"}  # owned by APScheduler's job store
MIGRATION_LOCK_KEY = 0x4845_4845  # "HEHE"


def include_object(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and name in IGNORED_TABLES)


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes upgrading at once (two replicas starting, `hehe db upgrade` beside a
            # server) take turns: a session-level advisory lock, held by this connection until
            # it closes; the second one then finds the schema current. (SQLite: a file lock in
            # backend.core.migrate.)
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
        context.configure(connection=conn, target_metadata=metadata, include_object=include_object,
                          render_as_batch=conn.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
