"""我的导出 — the person's background exports: the page, the job's status (polled by the console's
script) and the download, with access checked again (see :mod:`backend.console.exports`).
Mounted by backend/console/api.py (it uses that module's page dependencies)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.guards import FreshSecondFactor
from backend.console.api import CasesUser, lang_of, render
from backend.console.exports import scope_of
from backend.console.models import ExportJob
from backend.core.clock import now
from backend.core.deps import SessionDep
from backend.core.errors import NotFound
from backend.core.i18n import gettext
from backend.core.policy import Kind
from backend.users.audit import audit_read
from backend.users.models import User

router = APIRouter(tags=["console"], include_in_schema=False)
MIME = {"csv": "text/csv; charset=utf-8", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


async def _mine(session: AsyncSession, user: User, job_id: int) -> ExportJob:
    job = await session.get(ExportJob, job_id)
    if job is None or job.owner_id != user.id:
        raise NotFound("common.err_not_found")
    return job


def _public(job: ExportJob, lang: str) -> dict:
    return {"id": job.id, "status": job.status, "format": job.fmt, "rows": job.rows, "size": job.size,
            "created_at": job.created_at.isoformat(), "error": gettext(lang, job.error) if job.error else None,
            "download": f"/console/exports/{job.id}/download" if job.status == "done" else None,
            "message": gettext(lang, "board.export_done") if job.status == "done" else None}


@router.get("/console/exports")
async def my_exports(request: Request, session: SessionDep, user: CasesUser):
    jobs = list(await session.scalars(select(ExportJob).where(ExportJob.owner_id == user.id)
                                      .order_by(ExportJob.id.desc()).limit(50)))
    for j in jobs:
        if j.status == "done" and j.seen_at is None:
            j.seen_at = now()
    return render(request, "exports.html", user, jobs=jobs,
                  keep_days=request.app.state.ctx.settings.console_export_keep_days)


@router.get("/console/api/exports/{job_id}")
async def export_status(job_id: int, request: Request, session: SessionDep, user: CasesUser) -> dict:
    return _public(await _mine(session, user, job_id), lang_of(request))


@router.get("/console/exports/{job_id}/download")
async def download(job_id: int, session: SessionDep, user: CasesUser, _fresh: FreshSecondFactor):
    """The finished file — for its owner, with the same access as when it was asked."""
    job = await _mine(session, user, job_id)
    if job.status != "done" or (job.expires_at is not None and job.expires_at < now()):
        raise NotFound("board.err_export_not_ready")
    if scope_of(user) != job.scope:
        raise NotFound("board.err_export_access_changed")
    data = await session.scalar(select(ExportJob.data).where(ExportJob.id == job.id))
    await audit_read(session, user, Kind.dispute, None, channel="export", action="export_download",
                     detail={"job": job.id, "format": job.fmt, "rows": job.rows})
    return Response(data, media_type=MIME[job.fmt],
                    headers={"content-disposition": f'attachment; filename="{job.filename}"'})
