"""Dispatcher factory: one Router per capability, discovered from ``handlers/``."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from aiogram import Dispatcher

import handlers
from bot.fsm_storage import SQLStorage
from bot.middlewares import (
    DbUserMiddleware, DedupeMiddleware, ErrorMiddleware, IgnoreBotsMiddleware, ThrottleMiddleware,
)


def handler_modules() -> list[Any]:
    mods = []
    for info in pkgutil.iter_modules(handlers.__path__):
        mod = importlib.import_module(f"handlers.{info.name}")
        if hasattr(mod, "make_router"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "PRIORITY", 500), m.__name__))


def make_dispatcher(ctx: Any) -> Dispatcher:
    """A fresh Dispatcher with fresh Routers (a Router can be attached only once)."""
    dp = Dispatcher(storage=SQLStorage(ctx.sm))
    dp.update.outer_middleware(DedupeMiddleware())
    dp.update.outer_middleware(ErrorMiddleware())
    dp.update.outer_middleware(IgnoreBotsMiddleware())
    dp.update.outer_middleware(ThrottleMiddleware(ctx.settings.throttle_per_minute))
    dp.update.outer_middleware(DbUserMiddleware(ctx))
    dp.include_routers(*[m.make_router() for m in handler_modules()])
    return dp
