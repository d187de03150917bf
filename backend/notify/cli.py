"""``hehe outbox …``: what is waiting, what was given up on, and sending it again."""
from __future__ import annotations

import json
from typing import Optional

import typer

app = typer.Typer(name="outbox", help="Notifications owed to people: dead letters and retries.",
                  no_args_is_help=True, add_completion=False)


@app.command("list")
def list_(dead: bool = typer.Option(True, "--dead/--all", help="dead letters only (default)"),
          limit: int = typer.Option(100), as_json: bool = typer.Option(False, "--json")) -> None:
    """List dead letters: id, recipient, channel, when and why, and the first words."""
    from backend.cli import run_in_session  # (backend.cli loads this module)
    from backend.notify import service

    async def run(session):
        return await service.pending_count(session), [
            {"id": m.id, "user_id": u.id, "name": u.name, "channel": u.channel,
             "dead_at": m.dead_at.isoformat() if m.dead_at else None, "attempts": m.attempts,
             "why": m.last_error, "text": m.text[:60]}
            for m, u in await service.dead_letters(session, limit)]

    pending, rows = run_in_session(run)
    if as_json:
        typer.echo(json.dumps({"pending": pending, "dead": rows}, ensure_ascii=False))
        return
    typer.echo(f"pending: {pending}  dead letters: {len(rows)}")
    for r in rows:
        typer.echo(f"#{r['id']}  {r['name'] or r['user_id']} ({r['channel']})  {r['dead_at']}  {r['why']}\n"
                   f"      {r['text']}")


@app.command("retry")
def retry(ids: Optional[list[int]] = typer.Argument(None, help="dead letter ids; none = all")) -> None:
    """Queue dead letters again (after the cause is fixed, e.g. the person unblocked the bot)."""
    from backend.cli import run_in_session  # (backend.cli loads this module)
    from backend.notify import service

    n = run_in_session(lambda session: service.retry(session, list(ids or [])))
    typer.echo(f"queued again: {n}")
