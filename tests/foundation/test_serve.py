"""`hehe serve` as a newcomer runs it: a real process on an empty data directory, both models
loaded (they start loading before the application is imported), ready, chatting."""
from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.serving import hehe_serve


def test_hehe_serve_on_an_empty_data_dir_becomes_ready_with_both_models(tmp_path: Path):
    with hehe_serve(tmp_path, tmp_path / "data") as (base, checks):
        assert checks == {"database": "ok", "models": "ok", "scheduler": "ok"}, checks
        with urllib.request.urlopen(base + "/chat", timeout=5) as r:
            assert r.status == 200 and "和合" in r.read().decode()
        assert (tmp_path / "data" / "scheduler.db").exists()  # the job store's own file
