"""``hehe disputes …``: rebuild the stats rollup, print the county × month table, run the
overdue sweep once (e.g. after the app ran without a scheduler)."""
from __future__ import annotations

import json

import typer

app = typer.Typer(name="disputes", help="Dispute mediation (五环智控): stats and maintenance.",
                  no_args_is_help=True, add_completion=False)


@app.command("rebuild-stats")
def rebuild_stats() -> None:
    """Recompute the dispute_monthly rollup from the cases (after bulk imports)."""
    from backend.cli import run_in_session  # (backend.cli loads this module)
    from backend.disputes import stats

    n = run_in_session(stats.rebuild)
    typer.echo(f"dispute_monthly: {n} rows")


@app.command("stats")
def show_stats(month_from: str = typer.Option(None, help="YYYY-MM"), month_to: str = typer.Option(None)) -> None:
    """Print the county × month table as JSON lines."""
    from backend.cli import run_in_session  # (backend.cli loads this module)
    from backend.disputes import stats

    async def run(session):
        return await stats.compute(session, None, month_from=month_from, month_to=month_to)

    for row in run_in_session(run):
        typer.echo(json.dumps(row.as_dict(), ensure_ascii=False))


@app.command("sweep")
def sweep() -> None:
    """Act once on everything due now (reminders, overdue flags, escalations), as the
    scheduler's sweep does."""
    from backend.cli import run_in_session  # (backend.cli loads this module)
    from scheduler.jobs.disputes import sweep_session

    n = run_in_session(sweep_session)
    typer.echo(f"cases acted on: {n}")
