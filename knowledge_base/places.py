"""Place names → jurisdiction ids (the gazetteer used by the question parser and the importer).

Built from the ``jurisdictions`` table when there is one (:func:`gazetteer_from_db`); the
built-in Taizhou list (:meth:`Gazetteer.default`) serves the CLI on an empty database and the tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_SUFFIXES = ("街道", "镇", "乡", "区", "市", "县")


@dataclass
class Place:
    id: int
    name: str
    level: str  # city | county | township | village | grid
    path_ids: list[int]  # own id and all ancestors, root first
    aliases: list[str] = field(default_factory=list)


class Gazetteer:
    def __init__(self, places: list[Place]):
        self.places = places
        self.by_id = {p.id: p for p in places}
        names: dict[str, list[Place]] = {}
        for p in places:
            for n in {p.name, *p.aliases}:
                names.setdefault(n.lower(), []).append(p)
        # short forms: 椒江区 → 椒江, 泽国镇 → 泽国 (only when unambiguous and not another place's name)
        for p in places:
            for suf in _SUFFIXES:
                if p.name.endswith(suf) and len(p.name) - len(suf) >= 2:
                    short = p.name[: -len(suf)].lower()
                    if short not in names:
                        names.setdefault(short, []).append(p)
                    break
        self._names = {n: ps for n, ps in names.items() if len(ps) == 1 or all(q.level == ps[0].level for q in ps)}
        alts = sorted(self._names, key=len, reverse=True)
        parts = []
        for n in alts:
            esc = re.escape(n)
            parts.append(rf"\b{esc}\b" if n.isascii() else esc)
        self._re = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    # -------------------------------------------------------------- lookups
    def find(self, text: str) -> list[Place]:
        """Places named in ``text`` (longest names first, no overlaps)."""
        if not self._re or not text:
            return []
        out: list[Place] = []
        for m in self._re.finditer(text):
            ps = self._names.get(m.group(0).lower(), [])
            if len(ps) == 1 and ps[0] not in out:
                out.append(ps[0])
        return out

    def resolve(self, location: str) -> Place | None:
        """The most specific known place in a location string ("椒江区白云街道xx小区" → 白云街道)."""
        found = self.find(location)
        if not found:
            return None
        order = {"grid": 4, "village": 3, "township": 2, "county": 1, "city": 0}
        return max(found, key=lambda p: (order.get(p.level, 0), len(p.path_ids)))

    def resolve_ids(self, location: str) -> list[int]:
        p = self.resolve(location)
        return list(p.path_ids) if p else []

    def name_of(self, jid: int) -> str | None:
        p = self.by_id.get(jid)
        return p.name if p else None

    def children(self, jid: int, level: str | None = None) -> list[Place]:
        return [p for p in self.places if jid in p.path_ids[:-1] and (level is None or p.level == level)]

    def add_jieba_words(self) -> None:
        import jieba

        for p in self.places:
            jieba.add_word(p.name, freq=2000)

    # -------------------------------------------------------------- defaults
    @classmethod
    def default(cls) -> "Gazetteer":
        return cls(_default_places())


PINYIN = {
    "椒江区": ["Jiaojiang"], "黄岩区": ["Huangyan"], "路桥区": ["Luqiao"], "临海市": ["Linhai"],
    "温岭市": ["Wenling"], "玉环市": ["Yuhuan"], "天台县": ["Tiantai"], "仙居县": ["Xianju"],
    "三门县": ["Sanmen"], "台州市": ["Taizhou"],
}

TOWNSHIPS = {
    "椒江区": "海门街道 白云街道 葭沚街道 洪家街道 下陈街道 前所街道 章安街道 三甲街道 大陈镇",
    "黄岩区": "东城街道 西城街道 南城街道 北城街道 新前街道 江口街道 院桥镇 沙埠镇 宁溪镇 头陀镇",
    "路桥区": "路桥街道 路南街道 路北街道 螺洋街道 桐屿街道 峰江街道 新桥镇 横街镇 金清镇 蓬街镇",
    "临海市": "古城街道 大洋街道 江南街道 大田街道 邵家渡街道 杜桥镇 东塍镇 汛桥镇 白水洋镇",
    "温岭市": "太平街道 城东街道 城西街道 横峰街道 泽国镇 大溪镇 松门镇 箬横镇 新河镇 石塘镇",
    "玉环市": "玉城街道 坎门街道 大麦屿街道 楚门镇 清港镇 干江镇",
    "天台县": "赤城街道 始丰街道 福溪街道 平桥镇 白鹤镇 街头镇",
    "仙居县": "福应街道 南峰街道 安洲街道 横溪镇 白塔镇 田市镇",
    "三门县": "海游街道 沙柳街道 珠岙镇 亭旁镇 健跳镇 浦坝港镇",
}


def _default_places() -> list[Place]:
    """Taizhou: city 1, counties 2–10, townships from 100 (stable ids for tests and the CLI)."""
    places = [Place(1, "台州市", "city", [1], PINYIN["台州市"])]
    tid = 100
    for i, (county, towns) in enumerate(TOWNSHIPS.items()):
        cid = 2 + i
        places.append(Place(cid, county, "county", [1, cid], PINYIN.get(county, [])))
        for t in towns.split():
            places.append(Place(tid, t, "township", [1, cid, tid]))
            tid += 1
    return places


async def gazetteer_from_db(session) -> Gazetteer | None:
    """Build from ``backend.users.models.Jurisdiction``; None when the table is empty."""
    from sqlalchemy import select

    from backend.users.models import Jurisdiction
    from knowledge_base.records import jurisdiction_ids_from_path

    rows = (await session.execute(select(Jurisdiction))).scalars().all()
    if not rows:
        return None
    places = []
    for j in rows:
        ids = jurisdiction_ids_from_path(j.path) or [j.id]
        places.append(Place(j.id, j.name, j.level, ids, PINYIN.get(j.name, [])))
    return Gazetteer(places)
