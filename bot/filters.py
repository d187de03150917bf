"""Filters shared by the capabilities' routers.

``RoleFilter(Role.mediator)`` lets an update through when the person (the ``user`` that
``DbUserMiddleware`` injects) has one of the roles; admins always pass. Use it on a whole
router or on one handler::

    router = Router(name="disputes-staff")
    router.message.filter(RoleFilter(Role.mediator))

    @router.callback_query(DisputeCb.filter(F.action == Action.accept), RoleFilter(Role.mediator))
    async def accept(...): ...

An update that does not pass falls through to the next router (in the end the catch-all's
polite answer). When a wrong role must hear *why* it is refused, let the service say it:
``backend.core.security.require_role`` raises ``Forbidden``, which the error middleware turns
into a polite reply.
"""
from __future__ import annotations

from typing import Any

from aiogram.filters import Filter

from backend.users.models import Role


class RoleFilter(Filter):
    def __init__(self, *roles: Role | str) -> None:
        self.roles = frozenset(Role(r) for r in roles)

    async def __call__(self, event: Any, user: Any = None) -> bool:
        if user is None:
            return False
        role = Role(user.role)
        return role is Role.admin or role in self.roles

    def __str__(self) -> str:
        return f"RoleFilter({', '.join(sorted(r.value for r in self.roles))})"
