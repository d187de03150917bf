"""``hehe users …``: deactivate and reactivate people (the API's admin routes do the same)."""
from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(name="users", help="People: deactivate / reactivate accounts.", no_args_is_help=True)


def _set(user: str, active: bool, note: str | None) -> str:
    from backend.cli import run_in_session
    from backend.users import service

    async def go(session):
        u = await service.find_user(session, user)
        await service.set_active(session, u, active, actor="cli", note=note)
        return f"{u.telegram_id}\t{u.name or '-'}\t{'active' if active else 'deactivated'}"

    return run_in_session(go)


@app.command("deactivate")
def deactivate(user: str = typer.Argument(..., help="Telegram / local id, or #<user id>"),
               note: Optional[str] = typer.Option(None, help="why (kept in the audit log)")) -> None:
    """Refuse the person's API tokens and chat from their next request on."""
    typer.echo(_set(user, False, note))


@app.command("reactivate")
def reactivate(user: str = typer.Argument(..., help="Telegram / local id, or #<user id>"),
               note: Optional[str] = typer.Option(None, help="why (kept in the audit log)")) -> None:
    """Let a deactivated person back in (their unexpired, unrevoked tokens work again)."""
    typer.echo(_set(user, True, note))
