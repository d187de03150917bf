"""The ``hehe`` command. Slices add their own sub-commands through ``<slice>/cli.py``."""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import pkgutil
import sys
from pathlib import Path
from typing import Optional

import typer

import backend
from backend.core.config import Settings, get_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(help="Hehe 和合 — Taizhou digital rule-of-law assistant", no_args_is_help=True,
                  add_completion=False)
db_app = typer.Typer(help="Database migrations", no_args_is_help=True)
invite_app = typer.Typer(help="Invite codes that grant roles", no_args_is_help=True)
jur_app = typer.Typer(help="The jurisdiction tree", no_args_is_help=True)
token_app = typer.Typer(help="API access tokens", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(invite_app, name="invite")
app.add_typer(jur_app, name="jurisdictions")
app.add_typer(token_app, name="token")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(msg: str) -> None:
    typer.echo(msg, err=True)
    raise typer.Exit(2)


async def _with_session(fn):
    """Run ``fn(session)`` in one transaction against a migrated database."""
    from backend.context import wire_events
    from backend.core import migrate
    from backend.core.db import make_engine, make_sessionmaker, session_scope
    from backend.users.service import seed_jurisdictions

    wire_events()
    s = get_settings()
    s.ensure_dirs()
    await asyncio.to_thread(migrate.upgrade, s.sync_db_url)
    engine = make_engine(s.db_url)
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            await seed_jurisdictions(session)
            return await fn(session)
    finally:
        await engine.dispose()


def run_in_session(coro_fn):
    """``coro_fn(session)`` in one transaction against a migrated, seeded database; a
    DomainError becomes its Chinese message and exit code 2. Slice CLIs use it too."""
    from backend.core.errors import DomainError
    from backend.core.i18n import gettext

    try:
        return asyncio.run(_with_session(coro_fn))
    except DomainError as e:
        _fail(gettext("zh", e.key, **e.params))


# ------------------------------------------------------------------ serve / demo
def refuse_public_demo(s, host: Optional[str]) -> None:
    """Demo mode lets anyone act as anyone: only on a loopback address, unless the operator says
    HEHE_DEMO_ALLOW_PUBLIC=true. The address is kept in the settings (the console SMS provider
    checks it too)."""
    from backend.auth.sms import SmsConfigError, loopback, provider_for

    if host:
        s.host = host
    if s.demo and not loopback(s.host) and not s.demo_allow_public:
        _fail(f"HEHE_DEMO is on and the address {s.host} is not loopback: anyone reaching it could act as "
              "anyone. Bind 127.0.0.1, or set HEHE_DEMO_ALLOW_PUBLIC=true if that is really meant.")
    try:
        provider_for(s)
    except SmsConfigError as e:
        _fail(f"SMS provider: {e}")


@app.command()
def serve(host: Optional[str] = typer.Option(None), port: Optional[int] = typer.Option(None),
          init: bool = typer.Option(False, "--init", help="start on a new, empty database on purpose")) -> None:
    """Run Hehe: API, web chat (/chat), bot, scheduler. Telegram only when HEHE_TELEGRAM_TOKEN is set."""
    from backend.core import preload

    if init:
        os.environ["HEHE_ALLOW_NEW_DATABASE"] = "1"
        get_settings.cache_clear()
    s = get_settings()
    _setup_logging(s)
    refuse_public_demo(s, host)
    s.ensure_dirs()
    _refuse_unsafe_start(s)
    preload.start(s)  # the models load while the imports below and the migrations run
    _run_web(s, host, port)


# An open long poll (the web chat waits up to ~25 s for news) must not hold a SIGTERM: after this
# many seconds uvicorn closes the connections still open, then the lifespan's shutdown runs
# (which lets running jobs finish).
GRACEFUL_SHUTDOWN_SECONDS = 5


def _run_web(s, host: str | None, port: int | None) -> None:
    import uvicorn

    app = _web_app(s)
    server = uvicorn.Server(uvicorn.Config(app, host=host or s.host, port=port or s.port, log_level=s.log_level.lower(),
                                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS))
    app.state.stopping = lambda: server.should_exit  # the lifespan answers open long polls at once
    server.run()


def _web_app(s):
    from backend.app import create_app

    web = create_app(s)
    web.state.demo_web_bridge = s.demo  # demo people (channel "local") use the web page
    return web


def _refuse_unsafe_start(s) -> None:
    """Say clearly, before loading anything, why this server must not start (the lifespan
    checks again and holds the lock; this is for a readable message and exit code)."""
    from backend.core import instance

    try:
        instance.check_database_present(s.data_dir, s.sync_db_url, s.allow_new_database)
        instance.release_data_dir(instance.claim_data_dir(s.data_dir, s.sync_db_url))
    except instance.StartupRefused as e:
        typer.echo(f"hehe: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(host: Optional[str] = typer.Option(None), port: Optional[int] = typer.Option(None)) -> None:
    """Like serve, with demo users of every role and sample data (data dir ./data-demo by default)."""
    from backend.core import preload

    os.environ["HEHE_DEMO"] = "1"
    os.environ.setdefault("HEHE_DATA_DIR", "./data-demo")
    get_settings.cache_clear()
    s = get_settings()
    _setup_logging(s)
    refuse_public_demo(s, host)
    s.ensure_dirs()
    preload.start(s)

    from backend.demo import seed_demo

    asyncio.run(seed_demo(s))
    typer.echo(f"Hehe demo: open http://{host or s.host}:{port or s.port}/chat")
    _run_web(s, host, port)


# ------------------------------------------------------------------ db
@db_app.command("upgrade")
def db_upgrade(target: str = typer.Argument("heads")) -> None:
    """Apply migrations (default: all heads)."""
    from backend.core import migrate

    s = get_settings()
    s.ensure_dirs()
    migrate.upgrade(s.sync_db_url, target)
    typer.echo(f"database upgraded to {target}")


@db_app.command("downgrade")
def db_downgrade(target: str = typer.Argument(..., help="revision, or 'base'")) -> None:
    from backend.core import migrate

    migrate.downgrade(get_settings().sync_db_url, target)
    typer.echo(f"database downgraded to {target}")


# ------------------------------------------------------------------ invites / roles
@invite_app.command("create")
def invite_create(
    role: str = typer.Option(..., help="citizen|mediator|deputy|procurator|officer|official|admin"),
    jurisdiction: Optional[str] = typer.Option(None, help="e.g. 椒江区 or 椒江区/海门街道"),
    expires: str = typer.Option("7d", help="7d, 12h, 30m"),
    title: Optional[str] = typer.Option(None, help="duty inside the role, e.g. supervisor, chief, liaison"),
) -> None:
    """Print a single-use invite code; the person redeems it with /join CODE."""
    from backend.users import service
    from backend.users.models import Role

    try:
        r = Role(role)
    except ValueError:
        _fail(f"未知角色 / unknown role: {role}")

    async def go(session):
        j = None
        if jurisdiction:
            j = await service.find_jurisdiction(session, jurisdiction)
            if j is None:
                _fail(f"未知辖区 / unknown jurisdiction: {jurisdiction}")
        inv = await service.create_invite(session, r, j, service.parse_duration(expires), actor="cli", title=title)
        return inv.code

    typer.echo(run_in_session(go))


@jur_app.command("import")
def jurisdictions_import(file: Path = typer.Argument(..., exists=True, readable=True)) -> None:
    """Import a CSV with columns county,township,village,grid (optional lat,lon)."""
    from backend.users import service

    n = run_in_session(lambda session: service.import_csv(session, file))
    typer.echo(f"imported: {n} new places")


@jur_app.command("list")
def jurisdictions_list(parent: Optional[str] = typer.Argument(None)) -> None:
    from backend.users import service

    async def go(session):
        p = await service.find_jurisdiction(session, parent) if parent else None
        if parent and p is None:
            _fail(f"未知辖区 / unknown jurisdiction: {parent}")
        return [(j.id, j.name, j.level) for j in await service.children(session, p.id if p else None)]

    for jid, name, level in run_in_session(go):
        typer.echo(f"{jid}\t{name}\t{level}")


@token_app.command("create")
def token_create(user: str = typer.Option(..., help="the user's Telegram / local id, or #<user id>"),
                 days: Optional[int] = typer.Option(None, help="lifetime in days (default HEHE_TOKEN_DAYS)"),
                 label: Optional[str] = typer.Option(None, help="what the token is for")) -> None:
    """Print a new API bearer token for a user (a different one every time; shown only once)."""
    from backend.users import service, tokens

    async def go(session):
        u = await service.find_user(session, user)
        row, text = await tokens.issue(session, u, days=days or get_settings().token_days, actor="cli", label=label)
        return row, text

    row, text = run_in_session(go)
    typer.echo(text)
    typer.echo(f"# token id {row.id}, expires {row.expires_at:%Y-%m-%d %H:%M} UTC", err=True)


@token_app.command("list")
def token_list(user: Optional[str] = typer.Option(None, help="only this user's tokens")) -> None:
    """Every token: id, user, label, created, expires, last used, state (never the secret)."""
    from backend.core.clock import now
    from backend.users import service, tokens

    async def go(session):
        u = await service.find_user(session, user) if user else None
        out = []
        for r in await tokens.list_tokens(session, u):
            owner = await session.get(service.User, r.user_id)
            state = "revoked" if r.revoked_at else ("expired" if r.expires_at <= now() else "active")
            used = f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "-"
            out.append(f"{r.id}\t{owner.telegram_id}\t{owner.name or '-'}\t{r.label or '-'}\t"
                       f"{r.created_at:%Y-%m-%d}\t{r.expires_at:%Y-%m-%d}\t{used}\t{state}")
        return out

    typer.echo("id\tuser\tname\tlabel\tcreated\texpires\tlast_used\tstate")
    for line in run_in_session(go):
        typer.echo(line)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="the token id (hehe token list)")) -> None:
    """Revoke one token; the next request with it is refused."""
    from backend.users import tokens

    async def go(session):
        await tokens.revoke(session, token_id, actor="cli")

    run_in_session(go)
    typer.echo(f"revoked token {token_id}")


# ------------------------------------------------------------------ chat
@app.command()
def chat(
    user: Optional[int] = typer.Option(None, help="chat as this local user (terminal)"),
    script: Optional[Path] = typer.Option(None, help="replay a JSONL script"),
    as_json: bool = typer.Option(False, "--json", help="one JSON line per bot message"),
) -> None:
    """Chat with Hehe in the terminal, or replay a script (no Telegram needed)."""
    from backend.context import start_context
    from backend.web import replay

    s = get_settings()
    logging.basicConfig(level=logging.WARNING)
    if script is None and user is None:
        _fail("give --user ID or --script FILE")

    async def go() -> int:
        ctx = await start_context(s, workers=False, telegram=False)
        try:
            await ctx.models_ready.wait()
            if script is not None:
                lines = (sys.stdin if str(script) == "-" else script.open(encoding="utf-8")).read().splitlines()
                return await replay.run_script(ctx, lines, script.parent, as_json=as_json)
            await replay.terminal(ctx, user)
            return 0
        finally:
            await ctx.stop()

    raise typer.Exit(asyncio.run(go()))


# ------------------------------------------------------------------ slices
def _add_slice_clis() -> None:
    pkgs = [(f"backend.{i.name}.cli", i.name) for i in pkgutil.iter_modules(backend.__path__) if i.ispkg]
    pkgs.append(("knowledge_base.cli", "kb"))
    for modname, default in pkgs:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        sub = getattr(mod, "app", None)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=sub.info.name or default)
        for cmd_name, fn in getattr(mod, "COMMANDS", {}).items():
            app.command(cmd_name)(fn)
    try:
        from knowledge_base.cli import ask_command
    except ImportError:
        return
    app.command("ask")(ask_command)


_add_slice_clis()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
