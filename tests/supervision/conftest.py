"""Fixtures of the supervision tests."""
from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from backend.app import create_app
from backend.users.models import User
from tests.conftest import bearer


@pytest.fixture
async def api(ctx):
    """GET as the person with a given chat id, with a real token, through the real app."""
    app = create_app(ctx.settings)
    app.state.ctx = ctx  # no lifespan: the test's context is the app's
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        async def get(uid, path, **kw):
            async with ctx.sm() as s:
                u = await s.scalar(select(User).where(User.telegram_id == uid))
            return await c.get(path, headers=await bearer(ctx, u.id), **kw)
        yield get
