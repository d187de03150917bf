"""Where a case goes (多元调处) and what a free-text complaint is about.

Routing: start at the place of the dispute, move up to the category's handling level
(劳动争议 → township, 交通事故 → county, see config.toml), then walk up the tree until a
level has mediators. Classification: keyword rules, plus embedding similarity to the
category descriptions when a knowledge-base embedder is loaded (optional).
"""
from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.disputes import config
from backend.users import service as users, tree
from backend.users.models import Level, Role, User
from backend.users.tree import Node, Place

log = logging.getLogger("hehe.disputes")
LEVEL_INDEX = users.LEVEL_INDEX  # city 0 … grid 4


async def ancestor_at(session: AsyncSession, j: Place, level: str) -> Node | None:
    for a in await users.ancestors(session, j):
        if a.level == level:
            return a
    return None


async def mediators_at(session: AsyncSession, j: Place) -> list[User]:
    return await users.users_with_role(session, Role.mediator, j, exact=True)


async def route(session: AsyncSession, place: Place, category: str) -> tuple[Node, list[User]]:
    """The handling unit and its mediators (empty list if nobody up to the city is registered)."""
    cat = config.get().category(category)
    chain = await users.ancestors(session, place)  # city … place
    # the category's handling level is the lowest allowed: cut the chain there
    limit = LEVEL_INDEX.get(cat.level, LEVEL_INDEX["grid"])
    chain = [j for j in chain if LEVEL_INDEX[j.level] <= limit]
    for j in reversed(chain):
        if j.level == Level.city.value:
            break
        found = await mediators_at(session, j)
        if found:
            return j, found
    # nobody registered: the county keeps the case so it is visible to its officials
    unit = next((j for j in chain if j.level == Level.county.value), chain[-1])
    log.warning("no mediators for %s (%s): case parked at %s", place.name, category, unit.name)
    return unit, []


async def parent_unit(session: AsyncSession, unit: Place) -> tuple[Node | None, list[User]]:
    """The next level up that has mediators (for 上报 and review of 不满意)."""
    chain = await users.ancestors(session, unit)
    for j in reversed(chain[:-1]):
        found = await mediators_at(session, j)
        if found:
            return j, found
    return None, []


async def supervisors_above(session: AsyncSession, unit: Place) -> list[User]:
    """Who hears about a missed deadline: supervisors at the unit's level or above (title
    "supervisor"), else the mediators of the next level up, else officials of the county."""
    chain = await users.ancestors(session, unit)
    for j in reversed(chain):
        sup = await users.users_with_role(session, Role.mediator, j, exact=True, title="supervisor")
        if sup:
            return sup
    _, up = await parent_unit(session, unit)
    if up:
        return up
    county = next((j for j in chain if j.level == Level.county.value), None)
    return await users.users_with_role(session, Role.official, county, exact=True) if county else []


async def place_from_text(session: AsyncSession, text: str) -> Node | None:
    """The most specific jurisdiction named in a typed address ("路桥区路南街道银座街88号" →
    路南街道). A full name ("路南街道") counts before a short one ("路桥" inside "路桥区" is the
    district, not 路桥街道): a short name only matches where no full name was found, then the
    deepest level wins, then the longest name, and a place must lie in the county named, if any."""
    nodes = [j for j in (await tree.current(session)).nodes if j.level != Level.city.value]
    taken = [False] * len(text)
    found: list[tuple[Node, bool, int]] = []  # (node, full name?, length matched)
    for j in sorted(nodes, key=lambda n: -len(n.name)):
        i = text.find(j.name)
        if i >= 0 and not all(taken[i:i + len(j.name)]):
            found.append((j, True, len(j.name)))
            for k in range(i, i + len(j.name)):
                taken[k] = True
    for j in nodes:
        short = users._short_name(j.name)
        if len(short) < 2 or short == j.name or any(f[0].id == j.id for f in found):
            continue
        i = text.find(short)
        while i >= 0 and any(taken[i:i + len(short)]):
            i = text.find(short, i + 1)
        if i >= 0:
            found.append((j, False, len(short)))
    counties = {f[0].id for f in found if f[0].level == Level.county.value}
    best: tuple | None = None
    for j, full, length in found:
        if counties and j.level != Level.county.value:
            county = await ancestor_at(session, j, Level.county.value)
            if county is None or county.id not in counties:
                continue  # a place of the same name in another county
        rank = (LEVEL_INDEX[j.level], full, length)
        if best is None or rank > best[0]:
            best = (rank, j)
    return best[1] if best else None


async def nearest_townships(session: AsyncSession, lat: float, lon: float, k: int = 3) -> list[tuple[Node, float]]:
    """The ``k`` townships (乡镇/街道) whose centroids are nearest a shared location, with km."""
    if not users.in_taizhou(lat, lon):
        return []
    towns = [(j, users._distance_km(lat, lon, j.lat, j.lon)) for j in (await tree.current(session)).nodes
             if j.level == Level.township.value and j.lat is not None]
    return sorted(towns, key=lambda t: t[1])[:k]


def clear_nearest(candidates: list[tuple[Node, float]], within_km: float = 3.0, margin: float = 1.5) -> Node | None:
    """The nearest township when it is clearly the one (close, and well ahead of the next);
    None when the person should choose among the candidates."""
    if not candidates or candidates[0][1] > within_km:
        return None
    if len(candidates) > 1 and candidates[1][1] < candidates[0][1] * margin:
        return None
    return candidates[0][0]


# ---------------------------------------------------------------- classification
def keyword_scores(text: str) -> dict[str, int]:
    cfg = config.get()
    return {c.code: sum(1 for k in c.keywords if k in text) for c in cfg.categories.values() if c.keywords}


def _cos(a, b) -> float:
    num = sum(x * y for x, y in zip(a, b))
    da = math.sqrt(sum(x * x for x in a)) or 1.0
    db = math.sqrt(sum(y * y for y in b)) or 1.0
    return num / (da * db)


def _embedder(kb: Any):
    """``kb.embed(texts)`` or the knowledge base's LangChain-style ``kb.embeddings.embed_documents``,
    once the knowledge base is loaded; None otherwise (keywords only)."""
    if kb is None or getattr(kb, "ready", True) is False:
        return None
    fn = getattr(kb, "embed", None)
    if callable(fn):
        return fn
    emb = getattr(kb, "embeddings", None)
    fn = getattr(emb, "embed_documents", None)
    return fn if callable(fn) else None


_DESC_VECTORS: dict[int, list] = {}


def classify(text: str, kb: Any = None, threshold: float = 0.35) -> str | None:
    """Suggested category code for a complaint, or None if it does not look like one."""
    scores = keyword_scores(text)
    best = max(scores.items(), key=lambda kv: kv[1], default=(None, 0))
    if best[1] > 0:
        return best[0]
    embed = _embedder(kb)
    if embed is None:
        return None
    try:  # optional: similarity to the category descriptions
        cats = [c for c in config.get().categories.values() if c.code != "other"]
        key = id(embed.__self__) if hasattr(embed, "__self__") else id(embed)
        if key not in _DESC_VECTORS:
            _DESC_VECTORS[key] = embed([c.description for c in cats])
        q = embed([text])[0]
        sims = [(_cos(q, v), c.code) for v, c in zip(_DESC_VECTORS[key], cats)]
        sim, code = max(sims)
        return code if sim >= threshold else None
    except Exception:  # noqa: BLE001 - the embedder is a bonus, keywords already answered
        log.warning("embedding classification failed", exc_info=True)
        return None
