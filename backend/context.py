"""The running application: database, bot(s), channels, outbox worker, scheduler, models.

Built once per process by :func:`start_context` (the FastAPI lifespan, the CLI chat, the
tests) and torn down by :meth:`AppContext.stop`.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core import clock, instance, migrate, preload
from backend.core.config import Settings
from backend.core.db import make_engine, make_sessionmaker, session_scope
from backend.core.leader import SEED_LOCK_KEY, one_at_a_time
from backend.core.security import load_secret
from backend.notify.delivery import Deliverer
from bot.offline import OfflineChannel

log = logging.getLogger("hehe")


def _face_cases() -> Any:
    """The missing slice's answers to the face-search route (backend.faces does not import it)."""
    from backend.faces.api import FaceCases
    from backend.missing import service as missing

    return FaceCases(visible=missing.visible_cases_by_face, assist_photo=missing.assist_search_photo)


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sm: async_sessionmaker[AsyncSession]
    channel: OfflineChannel
    dispatcher: Dispatcher
    deliverer: Deliverer
    secret: str
    bots: dict[str, Bot] = field(default_factory=dict)
    scheduler: Any = None
    faces: Any = None  # backend.faces.service.FaceService once loaded
    kb: Any = None  # knowledge_base facade once loaded
    models_ready: asyncio.Event = field(default_factory=asyncio.Event)
    model_errors: dict[str, str] = field(default_factory=dict)
    tasks: list[asyncio.Task] = field(default_factory=list)
    telegram_bot: Bot | None = None
    web: Any = None  # backend.web.channel.WebChannel: the browser channel (persisted)
    telegram_error: str | None = None  # why Telegram is not connected yet (None: fine or unused)
    data_dir_lock: Any = None  # this server's hold on the SQLite data dir (backend.core.instance)
    leader: Any = None  # backend.core.leader.Leadership: cron digests and Telegram polling run on the leader
    files: Any = None  # backend.core.storage.ObjectStore: every uploaded file (data dir or S3 bucket)
    face_cases: Any = field(default_factory=_face_cases)  # backend.faces.api.FaceCases

    async def flush(self) -> int:
        """Deliver every notification that is due now on the offline channel (web chat, terminal,
        script replay, tests) — never waiting for Telegram, which its own worker delivers."""
        return await self.deliverer.deliver_due([c for c in self.deliverer.bots if c != "telegram"])

    async def stop(self) -> None:
        from scheduler import runtime
        from scheduler.factory import stop_scheduler

        if self.scheduler is not None:
            # First, while the database is still there: running jobs finish.
            await stop_scheduler(self.scheduler)
        if self.leader is not None:
            await self.leader.stop()  # releases the leader lock: another replica takes over
        if self.faces is not None and hasattr(self.faces, "stop_polling"):
            await asyncio.to_thread(self.faces.stop_polling)  # the gallery poller (face_store=db)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for bot in {id(b): b for b in [self.telegram_bot, *self.deliverer.bots.values()]
                    if b is not None and b is not self.channel.bot and b is not getattr(self.web, "bot", None)}.values():
            await bot.session.close()
        if self.web is not None:
            try:
                await self.web.stop()  # stops listening; the web transcript's last queued writes
            except Exception:  # noqa: BLE001 - shutting down; the log has it
                log.exception("persisting the web transcript at shutdown failed")
        await self.dispatcher.fsm.events_isolation.close()  # PostgreSQL: the person-lock connection
        await self.engine.dispose()
        instance.release_data_dir(self.data_dir_lock)
        self.data_dir_lock = None
        if runtime._CTX is self:
            runtime.set_context(None)


async def _load_models(ctx: AppContext) -> None:
    s = ctx.settings

    async def one(name: str, module: str, cls: str, flag: str) -> None:
        if not getattr(s, flag):
            return
        try:
            started = preload.take(name, s)  # `hehe serve` started it before the imports
            setattr(ctx, name, await (asyncio.wrap_future(started) if started is not None
                                      else asyncio.to_thread(preload.load_model, module, cls, s)))
        except Exception as e:  # noqa: BLE001 - reported by /readyz, the app still serves chat
            log.exception("loading %s failed", name)
            ctx.model_errors[name] = str(e)

    await asyncio.gather(*(one(name, *spec) for name, spec in preload.MODELS.items()))
    if ctx.kb is not None:
        await start_kb_ingestion(ctx)
    freeze_heap(ctx.settings)
    ctx.models_ready.set()


def freeze_heap(settings: Settings) -> None:
    """Exempt everything loaded so far (modules, routers, models, schemas) from the cyclic garbage
    collector. A full collection otherwise walks all of it — a ~160 ms pause every few hundred
    bot updates, measured during intake (docs/benchmarks.md). Called once start-up is done and
    again when the models have loaded. Not in tests (``HEHE_GC_FREEZE=0``): frozen cycles are
    never freed, and a test process starts hundreds of applications."""
    if settings.gc_freeze:
        gc.freeze()


async def _index_record(session: AsyncSession, event: Any) -> None:
    from knowledge_base.models import enqueue

    await enqueue(session, event.kind, event.ref_id)  # a queue row in the same transaction


def wire_events() -> None:
    """Subscribe what the services' domain events set going (backend/core/events.py): the
    knowledge base's index follows every changed record. Called by every entry point that runs
    services (start_context, the CLI's one-transaction commands); subscribing twice is harmless."""
    from backend.core.events import RecordChanged, subscribe

    try:
        import knowledge_base.models  # noqa: F401
    except ModuleNotFoundError:  # no knowledge base installed: nothing to index
        return
    subscribe(RecordChanged, _index_record)


async def start_kb_ingestion(ctx: AppContext) -> None:
    """The index follows every change: slices enqueue in their transactions, this drains.
    Place names in questions resolve to this database's jurisdiction ids."""
    from knowledge_base.models import discover_sources, drain_forever
    from knowledge_base.places import gazetteer_from_db

    try:  # preloaded during the migrations: its record store opens now
        await asyncio.to_thread(ctx.kb.open)
    except Exception as e:  # noqa: BLE001 - reported by /readyz, the app still serves chat
        log.exception("opening the knowledge base failed")
        ctx.model_errors["kb"], ctx.kb = str(e), None
        return
    async with ctx.sm() as session:
        gazetteer = await gazetteer_from_db(session)
    if gazetteer is not None:
        await asyncio.to_thread(gazetteer.add_jieba_words)
        ctx.kb.gazetteer = gazetteer
    ctx.kb.sessionmaker = ctx.sm
    discover_sources()
    ctx.tasks.append(asyncio.create_task(drain_forever(ctx.sm, ctx.kb), name="kb-drain"))


def _follow_leadership(ctx: AppContext) -> None:
    from scheduler.factory import follow, lead

    async def lead_cron() -> None:
        await asyncio.to_thread(lead, ctx.scheduler, ctx.settings.scheduler_db_url)

    async def drop_cron() -> None:
        follow(ctx.scheduler)

    ctx.leader.on_gain.append(lead_cron)
    ctx.leader.on_lose.append(drop_cron)


async def start_context(
    settings: Settings, *, scheduler: bool = True, models: bool = True, workers: bool = True,
    telegram: bool = True, migrate_db: bool = True,
) -> AppContext:
    from bot.dispatcher import make_dispatcher
    from scheduler import runtime
    from scheduler.factory import make_scheduler, register_recurring

    settings.ensure_dirs()
    clock.set_timezone(settings.timezone)
    serving = scheduler or workers  # a process that sends: one per SQLite data dir
    lock = instance.claim_data_dir(settings.data_dir, settings.sync_db_url) if serving else None
    try:
        instance.check_database_present(settings.data_dir, settings.sync_db_url, settings.allow_new_database)
        if migrate_db:
            await asyncio.to_thread(migrate.upgrade, settings.sync_db_url)
        instance.remember_database(settings.data_dir, settings.sync_db_url)
    except BaseException:
        instance.release_data_dir(lock)
        raise
    engine = make_engine(settings.db_url)
    sm = make_sessionmaker(engine)
    wire_events()
    from backend.users import tree
    from backend.users.service import seed_jurisdictions

    tree.cache_for(engine.sync_engine, ttl=settings.jurisdiction_cache_seconds)

    async with session_scope(sm) as s:
        await one_at_a_time(s, SEED_LOCK_KEY)  # replicas starting together seed once
        await seed_jurisdictions(s)

    channel = OfflineChannel()
    from backend.core.storage import make_store, start_store
    from backend.web.channel import WebChannel

    files = make_store(settings)
    await start_store(files)
    web = WebChannel(sm, settings, files)
    await web.start()
    deliverer = Deliverer(sm, {"local": channel.bot, "web": web.bot}, send_timeout=settings.outbox_send_timeout,
                          concurrency=settings.outbox_concurrency, store=files,
                          lease=timedelta(seconds=settings.outbox_lease_seconds))
    ctx = AppContext(settings=settings, engine=engine, sm=sm, channel=channel, dispatcher=None,  # type: ignore[arg-type]
                     deliverer=deliverer, secret=load_secret(settings.data_dir, settings.api_token_secret),
                     data_dir_lock=lock, files=files)
    ctx.dispatcher = make_dispatcher(ctx)
    channel.dispatcher = ctx.dispatcher
    web.dispatcher, ctx.web = ctx.dispatcher, web
    ctx.bots["local"] = channel.bot
    runtime.set_context(ctx)

    from backend.core.leader import Leadership

    # Several replicas on PostgreSQL elect one leader for the singletons (backend.core.leader).
    ctx.leader = Leadership(settings.db_url if serving else None, retry=settings.leader_retry_seconds)
    deliverer.leader = ctx.leader  # Telegram's outbox goes out from the leader alone (its limits are per bot)

    async def send_what_waits() -> None:
        deliverer.wake.set()

    ctx.leader.on_gain.append(send_what_waits)
    if scheduler:
        ctx.scheduler = make_scheduler(settings.scheduler_db_url, settings.timezone, elected=ctx.leader.elected)
        register_recurring(ctx.scheduler, cron=False if ctx.leader.elected else None)
        if settings.sweep_seconds:
            from apscheduler.triggers.interval import IntervalTrigger

            for job in ctx.scheduler.get_jobs():
                if isinstance(job.trigger, IntervalTrigger):
                    job.reschedule(IntervalTrigger(seconds=settings.sweep_seconds, timezone=job.trigger.timezone))
        ctx.scheduler.start()
        if ctx.leader.elected:
            _follow_leadership(ctx)
    await ctx.leader.start()
    if serving:
        await web.listen()  # PostgreSQL: long polls wake for lines written on other replicas
    if workers:
        ctx.tasks.append(asyncio.create_task(deliverer.run(), name="outbox"))
        ctx.tasks.append(asyncio.create_task(web.run(), name="web-transcript"))
    if models:
        ctx.tasks.append(asyncio.create_task(_load_models(ctx), name="models"))
    else:
        ctx.models_ready.set()
    if telegram and settings.telegram_token:
        from bot.telegram import start_telegram

        await start_telegram(ctx)
    freeze_heap(settings)
    return ctx
