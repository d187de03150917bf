"""Bot throughput through the full stack vs a bare aiogram Dispatcher, in the same run.

Full stack = the real middlewares (dedupe, errors, ignore-bots, throttle, one DB session per
update that loads/creates the user, i18n), the persistent SQL FSM storage, the real routers.
Workloads:
  start  — ``/start`` (user lookup, role-aware menu)
  form   — a 3-step FSM form (``/bform`` → name → place; state and draft in the database)
Baseline: a bare ``Dispatcher()`` (memory storage, no middlewares) with one echo handler,
fed the same ``Update`` objects through the same offline session.

    .venv/bin/python bench/bot.py [--users 100] [--rounds 3] [--concurrency 1|8] [--pg URL] [--telegram]

``--concurrency N``: N chats served at once (aiogram's polling runs every update as a task of
its own), each chat's updates in order. On PostgreSQL the bench also prints, from the same
minutes, how many commits per second plain asyncpg gets from this server (the disk's ceiling:
with ``synchronous_commit = on`` every commit waits for the WAL's fsync; concurrent commits
share one fsync).

``--telegram``: the updates come from a Telegram bot (another bot id than the offline channels';
its Bot API calls still answered by the offline session), so they also pass the duplicate-update
filter in the database (bot.middlewares.DedupeMiddleware), as Telegram's updates do.

Goal: ≥ 200 updates/s full stack on 2 cores, on SQLite and PostgreSQL (issue #13). The bare echo
rate is printed beside it for scale; the old 0.3× ratio goal is retired.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiogram import Dispatcher, F, Router  # noqa: E402
from aiogram.filters import Command, StateFilter  # noqa: E402
from aiogram.fsm.context import FSMContext  # noqa: E402
from aiogram.fsm.state import State, StatesGroup  # noqa: E402
from aiogram.types import Chat, Message, Update, User  # noqa: E402

from backend.core.config import Settings  # noqa: E402

_ids = itertools.count(10_000_000)


class BenchForm(StatesGroup):
    name = State()
    place = State()


def form_router() -> Router:
    r = Router(name="bench-form")

    @r.message(Command("bform"))
    async def begin(message: Message, state: FSMContext, t) -> None:
        await state.set_state(BenchForm.name)
        await message.answer(t("common.help"))

    @r.message(StateFilter(BenchForm.name), F.text)
    async def got_name(message: Message, state: FSMContext, t) -> None:
        await state.update_data(name=message.text)
        await state.set_state(BenchForm.place)
        await message.answer(t("common.help"))

    @r.message(StateFilter(BenchForm.place), F.text)
    async def got_place(message: Message, state: FSMContext, user, t) -> None:
        data = await state.get_data()
        await state.clear()
        await message.answer(f"{data.get('name')} @ {message.text} ({user.role})")

    return r


def full_dispatcher(ctx) -> Dispatcher:
    """The real factory (bot.dispatcher.make_dispatcher), with the bench form router first."""
    from bot.dispatcher import make_dispatcher

    return make_dispatcher(ctx, first=[form_router()])


def bare_dispatcher() -> Dispatcher:
    dp = Dispatcher()
    r = Router(name="echo")

    @r.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    dp.include_router(r)
    return dp


def update(uid: int, text: str) -> Update:
    n = next(_ids)
    return Update(update_id=n, message=Message(
        message_id=n, date=datetime.now(timezone.utc), chat=Chat(id=uid, type="private"),
        from_user=User(id=uid, is_bot=False, first_name=f"用户{uid}", language_code="zh-hans"), text=text))


def workload(kind: str, users: list[int]) -> list[Update]:
    if kind == "start":
        return [update(u, "/start") for u in users]
    out = []
    for u in users:  # interleaved per step, as many people filling the form at once
        out.append(update(u, "/bform"))
    for u in users:
        out.append(update(u, "张三"))
    for u in users:
        out.append(update(u, "椒江区海门街道"))
    return out


async def run(dp: Dispatcher, bot, updates: list[Update], concurrency: int) -> tuple[float, float]:
    """Feed ``updates``; with ``concurrency`` > 1, that many chats are served at once (as
    aiogram's polling does: every update is its own task) — each lane takes the updates of
    its own people in their order, and the lanes never wait for each other.
    Returns (wall seconds, CPU seconds of this process — all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    if concurrency <= 1:
        for u in updates:
            await dp.feed_update(bot, u)
    else:
        lanes: list[list[Update]] = [[] for _ in range(concurrency)]
        for u in updates:
            lanes[u.message.chat.id % concurrency].append(u)

        async def lane(ups: list[Update]) -> None:
            for u in ups:
                await dp.feed_update(bot, u)

        await asyncio.gather(*(lane(ups) for ups in lanes))
    return time.perf_counter() - t0, time.process_time() - c0


async def raw_commits(pg_url: str, n: int, concurrency: int) -> float:
    """The disk's ceiling, no Hehe code: ``n`` upserts, each committed by itself (autocommit, the
    way a conversation step is written), with plain asyncpg on the same server (``concurrency``
    connections at once), in commits per second."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conns = [await asyncpg.connect(dsn) for _ in range(max(1, concurrency))]
    await conns[0].execute("CREATE TABLE IF NOT EXISTS bench_raw_commit (k text PRIMARY KEY, d json)")
    per = n // len(conns)

    async def lane(i: int, conn) -> None:
        for j in range(per):
            await conn.execute("INSERT INTO bench_raw_commit VALUES ($1, $2) ON CONFLICT (k) DO UPDATE "
                               "SET d = excluded.d", f"{i}:{j % 100}", '{"name": "张三"}')

    t0 = time.perf_counter()
    await asyncio.gather(*(lane(i, c) for i, c in enumerate(conns)))
    dt = time.perf_counter() - t0
    await conns[0].execute("DROP TABLE bench_raw_commit")
    for c in conns:
        await c.close()
    return per * len(conns) / dt


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--pg", default=None, help="PostgreSQL async URL instead of SQLite")
    ap.add_argument("--telegram", action="store_true", help="feed the updates as a Telegram bot's")
    ap.add_argument("--profile", default=None, help="write cProfile stats of the full-stack runs here")
    args = ap.parse_args()

    from backend.context import start_context

    tmp = Path(tempfile.mkdtemp(prefix="hehe-bench-bot-"))
    s = Settings(_env_file=None, data_dir=tmp / "data", face_enabled=False, kb_enabled=False,
                 throttle_per_minute=1_000_000, database_url=args.pg)
    ctx = await start_context(s, models=False, workers=False, telegram=False, scheduler=False)
    full = full_dispatcher(ctx)
    ctx.dispatcher = full
    ctx.channel.dispatcher = full
    bare = bare_dispatcher()
    bot = ctx.channel.bot
    if args.telegram:
        from aiogram import Bot

        bot = Bot("7000003:BENCH-telegram-token", session=ctx.channel.session)
    users = list(range(500_000, 500_000 + args.users))

    # Warm up: creates the users (first contact), imports, caches; not measured.
    for kind in ("start", "form"):
        ups = workload(kind, users)
        await run(full, bot, ups, 1)
        await run(bare, bot, ups, 1)

    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    results: dict[str, dict[str, float]] = {}
    raw = 0.0
    for kind in ("start", "form"):
        best_full = best_bare = 0.0
        cpu_full = cpu_bare = float("inf")
        for _ in range(args.rounds):
            ups = workload(kind, users)
            if prof:
                prof.enable()
            dt, cpu = await run(full, bot, ups, args.concurrency)
            if prof:
                prof.disable()
            best_full, cpu_full = max(best_full, len(ups) / dt), min(cpu_full, cpu / len(ups))
            ups = workload(kind, users)
            dt, cpu = await run(bare, bot, ups, args.concurrency)
            best_bare, cpu_bare = max(best_bare, len(ups) / dt), min(cpu_bare, cpu / len(ups))
            if args.pg and kind == "form":  # same minutes: how fast can this disk commit at all?
                raw = max(raw, await raw_commits(args.pg, len(ups), args.concurrency))
        results[kind] = {"full": best_full, "bare": best_bare, "ratio": best_full / best_bare,
                         "cpu_full": cpu_full * 1000, "cpu_bare": cpu_bare * 1000}
    await ctx.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    if prof:
        prof.dump_stats(args.profile)

    db = "PostgreSQL" if args.pg else "SQLite (WAL)"
    print(f"# bench/bot.py  {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  python {platform.python_version()}  "
          f"{os.cpu_count()} CPUs  db={db}  users={args.users}  rounds={args.rounds} (best)  "
          f"concurrency={args.concurrency}  bot={'telegram' if args.telegram else 'offline'}")
    print(f"# load average at the end: {os.getloadavg()[0]:.1f}; CPU ms/update = this process's CPU time (all threads)"
          f" per update, the figure a busy host changes least")
    print(f"{'workload':<10}{'full stack upd/s':>18}{'bare echo upd/s':>18}{'ratio':>8}"
          f"{'full CPU ms/upd':>17}{'bare CPU ms/upd':>17}  goal ≥200/s")
    for kind, r in results.items():
        ok = r["full"] >= 200
        print(f"{kind:<10}{r['full']:>18.0f}{r['bare']:>18.0f}{r['ratio']:>8.2f}{r['cpu_full']:>17.2f}"
              f"{r['cpu_bare']:>17.2f}  {'met' if ok else 'NOT met'}")
    if raw:
        print(f"raw asyncpg upsert, each its own commit (no Hehe code, {args.concurrency} connection(s)): "
              f"{raw:.0f} commits/s — a form step is one such commit: its ceiling on this disk")


if __name__ == "__main__":
    asyncio.run(main())
