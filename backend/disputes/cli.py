"""``hehe disputes …``: rebuild the stats rollup, print the county × month table, run the
overdue sweep once (e.g. after the app ran without a scheduler)."""
from __future__ import annotations

import asyncio
import json

import typer

from backend.core.config import get_settings

app = typer.Typer(name="disputes", help="Dispute mediation (五环智控): stats and maintenance.",
                  no_args_is_help=True, add_completion=False)


async def _with_session(fn):
    from backend.core import migrate
    from backend.core.db import make_engine, make_sessionmaker, session_scope

    s = get_settings()
    s.ensure_dirs()
    await asyncio.to_thread(migrate.upgrade, s.sync_db_url)
    engine = make_engine(s.db_url)
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            return await fn(session)
    finally:
        await engine.dispose()


@app.command("rebuild-stats")
def rebuild_stats() -> None:
    """Recompute the dispute_monthly rollup from the cases (after bulk imports)."""
    from backend.disputes import stats

    n = asyncio.run(_with_session(stats.rebuild))
    typer.echo(f"dispute_monthly: {n} rows")


@app.command("stats")
def show_stats(month_from: str = typer.Option(None, help="YYYY-MM"), month_to: str = typer.Option(None)) -> None:
    """Print the county × month table as JSON lines."""
    from backend.disputes import stats

    async def run(session):
        return await stats.compute(session, None, month_from=month_from, month_to=month_to)

    for row in asyncio.run(_with_session(run)):
        typer.echo(json.dumps(row.as_dict(), ensure_ascii=False))


@app.command("sweep")
def sweep() -> None:
    """Apply every passed deadline once (overdue flags and supervisor notifications)."""
    from backend.disputes import service

    n = asyncio.run(_with_session(service.sweep_overdue))
    typer.echo(f"overdue deadlines applied: {n}")
