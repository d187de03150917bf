"""Files: evidence uploaded to a report that was abandoned (never submitted) is removed after
``ORPHAN_DAYS`` by an hourly sweep; files of submitted cases are never touched."""
from __future__ import annotations

import logging

from backend.core.db import session_scope
from scheduler import runtime
from scheduler.sweep import register_sweep

log = logging.getLogger("hehe.jobs.files")
ORPHAN_DAYS = 3


async def sweep() -> int:
    from backend.core.files import remove_orphans

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as session:
        n = await remove_orphans(session, ctx.files, ORPHAN_DAYS * 86400)
    if n:
        log.info("removed %d orphaned evidence files", n)
    return n


def register(scheduler) -> None:
    register_sweep(scheduler, "scheduler.jobs.files:sweep", job_id="files-orphans", seconds=3600)
