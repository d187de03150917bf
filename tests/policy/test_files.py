"""Files: the stored type is always the sniffed one (never the client's word), and evidence of an
abandoned report is removed by the hourly sweep while a submitted case's files stay."""
from __future__ import annotations

import os
import time

from backend.core.db import session_scope
from backend.core.files import blob_key, remove_orphans, store_file
from backend.disputes import service as disputes

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 8
EXE = b"MZ\x90\x00" + b"\x00" * 400


async def test_a_declared_mime_type_is_never_trusted(ctx):
    async with session_scope(ctx.sm) as s:
        lying = await store_file(s, ctx.files, EXE, mime="image/jpeg", filename="photo.jpg")
        honest = await store_file(s, ctx.files, JPEG, mime="application/x-msdownload")
        assert lying.mime == "application/octet-stream" and honest.mime == "image/jpeg"


async def test_evidence_of_an_abandoned_report_is_swept_and_a_cases_evidence_stays(ctx):
    from scheduler.jobs import files as job

    ctx.scheduler.pause()  # the hourly sweep itself must not race the call under test
    store = ctx.files
    kept = await disputes.keep_evidence(store, JPEG, photo=True)  # a draft that will be submitted
    abandoned = await disputes.keep_evidence(store, JPEG + b"other", photo=True)  # never submitted
    fresh = await disputes.keep_evidence(store, JPEG + b"fresh", photo=True)  # a draft in progress
    async with session_scope(ctx.sm) as s:
        await store_file(s, store, JPEG, mime="image/jpeg", owner_kind="dispute", owner_id=1)
    old = time.time() - (job.ORPHAN_DAYS + 1) * 86400
    for ev in (kept, abandoned):
        os.utime(store.root / blob_key(ev["sha256"]), (old, old))
    async with session_scope(ctx.sm) as s:
        assert await remove_orphans(s, store, job.ORPHAN_DAYS * 86400) == 1
    assert await store.exists(blob_key(kept["sha256"]))
    assert not await store.exists(blob_key(abandoned["sha256"]))
    assert await store.exists(blob_key(fresh["sha256"]))


async def test_the_sweep_runs_hourly_in_the_real_scheduler(ctx):
    job = ctx.scheduler.get_job("files-orphans")
    assert job is not None and job.trigger.interval.total_seconds() == 3600
