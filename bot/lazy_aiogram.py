"""Import aiogram without building all of its pydantic schemas up front.

``import aiogram`` builds the validator of every Bot API type (~450) and method (~170): 2–3 s
of CPU on this project's 2-core machine, the largest single part of ``hehe serve``'s cold
start (docs/benchmarks.md). A bot uses a few dozen of them. :func:`install` makes that first
import defer each schema to the first time its class is used — the same validators, built
later, only for the classes used:

- aiogram's types already ask for ``defer_build``, but ``aiogram/types/__init__.py`` then calls
  ``model_rebuild`` on each of them to resolve forward references (names its modules import only
  under ``TYPE_CHECKING``). During the import that call instead puts those names into each
  type's module, where pydantic's own lazy rebuild finds them.
- the method classes (and ``Request``/``Response``) are created with ``defer_build`` on.

Both changes are undone when ``import aiogram`` returns; nothing else is affected. Without the
pydantic internals this relies on, or when aiogram is already imported, it does nothing and
aiogram imports as usual. ``tests/foundation/test_lazy_aiogram.py`` checks that every type and
method still builds and validates exactly as after a plain import.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any


def _exec_deferred(exec_module, module) -> None:
    try:
        from pydantic import BaseModel
        from pydantic._internal import _config
    except ImportError:  # pragma: no cover - a pydantic without these internals
        return exec_module(module)
    if "defer_build" not in _config.config_defaults:  # pragma: no cover
        return exec_module(module)
    rebuild = BaseModel.__dict__["model_rebuild"]
    default = _config.config_defaults["defer_build"]

    def model_rebuild(cls, *, force: bool = False, raise_errors: bool = True,
                      _parent_namespace_depth: int = 2, _types_namespace: Any = None):
        if _types_namespace is not None and not force and cls.__module__.startswith("aiogram.types"):
            names = vars(sys.modules[cls.__module__])
            for name, value in _types_namespace.items():
                names.setdefault(name, value)
            return None
        return rebuild.__func__(cls, force=force, raise_errors=raise_errors,
                                _parent_namespace_depth=_parent_namespace_depth + 1,
                                _types_namespace=_types_namespace)

    BaseModel.model_rebuild = classmethod(model_rebuild)
    _config.config_defaults["defer_build"] = True
    try:
        exec_module(module)
    finally:
        BaseModel.model_rebuild = rebuild
        _config.config_defaults["defer_build"] = default


class _DeferringLoader:
    """aiogram's own loader, with its package's execution wrapped by :func:`_exec_deferred`."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        _exec_deferred(self._loader.exec_module, module)


class _FirstAiogramImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "aiogram":
            return None
        sys.meta_path.remove(self)  # once: find the real spec, wrap its loader
        spec = importlib.util.find_spec(name)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _DeferringLoader(spec.loader)
        return spec


def install() -> bool:
    """Arrange for the first ``import aiogram`` to defer schema building. Idempotent; False
    when aiogram is already imported (too late) or the hook is already in place."""
    if "aiogram" in sys.modules or any(isinstance(f, _FirstAiogramImport) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _FirstAiogramImport())
    return True


def warm_up() -> None:
    """Build what every chat update uses (~0.3 s here), so that cost is part of start-up and not
    of the first person's first message. A no-op for classes already built."""
    from aiogram import methods, types
    from aiogram.methods.base import Response

    for cls in (types.Update, types.Message, types.CallbackQuery, types.InlineKeyboardMarkup,
                types.ReplyKeyboardMarkup, types.ReplyKeyboardRemove, methods.SendMessage,
                methods.EditMessageText, methods.EditMessageReplyMarkup, methods.AnswerCallbackQuery,
                methods.SendPhoto, methods.SendDocument, methods.GetFile):
        cls.model_rebuild()
    for returning in (types.Message, bool, types.File):
        Response[returning].model_rebuild()
