"""``KnowledgeBase``: the one object the rest of Hehe talks to.

    kb = KnowledgeBase(get_settings()); kb.load()            # once, at startup (≈2 s, see docs/kb.md)
    ans = await kb.aanswer("椒江区最近的欠薪纠纷怎么处理的？", Scope.from_user(user))
    ans.answer, ans.citations                                 # text with [1][2] and the cited ids
    kb.card("TZ-JJ-20261128-0001", scope)                     # id → {title, kind, snippet, …}

Thread-safe: every public method may be called from ``asyncio.to_thread``; writes are serialised,
searches run concurrently against consistent snapshots.
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from dataclasses import asdict
from datetime import date

from backend.core.i18n import gettext
from knowledge_base.answer import best_sentences, extractive_answer, mask_for
from knowledge_base.visibility import visible
from knowledge_base.places import Gazetteer
from knowledge_base.query import Filter, ParsedQuery, parse_query, yyyymmdd
from knowledge_base.records import Answer, Hit, Record, Scope
from knowledge_base.textproc import chunk_text, split_sentences, tokenize

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 500  # a 5,000-char question is cut to this for embedding and BM25
RRF_K = 60
DENSE_WEIGHT = 2.0  # dense : keyword = 2 : 1
KEYWORD_WEIGHT = 1.0
DENSE_THRESHOLD = 0.40  # cosine similarity a record needs on the dense channel (calibrated, docs/kb.md)
DENSE_MARGIN = 0.12  # ...and no further than this below the best dense match
RARE_COVERAGE = 0.5  # keyword channel: share of the question's rare terms a record must contain


def _today() -> date:
    from backend.core.clock import local_now

    return local_now().date()


class KnowledgeBase:
    def __init__(self, settings=None, *, gazetteer: Gazetteer | None = None, embeddings=None,
                 collection: str | None = None, sessionmaker=None, ingest_workers: int = 1):
        if settings is None:
            from backend.core.config import get_settings

            settings = get_settings()
        self.settings = settings
        self.gazetteer = gazetteer or Gazetteer.default()
        self.sessionmaker = sessionmaker
        self._emb = embeddings
        self._collection = collection
        self.ingest_workers = ingest_workers
        self._lock = threading.RLock()
        self.ready = False
        self.load_seconds: float | None = None
        self.dense_threshold = DENSE_THRESHOLD
        self.dense_margin = DENSE_MARGIN
        self.rare_coverage = RARE_COVERAGE
        self.dense_weight = DENSE_WEIGHT
        self.keyword_weight = KEYWORD_WEIGHT

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> "KnowledgeBase":
        """Load the embedding model, open Chroma, the record store and the BM25 index. Idempotent."""
        with self._lock:
            if self.ready:
                return self
            t0 = time.perf_counter()
            from knowledge_base.embeddings import embedding_name, make_embeddings, offline_env
            from knowledge_base.keyword import KeywordIndex, RecordStore
            from knowledge_base.textproc import _ensure_jieba
            from knowledge_base.vector import VectorIndex

            offline_env()
            if self._emb is None:
                self._emb = make_embeddings(self.settings, workers=self.ingest_workers)
            if hasattr(self._emb, "load"):
                self._emb.load()
            _ensure_jieba()
            self.gazetteer.add_jieba_words()
            kb_dir = self.settings.data_dir / "kb"
            self.store = RecordStore(kb_dir / "records.sqlite")
            self.keyword = KeywordIndex(self.store, kb_dir / "bm25")
            self.keyword.load()
            name = self._collection or f"hehe_kb_{embedding_name(self._emb)}"
            self.vector = VectorIndex(self.settings, self._emb, name)
            self.load_seconds = time.perf_counter() - t0
            self.ready = True
            log.info("knowledge base ready in %.2fs (%d records)", self.load_seconds, self.store.count())
            return self

    async def aload(self) -> "KnowledgeBase":
        return await asyncio.to_thread(self.load)

    def close(self) -> None:
        with self._lock:
            if self.ready:
                self.store.close()
                self.ready = False
            if self.ingest_workers > 1 and hasattr(self._emb, "close"):
                self._emb.close()

    def _need(self) -> None:
        if not self.ready:
            raise RuntimeError("KnowledgeBase.load() has not been called")

    @property
    def embeddings(self):
        return self._emb

    # ------------------------------------------------------------------ writes
    @staticmethod
    def prepare(rec: Record) -> tuple[dict, list[dict]]:
        """Record → (store row, chunks with tokens and embedding text)."""
        rec.validate()
        row = {
            "id": str(rec.id).strip(), "kind": rec.kind, "title": (rec.title or "").strip() or str(rec.id),
            "category": rec.category or "", "location": rec.location or "",
            "date": yyyymmdd(rec.date) if rec.date else 0, "public": bool(rec.public),
            "jurisdiction_ids": sorted({int(j) for j in rec.jurisdiction_ids or []}),
            "owner_user_ids": sorted({int(u) for u in rec.owner_user_ids or []}),
            "text": rec.text or "", "sections": [list(s) for s in rec.sections] if rec.sections else None,
            "source": rec.source,
        }
        sections = rec.sections or [(None, rec.text)]
        chunks: list[dict] = []
        for label, body in sections:
            for piece in chunk_text(body):
                if rec.kind == "document":
                    header = f"《{row['title']}》{label or ''}"
                else:
                    header = "｜".join(x for x in (row["title"], row["category"], row["location"]) if x)
                emb_text = f"{header}\n{piece}"
                toks = tokenize(emb_text) + tokenize(row["id"])
                chunks.append({"idx": len(chunks), "article": label, "text": piece, "emb_text": emb_text,
                               "tokens": toks})
        return row, chunks

    def upsert(self, records: list[Record]) -> int:
        """Insert or replace records (by id; re-indexing replaces chunks, never duplicates)."""
        from knowledge_base.vector import chunk_metadata

        self._need()
        prepared = [self.prepare(r) for r in records]
        # last one wins when the same id comes twice in one batch
        by_id = {row["id"]: (row, chs) for row, chs in prepared}
        rows = [v[0] for v in by_id.values()]
        chunks = [v[1] for v in by_id.values()]
        if not rows:
            return 0
        texts, metas, ids = [], [], []
        for row, chs in zip(rows, chunks):
            for ch in chs:
                texts.append(ch["emb_text"])
                metas.append(chunk_metadata(row, ch["idx"], ch["article"]))
                ids.append(f"{row['id']}::{ch['idx']}")
        with self._lock:
            replaced = []
            for row in rows:
                if row.get("source"):
                    replaced += [i for i in self.store.ids_for_source(row["source"]) if i != row["id"]]
            # old chunks by their exact ids (fast), for records the store knows; new records have none
            old = [f"{rid}::{c['idx']}" for rid in self.store.existing([r["id"] for r in rows] + replaced)
                   for c in self.store.chunks_of(rid)]
            self.vector.delete_ids(old)
            self.vector.add(texts, metas, ids)
            removed, added, _ = self.store.upsert(rows, chunks)
            self.keyword.note_changes(removed, added)
        return len(rows)

    def delete(self, ids: list[str]) -> int:
        """Remove records (all their chunks) from Chroma and from the keyword index."""
        self._need()
        ids = [str(i) for i in ids]
        with self._lock:
            present = self.store.existing(ids)
            self.vector.delete_ids([f"{rid}::{c['idx']}" for rid in present for c in self.store.chunks_of(rid)])
            self.vector.delete_records(ids)  # and anything a crash may have left behind
            removed = self.store.delete(ids)
            self.keyword.note_changes(removed, [])
        return len(present)

    def delete_source(self, kind: str, ref_id) -> int:
        self._need()
        return self.delete(self.store.ids_for_source(f"{kind}:{ref_id}"))

    def compact(self) -> float:
        """Rebuild the persisted BM25 main segment (after bulk imports)."""
        self._need()
        return self.keyword.compact()

    def count(self) -> int:
        self._need()
        return self.store.count()

    async def aupsert(self, records: list[Record]) -> int:
        return await asyncio.to_thread(self.upsert, records)

    async def adelete(self, ids: list[str]) -> int:
        return await asyncio.to_thread(self.delete, ids)

    # ------------------------------------------------------------------ search
    def parse(self, query: str) -> ParsedQuery:
        return parse_query(query, self.gazetteer, _today(), max_chars=MAX_QUERY_CHARS)

    def search(self, query: str, scope: Scope, k: int = 5, *, mode: str = "hybrid",
               parsed: ParsedQuery | None = None, use_filters: bool = True) -> list[Hit]:
        """Records relevant to ``query`` that ``scope`` may see, best first; nothing below the
        relevance threshold. ``mode``: hybrid | dense | keyword."""
        self._need()
        q = (query or "").strip()
        if not q:
            return []
        parsed = parsed or self.parse(q)
        flt = parsed.filter(scope) if use_filters else Filter(acl=parsed.filter(scope).acl)
        # repeated sentences add nothing (and drown the signal of a long, pasted question)
        qtext = "".join(dict.fromkeys(split_sentences(q[: MAX_QUERY_CHARS * 20])))[:MAX_QUERY_CHARS] or q[:MAX_QUERY_CHARS]
        n_chunks = max(40, k * 8)

        dense: dict[str, dict] = {}
        if mode in ("hybrid", "dense"):
            vec = self._emb.embed_query(qtext)
            sel, ids = self.keyword.allowed(flt) if flt.where() is not None else (None, None)
            for md, text, sim in self.vector.search(vec, flt, n_chunks, selectivity=sel, allowed_ids=ids):
                rid = md["record_id"]
                d = dense.setdefault(rid, {"sim": sim, "chunks": []})
                d["sim"] = max(d["sim"], sim)
                d["chunks"].append({"text": text.split("\n", 1)[-1], "article": md.get("article"), "dense": sim,
                                    "idx": md.get("idx")})
        kw: dict[str, dict] = {}
        short_query = len(re.sub(r"[\W_]+", "", qtext)) <= 6
        if mode in ("hybrid", "keyword"):
            tokens = tokenize(qtext)[:64]
            for h in self.keyword.search(tokens, flt, n_chunks):
                d = kw.setdefault(h.record_id, {"score": h.score, "cids": [], "cover": 0.0, "strong": False})
                d["score"] = max(d["score"], h.score)
                d["cids"].append(h.cid)
                if h.rare_total:
                    # half of the question's rare terms, but 3 are enough for a long question
                    need = max(1, min(math.ceil(h.rare_total * self.rare_coverage), 3))
                    d["cover"] = max(d["cover"], 1.0 if h.matched_rare >= need else 0.0)
                    # one 2-char word ("宠物") is weak evidence; a name / number / 2+ rare words is not
                    d["strong"] = (d["strong"] or h.matched_rare >= 2 or h.longest_match >= 3
                                   or (short_query and h.matched_rare == h.rare_total))

        dense_rank = {rid: i for i, rid in enumerate(sorted(dense, key=lambda r: -dense[r]["sim"]))}
        kw_rank = {rid: i for i, rid in enumerate(sorted(kw, key=lambda r: -kw[r]["score"]))}
        best_sim = max((d["sim"] for d in dense.values()), default=0.0)
        wd = self.dense_weight if mode != "keyword" else 0.0
        wk = self.keyword_weight if mode != "dense" else 0.0
        fused: dict[str, float] = {}
        for rid in set(dense) | set(kw):
            s = 0.0
            if rid in dense_rank:
                s += wd / (RRF_K + 1 + dense_rank[rid])
            if rid in kw_rank:
                s += wk / (RRF_K + 1 + kw_rank[rid])
            dense_ok = rid in dense and dense[rid]["sim"] >= max(self.dense_threshold, best_sim - self.dense_margin)
            kw_ok = rid in kw and kw[rid]["cover"] >= 1.0 and kw[rid]["strong"]
            if parsed.filter_only and use_filters:
                dense_ok = kw_ok = True  # "仙居县的山林纠纷": everything that matches the filters is relevant
            if (mode == "dense" and dense_ok) or (mode == "keyword" and kw_ok) or (mode == "hybrid" and (dense_ok or kw_ok)):
                fused[rid] = s
        norm = (wd + wk) / (RRF_K + 1) or 1.0
        hits: list[Hit] = []
        for rid in sorted(fused, key=lambda r: -fused[r]):
            if len(hits) >= k:
                break
            meta = self.store.get(rid)
            # deleted meanwhile, (defence in depth) not allowed, or not one the access policy lets them open
            if meta is None or not flt.match(meta) or not visible(scope, meta):
                continue
            chunks = sorted(dense.get(rid, {}).get("chunks", []), key=lambda c: -c["dense"])
            if not chunks or (rid in kw and rid not in dense):
                chunks = self._chunks_for(rid, kw.get(rid, {}).get("cids", [])) or chunks
            full = meta.pop("text")
            snippet_src = chunks[0]["text"] if chunks else full
            snippet = mask_for(scope, meta, "".join(best_sentences(snippet_src, qtext, n=2)) or snippet_src[:120], full)
            hits.append(Hit(id=rid, score=fused[rid] / norm, kind=meta["kind"], title=meta["title"],
                            snippet=snippet[:160], dense=dense.get(rid, {}).get("sim"),
                            keyword=kw.get(rid, {}).get("score"), chunks=chunks[:3], meta=meta))
        return hits

    def _chunks_for(self, rid: str, cids: list[int]) -> list[dict]:
        by_cid = {c["cid"]: c for c in self.store.chunks_of(rid)}
        return [{"text": by_cid[c]["text"], "article": by_cid[c]["article"], "dense": 0.0, "idx": by_cid[c]["idx"]}
                for c in cids if c in by_cid]

    async def asearch(self, query: str, scope: Scope, k: int = 5, **kw) -> list[Hit]:
        return await asyncio.to_thread(self.search, query, scope, k, **kw)

    # ------------------------------------------------------------------ answers
    def answer(self, query: str, scope: Scope, *, lang: str = "zh", k: int = 5) -> Answer:
        """Extractive answer with citations; through the configured LLM when ``llm_base_url`` is set
        (validated, falling back to the extractive answer)."""
        self._need()
        q = (query or "").strip()
        if not q:
            return Answer(gettext(lang, "kb.empty_question"), [], mode="none")
        parsed = self.parse(q)
        labels = parsed.labels()
        hits = self.search(q, scope, k, parsed=parsed)
        if not hits and not scope.may_query_cases:
            # citizens search public documents only; say why when they asked about cases
            return Answer(gettext(lang, "kb.no_result") + "\n" + gettext(lang, "kb.citizen_cases"), [],
                          mode="refused", filters=labels)
        if not hits:
            text = gettext(lang, "kb.no_result")
            if labels:
                text += "\n" + gettext(lang, "kb.filters_applied", filters=format_labels(labels, lang))
            return Answer(text, [], hits=[], mode="none", filters=labels)
        texts = {h.id: (self.store.get(h.id) or {}).get("text", "") for h in hits}
        suffix = ("\n" + gettext(lang, "kb.filters_applied", filters=format_labels(labels, lang))) if labels else ""
        if self.settings.llm_base_url:
            from knowledge_base.llm import llm_answer

            res = llm_answer(self.settings, q, hits, texts, scope, lang=lang)
            if res is not None:
                text, cites = res
                return Answer(text + suffix, cites, hits=hits, mode="llm", filters=labels)
        text, cites = extractive_answer(q, hits, texts, scope, lang=lang)
        return Answer(text + suffix, cites, hits=hits, mode="extractive", filters=labels)

    async def aanswer(self, question: str, scope: Scope, *, session=None, lang: str = "zh") -> Answer:
        """What the chat ``/ask`` handler calls. Statistical questions go to the registered stats
        provider of their kind (with ``session`` or this KB's sessionmaker); others are retrieval."""
        from knowledge_base import stats

        sq = stats.parse_stats(question or "", self.gazetteer, _today())
        if sq is not None and stats.has_provider(sq.kind):
            if session is not None:
                return await stats.answer_stats(session, sq, scope, lang=lang)
            if self.sessionmaker is not None:
                async with self.sessionmaker() as s:
                    return await stats.answer_stats(s, sq, scope, lang=lang)
        return await asyncio.to_thread(self.answer, question, scope, lang=lang)

    # ------------------------------------------------------------------ cards
    def card(self, record_id: str, scope: Scope, query: str | None = None) -> dict | None:
        """A cited record's card: {id, title, kind, category, location, date, snippet}; None when
        the record does not exist or ``scope`` may not see it."""
        self._need()
        meta = self.store.get(str(record_id))
        if meta is None or not Filter(acl=ParsedQuery("").filter(scope).acl).match(meta) or not visible(scope, meta):
            return None
        text = meta["text"] or ""
        snippet = "".join(best_sentences(text, query, n=2)) if query else text[:120]
        d = str(meta["date"] or "")
        return {"id": meta["id"], "title": meta["title"], "kind": meta["kind"], "category": meta["category"],
                "location": meta["location"], "date": f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 else None,
                "snippet": mask_for(scope, meta, snippet[:160], text)}

    async def acard(self, record_id: str, scope: Scope, query: str | None = None) -> dict | None:
        return await asyncio.to_thread(self.card, record_id, scope, query)

    def stats(self) -> dict:
        self._need()
        return {"records": self.store.count(), "chunks": self.vector.count(), "keyword_pending": self.keyword.pending,
                "load_seconds": self.load_seconds}


def format_labels(labels: dict, lang: str = "zh") -> str:
    names = {"kind": "kb.f_kind", "category": "kb.f_category", "place": "kb.f_place", "period": "kb.f_period",
             "status": "kb.f_status"}
    parts = []
    for key, val in labels.items():
        v = "、".join(val) if isinstance(val, (list, tuple)) else str(val)
        parts.append(f"{gettext(lang, names.get(key, key))}={v}")
    return "；".join(parts)


__all__ = ["KnowledgeBase", "Record", "Scope", "Hit", "Answer", "asdict"]
