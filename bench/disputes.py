"""Dispute benchmarks (五环智控).

1. Intake: complete reports per second through the offline channel (the real Dispatcher,
   FSM storage, services, scheduler job store) with 20 concurrent simulated citizens;
   baseline from the same run: one citizen reporting sequentially. Also a deterministic figure:
   the SQL statements and commits one complete report costs (a citizen's second report, alone),
   and their average over the concurrent run.
2. Statistics: the county × month table (``backend.disputes.stats.compute``) over N
   generated cases (default 1,000,000) on SQLite, and on PostgreSQL when a URL is given
   (``--pg`` or HEHE_TEST_PG_URL); baseline from the same run: a bare ``count(*)`` scan.

    .venv/bin/python bench/disputes.py [--citizens 20] [--reports 5] [--rows 1000000] [--pg URL]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import event, select  # noqa: E402

from backend.core.config import Settings  # noqa: E402

DESCRIPTIONS = ["隔壁装修天天吵到半夜，沟通多次无果，影响老人休息", "老板拖欠三个月工资不给，多次讨要没有结果",
                "小区电梯坏了两周物业一直不修，老人下不了楼", "楼上漏水把我家天花板泡坏了，找他好几次都不理"]
CATEGORIES = ["邻里纠纷", "劳动争议/欠薪", "物业纠纷", "邻里纠纷"]


def settings_for(tmp: Path, **kw) -> Settings:
    return Settings(data_dir=tmp / "data", demo=True, face_enabled=False, kb_enabled=False,
                    throttle_per_minute=1_000_000, _env_file=None, **kw)


async def one_report(ch, uid: int, i: int) -> None:
    await ch.send_text(uid, "/report")
    await ch.press(uid, CATEGORIES[i % 4])
    await ch.send_text(uid, DESCRIPTIONS[i % 4] + f"（第{i}次）")
    await ch.press(uid, "椒江区")
    await ch.press(uid, "海门街道")
    await ch.press(uid, "跳过")
    await ch.press(uid, "完成")
    await ch.send_text(uid, "13812345678")
    await ch.press(uid, "确认提交")
    last = ch.out[uid][-1].text
    if "案件编号" not in last:
        raise RuntimeError(f"report failed: {last[:80]}")


class SqlCounter:
    """SQL statements sent (``before_cursor_execute``) and transactions committed (``commit``)
    on one engine. Statements that SQLite runs in the commit's own trip (the conversation step,
    ``backend.core.db.execute_at_commit``) are part of that commit, not counted as statements;
    the scheduler's job store (another engine) is not counted."""

    def __init__(self, engine):
        self.statements = self.commits = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine, "commit", self._commit)

    def _statement(self, *_args) -> None:
        self.statements += 1

    def _commit(self, *_args) -> None:
        self.commits += 1

    def mark(self) -> tuple[int, int]:
        return self.statements, self.commits

    def per(self, since: tuple[int, int], n: int) -> dict:
        return {"statements": round((self.statements - since[0]) / n, 1),
                "commits": round((self.commits - since[1]) / n, 1)}


async def bench_intake(citizens: int, reports: int) -> dict:
    from backend.context import start_context
    from backend.web.chat_service import set_role_direct

    with tempfile.TemporaryDirectory() as tmp:
        ctx = await start_context(settings_for(Path(tmp)), models=False, workers=False, telegram=False)
        try:
            await set_role_direct(ctx, 90001, "mediator", "椒江区/海门街道")
            ch = ctx.channel
            errors = 0
            sql = SqlCounter(ctx.engine)
            await one_report(ch, 99999, 0)  # first contact and first report: warm-up
            mark = sql.mark()
            await one_report(ch, 99999, 1)
            one = sql.per(mark, 1)

            async def citizen(uid: int, n: int) -> int:
                bad = 0
                for i in range(n):
                    try:
                        await one_report(ch, uid, i)
                    except Exception as e:  # noqa: BLE001
                        bad += 1
                        print("error:", uid, type(e).__name__, str(e)[:120])
                return bad

            # baseline: one citizen, sequential
            t = time.perf_counter()
            errors += await citizen(100000, reports * 2)
            base = reports * 2 / (time.perf_counter() - t)
            t, cpu = time.perf_counter(), time.process_time()
            mark = sql.mark()
            errors += sum(await asyncio.gather(*(citizen(100001 + c, reports) for c in range(citizens))))
            dt, cpu = time.perf_counter() - t, time.process_time() - cpu
            concurrent = sql.per(mark, citizens * reports)
            from backend.disputes.models import Dispute
            from sqlalchemy import func

            async with ctx.sm() as s:
                n = await s.scalar(select(func.count(Dispute.id)))
                dup = await s.scalar(select(func.count(func.distinct(Dispute.number))))
            return {"reports": citizens * reports, "seconds": round(dt, 2),
                    "per_second": round(citizens * reports / dt, 1), "baseline_1_citizen_per_second": round(base, 1),
                    "errors": errors, "cases_in_db": n, "distinct_numbers": dup,
                    "sql_per_report": one, "sql_per_report_concurrent": concurrent,
                    # CPU of all the process's threads: ms per report, and how busy (1.0 = one core)
                    "cpu_ms_per_report": round(cpu * 1000 / (citizens * reports), 1),
                    "cpu_busy": round(cpu / dt, 2)}
        finally:
            await ctx.stop()


# ---------------------------------------------------------------- statistics
def gen_rows(n: int, places: list[tuple[int, int, int, str]], seed: int = 7):
    """(number, category, description, source, place_id, county_id, township_id, unit_id, parties, status,
    month, created_at, updated_at, overdue, escalated_county, outcome, resolved_level, resolution_days,
    risk, risk_reasons, rating)"""
    from datetime import datetime, timedelta

    rnd = random.Random(seed)
    cats = ["neighbor", "family", "labor", "land_contract", "homestead", "property", "traffic", "consumer",
            "medical", "expropriation", "other"]
    start = datetime(2025, 1, 1)
    for i in range(n):
        place, county, township, _ = places[rnd.randrange(len(places))]
        created = start + timedelta(minutes=rnd.randrange(23 * 30 * 24 * 60))
        r = rnd.random()
        status, outcome, days, level, esc = "new", None, None, None, 0
        if r < 0.85:
            outcome = "success" if rnd.random() < 0.93 else "failed"
            status = "archived" if outcome == "success" else "failed"
            days = round(rnd.uniform(0.2, 20), 2)
            esc = 1 if rnd.random() < 0.04 else 0
            level = "county" if esc else "township"
        rating = rnd.choice(["satisfied", "satisfied", "basic", "unsatisfied", None]) if outcome else None
        yield (f"TZ-B{i:09d}", rnd.choice(cats), "生成的基准测试案件描述文字", "bench", place, county, township, place,
               2, status, created.strftime("%Y-%m"), created.isoformat(" "), created.isoformat(" "),
               1 if rnd.random() < 0.05 else 0, esc, outcome, level, days, "green", "[]", rating)


COLS = ("number, category, description, source, place_id, county_id, township_id, unit_id, parties, status, "
        "month, created_at, updated_at, overdue, escalated_county, outcome, resolved_level, resolution_days, "
        "risk, risk_reasons, rating")


def insert_rows(con, n: int, places) -> None:
    """Insert ``n`` generated cases through a sqlite3 connection, 50,000 per batch."""
    q = f"INSERT INTO disputes ({COLS}) VALUES ({','.join('?' * 21)})"
    batch = []
    for row in gen_rows(n, places):
        batch.append(row)
        if len(batch) == 50_000:
            con.executemany(q, batch)
            batch.clear()
    if batch:
        con.executemany(q, batch)


async def _places(sm) -> list[tuple[int, int, int, str]]:
    from backend.users.models import Jurisdiction

    async with sm() as s:
        js = list(await s.scalars(select(Jurisdiction)))
    by_id = {j.id: j for j in js}
    out = []
    for j in js:
        if j.level == "township":
            out.append((j.id, j.parent_id, j.id, by_id[j.parent_id].code))
    return out


async def time_stats(sm, label: str) -> dict:
    from backend.disputes import stats
    from backend.users.models import Jurisdiction

    async with sm() as s:
        t = time.perf_counter()
        await stats.rebuild(s)  # after a bulk load; normal operation keeps it in step per change
        await s.commit()
        rebuild = (time.perf_counter() - t) * 1000
        county = await s.scalar(select(Jurisdiction).where(Jurisdiction.code == "JJ"))
        runs, runs_c, raw = [], [], []
        rows = []
        for _ in range(5):
            t = time.perf_counter()
            rows = await stats.compute(s, None)
            runs.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await stats.compute(s, county)
            runs_c.append((time.perf_counter() - t) * 1000)
        for _ in range(2):
            t = time.perf_counter()
            raw_rows = await stats.compute_raw(s, None)
            raw.append((time.perf_counter() - t) * 1000)
        assert [r.as_dict() for r in rows] == [r.as_dict() for r in raw_rows], "rollup differs from raw"
    return {"db": label, "table_rows": len(rows), "county_x_month_ms_median": round(statistics.median(runs), 1),
            "county_x_month_ms_max": round(max(runs), 1),
            "township_x_month_in_county_ms_median": round(statistics.median(runs_c), 1),
            "baseline_raw_group_by_ms_median": round(statistics.median(raw), 1),
            "rollup_rebuild_ms": round(rebuild, 1)}


async def bench_stats_sqlite(n: int) -> dict:
    import sqlite3

    from backend.context import start_context

    with tempfile.TemporaryDirectory() as tmp:
        st = settings_for(Path(tmp))
        ctx = await start_context(st, models=False, workers=False, telegram=False, scheduler=False)
        places = await _places(ctx.sm)
        await ctx.stop()
        db = st.db_url.split("///", 1)[1]
        t = time.perf_counter()
        con = sqlite3.connect(db)
        con.execute("PRAGMA foreign_keys=OFF")
        con.execute("PRAGMA synchronous=OFF")
        insert_rows(con, n, places)
        con.commit()
        con.execute("ANALYZE")
        con.close()
        load = time.perf_counter() - t
        from backend.core.db import make_engine, make_sessionmaker

        engine = make_engine(st.db_url)
        try:
            res = await time_stats(make_sessionmaker(engine), f"SQLite ({n:,} cases)")
        finally:
            await engine.dispose()
        res["load_seconds"] = round(load, 1)
        return res


async def bench_stats_pg(n: int, url: str) -> dict:
    import io
    import uuid

    import psycopg2
    from sqlalchemy.engine import make_url

    from backend.context import start_context

    name = "hehe_bench_" + uuid.uuid4().hex[:8]
    u = make_url(url)
    admin = dict(host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database or "postgres")
    c = psycopg2.connect(**admin)
    c.autocommit = True
    c.cursor().execute(f'CREATE DATABASE "{name}"')
    c.close()
    db_url = u.set(database=name).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            st = settings_for(Path(tmp), database_url=db_url)
            ctx = await start_context(st, models=False, workers=False, telegram=False, scheduler=False)
            places = await _places(ctx.sm)
            await ctx.stop()
            t = time.perf_counter()
            c = psycopg2.connect(**{**admin, "dbname": name})
            cur = c.cursor()
            buf = io.StringIO()
            for i, row in enumerate(gen_rows(n, places)):
                buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
                if (i + 1) % 100_000 == 0:
                    buf.seek(0)
                    cur.copy_expert(f"COPY disputes ({COLS}) FROM STDIN", buf)
                    buf = io.StringIO()
            buf.seek(0)
            cur.copy_expert(f"COPY disputes ({COLS}) FROM STDIN", buf)
            c.commit()
            c.autocommit = True
            cur.execute("VACUUM ANALYZE disputes")
            c.close()
            load = time.perf_counter() - t
            from backend.core.db import make_engine, make_sessionmaker

            engine = make_engine(db_url)
            try:
                res = await time_stats(make_sessionmaker(engine), f"PostgreSQL ({n:,} cases)")
            finally:
                await engine.dispose()
            res["load_seconds"] = round(load, 1)
            return res
    finally:
        c = psycopg2.connect(**admin)
        c.autocommit = True
        c.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--citizens", type=int, default=20)
    ap.add_argument("--reports", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default=os.environ.get("HEHE_TEST_PG_URL"))
    ap.add_argument("--skip-intake", action="store_true")
    ap.add_argument("--skip-stats", action="store_true")
    a = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]}")
    if not a.skip_intake:
        r = await bench_intake(a.citizens, a.reports)
        print(f"intake: {r['per_second']} complete reports/s with {a.citizens} concurrent citizens "
              f"(baseline 1 citizen sequential: {r['baseline_1_citizen_per_second']}/s); {r}")
        one, many = r["sql_per_report"], r["sql_per_report_concurrent"]
        print(f"intake SQL per complete report: {one['statements']:g} statements, {one['commits']:g} commits "
              f"(one citizen's second report); {many['statements']:g} statements, {many['commits']:g} commits "
              f"on average with {a.citizens} concurrent citizens (first reports included)")
    if not a.skip_stats:
        r = await bench_stats_sqlite(a.rows)
        print(f"stats: {r}")
        if a.pg:
            r = await bench_stats_pg(a.rows, a.pg)
            print(f"stats: {r}")
        else:
            print("stats: PostgreSQL skipped (no --pg / HEHE_TEST_PG_URL)")


if __name__ == "__main__":
    asyncio.run(main())
