"""Background exports: a list above the inline limit (lowered to 3 rows here) becomes a job that
writes the file, tells its owner (console and notification channel), is downloadable from 我的导出
by its owner only, with access checked again, and audited; a job left queued or abandoned by a
stopped process is taken up by the sweep."""
from __future__ import annotations

import asyncio
import io
from datetime import timedelta

from openpyxl import load_workbook
from sqlalchemy import select, update

from backend.auth.models import WebSession
from backend.console import exports
from backend.console.models import ExportJob
from backend.core.clock import now
from backend.core.db import session_scope
from backend.notify.models import Outbox
from backend.users import service as users
from backend.users.models import AuditLog, Role, User
from tests.console.conftest import as_role, file_cases


async def _done(b, job_id: int) -> dict:
    """Poll the job's status as the console's script does (a loaded CI machine: up to a minute)."""
    for _ in range(600):
        j = (await b.get(f"/console/api/exports/{job_id}")).json()
        if j["status"] in ("done", "failed"):
            return j
        await asyncio.sleep(0.1)
    raise AssertionError(f"export {job_id} still {j['status']}")


async def test_a_large_export_runs_in_the_background_and_its_owner_downloads_it_from_my_exports(site):
    site.ctx.settings.console_export_inline_rows = 3
    await file_cases(site, 5)
    b = await as_role(site, Role.official)
    small = await b.get("/console/cases/export.csv?tab=all&category=neighbor&category=labor")  # 3 rows: at once
    assert small.status_code == 200 and len(small.content.decode("utf-8-sig").strip().splitlines()) == 1 + 3

    r = await b.get("/console/cases/export.csv?tab=all")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["rows"] == 5 and "后台导出" in job["message"] and job["url"] == "/console/exports"
    status = await _done(b, job["job"])
    assert status["status"] == "done" and status["rows"] == 5 and status["message"] == "导出已完成"

    page = (await b.get("/console/exports")).text
    assert "导出已完成" in page and f'data-export="/console/exports/{job["job"]}/download"' in page
    f = await b.get(status["download"])
    assert f.status_code == 200 and f.headers["content-type"].startswith("text/csv")
    text = f.content.decode("utf-8-sig")
    assert len(text.strip().splitlines()) == 1 + 5 and text.startswith("编号,类别,状态")
    assert "13912345678" not in text and "139****5678" in text  # masked for an official, as inline

    async with site.ctx.sm() as s:
        j = await s.get(ExportJob, job["job"])
        owner = await s.get(User, j.owner_id)
        told = list(await s.scalars(select(Outbox).where(Outbox.user_id == owner.id)))
        audit = {a.action: a for a in await s.scalars(select(AuditLog).where(AuditLog.action.like("dispute.export%")))}
    assert any("导出已完成" in m.text and "5 行" in m.text for m in told)
    assert audit["dispute.export"].detail["job"] == j.id and audit["dispute.export"].detail["rows"] == 5
    assert audit["dispute.export_download"].detail["job"] == j.id
    assert audit["dispute.export"].detail["channel"] == "export"


async def test_an_xlsx_export_in_the_background_has_every_row(site):
    site.ctx.settings.console_export_inline_rows = 3
    await file_cases(site, 4)
    b = await as_role(site, Role.mediator)
    r = await b.get("/console/cases/export.xlsx?tab=all")
    assert r.status_code == 202
    status = await _done(b, r.json()["job"])
    ws = load_workbook(io.BytesIO((await b.get(status["download"])).content)).active
    assert ws.max_row == 1 + 4 and ws["A1"].value == "编号"


async def test_only_the_owner_with_unchanged_access_and_a_fresh_second_factor_downloads_an_export(site):
    site.ctx.settings.console_export_inline_rows = 3
    await file_cases(site, 5)
    owner = await as_role(site, Role.official)
    r = await owner.get("/console/cases/export.csv?tab=all")
    job_id = r.json()["job"]
    status = await _done(owner, job_id)
    other = await as_role(site, Role.official)
    assert (await other.get(f"/console/api/exports/{job_id}")).status_code == 404
    assert (await other.get(status["download"])).status_code == 404
    assert (await (await as_role(site, Role.procurator)).get(status["download"])).status_code == 403

    async with site.ctx.sm() as s:  # the second factor is no longer fresh: asked again
        await s.execute(update(WebSession).values(second_factor_at=now() - timedelta(hours=2)))
        await s.commit()
    r = await owner.get(status["download"])
    assert r.status_code == 403 and r.json()["error"] == "step_up_required"
    async with site.ctx.sm() as s:
        await s.execute(update(WebSession).values(second_factor_at=now()))
        await s.commit()
    assert (await owner.get(status["download"])).status_code == 200

    async with session_scope(site.ctx.sm) as s:  # moved to another county: the file is not theirs any more
        j = await s.get(ExportJob, job_id)
        u = await s.get(User, j.owner_id)
        await users.set_role(s, u, Role.official, await users.find_jurisdiction(s, "路桥区"), actor="test")
    r = await owner.get(status["download"])
    assert r.status_code == 404 and "角色或辖区已变更" in r.text


async def test_a_job_left_queued_or_abandoned_by_a_stopped_process_is_taken_up_by_the_sweep(site):
    await file_cases(site, 3)
    b = await as_role(site, Role.official)
    await b.get("/console/cases")
    async with session_scope(site.ctx.sm) as s:
        owner = await s.scalar(select(User).where(User.role == Role.official.value))
        scope = exports.scope_of(owner)
        queued = ExportJob(owner_id=owner.id, fmt="csv", query="tab=all", lang="zh", scope=scope, status="queued",
                           attempts=0, created_at=now())
        abandoned = ExportJob(owner_id=owner.id, fmt="csv", query="tab=all", lang="zh", scope=scope,
                              status="running", attempts=1, lease_until=now() - timedelta(minutes=1), created_at=now())
        held = ExportJob(owner_id=owner.id, fmt="csv", query="tab=all", lang="zh", scope=scope, status="running",
                         attempts=1, lease_until=now() + timedelta(minutes=10), created_at=now())
        s.add_all([queued, abandoned, held])
    await exports.sweep(site.ctx.sm, site.ctx.settings)
    async with site.ctx.sm() as s:
        got = {j.id: (j.status, j.rows) for j in await s.scalars(select(ExportJob))}
    assert got[queued.id] == ("done", 3) and got[abandoned.id] == ("done", 3)
    assert got[held.id] == ("running", None)  # another worker still holds it
    r = await b.get(f"/console/exports/{queued.id}/download")
    assert r.status_code == 200 and len(r.content.decode("utf-8-sig").strip().splitlines()) == 1 + 3
