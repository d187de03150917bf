"""Dispatcher factory: one Router per capability, discovered from ``handlers/``."""
from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import CallbackQuery, TelegramObject

import handlers
from bot.fsm_storage import SQLStorage
from bot.middlewares import (
    ControlCharsMiddleware, DbUserMiddleware, DedupeMiddleware, ErrorMiddleware, IgnoreBotsMiddleware, ThrottleMiddleware,
)


def handler_modules() -> list[Any]:
    """The modules of ``handlers/`` that define a capability's router, in PRIORITY order."""
    mods = []
    for info in pkgutil.iter_modules(handlers.__path__):
        mod = importlib.import_module(f"handlers.{info.name}")
        if isinstance(getattr(mod, "router", None), Router) or hasattr(mod, "make_router"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "PRIORITY", 500), m.__name__))


@functools.cache
def capabilities() -> Router:
    """Every capability's router under one root, built once per process.

    A handler module exposes a module-level ``router = Router(...)`` (or, older style, a
    ``make_router()`` factory). An aiogram Router can be attached to one parent only, while a
    process may run several Dispatchers (one per application context: tests start many). So
    the routers hang under this one root, and each Dispatcher hands its events to the root
    (:func:`make_dispatcher`)."""
    root = Router(name="capabilities")
    for mod in handler_modules():
        router = mod.router if isinstance(getattr(mod, "router", None), Router) else mod.make_router()
        skip_foreign_callbacks(router)
        root.include_router(router)
    return root


def _bridge(root: Router) -> Router:
    """A Dispatcher's own router that passes each event on to ``root`` (public
    ``Router.propagate_event``), with everything the middlewares put in the handler data."""
    bridge = Router(name="capabilities-bridge")

    def forward(update_type: str) -> Callable[..., Any]:
        async def handle(event: TelegramObject, **data: Any) -> Any:
            return await root.propagate_event(update_type, event, **data)
        return handle

    for update_type in [*root.resolve_used_update_types(), "error"]:
        bridge.observers[update_type].register(forward(update_type))
    return bridge


def skip_foreign_callbacks(router: Router) -> None:
    """A button press is offered to every router in turn, and each router tries each of its
    handlers — a dispute button went through ~30 other handlers' callback-data parsing before
    reaching its own (docs/benchmarks.md). A router whose button handlers all take typed
    callback data gets one router-level check: is the data one of its prefixes? Routers with any
    other kind of button handler, or with sub-routers (which the check would also cut off), are
    left alone."""
    if router.sub_routers:
        return
    prefixes = set()
    for handler in router.callback_query.handlers:
        typed = [f.callback for f in handler.filters or [] if isinstance(f.callback, CallbackQueryFilter)]
        if not typed:
            return
        cb = typed[0].callback_data
        prefixes.add(cb.__prefix__ + cb.__separator__)
    if prefixes:
        mine = tuple(sorted(prefixes))

        def ours(query: CallbackQuery) -> bool:
            return (query.data or "").startswith(mine)

        router.callback_query.filter(ours)


def make_dispatcher(ctx: Any, first: Sequence[Router] = ()) -> Dispatcher:
    """A Dispatcher for one application context. ``first``: extra (fresh) routers put in front
    of the capabilities' (benchmarks, tests)."""
    storage = SQLStorage(ctx.sm)
    db_user = DbUserMiddleware(ctx)
    isolation = None
    if ctx.engine.dialect.name == "postgresql":
        # Replicas may share the database: one update of a person at a time across all of them,
        # and what this process cached about the person is read again under the lock.
        from backend.core.leader import asyncpg_dsn
        from bot.fsm_storage import storage_key
        from bot.isolation import ReplicaIsolation

        def fresh(key) -> None:
            storage.forget(storage_key(key))
            db_user.cache.invalidate(key.user_id)

        isolation = ReplicaIsolation(asyncpg_dsn(ctx.settings.db_url), fresh)
    dp = Dispatcher(storage=storage, **({"events_isolation": isolation} if isolation else {}))
    dp.update.outer_middleware(DedupeMiddleware(ctx))
    dp.update.outer_middleware(ErrorMiddleware())
    dp.update.outer_middleware(IgnoreBotsMiddleware())
    dp.update.outer_middleware(ControlCharsMiddleware())
    dp.update.outer_middleware(ThrottleMiddleware(ctx, ctx.settings.throttle_per_minute))
    dp.update.outer_middleware(db_user)
    dp.include_routers(*first, _bridge(capabilities()))
    return dp
