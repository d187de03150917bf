"""Shared fixtures: settings on a temporary data dir, a started application context with
the real Dispatcher, the offline channel as a chat driver, and PostgreSQL when available.

PostgreSQL: set HEHE_TEST_PG_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres);
``.ci/run`` starts a server and sets it. Tests using the ``db_settings`` fixture run on both.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from backend.core.config import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Real face photos (MIT, face_recognition project; attribution in the folder's README).
FACES_DATA = REPO / "tests" / "fixtures" / "faces"
PG_URL = os.environ.get("HEHE_TEST_PG_URL")

try:  # browser assertions wait for a loaded 2-core CI machine, not a quiet laptop
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=15_000)
except ImportError:  # pragma: no cover - playwright is a test dependency
    pass


def make_settings(tmp_path: Path, **kw) -> Settings:
    base = dict(data_dir=tmp_path / "data", demo=True, face_enabled=False, kb_enabled=False,
                throttle_per_minute=10_000, gc_freeze=False, _env_file=None)
    base.setdefault("allowed_hosts", "localhost,127.0.0.1,test,hehe.test,testserver")  # the ASGI test clients' hosts
    base.update(kw)
    return Settings(**base)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """A migrated, seeded SQLite database built once per test session; each test gets a copy."""
    import asyncio

    from backend.core import migrate
    from backend.core.db import make_engine, make_sessionmaker, session_scope
    from backend.users.service import seed_jurisdictions

    s = make_settings(tmp_path_factory.mktemp("template"))
    s.ensure_dirs()
    migrate.upgrade(s.sync_db_url)

    async def seed():
        engine = make_engine(s.db_url)
        async with session_scope(make_sessionmaker(engine)) as session:
            await seed_jurisdictions(session)
        await engine.dispose()

    asyncio.run(seed())
    return s.data_dir / "hehe.db"


@pytest.fixture
def settings(tmp_path: Path, template_db: Path) -> Settings:
    import shutil

    s = make_settings(tmp_path)
    s.ensure_dirs()
    shutil.copyfile(template_db, s.data_dir / "hehe.db")
    return s


# ---------------------------------------------------------------- PostgreSQL
def _pg_admin_url() -> str:
    return PG_URL.replace("+asyncpg", "")


def create_pg_database() -> str:
    """A fresh database on the test server; returns its async URL."""
    import psycopg2

    name = "hehe_test_" + uuid.uuid4().hex[:10]
    from sqlalchemy.engine import make_url

    admin = make_url(_pg_admin_url())
    conn = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                            password=admin.password, dbname=admin.database or "postgres")
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return str(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))


def drop_pg_database(url: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = make_url(_pg_admin_url())
    conn = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                            password=admin.password, dbname=admin.database or "postgres")
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
    conn.close()


DB_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DB_BACKENDS)
def db_settings(request, tmp_path: Path):
    """Settings on SQLite, then on PostgreSQL (skipped when no server is configured)."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    yield from _on_postgres(tmp_path)


@pytest.fixture
def pg_settings(tmp_path: Path):
    """Settings on a fresh PostgreSQL database (skipped when no server is configured)."""
    yield from _on_postgres(tmp_path)


def _on_postgres(tmp_path: Path):
    if not PG_URL:
        pytest.skip("HEHE_TEST_PG_URL not set")
    url = create_pg_database()
    try:
        yield make_settings(tmp_path, database_url=url)
    finally:
        drop_pg_database(url)


# ---------------------------------------------------------------- application context + chat
@pytest.fixture
async def ctx(settings: Settings):
    from backend.context import start_context

    c = await start_context(settings, models=False, workers=False, telegram=False)
    try:
        yield c
    finally:
        await c.stop()


class ChatDriver:
    """Drives the real Dispatcher through the offline channel, as people would."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.ch = ctx.channel
        self._mark: dict[int, int] = {}

    async def _after(self, uid: int, before: int):
        await self.ctx.flush()
        return [m for m in self.ch.out.get(uid, []) if m.seq > before and not m.deleted]

    async def send(self, uid: int, text: str):
        before = self.ch.last_seq()
        await self.ch.send_text(uid, text)
        return await self._after(uid, before)

    async def press(self, uid: int, label: str):
        before = self.ch.last_seq()
        await self.ch.press(uid, label)
        return await self._after(uid, before)

    async def photo(self, uid: int, data: bytes | Path, caption: str | None = None):
        before = self.ch.last_seq()
        await self.ch.send_photo(uid, data.read_bytes() if isinstance(data, Path) else data, caption)
        return await self._after(uid, before)

    async def document(self, uid: int, data: bytes, filename: str, caption: str | None = None):
        before = self.ch.last_seq()
        await self.ch.send_document(uid, data, filename, caption)
        return await self._after(uid, before)

    async def location(self, uid: int, lat: float, lon: float):
        before = self.ch.last_seq()
        await self.ch.send_location(uid, lat, lon)
        return await self._after(uid, before)

    async def as_role(self, uid: int, role: str, jurisdiction: str | None = None, title: str | None = None):
        from backend.web.chat_service import set_role_direct

        return await set_role_direct(self.ctx, uid, role, jurisdiction, title)

    def inbox(self, uid: int) -> list:
        """Every message the bot has sent this user (including later notifications)."""
        return [m for m in self.ch.out.get(uid, []) if not m.deleted and not m.toast]

    def last(self, uid: int):
        box = self.inbox(uid)
        return box[-1] if box else None

    def buttons(self, uid: int) -> list[str]:
        m = next((m for m in reversed(self.inbox(uid)) if m.inline), None)
        return [l for row in m.inline for l, _ in row] if m else []


@pytest.fixture
async def chat(ctx) -> ChatDriver:
    return ChatDriver(ctx)


def texts(msgs) -> str:
    return "\n".join(m.text for m in msgs)


# ---------------------------------------------------------------- clock + scheduler
class Clock:
    """Moves time and lets the real APScheduler run what is due then — no fixed sleeps: it wakes
    the scheduler, waits for the job runs it started to finish (APScheduler's job events), and
    repeats while jobs are still due (a job may schedule another for now), then delivers the
    notifications (``ctx.flush()``)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def due_jobs(self) -> list:
        from backend.core.clock import now

        t = now()
        return [j for j in self.ctx.scheduler.get_jobs() if j.next_run_time is not None and j.next_run_time <= t]

    async def run_due(self, at=None, *, timeout: float = 10.0) -> None:
        """Travel to ``at`` (a datetime; None: stay at now) and run everything due there."""
        import contextlib

        import time_machine

        from scheduler.factory import wait_idle

        # A run the scheduler started on its own (an interval sweep at the old time) finishes
        # first; otherwise the run at ``at`` would be skipped as "already running".
        await wait_idle(self.ctx.scheduler, timeout)
        travel = time_machine.travel(at, tick=True) if at is not None else contextlib.nullcontext()
        with travel:
            await self._drain(timeout)
            await self.ctx.flush()

    async def _drain(self, timeout: float) -> None:
        import asyncio

        from scheduler.factory import wait_idle

        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        sched = self.ctx.scheduler
        while True:
            sched.wakeup()
            for _ in range(3):  # wakeup() runs on the next loop iteration; it submits due jobs
                await asyncio.sleep(0)
            if not await wait_idle(sched, max(end - loop.time(), 0)):
                raise TimeoutError(f"scheduled jobs still running after {timeout} s")
            if not self.due_jobs():
                return
            if loop.time() > end:
                raise TimeoutError(f"jobs still due after {timeout} s: {[j.id for j in self.due_jobs()]}")


@pytest.fixture
def clock(ctx) -> Clock:
    """``await clock.run_due(datetime(...))``: the real scheduler at a moved clock."""
    return Clock(ctx)
# ---------------------------------------------------------------- API tokens (backend/users/tokens.py)
async def bearer(ctx, user_id: int) -> dict:
    """``Authorization`` header with a real API token for user ``user_id`` (one per user and
    context, issued through the token table like ``hehe token create``)."""
    from backend.core.db import session_scope
    from backend.users import tokens
    from backend.users.models import User

    cache = ctx.__dict__.setdefault("_test_tokens", {})  # user id → token text
    if user_id not in cache:
        async with session_scope(ctx.sm) as s:
            cache[user_id] = (await tokens.issue(s, await s.get(User, user_id), actor="test"))[1]
    return {"Authorization": f"Bearer {cache[user_id]}"}
