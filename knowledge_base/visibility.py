"""Who may see a knowledge-base record: the one seam between retrieval and the access policy
(backend/core/policy.py).

Cases (disputes, supervision items, missing-person cases) are shown — in answers, citations and
cards — only when the person may open them in the API. The caller (the chat's /ask, the API)
resolves that set from the policy table and passes it in a :class:`PolicyScope`; retrieval asks
:func:`visible` about every record before it uses it. Documents and history records follow the
index's own rules (public, or the jurisdiction they were indexed with), and so do records imported
from files (``hehe kb import``: no ``source``, no case in the app behind them).
"""
from __future__ import annotations

from dataclasses import dataclass

from knowledge_base.records import Scope

POLICY_KINDS = ("dispute", "supervision", "missing")


@dataclass(frozen=True)
class PolicyScope(Scope):
    """A :class:`Scope` that knows which cases the person may open (``None``: every case)."""

    visible_ids: frozenset[str] | None = None


def visible(scope: Scope, meta: dict) -> bool:
    """May the person behind ``scope`` see the record with index metadata ``meta``?"""
    if meta.get("kind") not in POLICY_KINDS or not meta.get("source"):
        return True  # documents, history and imported records (no case behind them in the app)
    ids = getattr(scope, "visible_ids", None)
    return ids is None or str(meta.get("id")) in ids
