"""Supervision deadlines benchmark: reminders as due-date columns swept by one interval job.
Each figure is printed next to a baseline measured in the same run.

    python bench/supervision.py                  # both
    python bench/supervision.py sweep --n 10000
    python bench/supervision.py restart --n 10000

- sweep: N 检察建议 whose reminder is due now (rows written directly: N items, N suggestions), then
  the real sweep job (``scheduler.jobs.supervision:sweep``: claims up to 500 due rows, sends the one
  current reminder of each to the outbox, sets the next moment) run until nothing is due. Baseline:
  the same N notifications written with ``notify()`` (dedupe look-up + outbox row) in transactions
  of 500, without the sweep's reads; the sweep should stay within 2× of it.
- restart: N reminders pending in the future, start a new app context on the same data dir, time
  until ``start_context`` returns (migrations checked, scheduler started, the start-up sweep
  scheduled). Goal ≤ 3 s. Baseline: the same start with 0 pending.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HEHE_LOG_LEVEL", "WARNING")

import logging  # noqa: E402

logging.basicConfig(level=logging.WARNING)
logging.getLogger("apscheduler").setLevel(logging.WARNING)

from sqlalchemy import func, select  # noqa: E402

from backend.core.clock import now  # noqa: E402
from backend.core.config import Settings  # noqa: E402


def settings_for(d: Path) -> Settings:
    return Settings(data_dir=d, demo=True, face_enabled=False, kb_enabled=False, _env_file=None)


async def start(s: Settings):
    from backend.context import start_context
    return await start_context(s, models=False, workers=False, telegram=False)


async def seed(ctx, n: int, due_in: timedelta) -> None:
    """N suggested items, each with a suggestion whose reply is due in 3 days and whose next
    reminder is due at now + ``due_in``."""
    from backend.supervision.models import Suggestion, SupervisionItem
    from backend.users import service as users
    from backend.users.models import Role

    async with ctx.sm() as s:
        proc, _ = await users.get_or_create_user(s, 9_000_001, name="赵检察")
        jj = await users.find_jurisdiction(s, "椒江区")
        await users.set_role(s, proc, Role.procurator, jj, actor="bench")
        await s.commit()
        t = now()
        for start_i in range(0, n, 1000):
            items = [SupervisionItem(number=f"DB-JJ-2030-{i:05d}", title=f"事项{i}", description="bench", area="其他",
                                     jurisdiction_id=jj.id, county_id=jj.id, procuratorate_id=jj.id,
                                     proposer_id=proc.id, handler_id=proc.id, status="suggested",
                                     created_at=t, updated_at=t) for i in range(start_i, min(n, start_i + 1000))]
            s.add_all(items)
            await s.flush()
            s.add_all([Suggestion(item_id=it.id, agency="分局", content="建议", issued_by=proc.id, issued_at=t,
                                  reply_due=t + timedelta(days=3), remind_at=t + due_in) for it in items])
            await s.commit()


async def outbox_rows(ctx) -> int:
    from backend.notify.models import Outbox
    async with ctx.sm() as s:
        return await s.scalar(select(func.count(Outbox.id)))


# ----------------------------------------------------------------------------- sweep
async def bench_sweep(n: int, d: Path) -> dict:
    from backend.notify.service import notify
    from backend.users.models import User
    from scheduler.jobs import supervision as jobs

    ctx = await start(settings_for(d))
    try:
        ctx.scheduler.pause()  # the bench drives the sweep itself
        await seed(ctx, n, timedelta(seconds=-1))
        before = await outbox_rows(ctx)
        t = time.perf_counter()
        runs = 0
        while await jobs.sweep():
            runs += 1
        swept = time.perf_counter() - t
        sent = await outbox_rows(ctx) - before
        t = time.perf_counter()
        async with ctx.sm() as s:
            proc = await s.scalar(select(User).where(User.telegram_id == 9_000_001))
            for i in range(n):
                await notify(s, proc, "supervision.reply_soon", dedupe_key=f"bench:{i}", agency="分局",
                             number=f"DB-JJ-2030-{i:05d}", title="事项", due="-", days=3)
                if i % 500 == 499:
                    await s.commit()
            await s.commit()
        base = time.perf_counter() - t
    finally:
        await ctx.stop()
    print(f"sweep: {n} due reminders sent in {swept:.2f} s ({runs} sweeps of ≤ 500, {sent} outbox rows, "
          f"{n / swept:.0f}/s, {swept / base:.1f}× the baseline) — baseline notify() alone: {base:.2f} s")
    return {"sweep_s": swept, "sweep_baseline_s": base, "sent": sent}


# ----------------------------------------------------------------------------- restart
async def bench_restart(n: int, d: Path, fresh: Path) -> dict:
    ctx = await start(settings_for(d))
    try:
        await seed(ctx, n, timedelta(days=30))
    finally:
        await ctx.stop()
    t = time.perf_counter()
    c = await start(settings_for(d))
    ready = time.perf_counter() - t
    await c.stop()
    c = await start(settings_for(fresh))
    await c.stop()
    t = time.perf_counter()
    c = await start(settings_for(fresh))
    empty = time.perf_counter() - t
    await c.stop()
    print(f"restart with {n} pending reminders: start_context returns in {ready:.2f} s — goal ≤ 3 s; "
          f"baseline 0 pending: {empty:.2f} s")
    return {"restart_s": ready, "restart_baseline_s": empty}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all", choices=["all", "sweep", "restart"])
    ap.add_argument("--n", type=int, default=10_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.what in ("all", "sweep"):
            await bench_sweep(a.n, tmp / "sweep")
        if a.what in ("all", "restart"):
            await bench_restart(a.n, tmp / "restart", tmp / "empty")


if __name__ == "__main__":
    asyncio.run(main())
