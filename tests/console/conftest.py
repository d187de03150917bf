"""The console's tests run on the web tests' real application (tests/web/conftest.py) with
browser-like clients; cases are filed through the disputes service, as the chat files them."""
from __future__ import annotations

import secrets
from pathlib import Path

import logging

import pytest

from backend.core.db import session_scope
from backend.disputes import service as disputes
from backend.users import service as users
from backend.users.models import Role
from tests.conftest import DB_BACKENDS, PG_URL, create_pg_database, drop_pg_database, make_settings
from tests.web.conftest import running, site_settings
from tests.web.test_route_table import signed_in

__all__ = ["as_role", "file_cases", "file_face_match", "make_candidate"]


@pytest.fixture(params=DB_BACKENDS)
async def site(request, tmp_path, template_db, caplog):
    """The web tests' real application (tests/web/conftest.py), on SQLite and on PostgreSQL."""
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    if request.param == "sqlite":
        async with running(site_settings(tmp_path, template_db)) as s:
            yield s
        return
    if not PG_URL:
        pytest.skip("HEHE_TEST_PG_URL not set")
    url = create_pg_database()
    try:
        settings = make_settings(tmp_path, demo=False, sms_provider="console", database_url=url)
        settings.ensure_dirs()
        async with running(settings) as s:
            yield s
    finally:
        drop_pg_database(url)

TEXTS = ["邻居装修噪音一直到深夜，多次沟通无果，电话13912345678", "楼上漏水把我家天花板泡坏了，物业不管",
         "工地拖欠三个月工资共计两万元，老板不接电话", "土地承包合同到期后对方不肯归还承包地"]
CATEGORIES = ["neighbor", "property", "labor", "land_contract"]


async def as_role(web, role: Role):
    """A browser signed in (second factor done) as a new person of ``role`` at 椒江区."""
    return await signed_in(web, role)


async def file_cases(web, n: int, place: str = "白云街道") -> list[int]:
    """``n`` cases filed by one citizen at ``place`` through the disputes service."""
    ids = []
    async with session_scope(web.ctx.sm) as s:
        citizen, _ = await users.get_or_create_user(s, 990001, name="王女士")
        j = await users.find_jurisdiction(s, place)
        for i in range(n):
            d = await disputes.create_case(s, citizen=citizen, category=CATEGORIES[i % 4],
                                           description=TEXTS[i % 4] + f"（第{i + 1}件）", place=j,
                                           phone="13912345678")
            ids.append(d.id)
    return ids


FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "identities"


async def make_candidate(s, store, *, place: str = "白云街道", person: str = "obama") -> int:
    """A face-match candidate between a missing and a found case, each with real photos of one
    person (tests/fixtures/faces), as the matcher leaves it for review; the id. The matcher
    itself (the face model) is the missing slice's and tested there."""
    from backend.core.files import store_file
    from backend.missing.models import MatchCandidate, PersonCase

    family, _ = await users.get_or_create_user(s, 990101, name="李家属")
    officer, _ = await users.get_or_create_user(s, 990102, name="派出所")
    j = await users.find_jurisdiction(s, place)
    photos = sorted((FACES / person).iterdir())
    cases = []
    for kind, reporter, files, extra in (
            ("missing", family, photos[:2], {"name": "李建国", "sex": "M", "age": 72, "phone": "13800001111"}),
            ("found", officer, photos[1:3], {"sex": "M", "age": 70})):
        ids = []
        for p in files:
            f = await store_file(s, store, p.read_bytes(), mime="image/png" if p.suffix == ".png" else "image/jpeg",
                                 filename=p.name, owner_kind="missing_case", owner_id=None)
            ids.append(f.id)
        c = PersonCase(case_no=f"{'XZ' if kind == 'missing' else 'ZL'}-JJ-{len(cases) + 1:04d}-{secrets.token_hex(2)}",
                       kind=kind, status="open", face_key=secrets.token_hex(8), reporter_id=reporter.id,
                       jurisdiction_id=j.id, place="台州火车站附近", photo_ids=ids, photo_faces=[None] * len(ids),
                       face_state="enrolled", **extra)
        s.add(c)
        await s.flush()
        cases.append(c)
    m, f = cases
    cand = MatchCandidate(missing_id=m.id, found_id=f.id, score=0.71, rank_score=0.74, status="pending",
                          flags=[{"code": "sex_match", "ok": True, "sex": "M"},
                                 {"code": "age_ok", "ok": True, "expected": 72, "found": 70, "diff": 2}],
                          missing_photo=1, found_photo=0)
    s.add(cand)
    await s.flush()
    return cand.id


GROUPS = FACES.parent / "groups"
# What the family and the officer send in file_face_match: (photo, face chosen on it or None).
FAMILY_PHOTOS = [(FACES / "obama" / "3.jpg", None), (GROUPS / "obama_and_biden.jpg", 1)]  # face 2 of 3
FOUND_PHOTOS = [(FACES / "obama" / "2.jpg", None)]


async def file_face_match(s, store, faces, *, place: str = "白云街道") -> int:
    """A face-match candidate made the way the chat makes one, with the real face model
    (``faces``, a loaded FaceService): a family reports a man with a portrait and a group photo
    (his face chosen), an officer registers a found man with another photo of him; the missing
    slice examines, enrols and searches, and ``queue_for_review`` stores the review card (the
    matched crops, boxes recorded at upload). The candidate id."""
    from datetime import timedelta

    from backend.core.clock import now
    from backend.missing import service as missing

    def photos(rows):
        return [missing.Photo(p.read_bytes(), choose=c) for p, c in rows]

    family, _ = await users.get_or_create_user(s, 990201, name="李家属")
    officer, _ = await users.get_or_create_user(s, 990202, name="派出所民警")
    j = await users.find_jurisdiction(s, place)
    await users.set_role(s, officer, Role.officer, j, actor="test")
    await missing.create_missing(
        s, family, faces=faces, store=store, photos=photos(FAMILY_PHOTOS), name="李建国", sex="M", age=62,
        height_cm=178, jurisdiction=j, place="台州火车站附近", seen_at=now() - timedelta(days=2),
        clothing="蓝色夹克", health="轻度认知障碍", phone="13800001111")
    out = await missing.register_found(
        s, officer, faces=faces, store=store, photos=photos(FOUND_PHOTOS), jurisdiction=j,
        place="白云山公园", age=60, sex="M", height_cm=176, name="老李", clothing="蓝色夹克", features="左手戴表",
        notes="自述记不清住址")
    assert len(out.candidates) == 1, "the found man matches the reported one"
    await missing.queue_for_review(s, store, out.candidates)
    return out.candidates[0].id
