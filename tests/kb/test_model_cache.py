"""The USE tokenizer is parsed once per data dir and read back from a cache at later starts
(knowledge_base.embeddings.load_use): same tokens, same vectors; a damaged cache is rebuilt."""
from __future__ import annotations

import time

import numpy as np

from knowledge_base.embeddings import _tokenizer_cache_file, load_use

TEXTS = ["隔壁装修天天吵到半夜，影响老人休息", "老板拖欠三个月工资不给", "TZ-JJ-20261128-0001 物业纠纷"]


def test_the_tokenizer_cache_gives_the_same_vectors_and_is_rebuilt_when_damaged(tmp_path, use_embeddings):
    cache = tmp_path / "models" / "usem3"
    reference = np.array(use_embeddings.embed_documents(TEXTS))  # the session model: no cache

    # CPU time, not wall-clock: the same comparison on a quiet laptop and a loaded CI machine
    t0 = time.process_time()
    first = load_use(1, cache)  # parses, writes the cache
    parsed_s = time.process_time() - t0
    path = _tokenizer_cache_file(cache)
    assert path.exists() and not list(cache.glob("*.tmp"))
    t0 = time.process_time()
    second = load_use(1, cache)  # reads it back
    cached_s = time.process_time() - t0
    for model in (first, second):
        assert np.allclose(np.array(model.encode(TEXTS)), reference, atol=1e-6)
    assert cached_s < parsed_s  # both load the weights; parsing the tokenizer takes ~1 s, reading the pickle ~0.1 s

    path.write_bytes(b"not a pickle")  # damaged (a disk error, a killed write)
    third = load_use(1, cache)
    assert np.allclose(np.array(third.encode(TEXTS)), reference, atol=1e-6)
    assert path.stat().st_size > 1_000_000  # rewritten
