"""The drill of issue #14: reminders due in a burst, the server killed with SIGKILL while it sends
them, then started again — every reminder is sent, none twice (reminders are due-date columns
swept in the same transaction that queues the message; nothing lives in a job store)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import update

from backend.context import start_context
from backend.core.clock import now
from backend.disputes.models import Dispute
from tests.conftest import ChatDriver
from tests.disputes.conftest import report
from tests.serving import free_port, hehe_serve

N = 30


def _query(settings, sql: str) -> list:
    """Read the database from outside the server, as an operator would (SQLite file or PostgreSQL)."""
    if settings.database_url:
        import psycopg2
        from sqlalchemy.engine import make_url

        u = make_url(settings.sync_db_url)
        con = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                               dbname=u.database)
    else:
        con = sqlite3.connect(f"file:{settings.data_dir / 'hehe.db'}?mode=ro", uri=True, timeout=5)
    try:
        cur = con.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        con.close()


def _reminders(settings) -> list[str]:
    return [r[0] for r in _query(settings, "SELECT dedupe_key FROM outbox WHERE dedupe_key LIKE '%-remind-%'")]


async def test_reminders_due_in_a_burst_survive_kill_9_and_are_sent_once(db_settings, tmp_path):
    settings = db_settings
    ctx = await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)
    chat = ChatDriver(ctx)
    await chat.as_role(5001, "mediator", "椒江区/海门街道")
    for i in range(N):
        await report(chat, 7100 + i, photo=None)
    async with ctx.sm() as s:  # every deadline's reminder falls due at once
        await s.execute(update(Dispute).values(remind_at=now() - timedelta(minutes=1),
                                               due_at=now() + timedelta(days=1)))
        await s.commit()
    await ctx.stop()

    db = settings
    extra = {"HEHE_DATABASE_URL": settings.database_url} if settings.database_url else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(settings.data_dir), HEHE_FACE_ENABLED="false", HEHE_KB_ENABLED="false",
               HEHE_LOG_LEVEL="WARNING", HEHE_ALLOWED_HOSTS="127.0.0.1", **extra)
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(free_port())], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _reminders(db):  # the start-up sweep has begun sending
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep never ran"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    before = len(_reminders(db))

    with hehe_serve(tmp_path, settings.data_dir, HEHE_FACE_ENABLED="false", HEHE_KB_ENABLED="false",
                    HEHE_ALLOWED_HOSTS="127.0.0.1", **extra):
        deadline = time.monotonic() + 60
        while len(_reminders(db)) < N and time.monotonic() < deadline:
            time.sleep(0.2)
        after = _reminders(db)
    print(f"reminders queued before SIGKILL: {before}/{N}; after the restart: {len(after)}/{N}")
    assert len(after) == N and len(set(after)) == N  # every reminder once, none lost, none twice
    assert _query(settings, "SELECT count(*) FROM disputes WHERE remind_at IS NOT NULL")[0][0] == 0
