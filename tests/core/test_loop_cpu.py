"""HEHE_LOOP_CPU pins the event loop and its SQLite worker threads to one CPU, and stopping
the application gives the loop thread its CPUs back."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from backend.context import start_context

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                                reason="needs Linux and at least two CPUs")


async def test_loop_and_database_threads_share_the_pinned_cpu(settings):
    before = os.sched_getaffinity(0)
    cpu = max(before)
    ctx = await start_context(settings.model_copy(update={"loop_cpu": cpu}), models=False, workers=False,
                              telegram=False, scheduler=False)
    try:
        assert os.sched_getaffinity(0) == {cpu}
        async with ctx.engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
            raw = await conn.get_raw_connection()
            worker_cpus = await raw.driver_connection._execute(os.sched_getaffinity, 0)
        assert worker_cpus == {cpu}
    finally:
        await ctx.stop()
    assert os.sched_getaffinity(0) == before
