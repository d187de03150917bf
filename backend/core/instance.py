"""Start-up safety for the embedded default (SQLite in a data dir).

* One server per data dir: a second ``hehe serve`` on the same SQLite data dir would run every
  scheduled job and deliver every notification twice, so it refuses with a clear message
  (an exclusive, non-blocking lock on ``<data_dir>/hehe.lock``, released when the process ends,
  even by kill -9).
* A vanished database is an error, not a fresh start: once a data dir has held a database
  (``<data_dir>/.hehe-database`` records it), a missing or empty database file stops start-up
  instead of silently creating an empty one. ``hehe serve --init`` (``HEHE_ALLOW_NEW_DATABASE``)
  starts afresh deliberately.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from backend.core.migrate import sqlite_file

MARKER = ".hehe-database"


class StartupRefused(RuntimeError):
    """Hehe must not start as configured; the message says why and what to do."""


def claim_data_dir(data_dir: Path, sync_url: str) -> IO | None:
    """Hold the data dir's server lock for this process (SQLite only). Returns the open lock file
    (keep it open while serving) or None when the database is a server."""
    if sqlite_file(sync_url) is None:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "hehe.lock", "a+")  # noqa: SIM115 - held open while the server runs
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise StartupRefused(
            f"another Hehe server (pid {holder}) is using the data dir {data_dir.resolve()}; "
            "two servers on one SQLite data dir would send every reminder and notification twice. "
            "Stop it first, or give this one its own HEHE_DATA_DIR "
            "(several replicas need PostgreSQL: docs/deploy.md)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def release_data_dir(fh: IO | None) -> None:
    if fh is not None:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def check_database_present(data_dir: Path, sync_url: str, allow_new: bool) -> None:
    """Refuse to start on a missing or empty SQLite file where this data dir has held one."""
    db = sqlite_file(sync_url)
    if db is None or allow_new:
        return
    marker = data_dir / MARKER
    missing = not db.exists() or db.stat().st_size == 0
    if missing and marker.exists():
        raise StartupRefused(
            f"the database {db} is missing or empty, but this data dir held one before "
            f"(since {marker.read_text().strip()}). Restore it from a backup, or start afresh "
            "on purpose with `hehe serve --init` (HEHE_ALLOW_NEW_DATABASE=true)")


def remember_database(data_dir: Path, sync_url: str) -> None:
    db = sqlite_file(sync_url)
    marker = data_dir / MARKER
    if db is not None and db.exists() and not marker.exists():
        from backend.core.clock import now

        marker.write_text(now().isoformat(timespec="seconds") + "\n")
