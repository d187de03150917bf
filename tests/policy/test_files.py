"""Files: the stored type is always the sniffed one (never the client's word), and evidence of an
abandoned report is removed by the hourly sweep while a submitted case's files stay."""
from __future__ import annotations

import os
import time

from backend.core.db import session_scope
from backend.core.files import blob_path, remove_orphans, store_file
from backend.disputes import service as disputes

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 8
EXE = b"MZ\x90\x00" + b"\x00" * 400


async def test_a_declared_mime_type_is_never_trusted(ctx):
    async with session_scope(ctx.sm) as s:
        lying = await store_file(s, ctx.settings.files_dir, EXE, mime="image/jpeg", filename="photo.jpg")
        honest = await store_file(s, ctx.settings.files_dir, JPEG, mime="application/x-msdownload")
        assert lying.mime == "application/octet-stream" and honest.mime == "image/jpeg"


async def test_evidence_of_an_abandoned_report_is_swept_and_a_cases_evidence_stays(ctx):
    from scheduler.jobs import files as job

    ctx.scheduler.pause()  # the hourly sweep itself must not race the call under test
    files_dir = ctx.settings.files_dir
    kept = disputes.keep_evidence(files_dir, JPEG, photo=True)  # a draft that will be submitted
    abandoned = disputes.keep_evidence(files_dir, JPEG + b"other", photo=True)  # never submitted
    fresh = disputes.keep_evidence(files_dir, JPEG + b"fresh", photo=True)  # a draft in progress
    async with session_scope(ctx.sm) as s:
        await store_file(s, files_dir, JPEG, mime="image/jpeg", owner_kind="dispute", owner_id=1)
    old = time.time() - (job.ORPHAN_DAYS + 1) * 86400
    for ev in (kept, abandoned):
        os.utime(blob_path(files_dir, ev["sha256"]), (old, old))
    async with session_scope(ctx.sm) as s:
        assert await remove_orphans(s, files_dir, job.ORPHAN_DAYS * 86400) == 1
    assert blob_path(files_dir, kept["sha256"]).exists()
    assert not blob_path(files_dir, abandoned["sha256"]).exists()
    assert blob_path(files_dir, fresh["sha256"]).exists()


async def test_the_sweep_runs_hourly_in_the_real_scheduler(ctx):
    job = ctx.scheduler.get_job("files-orphans")
    assert job is not None and job.trigger.interval.total_seconds() == 3600
