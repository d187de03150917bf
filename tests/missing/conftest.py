"""Fixtures of the missing-person tests: the real face model (loaded once per session), a
fresh face gallery per test, a daytime clock (quiet hours would hold notifications) and a
helper that lets the real scheduler fire jobs after moving the clock."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
import time_machine

from backend.faces.engine import FaceEngine
from backend.faces.service import FaceService
from tests.conftest import FACES_DATA, Clock, make_settings

# 10:00 in Taizhou: outside quiet hours, so notifications go out on ctx.flush()
DAYTIME = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def daytime():
    with time_machine.travel(DAYTIME, tick=True):
        yield


@pytest.fixture(scope="session")
def face_engine(tmp_path_factory) -> FaceEngine:
    if not (FACES_DATA / "identities").is_dir():
        pytest.fail(f"face test photos not found at {FACES_DATA}")
    s = make_settings(tmp_path_factory.mktemp("missing-models"), face_enabled=True)
    return FaceEngine(s).load()


@pytest.fixture
def faces(ctx, face_engine) -> FaceService:
    """A loaded FaceService on this test's data dir (fresh galleries), sharing the session's model."""
    s = make_settings(ctx.settings.data_dir.parent, face_enabled=True)
    svc = FaceService(s)
    svc.engine = face_engine
    svc.load()
    ctx.faces = svc
    return svc


def photo(rel: str):
    return FACES_DATA / rel


async def run_due_jobs(ctx, at: datetime, *, until=None, timeout: float = 5.0) -> None:
    """Move the clock to ``at`` and let the real APScheduler fire what is due (tests.conftest.Clock);
    ``until``: a condition the jobs' work must reach (checked while the clock stays at ``at``)."""
    with time_machine.travel(at, tick=True):
        await Clock(ctx).run_due(timeout=timeout)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while until is not None and not await until() and loop.time() < end:
            await asyncio.sleep(0.05)
        await ctx.flush()


@pytest.fixture
async def api(ctx):
    """The REST API on the chat tests' running context (no second lifespan)."""
    import httpx

    from backend.app import create_app

    app = create_app(ctx.settings)
    app.state.ctx = ctx
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hehe.test") as c:
        yield c


def load_faces(ctx, settings, engine: FaceEngine) -> FaceService:
    """The real face model on ``ctx``, its galleries on ``settings``' database (face_store=auto:
    PostgreSQL holds them there, files on SQLite)."""
    faces = FaceService(make_settings(settings.data_dir.parent, face_enabled=True,
                                      database_url=settings.database_url))
    faces.engine = engine
    ctx.faces = faces.load()
    return faces
