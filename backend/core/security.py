"""Authorization rules — the one place that says who may do what, where.

Used by API dependencies and by chat handlers (through the services).
"""
from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from backend.core.errors import Forbidden
from backend.users.models import Jurisdiction, Role, User

STAFF = {Role.mediator, Role.deputy, Role.procurator, Role.officer, Role.official, Role.admin}


def require_role(user: User, *roles: Role) -> None:
    if Role(user.role) not in roles and Role(user.role) != Role.admin:
        raise Forbidden("common.err_forbidden")


def require_admin(user: User) -> None:
    if Role(user.role) != Role.admin:
        raise Forbidden("common.err_forbidden")


def within(user: User, target: Jurisdiction | None) -> bool:
    """Is ``target`` inside the user's jurisdiction? Admins see everything; a user with
    no jurisdiction sees nothing that has one."""
    if Role(user.role) == Role.admin:
        return True
    if user.jurisdiction is None or target is None:
        return False
    return target.path.startswith(user.jurisdiction.path)


def require_within(user: User, target: Jurisdiction | None) -> None:
    if not within(user, target):
        raise Forbidden("common.err_out_of_jurisdiction")


# ---------------------------------------------------------------- API tokens
def load_secret(data_dir: Path, configured: str) -> str:
    """The configured secret, or a random one generated once per data dir."""
    if configured and configured != "change-me":
        return configured
    p = data_dir / "secret.key"
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(secrets.token_hex(32))
        p.chmod(0o600)
    return p.read_text().strip()


def same_bytes(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison on bytes: ``hmac.compare_digest`` raises on a str with non-ASCII
    characters, which turned a wrong key typed in Chinese into a server error."""
    a = a.encode("utf-8") if isinstance(a, str) else a
    b = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(a, b)
