"""SIGTERM ends ``hehe serve`` within seconds even while a citizen's web page holds a long poll
(an operator's restart, a container stop, a replica being replaced): the poll is answered, the
page polls again."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.serving import hehe_serve

PHONE = "13912345678"


def _code(log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.findall(r"SMS sign-in code for 139\*\*\*\*5678: (\d{6})", log.read_text())
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError("no code in the server log:\n" + log.read_text()[-2000:])


def test_sigterm_ends_the_server_within_seconds_while_a_long_poll_is_open(tmp_path: Path, template_db: Path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(template_db, data / "hehe.db")
    with hehe_serve(tmp_path, data, timeout=180, with_process=True, HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0",
                    HEHE_SMS_PROVIDER="console") as (base, _checks, proc):
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.post("/auth/api/phone/code", json={"phone": PHONE}).status_code == 200
            r = c.post("/auth/api/phone/verify", json={"phone": PHONE, "code": _code(tmp_path / "serve.log"),
                                                       "name": "王女士"})
            assert r.status_code == 200, r.text
            last = c.get("/chat/api/messages").json()["last"]
            polled: dict = {}

            def long_poll() -> None:
                try:
                    polled["status"] = c.get("/chat/api/messages", params={"since": last, "wait": 25}).status_code
                except httpx.HTTPError as e:  # the server closed the connection on shutdown
                    polled["error"] = repr(e)

            t = threading.Thread(target=long_poll, daemon=True)
            t.start()
            time.sleep(1.5)
            assert t.is_alive(), polled  # the poll is waiting for news
            started = time.monotonic()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                raise AssertionError("hehe serve still running 20 s after SIGTERM") from None
            took = time.monotonic() - started
            t.join(5)
        assert took < 12, f"SIGTERM took {took:.1f} s"
        # uvicorn re-raises the signal once its shutdown is done: the exit status says SIGTERM
        assert proc.returncode in (0, -15), proc.returncode
        # the open poll was answered (the page polls again), not cut off with an error
        assert polled == {"status": 200}, polled
        log = (tmp_path / "serve.log").read_text()
        assert "Exception in ASGI application" not in log and "CancelledError" not in log, log[-2000:]
