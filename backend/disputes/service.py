"""Dispute mediation rules (五环智控): intake, routing, the state machine, deadlines,
ratings and early warning. Plain arguments + AsyncSession; never imports aiogram."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core import files as filestore
from backend.core.clock import fmt_local, now, to_local
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.masking import mask_party, mask_personal, mask_phone, normalize_phone
from backend.core.policy import Action, Facts, Kind, may, places_inside
from backend.core.workdays import calendar_deadline, workday_deadline
from backend.disputes import config, risk, routing, stats
from backend.disputes.models import OPEN_STATUSES, Dispute, DisputeCounter, DisputeEvent, Status
from backend.notify.service import notify
from backend.users import service as users
from backend.users.models import Jurisdiction, Level, Role, User
from backend.users.tree import Place
from scheduler import runtime

log = logging.getLogger("hehe.disputes")

MIN_DESCRIPTION, MAX_DESCRIPTION, MAX_FILES = 10, 2000, 9
MAX_NOTE = 1000
RATINGS = ("satisfied", "basic", "unsatisfied")
REFERRALS = ("litigation", "arbitration", "administrative")
REFERRAL_ZH = {"litigation": "诉讼", "arbitration": "仲裁", "administrative": "行政处理"}
JOBS = "scheduler.jobs.disputes"

# ---------------------------------------------------------------- the state machine
# action → (statuses it may start from, status it leads to; None = unchanged)
S = Status
TRANSITIONS: dict[str, tuple[frozenset[Status], Status | None]] = {
    "create": (frozenset(), S.new),
    "accept": (frozenset({S.new, S.transferred, S.escalated}), S.accepted),
    "transfer": (frozenset({S.new, S.accepted, S.transferred, S.escalated}), S.transferred),
    "escalate": (frozenset({S.new, S.accepted, S.mediating, S.transferred, S.escalated}), S.escalated),
    "note": (frozenset(OPEN_STATUSES) | {S.resolved, S.failed}, None),
    "schedule": (frozenset({S.accepted, S.mediating}), S.mediating),
    "succeed": (frozenset({S.accepted, S.mediating}), S.resolved),
    "fail": (frozenset({S.accepted, S.mediating}), S.failed),
    "close": (frozenset({S.resolved, S.failed}), None),
    "rate": (frozenset({S.resolved, S.failed}), S.visited),
    "reopen": (frozenset({S.resolved, S.failed}), S.escalated),
    "archive": (frozenset({S.visited}), S.archived),
    "overdue": (frozenset(OPEN_STATUSES), None),
}
MEDIATOR_ACTIONS = ("accept", "transfer", "escalate", "note", "schedule", "succeed", "fail", "close")


def allowed_actions(d: Dispute) -> list[str]:
    st = Status(d.status)
    out = [a for a in MEDIATOR_ACTIONS if st in TRANSITIONS[a][0]]
    if "close" in out and d.closed_at is not None:
        out.remove("close")
    return out


async def _transition(session: AsyncSession, d: Dispute, action: str, actor: User | None,
                      note: str | None = None, at: datetime | None = None) -> DisputeEvent:
    """The one place a status changes: check the table, record who/when (default: now)/why."""
    sources, to = TRANSITIONS[action]
    current = Status(d.status) if d.status else None
    if action != "create" and current not in sources:
        raise Conflict("disputes.err_bad_state", number=d.number, status=current.value if current else "-")
    new = to or current
    ev = DisputeEvent(dispute_id=d.id, at=at or now(), actor_id=actor.id if actor else None, action=action,
                      from_status=current.value if current and action != "create" else None,
                      to_status=new.value, note=note)
    d.status = new.value
    d.updated_at = ev.at
    session.add(ev)
    await _kb_enqueue(session, d)
    return ev


async def _kb_enqueue(session: AsyncSession, d: Dispute) -> None:
    """Tell the knowledge base the case changed (same transaction), if the seam exists."""
    try:
        from knowledge_base.models import enqueue
    except ImportError:
        return
    await enqueue(session, "dispute", d.id)  # one queue row per case per transaction


# ---------------------------------------------------------------- deadline jobs
def _schedule(session: AsyncSession, func: str, at: datetime, args: list, job_id: str) -> None:
    runtime.schedule_after_commit(session, f"{JOBS}:{func}", at, args, job_id)


def _cancel(session: AsyncSession, job_id: str) -> None:
    runtime.cancel_after_commit(session, job_id)


# ---------------------------------------------------------------- validation
def validate_description(text: str | None) -> str:
    s = (text or "").strip()
    if len(s) < MIN_DESCRIPTION:
        raise DomainError("disputes.err_description_short", min=MIN_DESCRIPTION)
    if len(s) > MAX_DESCRIPTION:
        raise DomainError("disputes.err_description_long", max=MAX_DESCRIPTION, n=len(s))
    return s


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


def keep_evidence(files_dir: Path, data: bytes, *, photo: bool) -> dict:
    """Check and keep an uploaded file's bytes (content-addressed) during intake; the
    StoredFile row is only written with the case."""
    if len(data) > filestore.MAX_FILE_BYTES:
        raise DomainError("disputes.err_file_big", mb=filestore.MAX_FILE_BYTES // 1024 // 1024)
    mime = sniff_mime(data)
    if mime is None or (photo and not mime.startswith("image/")):
        raise DomainError("disputes.err_not_image")
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    p = filestore.blob_path(files_dir, sha)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(p)
    else:
        p.touch()  # in use by this draft again: the orphan sweep (scheduler/jobs/files.py) waits
    return {"sha256": sha, "mime": mime, "size": len(data)}


# ---------------------------------------------------------------- intake
async def next_number(session: AsyncSession, county: Place, at: datetime) -> str:
    """TZ-<county code>-YYYYMMDD-NNNN. UPDATE first so the row lock serializes concurrent intakes."""
    day = to_local(at).strftime("%Y%m%d")
    code = county.code or f"C{county.id}"
    key = f"{code}-{day}"
    n = await session.scalar(update(DisputeCounter).where(DisputeCounter.key == key)
                             .values(value=DisputeCounter.value + 1).returning(DisputeCounter.value))
    if n is None:  # the county's first case of the day
        session.add(DisputeCounter(key=key, value=1))
        await session.flush()
        n = 1
    return f"TZ-{code}-{day}-{n:04d}"


async def create_case(
    session: AsyncSession, *, citizen: User | None, category: str, description: str, place: Place,
    files_dir: Path | None = None, address: str | None = None, lat: float | None = None,
    lon: float | None = None, other_party: str | None = None, phone: str | None = None,
    evidence: list[dict] | None = None, source: str = "chat", contact_name: str | None = None,
    contact_email: str | None = None, media_url: str | None = None,
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
    deadline_cfg = _accept_deadline(d, unit)
    turned_red = await refresh_risk(session, d, alert=False)
    session.add(d)
    await session.flush()
    await _transition(session, d, "create", citizen, note=source, at=t)
    for ev in evidence:
        blob = filestore.blob_path(files_dir, ev["sha256"]) if files_dir else None
        if blob is None or not blob.exists():
            raise DomainError("disputes.err_file_lost")
        await filestore.store_file(session, files_dir, blob.read_bytes(), mime=ev.get("mime", "image/jpeg"),
                                   filename=ev.get("name"), owner_kind="dispute", owner_id=d.id,
                                   uploaded_by=citizen.id if citizen else None)
    _schedule_stage(session, d, "accept", d.accept_due, deadline_cfg)
    await stats.apply_change(session, None, stats.contribution(d))
    await _notify_unit(session, d, mediators, "disputes.n_new_case")
    if turned_red:
        await alert_red(session, d)
    await users.audit(session, f"user:{citizen.id}" if citizen else source, "dispute.created",
                      f"dispute:{d.id}", number=d.number)
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
    return {n for n, c, m, u, p in rows if may(user, Action.read, Kind.dispute, Facts.of(
        owners=c, staff=m, unit=places.get(u), place=places.get(p)))}


def can_view(user: User, d: Dispute) -> bool:
    return may(user, Action.read, Kind.dispute, facts(d))


def can_handle(user: User, d: Dispute) -> bool:
    return may(user, Action.handle, Kind.dispute, facts(d))


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
    if user is not None and may(user, Action.personal, Kind.dispute, facts(d)):
        return text
    return mask_personal(text)


def party_for(user: User | None, d: Dispute) -> str | None:
    """The other party as this viewer may see it: names and numbers masked for people who do not
    own the case (officials)."""
    if d.other_party is None or (user is not None and may(user, Action.personal, Kind.dispute, facts(d))):
        return d.other_party
    return mask_party(d.other_party)


def phone_for(user: User | None, d: Dispute) -> str:
    """The phone as this viewer may see it: mediators handling the case see it whole."""
    if user is not None and can_handle(user, d):
        return d.phone or "-"
    return mask_phone(d.phone)


# ---------------------------------------------------------------- mediator actions
def _cb(action: str, case_id: int) -> str:
    return f"dsp:{action}:{case_id}"  # handlers.disputes.CaseCb packs the same


def case_buttons(d: Dispute) -> list[list[tuple[str, str]]]:
    acts = allowed_actions(d)
    rows, row = [], []
    for a in acts:
        row.append((f"disputes.btn_{a}", _cb(a, d.id)))
        if len(row) == 3:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    return rows


async def _notify_unit(session: AsyncSession, d: Dispute, mediators: list[User], key: str, **params) -> None:
    cat = config.get().category(d.category)
    for m in mediators:
        await notify(session, m, key, buttons=[[("disputes.btn_accept", _cb("accept", d.id)),
                                                ("disputes.btn_transfer", _cb("transfer", d.id)),
                                                ("disputes.btn_escalate", _cb("escalate", d.id))]],
                     dedupe_key=f"d{d.id}-{key}-{d.unit_id}-{m.id}-{d.updated_at.timestamp():.0f}",
                     number=d.number, category=cat.zh, place=d.place.name, unit=d.unit.name,
                     description=d.description[:200], **params)


async def _notify_citizen(session: AsyncSession, d: Dispute, key: str, *, buttons=None,
                          dedupe: str | None = None, **params) -> None:
    if d.citizen_id is None:
        return
    await notify(session, d.citizen_id, key, buttons=buttons, dedupe_key=dedupe, number=d.number, **params)


def _require_handle(user: User, d: Dispute) -> None:
    if not can_handle(user, d):
        raise Forbidden("disputes.err_not_your_unit")


def _clean_note(note: str | None, required: bool = False, key: str = "disputes.err_note") -> str | None:
    s = (note or "").strip()
    if required and not s:
        raise DomainError(key)
    if len(s) > MAX_NOTE:
        raise DomainError("disputes.err_note_long", max=MAX_NOTE)
    return s or None


async def accept(session: AsyncSession, d: Dispute, user: User, note: str | None = None) -> Dispute:
    _require_handle(user, d)
    await _transition(session, d, "accept", user, _clean_note(note))
    d.mediator_id = user.id
    d.accepted_at = now()
    _cancel_stage(session, d, "accept")
    cfg = config.get().deadline(d.unit.level)
    d.resolve_due = calendar_deadline(d.accepted_at, int(cfg["resolve_days"]))
    _schedule_stage(session, d, "resolve", d.resolve_due, cfg)
    await _notify_citizen(session, d, "disputes.n_accepted", unit=d.unit.name, mediator=user.name or "-",
                          due=fmt_local(d.resolve_due))
    return d


async def add_note(session: AsyncSession, d: Dispute, user: User, note: str) -> Dispute:
    _require_handle(user, d)
    await _transition(session, d, "note", user, _clean_note(note, required=True))
    return d


async def transfer(session: AsyncSession, d: Dispute, user: User, target: Place, reason: str) -> Dispute:
    _require_handle(user, d)
    reason = _clean_note(reason, required=True, key="disputes.err_reason")
    if target.id == d.unit_id:
        raise DomainError("disputes.err_transfer_same")
    county = await routing.ancestor_at(session, d.unit, Level.county.value)
    if county is not None and not target.path.startswith(county.path) and Role(user.role) != Role.admin:
        raise DomainError("disputes.err_transfer_outside")
    unit, mediators = await _walk_up(session, target)
    await _move(session, d, user, "transfer", unit, mediators, f"{unit.name}：{reason}")
    return d


async def escalate(session: AsyncSession, d: Dispute, user: User | None, reason: str | None = None,
                   action: str = "escalate") -> Dispute:
    if user is not None:
        _require_handle(user, d)
    unit, mediators = await routing.parent_unit(session, d.unit)
    if unit is None:
        if action == "escalate":
            raise DomainError("disputes.err_no_parent")
        unit, mediators = d.unit, await routing.mediators_at(session, d.unit)
    await _move(session, d, user, action, unit, mediators, _clean_note(reason))
    return d


async def _walk_up(session: AsyncSession, target: Place) -> tuple[Place, list[User]]:
    for j in reversed(await users.ancestors(session, target)):
        found = await routing.mediators_at(session, j)
        if found:
            return j, found
    return target, []


async def _move(session: AsyncSession, d: Dispute, user: User | None, action: str, unit: Place,
                mediators: list[User], note: str | None) -> None:
    before = stats.contribution(d)
    await _transition(session, d, action, user, note)
    d.unit_id, d.unit, d.mediator_id = unit.id, await users.jurisdiction_row(session, unit), None
    if routing.LEVEL_INDEX[unit.level] <= routing.LEVEL_INDEX["county"]:
        d.escalated_county = 1
    await stats.apply_change(session, before, stats.contribution(d))
    _cancel_stage(session, d, "resolve")
    _set_accept_deadline(session, d, unit)
    await _notify_unit(session, d, mediators, f"disputes.n_{action}_in", note=note or "-")
    await _notify_citizen(session, d, "disputes.n_moved", unit=unit.name)


def parse_session_input(text: str) -> tuple[datetime, str]:
    """"2026-12-01 14:30 海门街道调解室" → (aware datetime, place)."""
    m = re.match(r"^\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?\s+(\d{1,2})[:：点](\d{2})?分?\s*(.*)$",
                 text or "")
    if not m:
        raise DomainError("disputes.err_session_format")
    y, mo, dd, hh, mi, place = m.groups()
    from backend.core.clock import TZ

    try:
        at = datetime(int(y), int(mo), int(dd), int(hh), int(mi or 0), tzinfo=TZ)
    except ValueError as e:
        raise DomainError("disputes.err_session_format") from e
    place = place.strip()
    if not place:
        raise DomainError("disputes.err_session_place")
    return at, place[:255]


async def schedule_session(session: AsyncSession, d: Dispute, user: User, at: datetime, place: str) -> Dispute:
    _require_handle(user, d)
    if at <= now():
        raise DomainError("disputes.err_session_past")
    await _transition(session, d, "schedule", user, f"{fmt_local(at)} {place}")
    d.session_at, d.session_place = at, place
    iso = _iso(at)
    for kind, before in (("day", timedelta(days=1)), ("2h", timedelta(hours=2))):
        if at - before > now():
            _schedule(session, "session_reminder", at - before, [d.id, kind, iso], f"disp{d.id}-session-{kind}")
    await _notify_citizen(session, d, "disputes.n_session", when=fmt_local(at), place=place)
    for m in {d.mediator_id, user.id} - {None}:
        await notify(session, m, "disputes.n_session_mediator", number=d.number, when=fmt_local(at), place=place)
    return d


async def record_outcome(session: AsyncSession, d: Dispute, user: User, success: bool, *,
                         agreement: str | None = None, referral: str | None = None) -> Dispute:
    _require_handle(user, d)
    if success:
        agreement = _clean_note(agreement, required=True, key="disputes.err_agreement")
        note = agreement
    else:
        if referral not in REFERRALS:
            raise DomainError("disputes.err_referral")
        note = referral
    before = stats.contribution(d)
    await _transition(session, d, "succeed" if success else "fail", user, note)
    t = now()
    d.outcome = "success" if success else "failed"
    d.agreement, d.referral = (agreement, None) if success else (None, referral)
    d.resolved_at = t
    d.resolved_level = d.unit.level
    d.resolution_days = round((t - d.created_at).total_seconds() / 86400, 3)
    await stats.apply_change(session, before, stats.contribution(d))
    _cancel_stage(session, d, "resolve")
    await _notify_citizen(session, d, "disputes.n_success" if success else "disputes.n_failed",
                          agreement=agreement or "-", referral=REFERRAL_ZH.get(referral or "", "-"))
    return d


async def close(session: AsyncSession, d: Dispute, user: User, note: str | None = None) -> Dispute:
    _require_handle(user, d)
    if d.closed_at is not None:
        raise Conflict("disputes.err_already_closed", number=d.number)
    await _transition(session, d, "close", user, _clean_note(note))
    d.closed_at = now()
    await ask_rating(session, d)
    if d.citizen_id is not None:
        days = config.get().rating_remind_days
        _schedule(session, "rating_reminder", d.closed_at + timedelta(days=days), [d.id], f"disp{d.id}-rating")
    return d


def rating_buttons(d: Dispute) -> list[list[tuple[str, str]]]:
    return [[(f"disputes.rating_{r}", f"dsr:{r}:{d.id}") for r in RATINGS]]


async def ask_rating(session: AsyncSession, d: Dispute, reminder: bool = False) -> None:
    key = "disputes.n_rate_reminder" if reminder else "disputes.n_rate"
    await _notify_citizen(session, d, key, buttons=rating_buttons(d),
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
    _cancel(session, f"disp{d.id}-rating")
    if value == "unsatisfied":
        # review one level up: the case reopens at the parent unit
        await escalate(session, d, None, reason=d.rating_comment or "不满意", action="reopen")
        d.closed_at = None
    else:
        await _transition(session, d, "rate", user, value)
        await _transition(session, d, "archive", None)
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
def _iso(dt: datetime | str) -> str:
    """One spelling of an instant (UTC) for job args, markers and dedupe keys."""
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.astimezone(timezone.utc).isoformat()


def _job_id(d: Dispute, stage: str, kind: str) -> str:
    return f"disp{d.id}-{stage}-{kind}"


def _schedule_stage(session: AsyncSession, d: Dispute, stage: str, due: datetime, cfg: dict) -> None:
    iso = _iso(due)
    remind_at = due - timedelta(hours=float(cfg.get("remind_hours_before", 4)))
    if remind_at > now():
        _schedule(session, "deadline_reminder", remind_at, [d.id, stage, iso], _job_id(d, stage, "remind"))
    _schedule(session, "deadline_due", due, [d.id, stage, iso], _job_id(d, stage, "due"))


def _cancel_stage(session: AsyncSession, d: Dispute, stage: str) -> None:
    _cancel(session, _job_id(d, stage, "remind"))
    _cancel(session, _job_id(d, stage, "due"))


def _accept_deadline(d: Dispute, unit: Place) -> dict:
    """Set the case's due dates for acceptance by ``unit``; returns the level's deadline rules."""
    cfg = config.get().deadline(unit.level)
    d.accept_due = workday_deadline(now(), int(cfg["accept_workdays"]))
    d.resolve_due = None
    return cfg


def _set_accept_deadline(session: AsyncSession, d: Dispute, unit: Place) -> None:
    _schedule_stage(session, d, "accept", d.accept_due, _accept_deadline(d, unit))


def _stage_pending(d: Dispute, stage: str, due_iso: str) -> bool:
    st = Status(d.status)
    if stage == "accept":
        return st in (S.new, S.transferred, S.escalated) and d.accept_due is not None and \
            _iso(d.accept_due) == _iso(due_iso)
    return st in (S.accepted, S.mediating) and d.resolve_due is not None and _iso(d.resolve_due) == _iso(due_iso)


async def deadline_reminder(session: AsyncSession, case_id: int, stage: str, due_iso: str) -> bool:
    due_iso = _iso(due_iso)
    d = await session.get(Dispute, case_id)
    if d is None or not _stage_pending(d, stage, due_iso):
        return False
    due = datetime.fromisoformat(due_iso)
    targets = [d.mediator_id] if d.mediator_id else [m.id for m in await routing.mediators_at(session, d.unit)]
    for uid in targets:
        await notify(session, uid, f"disputes.n_deadline_{stage}", urgent=True,
                     buttons=case_buttons(d), dedupe_key=f"d{d.id}-remind-{stage}-{due_iso}-{uid}",
                     number=d.number, due=fmt_local(due))
    return True


async def deadline_due(session: AsyncSession, case_id: int, stage: str, due_iso: str) -> bool:
    """A deadline passed with the stage unmet: flag overdue, tell the next level's supervisor."""
    d = await session.get(Dispute, case_id)
    due_iso = _iso(due_iso)
    if d is None or not _stage_pending(d, stage, due_iso):
        return False
    marker = f"{stage}:{due_iso}"
    seen = await session.scalar(select(DisputeEvent.id).where(
        DisputeEvent.dispute_id == d.id, DisputeEvent.action == "overdue", DisputeEvent.note == marker))
    if seen:
        return False
    before = stats.contribution(d)
    await _transition(session, d, "overdue", None, marker)
    d.overdue = 1
    await stats.apply_change(session, before, stats.contribution(d))
    for sup in await routing.supervisors_above(session, d.unit):
        await notify(session, sup, f"disputes.n_overdue_{stage}", urgent=True,
                     dedupe_key=f"d{d.id}-overdue-{marker}-{sup.id}", number=d.number, unit=d.unit.name,
                     due=fmt_local(datetime.fromisoformat(due_iso)))
    await refresh_risk(session, d)
    return True


async def sweep_overdue(session: AsyncSession, grace: timedelta = timedelta(minutes=10)) -> int:
    """Safety net for jobs lost while no scheduler ran: apply every passed deadline once.
    The grace period leaves fresh deadlines to their own job (no double work)."""
    t = now() - grace
    rows = list(await session.scalars(select(Dispute).where(
        Dispute.status.in_([s.value for s in OPEN_STATUSES]),
        or_(Dispute.accept_due < t, Dispute.resolve_due < t))))
    n = 0
    for d in rows:
        if d.accept_due and d.accept_due < t:
            n += await deadline_due(session, d.id, "accept", _iso(d.accept_due))
        if d.resolve_due and d.resolve_due < t:
            n += await deadline_due(session, d.id, "resolve", _iso(d.resolve_due))
    return n


async def session_reminder(session: AsyncSession, case_id: int, kind: str, session_iso: str) -> bool:
    d = await session.get(Dispute, case_id)
    if d is None or d.session_at is None or Status(d.status) != S.mediating:
        return False
    if d.session_at != datetime.fromisoformat(session_iso):
        return False  # rescheduled since
    key = f"disputes.n_session_{kind}"
    await _notify_citizen(session, d, key, dedupe=f"d{d.id}-sess-{kind}-{session_iso}",
                          when=fmt_local(d.session_at), place=d.session_place)
    if d.mediator_id:
        await notify(session, d.mediator_id, key, dedupe_key=f"d{d.id}-sess-{kind}-{session_iso}-m",
                     number=d.number, when=fmt_local(d.session_at), place=d.session_place)
    return True


async def rating_reminder(session: AsyncSession, case_id: int) -> bool:
    d = await session.get(Dispute, case_id)
    if d is None or d.closed_at is None or d.rating is not None:
        return False
    await ask_rating(session, d, reminder=True)
    return True


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
    """Township and county officials hear about a red case at once (urgent: no quiet hours)."""
    ids = [i for i in (d.township_id, d.county_id) if i]
    targets = list(await session.scalars(select(User).where(
        User.role == Role.official.value, User.active.is_(True), User.jurisdiction_id.in_(ids))))
    reasons = "；".join(r["detail"] and f"{r['code']}:{r['detail']}" or r["code"] for r in d.risk_reasons)
    for u in targets:
        await notify(session, u, "disputes.n_red_alert", urgent=True, dedupe_key=f"d{d.id}-red-{u.id}",
                     number=d.number, place=d.place.name, category=config.get().category(d.category).zh,
                     reasons=reasons, description=text_for(u, d, d.description)[:200])


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
    t = now()
    q = select(Dispute).where(Dispute.status.in_([s.value for s in OPEN_STATUSES]),
                              or_(Dispute.overdue == 1, Dispute.accept_due < t, Dispute.resolve_due < t))
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
