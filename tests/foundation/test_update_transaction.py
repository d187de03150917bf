"""One update, one transaction: the conversation step and what the handler saved commit
together; the people the bot talks to are served from memory but never with a stale role."""
from __future__ import annotations

import asyncio
from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import Message
from sqlalchemy import event, select, text

from backend.users.models import AuditLog
from bot.dispatcher import make_dispatcher
from bot.fsm_storage import SQLStorage
from bot.offline import BOT_ID
from tests.conftest import ChatDriver, texts


class Steps(StatesGroup):
    first = State()
    second = State()


def steps_router() -> Router:
    r = Router(name="test-steps")

    @r.message(Command("steps"))
    async def begin(message: Message, state: FSMContext) -> None:
        await state.set_state(Steps.first)
        await state.update_data(started=True)
        await message.answer("第一步")

    @r.message(Steps.first, F.text, ~F.text.startswith("/"))
    async def first(message: Message, state: FSMContext, session, user) -> None:
        await state.set_state(Steps.second)
        await state.update_data(answer=message.text)
        session.add(AuditLog(actor=f"user:{user.id}", action="test.step", note=message.text))
        if message.text == "boom":
            raise RuntimeError("handler failed after writing")
        if message.text == "saved":
            await session.commit()  # e.g. a case is complete before the bot says so
            raise RuntimeError("failed after the commit")
        await message.answer("第二步")

    return r


def use_dispatcher(ctx, *routers: Router) -> None:
    ctx.dispatcher = make_dispatcher(ctx, first=list(routers))
    ctx.channel.dispatcher = ctx.dispatcher


async def test_a_failed_step_commits_nothing_and_the_person_stays_where_they_were(ctx):
    use_dispatcher(ctx, steps_router())
    chat = ChatDriver(ctx)
    await chat.send(5001, "/steps")
    out = await chat.send(5001, "boom")
    assert "出错" in texts(out) or "没有丢失" in texts(out)

    key = StorageKey(bot_id=BOT_ID, chat_id=5001, user_id=5001)
    assert await ctx.dispatcher.storage.get_state(key) == Steps.first.state  # the failed step was forgotten
    async with ctx.sm() as s:
        assert await s.scalar(select(AuditLog).where(AuditLog.action == "test.step")) is None
    restarted = SQLStorage(ctx.sm)  # what a restart reads from the database
    assert await restarted.get_state(key) == Steps.first.state
    assert await restarted.get_data(key) == {"started": True}

    out = await chat.send(5001, "好的")  # the person simply tries again
    assert texts(out) == "第二步"
    async with ctx.sm() as s:
        notes = list(await s.scalars(select(AuditLog.note).where(AuditLog.action == "test.step")))
    assert notes == ["好的"]
    restarted = SQLStorage(ctx.sm)
    assert await restarted.get_state(key) == Steps.second.state
    assert await restarted.get_data(key) == {"started": True, "answer": "好的"}


async def test_a_commit_inside_the_handler_carries_the_conversation_step_with_it(ctx):
    use_dispatcher(ctx, steps_router())
    chat = ChatDriver(ctx)
    await chat.send(5005, "/steps")
    await chat.send(5005, "saved")
    key = StorageKey(bot_id=BOT_ID, chat_id=5005, user_id=5005)
    restarted = SQLStorage(ctx.sm)
    assert await restarted.get_state(key) == Steps.second.state  # committed with the handler's data
    async with ctx.sm() as s:
        assert list(await s.scalars(select(AuditLog.note).where(AuditLog.action == "test.step"))) == ["saved"]


async def test_one_update_writes_its_step_in_one_transaction(ctx):
    use_dispatcher(ctx, steps_router())
    chat = ChatDriver(ctx)
    await chat.send(5002, "/start")  # first contact: the user is created
    commits: list[int] = []
    event.listen(ctx.engine.sync_engine, "commit", lambda conn: commits.append(1))
    await chat.send(5002, "/steps")  # set_state + update_data (two FSM writes)
    assert len(commits) == 1


async def test_a_role_granted_in_this_process_applies_to_the_very_next_message(ctx, chat):
    await chat.send(5003, "/me")  # cached as a citizen now
    await chat.as_role(5003, "mediator", "椒江区")
    out = await chat.send(5003, "/me")
    assert "调解员" in texts(out)


async def test_a_role_changed_by_another_process_is_seen_within_the_cache_lifetime(ctx, chat):
    mw = next(m for m in ctx.dispatcher.update.outer_middleware._middlewares
              if type(m).__name__ == "DbUserMiddleware")
    now = [1000.0]
    mw.cache.clock = lambda: now[0]
    await chat.send(5004, "/me")
    await chat.send(5004, "/me")  # stored in the cache after this update
    async with ctx.sm() as s:  # another process: a plain UPDATE, no ORM flush in this one
        await s.execute(text("UPDATE users SET role = 'official' WHERE telegram_id = 5004"))
        await s.commit()
    assert "群众" in texts(await chat.send(5004, "/me"))  # still the cached row
    now[0] += ctx.settings.user_cache_seconds + 1
    assert "领导/工作人员" in texts(await chat.send(5004, "/me"))


async def test_conversation_steps_survive_a_restart_on_both_databases(db_settings):
    """The FSM upsert and delete are plain SQL shared by SQLite and PostgreSQL."""
    from backend.context import start_context

    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        use_dispatcher(ctx, steps_router())
        chat = ChatDriver(ctx)
        await chat.send(5010, "/steps")
        assert texts(await chat.send(5010, "邻居装修")) == "第二步"
        await chat.send(5010, "/steps")  # the row is updated in place
        key = StorageKey(bot_id=BOT_ID, chat_id=5010, user_id=5010)
        restarted = SQLStorage(ctx.sm)
        assert await restarted.get_state(key) == Steps.first.state
        assert await restarted.get_data(key) == {"started": True, "answer": "邻居装修"}
        await chat.send(5010, "/cancel")  # a finished conversation leaves no row behind
        async with ctx.sm() as s:
            assert await s.scalar(text("SELECT count(*) FROM fsm_state WHERE key LIKE '%:5010:%'")) == 0
    finally:
        await ctx.stop()


async def test_a_step_waits_for_another_process_off_the_event_loop(ctx):
    """While another process holds SQLite's write lock, a step waits for it on the connection's
    worker thread (busy timeout), never on the event loop: the bot keeps answering others, and
    the step is saved once the lock is free."""
    import sqlite3

    use_dispatcher(ctx, steps_router())
    chat = ChatDriver(ctx)
    for uid in (5020, 5021):
        await chat.send(uid, "/start")
        await chat.send(uid, "/start")  # now served from the user cache: the step is all it writes
    other = sqlite3.connect(ctx.settings.data_dir / "hehe.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    step = asyncio.create_task(chat.send(5020, "/steps"))
    try:
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert not step.done()
        assert "和合" in texts(await asyncio.wait_for(chat.send(5021, "/start"), 2))  # others are served
    finally:
        other.execute("COMMIT")
        other.close()
    assert texts(await asyncio.wait_for(step, 5)) == "第一步"
    restarted = SQLStorage(ctx.sm)
    key = StorageKey(bot_id=BOT_ID, chat_id=5020, user_id=5020)
    assert await restarted.get_state(key) == Steps.first.state


async def test_an_update_that_changes_no_conversation_writes_nothing(ctx):
    """/start and /cancel clear a conversation that is not there: no statement for it."""
    chat = ChatDriver(ctx)
    await chat.send(5030, "/start")  # first contact: creates the person
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_):
        statements.append(statement)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert "和合" in texts(await chat.send(5030, "/start"))
        await chat.send(5030, "/cancel")
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)
    assert not [s for s in statements if "fsm_state" in s]


def holding_router(held: asyncio.Event, release: asyncio.Event) -> Router:
    r = Router(name="test-holding")

    @r.message(Command("hold"))
    async def hold(message: Message, session, user) -> None:
        session.add(AuditLog(actor=f"user:{user.id}", action="test.hold", note="held"))
        await session.flush()  # this update now holds SQLite's write lock until it commits
        held.set()
        await release.wait()
        await message.answer("写好了")

    return r


async def test_an_update_holding_the_write_lock_and_queued_steps_do_not_wait_for_each_other(ctx):
    """On SQLite, steps that write only at their commit queue for the write lock; an update that
    already holds it commits without queuing — so neither can wait for the other forever."""
    held, release = asyncio.Event(), asyncio.Event()
    use_dispatcher(ctx, holding_router(held, release), steps_router())
    chat = ChatDriver(ctx)
    await chat.send(5041, "/start")
    holder = asyncio.create_task(chat.send(5040, "/hold"))
    await asyncio.wait_for(held.wait(), 5)
    step = asyncio.create_task(chat.send(5041, "/steps"))  # queues, then waits for SQLite's lock
    done, _ = await asyncio.wait({step}, timeout=0.3)
    assert not done  # it cannot commit while the holder has the lock
    release.set()
    out_holder, out_step = await asyncio.wait_for(asyncio.gather(holder, step), 5)
    assert texts(out_holder) == "写好了" and texts(out_step) == "第一步"
    async with ctx.sm() as s:
        assert await s.scalar(select(AuditLog.note).where(AuditLog.action == "test.hold")) == "held"
    assert await SQLStorage(ctx.sm).get_state(StorageKey(bot_id=BOT_ID, chat_id=5041, user_id=5041)) \
        == Steps.first.state


async def test_a_known_persons_conversation_step_is_one_statement_on_both_databases(db_settings):
    """A step of a known person writes its step as one statement, and a step that also saves
    something keeps both in one transaction. On SQLite (one process) it reads nothing: the
    person and the conversation come from memory. On PostgreSQL, where replicas share the
    database, the person's conversation state and row are read again under the person's lock
    (bot/isolation.py: another replica may have changed them) — and nothing else, besides the
    flood throttle's counter: one statement of its own, autocommitted (bot/middlewares.py)."""
    from datetime import datetime, timezone

    import time_machine

    from backend.context import start_context

    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    # second 5 of a minute: the throttle's counter row of the minute exists after the first update
    travel = time_machine.travel(datetime(2026, 11, 3, 2, 0, 5, tzinfo=timezone.utc), tick=True)
    travel.start()
    statements: list[str] = []
    in_transaction: list[bool] = []  # PostgreSQL: was each statement inside BEGIN … COMMIT?

    def record(_conn, _cursor, statement, *_):
        statements.append(statement)

    def after(conn, *_):
        if conn.dialect.name == "postgresql":
            in_transaction.append(conn.connection.driver_connection.is_in_transaction())

    try:
        use_dispatcher(ctx, steps_router())
        chat = ChatDriver(ctx)
        await chat.send(5030, "/cancel")  # first contact: the user is created
        await chat.send(5030, "/cancel")  # now served from the user cache
        event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
        event.listen(ctx.engine.sync_engine, "after_cursor_execute", after)
        try:
            shared = ctx.engine.dialect.name == "postgresql"

            def reads() -> list[str]:
                return [s for s in statements if s.lstrip().upper().startswith("SELECT")]

            def throttle_apart() -> None:
                """The throttle's statements, taken out: PostgreSQL one UPDATE outside any
                transaction; SQLite none (it counts in memory)."""
                pairs = list(zip(statements, in_transaction if shared else [False] * len(statements)))
                own = [(st.lstrip().split()[0], t) for st, t in pairs if "rate_counters" in st]
                assert own == ([("UPDATE", False)] if shared else []), statements
                statements[:] = [st for st, _ in pairs if "rate_counters" not in st]
                in_transaction[:] = [t for st, t in pairs if "rate_counters" not in st] if shared else []

            await ctx.channel.send_text(5030, "/steps")  # the update alone (no outbox drain)
            throttle_apart()
            writes = [s for s in statements if s not in reads()]
            assert len(writes) == 1 and "INSERT INTO fsm_state" in writes[0], statements
            if shared:  # the re-reads under the person's lock: the state, then the person
                assert len(reads()) == 2 and "fsm_state" in reads()[0] and "users" in reads()[1], statements
            else:
                assert reads() == [], statements
            statements.clear()
            in_transaction.clear()
            await ctx.channel.send_text(5030, "一楼漏水")  # step + audit row
            throttle_apart()
            assert any("fsm_state" in s for s in statements) and any("audit" in s for s in statements)
            assert len(reads()) == (2 if shared else 0), statements
            if shared:
                writing = [t for st, t in zip(statements, in_transaction) if st not in reads()]
                assert writing and all(writing)  # one BEGIN … COMMIT for both
        finally:
            event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)
            event.remove(ctx.engine.sync_engine, "after_cursor_execute", after)
        assert texts(ctx.channel.out[5030][-2:]) == "第一步\n第二步"
        key = StorageKey(bot_id=BOT_ID, chat_id=5030, user_id=5030)
        restarted = SQLStorage(ctx.sm)  # both committed
        assert await restarted.get_state(key) == Steps.second.state
        assert await restarted.get_data(key) == {"started": True, "answer": "一楼漏水"}
        async with ctx.sm() as s:
            assert list(await s.scalars(select(AuditLog.note).where(AuditLog.action == "test.step"))) == ["一楼漏水"]
        out = await chat.send(5030, "/cancel")  # a step after an autocommitted one: a clean connection
        assert "取消" in texts(out)
        assert await SQLStorage(ctx.sm).get_state(key) is None
    finally:
        travel.stop()
        await ctx.stop()
