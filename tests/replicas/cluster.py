"""Replicas of Hehe as real ``hehe serve`` processes on one PostgreSQL database, each with its own
data dir (its local caches) and port — for the failover test and bench/replicas.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.serving import free_port


class Replica:
    def __init__(self, workdir: Path, db_url: str, name: str, **env_extra: str) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.env_extra = env_extra
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "Replica":
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
        env.update(HEHE_DATA_DIR=str(self.dir / "data"), HEHE_DATABASE_URL=self.db_url, HEHE_LOG_LEVEL="WARNING",
                   HEHE_FACE_ENABLED="false", HEHE_KB_ENABLED="false", HEHE_ALLOW_NEW_DATABASE="true",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False", **self.env_extra)
        hehe = shutil.which("hehe", path=str(Path(sys.executable).parent))
        cmd = [hehe] if hehe else [sys.executable, "-m", "backend.cli"]
        self.log_path = self.dir / "serve.log"
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port)], env=env,
                                     cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.ready() is None:
            assert self.proc.poll() is None, f"{self.name} exited:\n" + self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{self.name} not ready:\n" + self.log_path.read_text()[-3000:]
            time.sleep(0.2)
        return self

    def ready(self) -> dict | None:
        """The /readyz answer when ready (it says whether this replica leads), else None."""
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=3) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def is_leader(self) -> bool:
        body = self.ready()
        return bool(body and body.get("leader"))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the leader lock goes with the process's connection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


def leaders(replicas: list[Replica]) -> list[Replica]:
    return [r for r in replicas if r.proc is not None and r.proc.poll() is None and r.is_leader()]
