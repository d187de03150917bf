"""Upgrading keeps the deadlines of cases reported before the sweep: their due dates are filled
in from the old columns (their one-off jobs only run the sweep now)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from backend.core import migrate


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")


def test_upgrade_fills_the_due_dates_of_open_cases(tmp_path):
    NOW = datetime.now(timezone.utc)  # noqa: N806 - (the daytime fixture has moved the clock)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "disputes_0002")
    engine = sa.create_engine(url)
    rows = [  # id, status, accept_due, resolve_due, overdue, closed_at, rating
        (1, "new", NOW + timedelta(days=1), None, 0, None, None),
        (2, "mediating", NOW - timedelta(days=40), NOW + timedelta(days=3), 0, None, None),
        (3, "new", NOW - timedelta(days=2), None, 1, None, None),  # already flagged: not again
        (4, "resolved", NOW - timedelta(days=5), NOW - timedelta(days=1), 0, NOW - timedelta(days=1), None),
    ]
    with engine.begin() as conn:
        for cid, status, accept, resolve, overdue, closed, rating in rows:
            conn.execute(sa.text(
                "INSERT INTO disputes (id, number, category, description, source, citizen_id, place_id, county_id, "
                "unit_id, parties, status, month, created_at, updated_at, overdue, escalated_county, risk, risk_reasons, "
                "accept_due, resolve_due, closed_at, rating) VALUES (:id, :n, 'neighbor', 'x', 'chat', 7, 1, 1, 1, 2, "
                ":st, '2026-12', :c, :c, :o, 0, 'green', '[]', :a, :r, :cl, :ra)"),
                {"id": cid, "n": f"TZ-{cid}", "st": status, "c": _iso(NOW - timedelta(days=41)), "o": overdue,
                 "a": accept and _iso(accept), "r": resolve and _iso(resolve), "cl": closed and _iso(closed), "ra": rating})
    migrate.upgrade(url)
    with engine.connect() as conn:
        got = {r.id: r for r in conn.execute(sa.text(
            "SELECT id, due_at, remind_at, rating_remind_at FROM disputes ORDER BY id"))}
    engine.dispose()
    assert got[1].due_at is not None and got[1].remind_at is not None
    assert got[2].due_at is not None  # the resolution deadline of a case in mediation
    assert got[3].due_at is None  # flagged overdue before the upgrade: not escalated by surprise
    assert got[4].due_at is None and got[4].rating_remind_at is not None
