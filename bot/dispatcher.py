"""Dispatcher factory: one Router per capability, discovered from ``handlers/``."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import CallbackQuery

import handlers
from bot.fsm_storage import SQLStorage
from bot.middlewares import (
    ControlCharsMiddleware, DbUserMiddleware, DedupeMiddleware, ErrorMiddleware, IgnoreBotsMiddleware, ThrottleMiddleware,
)


def handler_modules() -> list[Any]:
    mods = []
    for info in pkgutil.iter_modules(handlers.__path__):
        mod = importlib.import_module(f"handlers.{info.name}")
        if hasattr(mod, "make_router"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "PRIORITY", 500), m.__name__))


def _inline_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return call


def run_sync_filters_inline(router: Router) -> None:
    """aiogram runs every synchronous filter — each ``F.text…`` magic filter included — in a
    worker thread: one thread hop per filter per update, the largest cost of routing a message
    (docs/benchmarks.md). Hehe's filters are pure and cheap, so they run on the event loop.
    Rule for handler authors: a filter must not block."""
    for observer in router.observers.values():
        for handler in [observer._handler, *observer.handlers]:
            for flt in handler.filters or []:
                if not flt.awaitable:
                    flt.callback = _inline_call(flt.callback)
                    flt.awaitable = True
    for sub in router.sub_routers:
        run_sync_filters_inline(sub)


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
    """A fresh Dispatcher with fresh Routers (a Router can be attached only once).
    ``first``: extra routers put in front of the capabilities' (benchmarks, tests)."""
    dp = Dispatcher(storage=SQLStorage(ctx.sm))
    dp.update.outer_middleware(DedupeMiddleware())
    dp.update.outer_middleware(ErrorMiddleware())
    dp.update.outer_middleware(IgnoreBotsMiddleware())
    dp.update.outer_middleware(ControlCharsMiddleware())
    dp.update.outer_middleware(ThrottleMiddleware(ctx.settings.throttle_per_minute))
    dp.update.outer_middleware(DbUserMiddleware(ctx))
    capabilities = [m.make_router() for m in handler_modules()]
    for router in capabilities:
        skip_foreign_callbacks(router)
    dp.include_routers(*first, *capabilities)
    run_sync_filters_inline(dp)
    return dp
