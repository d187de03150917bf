"""User-facing text lives in ``backend/locales/<lang>/<slice>.toml``.

A key is ``<slice>.<name>``: ``t("common.welcome", name="张三")``. Each capability owns
its own file, so slices never edit each other's text. zh is the default; a key missing
in en falls back to zh, a key missing everywhere returns the key (and a test catches it).
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
LANGUAGES = ("zh", "en")
DEFAULT = "zh"


@lru_cache
def catalog(lang: str) -> dict[str, str]:
    out: dict[str, str] = {}
    d = LOCALES_DIR / lang
    for f in sorted(d.glob("*.toml")):
        with f.open("rb") as fh:
            data = tomllib.load(fh)
        _flatten(f.stem, data, out)
    return out


def _flatten(prefix: str, data: dict, out: dict[str, str]) -> None:
    for k, v in data.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            _flatten(key, v, out)
        else:
            out[key] = str(v)


def normalize_language(code: str | None) -> str:
    """Telegram's language_code ('zh-hans', 'en-US', None) → one of LANGUAGES."""
    if not code:
        return DEFAULT
    code = code.lower()
    if code.startswith("en"):
        return "en"
    return DEFAULT


def gettext(lang: str, key: str, /, **params) -> str:
    text = catalog(lang).get(key) or catalog(DEFAULT).get(key) or key
    if params:
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError):
            return text
    return text


class Translator:
    """Bound to one language; injected into handlers as ``t``."""

    def __init__(self, lang: str = DEFAULT):
        self.lang = lang if lang in LANGUAGES else DEFAULT

    def __call__(self, key: str, /, **params) -> str:
        return gettext(self.lang, key, **params)

    def all(self, key: str) -> set[str]:
        """The text of a key in every language (to match reply-keyboard buttons)."""
        return {gettext(lang, key) for lang in LANGUAGES}
