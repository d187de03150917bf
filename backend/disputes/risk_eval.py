"""Measure the early-warning rules on the labelled set (``data/risk_labelled.csv``: short
dispute texts with the grade a mediator would give, split into dev and test).

``python -m backend.disputes.risk_eval [dev|test]`` prints the confusion of grades and the
precision / recall of "red". Tune the lists in config.toml on dev only; report test.
"""
from __future__ import annotations

import csv
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from backend.disputes import risk

LABELLED = Path(__file__).resolve().parent / "data" / "risk_labelled.csv"


@dataclass(frozen=True)
class Result:
    n: int
    precision: float
    recall: float
    exact: float  # share graded exactly as the mediator did
    misses: list[tuple[str, str, str]]  # (label, predicted, text)


def rows(split: str) -> list[dict]:
    with LABELLED.open(encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


def evaluate(split: str) -> Result:
    data = rows(split)
    tp = fp = fn = exact = 0
    misses = []
    for r in data:
        pred = risk.grade_description(r["category"], r["text"], r["other_party"] or None)
        exact += pred == r["grade"]
        tp += pred == "red" and r["grade"] == "red"
        fp += pred == "red" and r["grade"] != "red"
        fn += pred != "red" and r["grade"] == "red"
        if pred != r["grade"]:
            misses.append((r["grade"], pred, r["text"]))
    return Result(len(data), tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0,
                  exact / len(data) if data else 0.0, misses)


def main(split: str = "dev") -> None:
    res = evaluate(split)
    print(f"{split}: n={res.n} red precision={res.precision:.2f} recall={res.recall:.2f} "
          f"exact grade={res.exact:.2f}")
    print(Counter((m[0], m[1]) for m in res.misses))
    for label, pred, text in res.misses:
        print(f"  {label:>6} → {pred:<6} {text}")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["dev"]))
