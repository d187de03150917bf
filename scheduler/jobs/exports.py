"""Console exports: a background export still queued after a restart, or left running by a
replica that stopped, is taken up by this sweep (at start-up, then every minute); finished files
past their keeping time are dropped. See backend/console/exports.py."""
from __future__ import annotations

from scheduler import runtime
from scheduler.sweep import register_sweep


async def sweep() -> int:
    from backend.console import exports

    ctx = runtime.get_context()
    return await exports.sweep(ctx.sm, ctx.settings)


def register(scheduler) -> None:
    register_sweep(scheduler, "scheduler.jobs.exports:sweep", job_id="console-exports", seconds=60)
