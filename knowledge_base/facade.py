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
import os
import re
import threading
import time
import uuid
from dataclasses import asdict
from datetime import date

from backend.core import taxonomy
from backend.core.i18n import gettext
from knowledge_base.answer import best_sentences, extractive_answer, mask_for
from knowledge_base.visibility import visible
from knowledge_base.places import Gazetteer
from knowledge_base.query import Filter, ParsedQuery, parse_query, yyyymmdd
from knowledge_base.records import Answer, Hit, Record, Scope
from knowledge_base.textproc import REF_RE, chunk_text, normalize_text, split_sentences, tokenize

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 500  # a 5,000-char question is cut to this for embedding and BM25
RRF_K = 60
DENSE_WEIGHT = 1.5  # dense : keyword = 1.5 : 1 (tuned on the dev split, docs/kb.md)
KEYWORD_WEIGHT = 1.0
ANSWER_DENSE = 0.40  # answer step: cosine a record needs to be cited (calibrated on the dev split, docs/kb.md)
ANSWER_MARGIN = 0.12  # ...and no further than this below the best dense match
EVIDENCE_WEIGHT = 2.0  # extra keyword weight for records holding the question's rare terms (tuned on dev)
RARE_COVERAGE = 0.5  # keyword channel: share of the question's rare terms a record must contain
SYNC_SECONDS = 1.0  # live index: how often a process follows the others' writes
LEASE_STALE_SECONDS = 10.0  # a vector writer silent this long has died; another process takes over
CHANGES_KEEP_SECONDS = 600.0  # the change log keeps followed changes this long


def _today() -> date:
    from backend.core.clock import local_now

    return local_now().date()


class KnowledgeBase:
    def __init__(self, settings=None, *, gazetteer: Gazetteer | None = None, embeddings=None,
                 collection: str | None = None, sessionmaker=None, ingest_workers: int = 1, live: bool = True,
                 migrate: bool = False):
        if settings is None:
            from backend.core.config import get_settings

            settings = get_settings()
        self.settings = settings
        self.gazetteer = gazetteer or Gazetteer.default()
        self.sessionmaker = sessionmaker
        self._emb = embeddings
        self._collection = collection
        self.ingest_workers = ingest_workers
        self.migrate = migrate  # migrate the database when the record store's tables are missing (see load)
        self._lock = threading.RLock()
        self.ready = False
        self.load_seconds: float | None = None
        self.answer_dense = ANSWER_DENSE
        self.answer_margin = ANSWER_MARGIN
        self.rare_coverage = RARE_COVERAGE
        self.dense_weight = DENSE_WEIGHT
        self.keyword_weight = KEYWORD_WEIGHT
        self.evidence_weight = EVIDENCE_WEIGHT
        # live index: this process's name in the change log, the last change it has followed
        self.writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.live = live
        self._seen = 0
        self._holder = False
        self._pruned = 0.0
        self._beat = -LEASE_STALE_SECONDS  # last lease heartbeat (monotonic)
        self._stop = threading.Event()
        self._sync_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> "KnowledgeBase":
        """Load the embedding model and jieba, then :meth:`open` the stores. Idempotent.

        ``hehe serve`` calls this in a background thread *while* the application migrates its
        database: when the record store's tables are not there yet, the stores are left closed
        and the application opens them after its migrations (``start_kb_ingestion``). With
        ``migrate=True`` (the CLI, the benchmark) a missing schema is migrated here instead."""
        with self._lock:
            if self.ready:
                return self
            t0 = time.perf_counter()
            from knowledge_base.embeddings import make_embeddings, offline_env
            from knowledge_base.store import store_tables_exist
            from knowledge_base.textproc import _ensure_jieba

            offline_env()
            if self._emb is None:
                self._emb = make_embeddings(self.settings, workers=self.ingest_workers)
            if hasattr(self._emb, "load"):
                self._emb.load()
            _ensure_jieba()
            self.gazetteer.add_jieba_words()
            self.load_seconds = time.perf_counter() - t0
            if self.migrate or store_tables_exist(self.settings):
                self.open()
            else:
                log.info("knowledge base: models loaded; the record store opens after the migrations")
            return self

    def open(self) -> "KnowledgeBase":
        """Open the record store (application database), the BM25 index and Chroma; start following
        the change sequence. Idempotent."""
        with self._lock:
            if self.ready:
                return self
            if self._emb is None:
                return self.load()
            t0 = time.perf_counter()
            from knowledge_base.embeddings import embedding_name
            from knowledge_base.keyword import KeywordIndex
            from knowledge_base.store import RecordStore
            from knowledge_base.vector import VectorIndex

            # the records in the application database; one writer lease per embedded Chroma directory
            self.store = RecordStore.open(self.settings, lease_name=f"chroma:{self.settings.chroma_dir.resolve()}",
                                          migrate=self.migrate)
            if not self.settings.chroma_url and not self.settings.sync_db_url.startswith("sqlite"):
                log.warning("knowledge base on a shared database with an embedded Chroma directory: only the "
                            "process holding its lease writes vectors; replicas must share a Chroma server "
                            "(HEHE_CHROMA_URL)")
            self.keyword = KeywordIndex(self.store, self.settings.data_dir / "kb" / "bm25")
            self.keyword.load()
            name = self._collection or f"hehe_kb_{embedding_name(self._emb)}"
            self.vector = VectorIndex(self.settings, self._emb, name)
            self._seen = self.store.last_change()
            self.ready = True
            self.sync()  # take the writer lease if it is free and follow what others left pending
            self.load_seconds = (self.load_seconds or 0.0) + time.perf_counter() - t0
            if self.live:
                self._stop.clear()
                self._sync_thread = threading.Thread(target=self._sync_loop, name="kb-live-index", daemon=True)
                self._sync_thread.start()
            log.info("knowledge base ready in %.2fs (%d records)", self.load_seconds, self.store.count())
            return self

    async def aload(self) -> "KnowledgeBase":
        return await asyncio.to_thread(self.load)

    def close(self) -> None:
        self._stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
            self._sync_thread = None
        with self._lock:
            if self.ready:
                if self._holder:
                    self.store.release_lease(self.writer)
                    self._holder = False
                self.store.close()
                self.ready = False
            if self.ingest_workers > 1 and hasattr(self._emb, "close"):
                self._emb.close()

    def _need(self) -> None:
        if not self.ready:
            raise RuntimeError("the knowledge base is not open: KnowledgeBase.load() has not been called, or the "
                               "database has no record store yet (`hehe db upgrade`, then KnowledgeBase.open())")

    @property
    def embeddings(self):
        return self._emb

    # ------------------------------------------------------------------ writes
    @staticmethod
    def prepare(rec: Record) -> tuple[dict, list[dict]]:
        """Record → (store row, chunks with tokens and embedding text)."""
        rec.validate()
        row = {
            "id": str(rec.id).strip(), "kind": rec.kind,
            "title": normalize_text(rec.title or "").strip() or str(rec.id),
            # one taxonomy: "劳动争议/欠薪" (disputes slice), "欠薪" (an export) → 劳动争议
            "category": taxonomy.category_of(rec.category), "location": normalize_text(rec.location or ""),
            "date": yyyymmdd(rec.date) if rec.date else 0, "public": bool(rec.public),
            "jurisdiction_ids": sorted({int(j) for j in rec.jurisdiction_ids or []}),
            "owner_user_ids": sorted({int(u) for u in rec.owner_user_ids or []}),
            "text": normalize_text(rec.text or ""),
            "sections": [[lab, normalize_text(body)] for lab, body in rec.sections] if rec.sections else None,
            "source": rec.source,
        }
        sections = row["sections"] or [(None, row["text"])]
        chunks: list[dict] = []
        for label, body in sections:
            for piece in chunk_text(body):
                emb_text = embedding_text(row, label, piece)
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
            vectors = self._writes_vectors()
            if vectors:
                old = [f"{rid}::{c['idx']}" for rid in self.store.existing([r["id"] for r in rows] + replaced)
                       for c in self.store.chunks_of(rid)]
                self.vector.delete_ids(old)
                self.vector.add(texts, metas, ids)
            # without the lease the Chroma writer (a running server) embeds them from the store
            removed, added, _ = self.store.upsert(rows, chunks, writer=self.writer, vec_done=vectors)
            self.keyword.note_changes(removed, added)
        return len(rows)

    def delete(self, ids: list[str]) -> int:
        """Remove records (all their chunks) from Chroma and from the keyword index."""
        self._need()
        ids = [str(i) for i in ids]
        with self._lock:
            present = self.store.existing(ids)
            vectors = self._writes_vectors()
            if vectors:
                self.vector.delete_ids([f"{rid}::{c['idx']}" for rid in present for c in self.store.chunks_of(rid)])
                self.vector.delete_records(ids)  # and anything a crash may have left behind
            removed = self.store.delete(ids, writer=self.writer, vec_done=vectors)
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

    # ------------------------------------------------------------------ live index
    def _writes_vectors(self) -> bool:
        """A Chroma server takes writes from every process; an embedded Chroma directory has one
        writer, the holder of the lease (a running server, or else whoever loads first)."""
        return bool(self.settings.chroma_url) or self._holder

    def sync(self) -> int:
        """Follow what other processes wrote to the store: the keyword index re-reads the store's
        chunks, and the lease holder embeds pending records into Chroma (or removes them). Returns
        the number of changes followed. Called every ``SYNC_SECONDS`` by the live-index thread."""
        if not self.ready:
            return 0
        with self._lock:
            if not self.settings.chroma_url:
                was = self._holder
                # the holder's heartbeat is a write to the application database: every few seconds
                if not self._holder or time.monotonic() - self._beat >= LEASE_STALE_SECONDS / 4:
                    self._holder = self.store.take_lease(self.writer, time.time(), LEASE_STALE_SECONDS)
                    self._beat = time.monotonic()
                if self._holder and not was:
                    log.info("knowledge base: this process now writes the vector index (%s)", self.writer)
            followed = 0
            if self._writes_vectors():
                followed += self._apply_pending_vectors()
            changes = self.store.changes_since(self._seen)
            if changes:
                # another writer, or a gap (changes pruned while this process slept): re-read the store
                gap = changes[0][0] > self._seen + 1 and self.store.first_change() > self._seen + 1
                if gap or any(w != self.writer for _, _, w in changes):
                    self.keyword.reconcile()
                    followed += len(changes)
                self._seen = changes[-1][0]
            if self._holder and time.monotonic() - self._pruned > CHANGES_KEEP_SECONDS / 10:
                self.store.prune_changes(time.time() - CHANGES_KEEP_SECONDS)
                self._pruned = time.monotonic()
            return followed

    def _apply_pending_vectors(self) -> int:
        from knowledge_base.vector import chunk_metadata

        done = 0
        while True:
            pending = self.store.pending_vectors()
            if not pending:
                return done
            rids = list(dict.fromkeys(rid for _, rid in pending))
            self.vector.delete_records(rids)
            texts, metas, ids = [], [], []
            for rid in rids:
                row = self.store.get(rid)
                if row is None:
                    continue
                for c in self.store.chunks_of(rid):
                    texts.append(embedding_text(row, c["article"], c["text"]))
                    metas.append(chunk_metadata(row, c["idx"], c["article"]))
                    ids.append(f"{rid}::{c['idx']}")
            if texts:
                self.vector.add(texts, metas, ids)
            self.store.vectors_done([seq for seq, _ in pending])
            done += len(pending)

    def _sync_loop(self) -> None:
        while not self._stop.wait(SYNC_SECONDS):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - the loop must outlive one failed round (logged, retried)
                log.exception("knowledge base: live-index sync failed")

    # ------------------------------------------------------------------ search
    def parse(self, query: str) -> ParsedQuery:
        return parse_query(query, self.gazetteer, _today(), max_chars=MAX_QUERY_CHARS)

    def search(self, query: str, scope: Scope, k: int = 5, *, mode: str = "hybrid",
               parsed: ParsedQuery | None = None, use_filters: bool = True) -> list[Hit]:
        """The ``k`` best records for ``query`` that ``scope`` may see, ranked (no relevance cut:
        see :meth:`evidence`). ``mode``: hybrid | dense | keyword."""
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
        wd = self.dense_weight if mode != "keyword" else 0.0
        wk = self.keyword_weight if mode != "dense" else 0.0
        # Search ranks, it never drops: the decision "nothing relevant" belongs to the answer step
        # (:meth:`evidence`), which is calibrated on the dev split of the labelled set.
        fused: dict[str, float] = {}
        exact = (self.store.existing([v for m in REF_RE.findall(qtext) for v in (m, m.upper())])
                 if mode != "dense" else set())
        for rid in set(dense) | set(kw) | exact:
            s = 0.0
            if rid in dense_rank:
                s += wd / (RRF_K + 1 + dense_rank[rid])
            if rid in kw_rank:
                s += wk / (RRF_K + 1 + kw_rank[rid])
                if kw[rid]["cover"] >= 1.0 and kw[rid]["strong"]:
                    # it holds the question's rare terms (a name, a number, a place): keyword evidence
                    # outweighs a dense neighbour that shares only the topic
                    s += self.evidence_weight / (RRF_K + 1 + kw_rank[rid])
            if rid in exact:
                s += 1.0  # the question names this record's reference number
            if s > 0:
                fused[rid] = s
        norm = (wd + wk) / (RRF_K + 1) or 1.0
        hits: list[Hit] = []
        order = sorted(fused, key=lambda r: -fused[r])
        head = set(order[: k * 2])
        metas = self.store.get_many(list(head))  # one query for the likely hits, one each beyond
        for rid in order:
            if len(hits) >= k:
                break
            meta = metas.pop(rid, None) if rid in head else self.store.get(rid)
            # deleted meanwhile, (defence in depth) not allowed, or not one the access policy lets them open
            if meta is None or not flt.match(meta) or not visible(scope, meta):
                continue
            chunks = sorted(dense.get(rid, {}).get("chunks", []), key=lambda c: -c["dense"])
            if not chunks or (rid in kw and rid not in dense):
                chunks = self._chunks_for(rid, kw.get(rid, {}).get("cids", [])) or chunks
            full = meta.pop("text")
            snippet_src = chunks[0]["text"] if chunks else full
            snippet = mask_for(scope, meta, "".join(best_sentences(snippet_src, qtext, n=2)) or snippet_src[:120], full)
            k_ev = kw.get(rid, {})
            hits.append(Hit(id=rid, score=fused[rid] / norm, kind=meta["kind"], title=meta["title"],
                            snippet=snippet[:160], dense=dense.get(rid, {}).get("sim"),
                            keyword=k_ev.get("score"), chunks=chunks[:3], meta=meta,
                            keyword_evidence=bool(k_ev.get("cover", 0) >= 1.0 and k_ev.get("strong")),
                            ranks=(dense_rank.get(rid), kw_rank.get(rid))))
        return hits

    # ------------------------------------------------------------------ the answer step decides
    def evidence(self, hits: list[Hit], parsed: ParsedQuery | None = None) -> list[Hit]:
        """The hits an answer may cite: a record counts as relevant on the dense channel (cosine
        ≥ ``answer_dense`` and within ``answer_margin`` of the best) or on the keyword channel (it
        holds the question's rare terms: names, numbers, places). A question that is nothing but
        filters ("仙居县的山林纠纷") is answered by whatever matches. Thresholds calibrated on the
        dev split (docs/kb.md); a record that both channels rank first also counts. An empty list
        means "nothing relevant" — said as such."""
        if not hits:
            return []
        if parsed is not None and parsed.filter_only:
            # "仙居县的山林纠纷": what matches the named filters strictly (search keeps records of other
            # or no category eligible for ranking; an answer about a category cites only that category)
            return [h for h in hits if (not parsed.categories or h.meta.get("category") in parsed.categories)]
        best = max((h.dense or 0.0) for h in hits)
        floor = max(self.answer_dense, best - self.answer_margin)
        cited = [h for h in hits if (h.dense or 0.0) >= floor or h.keyword_evidence]
        if not cited and hits[0].ranks == (0, 0):
            cited = [hits[0]]  # both channels, independently, put the same record first
        return cited

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
        ranked = self.search(q, scope, k, parsed=parsed)
        hits = self.evidence(ranked, parsed)
        if not hits and not scope.may_query_cases:
            # citizens search public documents only; say why when they asked about cases
            return Answer(gettext(lang, "kb.no_result") + "\n" + gettext(lang, "kb.citizen_cases"), [],
                          mode="refused", filters=labels)
        if not hits:
            text = gettext(lang, "kb.no_result")
            if ranked:  # records were found, but the answer step judged none of them relevant enough
                text += "\n" + gettext(lang, "kb.not_relevant", n=len(ranked))
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

        stats.discover_providers()
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


def embedding_text(row: dict, article: str | None, piece: str) -> str:
    """What is embedded for a chunk: a header (document title and article, or a case's title,
    category and place) and the chunk's text."""
    if row["kind"] == "document":
        header = f"《{row['title']}》{article or ''}"
    else:
        header = "｜".join(x for x in (row["title"], row["category"], row["location"]) if x)
    return f"{header}\n{piece}"


def format_labels(labels: dict, lang: str = "zh") -> str:
    names = {"kind": "kb.f_kind", "category": "kb.f_category", "place": "kb.f_place", "period": "kb.f_period",
             "status": "kb.f_status"}
    parts = []
    for key, val in labels.items():
        v = "、".join(val) if isinstance(val, (list, tuple)) else str(val)
        parts.append(f"{gettext(lang, names.get(key, key))}={v}")
    return "；".join(parts)


__all__ = ["KnowledgeBase", "Record", "Scope", "Hit", "Answer", "asdict"]
