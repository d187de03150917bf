"""Masking of personal data — the one place the rules live.

Used for logs, answers, case cards shown to people not entitled to the raw value.
"""
from __future__ import annotations

import re

PHONE_RE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
ID_RE = re.compile(r"(?<![\dXx])(\d{6})(\d{8})(\d{3}[\dXx])(?![\dXx])")
MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def normalize_phone(raw: str) -> str | None:
    """Return an 11-digit mainland mobile number, or None if it is not one."""
    s = re.sub(r"[\s\-()]", "", raw or "")
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    return s if MAINLAND_MOBILE.match(s) else None


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "-"
    if len(phone) >= 7:
        return phone[:3] + "****" + phone[-4:]
    return "****"


def mask_name(name: str | None) -> str:
    if not name:
        return "-"
    return name[0] + "*" * max(1, len(name) - 1)


def mask_text(text: str) -> str:
    """Mask phone and ID-card numbers found anywhere in free text."""
    text = ID_RE.sub(lambda m: m.group(1) + "********" + m.group(3)[-1:].rjust(4, "*"), text)
    return PHONE_RE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


# --- appended by the knowledge base slice: names of minors in free text -----------------------
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
    "应洪葛柯卓屈鲍池牟管舒阮章裘娄"
)
_NAME = rf"(?:[{_SURNAMES}][\u4e00-\u9fa5]{{1,2}}|小[\u4e00-\u9fa5])"
_AGE = r"(\d{1,2}|[一二三四五六七八九十]{1,3})\s*(?:周)?岁"
_MINOR_PATTERNS = (
    # 王小明（12岁） / 王小明，12岁，
    re.compile(rf"({_NAME})\s*[（(,，、]\s*{_AGE}"),
    # 12岁的王小明 / 12岁男孩王小明
    re.compile(rf"{_AGE}的?(?:男孩|女孩|男童|女童|孩子|学生|少年|少女|儿子|女儿|孙子|孙女)?\s*({_NAME})"),
)
_MINOR_WORDS = re.compile(rf"(?:未成年人|未成年|儿子|女儿|孙子|孙女|男孩|女孩|男童|女童|幼童|小学生|初中生|中学生)\s*({_NAME})")
_CN = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


def _age(s: str) -> int:
    if s.isdigit():
        return int(s)
    if s == "十":
        return 10
    if s.startswith("十"):
        return 10 + _CN.get(s[1:], 0)
    if "十" in s:
        a, _, b = s.partition("十")
        return _CN.get(a, 0) * 10 + (_CN.get(b, 0) if b else 0)
    return _CN.get(s, 99)


def minor_names(text: str) -> set[str]:
    """Names of minors mentioned in free text: a name next to an age under 18, or introduced as
    a child (儿子 / 女儿 / 未成年人 …)."""
    names: set[str] = set()
    for m in _MINOR_PATTERNS[0].finditer(text or ""):
        if _age(m.group(2)) < 18:
            names.add(m.group(1))
    for m in _MINOR_PATTERNS[1].finditer(text or ""):
        if _age(m.group(1)) < 18:
            names.add(m.group(2))
    for m in _MINOR_WORDS.finditer(text or ""):
        names.add(m.group(1))
    return names


def mask_minor_names(text: str, extra_names: set[str] | None = None) -> str:
    """Replace every occurrence of a minor's name (found by :func:`minor_names`, plus
    ``extra_names``) with its masked form, e.g. 王小明 → 王**."""
    names = minor_names(text) | set(extra_names or ())
    for n in sorted(names, key=len, reverse=True):
        text = text.replace(n, mask_name(n))
    return text


def mask_personal(text: str, extra_names: set[str] | None = None) -> str:
    """Phones, ID-card numbers and minors' names."""
    return mask_text(mask_minor_names(text, extra_names))
