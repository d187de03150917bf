"""人大·检察智联督办 — the rules.

Deputies propose (代表提), follow and urge (代表督) and rate (代表评); procurators accept,
decline or register a clue, handle (检e办) and track the agency's rectification (检e督).

One workflow table (``FLOW``: statuses, actions, who may take them, where they lead), checked in
:func:`_check` and applied in :func:`_take` only; chat buttons and the API offer
:func:`available_actions`. Every change is recorded in ``sup_events`` with who, when and a note,
and told to everyone attached to the item in the same transaction (outbox). Deadlines and
reminders are due-date columns (``remind_at``) that one sweep reads (see "the deadline sweep").
"""
from __future__ import annotations

import calendar
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from math import ceil
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core import dates
from backend.core.clock import TZ, now, to_local
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.events import RecordChanged, publish
from backend.core.files import MAX_FILE_BYTES, StoredFile, attach, files_of
from backend.core.workflow import Transition, Workflow
from backend.core.policy import Facts, Kind, may, places_inside
from backend.core.policy import Action as Access
from backend.core.workdays import next_workday_on_or_after, workday_deadline
from backend.notify.service import notify
from backend.supervision.models import ItemCounter, ItemEvent, ItemParticipant, Suggestion, SupervisionItem
from backend.users import service as users
from backend.users.models import Jurisdiction, Level, Role, User
from backend.users.tree import Node

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

# ---------------------------------------------------------------- the workflow table
class Status(StrEnum):
    submitted = "submitted"
    accepted = "accepted"
    declined = "declined"
    appealed = "appealed"
    declined_final = "declined_final"
    clue = "clue"
    case_filed = "case_filed"
    suggested = "suggested"
    replied = "replied"
    litigation = "litigation"
    closed = "closed"
    review = "review"


class Action(StrEnum):
    """What a person may do to an item; chat buttons and the API offer exactly
    :func:`available_actions`, and every change goes through :func:`_take`."""

    accept = "accept"
    decline = "decline"
    clue = "clue"
    appeal = "appeal"
    file_case = "file_case"
    suggest = "suggest"
    reply = "reply"
    litigate = "litigate"
    close = "close"
    reopen = "reopen"
    rate = "rate"
    note = "note"
    urge = "urge"


S = Status
OPEN_STATES = {S.submitted, S.appealed, S.accepted, S.clue, S.case_filed, S.suggested, S.replied, S.litigation,
               S.review}
HANDLED_STATES = {S.accepted, S.clue, S.case_filed, S.suggested, S.replied, S.litigation, S.closed, S.review}
NOTE_STATES = {S.accepted, S.clue, S.case_filed, S.suggested, S.replied, S.litigation, S.review}
HANDLERS = {Role.procurator, Role.admin}
DEPUTIES = {Role.deputy, Role.admin}


@dataclass(frozen=True)
class Actor:
    """A person as the workflow sees them on one item: the user and how they are attached to it
    (``proposer`` / ``cosigner`` / ``follower``, confirmed; None when not attached)."""

    user: User
    kind: str | None

    @property
    def role(self) -> Role:
        return Role(self.user.role)

    @property
    def id(self) -> int:
        return self.user.id


def _handler(a: Actor, item: SupervisionItem) -> bool:
    return is_handler(a.user, item)


def _supervisor(a: Actor, item: SupervisionItem) -> bool:
    return is_supervisor(a.user, item)


def _rater(a: Actor, item: SupervisionItem) -> bool:
    return (a.role == Role.admin or a.kind in ("proposer", "cosigner")) and item.rating is None


def _attached(a: Actor, item: SupervisionItem) -> bool:
    return a.role == Role.admin or a.kind is not None


def _proposer(a: Actor, item: SupervisionItem) -> bool:
    return item.proposer_id == a.id


T = Transition
FLOW = Workflow("supervision", Status, [
    T(Action.accept, {S.submitted, S.appealed}, S.accepted, HANDLERS, _handler),
    T(Action.decline, {S.submitted}, S.declined, HANDLERS, _handler),
    T(Action.decline, {S.appealed}, S.declined_final, HANDLERS, _handler),
    T(Action.clue, {S.submitted, S.appealed}, S.clue, HANDLERS, _handler),
    T(Action.appeal, {S.declined}, S.appealed, {Role.deputy}, _proposer),
    T(Action.file_case, {S.clue}, S.case_filed, HANDLERS, _handler),
    T(Action.suggest, {S.accepted, S.case_filed, S.replied}, S.suggested, HANDLERS, _handler),
    T(Action.reply, {S.suggested}, S.replied, HANDLERS, _handler),
    T(Action.litigate, {S.accepted, S.case_filed, S.replied, S.suggested}, S.litigation, HANDLERS, _handler),
    T(Action.close, {S.accepted, S.case_filed, S.replied, S.litigation}, S.closed, HANDLERS, _handler),
    T(Action.close, {S.review}, S.closed, HANDLERS, _supervisor),  # 复查后维持办结
    T(Action.reopen, {S.review}, S.accepted, HANDLERS, _supervisor),  # 复查后重新办理
    T(Action.note, NOTE_STATES, None, HANDLERS, _handler),
    T(Action.urge, OPEN_STATES, None, DEPUTIES, _attached),
    T(Action.rate, {S.closed}, None, DEPUTIES, _rater),  # 不满意 leads on to review, see rate()
])
# The timeline's name of a step where it differs from the action (older events keep theirs).
EVENT_NAME = {(Action.close, S.review): "review_close", (Action.reopen, S.review): "review_reopen"}


async def actor(session: AsyncSession, user: User, item: SupervisionItem) -> Actor:
    kind = await session.scalar(select(ItemParticipant.kind).where(
        ItemParticipant.item_id == item.id, ItemParticipant.user_id == user.id,
        ItemParticipant.confirmed.is_(True)))
    return Actor(user, kind)


async def available_actions(session: AsyncSession, user: User, item: SupervisionItem) -> list[Action]:
    """What ``user`` may do to ``item`` now (chat buttons, the API)."""
    return [Action(a.value) for a in FLOW.available(await actor(session, user, item), item)]


async def check_action(session: AsyncSession, user: User, item: SupervisionItem, action: Action) -> None:
    """May ``user`` take ``action`` on ``item`` now? (Before a form asks for its text.)"""
    if action == Action.appeal:
        await check_appeal(session, user, item)
    elif action == Action.rate:
        await check_rating(session, user, item)
    else:
        await _check(session, user, item, action)


async def _check(session: AsyncSession, user: User, item: SupervisionItem, action: Action) -> Transition:
    """The table's answer, in this slice's words: a stale step names the current status; a review
    step of someone who is no supervisor says who may take it."""
    try:
        return FLOW.check(await actor(session, user, item), item, action)
    except Conflict as e:
        raise Conflict("supervision.err_stale", status=status_label(item.status)) from e
    except Forbidden as e:
        if item.status == S.review and is_handler(user, item):
            raise Forbidden("supervision.err_supervisor_only") from e
        raise Forbidden("supervision.err_forbidden") from e


# ---------------------------------------------------------------- domain events (the knowledge base follows)
async def _kb_changed(session: AsyncSession, item: SupervisionItem) -> None:
    await publish(session, RecordChanged("supervision", item.id))  # the knowledge base follows


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
    try:
        d = dates.parse_date(text)
    except ValueError as e:
        raise DomainError("supervision.err_date") from e
    if d is None:
        raise DomainError("supervision.err_date")
    return d


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
    return may(user, Access.read, Kind.supervision, await facts(session, item))


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
    return {n for i, n, prop, h, j, c, pr in rows if may(user, Access.read, Kind.supervision, Facts.of(
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


def require_reader(user: User) -> None:
    """Lists of items: every role but citizens (each sees what :func:`visible_query` allows)."""
    if _role(user) == Role.citizen:
        raise Forbidden("supervision.err_forbidden")


def require_stats(user: User) -> None:
    """Figures for officials, procurators and admins — and only for a place: staff without a
    jurisdiction get none (never city-wide by default; the policy's stats rule)."""
    from backend.core.policy import place_scope

    if _role(user) not in (Role.official, Role.admin, Role.procurator):
        raise Forbidden("supervision.err_forbidden")
    if _role(user) != Role.admin and place_scope(user) is None:
        raise Forbidden("common.err_out_of_jurisdiction")


def check_file_size(size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise DomainError("common.err_file_too_large")


def image_type(data: bytes) -> str | None:
    """The image type sniffed from the content (never the client's declared type); None: not an image."""
    from backend.core.files import sniff_mime

    mime = sniff_mime(data)
    return mime if mime is not None and mime.startswith("image/") else None


def is_image(data: bytes) -> bool:
    return image_type(data) is not None


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
        q = q.where(SupervisionItem.status.in_(sorted(s.value for s in OPEN_STATES)))
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


class View(StrEnum):
    """Buttons that open something (the card, the evidence, an export, a co-sign answer) rather than
    take a workflow action."""

    open = "open"
    cosign = "cosign"
    cosign_no = "cosign_no"
    evidence = "evidence"
    md = "md"
    pdf = "pdf"
    docx = "docx"
    follow_ok = "follow_ok"  # the proposer's answer to a request to follow (id: the request)
    follow_no = "follow_no"


# How a button's callback data is written is the bot layer's business: it registers a packer
# (handlers/supervision.py); services name the action and the item only.
_pack_button: Callable[[StrEnum, int], str] | None = None


def set_button_packer(pack: Callable[[StrEnum, int], str]) -> None:
    global _pack_button
    _pack_button = pack


def buttons(item: SupervisionItem, row: list[tuple[str, StrEnum]]):
    """One row of notification buttons ``(label key, action)`` for ``item`` (none without a bot)."""
    if _pack_button is None:
        return None
    return [[(label, _pack_button(what, item.id)) for label, what in row]]


def decision_buttons(item: SupervisionItem):
    return buttons(item, [("supervision.btn_accept", Action.accept), ("supervision.btn_decline", Action.decline),
                          ("supervision.btn_clue", Action.clue)])


async def display_name(session: AsyncSession, user: User | int | None, lang: str = "zh") -> str:
    """How a person is shown on cards, exports and notices: the name they gave, or — for an account
    without one (the web's placeholder "用户1003") — their role and place, never a number."""
    from backend.core.i18n import gettext

    if isinstance(user, int):
        user = await session.get(User, user)
    if user is None:
        return gettext(lang, "supervision.system")
    name = (user.name or "").strip()
    if name and not _PLACEHOLDER.fullmatch(name):
        return name
    j = await users.jurisdiction(session, user.jurisdiction_id) if user.jurisdiction_id else None
    return gettext(lang, "supervision.unnamed", place=j.name if j else "",
                   role=gettext(lang, f"common.role_{user.role}"))


_PLACEHOLDER = re.compile(r"(用户|user)?\s*#?\d+", re.IGNORECASE)


# ---------------------------------------------------------------- the one transition function
async def _take(session: AsyncSession, item: SupervisionItem, actor_: User, action: Action,
                note: str | None = None, *, to: Status | None = None, name: str | None = None,
                **data) -> ItemEvent:
    """Check ``action`` against the table, then record it: the status moves to the table's target
    (or ``to``, for a step whose outcome depends on what was entered), the timeline gets the step."""
    tr = await _check(session, actor_, item, action)
    st = Status(FLOW.status(item).value)
    target = to or (Status(tr.target.value) if tr.target is not None else st)
    name = name or EVENT_NAME.get((action, st), action.value)
    ev = ItemEvent(item_id=item.id, at=now(), actor_id=actor_.id, action=name, from_status=item.status,
                   to_status=target.value, note=note, data=data)
    item.status = target.value
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
                     buttons=buttons(item, [("supervision.btn_cosign_yes", View.cosign),
                                            ("supervision.btn_cosign_no", View.cosign_no)]),
                     number=item.number, title=item.title, proposer=await display_name(session, proposer))
    await tell_procurators(session, item, "supervision.new_item", f"{item.id}:new",
                           buttons=decision_buttons(item), area=item.area, place=item.jurisdiction.name,
                           due=_fmt(item.acceptance_due), proposer=await display_name(session, proposer))
    item.remind_at = item.acceptance_due
    await _tell_if_unstaffed(session, item, "new")
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
                     dedupe_key=f"sup:{item.id}:cosign_no:u{user.id}", number=item.number,
                     name=await display_name(session, user))
        return item
    p.confirmed, p.confirmed_at = True, now()
    ev = await record_step(session, item, "cosign", user)
    await tell_participants(session, item, "supervision.cosigned", f"{item.id}:e{ev.id}", exclude=user.id,
                            name=await display_name(session, user))
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
                     buttons=[[("supervision.btn_follow_yes", _pack_button(View.follow_ok, p.id)),
                               ("supervision.btn_follow_no", _pack_button(View.follow_no, p.id))]]
                     if _pack_button is not None else None,
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
    if p is None or item is None or item.proposer_id != proposer.id or p.kind != "follower":
        raise NotFound("supervision.err_no_item")
    if p.confirmed:
        raise Conflict("supervision.err_already_following")
    follower = await session.get(User, p.user_id)
    assert follower is not None  # a participant's user_id is a foreign key; users are deactivated, never deleted
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
async def _decided(session: AsyncSession, item: SupervisionItem, actor_: User, action: Action,
                   note: str | None) -> ItemEvent:
    """受理 / 转为线索: the item has a handler, and the acceptance deadline no longer applies."""
    ev = await _take(session, item, actor_, action, note)
    item.accepted_at, item.handler_id, item.remind_at = ev.at, actor_.id, None
    return ev


async def accept(session: AsyncSession, actor_: User, item_id: int, note: str | None = None) -> SupervisionItem:
    item = await get_item(session, item_id)
    ev = await _decided(session, item, actor_, Action.accept, note)
    await tell_participants(session, item, "supervision.accepted", f"{item.id}:e{ev.id}",
                            handler=await display_name(session, actor_))
    return item


async def decline(session: AsyncSession, actor_: User, item_id: int, reason: str) -> SupervisionItem:
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.decline)
    reason = check_text(reason, 2000)
    ev = await _take(session, item, actor_, Action.decline, reason)
    item.decline_reason, item.remind_at = reason, None
    if item.status == S.declined_final:
        item.closed_at = ev.at
        await tell_participants(session, item, "supervision.declined_final", f"{item.id}:e{ev.id}",
                                reason=reason)
    else:
        await tell_participants(session, item, "supervision.declined", f"{item.id}:e{ev.id}", reason=reason,
                                buttons=buttons(item, [("supervision.btn_appeal", Action.appeal)]))
    return item


async def to_clue(session: AsyncSession, actor_: User, item_id: int, note: str | None = None) -> SupervisionItem:
    item = await get_item(session, item_id)
    ev = await _decided(session, item, actor_, Action.clue, note)
    item.was_clue = True
    await tell_participants(session, item, "supervision.clued", f"{item.id}:e{ev.id}")
    return item


async def file_case(session: AsyncSession, actor_: User, item_id: int, note: str | None = None) -> SupervisionItem:
    item = await get_item(session, item_id)
    ev = await _take(session, item, actor_, Action.file_case, note)
    item.case_filed = True
    await tell_participants(session, item, "supervision.case_filed", f"{item.id}:e{ev.id}")
    return item


async def check_appeal(session: AsyncSession, deputy: User, item: SupervisionItem) -> None:
    """Once, by the proposer, after a first decline."""
    if item.appealed and item.proposer_id == deputy.id:
        raise Conflict("supervision.err_appealed_once")
    await _check(session, deputy, item, Action.appeal)


async def appeal(session: AsyncSession, deputy: User, item_id: int, reason: str) -> SupervisionItem:
    """To the municipal procuratorate (procurators at the city level). If nobody is registered
    there, the admins and the county's chief are told at once (see :func:`_tell_if_unstaffed`)."""
    item = await get_item(session, item_id)
    await check_appeal(session, deputy, item)
    reason = check_text(reason, 2000)
    ev = await _take(session, item, deputy, Action.appeal, reason)
    top = await users.city(session)
    item.appealed, item.procuratorate_id, item.procuratorate = True, top.id, top
    item.acceptance_due = item.remind_at = workday_deadline(ev.at, ACCEPT_WORKDAYS)
    await tell_procurators(session, item, "supervision.appeal_new", f"{item.id}:e{ev.id}",
                           buttons=decision_buttons(item), reason=reason, declined=item.decline_reason or "-",
                           due=_fmt(item.acceptance_due))
    if await _tell_if_unstaffed(session, item, f"e{ev.id}"):
        await tell_participants(session, item, "supervision.appeal_sent_unstaffed", f"{item.id}:e{ev.id}",
                                procuratorate=item.procuratorate.name)
    else:
        await tell_participants(session, item, "supervision.appeal_sent", f"{item.id}:e{ev.id}")
    return item


async def add_note(session: AsyncSession, actor_: User, item_id: int, note: str) -> SupervisionItem:
    """调查记录: an investigation note on the timeline."""
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.note)
    ev = await _take(session, item, actor_, Action.note, check_text(note))
    await tell_participants(session, item, "supervision.noted", f"{item.id}:e{ev.id}")
    return item


async def issue_suggestion(session: AsyncSession, actor_: User, item_id: int, agency: str, content: str,
                           reply_due: date | None = None) -> Suggestion:
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.suggest)
    agency = check_text(agency, 128)
    content = check_text(content)
    t = now()
    if reply_due is None:
        due = months_deadline(t, REPLY_MONTHS)
    else:
        if reply_due <= to_local(t).date():
            raise DomainError("supervision.err_due_past")
        due = datetime.combine(reply_due, time(17, 30), tzinfo=TZ)
    ev = await _take(session, item, actor_, Action.suggest, content, agency=agency, reply_due=due.isoformat())
    s = Suggestion(item_id=item.id, agency=agency, content=content, issued_by=actor_.id, issued_at=t,
                   reply_due=due, remind_at=next_reply_reminder(due, t))
    session.add(s)
    await session.flush()
    await tell_participants(session, item, "supervision.suggested", f"{item.id}:e{ev.id}", agency=agency,
                            due=_fmt(due))
    return s


async def file_litigation(session: AsyncSession, actor_: User, item_id: int, note: str) -> SupervisionItem:
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.litigate)
    ev = await _take(session, item, actor_, Action.litigate, check_text(note))
    item.litigation = True
    await _stop_reply_clock(session, item)
    await tell_participants(session, item, "supervision.litigated", f"{item.id}:e{ev.id}")
    return item


async def _stop_reply_clock(session: AsyncSession, item: SupervisionItem) -> None:
    s = await open_suggestion(session, item)
    if s is not None:
        s.remind_at = None


async def record_reply(session: AsyncSession, actor_: User, item_id: int, reply_date: date, content: str,
                       rectified: str) -> Suggestion:
    """检e督: the agency's reply, entered by the procurator."""
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.reply)
    if rectified not in RECTIFIED:
        raise DomainError("supervision.err_rectified")
    check_reply_date(reply_date)
    content = check_text(content)
    s = await open_suggestion(session, item)
    if s is None:
        raise Conflict("supervision.err_stale", status=status_label(item.status))
    ev = await _take(session, item, actor_, Action.reply, content, rectified=rectified,
                     reply_date=reply_date.isoformat(), suggestion=s.id)
    s.replied_at, s.reply_date, s.reply_content, s.rectified = ev.at, reply_date.isoformat(), content, rectified
    s.remind_at = None
    if rectified in ("yes", "partly"):
        s.followup_at = s.remind_at = months_deadline(ev.at, FOLLOWUP_MONTHS).replace(hour=9, minute=0)
    await tell_participants(session, item, "supervision.replied", f"{item.id}:e{ev.id}", agency=s.agency,
                            rectified_key=rectified, rectified=_rectified_label(rectified),
                            followup=_fmt(s.followup_at))
    return s


def check_reply_date(d: date) -> date:
    if d > to_local(now()).date():
        raise DomainError("supervision.err_date_future")
    return d


def _rectified_label(code: str) -> str:
    from backend.core.i18n import gettext
    return gettext("zh", f"supervision.rectified_{code}")


async def close(session: AsyncSession, actor_: User, item_id: int, note: str) -> SupervisionItem:
    """办结 (or, in review after 不满意, 维持办结 by a supervisor). The item's current result is this
    note; an earlier rating stays on the timeline only and the item can be rated again."""
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.close)
    ev = await _take(session, item, actor_, Action.close, check_text(note, 2000))
    item.closed_at = ev.at
    item.rating = item.rating_comment = item.rated_at = None
    await _stop_reply_clock(session, item)
    await tell_participants(session, item, "supervision.closed", f"{item.id}:e{ev.id}", note=ev.note,
                            buttons=buttons(item, [("supervision.btn_rate", Action.rate)]))
    return item


async def reopen(session: AsyncSession, actor_: User, item_id: int, note: str) -> SupervisionItem:
    """Supervisor's review after 不满意: back to handling; the old result and rating are history."""
    item = await get_item(session, item_id)
    await _check(session, actor_, item, Action.reopen)
    ev = await _take(session, item, actor_, Action.reopen, check_text(note, 2000))
    item.closed_at = None
    item.rating = item.rating_comment = item.rated_at = None
    await tell_participants(session, item, "supervision.reopened", f"{item.id}:e{ev.id}", note=ev.note)
    await tell_procurators(session, item, "supervision.reopened", f"{item.id}:e{ev.id}:h", note=ev.note)
    return item


async def current_result(session: AsyncSession, item: SupervisionItem) -> str | None:
    """The note of the close that stands now (None while the item is not closed)."""
    if item.status != S.closed:
        return None
    return await session.scalar(select(ItemEvent.note).where(
        ItemEvent.item_id == item.id, ItemEvent.action.in_(("close", "review_close")))
        .order_by(ItemEvent.at.desc(), ItemEvent.id.desc()).limit(1))


# ---------------------------------------------------------------- 代表督 / 代表评
async def urge(session: AsyncSession, deputy: User, item_id: int) -> SupervisionItem:
    """催办: tells the handler(s); once per 3 days per item."""
    item = await get_item(session, item_id)
    if _role(deputy) not in DEPUTIES or not await can_view(session, deputy, item):
        raise Forbidden("supervision.err_forbidden")
    if item.status not in OPEN_STATES:
        raise Conflict("supervision.err_urge_closed")
    await _check(session, deputy, item, Action.urge)
    t = now()
    if item.last_urged_at is not None and t - item.last_urged_at < URGE_INTERVAL:
        raise Conflict("supervision.err_urge_soon", when=_fmt(item.last_urged_at + URGE_INTERVAL))
    item.last_urged_at = t
    ev = await _take(session, item, deputy, Action.urge)
    handler = await session.get(User, item.handler_id) if item.handler_id else None
    targets = [handler] if handler is not None else await procurators_of(session, item.procuratorate_id)
    name = await display_name(session, deputy)
    await tell_procurators(session, item, "supervision.urged", f"{item.id}:e{ev.id}", users_=targets,
                           name=name, status=status_label(item.status),
                           buttons=buttons(item, [("supervision.btn_open", View.open)]))
    await tell_participants(session, item, "supervision.urged_note", f"{item.id}:e{ev.id}", exclude=deputy.id,
                            name=name)
    return item


async def check_rating(session: AsyncSession, deputy: User, item: SupervisionItem, rating: str | None = None
                       ) -> None:
    """May ``deputy`` rate ``item`` now (and is ``rating`` one of the three)? The rating buttons
    are offered only after this."""
    if rating is not None and rating not in RATINGS:
        raise DomainError("supervision.err_rating")
    if item.status == S.closed and item.rating is not None and await _is_deputy_of(session, deputy, item):
        raise Conflict("supervision.err_already_rated")
    await _check(session, deputy, item, Action.rate)


async def rate(session: AsyncSession, deputy: User, item_id: int, rating: str, comment: str | None
               ) -> SupervisionItem:
    item = await get_item(session, item_id)
    await check_rating(session, deputy, item, rating)
    comment = (comment or "").strip()[:2000] or None
    unsatisfied = rating == "unsatisfied"
    ev = await _take(session, item, deputy, Action.rate, comment, to=S.review if unsatisfied else None,
                     name="rate_unsatisfied" if unsatisfied else None, rating=rating)
    item.rating, item.rating_comment, item.rated_at = rating, comment, ev.at
    if unsatisfied:
        item.closed_at = None
        sups = [u for u in await procurators_of(session, item.procuratorate_id) if u.title in SUPERVISOR_TITLES]
        sups = sups or await chiefs_of(session, item.procuratorate_id)
        await tell_procurators(session, item, "supervision.review_needed", f"{item.id}:e{ev.id}", users_=sups,
                               comment=comment or "-",
                               buttons=buttons(item, [("supervision.btn_review_reopen", Action.reopen),
                                                      ("supervision.btn_review_close", Action.close)]))
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


# ---------------------------------------------------------------- the deadline sweep
# Each row carries ``remind_at``, the moment its next reminder is due; the sweep (one interval job,
# scheduler/jobs/supervision.py) claims the rows that are due and calls :func:`sweep_item` /
# :func:`sweep_suggestion`, which send the ONE reminder that is current at ``t`` (after downtime:
# "已超期 3 天", never the stale "还有 1 天") and set the next moment. Dedupe keys make a second run a no-op.
DAY = timedelta(days=1)


def due_items(t: datetime):
    return select(SupervisionItem).where(SupervisionItem.remind_at <= t).order_by(SupervisionItem.remind_at)


def due_suggestions(t: datetime):
    return select(Suggestion).where(Suggestion.remind_at <= t).order_by(Suggestion.remind_at)


def next_reply_reminder(due: datetime, t: datetime) -> datetime:
    """The first reminder moment after ``t``: T−7, T−1, then each day after the deadline."""
    for at in [due - b for b in REMIND_BEFORE] + [due + DAY]:
        if at > t:
            return at
    return due + DAY * (int((t - due) / DAY) + 1)


async def sweep_suggestions(session: AsyncSession, due: list[Suggestion], t: datetime) -> int:
    """:func:`sweep_suggestion` for a batch of claimed rows; their items and handlers are read in
    two queries and held here (the session's identity map keeps only what is referenced)."""
    items = {i.id: i for i in await session.scalars(select(SupervisionItem).where(
        SupervisionItem.id.in_({s.item_id for s in due})))} if due else {}
    handlers = list(await session.scalars(select(User).where(
        User.id.in_({i.handler_id for i in items.values() if i.handler_id})))) if items else []
    sent = 0
    # Each row's changes are written at the end, not before every query of the next row; every
    # dedupe key used here is per suggestion, so no row needs another row's unflushed outbox entry.
    with session.no_autoflush:
        for s in due:
            sent += await sweep_suggestion(session, s, t)
    del handlers  # held until the batch is done
    return sent


async def sweep_item(session: AsyncSession, item: SupervisionItem, t: datetime) -> int:
    item.remind_at = None
    if item.status not in (S.submitted, S.appealed):
        return 0
    return await remind_acceptance(session, item)


async def sweep_suggestion(session: AsyncSession, s: Suggestion, t: datetime) -> int:
    s.remind_at = None
    item = await session.get(SupervisionItem, s.item_id)
    if item is None:
        return 0
    if s.replied_at is not None:
        return await followup_due(session, s, item) if s.followup_at is not None else 0
    if item.status != S.suggested:
        return 0
    s.remind_at = next_reply_reminder(s.reply_due, t)
    if t < s.reply_due:
        return await remind_reply(session, s, item, ceil((s.reply_due - t) / DAY))
    if t >= s.reply_due + DAY:
        return await reply_overdue(session, s, item, int((t - s.reply_due) / DAY))
    return 0


async def remind_acceptance(session: AsyncSession, item: SupervisionItem) -> int:
    """At the acceptance deadline: still not decided → procurators and the chief are told; with
    nobody registered at the procuratorate that holds it, the admins and the county's chief."""
    if await _accept_reminded(session, item):
        return 0
    tag = f"{item.id}:acceptdue:{item.procuratorate_id}"
    everyone = await procurators_of(session, item.procuratorate_id)
    if not everyone:
        return await _escalate_unstaffed(session, item, tag)
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
                                                         ItemEvent.action.in_(("remind_accept", "escalate"))))
    return any((e.data or {}).get("procuratorate") == item.procuratorate_id for e in rows)


# ---------------------------------------------------------------- nobody to receive it
async def _responsible(session: AsyncSession, item: SupervisionItem) -> list[User]:
    """Who must act when the procuratorate holding ``item`` has nobody registered: every admin and
    the chief procurator of the item's county."""
    admins = await users.users_with_role(session, Role.admin)
    chiefs = await procurators_of(session, item.county_id, "chief")
    out = {u.id: u for u in admins + chiefs}
    return list(out.values())


async def _tell_if_unstaffed(session: AsyncSession, item: SupervisionItem, tag: str) -> bool:
    """Nobody registered where ``item`` now waits: the admins and the county's chief are told at once
    (the deadline sweep escalates if it is still undecided). Returns whether that was the case."""
    if await procurators_of(session, item.procuratorate_id):
        return False
    await tell_procurators(session, item, "supervision.unstaffed", f"{item.id}:unstaffed:{tag}",
                           users_=await _responsible(session, item), procuratorate=item.procuratorate.name,
                           due=_fmt(item.acceptance_due), buttons=buttons(item, [("supervision.btn_open", View.open)]))
    await record_step(session, item, "unstaffed", None, procuratorate=item.procuratorate_id)
    return True


async def _escalate_unstaffed(session: AsyncSession, item: SupervisionItem, tag: str) -> int:
    targets = await _responsible(session, item)
    await tell_procurators(session, item, "supervision.unstaffed_overdue", tag + ":esc", users_=targets,
                           procuratorate=item.procuratorate.name, due=_fmt(item.acceptance_due),
                           buttons=buttons(item, [("supervision.btn_open", View.open)]))
    await record_step(session, item, "escalate", None, procuratorate=item.procuratorate_id)
    await tell_participants(session, item, "supervision.unstaffed_deputy", tag + ":esc",
                            procuratorate=item.procuratorate.name)
    return len(targets)


async def _handlers(session: AsyncSession, item: SupervisionItem) -> list[User]:
    if item.handler_id:
        u = await session.get(User, item.handler_id)
        if u is not None and u.active and u.jurisdiction_id == item.procuratorate_id:
            return [u]
    return await procurators_of(session, item.procuratorate_id)


async def remind_reply(session: AsyncSession, s: Suggestion, item: SupervisionItem, days: int) -> int:
    hs = await _handlers(session, item)
    await tell_procurators(session, item, "supervision.reply_soon", f"{item.id}:s{s.id}:t{days}",
                           users_=hs, agency=s.agency, due=_fmt(s.reply_due), days=days)
    return len(hs)


async def reply_overdue(session: AsyncSession, s: Suggestion, item: SupervisionItem, day: int) -> int:
    """Daily while the reply is overdue; escalates to the chief from day 7."""
    hs = await _handlers(session, item)
    sent = len(hs)
    await tell_procurators(session, item, "supervision.reply_overdue", f"{item.id}:s{s.id}:over{day}",
                           users_=hs, agency=s.agency, due=_fmt(s.reply_due), days=day)
    await tell_participants(session, item, "supervision.reply_overdue_deputy", f"{item.id}:s{s.id}:over",
                            agency=s.agency, due=_fmt(s.reply_due))
    if timedelta(days=day) >= ESCALATE_AFTER and s.escalated_at is None:
        chiefs = await chiefs_of(session, item.procuratorate_id)
        await tell_procurators(session, item, "supervision.escalated", f"{item.id}:s{s.id}:esc", users_=chiefs,
                               agency=s.agency, due=_fmt(s.reply_due), days=day,
                               buttons=buttons(item, [("supervision.btn_open", View.open)]))
        s.escalated_at = now()
        await record_step(session, item, "escalate", None, agency=s.agency, days=day)
        await tell_participants(session, item, "supervision.escalated_deputy", f"{item.id}:s{s.id}:esc",
                                agency=s.agency)
        sent += len(chiefs)
    return sent


async def followup_due(session: AsyncSession, s: Suggestion, item: SupervisionItem) -> int:
    """回头看: three months after rectification, the handler re-inspects; deputies are told."""
    hs = await _handlers(session, item)
    await tell_procurators(session, item, "supervision.followup", f"{item.id}:s{s.id}:fu", users_=hs,
                           agency=s.agency, buttons=buttons(item, [("supervision.btn_note", Action.note)]))
    await tell_participants(session, item, "supervision.followup_deputy", f"{item.id}:s{s.id}:fu",
                            agency=s.agency)
    await record_step(session, item, "followup_due", None, suggestion=s.id)
    return len(hs)


# ---------------------------------------------------------------- evidence
async def evidence(session: AsyncSession, user: User, item: SupervisionItem) -> list[StoredFile]:
    """The files attached to ``item``, for someone who may open the item (the read is audited)."""
    await require_view(session, user, item)
    files = await files_of(session, OWNER_KIND, item.id)
    await users.audit(session, f"user:{user.id}", "sup.evidence_read", f"{OWNER_KIND}:{item.id}",
                      files=[f.id for f in files])
    return files


async def evidence_file(session: AsyncSession, user: User, item: SupervisionItem, n: int) -> StoredFile:
    """The ``n``-th file (1-based) of ``item``."""
    files = await evidence(session, user, item)
    if not 1 <= n <= len(files):
        raise NotFound("supervision.err_no_evidence")
    return files[n - 1]


async def deputies_with_open_items(session: AsyncSession) -> list[int]:
    rows = await session.scalars(select(ItemParticipant.user_id).join(
        SupervisionItem, SupervisionItem.id == ItemParticipant.item_id).where(
        ItemParticipant.confirmed.is_(True), SupervisionItem.status.in_(sorted(s.value for s in OPEN_STATES))).distinct())
    return sorted(set(rows))


async def procurators_with_open_items(session: AsyncSession) -> list[int]:
    juris = set(await session.scalars(select(SupervisionItem.procuratorate_id).where(
        SupervisionItem.status.in_(sorted(s.value for s in OPEN_STATES))).distinct()))
    if not juris:
        return []
    rows = await session.scalars(select(User.id).where(User.role == Role.procurator.value,
                                                       User.active.is_(True), User.jurisdiction_id.in_(juris)))
    return sorted(set(rows))


async def count_items(session: AsyncSession) -> int:
    return await session.scalar(select(func.count(SupervisionItem.id))) or 0
