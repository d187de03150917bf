"""Route rules the authorization test reads from the route table: a route is either
signed-in (``CurrentUser``, ``WebUser`` …), or marked :data:`PUBLIC` / :data:`DEMO_ONLY` here."""
from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request

from backend.auth.models import WebSession
from backend.core.clock import now
from backend.core.deps import CurrentUser, Unauthorized
from backend.core.errors import DomainError, NotFound


def public_route() -> None:
    """Marker: anyone may call this route (sign-in steps, the page, health)."""


def demo_route(request: Request) -> None:
    """Only with HEHE_DEMO=true; otherwise the route does not exist (404)."""
    if not request.app.state.ctx.settings.demo:
        raise NotFound("common.err_not_found")


PUBLIC = Depends(public_route)
DEMO_ONLY = Depends(demo_route)


class StepUpRequired(DomainError):
    status = 403
    code = "step_up_required"


async def require_fresh_second_factor(request: Request, user: CurrentUser) -> object:
    """A fresh second factor (TOTP within settings.step_up_minutes) before revealing a face
    match or exporting personal data. Web sessions prove it with ``POST /auth/api/step-up``;
    an API token (``hehe token create``, given out by the operator) carries no session and
    passes."""
    ws: WebSession | None = getattr(request.state, "web_session", None)
    if ws is None:
        if request.headers.get("authorization"):
            return user
        raise Unauthorized("common.err_unauthorized")
    minutes = request.app.state.ctx.settings.step_up_minutes
    if ws.second_factor_at is None or now() - ws.second_factor_at > timedelta(minutes=minutes):
        raise StepUpRequired("auth.err_step_up")
    return user


FreshSecondFactor = Annotated[object, Depends(require_fresh_second_factor)]
