"""人大·检察智联督办 — the rules.

Deputies propose (代表提), follow and urge (代表督) and rate (代表评); procurators accept,
decline or register a clue, handle (检e办) and track the agency's rectification (检e督).

One state machine (``TRANSITIONS``), checked in :func:`transition` only; every change is
recorded in ``sup_events`` with who, when and a note, and told to everyone attached to the
item in the same transaction (outbox). Reminder jobs are scheduled after the commit
(``scheduler.runtime.schedule_after_commit``), never for a change that was rolled back.
"""
from __future__ import annotations

import calendar
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import TZ, now, to_local
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.files import attach
from backend.core.policy import Action, Facts, Kind, may, places_inside
from backend.core.workdays import next_workday_on_or_after, workday_deadline
from backend.notify.service import notify
from backend.supervision.models import ItemCounter, ItemEvent, ItemParticipant, Suggestion, SupervisionItem
from backend.users import service as users
from backend.users.models import Jurisdiction, Level, Role, User
from backend.users.tree import Node
from scheduler import runtime

log = logging.getLogger("hehe.supervision")

# ---------------------------------------------------------------- configuration
AREAS = ["生态环境", "食品药品安全", "国有财产保护", "国有土地使用权出让", "安全生产", "未成年人保护",
         "行政执法监督", "其他"]
TITLE_MAX = 100
DESCRIPTION_MAX = 5000
ACCEPT_WORKDAYS = 7  # 受理 within 7 working days
REPLY_MONTHS = 2  # 检察建议 reply deadline, default
FOLLOWUP_MONTHS = 3  # 回头看 after rectification
URGE_INTERVAL = timedelta(days=3)  # 催办 at most once per 3 days per item
ESCALATE_AFTER = timedelta(days=7)  # overdue reply → chief procurator
REMIND_BEFORE = (timedelta(days=7), timedelta(days=1))  # T−7, T−1
OWNER_KIND = "supervision_item"
JOBS = "scheduler.jobs.supervision"
RATINGS = ("satisfied", "basic", "unsatisfied")
RECTIFIED = ("yes", "partly", "no")
SUPERVISOR_TITLES = ("chief", "supervisor")

# ---------------------------------------------------------------- the state machine
# (from status, action) → to status. Actions not listed are refused (stale button, wrong step).
TRANSITIONS: dict[tuple[str, str], str] = {
    ("submitted", "accept"): "accepted",
    ("submitted", "decline"): "declined",
    ("submitted", "clue"): "clue",
    ("declined", "appeal"): "appealed",
    ("appealed", "accept"): "accepted",
    ("appealed", "decline"): "declined_final",
    ("appealed", "clue"): "clue",
    ("clue", "file_case"): "case_filed",
    ("accepted", "suggest"): "suggested",
    ("case_filed", "suggest"): "suggested",
    ("replied", "suggest"): "suggested",
    ("accepted", "litigate"): "litigation",
    ("case_filed", "litigate"): "litigation",
    ("replied", "litigate"): "litigation",
    ("suggested", "litigate"): "litigation",
    ("suggested", "reply"): "replied",
    ("accepted", "close"): "closed",
    ("case_filed", "close"): "closed",
    ("replied", "close"): "closed",
    ("litigation", "close"): "closed",
    ("closed", "rate"): "closed",
    ("closed", "rate_unsatisfied"): "review",
    ("review", "review_close"): "closed",
    ("review", "review_reopen"): "accepted",
}
# Steps that record something without changing the status.
NOTE_STATES = {"accepted", "clue", "case_filed", "suggested", "replied", "litigation", "review"}
OPEN_STATES = {"submitted", "appealed", "accepted", "clue", "case_filed", "suggested", "replied", "litigation",
               "review"}
HANDLED_STATES = {"accepted", "clue", "case_filed", "suggested", "replied", "litigation", "closed", "review"}


def allowed_actions(status: str) -> list[str]:
    return [a for (s, a) in TRANSITIONS if s == status]


# ---------------------------------------------------------------- reminder jobs
def _after_commit(session: AsyncSession, func_name: str, run_at: datetime, args: list, job_id: str) -> None:
    runtime.schedule_after_commit(session, f"{JOBS}:{func_name}", run_at, args, job_id)


def _cancel_after_commit(session: AsyncSession, job_id: str) -> None:
    runtime.cancel_after_commit(session, job_id)


# ---------------------------------------------------------------- knowledge base seam
async def _kb_changed(session: AsyncSession, item: SupervisionItem) -> None:
    try:
        from knowledge_base.models import enqueue
    except ModuleNotFoundError:  # knowledge base slice absent: nothing to index
        return
    await enqueue(session, "supervision", item.id)


# ---------------------------------------------------------------- dates
def add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    y, m = d.year + m // 12, m % 12 + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def months_deadline(at: datetime, months: int) -> datetime:
    """``months`` later, moved to the next working day, at close of business local time."""
    local = to_local(at)
    return datetime.combine(next_workday_on_or_after(add_months(local.date(), months)), time(17, 30), tzinfo=TZ)


def parse_date(text: str) -> date:
    m = re.match(r"^\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?\s*$", text or "")
    if not m:
        raise DomainError("supervision.err_date")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as e:
        raise DomainError("supervision.err_date") from e


# ---------------------------------------------------------------- lookups and authorization
async def get_item(session: AsyncSession, item_id: int) -> SupervisionItem:
    item = await session.get(SupervisionItem, item_id)
    if item is None:
        raise NotFound("supervision.err_no_item")
    return item


async def get_by_number(session: AsyncSession, number: str) -> SupervisionItem:
    item = await session.scalar(select(SupervisionItem).where(
        SupervisionItem.number == (number or "").strip().upper()))
    if item is None:
        raise NotFound("supervision.err_no_item")
    return item


async def participants(session: AsyncSession, item: SupervisionItem, *, confirmed_only: bool = True
                       ) -> list[ItemParticipant]:
    q = select(ItemParticipant).where(ItemParticipant.item_id == item.id)
    if confirmed_only:
        q = q.where(ItemParticipant.confirmed.is_(True))
    return list(await session.scalars(q.order_by(ItemParticipant.id)))


def _role(user: User) -> Role:
    return Role(user.role)


def is_handler(user: User, item: SupervisionItem) -> bool:
    """A procurator of the procuratorate that handles the item now."""
    return _role(user) == Role.admin or (_role(user) == Role.procurator
                                         and user.jurisdiction_id == item.procuratorate_id)


def is_supervisor(user: User, item: SupervisionItem) -> bool:
    return _role(user) == Role.admin or (is_handler(user, item) and user.title in SUPERVISOR_TITLES)


async def facts(session: AsyncSession, item: SupervisionItem) -> Facts:
    """An item as the access policy sees it (backend/core/policy.py): its proposer, the confirmed
    co-signing deputies, its place, county and the procuratorate handling it."""
    parties = await session.scalars(select(ItemParticipant.user_id).where(
        ItemParticipant.item_id == item.id, ItemParticipant.confirmed.is_(True)))
    return Facts.of(owners=item.proposer_id, staff=item.handler_id, parties=list(parties), place=item.jurisdiction,
                    county=item.county, procuratorate=item.procuratorate)


async def can_view(session: AsyncSession, user: User, item: SupervisionItem) -> bool:
    return may(user, Action.read, Kind.supervision, await facts(session, item))


async def visible_numbers(session: AsyncSession, user: User) -> set[str]:
    """Numbers of every item ``user`` may open — what /ask and citation cards may show them.
    The same facts and the same table as :func:`can_view`, read in two queries."""
    places = await users.tree.current(session)
    parties: dict[int, list[int]] = {}
    for item_id, uid in await session.execute(select(ItemParticipant.item_id, ItemParticipant.user_id).where(
            ItemParticipant.confirmed.is_(True))):
        parties.setdefault(item_id, []).append(uid)
    q = select(SupervisionItem.id, SupervisionItem.number, SupervisionItem.proposer_id, SupervisionItem.handler_id,
               SupervisionItem.jurisdiction_id, SupervisionItem.county_id, SupervisionItem.procuratorate_id)
    inside = places_inside(user, places.nodes)
    if inside is not None:  # only rows that could pass; may() decides
        mine = [i for i, ids in parties.items() if user.id in ids]
        q = q.where(or_(SupervisionItem.proposer_id == user.id, SupervisionItem.handler_id == user.id,
                        SupervisionItem.id.in_(mine), SupervisionItem.jurisdiction_id.in_(inside),
                        SupervisionItem.county_id.in_(inside), SupervisionItem.procuratorate_id.in_(inside)))
    rows = await session.execute(q)
    return {n for i, n, prop, h, j, c, pr in rows if may(user, Action.read, Kind.supervision, Facts.of(
        owners=prop, staff=h, parties=parties.get(i, ()), place=places.get(j), county=places.get(c),
        procuratorate=places.get(pr)))}


async def require_view(session: AsyncSession, user: User, item: SupervisionItem) -> None:
    """404 when ``user`` may not see the item: its existence is not revealed."""
    if not await can_view(session, user, item):
        raise NotFound("supervision.err_no_item")


def sees_personal_data(user: User) -> bool:
    """Deputies attached to an item, procurators and admins see it unmasked; officials (read-only
    overview) get phones, ID numbers and minors' names masked. Call after ``require_view``."""
    return _role(user) != Role.official


def require_handler(user: User, item: SupervisionItem) -> None:
    if not is_handler(user, item):
        raise Forbidden("supervision.err_forbidden")


def visible_query(user: User):
    """SELECT of the items ``user`` may see (citizens: none)."""
    q = select(SupervisionItem)
    role = _role(user)
    if role == Role.admin:
        return q
    if role == Role.procurator and user.jurisdiction_id:
        return q.where(or_(SupervisionItem.procuratorate_id == user.jurisdiction_id,
                           SupervisionItem.county_id == user.jurisdiction_id))
    if role == Role.official and user.jurisdiction is not None:
        return q.join(Jurisdiction, Jurisdiction.id == SupervisionItem.jurisdiction_id).where(
            Jurisdiction.path.startswith(user.jurisdiction.path))
    if role == Role.deputy:
        return q.join(ItemParticipant, ItemParticipant.item_id == SupervisionItem.id).where(
            ItemParticipant.user_id == user.id, ItemParticipant.confirmed.is_(True))
    return q.where(SupervisionItem.id == -1)


async def list_items(session: AsyncSession, user: User, *, open_only: bool = False, limit: int = 50
                     ) -> list[SupervisionItem]:
    q = visible_query(user)
    if open_only:
        q = q.where(SupervisionItem.status.in_(OPEN_STATES))
    return list(await session.scalars(q.order_by(SupervisionItem.id.desc()).limit(limit)))


async def timeline(session: AsyncSession, item: SupervisionItem) -> list[ItemEvent]:
    return list(await session.scalars(select(ItemEvent).where(ItemEvent.item_id == item.id)
                                      .order_by(ItemEvent.at, ItemEvent.id)))


async def suggestions(session: AsyncSession, item: SupervisionItem) -> list[Suggestion]:
    return list(await session.scalars(select(Suggestion).where(Suggestion.item_id == item.id)
                                      .order_by(Suggestion.id)))


async def open_suggestion(session: AsyncSession, item: SupervisionItem) -> Suggestion | None:
    return await session.scalar(select(Suggestion).where(
        Suggestion.item_id == item.id, Suggestion.replied_at.is_(None)).order_by(Suggestion.id.desc()))


# ---------------------------------------------------------------- notifications
async def procurators_of(session: AsyncSession, j_id: int, title: str | None = None) -> list[User]:
    j = await users.jurisdiction(session, j_id)
    return await users.users_with_role(session, Role.procurator, j, exact=True, title=title)


async def chiefs_of(session: AsyncSession, j_id: int) -> list[User]:
    chiefs = await procurators_of(session, j_id, "chief")
    if chiefs:
        return chiefs
    j = await users.jurisdiction(session, j_id)
    if j is not None and j.parent_id:  # no chief registered here: the level above
        return await procurators_of(session, j.parent_id, "chief")
    return []


async def tell_participants(session: AsyncSession, item: SupervisionItem, key: str, dedupe: str,
                            exclude: int | None = None, buttons=None, **params) -> None:
    for p in await participants(session, item):
        if p.user_id == exclude:
            continue
        await notify(session, p.user_id, key, buttons=buttons, dedupe_key=f"sup:{dedupe}:u{p.user_id}",
                     number=item.number, title=item.title, **params)


async def tell_procurators(session: AsyncSession, item: SupervisionItem, key: str, dedupe: str,
                           buttons=None, users_: list[User] | None = None, urgent: bool = False, **params) -> None:
    targets = users_ if users_ is not None else await procurators_of(session, item.procuratorate_id)
    for u in targets:
        await notify(session, u, key, buttons=buttons, dedupe_key=f"sup:{dedupe}:u{u.id}", urgent=urgent,
                     number=item.number, title=item.title, **params)


def decision_buttons(item: SupervisionItem):
    return [[("supervision.btn_accept", f"sp:accept:{item.id}"),
             ("supervision.btn_decline", f"sp:decline:{item.id}"),
             ("supervision.btn_clue", f"sp:clue:{item.id}")]]


# ---------------------------------------------------------------- the one transition function
async def transition(session: AsyncSession, item: SupervisionItem, action: str, actor: User | None,
                     note: str | None = None, **data) -> ItemEvent:
    to = TRANSITIONS.get((item.status, action))
    if to is None:
        raise Conflict("supervision.err_stale", status=status_label(item.status))
    ev = ItemEvent(item_id=item.id, at=now(), actor_id=actor.id if actor else None, action=action,
                   from_status=item.status, to_status=to, note=note, data=data)
    item.status = to
    item.updated_at = ev.at
    session.add(ev)
    await session.flush()
    await _kb_changed(session, item)
    return ev


async def record_step(session: AsyncSession, item: SupervisionItem, action: str, actor: User | None,
                      note: str | None = None, **data) -> ItemEvent:
    """A handling step or a remark that does not change the status (still on the timeline)."""
    ev = ItemEvent(item_id=item.id, at=now(), actor_id=actor.id if actor else None, action=action,
                   from_status=item.status, to_status=item.status, note=note, data=data)
    item.updated_at = ev.at
    session.add(ev)
    await session.flush()
    await _kb_changed(session, item)
    return ev


# ---------------------------------------------------------------- 代表提: propose
def check_title(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise DomainError("supervision.err_title_empty")
    if len(title) > TITLE_MAX:
        raise DomainError("supervision.err_title_long", max=TITLE_MAX, n=len(title))
    return title


def check_description(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise DomainError("supervision.err_description_empty")
    if len(text) > DESCRIPTION_MAX:
        raise DomainError("supervision.err_description_long", max=DESCRIPTION_MAX, n=len(text))
    return text


def check_area(area: str) -> str:
    if area not in AREAS:
        raise DomainError("supervision.err_area")
    return area


def check_text(text: str, limit: int = DESCRIPTION_MAX) -> str:
    text = (text or "").strip()
    if not text:
        raise DomainError("supervision.err_text_empty")
    if len(text) > limit:
        raise DomainError("supervision.err_text_long", max=limit)
    return text


async def check_place(session: AsyncSession, place_id: int) -> tuple[Node, Node]:
    """The place and its county. Only places inside a county of Taizhou are accepted."""
    j = await users.jurisdiction(session, place_id)
    if j is None or j.level == Level.city.value:
        raise DomainError("supervision.err_place")
    county = j if j.level == Level.county.value else await users.county_of(session, j)
    if county is None:
        raise DomainError("supervision.err_place")
    return j, county


_SPLIT = re.compile(r"[,，、;；\s]+")


async def resolve_cosigners(session: AsyncSession, proposer: User, text: str) -> list[User]:
    """``text``: local/Telegram ids or names of deputies, separated by commas or spaces."""
    out: list[User] = []
    for ref in [r for r in _SPLIT.split(text or "") if r]:
        if ref.isdigit():
            cands = list(await session.scalars(select(User).where(User.telegram_id == int(ref))))
        else:
            cands = list(await session.scalars(select(User).where(User.name == ref)))
        cands = [u for u in cands if _role(u) == Role.deputy and u.active]
        if not cands:
            raise DomainError("supervision.err_unknown_cosigner", ref=ref)
        if len(cands) > 1:
            raise DomainError("supervision.err_ambiguous_cosigner", ref=ref)
        u = cands[0]
        if u.id == proposer.id:
            raise DomainError("supervision.err_cosigner_self")
        if u.id not in {x.id for x in out}:
            out.append(u)
    return out


async def _next_number(session: AsyncSession, county: Node, at: datetime) -> str:
    code = county.code or "TZ"
    key = f"{code}-{to_local(at).year}"
    counter = await session.scalar(select(ItemCounter).where(ItemCounter.key == key).with_for_update())
    if counter is None:
        counter = ItemCounter(key=key, last=0)
        session.add(counter)
    counter.last += 1
    await session.flush()
    return f"DB-{key}-{counter.last:04d}"


@dataclass
class Draft:
    title: str
    description: str
    area: str
    place_id: int
    agency: str | None = None
    file_ids: list[int] | None = None
    cosigners: str = ""


async def propose(session: AsyncSession, proposer: User, draft: Draft) -> SupervisionItem:
    """Create the item (on confirm only): validates everything again, numbers it, routes it."""
    if _role(proposer) not in (Role.deputy, Role.admin):
        raise Forbidden("supervision.err_deputy_only")
    title = check_title(draft.title)
    description = check_description(draft.description)
    area = check_area(draft.area)
    place, county = await check_place(session, draft.place_id)
    agency = (draft.agency or "").strip()[:128] or None
    cosigners = await resolve_cosigners(session, proposer, draft.cosigners)
    t = now()
    item = SupervisionItem(
        number=await _next_number(session, county, t), title=title, description=description, area=area,
        agency=agency, jurisdiction_id=place.id, county_id=county.id, procuratorate_id=county.id,
        proposer_id=proposer.id, status="submitted", created_at=t, updated_at=t,
        acceptance_due=workday_deadline(t, ACCEPT_WORKDAYS),
    )
    item.jurisdiction = await users.jurisdiction_row(session, place)
    item.county = item.procuratorate = await users.jurisdiction_row(session, county)
    session.add(item)
    await session.flush()
    session.add(ItemParticipant(item_id=item.id, user_id=proposer.id, kind="proposer", confirmed=True,
                                confirmed_at=t))
    for u in cosigners:
        session.add(ItemParticipant(item_id=item.id, user_id=u.id, kind="cosigner", confirmed=False))
    if draft.file_ids:
        await attach(session, list(draft.file_ids), OWNER_KIND, item.id)
    session.add(ItemEvent(item_id=item.id, at=t, actor_id=proposer.id, action="propose", from_status=None,
                          to_status="submitted", note=None,
                          data={"cosigners": [u.id for u in cosigners], "files": len(draft.file_ids or [])}))
    await session.flush()
    await _kb_changed(session, item)
    for u in cosigners:
        await notify(session, u, "supervision.cosign_invite", dedupe_key=f"sup:{item.id}:cosign:u{u.id}",
                     buttons=[[("supervision.btn_cosign_yes", f"sp:cosign:{item.id}"),
                               ("supervision.btn_cosign_no", f"sp:cosign_no:{item.id}")]],
                     number=item.number, title=item.title, proposer=proposer.name or "-")
    await tell_procurators(session, item, "supervision.new_item", f"{item.id}:new",
                           buttons=decision_buttons(item), area=item.area, place=item.jurisdiction.name,
                           due=_fmt(item.acceptance_due), proposer=proposer.name or "-")
    _after_commit(session, "acceptance_due", item.acceptance_due, [item.id], f"sup-accept-{item.id}")
    return item


def _fmt(dt: datetime | None) -> str:
    return to_local(dt).strftime("%Y-%m-%d %H:%M") if dt else "-"


async def confirm_cosign(session: AsyncSession, user: User, item_id: int, yes: bool) -> SupervisionItem:
    item = await get_item(session, item_id)
    p = await session.scalar(select(ItemParticipant).where(
        ItemParticipant.item_id == item.id, ItemParticipant.user_id == user.id,
        ItemParticipant.kind == "cosigner"))
    if p is None:
        raise Forbidden("supervision.err_forbidden")
    if p.confirmed:
        raise Conflict("supervision.err_already_cosigned")
    if not yes:
        await session.delete(p)
        await record_step(session, item, "cosign_declined", user)
        await notify(session, item.proposer_id, "supervision.cosign_declined_note",
                     dedupe_key=f"sup:{item.id}:cosign_no:u{user.id}", number=item.number, name=user.name or "-")
        return item
    p.confirmed, p.confirmed_at = True, now()
    ev = await record_step(session, item, "cosign", user)
    await tell_participants(session, item, "supervision.cosigned", f"{item.id}:e{ev.id}", exclude=user.id,
                            name=user.name or "-")
    return item


async def follow(session: AsyncSession, user: User, number: str) -> SupervisionItem:
    """联合督办: a deputy or the standing committee's liaison (deputy "liaison" or official)
    joins an item in their jurisdiction and receives all its updates from now on."""
    item = await get_by_number(session, number)
    role = _role(user)
    if role not in (Role.deputy, Role.official, Role.admin):
        raise Forbidden("supervision.err_forbidden")
    if role != Role.admin and (user.jurisdiction is None
                               or not item.jurisdiction.path.startswith(user.jurisdiction.path)):
        raise Forbidden("supervision.err_forbidden")
    p = await session.scalar(select(ItemParticipant).where(
        ItemParticipant.item_id == item.id, ItemParticipant.user_id == user.id))
    if p is not None and p.confirmed:
        raise Conflict("supervision.err_already_following")
    # An ordinary deputy joins with the proposer's consent (or an invitation, i.e. a pending
    # participation); the committee's liaison and officials join at once.
    if role == Role.deputy and user.title != "liaison" and p is None and user.id != item.proposer_id:
        p = ItemParticipant(item_id=item.id, user_id=user.id, kind="follower", confirmed=False)
        session.add(p)
        await session.flush()
        await notify(session, item.proposer_id, "supervision.follow_request", dedupe_key=f"sup:{item.id}:fr:u{user.id}",
                     buttons=[[("supervision.btn_follow_yes", f"sp:follow_ok:{p.id}"),
                               ("supervision.btn_follow_no", f"sp:follow_no:{p.id}")]],
                     number=item.number, title=item.title, name=user.name or "-")
        return item
    if p is None:
        p = ItemParticipant(item_id=item.id, user_id=user.id, kind="follower")
        session.add(p)
    await _join(session, item, user, p)
    return item


async def decide_follow(session: AsyncSession, proposer: User, participant_id: int, yes: bool) -> SupervisionItem:
    """The proposer agrees to (or declines) a deputy's request to follow their item."""
    p = await session.get(ItemParticipant, participant_id)
    item = await session.get(SupervisionItem, p.item_id) if p is not None else None
    if item is None or item.proposer_id != proposer.id or p.kind != "follower":
        raise NotFound("supervision.err_no_item")
    if p.confirmed:
        raise Conflict("supervision.err_already_following")
    follower = await session.get(User, p.user_id)
    if not yes:
        await session.delete(p)
        await notify(session, follower, "supervision.follow_declined", dedupe_key=f"sup:{item.id}:fd:p{p.id}",
                     number=item.number)
        return item
    await _join(session, item, follower, p)
    await notify(session, follower, "supervision.follow_ok", dedupe_key=f"sup:{item.id}:fa:p{p.id}",
                 number=item.number, title=item.title)
    return item


async def _join(session: AsyncSession, item: SupervisionItem, user: User, p: ItemParticipant) -> None:
    role = _role(user)
    p.confirmed, p.confirmed_at = True, now()
    ev = await record_step(session, item, "follow", user, kind=user.title or role.value)
    await tell_participants(session, item, "supervision.followed", f"{item.id}:e{ev.id}", exclude=user.id,
                            name=user.name or "-")


# ---------------------------------------------------------------- 检e办: handle
async def accept(session: AsyncSession, actor: User, item_id: int, note: str | None = None) -> SupervisionItem:
    item = await get_item(session, item_id)
    require_handler(actor, item)
    ev = await transition(session, item, "accept", actor, note)
    item.accepted_at, item.handler_id = ev.at, actor.id
    _cancel_after_commit(session, f"sup-accept-{item.id}")
    await tell_participants(session, item, "supervision.accepted", f"{item.id}:e{ev.id}",
                            handler=actor.name or "-")
    return item


async def decline(session: AsyncSession, actor: User, item_id: int, reason: str) -> SupervisionItem:
    item = await get_item(session, item_id)
    require_handler(actor, item)
    reason = check_text(reason, 2000)
    final = item.status == "appealed"
    ev = await transition(session, item, "decline", actor, reason)
    item.decline_reason = reason
    if final:
        item.closed_at = ev.at
    _cancel_after_commit(session, f"sup-accept-{item.id}")
    if final:
        await tell_participants(session, item, "supervision.declined_final", f"{item.id}:e{ev.id}",
                                reason=reason)
    else:
        await tell_participants(session, item, "supervision.declined", f"{item.id}:e{ev.id}", reason=reason,
                                buttons=[[("supervision.btn_appeal", f"sp:appeal:{item.id}")]])
    return item


async def to_clue(session: AsyncSession, actor: User, item_id: int, note: str | None = None) -> SupervisionItem:
    item = await get_item(session, item_id)
    require_handler(actor, item)
    ev = await transition(session, item, "clue", actor, note)
    item.was_clue, item.accepted_at, item.handler_id = True, ev.at, actor.id
    _cancel_after_commit(session, f"sup-accept-{item.id}")
    await tell_participants(session, item, "supervision.clued", f"{item.id}:e{ev.id}")
    return item


async def file_case(session: AsyncSession, actor: User, item_id: int, note: str | None = None) -> SupervisionItem:
    item = await get_item(session, item_id)
    require_handler(actor, item)
    ev = await transition(session, item, "file_case", actor, note)
    item.case_filed = True
    await tell_participants(session, item, "supervision.case_filed", f"{item.id}:e{ev.id}")
    return item


async def appeal(session: AsyncSession, deputy: User, item_id: int, reason: str) -> SupervisionItem:
    """Once, to the municipal procuratorate (procurators at the city level)."""
    item = await get_item(session, item_id)
    if item.proposer_id != deputy.id:
        raise Forbidden("supervision.err_forbidden")
    if item.appealed:
        raise Conflict("supervision.err_appealed_once")
    reason = check_text(reason, 2000)
    ev = await transition(session, item, "appeal", deputy, reason)
    top = await users.city(session)
    item.appealed, item.procuratorate_id, item.procuratorate = True, top.id, top
    item.acceptance_due = workday_deadline(ev.at, ACCEPT_WORKDAYS)
    await tell_procurators(session, item, "supervision.appeal_new", f"{item.id}:e{ev.id}",
                           buttons=decision_buttons(item), reason=reason, declined=item.decline_reason or "-",
                           due=_fmt(item.acceptance_due))
    await tell_participants(session, item, "supervision.appeal_sent", f"{item.id}:e{ev.id}")
    _after_commit(session, "acceptance_due", item.acceptance_due, [item.id], f"sup-accept-{item.id}")
    return item


async def add_note(session: AsyncSession, actor: User, item_id: int, note: str) -> SupervisionItem:
    """调查记录: an investigation note on the timeline."""
    item = await get_item(session, item_id)
    require_handler(actor, item)
    if item.status not in NOTE_STATES:
        raise Conflict("supervision.err_stale", status=status_label(item.status))
    ev = await record_step(session, item, "note", actor, check_text(note))
    await tell_participants(session, item, "supervision.noted", f"{item.id}:e{ev.id}")
    return item


async def issue_suggestion(session: AsyncSession, actor: User, item_id: int, agency: str, content: str,
                           reply_due: date | None = None) -> Suggestion:
    item = await get_item(session, item_id)
    require_handler(actor, item)
    agency = check_text(agency, 128)
    content = check_text(content)
    t = now()
    if reply_due is None:
        due = months_deadline(t, REPLY_MONTHS)
    else:
        if reply_due <= to_local(t).date():
            raise DomainError("supervision.err_due_past")
        due = datetime.combine(reply_due, time(17, 30), tzinfo=TZ)
    ev = await transition(session, item, "suggest", actor, content, agency=agency, reply_due=due.isoformat())
    s = Suggestion(item_id=item.id, agency=agency, content=content, issued_by=actor.id, issued_at=t,
                   reply_due=due)
    session.add(s)
    await session.flush()
    await tell_participants(session, item, "supervision.suggested", f"{item.id}:e{ev.id}", agency=agency,
                            due=_fmt(due))
    schedule_reply_reminders(session, s)
    return s


def schedule_reply_reminders(session: AsyncSession, s: Suggestion) -> None:
    t = now()
    for before in REMIND_BEFORE:
        at = s.reply_due - before
        if at > t:
            _after_commit(session, "reply_reminder", at, [s.id, before.days], f"sup-reply-{s.id}-t{before.days}")
    _after_commit(session, "reply_overdue", s.reply_due + timedelta(days=1), [s.id, 1], f"sup-reply-{s.id}-over1")


async def file_litigation(session: AsyncSession, actor: User, item_id: int, note: str) -> SupervisionItem:
    item = await get_item(session, item_id)
    require_handler(actor, item)
    ev = await transition(session, item, "litigate", actor, check_text(note))
    item.litigation = True
    await _stop_reply_clock(session, item)
    await tell_participants(session, item, "supervision.litigated", f"{item.id}:e{ev.id}")
    return item


async def _stop_reply_clock(session: AsyncSession, item: SupervisionItem) -> None:
    s = await open_suggestion(session, item)
    if s is not None:
        for before in REMIND_BEFORE:
            _cancel_after_commit(session, f"sup-reply-{s.id}-t{before.days}")


async def record_reply(session: AsyncSession, actor: User, item_id: int, reply_date: date, content: str,
                       rectified: str) -> Suggestion:
    """检e督: the agency's reply, entered by the procurator."""
    item = await get_item(session, item_id)
    require_handler(actor, item)
    if rectified not in RECTIFIED:
        raise DomainError("supervision.err_rectified")
    if reply_date > to_local(now()).date():
        raise DomainError("supervision.err_date_future")
    content = check_text(content)
    s = await open_suggestion(session, item)
    if s is None:
        raise Conflict("supervision.err_stale", status=status_label(item.status))
    ev = await transition(session, item, "reply", actor, content, rectified=rectified,
                          reply_date=reply_date.isoformat(), suggestion=s.id)
    s.replied_at, s.reply_date, s.reply_content, s.rectified = ev.at, reply_date.isoformat(), content, rectified
    for before in REMIND_BEFORE:
        _cancel_after_commit(session, f"sup-reply-{s.id}-t{before.days}")
    if rectified in ("yes", "partly"):
        s.followup_at = months_deadline(ev.at, FOLLOWUP_MONTHS).replace(hour=9, minute=0)
        _after_commit(session, "followup", s.followup_at, [s.id], f"sup-followup-{s.id}")
    await tell_participants(session, item, "supervision.replied", f"{item.id}:e{ev.id}", agency=s.agency,
                            rectified_key=rectified, rectified=_rectified_label(rectified),
                            followup=_fmt(s.followup_at))
    return s


def _rectified_label(code: str) -> str:
    from backend.core.i18n import gettext
    return gettext("zh", f"supervision.rectified_{code}")


async def close(session: AsyncSession, actor: User, item_id: int, note: str) -> SupervisionItem:
    item = await get_item(session, item_id)
    review = item.status == "review"
    if review:
        if not is_supervisor(actor, item):
            raise Forbidden("supervision.err_supervisor_only")
    else:
        require_handler(actor, item)
    ev = await transition(session, item, "review_close" if review else "close", actor, check_text(note, 2000))
    item.closed_at = ev.at
    # A (re)closed item can be rated again; earlier ratings stay on the timeline.
    item.rating = item.rating_comment = item.rated_at = None
    await _stop_reply_clock(session, item)
    await tell_participants(session, item, "supervision.closed", f"{item.id}:e{ev.id}", note=ev.note,
                            buttons=[[("supervision.btn_rate", f"sp:rate:{item.id}")]])
    return item


async def reopen(session: AsyncSession, actor: User, item_id: int, note: str) -> SupervisionItem:
    """Supervisor's review after 不满意: back to handling."""
    item = await get_item(session, item_id)
    if not is_supervisor(actor, item):
        raise Forbidden("supervision.err_supervisor_only")
    ev = await transition(session, item, "review_reopen", actor, check_text(note, 2000))
    item.closed_at = None
    await tell_participants(session, item, "supervision.reopened", f"{item.id}:e{ev.id}", note=ev.note)
    await tell_procurators(session, item, "supervision.reopened", f"{item.id}:e{ev.id}:h", note=ev.note)
    return item


# ---------------------------------------------------------------- 代表督 / 代表评
async def urge(session: AsyncSession, deputy: User, item_id: int) -> SupervisionItem:
    """催办: tells the handler(s); once per 3 days per item."""
    item = await get_item(session, item_id)
    if _role(deputy) not in (Role.deputy, Role.admin) or not await can_view(session, deputy, item):
        raise Forbidden("supervision.err_forbidden")
    if item.status not in OPEN_STATES:
        raise Conflict("supervision.err_urge_closed")
    t = now()
    if item.last_urged_at is not None and t - item.last_urged_at < URGE_INTERVAL:
        raise Conflict("supervision.err_urge_soon", when=_fmt(item.last_urged_at + URGE_INTERVAL))
    item.last_urged_at = t
    ev = await record_step(session, item, "urge", deputy)
    targets = [await session.get(User, item.handler_id)] if item.handler_id else await procurators_of(
        session, item.procuratorate_id)
    await tell_procurators(session, item, "supervision.urged", f"{item.id}:e{ev.id}", users_=targets,
                           name=deputy.name or "-", status=status_label(item.status),
                           buttons=[[("supervision.btn_open", f"sp:open:{item.id}")]])
    await tell_participants(session, item, "supervision.urged_note", f"{item.id}:e{ev.id}", exclude=deputy.id,
                            name=deputy.name or "-")
    return item


async def rate(session: AsyncSession, deputy: User, item_id: int, rating: str, comment: str | None
               ) -> SupervisionItem:
    item = await get_item(session, item_id)
    if rating not in RATINGS:
        raise DomainError("supervision.err_rating")
    if not await _is_deputy_of(session, deputy, item):
        raise Forbidden("supervision.err_forbidden")
    if item.status == "closed" and item.rating is not None:
        raise Conflict("supervision.err_already_rated")
    comment = (comment or "").strip()[:2000] or None
    action = "rate_unsatisfied" if rating == "unsatisfied" else "rate"
    ev = await transition(session, item, action, deputy, comment, rating=rating)
    item.rating, item.rating_comment, item.rated_at = rating, comment, ev.at
    if rating == "unsatisfied":
        item.closed_at = None
        sups = [u for u in await procurators_of(session, item.procuratorate_id) if u.title in SUPERVISOR_TITLES]
        sups = sups or await chiefs_of(session, item.procuratorate_id)
        await tell_procurators(session, item, "supervision.review_needed", f"{item.id}:e{ev.id}", users_=sups,
                               comment=comment or "-",
                               buttons=[[("supervision.btn_review_reopen", f"sp:reopen:{item.id}"),
                                         ("supervision.btn_review_close", f"sp:close:{item.id}")]])
    await tell_participants(session, item, "supervision.rated", f"{item.id}:e{ev.id}",
                            rating=rating_label(rating))
    return item


async def _is_deputy_of(session: AsyncSession, user: User, item: SupervisionItem) -> bool:
    if _role(user) == Role.admin:
        return True
    return await session.scalar(select(ItemParticipant.id).where(
        ItemParticipant.item_id == item.id, ItemParticipant.user_id == user.id,
        ItemParticipant.confirmed.is_(True), ItemParticipant.kind.in_(("proposer", "cosigner")))) is not None


def status_label(status: str, lang: str = "zh") -> str:
    from backend.core.i18n import gettext
    return gettext(lang, f"supervision.status_{status}")


def rating_label(rating: str, lang: str = "zh") -> str:
    from backend.core.i18n import gettext
    return gettext(lang, f"supervision.rating_{rating}")


# ---------------------------------------------------------------- reminders (called by jobs)
async def remind_acceptance(session: AsyncSession, item_id: int) -> int:
    """At the acceptance deadline: still not decided → procurators and the chief are told."""
    item = await session.get(SupervisionItem, item_id)
    if item is None or item.status not in ("submitted", "appealed") or await _accept_reminded(session, item):
        return 0
    tag = f"{item.id}:acceptdue:{item.procuratorate_id}"
    everyone = await procurators_of(session, item.procuratorate_id)
    procs = [p for p in everyone if p.title != "chief"] or everyone
    await tell_procurators(session, item, "supervision.accept_overdue", tag, users_=procs,
                           buttons=decision_buttons(item), due=_fmt(item.acceptance_due))
    chiefs = [c for c in await chiefs_of(session, item.procuratorate_id) if c.id not in {p.id for p in procs}]
    await tell_procurators(session, item, "supervision.accept_overdue_chief", tag + ":chief", users_=chiefs,
                           due=_fmt(item.acceptance_due))
    await record_step(session, item, "remind_accept", None, procuratorate=item.procuratorate_id)
    return len(procs) + len(chiefs)


async def _accept_reminded(session: AsyncSession, item: SupervisionItem) -> bool:
    """Already reminded for the procuratorate that holds it now (an appeal moves it on)?"""
    rows = await session.scalars(select(ItemEvent).where(ItemEvent.item_id == item.id,
                                                         ItemEvent.action == "remind_accept"))
    return any((e.data or {}).get("procuratorate") == item.procuratorate_id for e in rows)


async def missing_reminders(session: AsyncSession, job_exists, t: datetime) -> list[tuple[str, datetime, list, str]]:
    """The reminder jobs open items should have but the job store lacks (the app ran without a
    scheduler — demo data, CLI — or a job-store write failed after a commit). Returns
    ``(func name, run_at, args, job id)``; a due one runs at once and its dedupe keys keep it
    from repeating anything already sent."""
    out: list[tuple[str, datetime, list, str]] = []
    waiting = await session.scalars(select(SupervisionItem).where(
        SupervisionItem.status.in_(("submitted", "appealed")), SupervisionItem.acceptance_due.is_not(None)))
    for item in waiting:
        jid = f"sup-accept-{item.id}"
        if not job_exists(jid) and not await _accept_reminded(session, item):
            out.append(("acceptance_due", max(item.acceptance_due, t), [item.id], jid))
    rows = await session.execute(select(Suggestion, SupervisionItem.status).join(
        SupervisionItem, SupervisionItem.id == Suggestion.item_id).where(Suggestion.replied_at.is_(None)))
    day_len = timedelta(days=1)
    for sug, status in rows:
        if status != "suggested":
            continue
        for before in REMIND_BEFORE:
            at, jid = sug.reply_due - before, f"sup-reply-{sug.id}-t{before.days}"
            if at > t and not job_exists(jid):
                out.append(("reply_reminder", at, [sug.id, before.days], jid))
        # the overdue chain: the day whose reminder is next (or due now)
        day = max(1, int((t - sug.reply_due) / day_len)) if t > sug.reply_due else 1
        if not (job_exists(f"sup-reply-{sug.id}-over{day}") or job_exists(f"sup-reply-{sug.id}-over{day + 1}")):
            out.append(("reply_overdue", max(sug.reply_due + day * day_len, t) if day > 1 else
                        sug.reply_due + day_len, [sug.id, day], f"sup-reply-{sug.id}-over{day}"))
    done = await session.scalars(select(Suggestion).where(Suggestion.followup_at.is_not(None)))
    for sug in done:
        jid = f"sup-followup-{sug.id}"
        if job_exists(jid):
            continue
        ran = await session.scalar(select(ItemEvent.id).where(ItemEvent.item_id == sug.item_id,
                                                              ItemEvent.action == "followup_due"))
        if ran is None:
            out.append(("followup", max(sug.followup_at, t), [sug.id], jid))
    return out


async def _suggestion_item(session: AsyncSession, sid: int) -> tuple[Suggestion, SupervisionItem] | None:
    s = await session.get(Suggestion, sid)
    if s is None or s.replied_at is not None:
        return None
    item = await session.get(SupervisionItem, s.item_id)
    if item is None or item.status != "suggested":
        return None
    return s, item


async def _handlers(session: AsyncSession, item: SupervisionItem) -> list[User]:
    if item.handler_id:
        u = await session.get(User, item.handler_id)
        if u is not None and u.active and u.jurisdiction_id == item.procuratorate_id:
            return [u]
    return await procurators_of(session, item.procuratorate_id)


async def remind_reply(session: AsyncSession, sid: int, days_before: int) -> int:
    found = await _suggestion_item(session, sid)
    if found is None:
        return 0
    s, item = found
    hs = await _handlers(session, item)
    await tell_procurators(session, item, "supervision.reply_soon", f"{item.id}:s{s.id}:t{days_before}",
                           users_=hs, agency=s.agency, due=_fmt(s.reply_due), days=days_before)
    return len(hs)


async def reply_overdue(session: AsyncSession, sid: int, day: int) -> tuple[int, datetime | None]:
    """Daily while the reply is overdue; escalates to the chief from day 7. Returns (sent, next run)."""
    found = await _suggestion_item(session, sid)
    if found is None:
        return 0, None
    s, item = found
    hs = await _handlers(session, item)
    sent = len(hs)
    await tell_procurators(session, item, "supervision.reply_overdue", f"{item.id}:s{s.id}:over{day}",
                           users_=hs, agency=s.agency, due=_fmt(s.reply_due), days=day)
    if day == 1:
        await tell_participants(session, item, "supervision.reply_overdue_deputy", f"{item.id}:s{s.id}:over",
                                agency=s.agency, due=_fmt(s.reply_due))
    if timedelta(days=day) >= ESCALATE_AFTER and s.escalated_at is None:
        chiefs = await chiefs_of(session, item.procuratorate_id)
        await tell_procurators(session, item, "supervision.escalated", f"{item.id}:s{s.id}:esc", users_=chiefs,
                               agency=s.agency, due=_fmt(s.reply_due), days=day,
                               buttons=[[("supervision.btn_open", f"sp:open:{item.id}")]])
        s.escalated_at = now()
        await record_step(session, item, "escalate", None, agency=s.agency, days=day)
        await tell_participants(session, item, "supervision.escalated_deputy", f"{item.id}:s{s.id}:esc",
                                agency=s.agency)
        sent += len(chiefs)
    return sent, s.reply_due + timedelta(days=day + 1)


async def followup_due(session: AsyncSession, sid: int) -> int:
    """回头看: three months after rectification, the handler re-inspects; deputies are told."""
    s = await session.get(Suggestion, sid)
    if s is None or s.followup_at is None:
        return 0
    item = await session.get(SupervisionItem, s.item_id)
    hs = await _handlers(session, item)
    await tell_procurators(session, item, "supervision.followup", f"{item.id}:s{s.id}:fu", users_=hs,
                           agency=s.agency, buttons=[[("supervision.btn_note", f"sp:note:{item.id}")]])
    await tell_participants(session, item, "supervision.followup_deputy", f"{item.id}:s{s.id}:fu",
                            agency=s.agency)
    await record_step(session, item, "followup_due", None, suggestion=s.id)
    return len(hs)


async def deputies_with_open_items(session: AsyncSession) -> list[int]:
    rows = await session.scalars(select(ItemParticipant.user_id).join(
        SupervisionItem, SupervisionItem.id == ItemParticipant.item_id).where(
        ItemParticipant.confirmed.is_(True), SupervisionItem.status.in_(OPEN_STATES)).distinct())
    return sorted(set(rows))


async def procurators_with_open_items(session: AsyncSession) -> list[int]:
    juris = set(await session.scalars(select(SupervisionItem.procuratorate_id).where(
        SupervisionItem.status.in_(OPEN_STATES)).distinct()))
    if not juris:
        return []
    rows = await session.scalars(select(User.id).where(User.role == Role.procurator.value,
                                                       User.active.is_(True), User.jurisdiction_id.in_(juris)))
    return sorted(set(rows))


async def count_items(session: AsyncSession) -> int:
    return await session.scalar(select(func.count(SupervisionItem.id))) or 0
