"""The in-memory jurisdiction tree (backend/users/tree.py): the same answers as the database,
fresh after this process's imports at once and after another process's within the TTL, and
the intake conversation builds the same keyboards from it. On SQLite and PostgreSQL."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import event, select

from backend.core.db import session_scope
from backend.core.security import within
from backend.disputes import routing, service
from backend.users import service as users, tree
from backend.users.models import Jurisdiction, Level, Role
from handlers.disputes import PlaceCb
from tests.conftest import ChatDriver, texts

HEHE = shutil.which("hehe", path=str(Path(sys.executable).parent))


async def _start(settings):
    from backend.context import start_context

    return await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)


def _fake_clock(ctx) -> list[float]:
    """Drive the TTL of ctx's tree by hand: returns the clock's cell."""
    clock = [time.monotonic()]
    cache = tree.cache_for(ctx.engine.sync_engine)
    cache.ttl, cache.clock = 60, lambda: clock[0]
    cache.invalidate()
    return clock


def _hehe(settings, *args: str) -> subprocess.CompletedProcess:
    """``hehe …`` in another process, on the same database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(settings.data_dir), HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0",
               HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8")
    if settings.database_url:
        env["HEHE_DATABASE_URL"] = settings.database_url
    cmd = [HEHE, *args] if HEHE else [sys.executable, "-m", "backend.cli", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, cwd=settings.data_dir.parent)
    assert r.returncode == 0, r.stderr
    return r


async def _id(ctx, name: str) -> int:
    async with ctx.sm() as s:
        return await s.scalar(select(Jurisdiction.id).where(Jurisdiction.name == name))


async def _report_at(ctx, place_name: str, citizen_tg: int):
    async with session_scope(ctx.sm) as s:
        citizen, _ = await users.get_or_create_user(s, citizen_tg, name="群众", channel="local")
        place = await users.jurisdiction(s, await _id(ctx, place_name))
        d = await service.create_case(s, citizen=citizen, category="neighbor", place=place,
                                      description="隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")
        return d.id


def _nearest(rows: list[Jurisdiction], lat: float, lon: float) -> int | None:
    """``users.nearest`` as it was, over the table's rows (id order)."""
    best = None
    for j in rows:
        if j.lat is None:
            continue
        d = users._distance_km(lat, lon, j.lat, j.lon)
        if d > {"village": 3.0, "grid": 1.0, "township": 8.0, "county": 60.0, "city": 200.0}[j.level]:
            continue
        rank = (-users.LEVEL_INDEX[j.level], d)
        if best is None or rank < best[0]:
            best = (rank, j.id)
    return best[1] if best else None


# ---------------------------------------------------------------- the same answers as the database
def test_tree_lookups_on_records():
    n = lambda i, name, level, parent, path: tree.Node(i, name, level, parent, path, None, None, None)  # noqa: E731
    t = tree.Tree([n(5, "镇B", "township", 2, "/1/2/5/"), n(1, "市", "city", None, "/1/"),
                   n(3, "县C", "county", 1, "/1/3/"), n(2, "县A", "county", 1, "/1/2/"),
                   n(4, "镇A", "township", 2, "/1/2/4/")])
    assert [j.name for j in t.children(None)] == ["县A", "县C"] == [j.name for j in t.children(0)]
    assert [j.name for j in t.children(2)] == ["镇A", "镇B"] and t.children(4) == ()
    assert [j.id for j in t.ancestors(t.get(5))] == [1, 2, 5] and t.county_of(t.get(5)).id == 2
    assert t.county_of(t.get(1)) is None and t.get(99) is None and t.get(None) is None
    assert 5 in t and 99 not in t and len(t) == 5 and t.get(2).contains(t.get(4))


async def test_tree_answers_like_the_database(db_settings):
    """Every node: children (ordered by id; none → the counties), ancestors, county, nearest."""
    ctx = await _start(db_settings)
    try:
        async with ctx.sm() as s:
            rows = list(await s.scalars(select(Jurisdiction).order_by(Jurisdiction.id)))
            by_id = {j.id: j for j in rows}
            counties = [j.id for j in rows if j.level == Level.county.value]
            assert [j.id for j in await users.children(s, None)] == counties and len(counties) == 9
            for j in rows:
                kids = [k.id for k in rows if k.parent_id == j.id]
                assert [k.id for k in await users.children(s, j.id)] == kids
                chain = [by_id[int(x)] for x in j.path.strip("/").split("/")]
                got = await users.ancestors(s, j)
                assert [(a.id, a.name, a.level, a.path, a.code) for a in got] == [
                    (a.id, a.name, a.level, a.path, a.code) for a in chain]
                county = next((a for a in chain if a.level == Level.county.value), None)
                assert getattr(await users.county_of(s, j), "id", None) == getattr(county, "id", None)
                node = await users.jurisdiction(s, j.id)
                assert (node.name, node.level, node.parent_id, node.lat, node.lon) == (
                    j.name, j.level, j.parent_id, j.lat, j.lon)
            assert await users.jurisdiction(s, 10**9) is None
            for j in rows:  # a shared location at each known point: as the table scan chose
                if j.lat is not None and j.level != Level.city.value:
                    assert getattr(await users.nearest(s, j.lat + 0.001, j.lon), "id", None) == _nearest(
                        rows, j.lat + 0.001, j.lon)
            assert (await routing.place_from_text(s, "椒江区海门街道东山路12号")).name == "海门街道"
    finally:
        await ctx.stop()


# ---------------------------------------------------------------- this process's changes
async def test_same_process_import_is_seen_at_once(db_settings):
    ctx = await _start(db_settings)
    try:
        jj = await _id(ctx, "椒江区")
        async with ctx.sm() as s:
            before = [j.name for j in await users.children(s, jj)]  # the tree is loaded
        # a transaction that is rolled back leaves the tree as it was
        async with ctx.sm() as s:
            await users.import_rows(s, [{"county": "椒江区", "township": "回滚镇"}])
            await s.rollback()
        async with ctx.sm() as s:
            assert [j.name for j in await users.children(s, jj)] == before
        # a tree read by another session between the import's flush and its commit is not kept
        async with ctx.sm() as writer:
            await users.import_rows(writer, [{"county": "椒江区", "township": "新设镇", "village": "新设村"}])
            async with ctx.sm() as reader:
                assert "新设镇" not in [j.name for j in await users.children(reader, jj)]
            await writer.commit()
        async with ctx.sm() as s:
            town = next(j for j in await users.children(s, jj) if j.name == "新设镇")
            assert [j.name for j in await users.children(s, jj)] == before + ["新设镇"]
            village = (await users.children(s, town.id))[0]
            assert [a.name for a in await users.ancestors(s, village)] == ["台州市", "椒江区", "新设镇", "新设村"]
            assert (await users.county_of(s, village)).name == "椒江区"
        # jurisdiction checks: only the new township's people see its case
        async with session_scope(ctx.sm) as s:
            med, _ = await users.get_or_create_user(s, 7001, name="新设调解", channel="local")
            other, _ = await users.get_or_create_user(s, 7002, name="海门调解", channel="local")
            await users.set_role(s, med, Role.mediator, await users.find_jurisdiction(s, "椒江区/新设镇"), actor="t")
            await users.set_role(s, other, Role.mediator, await users.find_jurisdiction(s, "椒江区/海门街道"),
                                 actor="t")
        case_id = await _report_at(ctx, "新设村", 7003)
        async with ctx.sm() as s:
            d = await service.get_case(s, case_id)
            med, other = await users.get_user(s, med.id), await users.get_user(s, other.id)
            assert d.unit.name == "新设镇" and d.number.startswith("TZ-JJ-")
            assert service.can_view(med, d) and service.can_handle(med, d)
            assert not service.can_view(other, d) and not within(other, d.place)
    finally:
        await ctx.stop()


# ---------------------------------------------------------------- another process's changes
async def test_another_process_import_is_seen_within_the_ttl(db_settings, tmp_path):
    ctx = await _start(db_settings)
    try:
        clock = _fake_clock(ctx)
        wl = await _id(ctx, "温岭市")
        async with ctx.sm() as s:
            before = [j.name for j in await users.children(s, wl)]
        csv = tmp_path / "places.csv"
        csv.write_text("county,township,village,grid\n温岭市,外来镇,外来村,\n", encoding="utf-8")
        _hehe(db_settings, "jurisdictions", "import", str(csv))  # while this process runs

        clock[0] += 59  # within the TTL the tree may still be the old one …
        async with ctx.sm() as s:
            assert [j.name for j in await users.children(s, wl)] == before
        clock[0] += 2  # … after it, it is not
        async with ctx.sm() as s:
            assert [j.name for j in await users.children(s, wl)] == before + ["外来镇"]

        # an id the tree does not know yet, but the database does, is found at once
        csv.write_text("county,township\n温岭市,又一镇\n", encoding="utf-8")
        _hehe(db_settings, "jurisdictions", "import", str(csv))
        new_id = await _id(ctx, "又一镇")
        async with ctx.sm() as s:
            assert (await users.jurisdiction(s, new_id)).name == "又一镇"
            assert [j.name for j in await users.children(s, wl)][-2:] == ["外来镇", "又一镇"]

        # jurisdiction checks: a case at the new village goes to the new township's people only
        async with session_scope(ctx.sm) as s:
            off, _ = await users.get_or_create_user(s, 7101, name="外来领导", channel="local")
            med, _ = await users.get_or_create_user(s, 7102, name="外来调解", channel="local")
            far, _ = await users.get_or_create_user(s, 7103, name="又一领导", channel="local")
            await users.set_role(s, off, Role.official, await users.find_jurisdiction(s, "温岭市/外来镇"), actor="t")
            await users.set_role(s, med, Role.mediator, await users.find_jurisdiction(s, "温岭市/外来镇"), actor="t")
            await users.set_role(s, far, Role.official, await users.find_jurisdiction(s, "温岭市/又一镇"), actor="t")
        case_id = await _report_at(ctx, "外来村", 7104)
        async with ctx.sm() as s:
            d = await service.get_case(s, case_id)
            off, med, far = [await users.get_user(s, u.id) for u in (off, med, far)]
            assert d.unit.name == "外来镇" and d.number.startswith("TZ-WL-")
            assert service.can_view(off, d) and service.can_handle(med, d)
            assert not service.can_view(far, d)
    finally:
        await ctx.stop()


async def test_ttl_zero_reads_the_tree_at_every_lookup(db_settings):
    ctx = await _start(db_settings)
    try:
        cache = tree.cache_for(ctx.engine.sync_engine)
        cache.ttl = 0
        async with ctx.sm() as s:
            jj = (await users.children(s, None))[0]
        async with ctx.engine.begin() as conn:  # not through a Session: no flush hook sees it
            await conn.execute(Jurisdiction.__table__.insert().values(
                id=10**6, name="直写镇", level="township", parent_id=jj.id, path=f"{jj.path}{10**6}/"))
        async with ctx.sm() as s:
            assert (await users.children(s, jj.id))[-1].name == "直写镇"
    finally:
        await ctx.stop()


# ---------------------------------------------------------------- the intake conversation
async def test_intake_keyboards_are_the_database_tree(db_settings):
    """County and township buttons are the database's nodes in id order (three per row), built
    without a query; a township imported in this process is offered at once."""
    ctx = await _start(db_settings)
    chat = ChatDriver(ctx)
    try:
        async with session_scope(ctx.sm) as s:
            await users.import_rows(s, [{"county": "椒江区", "township": "海门街道", "village": "东山社区"}])

        async def expected(parent: Jurisdiction | None) -> list[list[tuple[str, str]]]:
            async with ctx.sm() as s:
                q = select(Jurisdiction).order_by(Jurisdiction.id)
                q = q.where(Jurisdiction.parent_id == parent.id) if parent else q.where(
                    Jurisdiction.level == Level.county.value)
                rows = list(await s.scalars(q))
            kb = [[(j.name, PlaceCb(id=j.id).pack()) for j in rows[i:i + 3]] for i in range(0, len(rows), 3)]
            if parent is not None:
                kb.append([(f"就选 {parent.name}", PlaceCb(id=parent.id, pick=1).pack()),
                           ("⬅️ 返回", PlaceCb(id=0).pack())])
            return kb

        async def node(name: str) -> Jurisdiction:
            async with ctx.sm() as s:
                return await s.scalar(select(Jurisdiction).where(Jurisdiction.name == name))

        def keyboard(uid: int):
            return next(m.inline for m in reversed(chat.inbox(uid)) if m.inline)

        reads: list[str] = []
        event.listen(ctx.engine.sync_engine, "before_cursor_execute",
                     lambda _c, _cur, sql, *_a: reads.append(sql) if "FROM jurisdictions" in sql else None)

        uid = 7201
        await chat.send(uid, "/report")
        await chat.press(uid, "邻里纠纷")
        await chat.send(uid, "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")
        assert keyboard(uid) == await expected(None)
        for name in ("椒江区", "海门街道"):
            want = await expected(await node(name))
            reads.clear()
            await chat.press(uid, name)
            assert reads == []  # the buttons came from the tree
            assert keyboard(uid) == want
        out = texts(await chat.press(uid, "东山社区"))
        assert "椒江区海门街道东山社区" in out

        # a township imported now (this process) is a button at once
        async with session_scope(ctx.sm) as s:
            await users.import_rows(s, [{"county": "椒江区", "township": "即时镇"}])
        await chat.send(uid + 1, "/report")
        await chat.press(uid + 1, "邻里纠纷")
        await chat.send(uid + 1, "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")
        await chat.press(uid + 1, "椒江区")
        kb = keyboard(uid + 1)
        assert kb == await expected(await node("椒江区")) and "即时镇" in [label for row in kb for label, _ in row]
    finally:
        await ctx.stop()
