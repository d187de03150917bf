"""Callback-data strings the service puts on notification buttons.

They are exactly what the handlers' typed ``CallbackData`` factories pack
(``handlers/missing.py``: ``ReviewCb(prefix="mrv")``, ``AssistCb(prefix="mas")``);
a test checks both agree. Kept here so the service layer never imports aiogram.
"""
from __future__ import annotations

REVIEW_PREFIX = "mrv"
ASSIST_PREFIX = "mas"


def review_data(action: str, candidate_id: int) -> str:
    return f"{REVIEW_PREFIX}:{action}:{candidate_id}"


def assist_data(action: str, request_id: int) -> str:
    return f"{ASSIST_PREFIX}:{action}:{request_id}"
