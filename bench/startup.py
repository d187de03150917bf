"""Cold start of ``hehe serve`` to ``/readyz`` 200 (database migrated, models loaded), the
time of the first chat message after that, and the idle resident memory of the process with its models loaded.

    .venv/bin/python bench/startup.py [--runs 2] [--no-models]

Each run starts a real ``hehe serve`` subprocess on an empty data dir (so the migrations run
too: a true first start), polls /readyz every 50 ms, sends two chat messages, waits 5 s idle
and reads VmRSS; then stops it and starts it again on the same data dir (a restart).
Goals (issue #2): ≤ 10 s to ready; ≤ 800 MB idle RSS with models loaded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process so far (all its threads): a figure that, unlike
    wall time, does not grow when other processes compete for the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(models: bool, timeout: float, tmp: Path) -> dict:
    """One ``hehe serve`` on the data dir ``tmp / "data"`` (empty: a first start)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(tmp / "data"), HEHE_LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False",
               HEHE_FACE_ENABLED="1" if models else "0", HEHE_KB_ENABLED="1" if models else "0")
    hehe = shutil.which("hehe", path=str(Path(sys.executable).parent))
    cmd = [hehe] if hehe else [sys.executable, "-m", "backend.cli"]
    log = (tmp / "serve.log").open("a")
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/readyz"
    first_http = ready = cpu = None
    checks: dict = {}
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError("hehe serve exited:\n" + (tmp / "serve.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    checks = json.loads(r.read())["checks"]
                    ready = time.perf_counter() - t0
                    cpu = cpu_s(proc.pid)
                    break
            except urllib.error.HTTPError as e:  # 503 while models load
                first_http = first_http or time.perf_counter() - t0
                checks = json.loads(e.read())["checks"]
                if any(str(v).startswith("error") for v in checks.values()):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        first_http = first_http or ready
        replies = []
        if ready:  # the first chat messages after start (first one: what lazily built parts still cost)
            for user in (1001, 1002):
                req = urllib.request.Request(f"http://127.0.0.1:{port}/chat/api/send", method="POST",
                                             data=json.dumps({"user": user, "text": "/start"}).encode(),
                                             headers={"Content-Type": "application/json"})
                t1 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                replies.append(time.perf_counter() - t1)
        time.sleep(5)
        rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {"ready_s": ready, "http_s": first_http, "cpu_s": cpu, "rss_mb": rss, "checks": checks,
            "replies_s": replies}


BASELINE = "import aiogram.types, aiogram.client.bot, fastapi, uvicorn, sqlalchemy.ext.asyncio, onnxruntime"


def baseline_s() -> float:
    """Same-run baseline: a bare Python process that only imports the frameworks Hehe is built
    on (no Hehe code, no models, no database). It moves with the machine's speed, so the ratio
    of Hehe's cold start to it is comparable across runs on a shared host."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", BASELINE], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--no-models", action="store_true", help="HEHE_FACE_ENABLED=0 HEHE_KB_ENABLED=0")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    models = not args.no_models
    runs, bases = [], []
    for _ in range(args.runs):
        bases.append(baseline_s())
        tmp = Path(tempfile.mkdtemp(prefix="hehe-bench-start-"))
        try:  # a first start on an empty data dir, then a restart on the data it left
            runs.append(("first start", one_run(models, args.timeout, tmp)))
            runs.append(("restart", one_run(models, args.timeout, tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"# bench/startup.py  {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  python {platform.python_version()}  "
          f"{os.cpu_count()} CPUs  models={'face+kb' if models else 'off'}  runs={args.runs}  "
          f"load={os.getloadavg()[0]:.1f}")
    for i, (kind, r) in enumerate(runs, 1):
        ready = f"{r['ready_s']:.1f} s" if r["ready_s"] else "NOT READY"
        print(f"run {(i + 1) // 2} {kind}: first HTTP answer {r['http_s'] or float('nan'):.1f} s, /readyz 200 {ready}, "
              f"CPU {r['cpu_s'] or float('nan'):.1f} s to ready, /start reply of the first "
              f"and second new user {' / '.join(f'{x * 1000:.0f}' for x in r['replies_s'])} ms, idle RSS "
              f"{r['rss_mb']:.0f} MB  checks={r['checks']}")
    base = statistics.median(bases)
    for kind in ("first start", "restart"):
        ok = [r["ready_s"] for k, r in runs if k == kind and r["ready_s"]]
        if ok:
            med = statistics.median(ok)
            rss = max(r["rss_mb"] for k, r in runs if k == kind)
            print(f"{kind}: median to ready {med:.1f} s (goal ≤ 10 s: {'met' if med <= 10 else 'NOT met'}), "
                  f"{med / base:.2f}× the baseline; max idle RSS {rss:.0f} MB "
                  f"(goal ≤ 800 MB: {'met' if rss <= 800 else 'NOT met'})")
    print(f"baseline, same run: importing the frameworks alone ({BASELINE[7:]}) took {base:.1f} s")


if __name__ == "__main__":
    main()
