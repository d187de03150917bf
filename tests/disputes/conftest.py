"""Helpers for the dispute tests: a citizen report through the chat, and a clock that the
real scheduler follows (time_machine moves datetime.now; the scheduler fires the jobs)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import time_machine
from sqlalchemy import select

from backend.disputes.models import Dispute
from backend.users.models import User
from tests.conftest import Clock
from tests.conftest import bearer

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + b"1 0 obj\n" * 50


async def run_scheduler_at(ctx, when: datetime, settle: float = 0.6) -> None:
    """Travel to ``when`` and let the real AsyncIOScheduler fire whatever is due then
    (``settle`` is no longer used: tests.conftest.Clock waits for the jobs themselves)."""
    await Clock(ctx).run_due(when)


async def report(chat, uid: int, *, category="邻里纠纷", description="隔壁装修天天吵到半夜，沟通多次无果，影响老人休息",
                 county="椒江区", township="海门街道", other="隔壁302住户", photo: bytes | None = JPEG,
                 phone="13812345678") -> str:
    await chat.send(uid, "/report")
    await chat.press(uid, category)
    await chat.send(uid, description)
    await chat.press(uid, county)
    if township:
        await chat.press(uid, township)
    else:
        await chat.press(uid, "就选")
    if other:
        await chat.send(uid, other)
    else:
        await chat.press(uid, "跳过")
    if photo:
        await chat.photo(uid, photo)
    await chat.press(uid, "完成")
    if phone:
        await chat.send(uid, phone)
    else:
        await chat.press(uid, "跳过")
    msgs = await chat.press(uid, "确认提交")
    text = "\n".join(m.text for m in msgs)
    assert "案件编号" in text, text
    return text.split("案件编号：")[1].split()[0]


async def report_with_session(chat, staff, uid: int, when: str = "2026-12-03 14:30 海门街道调解室") -> str:
    """A report the township mediator accepted and scheduled a mediation session for."""
    number = await report(chat, uid)
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "安排调解")
    await chat.send(staff["med"], when)
    return number


async def case(ctx, number: str) -> Dispute:
    async with ctx.sm() as s:
        return await s.scalar(select(Dispute).where(Dispute.number == number))


async def user_id(ctx, tg: int) -> int:
    async with ctx.sm() as s:
        return (await s.scalar(select(User).where(User.telegram_id == tg))).id


# Tuesday 2026-12-01 10:00 Asia/Shanghai: a working day, outside quiet hours.
DAY = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def daytime():
    with time_machine.travel(DAY, tick=True) as tm:
        yield tm


@pytest.fixture
async def staff(chat):
    """A township mediator, a county supervisor mediator, township and county officials."""
    await chat.as_role(5001, "mediator", "椒江区/海门街道")
    await chat.as_role(5002, "mediator", "椒江区", title="supervisor")
    await chat.as_role(5003, "official", "椒江区/海门街道")
    await chat.as_role(5004, "official", "椒江区")
    await chat.as_role(5005, "mediator", "椒江区/白云街道")
    return {"med": 5001, "sup": 5002, "off_t": 5003, "off_c": 5004, "med2": 5005}


# ---------------------------------------------------------------- HTTP API with the lifespan running
class Api:
    def __init__(self, app, client):
        self.app, self.client = app, client

    @property
    def ctx(self):
        return self.app.state.ctx

    async def user(self, tg: int, role: str = "citizen", place: str | None = None, title: str | None = None):
        from backend.core.db import session_scope
        from backend.users import service as users
        from backend.users.models import Role

        async with session_scope(self.ctx.sm) as s:
            u, _ = await users.get_or_create_user(s, tg, name=f"u{tg}", channel="local")
            j = await users.find_jurisdiction(s, place) if place else None
            await users.set_role(s, u, Role(role), j, actor="test", title=title)
        await bearer(self.ctx, u.id)
        return u

    def auth(self, user) -> dict:
        return {"Authorization": f"Bearer {self.ctx._test_tokens[user.id]}"}


@pytest.fixture
async def api(tmp_path):
    import httpx

    from backend.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, open311_api_keys="test-key-1, test-key-2"), models=False,
                     telegram=False)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hehe.test")
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
