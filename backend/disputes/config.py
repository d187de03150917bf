"""The slice's configurable tables (categories, routing levels, deadlines, risk words),
read from ``config.toml`` next to this file or from ``$HEHE_DISPUTES_CONFIG``."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "config.toml"


@dataclass(frozen=True)
class Category:
    code: str
    zh: str
    en: str
    level: str
    risk: int
    keywords: tuple[str, ...]
    description: str

    def name(self, lang: str = "zh") -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True)
class Config:
    categories: dict[str, Category]
    deadlines: dict[str, dict]
    rating_remind_days: int
    phrases: dict[str, tuple[str, ...]]  # kind (violence, threat, mass, fight, petition, harm) → phrases
    benign_phrases: tuple[str, ...]  # compounds that contain a phrase but mean no harm (砍价, 跳楼价)
    group_parties: int
    crowd_parties: int
    repeat_days: int
    red: int
    yellow: int
    blue: int
    hotspot_min: int

    def deadline(self, level: str) -> dict:
        return {**self.deadlines["default"], **self.deadlines.get(level, {})}

    def category(self, code: str) -> Category:
        return self.categories.get(code) or self.categories["other"]


def load(path: Path | None = None) -> Config:
    p = path or Path(os.environ.get("HEHE_DISPUTES_CONFIG") or DEFAULT_PATH)
    with p.open("rb") as fh:
        raw = tomllib.load(fh)
    cats = {c["code"]: Category(c["code"], c["zh"], c.get("en", c["zh"]), c.get("level", "village"),
                                int(c.get("risk", 0)), tuple(c.get("keywords", [])), c.get("description", ""))
            for c in raw["categories"]}
    if "other" not in cats:
        raise ValueError("disputes config: a category with code 'other' is required")
    r = raw.get("risk", {})
    return Config(
        categories=cats, deadlines=raw.get("deadlines", {"default": {}}),
        rating_remind_days=int(raw.get("rating", {}).get("remind_after_days", 3)),
        phrases={k: tuple(v) for k, v in r.get("phrases", {}).items()},
        benign_phrases=tuple(sorted(r.get("benign", []), key=len, reverse=True)),
        group_parties=int(r.get("group_parties", 5)), crowd_parties=int(r.get("crowd_parties", 30)),
        repeat_days=int(r.get("repeat_days", 90)), red=int(r.get("red", 3)), yellow=int(r.get("yellow", 2)),
        blue=int(r.get("blue", 1)), hotspot_min=int(raw.get("digest", {}).get("hotspot_min", 2)),
    )


@lru_cache
def get() -> Config:
    return load()
