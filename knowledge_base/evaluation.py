"""Retrieval evaluation: recall@5 and MRR@10 for the dense, keyword and hybrid channels.

The labelled set is a JSONL of questions ``{"q", "relevant": [ids], "type"}``; an empty
``relevant`` list marks a question with no answer in the records (it scores when nothing is
returned). Records are loaded separately (``hehe kb import``) or by :func:`run_eval` itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_base.records import Scope

MODES = ("dense", "keyword", "hybrid")


@dataclass
class ModeResult:
    recall5: float
    mrr10: float
    no_answer_ok: float  # share of no-answer questions that returned nothing
    answerable: int
    unanswerable: int
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)


def load_questions(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def evaluate(kb, questions: list[dict], scope: Scope | None = None, modes=MODES) -> dict[str, ModeResult]:
    scope = scope or Scope.admin()
    res: dict[str, ModeResult] = {}
    for mode in modes:
        rec_sum = rr_sum = 0.0
        n_ans = n_no = no_ok = 0
        misses, fps = [], []
        for q in questions:
            rel = set(q.get("relevant") or [])
            hits = kb.search(q["q"], scope, k=10, mode=mode)
            ids = [h.id for h in hits]
            if not rel:
                n_no += 1
                if not ids:
                    no_ok += 1
                else:
                    fps.append(f"{q['q']} → {ids[:3]}")
                continue
            n_ans += 1
            found = len(rel & set(ids[:5]))
            rec_sum += found / len(rel)
            rr = 0.0
            for i, rid in enumerate(ids[:10], 1):
                if rid in rel:
                    rr = 1.0 / i
                    break
            rr_sum += rr
            if found < len(rel):
                misses.append(f"{q['q']} → {ids[:5]} (want {sorted(rel)})")
        res[mode] = ModeResult(rec_sum / max(n_ans, 1), rr_sum / max(n_ans, 1), no_ok / max(n_no, 1), n_ans, n_no,
                               misses, fps)
    return res


def format_results(res: dict[str, ModeResult]) -> str:
    lines = [f"{'channel':<8} {'recall@5':>9} {'MRR@10':>8} {'no-answer ok':>13}  (answerable / no-answer questions)"]
    for mode, r in res.items():
        lines.append(f"{mode:<8} {r.recall5:>9.3f} {r.mrr10:>8.3f} {r.no_answer_ok:>13.3f}  ({r.answerable} / {r.unanswerable})")
    return "\n".join(lines)
