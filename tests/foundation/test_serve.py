"""`hehe serve` as a newcomer runs it: a real process on an empty data directory, both models
loaded (they start loading before the application is imported), ready, chatting."""
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
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hehe_serve_on_an_empty_data_dir_becomes_ready_with_both_models(tmp_path: Path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(tmp_path / "data"), HEHE_LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    hehe = shutil.which("hehe", path=str(Path(sys.executable).parent))
    cmd = [hehe] if hehe else [sys.executable, "-m", "backend.cli"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    checks: dict = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
                    checks = json.loads(r.read())["checks"]
                    break
            except urllib.error.HTTPError as e:  # 503 while loading
                checks = json.loads(e.read())["checks"]
            except OSError:
                pass
            time.sleep(0.25)
        assert checks == {"database": "ok", "models": "ok", "scheduler": "ok"}, checks
        with urllib.request.urlopen(base + "/chat", timeout=5) as r:
            assert r.status == 200 and "和合" in r.read().decode()
        assert (tmp_path / "data" / "scheduler.db").exists()  # the job store's own file
    finally:
        proc.terminate()
        proc.wait(30)
