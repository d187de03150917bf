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
