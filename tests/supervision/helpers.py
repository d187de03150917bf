"""Shared steps for the supervision tests: people, a full proposal, and a clock under which
the real scheduler runs its due-date sweep."""
from __future__ import annotations

import re
from datetime import datetime

from backend.core.clock import TZ, now
from tests.conftest import Clock, texts

DEPUTY, COSIGNER, LIAISON, OTHER_DEPUTY = 3001, 3002, 3003, 3004
PROC, CHIEF, CITY_PROC, OTHER_PROC = 3101, 3102, 3201, 3103
CITIZEN, OFFICIAL = 3301, 3401
SWEEP_JOB = "sup-sweep"
NUMBER = re.compile(r"DB-[A-Z]{2}-\d{4}-\d{4}")


def local(*a) -> datetime:
    return datetime(*a, tzinfo=TZ)


async def people(chat) -> None:
    for uid, name, role, place, title in [
        (DEPUTY, "王代表", "deputy", "椒江区", None),
        (COSIGNER, "钱代表", "deputy", "椒江区", None),
        (LIAISON, "联络员李", "deputy", "台州市", "liaison"),
        (OTHER_DEPUTY, "黄岩代表", "deputy", "黄岩区", None),
        (PROC, "赵检察", "procurator", "椒江区", None),
        (CHIEF, "郑检察长", "procurator", "椒江区", "chief"),
        (CITY_PROC, "市检察官", "procurator", "台州市", None),
        (OTHER_PROC, "黄岩检察", "procurator", "黄岩区", None),
        (CITIZEN, "张三", "citizen", None, None),
        (OFFICIAL, "周主任", "official", "椒江区", None),
    ]:
        chat.ch.set_profile(uid, name=name)
        await chat.as_role(uid, role, place, title)
        await chat.send(uid, "/me")  # the name comes from the chat profile


async def propose(chat, uid: int = DEPUTY, *, title: str = "椒江某河道长期排污", cosign: str | None = None,
                  photo: bool = False, agency: str | None = None, county: str = "椒江区",
                  evidence: tuple = ()) -> str:
    """A full proposal through the chat; ``evidence``: photos (bytes) and documents ((bytes, name))."""
    await chat.send(uid, "/propose")
    await chat.send(uid, title)
    await chat.send(uid, "河道两岸有企业夜间偷排污水，附近居民反映多年，鱼类大量死亡。" * 3)
    await chat.press(uid, "生态环境")
    await chat.press(uid, county)
    await chat.press(uid, "整个")
    if agency:
        await chat.send(uid, agency)
    else:
        await chat.press(uid, "跳过")
    if photo:
        await chat.photo(uid, b"\xff\xd8\xff" + b"evidence" * 100)
    for e in evidence:
        await (chat.document(uid, *e) if isinstance(e, tuple) else chat.photo(uid, e))
    await chat.press(uid, "完成")
    if cosign:
        await chat.send(uid, cosign)
    else:
        await chat.press(uid, "跳过")
    msgs = await chat.press(uid, "确认提交")
    m = NUMBER.search(texts(msgs))
    assert m, texts(msgs)
    return m.group(0)


async def suggest(chat, number: str, due_text: str, proc: int = PROC):
    """The procurator accepts the (latest) item and issues a suggestion due ``due_text``."""
    await chat.press(proc, "受理")
    await chat.send(proc, f"/item {number}")
    await chat.press(proc, "发出检察建议")
    await chat.send(proc, "椒江区生态环境分局")
    await chat.send(proc, "责令企业停止偷排。")
    return await chat.send(proc, due_text)


async def close_and_rate(chat, number: str, note: str, rating: str, comment: str | None = None) -> None:
    """The procurator closes the item with ``note``; the proposer rates it (``rating``: its label)."""
    await chat.send(PROC, f"/item {number}")
    await chat.press(PROC, "办结")
    await chat.send(PROC, note)
    await chat.press(DEPUTY, "评价")
    await chat.press(DEPUTY, rating)
    await (chat.send(DEPUTY, comment) if comment else chat.press(DEPUTY, "跳过"))


async def settle(ctx, rounds: int = 60) -> None:
    """Let the real scheduler run its supervision sweep at the (travelled) now — the interval job
    runs every minute; here its next run is brought to now — and every other job that is due, then
    deliver (``rounds`` is no longer used: tests.conftest.Clock waits for the jobs themselves)."""
    if ctx.scheduler.get_job(SWEEP_JOB) is not None:
        ctx.scheduler.modify_job(SWEEP_JOB, next_run_time=now())
    await Clock(ctx).run_due()


def item_text(chat, uid: int) -> str:
    return texts(chat.inbox(uid))


def last_seen(chat, uid: int):
    """The last thing ``uid`` was shown: a message, or the alert on a button they pressed (a
    refused button is answered on the button itself)."""
    return [m for m in chat.ch.out.get(uid, []) if not m.deleted][-1]
