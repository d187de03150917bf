"""Load the heavy models while the rest of Hehe is still being imported.

``hehe serve`` calls :func:`start` first thing: the face model and the text-embedding model
then load in background threads while Python imports aiogram, FastAPI and the slices and runs
the migrations (docs/benchmarks.md, cold start). The application's lifespan picks the results
up with :func:`take`; without a preload (tests, other commands) it loads them itself.
This module imports nothing heavy on purpose.
"""
from __future__ import annotations

import importlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# name → (module, class with load(), the Settings flag that enables it)
MODELS: dict[str, tuple[str, str, str]] = {
    "faces": ("backend.faces.service", "FaceService", "face_enabled"),
    "kb": ("knowledge_base.facade", "KnowledgeBase", "kb_enabled"),
}
_pool = ThreadPoolExecutor(max_workers=len(MODELS), thread_name_prefix="hehe-preload")
_started: dict[str, tuple[Any, Future]] = {}


def load_model(module: str, cls: str, settings: Any) -> Any:
    """Slices that ship a heavy model expose a class with ``load()``; absent slice → None."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise
    obj = getattr(mod, cls)(settings)
    obj.load()
    return obj


def start(settings: Any) -> None:
    for name, (module, cls, flag) in MODELS.items():
        if getattr(settings, flag) and name not in _started:
            _started[name] = (settings, _pool.submit(load_model, module, cls, settings))


def take(name: str, settings: Any) -> Future | None:
    """The preloaded model ``name`` if it was started for these settings (once)."""
    entry = _started.get(name)
    if entry is None or entry[0] is not settings:
        return None
    del _started[name]
    return entry[1]
