"""One taxonomy of record kinds and case categories, shared by the slices and the knowledge base.

Pure data and lookups: no slice is imported (core knows no slice). The disputes slice's
category table (``backend/disputes/config.toml``) is *read as a file* so that its labels
("劳动争议/欠薪", "土地承包", "宅基地" …) and codes ("labor", "homestead" …) map onto the
categories below; everything else here is the vocabulary Taizhou's own exports and officials use.

* :func:`kind_of` — a kind label on import ("矛盾纠纷", "走失人员", "代表督办", "dispute") → kind key;
* :func:`category_of` — a category label or code ("欠薪", "劳动争议/欠薪", "宅基地", "labor") → the
  canonical category ("劳动争议", "土地山林"); unknown labels are kept as they are;
* :func:`kinds_in` / :func:`categories_in` — kind and category words in a question.
"""
from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DISPUTES_CONFIG = Path(__file__).resolve().parents[1] / "disputes" / "config.toml"


@dataclass(frozen=True)
class Kind:
    key: str
    zh: str
    en: str
    labels: tuple[str, ...]  # accepted on import (exact, after NFKC and lower-casing)
    question_words: tuple[str, ...]  # words in a question that narrow to this kind


KINDS: dict[str, Kind] = {k.key: k for k in (
    Kind("dispute", "纠纷", "dispute",
         ("dispute", "disputes", "纠纷", "矛盾纠纷", "矛盾", "调解", "调解案件", "纠纷案件", "民间纠纷", "人民调解"),
         ("纠纷", "矛盾", "调解", "争议", "dispute")),
    Kind("supervision", "督办", "supervision",
         ("supervision", "督办", "代表督办", "督办事项", "代表建议", "人大代表建议", "检察建议", "公益诉讼线索", "监督事项"),
         ("督办", "代表建议", "人大代表", "检察建议", "代表提", "代表督", "监督事项", "supervision")),
    Kind("missing", "走失", "missing person",
         ("missing", "走失", "走失人员", "失踪", "失踪人员", "寻人", "走失报告", "寻人启事", "灯塔"),
         ("走失", "失踪", "寻人", "走丢", "missing person", "找不到人")),
    Kind("document", "法规文件", "document",
         ("document", "法规", "法律", "条例", "规章", "文件", "政策文件", "指引", "办事指南"),
         ("法规", "条例", "法律", "规章", "规定", "办法", "指引", "regulation")),
    Kind("history", "历史案例", "historical case",
         ("history", "historical", "历史案例", "历史案件", "往年案例", "档案", "典型案例"),
         ("历史案例", "往年案例", "档案", "典型案例")),
)}

#: kinds whose records are cases; a historical case counts as one of each (it carries no sub-kind)
CASE_KINDS = ("dispute", "supervision", "missing")

# "失联" alone is a missing person only when no wage / money context says otherwise
# ("老板失联，工资谁来付" is a wage dispute).
WEAK_MISSING_WORDS = ("失联", "联系不上")
MONEY_CONTEXT = ("工资", "工钱", "欠薪", "讨薪", "老板", "包工头", "货款", "借款", "欠款", "钱", "款", "租金", "房东")


@dataclass(frozen=True)
class Category:
    key: str  # canonical Chinese label, as shown
    en: str
    synonyms: tuple[str, ...]  # words in a question / labels on import
    dispute_codes: tuple[str, ...] = ()  # the disputes slice's category codes


CATEGORIES: dict[str, Category] = {c.key: c for c in (
    Category("劳动争议", "Labour dispute / unpaid wages",
             ("欠薪", "讨薪", "拖欠工资", "欠工资", "工资", "劳动争议", "劳资", "工伤", "工钱", "劳动报酬", "劳动合同",
              "辞退", "加班费", "社保", "农民工", "欠薪纠纷", "劳资纠纷"), ("labor",)),
    Category("邻里纠纷", "Neighbour dispute", ("邻里", "邻居", "相邻", "隔壁", "楼上楼下"), ("neighbor",)),
    Category("婚姻家庭", "Marriage & family",
             ("婚姻", "离婚", "赡养", "抚养费", "家庭纠纷", "家暴", "家庭矛盾", "彩礼", "遗产", "继承"), ("family",)),
    Category("土地山林", "Land & forest",
             ("土地", "山林", "宅基地", "承包地", "土地承包", "林地", "山场", "林权", "田地", "地界"),
             ("land_contract", "homestead")),
    Category("物业纠纷", "Property management", ("物业", "业委会", "物业费"), ("property",)),
    Category("交通事故", "Traffic accident", ("交通事故", "车祸", "追尾", "撞车", "剐蹭"), ("traffic",)),
    Category("消费纠纷", "Consumer dispute", ("消费纠纷", "消费者", "退款", "预付卡", "退费"), ("consumer",)),
    Category("医疗纠纷", "Medical dispute", ("医疗纠纷", "医患", "医疗事故"), ("medical",)),
    Category("征地拆迁", "Land expropriation", ("拆迁", "征地", "征收", "安置补偿"), ("expropriation",)),
    Category("环境污染", "Pollution", ("污染", "排污", "噪音扰民", "废水", "异味"), ()),
    Category("债务纠纷", "Debt", ("借款", "欠款", "借贷", "债务", "民间借贷", "欠钱"), ()),
    Category("渔业纠纷", "Fishery", ("渔业", "渔船", "海域", "养殖"), ()),
)}


#: catch-all labels: a record filed under one of these is not of any category a question names
CATCH_ALL = ("其他", "其它", "other")


def _norm(label: str) -> str:
    return unicodedata.normalize("NFKC", str(label or "")).strip().lower()


@lru_cache(maxsize=1)
def _dispute_labels() -> dict[str, str]:
    """The disputes slice's codes and Chinese / English names → canonical category (read from its
    config file; a missing or unreadable file only loses these extra labels)."""
    out: dict[str, str] = {}
    by_code = {code: c.key for c in CATEGORIES.values() for code in c.dispute_codes}
    try:
        raw = tomllib.loads(DISPUTES_CONFIG.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return out
    for c in raw.get("categories", []):
        key = by_code.get(c.get("code"))
        if key:
            for label in (c.get("code"), c.get("zh"), c.get("en")):
                if label:
                    out[_norm(label)] = key
    return out


@lru_cache(maxsize=1)
def _category_labels() -> dict[str, str]:
    out = dict(_dispute_labels())
    for c in CATEGORIES.values():
        for label in (c.key, c.en, *c.synonyms):
            out.setdefault(_norm(label), c.key)
    return out


def kind_of(label: str) -> str | None:
    """An import's kind label → kind key; None when unknown."""
    n = _norm(label)
    for k in KINDS.values():
        if n == k.key or n in (_norm(x) for x in k.labels):
            return k.key
    return None


def category_of(label: str | None) -> str:
    """A category label or code → the canonical category; unknown labels are returned unchanged
    (stripped), "劳动争议/欠薪" → "劳动争议", "宅基地" → "土地山林"."""
    raw = unicodedata.normalize("NFKC", str(label or "")).strip()
    if not raw:
        return ""
    labels = _category_labels()
    if _norm(raw) in labels:
        return labels[_norm(raw)]
    for part in raw.replace("、", "/").replace("／", "/").split("/"):
        if _norm(part) in labels:
            return labels[_norm(part)]
    return raw


def known_category(label: str) -> bool:
    return label in CATEGORIES


def kinds_in(text: str) -> tuple[str, ...]:
    """Kinds named in a question. "失联" is a missing person only without a wage / money context."""
    low = _norm(text)
    found = [k.key for k in KINDS.values() if any(w in low for w in k.question_words)]
    if "missing" not in found and any(w in low for w in WEAK_MISSING_WORDS) and not any(w in low for w in MONEY_CONTEXT):
        found.append("missing")
    return tuple(found)


def categories_in(text: str) -> tuple[str, ...]:
    low = _norm(text)
    return tuple(c.key for c in CATEGORIES.values() if any(_norm(w) in low for w in (c.key, *c.synonyms)))


def question_words() -> list[str]:
    """Every kind and category word (the question parser removes them to see what is left)."""
    words = [w for k in KINDS.values() for w in k.question_words] + list(WEAK_MISSING_WORDS)
    return words + [w for c in CATEGORIES.values() for w in (c.key, *c.synonyms)]
