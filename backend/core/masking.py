"""Masking of personal data — the one place the rules live.

Used for logs, answers, case cards shown to people not entitled to the raw value.
"""
from __future__ import annotations

import re

MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")

# Full-width digits and signs (１３９…, ＋, －) are typed by Chinese input methods: fold them first.
_FOLD = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "＋": "+", "－": "-", "—": "-",
                       "–": "-", "（": "(", "）": ")", "\u3000": " ", "Ｘ": "X", "ｘ": "x"})
# A run of digit groups joined by spaces, dashes or brackets, with an optional +86 / 0086 in front.
# Numbers written in groups use groups of at most 8 digits (139 1234 5678, 6222 0212 …, 330102
# 19700101 1234, 0576-88123456): a longer group is a number of its own, never part of one.
_RUN = re.compile(r"(?<![0-9A-Za-z])[+(]?[0-9]+[Xx]?(?:[ \t\-()]{1,2}[0-9]+[Xx]?)*(?![0-9A-Za-z])")
_GROUP = re.compile(r"[0-9]+[Xx]?")


def normalize_phone(raw: str) -> str | None:
    """Return an 11-digit mainland mobile number, or None if it is not one."""
    s = re.sub(r"[\s\-()]", "", (raw or "").translate(_FOLD))
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


def _classify(digits: str) -> str | None:
    """The masked form of one number written as ``digits`` (separators removed), or None when
    it is not personal data (dates, amounts, case numbers …)."""
    if digits.startswith("+86") or digits.startswith("0086"):
        rest = digits[3:] if digits.startswith("+") else digits[4:]
        return "+86 " + rest[:3] + "****" + rest[-4:] if MAINLAND_MOBILE.match(rest) else None
    if digits.startswith("+"):
        return None
    if MAINLAND_MOBILE.match(digits):
        return digits[:3] + "****" + digits[-4:]
    if re.fullmatch(r"[1-9]\d{16}[\dXx]", digits):  # 18-digit resident ID
        return digits[:6] + "********" + "***" + digits[-1]
    if re.fullmatch(r"[1-9]\d{14}", digits):  # 15-digit ID (before 1999)
        return digits[:6] + "******" + "***"
    if re.fullmatch(r"0(?:10|2\d|[3-9]\d{2})\d{7,8}", digits):  # landline with area code
        area = 3 if digits[1] in "12" else 4
        return digits[:area] + "-****" + digits[-4:]
    if re.fullmatch(r"[3-6]\d{15,18}", digits):  # bank card (UnionPay 62…, Visa 4…, Master 5…)
        return digits[:4] + " **** **** " + digits[-4:]
    return None


def _mask_run(m: re.Match) -> str:
    """Mask every number inside one run of digit groups, keeping the text between them (a date
    next to a phone number keeps its dashes)."""
    run = m.group(0)
    spans = [g.span() for g in _GROUP.finditer(run)]
    groups = [run[a:b] for a, b in spans]
    if run.startswith("+"):
        groups[0] = "+" + groups[0]
        spans[0] = (0, spans[0][1])
    out, i = [run[:spans[0][0]]], 0  # a leading "(" (dropped below if its number is masked)
    while i < len(groups):
        for j in range(len(groups), i, -1):  # the longest stretch of groups that is one number
            if j - i > 1 and any(len(g.lstrip("+")) > 8 for g in groups[i:j]):
                continue
            masked = _classify("".join(groups[i:j]))
            if masked is not None:
                break
        else:
            masked, j = None, i + 1
        end = spans[j][0] if j < len(spans) else len(run)  # up to the next group (its separator kept)
        sep = run[spans[j - 1][1]:end]
        if masked is not None and i == 0:
            out[0] = ""
        out.append((masked if masked is not None else run[spans[i][0]:spans[j - 1][1]]) + sep)
        i = j
    return "".join(out)


def mask_text(text: str) -> str:
    """Mask mobile numbers (also +86, spaced, dashed), landlines with an area code, 15- and
    18-digit ID numbers (also spaced) and bank-card numbers anywhere in free text; full-width
    digits are read as digits. tests/policy/test_masking.py lists the formats."""
    if not text:
        return text or ""
    return _RUN.sub(_mask_run, text.translate(_FOLD))


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


_PARTY_NAME = re.compile(rf"[{_SURNAMES}][\u4e00-\u9fa5]{{1,2}}")


def mask_party(text: str | None) -> str:
    """A party as described by the citizen ("陈大富 13700001111", "楼上602住户王某") for people
    who do not own the case: every name-like word and every number that reaches a person is
    masked (陈** 137****1111). Over-masking a word is the safe mistake here."""
    if not text:
        return text or ""
    return mask_text(_PARTY_NAME.sub(lambda m: mask_name(m.group(0)), text))
