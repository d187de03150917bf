"""Dispute mediation rules (五环智控): intake, routing, the state machine, deadlines,
ratings and early warning. Plain arguments + AsyncSession; never imports aiogram."""
from __future__ import annotations

import logging
import re
from datetime import datetime, time, timedelta, timezone
from typing import Literal, Protocol, overload

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core import dates
from backend.core import files as filestore
from backend.core.clock import fmt_local, now, to_local
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.events import RecordChanged, publish
from backend.core.i18n import gettext
from backend.core.masking import mask_party, mask_personal, mask_phone, normalize_phone
from backend.core.policy import Action as Access
from backend.core.policy import Facts, Kind, may, places_inside
from backend.core.storage import ObjectStore
from backend.core import workdays
from backend.core.workdays import calendar_deadline, workday_deadline
from backend.disputes import config, risk, routing, stats, workflow
from backend.disputes.models import OPEN_STATUSES, Dispute, DisputeCounter, DisputeEvent, DisputeIntake, Status
from backend.disputes.workflow import Action
from backend.notify.service import notify
from backend.users import service as users
from backend.users.models import Jurisdiction, Level, Role, User
from backend.users.tree import Place

log = logging.getLogger("hehe.disputes")

MIN_DESCRIPTION, MAX_DESCRIPTION, MAX_FILES = 10, 2000, 9
MAX_NOTE = 1000
RATINGS = tuple(r.value for r in workflow.Rating)
REFERRALS = tuple(r.value for r in workflow.Referral)
S = Status
REFERRAL_ZH = {"litigation": "诉讼", "arbitration": "仲裁", "administrative": "行政处理"}
# ---------------------------------------------------------------- the state machine
# The table is backend/disputes/workflow.py; this is the one place a status changes.
async def _transition(session: AsyncSession, d: Dispute, action: Action, actor: User | None,
                      note: str | None = None, at: datetime | None = None, *, system: bool = False) -> DisputeEvent:
    """Check the workflow table (as ``actor``, or as the system), then record who/when (default:
    now)/why. ``system``: the action follows from one the actor took (archive after a rating)."""
    current = Status(d.status) if d.status else None
    if action == Action.create:
        new = Status.new
    else:
        t = workflow.check(None if system else actor, d, action)
        assert current is not None  # check() has read the case's status
        new = t.target or current
    ev = DisputeEvent(dispute_id=d.id, at=at or now(), actor_id=actor.id if actor else None, action=action.value,
                      from_status=current.value if current and action != Action.create else None,
                      to_status=new.value, note=note)
    d.status = new.value
    d.updated_at = ev.at
    session.add(ev)
    await _kb_enqueue(session, d)
    return ev


async def _kb_enqueue(session: AsyncSession, d: Dispute) -> None:
    """Tell whoever follows cases (the knowledge base) that this one changed, in this transaction."""
    await publish(session, RecordChanged("dispute", d.id))


# ---------------------------------------------------------------- validation
def validate_description(text: str | None) -> str:
    s = (text or "").strip()
    if len(s) < MIN_DESCRIPTION:
        raise DomainError("disputes.err_description_short", min=MIN_DESCRIPTION)
    if len(s) > MAX_DESCRIPTION:
        raise DomainError("disputes.err_description_long", max=MAX_DESCRIPTION, n=len(s))
    return s


def description_or_none(text: str | None) -> str | None:
    """A complaint's text as the description, if it is a valid one (else the wizard asks)."""
    try:
        return validate_description(text)
    except DomainError:
        return None


def check_upload(files_so_far: int, size: int) -> None:
    """Before downloading a file: room for one more, and not too big."""
    if files_so_far >= MAX_FILES:
        raise DomainError("disputes.err_too_many_files", max=MAX_FILES)
    if size > filestore.MAX_FILE_BYTES:
        raise DomainError("disputes.err_file_big", mb=filestore.MAX_FILE_BYTES // 1024 // 1024)


def validate_phone(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    p = normalize_phone(raw)
    if p is None:
        raise DomainError("disputes.err_phone")
    return p


def validate_category(code: str) -> str:
    if code not in config.get().categories:
        raise DomainError("disputes.err_category")
    return code


sniff_mime = filestore.sniff_mime  # one sniffer for every upload (backend/core/files.py)


async def keep_evidence(store: ObjectStore, data: bytes, *, photo: bool) -> dict:
    """Check and keep an uploaded file's bytes (content-addressed) during intake; the
    StoredFile row is only written with the case."""
    if len(data) > filestore.MAX_FILE_BYTES:
        raise DomainError("disputes.err_file_big", mb=filestore.MAX_FILE_BYTES // 1024 // 1024)
    mime = sniff_mime(data)
    if mime is None or (photo and not mime.startswith("image/")):
        raise DomainError("disputes.err_not_image")
    sha = await filestore.keep_blob(store, data)  # written again: the orphan sweep (scheduler/jobs/files.py) waits
    return {"sha256": sha, "mime": mime, "size": len(data)}


# ---------------------------------------------------------------- intake
async def next_number(session: AsyncSession, county: Place, at: datetime) -> str:
    """TZ-<county code>-YYYYMMDD-NNNN from an atomic counter (INSERT … ON CONFLICT DO UPDATE …
    RETURNING): concurrent intakes, even the county's first two of a day, never collide."""
    day = to_local(at).strftime("%Y%m%d")
    code = county.code or f"C{county.id}"
    key = f"{code}-{day}"
    stmt = _insert(session)(DisputeCounter).values(key=key, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": DisputeCounter.value + 1})
    n = await session.scalar(stmt.returning(DisputeCounter.value))
    return f"TZ-{code}-{day}-{n:04d}"


def _insert(session: AsyncSession):
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return pg_insert if dialect == "postgresql" else sqlite_insert


async def create_case(
    session: AsyncSession, *, citizen: User | None, category: str, description: str, place: Place,
    store: ObjectStore | None = None, address: str | None = None, lat: float | None = None,
    lon: float | None = None, other_party: str | None = None, phone: str | None = None,
    evidence: list[dict] | None = None, source: str = "chat", contact_name: str | None = None,
    contact_email: str | None = None, media_url: str | None = None, intake_key: str | None = None,
) -> Dispute:
    """Write the whole case in the caller's transaction: case, timeline, files, routing,
    notifications, risk. Raises before writing anything if an input is invalid."""
    category = validate_category(category)
    description = validate_description(description)
    phone = validate_phone(phone)
    evidence = evidence or []
    if len(evidence) > MAX_FILES:
        raise DomainError("disputes.err_too_many_files", max=MAX_FILES)
    other_party = (other_party or "").strip()[:255] or None
    if intake_key is not None:
        earlier = await _claim_intake(session, intake_key)
        if earlier is not None:
            return earlier  # the same draft confirmed twice: one case
    chain = await users.ancestors(session, place)
    county = next((j for j in chain if j.level == Level.county.value), None)
    if county is None:
        raise DomainError("disputes.err_place")
    township = next((j for j in chain if j.level == Level.township.value), None)
    unit, mediators = await routing.route(session, place, category)
    t = now()
    d = Dispute(
        number=await next_number(session, county, t), category=category, description=description,
        source=source, citizen_id=citizen.id if citizen else None, place_id=place.id, county_id=county.id,
        township_id=township.id if township else None, unit_id=unit.id, address=(address or "")[:255] or None,
        lat=lat, lon=lon, other_party=other_party, parties=risk.count_parties(description, other_party),
        phone=phone, contact_name=contact_name, contact_email=contact_email, media_url=media_url,
        status=Status.new.value,
        month=to_local(t).strftime("%Y-%m"), created_at=t, updated_at=t,
        escalated_county=1 if routing.LEVEL_INDEX[unit.level] <= routing.LEVEL_INDEX["county"] else 0,
    )
    d.unit, d.place = await users.jurisdiction_row(session, unit), await users.jurisdiction_row(session, place)
    # Deadline and risk grade go into the INSERT itself (not two UPDATEs after it); what needs
    # the case's id — the deadline's jobs, a red alert — follows the flush.
    _accept_deadline(d, unit)
    turned_red = await refresh_risk(session, d, alert=False)
    session.add(d)
    await session.flush()
    await _transition(session, d, Action.create, citizen, note=source, at=t)
    for ev in evidence:
        blob = await filestore.read_blob(store, ev["sha256"]) if store is not None else None
        if store is None or blob is None:
            raise DomainError("disputes.err_file_lost")
        await filestore.store_file(session, store, blob, mime=ev.get("mime", "image/jpeg"),
                                   filename=ev.get("name"), owner_kind="dispute", owner_id=d.id,
                                   uploaded_by=citizen.id if citizen else None)
    await stats.apply_change(session, None, stats.contribution(d))
    await _notify_unit(session, d, mediators, "disputes.n_new_case")
    if turned_red:
        await alert_red(session, d)
    await users.audit(session, f"user:{citizen.id}" if citizen else source, "dispute.created",
                      f"dispute:{d.id}", number=d.number)
    if intake_key is not None:
        await session.execute(update(DisputeIntake).where(DisputeIntake.key == intake_key).values(dispute_id=d.id))
    return d


async def _claim_intake(session: AsyncSession, key: str) -> Dispute | None:
    """Claim the draft's key (INSERT … ON CONFLICT DO NOTHING): None if this confirm is the
    first, else the case the first one created. A concurrent first confirm holds the key's row
    until it commits, so the second waits for it and then finds its case."""
    claimed: CursorResult = await session.execute(  # type: ignore[assignment]  # an INSERT's result has rowcount
        _insert(session)(DisputeIntake).values(key=key, created_at=now()).on_conflict_do_nothing(index_elements=["key"]))
    if claimed.rowcount:
        return None
    case_id = await session.scalar(select(DisputeIntake.dispute_id).where(DisputeIntake.key == key))
    d = await session.get(Dispute, case_id) if case_id is not None else None
    if d is None:
        raise Conflict("disputes.err_already_submitted")
    return d


# ---------------------------------------------------------------- authorization (backend/core/policy.py)
def facts(d: Dispute) -> Facts:
    """A case as the access policy sees it: its citizen, its mediator, its handling unit and place."""
    return Facts.of(owners=d.citizen_id, staff=d.mediator_id, unit=d.unit, place=d.place)


async def visible_numbers(session: AsyncSession, user: User) -> set[str]:
    """Numbers of every case ``user`` may open — what /ask and citation cards may show them.
    The same facts and the same table as :func:`can_view`, read in one query."""
    places = await users.tree.current(session)
    q = select(Dispute.number, Dispute.citizen_id, Dispute.mediator_id, Dispute.unit_id, Dispute.place_id)
    inside = places_inside(user, places.nodes)
    if inside is not None:  # only rows that could pass; may() decides
        q = q.where(or_(Dispute.citizen_id == user.id, Dispute.mediator_id == user.id,
                        Dispute.unit_id.in_(inside), Dispute.place_id.in_(inside)))
    rows = await session.execute(q)
    return {n for n, c, m, u, p in rows if may(user, Access.read, Kind.dispute, Facts.of(
        owners=c, staff=m, unit=places.get(u), place=places.get(p)))}


def can_view(user: User, d: Dispute) -> bool:
    return may(user, Access.read, Kind.dispute, facts(d))


def sees_risk(user: User | None, d: Dispute) -> bool:
    """The risk grade is an internal assessment: staff who may view the case see it, the
    reporting citizen never does."""
    return user is not None and Role(user.role) in (Role.mediator, Role.official, Role.admin) and can_view(user, d)


def can_handle(user: User, d: Dispute) -> bool:
    return may(user, Access.handle, Kind.dispute, facts(d))


async def get_case(session: AsyncSession, case_id: int, user: User | None = None) -> Dispute:
    """The case, or 404 — also when it exists but ``user`` may not see it."""
    d = await session.get(Dispute, case_id)
    if d is None or (user is not None and not can_view(user, d)):
        raise NotFound("disputes.err_not_found")
    return d


async def get_by_number(session: AsyncSession, number: str) -> Dispute | None:
    return await session.scalar(select(Dispute).where(Dispute.number == number))


def text_for(user: User | None, d: Dispute, text: str | None) -> str:
    """Free text as this viewer may see it: the reporter and the handling mediators see it
    as written; everyone else (officials, the API for other roles) gets phones, ID numbers
    and minors' names masked."""
    if text is None:
        return ""
    if user is not None and may(user, Access.personal, Kind.dispute, facts(d)):
        return text
    return mask_personal(text)


def party_for(user: User | None, d: Dispute) -> str | None:
    """The other party as this viewer may see it: names and numbers masked for people who do not
    own the case (officials)."""
    if d.other_party is None or (user is not None and may(user, Access.personal, Kind.dispute, facts(d))):
        return d.other_party
    return mask_party(d.other_party)


def phone_for(user: User | None, d: Dispute) -> str:
    """The phone as this viewer may see it: mediators handling the case see it whole."""
    if user is not None and can_handle(user, d):
        return d.phone or "-"
    return mask_phone(d.phone)


# ---------------------------------------------------------------- mediator actions
class Buttons(Protocol):
    """Chat buttons of a notification, built by the bot layer (CallbackData factories):
    the service says which actions, never how a button's data is spelled."""

    def case(self, d: Dispute, actions: list[Action]) -> list[list[tuple[str, str]]]: ...

    def rating(self, d: Dispute) -> list[list[tuple[str, str]]]: ...


_buttons: Buttons | None = None


def use_buttons(factory: Buttons | None) -> None:
    """Wired by the chat layer (handlers/disputes.py) at start-up; without it (CLI, API only)
    notifications go out without buttons."""
    global _buttons
    _buttons = factory


def available_actions(user: User, d: Dispute) -> list[Action]:
    return workflow.available_actions(user, d)


def check_action(user: User, d: Dispute, action: Action) -> None:
    """Refuse a button the workflow table does not allow this person now (before any prompt)."""
    workflow.check(user, d, action)
    if action == Action.close and d.closed_at is not None:
        raise Conflict("disputes.err_already_closed", number=d.number)


def _case_buttons(d: Dispute, user: User | None):
    acts = workflow.available_actions(user, d) if user is not None else []
    return _buttons.case(d, acts) if _buttons is not None and acts else None


async def _notify_unit(session: AsyncSession, d: Dispute, mediators: list[User], key: str, **params) -> None:
    cat = config.get().category(d.category)
    for m in mediators:
        await notify(session, m, key, buttons=_case_buttons(d, m),
                     dedupe_key=f"d{d.id}-{key}-{d.unit_id}-{m.id}-{d.updated_at.timestamp():.0f}",
                     number=d.number, category=cat.zh, place=d.place.name, unit=d.unit.name,
                     description=d.description[:200], **params)


async def _notify_citizen(session: AsyncSession, d: Dispute, key: str, *, buttons=None,
                          dedupe: str | None = None, **params) -> None:
    if d.citizen_id is None:
        return
    await notify(session, d.citizen_id, key, buttons=buttons, dedupe_key=dedupe, number=d.number, **params)


@overload
def _clean_note(note: str | None, required: Literal[True], key: str = ...) -> str: ...
@overload
def _clean_note(note: str | None, required: bool = False, key: str = ...) -> str | None: ...
def _clean_note(note: str | None, required: bool = False, key: str = "disputes.err_note") -> str | None:
    s = (note or "").strip()
    if required and not s:
        raise DomainError(key)
    if len(s) > MAX_NOTE:
        raise DomainError("disputes.err_note_long", max=MAX_NOTE)
    return s or None


async def accept(session: AsyncSession, d: Dispute, user: User, note: str | None = None) -> Dispute:
    workflow.check(user, d, Action.accept)
    await _transition(session, d, Action.accept, user, _clean_note(note))
    d.mediator_id = user.id
    d.accepted_at = now()
    cfg = config.get().deadline(d.unit.level)
    d.resolve_due = calendar_deadline(d.accepted_at, int(cfg["resolve_days"]))
    _set_deadline(d, d.resolve_due, cfg)
    await _notify_citizen(session, d, "disputes.n_accepted", unit=d.unit.name, mediator=user.name or "-",
                          due=fmt_local(d.resolve_due))
    return d


async def add_note(session: AsyncSession, d: Dispute, user: User, note: str) -> Dispute:
    await _transition(session, d, Action.note, user, _clean_note(note, required=True))
    return d


async def transfer(session: AsyncSession, d: Dispute, user: User, target: Place, reason: str) -> Dispute:
    workflow.check(user, d, Action.transfer)
    reason = _clean_note(reason, required=True, key="disputes.err_reason")
    if target.id == d.unit_id:
        raise DomainError("disputes.err_transfer_same")
    county = await routing.ancestor_at(session, d.unit, Level.county.value)
    if county is not None and not target.path.startswith(county.path) and Role(user.role) != Role.admin:
        raise DomainError("disputes.err_transfer_outside")
    unit, mediators = await _walk_up(session, target)
    if not mediators or unit.id == d.unit_id:  # nobody there, or it would come straight back
        raise DomainError("disputes.err_transfer_no_mediator", name=target.name)
    note = reason if unit.id == target.id else gettext("zh", "disputes.transfer_routed_note", target=target.name,
                                                      unit=unit.name, reason=reason)
    await _move(session, d, user, Action.transfer, unit, mediators, f"{unit.name}：{note}")
    return d


async def escalate(session: AsyncSession, d: Dispute, user: User | None, reason: str | None = None,
                   action: Action = Action.escalate) -> Dispute:
    if user is not None:
        workflow.check(user, d, action)
    unit: Place | None
    unit, mediators = await routing.parent_unit(session, d.unit)
    if unit is None:
        if action == Action.escalate:
            raise DomainError("disputes.err_no_parent")
        unit, mediators = d.unit, await routing.mediators_at(session, d.unit)
    await _move(session, d, user, action, unit, mediators, _clean_note(reason))
    return d


async def _walk_up(session: AsyncSession, target: Place) -> tuple[Place, list[User]]:
    """The target, or the nearest level above it, that has mediators (none: empty list)."""
    for j in reversed(await users.ancestors(session, target)):
        if j.level == Level.city.value:
            break
        found = await routing.mediators_at(session, j)
        if found:
            return j, found
    return target, []


async def _move(session: AsyncSession, d: Dispute, user: User | None, action: Action, unit: Place,
                mediators: list[User], note: str | None, *, announce: bool = True) -> None:
    before = stats.contribution(d)
    await _transition(session, d, action, user, note)
    d.unit_id, d.unit, d.mediator_id = unit.id, await users.jurisdiction_row(session, unit), None
    if routing.LEVEL_INDEX[unit.level] <= routing.LEVEL_INDEX["county"]:
        d.escalated_county = 1
    await stats.apply_change(session, before, stats.contribution(d))
    _accept_deadline(d, unit)
    d.session_remind_at = None
    if announce:
        await _notify_unit(session, d, mediators, f"disputes.n_{action}_in", note=note or "-")
    await _notify_citizen(session, d, "disputes.n_moved", unit=unit.name)


def parse_session_input(text: str) -> tuple[datetime, str]:
    """"2026-12-01 14:30 海门街道调解室" → (aware datetime, place)."""
    from backend.core.clock import TZ

    try:
        found = dates.find_date(text, at_start=True)
        m = found and re.match(r"\s+(\d{1,2})[:：点](\d{2})?分?\s*(.*)$", (text or "")[found[2]:])
        if not found or not m:
            raise DomainError("disputes.err_session_format")
        hh, mi, place = m.groups()
        at = datetime.combine(found[0], time(int(hh), int(mi or 0)), tzinfo=TZ)
    except ValueError as e:
        raise DomainError("disputes.err_session_format") from e
    place = place.strip()
    if not place:
        raise DomainError("disputes.err_session_place")
    return at, place[:255]


async def schedule_session(session: AsyncSession, d: Dispute, user: User, at: datetime, place: str) -> Dispute:
    workflow.check(user, d, Action.schedule)
    if at <= now():
        raise DomainError("disputes.err_session_past")
    await _transition(session, d, Action.schedule, user, f"{fmt_local(at)} {place}")
    d.session_at, d.session_place = at, place
    d.session_remind_at = next((at - b for b in SESSION_REMINDERS.values() if at - b > now()), None)
    await _notify_citizen(session, d, "disputes.n_session", when=fmt_local(at), place=place)
    for m in {m for m in (d.mediator_id, user.id) if m is not None}:
        await notify(session, m, "disputes.n_session_mediator", number=d.number, when=fmt_local(at), place=place)
    return d


async def record_outcome(session: AsyncSession, d: Dispute, user: User, success: bool, *,
                         agreement: str | None = None, referral: str | None = None) -> Dispute:
    workflow.check(user, d, Action.succeed if success else Action.fail)
    if success:
        agreement = _clean_note(agreement, required=True, key="disputes.err_agreement")
        note = agreement
    else:
        if referral not in REFERRALS:
            raise DomainError("disputes.err_referral")
        note = referral
    before = stats.contribution(d)
    await _transition(session, d, Action.succeed if success else Action.fail, user, note)
    t = now()
    d.outcome = "success" if success else "failed"
    d.agreement, d.referral = (agreement, None) if success else (None, referral)
    d.resolved_at = t
    d.resolved_level = d.unit.level
    d.resolution_days = round((t - d.created_at).total_seconds() / 86400, 3)
    await stats.apply_change(session, before, stats.contribution(d))
    _set_deadline(d, None, {})
    d.session_remind_at = None
    await _notify_citizen(session, d, "disputes.n_success" if success else "disputes.n_failed",
                          agreement=agreement or "-", referral=REFERRAL_ZH.get(referral or "", "-"))
    return d


async def close(session: AsyncSession, d: Dispute, user: User, note: str | None = None) -> Dispute:
    workflow.check(user, d, Action.close)
    if d.closed_at is not None:
        raise Conflict("disputes.err_already_closed", number=d.number)
    await _transition(session, d, Action.close, user, _clean_note(note))
    d.closed_at = now()
    await ask_rating(session, d)
    if d.citizen_id is not None:
        d.rating_remind_at = d.closed_at + timedelta(days=config.get().rating_remind_days)
    return d


async def assign(session: AsyncSession, d: Dispute, user: User, mediator: User | None,
                 note: str | None = None) -> Dispute:
    """Hand the case to another mediator who may handle it (an active mediator of its unit or
    above); the status stays, the timeline says who to whom, and the new mediator is told."""
    workflow.check(user, d, Action.assign)
    if mediator is None or not mediator.active or Role(mediator.role) != Role.mediator \
            or not workflow.handles(mediator, d):
        raise DomainError("disputes.err_assign_target", number=d.number)
    if mediator.id == d.mediator_id:
        raise DomainError("disputes.err_assign_same", number=d.number, name=mediator.name or "-")
    note = _clean_note(note)
    ev = await _transition(session, d, Action.assign, user, gettext(
        "zh", "disputes.assign_note", name=mediator.name or "-") + (f"：{note}" if note else ""))
    d.mediator_id = mediator.id
    await session.flush()
    cat = config.get().category(d.category)
    await notify(session, mediator, "disputes.n_assigned", buttons=_case_buttons(d, mediator),
                 dedupe_key=f"d{d.id}-assign-{ev.id}", number=d.number, category=cat.zh, place=d.place.name,
                 by=user.name or "-", description=d.description[:200])
    return d


async def reply(session: AsyncSession, d: Dispute, user: User, text: str) -> Dispute:
    """A written reply to the reporting citizen: on the timeline, and to the citizen through the
    outbox (the chat, or the web chat's inbox)."""
    workflow.check(user, d, Action.reply)
    text = _clean_note(text, required=True, key="disputes.err_reply")
    ev = await _transition(session, d, Action.reply, user, text)
    await session.flush()
    await _notify_citizen(session, d, "disputes.n_reply", dedupe=f"d{d.id}-reply-{ev.id}", unit=d.unit.name,
                          text=text)
    return d


async def ask_rating(session: AsyncSession, d: Dispute, reminder: bool = False) -> None:
    key = "disputes.n_rate_reminder" if reminder else "disputes.n_rate"
    assert d.closed_at is not None  # asked of closed cases only (close, the rating reminder)
    await _notify_citizen(session, d, key, buttons=_buttons.rating(d) if _buttons is not None else None,
                          dedupe=f"d{d.id}-{key}-{d.closed_at.timestamp():.0f}")


async def rate(session: AsyncSession, d: Dispute, user: User, value: str, comment: str | None = None) -> Dispute:
    if d.citizen_id != user.id:
        raise Forbidden("disputes.err_not_yours")
    if value not in RATINGS:
        raise DomainError("disputes.err_rating")
    if d.closed_at is None or d.rating is not None:
        raise Conflict("disputes.err_rating_state", number=d.number)
    comment = _clean_note(comment)
    before = stats.contribution(d)
    d.rating, d.rated_at = value, now()
    d.rating_comment = comment
    await stats.apply_change(session, before, stats.contribution(d))
    d.rating_remind_at = None
    if value == "unsatisfied":
        # review one level up: the case reopens at the parent unit
        await escalate(session, d, None, reason=d.rating_comment or "不满意", action=Action.reopen)
        d.closed_at = None
    else:
        await _transition(session, d, Action.rate, user, value)
        await _transition(session, d, Action.archive, user, system=True)
    return d


async def comment_rating(session: AsyncSession, d: Dispute, user: User, comment: str) -> Dispute:
    if d.citizen_id != user.id:
        raise Forbidden("disputes.err_not_yours")
    if d.rating is None:
        raise Conflict("disputes.err_rating_state", number=d.number)
    d.rating_comment = _clean_note(comment)
    session.add(DisputeEvent(dispute_id=d.id, at=now(), actor_id=user.id, action="comment",
                             from_status=d.status, to_status=d.status, note=d.rating_comment))
    return d


# ---------------------------------------------------------------- deadlines (责任监督)
# Every reminder and deadline is a due-date column on the case (remind_at, due_at,
# session_remind_at, rating_remind_at) that one interval job sweeps (scheduler/jobs/disputes.py,
# also at start-up); the sweep clears or moves the column in the transaction that acts on it,
# so each moment is acted on once, and after downtime only the reminder that is still true
# is sent (never "受理期限是 …" after that deadline, never "明天" on the day itself).
SESSION_REMINDERS = {"day": timedelta(days=1), "2h": timedelta(hours=2)}
LATE = timedelta(minutes=15)  # a reminder sent later than this after its moment says so
DUE_COLUMNS = ("remind_at", "due_at", "session_remind_at", "rating_remind_at")


def _iso(dt: datetime | str) -> str:
    """One spelling of an instant (UTC) for markers and dedupe keys."""
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.astimezone(timezone.utc).isoformat()


def pending_stage(d: Dispute) -> str | None:
    """The deadline the case is waiting for: acceptance, resolution, or none."""
    st = Status(d.status)
    if st in (S.new, S.transferred, S.escalated):
        return "accept"
    if st in (S.accepted, S.mediating):
        return "resolve"
    return None


def _set_deadline(d: Dispute, due: datetime | None, cfg: dict) -> None:
    """The pending deadline and the reminder before it (none if that moment has passed)."""
    d.due_at = due
    remind = due - timedelta(hours=float(cfg.get("remind_hours_before", 4))) if due else None
    d.remind_at = remind if remind is not None and remind > now() else None


def _accept_deadline(d: Dispute, unit: Place) -> None:
    """The case's due dates for acceptance by ``unit``."""
    cfg = config.get().deadline(unit.level)
    d.accept_due = workday_deadline(now(), int(cfg["accept_workdays"]))
    d.resolve_due = None
    _set_deadline(d, d.accept_due, cfg)


def due_query(column: str, at: datetime):
    """The cases whose ``column`` (one of DUE_COLUMNS) has come, oldest first, for the sweep."""
    col = getattr(Dispute, column)
    return select(Dispute).where(col <= at).order_by(col, Dispute.id).limit(200)


async def on_due(session: AsyncSession, column: str, d: Dispute, at: datetime) -> bool:
    """Act on one case whose ``column`` has come; True if someone was told something."""
    return await _ON_DUE[column](session, d, at)


async def sweep_due(session: AsyncSession, at: datetime, lock=lambda stmt: stmt) -> int:
    """Everything that has come due at ``at``, in the caller's transaction; the number of cases
    acted on. ``lock`` wraps each query (the scheduler passes ``scheduler.sweep.claim``: rows
    locked and skipped by other replicas on PostgreSQL). Each case runs in its own savepoint:
    one that fails is logged and keeps its due date, so the next sweep retries it."""
    acted = 0
    for column in DUE_COLUMNS:
        for d in (await session.scalars(lock(due_query(column, at)))).all():
            try:
                async with session.begin_nested():
                    acted += await on_due(session, column, d, at)
            except Exception:  # noqa: BLE001 - one bad case never stops the others
                log.exception("disputes sweep: case %s (%s) failed", d.id, column)
    return acted


async def _remind_deadline(session: AsyncSession, d: Dispute, at: datetime) -> bool:
    stage, due = pending_stage(d), d.due_at
    d.remind_at = None
    if stage is None or due is None or at >= due:
        return False  # met, or already passed: the deadline itself is handled instead
    mediator = await session.get(User, d.mediator_id) if d.mediator_id else None
    targets = [mediator] if mediator is not None else await routing.mediators_at(session, d.unit)
    for u in targets:
        await notify(session, u, f"disputes.n_deadline_{stage}", urgent=True,
                     buttons=_case_buttons(d, u), dedupe_key=f"d{d.id}-remind-{stage}-{_iso(due)}-{u.id}",
                     number=d.number, due=fmt_local(due))
    return bool(targets)


async def _deadline_passed(session: AsyncSession, d: Dispute, at: datetime) -> bool:
    """A deadline passed with its stage unmet: flag the case overdue and tell the supervisors
    (督办). An acceptance nobody gave moves the case up a level (提级), where the supervisors
    and the new unit's mediators are told at once, in one message each."""
    stage, due = pending_stage(d), d.due_at
    _set_deadline(d, None, {})
    if stage is None or due is None:
        return False
    before = stats.contribution(d)
    await _transition(session, d, Action.overdue, None, f"{stage}:{_iso(due)}")
    d.overdue = 1
    await stats.apply_change(session, before, stats.contribution(d))
    old_unit = d.unit
    told = {u.id: u for u in await routing.supervisors_above(session, old_unit)}
    moved_to, mediators = (await routing.parent_unit(session, old_unit)) if stage == "accept" else (None, [])
    if moved_to is not None:
        await _move(session, d, None, Action.escalate, moved_to, mediators,
                    gettext("zh", "disputes.auto_escalate_note", unit=old_unit.name), announce=False)
        told.update({m.id: m for m in mediators})
    key = f"disputes.n_overdue_{stage}" + ("_moved" if moved_to is not None else "")
    for u in told.values():
        buttons = _case_buttons(d, u) if any(m.id == u.id for m in mediators) else None
        await notify(session, u, key, urgent=True, buttons=buttons, dedupe_key=f"d{d.id}-overdue-{stage}:{_iso(due)}-{u.id}",
                     number=d.number, unit=old_unit.name, due=fmt_local(due), to=moved_to.name if moved_to else "-")
    await refresh_risk(session, d)
    return True


async def _remind_session(session: AsyncSession, d: Dispute, at: datetime) -> bool:
    """The one session reminder that is true now: the day before, else two hours before."""
    d.session_remind_at = None
    when = d.session_at
    if when is None or Status(d.status) != S.mediating or at >= when:
        return False
    kind = "day" if at < when - SESSION_REMINDERS["2h"] and to_local(at).date() < to_local(when).date() else "2h"
    if kind == "day":
        d.session_remind_at = when - SESSION_REMINDERS["2h"]
    elif at < when - SESSION_REMINDERS["2h"]:
        d.session_remind_at = when - SESSION_REMINDERS["2h"]  # same day already: only the 2-hour one
        return False
    late = kind == "2h" and at > when - SESSION_REMINDERS["2h"] + LATE
    key = "disputes.n_session_soon" if late else f"disputes.n_session_{kind}"
    await _notify_citizen(session, d, key, dedupe=f"d{d.id}-sess-{kind}-{_iso(when)}",
                          when=fmt_local(when), place=d.session_place)
    if d.mediator_id:
        await notify(session, d.mediator_id, key, dedupe_key=f"d{d.id}-sess-{kind}-{_iso(when)}-m",
                     number=d.number, when=fmt_local(when), place=d.session_place)
    return True


async def _remind_rating(session: AsyncSession, d: Dispute, at: datetime) -> bool:
    d.rating_remind_at = None
    if d.closed_at is None or d.rating is not None:
        return False
    await ask_rating(session, d, reminder=True)
    return True


_ON_DUE = {"remind_at": _remind_deadline, "due_at": _deadline_passed,
           "session_remind_at": _remind_session, "rating_remind_at": _remind_rating}


def overdue_condition(at: datetime):
    """SQL: open cases that missed a deadline (flagged), or whose pending deadline has passed.
    A case accepted on time is not overdue, whatever its old acceptance deadline says."""
    return and_(Dispute.status.in_([s.value for s in OPEN_STATUSES]), or_(
        Dispute.overdue == 1,
        and_(Dispute.status.in_([S.new.value, S.transferred.value, S.escalated.value]), Dispute.accept_due < at),
        and_(Dispute.status.in_([S.accepted.value, S.mediating.value]), Dispute.resolve_due < at)))


# ---------------------------------------------------------------- early warning (预警研判)
async def refresh_risk(session: AsyncSession, d: Dispute, *, alert: bool = True) -> bool:
    """Re-grade the case; True if it has just turned red, which alerts the officials at once
    (``alert=False``: the caller alerts, once the new case has its id)."""
    before = d.risk
    grade, reasons = await risk.assess(session, d)
    d.risk, d.risk_reasons = grade, reasons
    turned_red = grade == "red" and before != "red"
    if turned_red and alert:
        await alert_red(session, d)
    return turned_red


async def alert_red(session: AsyncSession, d: Dispute) -> None:
    """Township and county officials and the mediation supervisors of the case's chain hear
    about a red case at once (urgent: no quiet hours), with the reasons in words."""
    ids = [i for i in (d.township_id, d.county_id) if i]
    chain = [j.id for j in await users.ancestors(session, d.unit)]
    targets = list(await session.scalars(select(User).where(User.active.is_(True), or_(
        and_(User.role == Role.official.value, User.jurisdiction_id.in_(ids)),
        and_(User.role == Role.mediator.value, User.title == "supervisor", User.jurisdiction_id.in_(chain))))
        .order_by(User.id)))
    for u in targets:
        await notify(session, u, "disputes.n_red_alert", urgent=True, dedupe_key=f"d{d.id}-red-{u.id}",
                     number=d.number, place=d.place.name, category=config.get().category(d.category).zh,
                     reasons=risk.describe(d.risk_reasons, u.language or "zh"), description=text_for(u, d, d.description)[:200])


async def calendar_notice(session: AsyncSession) -> int:
    """From December on, while next year's holiday arrangement is missing, tell the admins
    (once per year each): deadlines would otherwise count through the Spring Festival."""
    gap = workdays.missing_next_year()
    if gap is None:
        return 0
    sent = 0
    for u in await users.users_with_role(session, Role.admin, None):
        sent += await notify(session, u, "disputes.n_holidays_missing", urgent=True, year=gap,
                             dedupe_key=f"holidays-missing-{gap}-{u.id}") is not None
    return sent


# ---------------------------------------------------------------- lists
def _scope(user: User):
    """SQL filter: the cases this user may see."""
    role = Role(user.role)
    if role == Role.admin:
        return None
    if role in (Role.mediator, Role.official) and user.jurisdiction is not None:
        col = Dispute.unit_id if role == Role.mediator else Dispute.place_id
        inside = select(Jurisdiction.id).where(Jurisdiction.path.startswith(user.jurisdiction.path))
        return or_(col.in_(inside), Dispute.citizen_id == user.id)
    return Dispute.citizen_id == user.id


async def list_cases(session: AsyncSession, user: User, *, status: list[str] | None = None,
                     mine: bool = False, overdue: bool | None = None, limit: int = 50,
                     offset: int = 0) -> list[Dispute]:
    q = select(Dispute)
    cond = Dispute.citizen_id == user.id if mine else _scope(user)
    if cond is not None:
        q = q.where(cond)
    if status:
        q = q.where(Dispute.status.in_(status))
    if overdue is not None:
        q = q.where(Dispute.overdue == (1 if overdue else 0))
    return list(await session.scalars(q.order_by(Dispute.id.desc()).limit(limit).offset(offset)))


async def queue(session: AsyncSession, user: User, limit: int = 20) -> list[Dispute]:
    if Role(user.role) not in (Role.mediator, Role.admin):
        raise Forbidden("common.err_forbidden")
    return await list_cases(session, user, status=[s.value for s in OPEN_STATUSES] + ["resolved", "failed"],
                            limit=limit)


async def overdue_cases(session: AsyncSession, user: User, limit: int = 50) -> list[Dispute]:
    if Role(user.role) not in (Role.official, Role.mediator, Role.admin):
        raise Forbidden("common.err_forbidden")
    q = select(Dispute).where(overdue_condition(now()))
    cond = _scope(user)
    if cond is not None:
        q = q.where(cond)
    return list(await session.scalars(q.order_by(Dispute.accept_due).limit(limit)))


async def timeline(session: AsyncSession, d: Dispute) -> list[DisputeEvent]:
    return list(await session.scalars(select(DisputeEvent).where(DisputeEvent.dispute_id == d.id)
                                      .order_by(DisputeEvent.id)))


async def evidence_count(session: AsyncSession, d: Dispute) -> int:
    from backend.core.files import StoredFile

    return await session.scalar(select(func.count(StoredFile.id)).where(
        StoredFile.owner_kind == "dispute", StoredFile.owner_id == d.id)) or 0


# ---------------------------------------------------------------- evidence (证据)
THUMB_PX = 320


async def evidence(session: AsyncSession, d: Dispute, user: User) -> list:
    """The case's files for someone allowed to see the case (the reporter, its mediators,
    officials of the place, admins); each such read is audited."""
    if not can_view(user, d):
        raise Forbidden("disputes.err_not_yours")
    files = await filestore.files_of(session, "dispute", d.id)
    await users.audit(session, f"user:{user.id}", "dispute.evidence_read", f"dispute:{d.id}", n=len(files))
    return files


async def evidence_file(session: AsyncSession, d: Dispute, user: User, file_id: int, store: ObjectStore):
    """One file of the case and its bytes; audited."""
    if not can_view(user, d):
        raise Forbidden("disputes.err_not_yours")
    f = next((f for f in await filestore.files_of(session, "dispute", d.id) if f.id == file_id), None)
    data = await filestore.read_blob(store, f.sha256) if f is not None else None
    if f is None or data is None:
        raise NotFound("disputes.err_file_not_found")
    await users.audit(session, f"user:{user.id}", "dispute.evidence_read", f"dispute:{d.id}", file=f.id)
    return f, data


async def evidence_files(session: AsyncSession, d: Dispute, user: User, store: ObjectStore) -> list[tuple]:
    """Every file of the case with its bytes (the chat sends them), audited once."""
    out = []
    for f in await evidence(session, d, user):
        if (data := await filestore.read_blob(store, f.sha256)) is not None:
            out.append((f, data))
    return out


def thumbnail(data: bytes, mime: str) -> bytes | None:
    """A small JPEG of an image (None for a PDF or an image that cannot be decoded)."""
    if not mime.startswith("image/"):
        return None
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as src:
            im = ImageOps.exif_transpose(src).convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            im.save(out, format="JPEG", quality=80)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None

