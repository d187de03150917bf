"""One clock module: the local zone people see is HEHE_TIMEZONE, wherever a time is shown."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from backend.core import clock
from backend.core.clock import TZ, fmt_local
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
NOON_UTC = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


async def test_a_started_hehe_shows_times_in_the_configured_zone(tmp_path):
    from backend.context import start_context

    ctx = await start_context(make_settings(tmp_path, timezone="Europe/Berlin"), scheduler=False,
                              models=False, workers=False, telegram=False)
    try:
        assert fmt_local(NOON_UTC) == "2026-01-15 13:00"
        assert datetime(2026, 7, 1, 9, 0, tzinfo=TZ).astimezone(timezone.utc).hour == 7  # summer time
    finally:
        await ctx.stop()
        clock.set_timezone("Asia/Shanghai")
    assert fmt_local(NOON_UTC) == "2026-01-15 20:00"


def test_the_environment_sets_the_zone_before_any_settings_are_read():
    env = {**os.environ, "HEHE_TIMEZONE": "America/New_York", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", "from datetime import datetime, timezone; from backend.core.clock import fmt_local;"
         "print(fmt_local(datetime(2026, 1, 15, 12, tzinfo=timezone.utc)))"],
        env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2026-01-15 07:00"


def test_the_local_zone_survives_pickling_as_the_same_zone():
    assert pickle.loads(pickle.dumps(TZ)) is TZ
