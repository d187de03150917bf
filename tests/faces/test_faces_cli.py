"""``hehe faces`` commands through typer's CliRunner (real model, real photos)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.core.config import get_settings
from backend.faces.cli import app

from .conftest import BAD, GROUPS, IDENTITIES, STRANGER

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*estimate. is deprecated:FutureWarning")]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path, monkeypatch, model_settings, engine):
    monkeypatch.setenv("HEHE_DATA_DIR", str(tmp_path / "data"))
    # reuse the provisioned model files (also exercises HEHE_FACE_MODEL_DIR)
    monkeypatch.setenv("HEHE_FACE_MODEL_DIR", str(model_settings.data_dir / "models"))
    monkeypatch.setenv("HEHE_DEFAULT_LANGUAGE", "en")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    yield run
    get_settings.cache_clear()


def test_enroll_search_delete(cli, faces_data):
    r = cli("enroll", "--gallery", "missing", "--person-id", "case-17",
            IDENTITIES / "obama" / "1.jpg", IDENTITIES / "obama" / "2.jpg")
    assert r.exit_code == 0, r.output
    assert "2" in r.output and "case-17" in r.output
    r = cli("enroll", "--person-id", "case-18", IDENTITIES / "biden" / "1.jpg")
    assert r.exit_code == 0, r.output

    r = cli("search", IDENTITIES / "obama" / "3.jpg", "--gallery", "missing", "-k", "5", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [sorted(m) for m in res] == [["person_id", "score"]] * 2
    assert res[0]["person_id"] == "case-17" and res[0]["score"] > 0.4
    assert isinstance(res[0]["score"], float)

    r = cli("search", IDENTITIES / "obama" / "3.jpg")
    assert r.exit_code == 0 and "case-17" in r.stdout and "review suggested" in r.stdout

    r = cli("delete", "--person-id", "case-17")
    assert r.exit_code == 0 and "Deleted 2" in r.output
    r = cli("search", IDENTITIES / "obama" / "3.jpg", "--json")
    assert [m["person_id"] for m in json.loads(r.stdout)] == ["case-18"]
    r = cli("delete", "--person-id", "case-17")
    assert r.exit_code == 0 and "nothing to delete" in r.output


def test_import_folder_tree(cli, tmp_path, faces_data):
    tree = tmp_path / "found-photos"
    for person in ("rose_leslie", "kit_harington"):
        (tree / person).mkdir(parents=True)
        for p in sorted((IDENTITIES / person).iterdir()):
            (tree / person / p.name).symlink_to(p)  # no copies of the photos
    (tree / "rose_leslie" / "broken.jpg").symlink_to(BAD / "truncated.jpg")
    (tree / "notes.txt").write_text("ignored")
    r = cli("import", tree, "--gallery", "found")
    assert r.exit_code == 0, r.output
    assert "2 person(s), 5 photo(s)" in r.output and "1 skipped" in r.output
    assert "broken.jpg" in r.output
    r = cli("search", IDENTITIES / "kit_harington" / "1.jpg", "--gallery", "found", "--json")
    assert json.loads(r.stdout)[0]["person_id"] == "kit_harington"


def test_errors_exit_non_zero(cli, tmp_path, faces_data):
    r = cli("search", BAD / "not_image.jpg", "--json")
    assert r.exit_code == 1 and "not a photo" in r.output
    preview = tmp_path / "choose.jpg"
    r = cli("enroll", "--person-id", "x", GROUPS / "two_people.jpg", "--preview", preview)
    assert r.exit_code == 1 and "--choose" in r.output
    assert preview.read_bytes()[:2] == b"\xff\xd8"
    r = cli("enroll", "--person-id", "x", GROUPS / "two_people.jpg", "--choose", "2")
    assert r.exit_code == 0, r.output
    r = cli("search", IDENTITIES / STRANGER / "1.png", "--gallery", "nope")
    assert r.exit_code == 1 and "Unknown face gallery" in r.output
    r = cli("enroll", "--person-id", "x", tmp_path / "missing.jpg")
    assert r.exit_code == 1 and "Cannot read file" in r.output
    r = cli("import", tmp_path / "nowhere")
    assert r.exit_code == 1


def test_missing_model_folder_cli(cli, tmp_path, monkeypatch, faces_data):
    monkeypatch.setenv("HEHE_FACE_MODEL_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    r = cli("search", IDENTITIES / "obama" / "1.jpg")
    assert r.exit_code == 1
    assert "det_500m.onnx" in r.output and str(tmp_path / "empty") in r.output


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "backend.faces.cli", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for cmd in ("enroll", "search", "import", "delete"):
        assert cmd in r.stdout
