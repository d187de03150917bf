"""Import every model module so ``Base.metadata`` knows every table (Alembic, tests)."""
from __future__ import annotations

import importlib
import pkgutil

import backend
from backend.core.db import Base

CORE_MODEL_MODULES = ["backend.core.files", "backend.notify.models", "backend.users.models", "bot.fsm_storage"]


def load_all() -> type[Base]:
    for name in CORE_MODEL_MODULES:
        importlib.import_module(name)
    for info in pkgutil.iter_modules(backend.__path__):
        if info.ispkg:
            try:
                importlib.import_module(f"backend.{info.name}.models")
            except ModuleNotFoundError as e:
                if e.name != f"backend.{info.name}.models":
                    raise
    try:
        importlib.import_module("knowledge_base.models")
    except ModuleNotFoundError as e:
        if e.name != "knowledge_base.models":
            raise
    return Base


load_all()
metadata = Base.metadata
