"""Console (工作台) benchmark: p50/p95 of the main list pages with N cases in the database
(default 100,000, SQLite), each next to the bare REST call for the same data from the same run,
the board computed at each request (its cache off) and from its cache, the time of a CSV and an XLSX
export at once (under the 50,000-row inline limit) and of every case in the background.

The pages are requested in-process over ASGI (the whole application: middleware, web session,
policy, audit, template rendering), as a signed-in mediator, official and admin of the seed's
places. Cases are bulk-loaded with bench/disputes.py's generator (spread over every township,
23 months), then the statistics rollup is rebuilt as after any bulk load.

    .venv/bin/python bench/console.py [--rows 100000] [--runs 20] [--pg postgresql+asyncpg://…]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

from bench.disputes import _places, insert_rows, settings_for  # noqa: E402


async def _session_for(sm, role, place: str | None):
    """A signed-in web session (second factor just done) for a new person of ``role``."""
    from backend.auth.accounts import new_web_user
    from backend.auth.models import WebSession
    from backend.auth.sessions import token_hash
    from backend.core.clock import now
    from backend.core.db import session_scope
    from backend.users import service as users

    async with session_scope(sm) as s:
        u = await new_web_user(s, name=f"bench-{role.value}")
        await users.set_role(s, u, role, await users.find_jurisdiction(s, place) if place else None, actor="bench")
        token = secrets.token_urlsafe(32)
        s.add(WebSession(token_hash=token_hash(token), user_id=u.id, method="bench", second_factor=True,
                         second_factor_at=now(), created_at=now(), last_seen_at=now(),
                         expires_at=now() + timedelta(hours=4), client="", user_agent=""))
    return token


def _load(db: str, n: int, places) -> float:
    t = time.perf_counter()
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")
    insert_rows(con, n, places)
    # open cases get deadlines around now, so the overdue and at-risk queues hold something
    con.execute("UPDATE disputes SET accept_due = datetime('now', printf('%d hours', (id % 97) - 48)) "
                "WHERE status = 'new'")
    # the board reads acceptance times, risk colours and the timeline: give the cases realistic ones
    con.execute("UPDATE disputes SET accepted_at = datetime(created_at, printf('+%d minutes', (id * 7919) % 4320)) "
                "WHERE status != 'new'")
    con.execute("UPDATE disputes SET risk = CASE id % 20 WHEN 0 THEN 'red' WHEN 1 THEN 'yellow' WHEN 2 THEN 'yellow' "
                "ELSE 'blue' END, risk_reasons = '[{\"code\": \"category\", \"detail\": \"\", \"points\": 2}]' WHERE status = 'new' AND id % 20 < 6")
    events = [  # (action, from, to, at): reported, accepted, outcome, archived
        ("create", "NULL", "'new'", "created_at"),
        ("accept", "'new'", "'accepted'", "accepted_at"),
        ("outcome", "'accepted'", "status", "datetime(created_at, printf('+%d minutes', "
                                             "CAST(resolution_days * 1440 AS INTEGER)))"),
    ]
    for action, src, dst, at in events:
        con.execute(f"INSERT INTO dispute_events (dispute_id, at, action, from_status, to_status) "
                    f"SELECT id, {at}, '{action}', {src}, {dst} FROM disputes WHERE {at} IS NOT NULL "
                    f"{'AND outcome IS NOT NULL' if action == 'outcome' else ''}")
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return time.perf_counter() - t


def _load_pg(url: str, n: int, places) -> float:
    """The same cases as :func:`_load`, into PostgreSQL by COPY."""
    import io

    import psycopg2
    from sqlalchemy.engine import make_url

    from bench.disputes import COLS, gen_rows

    t = time.perf_counter()
    u = make_url(url)
    con = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database)
    cur = con.cursor()
    buf = io.StringIO()
    for row in gen_rows(n, places):
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buf.seek(0)
    cur.copy_expert(f"COPY disputes ({COLS}) FROM STDIN", buf)
    cur.execute("UPDATE disputes SET accept_due = now() + ((id % 97) - 48) * interval '1 hour' WHERE status = 'new'")
    cur.execute("UPDATE disputes SET accepted_at = created_at + ((id * 7919) % 4320) * interval '1 minute' "
                "WHERE status != 'new'")
    cur.execute("UPDATE disputes SET risk = CASE id % 20 WHEN 0 THEN 'red' WHEN 1 THEN 'yellow' WHEN 2 THEN 'yellow' "
                "ELSE 'blue' END, risk_reasons = '[{\"code\": \"category\", \"detail\": \"\", \"points\": 2}]' WHERE status = 'new' AND id % 20 < 6")
    for action, src, dst, at in (
            ("create", "NULL", "'new'", "created_at"), ("accept", "'new'", "'accepted'", "accepted_at"),
            ("outcome", "'accepted'", "status", "created_at + (resolution_days * 1440)::int * interval '1 minute'")):
        cur.execute(f"INSERT INTO dispute_events (dispute_id, at, action, from_status, to_status) "
                    f"SELECT id, {at}, '{action}', {src}, {dst} FROM disputes WHERE {at} IS NOT NULL "
                    f"{'AND outcome IS NOT NULL' if action == 'outcome' else ''}")
    con.commit()
    con.autocommit = True
    cur.execute("VACUUM ANALYZE")
    con.close()
    return time.perf_counter() - t


async def _time(client: httpx.AsyncClient, url: str, runs: int) -> tuple[float, float, int]:
    r = await client.get(url)  # warm
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = await client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return round(statistics.median(times), 1), round(p95, 1), len(r.content)


async def main(n: int, runs: int, pg: str | None = None) -> None:
    if not pg:
        return await _main(n, runs, None)
    import uuid

    import psycopg2
    from sqlalchemy.engine import make_url

    name = "hehe_console_bench_" + uuid.uuid4().hex[:8]
    u = make_url(pg)
    admin = dict(host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database or "postgres")
    c = psycopg2.connect(**admin)
    c.autocommit = True
    c.cursor().execute(f'CREATE DATABASE "{name}"')
    c.close()
    try:
        await _main(n, runs, u.set(database=name).render_as_string(hide_password=False))
    finally:
        c = psycopg2.connect(**admin)
        c.autocommit = True
        c.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.close()


async def _main(n: int, runs: int, pg_url: str | None) -> None:
    from backend.app import create_app
    from backend.auth.sessions import COOKIE
    from backend.context import start_context
    from backend.core.db import session_scope
    from backend.disputes import stats
    from backend.users.models import Jurisdiction, Role

    with tempfile.TemporaryDirectory() as tmp:
        extra = {"database_url": pg_url} if pg_url else {}
        st = settings_for(Path(tmp), allowed_hosts="bench.test", **extra)
        ctx = await start_context(st, models=False, workers=False, telegram=False, scheduler=False)
        places = await _places(ctx.sm)
        await ctx.stop()
        load = _load_pg(pg_url, n, places) if pg_url else _load(st.db_url.split("///", 1)[1], n, places)
        app = create_app(st)
        async with app.router.lifespan_context(app):
            sm = app.state.ctx.sm
            async with session_scope(sm) as s:
                await stats.rebuild(s)
                township = (await s.execute(
                    Jurisdiction.__table__.select().where(Jurisdiction.name == "海门街道"))).first().id
            who = {"mediator": await _session_for(sm, Role.mediator, "椒江区"),
                   "official": await _session_for(sm, Role.official, "椒江区"),
                   "admin": await _session_for(sm, Role.admin, None)}

            def client(role):
                c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench.test",
                                      timeout=120)
                c.cookies.set(COOKIE, who[role])
                return c

            combo = f"tab=all&category=labor&category=neighbor&status=archived&status=failed&place={township}"
            cases = [
                ("mediator", "queue: open cases", "/console/cases?tab=open", "/api/disputes?limit=50"),
                ("mediator", "queue: new", "/console/cases?tab=new", "/api/disputes?status=new&limit=50"),
                ("mediator", "queue: overdue", "/console/cases?tab=overdue", "/api/disputes/overdue"),
                ("mediator", "queue: at risk (48 h)", "/console/cases?tab=at_risk&window=48", None),
                ("mediator", "search a number", "/console/cases?tab=all&q=TZ-B00004", None),
                ("official", "filters combined (OR + AND)", f"/console/cases?{combo}",
                 "/api/disputes?status=archived&status=failed&limit=50"),
                ("official", "board, cached (10 s)", "/console/board", "/api/stats/disputes"),
                ("official", "board, computed (cache off)", "/console/board#cold", "/api/stats/disputes"),
                ("admin", "all cases, city-wide", "/console/cases?tab=all", "/api/disputes?limit=50"),
            ]
            print(f"Console benchmark — {n:,} cases on {'PostgreSQL' if pg_url else 'SQLite'} (loaded in {load:.1f} s), {runs} runs each, "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            print(f"{'page':38} {'role':9} {'p50 ms':>8} {'p95 ms':>8}   {'bare API call':40} {'p50 ms':>8} {'p95 ms':>8}")
            settings = app.state.ctx.settings
            ttl = settings.console_board_cache_seconds
            for role, label, page, api in cases:
                # "#cold": the board computed at every request (its cache off), as the first
                # official of a county sees it every few seconds
                settings.console_board_cache_seconds = 0 if page.endswith("#cold") else ttl
                async with client(role) as c:
                    p50, p95, _ = await _time(c, page.removesuffix("#cold"), runs)
                    if api:
                        a50, a95, _ = await _time(c, api, runs)
                        print(f"{label:38} {role:9} {p50:8.1f} {p95:8.1f}   {api[:40]:40} {a50:8.1f} {a95:8.1f}")
                    else:
                        print(f"{label:38} {role:9} {p50:8.1f} {p95:8.1f}   {'(no API equivalent)':40}")
            settings.console_board_cache_seconds = 0
            async with client("admin") as c:
                p50, p95, _ = await _time(c, "/console/board", max(3, runs // 4))
                print(f"{'board, city-wide, computed (cache off)':38} {'admin':9} {p50:8.1f} {p95:8.1f}")
            settings.console_board_cache_seconds = ttl
            async with client("admin") as c:
                # inline: the first eleven months (under the 50,000-row inline limit)
                months = "&".join(f"month=2025-{m:02d}" for m in range(1, 12))
                for fmt in ("csv", "xlsx"):
                    t = time.perf_counter()
                    r = await c.get(f"/console/cases/export.{fmt}?tab=all&{months}")
                    dt = time.perf_counter() - t
                    assert r.status_code == 200, r.text[:200]
                    lines = r.content.count(b"\n") - 1 if fmt == "csv" else None
                    print(f"export {fmt.upper():4} at once{f' ({lines:,} rows)' if lines else ''}: {dt:.2f} s "
                          f"({len(r.content) / 1e6:.1f} MB)")
                # background: every case, from the request to the file ready to download
                for fmt in ("csv", "xlsx"):
                    t = time.perf_counter()
                    r = await c.get(f"/console/cases/export.{fmt}?tab=all")
                    assert r.status_code == 202, r.text[:200]
                    while (j := (await c.get(r.json()["status_url"])).json())["status"] not in ("done", "failed"):
                        await asyncio.sleep(0.1)
                    dt = time.perf_counter() - t
                    assert j["status"] == "done", j
                    print(f"export {fmt.upper():4} in the background ({j['rows']:,} rows): ready in {dt:.2f} s "
                          f"({j['size'] / 1e6:.1f} MB)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pg", default=None, help="a PostgreSQL URL (a scratch database is created there)")
    a = ap.parse_args()
    asyncio.run(main(a.rows, a.runs, a.pg))
