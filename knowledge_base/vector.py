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

    def add(self, texts: list[str], metadatas: list[dict], ids: list[str], batch: int = 2000) -> None:
        for i in range(0, len(texts), batch):
            self.store.add_texts(texts[i : i + batch], metadatas=metadatas[i : i + batch], ids=ids[i : i + batch])

    def search(self, query_vec: list[float], flt: Filter, k: int) -> list[tuple[dict, str, float]]:
        """[(metadata, chunk text, cosine similarity)] best first."""
        res = self.store.similarity_search_by_vector_with_relevance_scores(query_vec, k=k, filter=flt.where())
        # cosine space: the score returned is a distance, similarity = 1 - distance
        return [(doc.metadata, doc.page_content, 1.0 - float(dist)) for doc, dist in res]

    def reset(self) -> None:
        self.store.reset_collection()
