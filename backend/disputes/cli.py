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
    from backend.core.clock import now
    from backend.disputes import service

    async def run(session):
        return await service.sweep_due(session, now())

    n = run_in_session(run)
    typer.echo(f"cases acted on: {n}")


def holidays(action: str = typer.Argument(..., help="show | import"),
             target: str = typer.Argument(None, help="show: a year (default: this and next year); "
                                                      "import: the notice's text file or a TOML file"),
             year: int = typer.Option(None, help="import: the year, if the notice does not name it")) -> None:
    """The official holiday arrangements deadlines count with (放假调休): show a year, or import
    the State Council notice for a year (``hehe holidays import notice.txt``)."""
    from datetime import date
    from pathlib import Path

    from backend.core import workdays

    if action == "show":
        years = [int(target)] if target else [date.today().year, date.today().year + 1]
        for y in years:
            for line in workdays.describe_year(y):
                typer.echo(line)
        gap = workdays.missing_next_year()
        if gap:
            typer.echo(f"warning: no arrangement for {gap} yet; import the State Council notice", err=True)
        return
    if action != "import" or not target:
        typer.echo("usage: hehe holidays show [YEAR] | hehe holidays import FILE [--year YYYY]", err=True)
        raise typer.Exit(2)
    try:
        added = workdays.import_arrangement(Path(target), year)
    except (OSError, ValueError) as e:
        typer.echo(f"could not import {target}: {e}", err=True)
        raise typer.Exit(2) from e
    for y, e in sorted(added.items()):
        typer.echo(f"{y}: {len(e.get('rest', []))} rest entries, {len(e.get('workdays', []))} 调休 workdays "
                   f"→ {workdays.imported_path()}")


COMMANDS = {"holidays": holidays}
