"""A real ``hehe serve`` subprocess for tests that need the whole process (web chat in
Chromium, a cold start with the models)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def hehe_serve(workdir: Path, data_dir: Path, timeout: float = 240, with_process: bool = False, **env_extra: str):
    """Start ``hehe serve`` on ``data_dir``, wait for ``/readyz`` 200 and yield
    ``(base_url, checks)`` (and the ``Popen`` with ``with_process``); fail with the server log if
    it exits or never gets ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(data_dir), HEHE_LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False", **env_extra)
    hehe = shutil.which("hehe", path=str(Path(sys.executable).parent))
    cmd = [hehe] if hehe else [sys.executable, "-m", "backend.cli"]
    log_path = workdir / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        checks: dict = {}
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, "hehe serve exited:\n" + log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
                    checks = json.loads(r.read())["checks"]
                    break
            except urllib.error.HTTPError as e:  # 503 while the models load
                checks = json.loads(e.read())["checks"]
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not ready ({checks}):\n" + log_path.read_text()[-3000:]
            time.sleep(0.25)
        yield (base, checks, proc) if with_process else (base, checks)
    finally:
        stop_process(proc)
        log.close()
