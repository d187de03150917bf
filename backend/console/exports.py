"""Background exports of a case list (我的导出).

A list of up to ``Settings.console_export_inline_rows`` rows downloads at once (``GET
/console/cases/export.{fmt}``). A larger one becomes a job: a row in ``console_exports`` (who asked,
the format, the list's filters, the person's role and jurisdiction at that moment), run by an
in-process task started once the row is committed. The state lives in the table, so nothing is
lost to a restart: the sweep (``scheduler/jobs/exports.py``, at start-up and every minute) takes up
a job still queued, or one whose worker stopped holding its lease (a killed replica). The finished
file is kept in the row itself, so any replica serves it, until ``console_export_keep_days``.
The pages and downloads are in :mod:`backend.console.export_pages`.

When it is done the person is told in the console (the page that started it polls the job) and
through their notification channel (``notify``: 导出已完成). Downloading it from "我的导出"
checks access again — the owner only, still with the case-list page, the same role and
jurisdiction as when it was asked, and a fresh second factor — and is audited
(``dispute.export_download``), as is the export itself (``dispute.export``, channel ``export``,
with the rows, the format, the filters and the job).
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import QueryParams

from backend.console import queries
from backend.console.models import ExportJob
from backend.core.clock import now
from backend.core.db import session_scope
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.core.policy import Kind
from backend.disputes.models import Dispute
from backend.notify.service import notify
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import User

log = logging.getLogger("hehe.console.exports")
LEASE = timedelta(minutes=15)  # a running job's worker holds it this long; then the sweep may take it up
MAX_ATTEMPTS = 3


def scope_of(user: User) -> str:
    """The person's access as it bears on a list: role and jurisdiction."""
    return f"{user.role}:{user.jurisdiction_id or 0}"


async def count(session: AsyncSession, user: User, f: queries.Filters) -> int:
    return await session.scalar(select(func.count(Dispute.id)).where(*queries.conditions(user, f))) or 0


async def file_bytes(user: User, session: AsyncSession, f: queries.Filters, fmt: str, lang: str,
                     limit: int) -> tuple[bytes, int]:
    """The list as a file (CSV with a BOM, or XLSX) and its row count; the file is written in a
    thread so a large export does not hold up the other requests."""
    rows = await queries.export_rows(session, user, f, limit=limit)
    header = [gettext(lang, f"console.col_{c}") for c in queries.EXPORT_COLUMNS]
    write = queries.to_csv if fmt == "csv" else queries.to_xlsx
    return await asyncio.to_thread(write, header, rows), len(rows)


# ---------------------------------------------------------------- starting a job
async def start_if_large(request: Request, session: AsyncSession, user: User, f: queries.Filters,
                         fmt: str, lang: str) -> JSONResponse | None:
    """If the list is larger than the inline limit: queue a background export, start it once
    committed, and answer 202 with the job; else None (the caller downloads it at once)."""
    settings = request.app.state.ctx.settings
    n = await count(session, user, f)
    if n <= settings.console_export_inline_rows:
        return None
    if n > settings.console_export_max_rows:
        raise DomainError("board.err_export_too_large", rows=n, max=settings.console_export_max_rows)
    job = ExportJob(owner_id=user.id, fmt=fmt, query=f.query(page=1), lang=lang, scope=scope_of(user),
                    status="queued", attempts=0, created_at=now())
    session.add(job)
    await session.flush()
    await users.audit(session, f"user:{user.id}", "console.export_queued", f"export:{job.id}", format=fmt,
                      rows=n, filters=job.query)
    await session.commit()  # the task reads the committed row
    kick(request.app.state, job.id)
    return JSONResponse({"job": job.id, "status": "queued", "rows": n, "url": "/console/exports",
                         "status_url": f"/console/api/exports/{job.id}",
                         "message": gettext(lang, "board.export_queued", rows=n)}, status_code=202)


def kick(state, job_id: int) -> None:
    """Run job ``job_id`` in this process now (an in-process task, kept referenced until it ends)."""
    ctx = state.ctx
    tasks = getattr(state, "export_tasks", None)
    if tasks is None:
        tasks = state.export_tasks = set()
    task = asyncio.create_task(run(ctx.sm, ctx.settings, job_id), name=f"export-{job_id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)


# ---------------------------------------------------------------- running it
async def _claim(sm: async_sessionmaker, job_id: int) -> bool:
    """Take the job (queued, or running with a lapsed lease) for this worker: one conditional
    UPDATE, so of two replicas sweeping at once only one gets it. False if another has it."""
    at = now()
    async with session_scope(sm) as s:
        r = await s.execute(update(ExportJob).where(ExportJob.id == job_id, _runnable(at)).values(
            status="running", lease_until=at + LEASE, attempts=ExportJob.attempts + 1))
        return r.rowcount == 1


def _runnable(at):
    return or_(ExportJob.status == "queued",
               (ExportJob.status == "running") & (ExportJob.lease_until < at) & (ExportJob.attempts < MAX_ATTEMPTS))


async def run(sm: async_sessionmaker, settings, job_id: int) -> str | None:
    """Write the file of job ``job_id`` and tell its owner; the job's final status."""
    if not await _claim(sm, job_id):
        return None
    try:
        async with session_scope(sm) as s:
            job = await s.get(ExportJob, job_id)
            owner = await s.get(User, job.owner_id)
            if owner is None or not owner.active or scope_of(owner) != job.scope:
                raise DomainError("board.err_export_access_changed")
            f = queries.Filters.parse(QueryParams(job.query))
            data, rows = await file_bytes(owner, s, f, job.fmt, job.lang, settings.console_export_max_rows)
            at = now()
            job.data, job.rows, job.size = data, rows, len(data)
            job.filename = f"cases-{at.strftime('%Y%m%d-%H%M')}-{job.id}.{job.fmt}"
            job.status, job.finished_at, job.lease_until = "done", at, None
            job.expires_at = at + timedelta(days=settings.console_export_keep_days)
            await audit_read(s, owner, Kind.dispute, None, channel="export", action="export",
                             detail={"format": job.fmt, "rows": rows, "filters": job.query, "job": job.id})
            await notify(s, owner, "board.n_export_done", dedupe_key=f"console-export-{job.id}", rows=rows,
                         fmt=job.fmt.upper(), days=settings.console_export_keep_days)
        return "done"
    except Exception as e:  # the job records why; the person sees it in 我的导出
        log.exception("export %s failed", job_id)
        key = e.key if isinstance(e, DomainError) else "board.err_export_failed"
        async with session_scope(sm) as s:
            await s.execute(update(ExportJob).where(ExportJob.id == job_id).values(
                status="failed", error=key, finished_at=now(), lease_until=None))
        return "failed"


async def sweep(sm: async_sessionmaker, settings) -> int:
    """Take up the jobs nobody is running (queued before a restart, or left by a stopped worker)
    and forget the files past their time; how many jobs were run."""
    at = now()
    async with session_scope(sm) as s:
        ids = list(await s.scalars(select(ExportJob.id).where(_runnable(at)).order_by(ExportJob.id).limit(20)))
        await s.execute(update(ExportJob).where(ExportJob.status == "done", ExportJob.expires_at < at)
                        .values(status="expired", data=None))
    for job_id in ids:
        await run(sm, settings, job_id)
    return len(ids)
