"""Complaint classification: keyword rules first; embedding similarity only when an embedder
is loaded (a tiny deterministic character-bigram embedder stands in for the real model)."""
from __future__ import annotations

from backend.disputes import routing


class BigramEmbedder:
    ready = True

    def embed(self, texts):
        vocab = {}
        out = []
        for t in texts:
            v = [0.0] * 4096
            for a, b in zip(t, t[1:]):
                v[hash(a + b) % 4096] += 1.0
            out.append(v)
        return out


def test_keywords_win_and_plain_chatter_is_ignored():
    assert routing.classify("隔壁装修天天吵到半夜") == "neighbor"
    assert routing.classify("老板拖欠工资三个月") == "labor"
    assert routing.classify("电动车被撞了对方不赔") == "traffic"
    assert routing.classify("你好，请问今天天气怎么样") is None


def test_embedding_similarity_is_optional():
    text = "房屋征收给的钱标准太低"  # no keyword of any category
    assert routing.classify(text) is None
    assert routing.classify(text, BigramEmbedder(), threshold=0.1) == "expropriation"
    class Broken:
        ready = True
        def embed(self, texts):
            raise RuntimeError("model gone")
    assert routing.classify(text, Broken()) is None
    class NotLoaded:
        ready = False
        def embed(self, texts):
            raise AssertionError("must not be called")
    assert routing.classify(text, NotLoaded()) is None
