"""Facade of the faces slice for the missing-person slice, the API and the CLI.

No SQL, no aiogram: photos in (bytes), person ids and scores out; failures are
:mod:`backend.faces.errors` (``DomainError`` subclasses with an i18n key).

Typical use::

    faces = FaceService(get_settings()).load()           # at startup (or await faces.aload())
    try:
        vec = faces.embed_for_enrolment(photo)           # one usable face, else NoFace/MultipleFaces
    except MultipleFaces as e:
        send_photo(e.preview_jpeg()); ...                # user picks label n → choose = n - 1
        vec = faces.embed_for_enrolment(photo, choose=n - 1)
    faces.enroll("missing", str(case.id), [photo1, photo2])
    for m in faces.search("missing", found_photo, k=5, min_score=faces.threshold):
        ...                                              # m.person_id, m.score → officer review
    faces.delete(str(case.id))                           # every gallery, memory and disk

The sync methods are thread-safe; in async code use the ``a*`` variants, which run
decoding and inference on the engine's single worker thread (never on the event loop).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np
from sqlalchemy.exc import DBAPIError

from backend.core.config import get_settings
from backend.faces.engine import Face, FaceEngine
from backend.faces.enrolment import (
    MIN_DET_SCORE,
    MIN_FACE_PX,
    is_upright,
    select_enrolment_face,
    usable_faces,
)
from backend.faces.errors import FaceError, FacesNotReady, UnknownGallery
from backend.faces.gallery import Gallery, IndexParams
from backend.faces.store import FaceStore
from backend.faces.images import MAX_SIDE, PreparedImage, load_image
from backend.faces.quality import Quality, assess

log = logging.getLogger(__name__)

GALLERIES = ("missing", "found")


@dataclass(frozen=True)
class Examined:
    """The face chosen on a photo: its embedding, where it is, and how good it is."""

    embedding: np.ndarray
    box: tuple[float, float, float, float]  # in the pixels of the decoded photo, turned by ``rotation``
    rotation: int  # degrees clockwise applied after EXIF (the orientation fallback)
    quality: Quality

    def placement(self) -> dict:
        """What a case keeps about the photo (no biometric template): box, turn and grade."""
        return {"box": [round(v, 1) for v in self.box], "rot": self.rotation, **self.quality.as_dict()}


@dataclass(frozen=True)
class Match:
    person_id: str
    score: float  # cosine similarity, -1..1

    def as_dict(self) -> dict:
        return {"person_id": self.person_id, "score": round(self.score, 4)}


class FaceService:
    def __init__(self, settings=None, *, det_size: int | None = None, max_side: int = MAX_SIDE,
                 index_params: IndexParams | None = None, min_face_px: int = MIN_FACE_PX,
                 min_det_score: float = MIN_DET_SCORE, rotation_fallback: bool = True,
                 background_build: bool = True):
        self.settings = settings or get_settings()
        self.engine = FaceEngine(self.settings, det_size=det_size)
        self.max_side = max_side
        self.index_params = index_params
        self.min_face_px = min_face_px
        self.min_det_score = min_det_score
        self.rotation_fallback = rotation_fallback
        self.background_build = background_build  # index builds off the request path
        self.threshold: float = float(self.settings.face_review_threshold)
        self._galleries: dict[str, Gallery] = {}
        self.ready = False
        self.store = self._make_store()  # None: the galleries are files of the data dir only
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()

    def _make_store(self) -> FaceStore | None:
        """``face_store``: db on PostgreSQL by default. On SQLite the rows go to a file of their
        own (``faces.db``): a gallery write commits at once from a worker thread, and must never
        wait for the application database's single write lock, which the request that enrols
        (or erases) a face may be holding."""
        s = self.settings
        mode = s.face_store
        if mode == "auto":
            mode = "files" if s.db_url.startswith("sqlite") else "db"
        if mode != "db":
            return None
        if s.db_url.startswith("sqlite"):
            s.data_dir.mkdir(parents=True, exist_ok=True)
            return FaceStore(f"sqlite:///{(s.data_dir / 'faces.db').resolve()}", create_tables=True)
        return FaceStore(s.sync_db_url)

    def start_polling(self) -> None:
        """Apply the other replicas' gallery changes every ``face_sync_seconds`` (a daemon thread)."""
        if self.store is None or (self._poller is not None and self._poller.is_alive()):
            return
        self._stop_polling.clear()
        self._poller = threading.Thread(target=self._poll, name="faces-sync", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        failing = False
        while not self._stop_polling.wait(self.settings.face_sync_seconds):
            try:
                for g in list(self._galleries.values()):
                    g.pull()
                if failing:
                    log.info("face galleries in step with the database again")
                failing = False
            except Exception:  # noqa: BLE001 - the database may be restarting: keep trying
                if not failing:
                    log.exception("face galleries: reading the database's changes failed; retrying")
                failing = True

    def stop_polling(self) -> None:
        self._stop_polling.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
            self._poller = None

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> "FaceService":
        """Load the model (checking its files first) and the galleries. Idempotent."""
        self.settings.faces_dir.mkdir(parents=True, exist_ok=True)
        self._load_galleries()
        self.start_polling()
        if not self.settings.face_enabled:
            log.info("face matching disabled (HEHE_FACE_ENABLED=false)")
            return self
        self.engine.load()
        self.ready = True
        return self

    def _load_galleries(self, wait: float = 120.0) -> None:
        """Load every gallery. With the database as the store, `hehe serve` may get here (the
        preload) before its migrations have created the tables on a new database: retry."""
        deadline = time.monotonic() + wait
        for name in GALLERIES:
            while True:
                try:
                    self.gallery(name)
                    break
                except DBAPIError:
                    if self.store is None or time.monotonic() > deadline:
                        raise
                    log.info("face galleries: the database is not ready yet; retrying")
                    time.sleep(1.0)

    async def aload(self) -> "FaceService":
        return await asyncio.to_thread(self.load)

    def flush(self) -> None:
        for g in list(self._galleries.values()):
            g.flush()

    def close(self) -> None:
        self.stop_polling()
        for g in list(self._galleries.values()):
            g.close()
        self.engine.close()
        if self.store is not None:
            self.store.close()
        self.ready = False

    def gallery(self, name: str) -> Gallery:
        if name not in GALLERIES:
            raise UnknownGallery(name)
        g = self._galleries.get(name)
        if g is None:
            g = Gallery(name, self.settings.faces_dir, index_threshold=self.settings.face_index_threshold,
                        params=self.index_params, background_build=self.background_build,
                        store=self.store).load()
            self._galleries[name] = g
        return g

    def _require_ready(self) -> None:
        if not self.ready:
            raise FacesNotReady()

    # ------------------------------------------------------------------ photos
    def prepare(self, data: bytes) -> PreparedImage:
        """Validate and decode an upload (raises BadImage)."""
        return load_image(data, max_side=self.max_side)

    def analyze(self, data: bytes) -> tuple[PreparedImage, list[Face]]:
        """The prepared image and all faces found on it (boxes in its pixels).

        Orientation fallback: when the EXIF-oriented image has no usable face, or its
        best face lies sideways (by its key points), the 90°, 180° and 270° rotations are
        tried too and the orientation with the most confident usable face wins (SCRFD
        misses or mis-lands rotated faces; EXIF is often stripped or wrong). ``img.bgr``
        and ``img.rotation`` then describe the rotated image, so boxes and previews stay
        consistent. Limitation: an upside-down face without EXIF that SCRFD still finds
        (with upright-looking key points) is not corrected; see docs/faces.md.
        """
        self._require_ready()
        img = self.prepare(data)
        faces = self.engine.detect(img.bgr)
        ok = self._usable(faces)
        if self.rotation_fallback and (not ok or not is_upright(max(ok, key=lambda f: f.det_score))):
            best = (max((f.det_score for f in ok), default=-1.0), 0, img.bgr, faces)
            for deg, code in ((180, cv2.ROTATE_180), (90, cv2.ROTATE_90_CLOCKWISE),
                              (270, cv2.ROTATE_90_COUNTERCLOCKWISE)):
                rot = cv2.rotate(img.bgr, code)
                found = self.engine.detect(rot)
                score = max((f.det_score for f in self._usable(found)), default=-1.0)
                if score > best[0]:
                    best = (score, deg, rot, found)
            if best[1]:
                _, deg, rot, faces = best
                img = replace(img, bgr=rot, rotation=deg)
        return img, faces

    def _usable(self, faces: list[Face]) -> list[Face]:
        return usable_faces(faces, min_px=self.min_face_px, min_score=self.min_det_score)

    def detect_bytes(self, data: bytes) -> list[Face]:
        """All faces of a photo, best detection score first."""
        return self.analyze(data)[1]

    def usable_faces(self, data: bytes) -> list[Face]:
        """Faces big and sure enough to use, left to right (the numbering of the preview)."""
        return self._usable(self.detect_bytes(data))

    def select_face(self, data: bytes, choose: int | None = None) -> Face:
        img, faces = self.analyze(data)
        return select_enrolment_face(faces, choose, image=img.bgr, min_px=self.min_face_px,
                                     min_score=self.min_det_score)

    def examine(self, data: bytes, choose: int | None = None) -> Examined:
        """Like :meth:`embed_for_enrolment`, plus the face's box and quality grade."""
        img, faces = self.analyze(data)
        face = select_enrolment_face(faces, choose, image=img.bgr, min_px=self.min_face_px,
                                     min_score=self.min_det_score)
        return Examined(face.embedding, face.box, img.rotation, assess(img.bgr, face))

    async def aexamine(self, data: bytes, choose: int | None = None) -> Examined:
        return await self.engine.run(self.examine, data, choose)

    def embed_for_enrolment(self, data: bytes, choose: int | None = None) -> np.ndarray:
        """The 512-d unit embedding of the photo's one usable face.

        Raises BadImage, NoFace, MultipleFaces (``choose`` = 0-based index into
        ``MultipleFaces.faces``, i.e. the drawn label minus one), BadChoice.
        """
        return self.select_face(data, choose).embedding

    # ------------------------------------------------------------------ galleries
    def enroll(self, gallery: str, person_id: str, images: list[bytes],
               choices: list[int | None] | None = None) -> list[str]:
        """Enrol every photo (all or nothing) and return the vector ids.

        The vector id is derived from the photo bytes, so enrolling the same photo
        again is a no-op. An error names the failing photo in ``err.image_index``
        (0-based) and ``err.params["image"]`` (1-based).
        """
        self._require_ready()
        g = self.gallery(gallery)
        if not images:
            raise ValueError("no images")
        choices = list(choices) if choices is not None else [None] * len(images)
        if len(choices) != len(images):
            raise ValueError("choices and images differ in length")
        vecs: list[np.ndarray] = []
        vids: list[str | None] = []
        for i, (data, choose) in enumerate(zip(images, choices)):
            try:
                vecs.append(self.embed_for_enrolment(data, choose))
            except FaceError as e:
                e.image_index = i
                e.params.setdefault("image", i + 1)
                raise
            vids.append(hashlib.sha256(data).hexdigest()[:32])
        return g.add_many([person_id] * len(vecs), np.stack(vecs), vids)

    def enroll_vectors(self, gallery: str, person_id: str, vecs, vector_ids=None) -> list[str]:
        vecs = np.atleast_2d(np.asarray(vecs, dtype=np.float32))
        return self.gallery(gallery).add_many([person_id] * len(vecs), vecs, vector_ids)

    def search(self, gallery: str, data: bytes, k: int = 5, *, choose: int | None = None,
               min_score: float | None = None) -> list[Match]:
        """Best ``k`` persons for the photo's one usable face (same rules as enrolment:
        several faces → MultipleFaces, pass ``choose``). ``min_score`` filters, e.g.
        ``min_score=service.threshold`` keeps only candidates worth an officer's review."""
        self.gallery(gallery)  # unknown name: fail before the model runs
        vec = self.embed_for_enrolment(data, choose)
        return self.search_vector(gallery, vec, k, min_score=min_score)

    def _current(self, gallery: str) -> Gallery:
        """The gallery with every change committed so far applied (replicas: what another one
        wrote since the last poll; one indexed query when nothing changed)."""
        g = self.gallery(gallery)
        g.pull()
        return g

    def vectors(self, gallery: str, person_id: str) -> tuple[list[str], np.ndarray]:
        """A person's enrolled vectors (vector ids, unit vectors): to search again with them."""
        return self._current(gallery).vectors(person_id)

    def search_vector(self, gallery: str, vec, k: int = 5, *, min_score: float | None = None) -> list[Match]:
        res = [Match(p, s) for p, s in self._current(gallery).search(vec, k)]
        if min_score is not None:
            res = [m for m in res if m.score >= min_score]
        return res

    def search_vector_photos(self, gallery: str, vec, k: int = 5, *,
                             min_score: float | None = None) -> list[tuple[Match, str]]:
        """Like :meth:`search_vector`, with the vector id of the row that matched best."""
        res = [(Match(p, s), v) for p, s, v in self._current(gallery).search_vectors(vec, k)]
        return [r for r in res if min_score is None or r[0].score >= min_score]

    def erase(self, person_id: str, galleries: tuple[str, ...] = GALLERIES) -> int:
        """Erase a person at once (searches never return them again, their rows are zeroed on
        disk); the gallery files are compacted in the background. Works without the model."""
        return sum(self._erase_in(name, person_id, compact=False) for name in galleries)

    def _erase_in(self, name: str, person_id: str, *, compact: bool) -> int:
        """Erase in the loaded gallery (memory, index, disk — and first the database when there
        is one); in a gallery this process never loaded (erasing without face matching), in the
        database alone: the replicas that search it apply the tombstones."""
        if name not in GALLERIES:
            raise UnknownGallery(name)
        if self.store is not None and name not in self._galleries:
            return self.store.erase(name, person_id)
        g = self.gallery(name)
        return g.delete(person_id) if compact else g.erase(person_id)

    def delete(self, person_id: str, galleries: tuple[str, ...] = GALLERIES) -> int:
        """Erase a person's face vectors from every gallery (memory, index, disk).

        Works without the model (``ready`` not needed). Returns the number of vectors removed.
        """
        return sum(self._erase_in(name, person_id, compact=True) for name in galleries)

    # ------------------------------------------------------------------ async
    async def adetect_bytes(self, data: bytes) -> list[Face]:
        return await self.engine.run(self.detect_bytes, data)

    async def aembed_for_enrolment(self, data: bytes, choose: int | None = None) -> np.ndarray:
        return await self.engine.run(self.embed_for_enrolment, data, choose)

    async def aenroll(self, gallery: str, person_id: str, images: list[bytes],
                      choices: list[int | None] | None = None) -> list[str]:
        return await self.engine.run(self.enroll, gallery, person_id, images, choices)

    async def asearch(self, gallery: str, data: bytes, k: int = 5, *, choose: int | None = None,
                      min_score: float | None = None) -> list[Match]:
        return await self.engine.run(self.search, gallery, data, k, choose=choose, min_score=min_score)

    async def adelete(self, person_id: str) -> int:
        return await asyncio.to_thread(self.delete, person_id)

