"""The dense channel: chunks in Chroma (via ``langchain_chroma.Chroma``) with an explicit
embedding function, cosine space, and access-control keys in each chunk's metadata."""
from __future__ import annotations

import re
from urllib.parse import urlparse

from langchain_core.embeddings import Embeddings

from knowledge_base.query import Filter


def chroma_client(settings):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    cs = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        u = urlparse(settings.chroma_url)
        return chromadb.HttpClient(host=u.hostname or "localhost", port=u.port or (443 if u.scheme == "https" else 8000),
                                   ssl=u.scheme == "https", settings=cs)
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=cs)


def chunk_metadata(rec_meta: dict, idx: int, article: str | None) -> dict:
    """Flat metadata Chroma can filter on: one boolean key per jurisdiction id (``j_17``) and per
    owner (``u_12``), ``public``, ``kind``, ``category``, ``date`` as int yyyymmdd."""
    md = {
        "record_id": rec_meta["id"], "idx": idx, "kind": rec_meta["kind"], "category": rec_meta["category"] or "",
        "title": rec_meta["title"][:200], "location": rec_meta["location"] or "", "date": int(rec_meta["date"] or 0),
        "public": bool(rec_meta["public"]),
    }
    if article:
        md["article"] = article
    for j in rec_meta["jurisdiction_ids"]:
        md[f"j_{int(j)}"] = True
    for u in rec_meta["owner_user_ids"]:
        md[f"u_{int(u)}"] = True
    return md


class VectorIndex:
    def __init__(self, settings, embeddings: Embeddings, collection_name: str):
        from langchain_chroma import Chroma

        self.client = chroma_client(settings)
        self.name = re.sub(r"[^a-zA-Z0-9._-]", "_", collection_name)[:60]
        self.store = Chroma(
            collection_name=self.name, embedding_function=embeddings, client=self.client,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )
        self.embeddings = embeddings

    @property
    def collection(self):
        return self.client.get_collection(self.name)

    def count(self) -> int:
        return self.store._collection.count()

    def delete_records(self, record_ids: list[str]) -> None:
        for i in range(0, len(record_ids), 500):
            part = record_ids[i : i + 500]
            if part:
                self.store.delete(where={"record_id": {"$in": part}})

    def delete_ids(self, chunk_ids: list[str]) -> None:
        for i in range(0, len(chunk_ids), 2000):
            self.store.delete(ids=chunk_ids[i : i + 2000])

    def add(self, texts: list[str], metadatas: list[dict], ids: list[str], batch: int = 2000) -> None:
        for i in range(0, len(texts), batch):
            self.store.add_texts(texts[i : i + batch], metadatas=metadatas[i : i + batch], ids=ids[i : i + batch])

    MAX_OVERSAMPLE = 400
    EXACT_MAX = 150  # so few allowed chunks (a deputy's own items): read them and compare exactly

    def _exact(self, query_vec, flt: Filter, ids: list[str], k: int) -> list[tuple[dict, str, float]]:
        import numpy as np

        got = self.store.get(ids=ids, include=["embeddings", "metadatas", "documents"])
        if not len(got["ids"]):
            return []
        m = np.asarray(got["embeddings"], dtype=np.float32)
        q = np.asarray(query_vec, dtype=np.float32)
        sims = (m @ q) / (np.linalg.norm(m, axis=1) * (np.linalg.norm(q) or 1.0) + 1e-12)
        order = np.argsort(-sims)
        out = []
        for i in order:
            md = got["metadatas"][i]
            if flt.match_chunk(md):
                out.append((md, got["documents"][i], float(sims[i])))
            if len(out) >= k:
                break
        return out

    def search(self, query_vec: list[float], flt: Filter, k: int, selectivity: float | None = None,
               allowed_ids: list[str] | None = None) -> list[tuple[dict, str, float]]:
        """[(metadata, chunk text, cosine similarity)] best first, only chunks ``flt`` allows.

        Chroma's metadata filtering costs ~0.2–0.6 s at 100k chunks, while an unfiltered HNSW query
        for a few hundred neighbours costs a few ms. When the filter lets through a large share of
        the chunks (``selectivity``, estimated from the keyword index), the nearest neighbours are
        fetched unfiltered, oversampled by 1/selectivity, and filtered here with the same
        ``Filter``; the allowed chunks among the global nearest neighbours are exactly the nearest
        allowed chunks. A selective filter restricts Chroma's query to the allowed chunk ids
        (``allowed_ids``, computed with the same ``Filter`` from the record store; 15–40 ms), or, for a
        handful of chunks (a deputy's own items), reads them from Chroma and compares exactly.
        Otherwise Chroma's ``where`` is used. Every path re-checks each chunk.
        """
        where = flt.where()
        if where is not None and selectivity == 0:
            return []
        if where is not None and selectivity is not None and selectivity > 0:
            n_over = int(k * 1.5 / selectivity) + 1
            if n_over <= self.MAX_OVERSAMPLE:
                res = self.store.similarity_search_by_vector_with_relevance_scores(query_vec, k=n_over)
                kept = [(d.metadata, d.page_content, 1.0 - float(dist)) for d, dist in res if flt.match_chunk(d.metadata)]
                if len(kept) >= k or len(res) < n_over:
                    return kept[:k]
        if where is not None and allowed_ids is not None:
            if not allowed_ids:
                return []
            if len(allowed_ids) <= self.EXACT_MAX:
                return self._exact(query_vec, flt, allowed_ids, k)
            res = self.store.similarity_search_by_vector_with_relevance_scores(query_vec, k=min(k, len(allowed_ids)),
                                                                                 ids=allowed_ids)
            return [(d.metadata, d.page_content, 1.0 - float(dist)) for d, dist in res if flt.match_chunk(d.metadata)]
        res = self.store.similarity_search_by_vector_with_relevance_scores(query_vec, k=k, filter=where)
        # cosine space: the score returned is a distance, similarity = 1 - distance
        return [(doc.metadata, doc.page_content, 1.0 - float(dist)) for doc, dist in res]

    def reset(self) -> None:
        self.store.reset_collection()
