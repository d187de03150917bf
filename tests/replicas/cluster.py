"""Replicas of Hehe as real ``hehe serve`` processes on one PostgreSQL database, each with its own
data dir (its local caches) or a shared one, and port; and people using them through a load
balancer's eyes (any live replica) — for the replica tests and bench/replicas.py."""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx

from tests.serving import free_port


class Replica:
    def __init__(self, workdir: Path, db_url: str, name: str, data_dir: Path | None = None, **env_extra: str) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        # Its own data dir, or one shared by the replicas (compose's /data volume: uploads, evidence).
        self.data_dir = data_dir or self.dir / "data"
        self.db_url = db_url
        self.env_extra = env_extra
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "Replica":
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
        env.update(HEHE_DATA_DIR=str(self.data_dir), HEHE_DATABASE_URL=self.db_url, HEHE_LOG_LEVEL="WARNING",
                   HEHE_FACE_ENABLED="false", HEHE_KB_ENABLED="false", HEHE_ALLOW_NEW_DATABASE="true",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
        env.update(self.env_extra)  # the models may be turned on (tests/replicas/test_load_and_kill.py)
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


class Down(Exception):
    """The replica a request went to did not answer (killed): the person tries again."""


class Cluster:
    """The replicas as a load balancer sees them: requests spread over the live ones."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.live = set(range(len(replicas)))
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def down(self, i: int) -> None:
        """The load balancer stops sending to replica ``i`` (it is about to die)."""
        with self._lock:
            self.live.discard(i)

    def up(self, i: int) -> None:
        with self._lock:
            self.live.add(i)

    def pick(self) -> int:
        with self._lock:
            live = sorted(self.live)
            assert live, "no replica is up"
            return live[next(self._turn) % len(live)]

    def codes(self, phone: str) -> set[str]:
        """The console SMS provider's sign-in codes for ``phone``, from every replica's log."""
        masked = re.escape(phone[:3] + "****" + phone[-4:])
        return {c for r in self.replicas
                for c in re.findall(rf"SMS sign-in code for {masked}: (\d{{6}})", r.log_path.read_text())}


class Person:
    """One browser: its cookies, the CSRF header, requests to any live replica."""

    def __init__(self, cluster: Cluster, n: int, phone: str, name: str) -> None:
        self.cluster, self.n, self.phone, self.name = cluster, n, phone, name
        self.last = 0  # the newest line seen
        self.http = httpx.Client(timeout=60, headers={"X-Forwarded-For": f"10.19.{n // 200}.{n % 200 + 1}"})

    def request(self, method: str, path: str, replica: int | None = None, **kw) -> httpx.Response:
        i = self.cluster.pick() if replica is None else replica
        headers = {"X-CSRF-Token": self.http.cookies.get("hehe_csrf", "")} if method == "POST" else {}
        try:
            r = self.http.request(method, self.cluster.replicas[i].base + path, headers=headers, **kw)
        except httpx.TransportError as e:
            raise Down(str(e)) from e
        if r.status_code >= 500:
            raise Down(r.text)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r

    def sign_in(self) -> None:
        """Phone sign-in; after a replica died under a request, go on with the code that was sent."""
        before = self.cluster.codes(self.phone)
        for _ in range(5):
            try:
                self.request("POST", "/auth/api/phone/code", json={"phone": self.phone})
                break
            except Down:
                time.sleep(1)
            except AssertionError:  # 429: a code was sent already (the answer was lost)
                break
        for _ in range(100):
            if new := self.cluster.codes(self.phone) - before:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no sign-in code for {self.phone}")
        assert len(new) == 1, new  # a retry after a sent code is refused (wait before resending)
        body = {"phone": self.phone, "code": new.pop(), "name": self.name}
        for _ in range(5):
            try:
                self.request("POST", "/auth/api/phone/verify", json=body)
                return
            except Down:
                time.sleep(1)
        raise AssertionError(f"{self.phone} could not sign in")

    def transcript(self, since: int = 0, **kw) -> dict:
        body = self.request("GET", "/chat/api/messages", params={"since": since}, **kw).json()
        self.last = max(self.last, body["last"])
        return body

    def say(self, words: str) -> None:
        self.request("POST", "/chat/api/send", json={"text": words})

    def press(self, label: str, replica: int | None = None) -> None:
        """Press the button containing ``label`` on the bot's latest message that has one (a
        notification with buttons of its own may have come in after the prompt)."""
        shown = self.transcript(replica=replica)["messages"]
        for m in reversed(shown):
            data = next((b["data"] for row in m["inline"] for b in row if label in b["text"]), None)
            if not m["mine"] and data is not None:
                break
        else:
            raise AssertionError(f"no {label!r} on the bot's messages: {[m['text'][:60] for m in shown[-3:]]}")
        self.request("POST", "/chat/api/press", replica, json={"message_id": m["message_id"], "data": data})

    def photo(self, data: bytes, replica: int | None = None) -> None:
        self.request("POST", "/chat/api/photo", replica, files={"file": ("p.jpg", data, "image/jpeg")})

    def second_factor(self) -> None:
        """Staff on the web chat: an authenticator app set up and its first code entered."""
        import pyotp

        secret = self.request("POST", "/auth/api/totp/new").json()["totp_secret"]
        self.request("POST", "/auth/api/totp", json={"code": pyotp.TOTP(secret).now()})

    def number(self) -> str | None:
        """The case number the bot confirmed, if it did."""
        for m in reversed(self.transcript()["messages"]):
            if not m["mine"] and "案件编号：" in m["text"]:
                return m["text"].split("案件编号：")[1].split()[0]
        return None
