"""Start-up races and vanished databases: two servers on one SQLite data dir, two upgrades at
once, a deleted database file."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect

from backend.context import start_context
from backend.core import instance
from tests.conftest import make_settings


async def test_a_second_server_on_the_same_sqlite_data_dir_refuses_with_a_clear_message(settings):
    first = await start_context(settings, models=False, telegram=False)
    try:
        with pytest.raises(instance.StartupRefused, match="another Hehe server"):
            await start_context(settings, models=False, telegram=False)
        # a chat or CLI process that neither schedules nor delivers may still open it
        reader = await start_context(settings, models=False, telegram=False, scheduler=False, workers=False)
        await reader.stop()
    finally:
        await first.stop()
    again = await start_context(settings, models=False, telegram=False)  # the lock went with it
    await again.stop()


def test_hehe_serve_on_a_data_dir_in_use_exits_with_the_reason(settings, tmp_path):
    fh = instance.claim_data_dir(settings.data_dir, settings.sync_db_url)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
        env.update(HEHE_DATA_DIR=str(settings.data_dir), HEHE_FACE_ENABLED="false", HEHE_KB_ENABLED="false")
        r = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--port", "1"], env=env,
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        instance.release_data_dir(fh)
    assert r.returncode == 2
    assert "another Hehe server" in r.stderr and str(os.getpid()) in r.stderr


async def test_a_deleted_database_is_an_error_not_a_silent_fresh_start(settings):
    ctx = await start_context(settings, models=False, telegram=False)
    await ctx.stop()
    (settings.data_dir / "hehe.db").unlink()
    with pytest.raises(instance.StartupRefused, match="missing or empty"):
        await start_context(settings, models=False, telegram=False)
    assert not (settings.data_dir / "hehe.db").exists()  # nothing was created in its place
    fresh = settings.model_copy(update={"allow_new_database": True})  # `hehe serve --init`
    ctx = await start_context(fresh, models=False, telegram=False)
    await ctx.stop()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_upgrades_at_once_both_succeed(tmp_path, backend):
    from tests.conftest import PG_URL, create_pg_database, drop_pg_database

    if backend == "postgres":
        if not PG_URL:
            pytest.skip("HEHE_TEST_PG_URL not set")
        url = create_pg_database()
        s = make_settings(tmp_path, database_url=url)
    else:
        url = None
        s = make_settings(tmp_path)
    s.ensure_dirs()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(s.data_dir), **({"HEHE_DATABASE_URL": url} if url else {}))
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "backend.cli", "db", "upgrade"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=180)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outs)[-3000:]
        engine = create_engine(s.sync_db_url)
        assert "outbox" in inspect(engine).get_table_names()
        engine.dispose()
    finally:
        if url:
            drop_pg_database(url)
