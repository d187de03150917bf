"""Configuration: every setting is documented in .env.example, with its real default."""
from __future__ import annotations

import re
from pathlib import Path

from backend.core.config import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / ".env.example"


def _documented() -> dict[str, str | None]:
    """HEHE_X=value lines, and '# HEHE_X=' lines for optional settings that are unset by default."""
    out: dict[str, str | None] = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(#\s*)?(HEHE_[A-Z0-9_]+)=(.*)$", line)
        if m:
            out[m.group(2)] = None if m.group(1) else m.group(3)
    return out


def test_every_setting_is_in_env_example():
    fields = {f"HEHE_{name.upper()}" for name in Settings.model_fields}
    documented = _documented()
    assert fields - set(documented) == set(), "add these to .env.example (and the README table)"
    assert set(documented) - fields == set(), ".env.example documents settings that do not exist"


def test_env_example_values_are_the_defaults(monkeypatch, tmp_path):
    for k in list(__import__("os").environ):
        if k.startswith("HEHE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # no developer .env
    from_example = Settings(_env_file=str(EXAMPLE))
    defaults = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()


def test_env_prefix_and_embedded_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEHE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("HEHE_PORT", "9001")
    s = Settings(_env_file=None)
    assert s.port == 9001
    assert s.db_url == f"sqlite+aiosqlite:///{(tmp_path / 'd' / 'hehe.db').resolve()}"
    assert s.sync_db_url.startswith("sqlite:///")
    pg = Settings(_env_file=None, database_url="postgresql+asyncpg://u:p@h:5432/db")
    assert pg.sync_db_url == "postgresql+psycopg2://u:p@h:5432/db"
    assert Settings(_env_file=None).telegram_token is None  # no token, no Telegram
