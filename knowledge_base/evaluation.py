"""Retrieval evaluation: recall@5 and MRR@10 per question type for the dense, keyword and hybrid
channels, and how the answer step handles questions that have no answer.

The labelled set (``tests/kb/data/eval/``) is a records JSONL and two question files, ``dev.jsonl``
(tune on it) and ``test.jsonl`` (report only). A question is ``{"q", "relevant": [ids], "type"}``;
an empty ``relevant`` list marks a question with no answer in the records. Search always returns
its k best records; a no-answer question is *handled* when the answer step (:meth:`KnowledgeBase.evidence`)
finds nothing it may cite, and an answerable one is *answered* when that step cites a relevant record.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_base.records import Scope

MODES = ("dense", "keyword", "hybrid")
SPLITS = ("dev", "test")


@dataclass
class Score:
    n: int = 0
    recall5: float = 0.0
    mrr10: float = 0.0

    def add(self, recall: float, rr: float) -> None:
        self.n += 1
        self.recall5 += recall
        self.mrr10 += rr

    def mean(self) -> tuple[float, float]:
        return (self.recall5 / self.n, self.mrr10 / self.n) if self.n else (0.0, 0.0)


@dataclass
class ModeResult:
    recall5: float
    mrr10: float
    no_answer_ok: float  # share of no-answer questions the answer step declined
    answerable: int
    unanswerable: int
    answered: float = 0.0  # share of answerable questions whose answer cites a relevant record
    no_answer_handled: int = 0
    by_type: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # type → (n, R@5, MRR)
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)


def load_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(kb, questions: list[dict], scope: Scope | None = None, modes=MODES) -> dict[str, ModeResult]:
    scope = scope or Scope.admin()
    res: dict[str, ModeResult] = {}
    for mode in modes:
        total, types = Score(), {}
        n_no = no_ok = answered = 0
        misses, fps = [], []
        for q in questions:
            rel = set(q.get("relevant") or [])
            parsed = kb.parse(q["q"])
            hits = kb.search(q["q"], scope, k=10, mode=mode, parsed=parsed)
            cited = [h.id for h in kb.evidence(hits, parsed)]
            ids = [h.id for h in hits]
            if not rel:
                n_no += 1
                if not cited:
                    no_ok += 1
                else:
                    fps.append(f"{q['q']} → {cited[:3]}")
                continue
            recall = len(rel & set(ids[:5])) / len(rel)
            rr = next((1.0 / i for i, rid in enumerate(ids[:10], 1) if rid in rel), 0.0)
            total.add(recall, rr)
            types.setdefault(q.get("type", "other"), Score()).add(recall, rr)
            answered += bool(rel & set(cited))
            if recall < 1.0:
                misses.append(f"[{q.get('type', 'other')}] {q['q']} → {ids[:5]} (want {sorted(rel)})")
        r5, mrr = total.mean()
        res[mode] = ModeResult(r5, mrr, no_ok / max(n_no, 1), total.n, n_no, answered / max(total.n, 1), no_ok,
                               {t: (s.n, *s.mean()) for t, s in sorted(types.items())}, misses, fps)
    return res


def format_results(res: dict[str, ModeResult], title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'channel':<8} {'R@5':>6} {'MRR@10':>7} {'answered':>9} {'no-answer handled':>18}")
    for mode, r in res.items():
        lines.append(f"{mode:<8} {r.recall5:>6.3f} {r.mrr10:>7.3f} {r.answered:>9.3f} "
                     f"{r.no_answer_handled:>12d} / {r.unanswerable:<3d}  ({r.answerable} answerable questions)")
    types = sorted({t for r in res.values() for t in r.by_type})
    lines.append("per question type, R@5 / MRR@10:")
    lines.append(f"  {'type':<12} {'n':>4} " + " ".join(f"{m:>15}" for m in res))
    for t in types:
        n = next(r.by_type[t][0] for r in res.values() if t in r.by_type)
        cells = " ".join(f"{r.by_type[t][1]:>7.3f}/{r.by_type[t][2]:<7.3f}" if t in r.by_type else f"{'-':>15}"
                         for r in res.values())
        lines.append(f"  {t:<12} {n:>4} {cells}")
    return "\n".join(lines)
