"""系统管理 additions: importing jurisdictions from the console.

The users table of ``/console/admin`` changes roles and (de)activates people by posting to the
users slice's own REST routes (``POST /api/admin/users/{id}/role``, ``/deactivate``,
``/reactivate``), which call ``users.service.set_role`` / ``set_active`` and audit. The
jurisdictions import takes the file ``hehe jurisdictions import`` takes (CSV with the columns
county, township, village, grid, lat, lon) through ``users.service.import_csv_text``; it changes
the place tree every rule reads, so it asks for a fresh second factor, and a bad file is refused
as a whole with a message that says what is wrong (nothing is half-imported)."""
from __future__ import annotations

from pydantic import BaseModel, Field

from backend.auth.guards import FreshSecondFactor
from backend.console.api import AdminUser, router
from backend.core.deps import SessionDep
from backend.core.errors import DomainError
from backend.users import service as users

MAX_IMPORT_CHARS = 2_000_000


class ImportIn(BaseModel):
    filename: str | None = Field(None, max_length=255)
    csv: str = Field(max_length=MAX_IMPORT_CHARS)


@router.post("/console/api/jurisdictions/import")
async def import_jurisdictions(body: ImportIn, session: SessionDep, user: AdminUser, _fresh: FreshSecondFactor
                               ) -> dict:
    if not body.csv.strip():
        raise DomainError("console_ops.err_import_empty")
    if "\ufffd" in body.csv:  # the browser read bytes that are not UTF-8
        raise DomainError("console_ops.err_import_encoding")
    added = await users.import_csv_text(session, body.csv)
    await users.audit(session, f"user:{user.id}", "jurisdictions.imported", None, added=added,
                      filename=body.filename, channel="web")
    return {"added": added}
