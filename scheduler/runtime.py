"""What scheduled jobs reach at run time. Jobs are module-level functions that take ids;
they find the running application's context here (never a pickled live object)."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

log = logging.getLogger("hehe.scheduler")
_CTX: Any = None


def set_context(ctx: Any) -> None:
    global _CTX
    _CTX = ctx


def get_context() -> Any:
    if _CTX is None:
        raise RuntimeError("no application context: jobs run only inside a started Hehe")
    return _CTX


def schedule_once(func: str, run_at: datetime, args: list, job_id: str) -> None:
    """Persist a one-off job, e.g. ``schedule_once("scheduler.jobs.disputes:remind", t, [7], "d7-accept")``.

    ``job_id`` makes it idempotent: scheduling again replaces the earlier one. When the
    app runs without a scheduler (some CLI commands), nothing is scheduled and the
    periodic sweeps pick up what is due.
    """
    ctx = _CTX
    if ctx is None or ctx.scheduler is None:
        log.debug("no scheduler: %s not scheduled", job_id)
        return
    ctx.scheduler.add_job(func, "date", run_date=run_at, args=args, id=job_id, replace_existing=True)


def cancel(job_id: str) -> None:
    ctx = _CTX
    if ctx is None or ctx.scheduler is None:
        return
    try:
        ctx.scheduler.remove_job(job_id)
    except Exception:  # noqa: BLE001 - JobLookupError: already ran or never existed
        pass
