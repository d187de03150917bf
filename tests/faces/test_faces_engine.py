"""The detector/embedder with the real buffalo_s ONNX files."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from backend.faces.engine import MODEL_FILES, FaceEngine, ensure_models
from backend.faces.errors import FaceModelMissing
from backend.faces.images import load_image

from .conftest import IDENTITIES, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*estimate. is deprecated:FutureWarning")]


def test_default_models_provisioned_from_vectron_package(model_settings, engine):
    folder = model_settings.data_dir / "models" / "models" / "buffalo_s"
    assert engine.model_dir == folder.resolve()
    for f in MODEL_FILES:
        assert (folder / f).stat().st_size > 1_000_000
    assert set(engine.app.models) == {"detection", "recognition"}
    # settings.face_threads reaches every ONNX Runtime session
    assert engine.session_threads() == {"detection": 1, "recognition": 1}


def test_face_threads_setting_is_applied(tmp_path, model_settings):
    s = make_settings(tmp_path, face_model_dir=model_settings.data_dir / "models", face_threads=2)
    eng = FaceEngine(s).load()
    assert eng.session_threads() == {"detection": 2, "recognition": 2}


def test_missing_model_folder_is_a_clear_error_and_nothing_is_downloaded(tmp_path, monkeypatch):
    import importlib

    dl = importlib.import_module("insightface.utils.download")
    storage = importlib.import_module("insightface.utils.storage")

    def no_download(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("insightface tried to download a model")

    monkeypatch.setattr(dl, "download_file", no_download)
    monkeypatch.setattr(storage, "download_file", no_download)
    empty = tmp_path / "no-models"
    empty.mkdir()
    s = make_settings(tmp_path / "data", face_model_dir=empty)
    with pytest.raises(FaceModelMissing) as ei:
        ensure_models(s)
    msg = str(ei.value)
    assert str(empty / "models" / "buffalo_s") in msg
    for f in MODEL_FILES:
        assert f in msg
    assert ei.value.key == "faces.err_model_missing"
    assert ei.value.params["folder"] == str(empty / "models" / "buffalo_s")
    # the engine refuses the same way before insightface is asked for anything
    with pytest.raises(FaceModelMissing):
        FaceEngine(s).load()
    assert list(empty.iterdir()) == []  # no buffalo_l, no zip, nothing


def test_partial_model_folder_is_refused(tmp_path, model_settings):
    folder = tmp_path / "m" / "models" / "buffalo_s"
    folder.mkdir(parents=True)
    (folder / "det_500m.onnx").write_bytes((model_settings.data_dir / "models/models/buffalo_s/det_500m.onnx").read_bytes())
    with pytest.raises(FaceModelMissing, match="w600k_mbf.onnx"):
        ensure_models(make_settings(tmp_path / "d", face_model_dir=tmp_path / "m"))


def test_configured_model_folder_both_layouts(tmp_path, model_settings):
    src = model_settings.data_dir / "models" / "models" / "buffalo_s"
    flat = tmp_path / "flat" / "buffalo_s"  # <dir>/buffalo_s/*.onnx, as config.py describes
    flat.mkdir(parents=True)
    for f in MODEL_FILES:
        (flat / f).symlink_to(src / f)
    assert ensure_models(make_settings(tmp_path / "d", face_model_dir=tmp_path / "flat")) == flat.resolve()
    assert ensure_models(make_settings(tmp_path / "d", face_model_dir=model_settings.data_dir / "models")) == src.resolve()


def test_detect_one_face(engine):
    img = load_image((IDENTITIES / "obama" / "1.jpg").read_bytes()).bgr
    faces = engine.detect(img)
    assert len(faces) == 1
    f = faces[0]
    assert f.embedding.shape == (512,) and f.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(f.embedding)) - 1.0) < 1e-5
    assert f.det_score > 0.7 and f.size > 150
    x1, y1, x2, y2 = f.box
    assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
    assert f.kps.shape == (5, 2)


def test_det_size_320_finds_the_same_face(model_settings, engine):
    small = FaceEngine(model_settings, det_size=320).load()
    img = load_image((IDENTITIES / "biden" / "2.jpg").read_bytes()).bgr
    a, b = engine.detect(img), small.detect(img)
    assert len(a) == len(b) == 1
    assert float(a[0].embedding @ b[0].embedding) > 0.9


def test_bad_det_size_rejected(model_settings):
    with pytest.raises(ValueError):
        FaceEngine(model_settings, det_size=333)


def test_thread_safe_detect(engine):
    img = load_image((IDENTITIES / "rose_leslie" / "1.jpg").read_bytes()).bgr
    ref = engine.detect(img)[0].embedding
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: engine.detect(img), range(6)))
    for faces in results:
        assert float(faces[0].embedding @ ref) > 0.999


async def test_adetect_runs_off_the_event_loop(engine):
    img = load_image((IDENTITIES / "kit_harington" / "1.jpg").read_bytes()).bgr
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    t = asyncio.create_task(ticker())
    results = await asyncio.gather(*(engine.adetect(img) for _ in range(3)))
    t.cancel()
    assert all(len(r) == 1 for r in results)
    assert ticks > 3  # the loop kept running while the model worked
