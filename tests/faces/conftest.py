"""Fixtures of the faces tests: the real model (loaded once per session) and the
real photos of ``tests/fixtures/faces`` (MIT, face_recognition project; see its README)."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.core.config import Settings
from backend.faces.engine import FaceEngine
from backend.faces.service import FaceService
from tests.conftest import FACES_DATA as FACES

IDENTITIES = FACES / "identities"
GROUPS = FACES / "groups"
BAD = FACES / "bad"
STRANGER = "lin_manuel_miranda"  # one photo only: the "not in gallery" probe


def make_settings(data_dir: Path, **overrides) -> Settings:
    overrides.setdefault("face_model_dir", None)
    return Settings(_env_file=None, data_dir=data_dir, **overrides)


def identity_photos() -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.iterdir() if p.is_file()) for d in sorted(IDENTITIES.iterdir()) if d.is_dir()}


@pytest.fixture(scope="session")
def faces_data() -> Path:
    if not IDENTITIES.is_dir():
        pytest.fail(f"face test photos not found at {FACES}")
    return FACES


@pytest.fixture(scope="session")
def model_settings(tmp_path_factory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("faces-models"))


@pytest.fixture(scope="session")
def engine(model_settings) -> FaceEngine:
    return FaceEngine(model_settings).load()


@pytest.fixture(scope="session")
def session_service(model_settings, engine, faces_data) -> FaceService:
    svc = FaceService(model_settings)
    svc.engine = engine
    return svc.load()


@pytest.fixture(scope="session")
def embed(session_service):
    """embed(path) -> the enrolment embedding of a photo, computed once per session."""
    cache: dict[Path, object] = {}

    def get(path: Path):
        if path not in cache:
            cache[path] = session_service.embed_for_enrolment(path.read_bytes())
        return cache[path]

    return get


@pytest.fixture
def make_service(tmp_path, engine, faces_data):
    """make_service(**settings_overrides) -> a loaded FaceService on a fresh data dir, sharing the model."""
    made: list[FaceService] = []

    def make(data_dir: Path | None = None, **overrides) -> FaceService:
        svc = FaceService(make_settings(data_dir or tmp_path / "data", **overrides))
        svc.engine = engine
        made.append(svc)
        return svc.load()

    yield make
    for svc in made:
        svc.flush()
        svc.stop_polling()  # face_store=db: the poller thread, then the database connections
        if svc.store is not None:
            svc.store.close()
