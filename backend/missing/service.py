"""灯塔工程 — the rules of missing / found persons, face-match review and cross-region help.

Plain arguments and an ``AsyncSession``; the face service is passed in (``ctx.faces``, or
None when face matching is unavailable). Never imports aiogram, the scheduler or the
knowledge base's internals (only its queue, as every slice does).

Privacy rules enforced here:
* face-match candidates go to officers only (a review queue), never to the reporting family;
* photos are visible to officers of the case's jurisdiction and to the reporter;
* phones are stored normalized and shown masked to everybody else (and in logs);
* withdrawal and closure erase photos, face crops, review pictures and face vectors at once;
  after a released match they go when ``missing_match_retention_days`` have passed (a sweep).

Decisions follow ``backend/missing/workflow.py``: confirm in two steps (checklist, then a
second officer), reject with a reason, undo while the undo window is open; the family is told
only when the window has closed (an outbox message due then, removed by an undo).
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete as sql_delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core import dates
from backend.core.clock import TZ, fmt_local, now, to_local
from backend.core.config import get_settings
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.events import RecordChanged, publish
from backend.core.files import StoredFile, blob_key, read_blob, store_file
from backend.core.masking import mask_phone, normalize_phone
from backend.core.policy import Action, Facts, Kind, may, places_inside
from backend.core.security import within
from backend.missing import evidence
from backend.missing.models import (
    AssistAnswer, AssistRequest, CaseCounter, CaseEvent, MatchCandidate, PersonCase,
)
from backend.missing.workflow import (
    CANDIDATES, CASES, CHECKLIST, REJECT_REASONS, CandidateAction, CandidateStatus, CaseAction, CaseStatus, Review, moved,
)
from backend.notify.models import Outbox
from backend.notify.service import notify
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import Jurisdiction, Level, Role, User
from backend.users.tree import Node, Place

log = logging.getLogger("hehe.missing")

MAX_PHOTOS = 5
SEARCH_K = 10
AGE_TOLERANCE = 10
HEIGHT_TOLERANCE = 10  # cm, between a family's figure and an officer's estimate
NEAR_KM = 50  # places farther apart are flagged (a person can travel far: a flag, not a veto)
SAME_PERSON_MIN = 0.30  # two photos of one report scoring below this look like two people (docs/faces.md)
PENALTY = {"sex_mismatch": 0.25, "age_gap": 0.15, "time_before": 0.25, "height_gap": 0.10}

OPEN, FOUND, CLOSED = CaseStatus.open.value, CaseStatus.found.value, CaseStatus.closed.value
PENDING, CHECKED, CONFIRMED, REJECTED, SUPERSEDED, WITHDRAWN = (s.value for s in CandidateStatus)
# The allowed case status changes, read from the workflow table (kept for readers and tests).
TRANSITIONS: dict[tuple[str, str], str] = {
    (src.value, moved(t.target).value): t.action.value for t in CASES.transitions for src in t.sources}


class MissingError(DomainError):
    pass


def _settings(settings=None):
    return settings or get_settings()


async def transition(session: AsyncSession, case: PersonCase, to: str, *, actor: str,
                     note: str | None = None) -> None:
    """The one place a case changes status; every change is recorded (who, when, why)."""
    if (case.status, to) not in TRANSITIONS:
        raise MissingError("missing.err_bad_transition", status=case.status, to=to)
    session.add(CaseEvent(case_id=case.id, actor=actor, from_status=case.status, to_status=to, note=note))
    case.status = to
    case.closed_at = now() if to == CLOSED else None
    await publish(session, RecordChanged("missing", case.id))  # the knowledge base follows every change


async def _act(session: AsyncSession, user: User, case: PersonCase, action: CaseAction, note: str) -> None:
    t = CASES.check(user, case, action)
    await transition(session, case, moved(t.target).value, actor=f"user:{user.id}", note=note)


def _note(session: AsyncSession, case: PersonCase, actor: str, note: str) -> None:
    """A timeline entry that does not change the status (a decision, a deletion …)."""
    session.add(CaseEvent(case_id=case.id, actor=actor, from_status=case.status, to_status=case.status, note=note))


# ---------------------------------------------------------------- parsing user input
SEX_CODES = {"男": "M", "女": "F", "m": "M", "f": "F", "male": "M", "female": "F"}


def parse_sex(text: str) -> str | None:
    s = (text or "").strip().lower()
    if s in SEX_CODES:
        return SEX_CODES[s]
    if s in ("不详", "不清楚", "unknown", "?", "u"):
        return None
    raise MissingError("missing.err_sex")


def parse_age(text: str, *, allow_unknown: bool = False) -> int | None:
    s = (text or "").strip().replace("岁", "").replace("左右", "").replace("约", "")
    if allow_unknown and s in ("不详", "不清楚", "unknown", "?"):
        return None
    if not s.isdigit() or not 0 <= int(s) <= 120:
        raise MissingError("missing.err_age")
    return int(s)


def parse_height(text: str) -> int | None:
    s = (text or "").strip().lower().replace("厘米", "").replace("cm", "").replace("公分", "").strip()
    if s in ("跳过", "不详", "skip", ""):
        return None
    try:
        v = float(s)
    except ValueError:
        raise MissingError("missing.err_height") from None
    if v < 3:  # 1.65 (metres)
        v *= 100
    if not 40 <= v <= 250:
        raise MissingError("missing.err_height")
    return int(round(v))


_TIME = re.compile(r"(\d{1,2})\s*[:：时点]\s*(\d{1,2})?")
_DATE_MD = re.compile(r"(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_FUTURE_OR_VAGUE = re.compile(r"^(明天|明日|后天|大后天|下周|下星期|下个?月|明年|上周|上星期|上个?月|去年|前几天|那天|某天)")
_DAYPART = ("上午", "下午", "晚上", "中午", "早上", "傍晚", "凌晨", "夜里", "pm", "PM", "am", "AM")


def parse_seen_at(text: str, *, ref: datetime | None = None) -> datetime:
    """'今天 14:30', '昨天下午3点', '前天', '2026-11-27 08:00', '11月27日 8时', '14:30' → aware UTC.
    Local (Asia/Shanghai) time; a time in the future is refused."""
    s = (text or "").strip()
    base = to_local(ref or now())
    if s in ("刚才", "现在", "刚刚", "now"):
        return now()
    day = base.date()
    rest = s
    try:
        full = dates.find_date(s)
    except ValueError:
        raise MissingError("missing.err_time") from None
    m = None  # a month-day date (below)
    if full:
        day, rest = full[0], s[full[2]:]
    elif s.startswith(("昨天", "昨日")):
        day = day - timedelta(days=1)
        rest = s[2:]
    elif s.startswith("前天"):
        day = day - timedelta(days=2)
        rest = s[2:]
    elif s.startswith(("今天", "今日")):
        rest = s[2:]
    elif _FUTURE_OR_VAGUE.match(s):
        # 明天 / 后天 / 下周 …: never guessed as today (it was once stored as today 09:00)
        raise MissingError("missing.err_time_unclear")
    else:
        m = _DATE_MD.match(s)
        if m and ("月" in s or "-" in s[: m.end()] or "/" in s[: m.end()]):
            try:
                day = day.replace(month=int(m.group(1)), day=int(m.group(2)))
            except ValueError:
                raise MissingError("missing.err_time") from None
            if day > base.date():
                day = day.replace(year=day.year - 1)
            rest = s[m.end():]
    hour, minute = 12, 0
    rest = rest.strip()
    pm = any(w in rest for w in ("下午", "晚上", "傍晚", "夜里", "pm", "PM"))
    tm = _TIME.search(rest)
    if tm:
        hour, minute = int(tm.group(1)), int(tm.group(2) or 0)
        if tm.group(2) is None and rest[tm.end():].lstrip().startswith("半"):
            minute = 30
        if pm and hour < 12:
            hour += 12
    elif rest and not any(w in rest for w in _DAYPART):
        if not (full or m or s.startswith(("昨", "前天", "今"))):
            raise MissingError("missing.err_time")
    leftover = _TIME.sub("", rest)
    for w in _DAYPART + ("左右", "大概", "大约", "约", "分", "半"):
        leftover = leftover.replace(w, "")
    if leftover.strip(" ,，.。"):  # words we did not understand: ask again rather than guess
        raise MissingError("missing.err_time_unclear")
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise MissingError("missing.err_time")
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)
    if local > base + timedelta(minutes=5):
        raise MissingError("missing.err_time_future")
    return local.astimezone(now().tzinfo)


def parse_phone(text: str) -> str:
    p = normalize_phone(text)
    if p is None:
        raise MissingError("missing.err_phone")
    return p


async def resolve_place(session: AsyncSession, text: str) -> Jurisdiction | None:
    """The most specific county/township named in free text ('椒江区海门街道东山公园' → 海门街道)."""
    s = (text or "").strip()
    if not s:
        return None
    exact = await users.find_jurisdiction(session, s)
    if exact is not None:
        return exact
    rows = list(await session.scalars(select(Jurisdiction).where(
        Jurisdiction.level.in_([Level.county.value, Level.township.value]))))
    hits = [j for j in rows if j.name in s or (len(users._short_name(j.name)) >= 2 and users._short_name(j.name) in s)]
    if not hits:
        return None
    counties = [j for j in hits if j.level == Level.county.value]
    towns = [j for j in hits if j.level == Level.township.value]
    if counties:
        inside = [t for t in towns if any(t.path.startswith(c.path) for c in counties)]
        if inside:
            return max(inside, key=lambda j: len(j.name))
        if towns and len(towns) == 1:
            return towns[0]
        return max(counties, key=lambda j: len(j.name))
    return max(towns, key=lambda j: len(j.name)) if len(towns) == 1 else None


async def resolve_place_within(session: AsyncSession, parent_id: int | None, text: str) -> Jurisdiction | None:
    """A township named in the detail text, if it lies inside the county already chosen."""
    parent = await users.jurisdiction(session, parent_id)
    j = await resolve_place(session, text)
    if parent is None or j is None or not j.path.startswith(parent.path):
        return None
    return j


async def counties(session: AsyncSession) -> list[Node]:
    return await users.children(session, None)


async def place_name(session: AsyncSession, jid: int | None) -> str | None:
    j = await users.jurisdiction(session, jid) if jid else None
    return j.name if j else None


async def nearest_place(session: AsyncSession, lat: float, lon: float) -> Node | None:
    return await users.nearest(session, lat, lon)


# ---------------------------------------------------------------- faces (through ctx.faces)
def faces_ready(faces) -> bool:
    return faces is not None and getattr(faces, "ready", False)


async def check_photo(faces, data: bytes, choose: int | None = None):
    """Raise BadImage / NoFace / MultipleFaces (with preview) / BadChoice; return the
    :class:`~backend.faces.service.Examined` face (embedding, box, quality grade)."""
    return await faces.aexamine(data, choose)


def quality_reasons(examined) -> list[str]:
    """Why a photo is poor (empty when it is good enough): ``missing.quality_<reason>`` texts."""
    q = examined.quality
    return list(q.reasons) if q.grade == "poor" else []


def different_people(vecs: list) -> list[int]:
    """0-based indexes of photos that look like somebody else than the report's first photo(s):
    each photo is compared with every other one and flagged when it matches none of them."""
    if len(vecs) < 2:
        return []
    m = np.stack([np.asarray(v, dtype=np.float32) for v in vecs])
    sims = m @ m.T
    np.fill_diagonal(sims, -1.0)
    return [i for i in range(len(vecs)) if float(sims[i].max()) < SAME_PERSON_MIN]


@dataclass
class Photo:
    data: bytes
    choose: int | None = None  # 0-based face index when the photo shows several people
    mime: str = "image/jpeg"


@dataclass
class Outcome:
    case: PersonCase
    candidates: list[MatchCandidate] = field(default_factory=list)
    face_available: bool = True
    created: bool = True  # False: the draft had been submitted already (a double tap)
    different: list[int] = field(default_factory=list)  # photos that look like somebody else


# ---------------------------------------------------------------- case numbers
async def next_case_no(session: AsyncSession, kind: str, j: Place | None) -> str:
    """XR-<county>-<day>-NNNN from an atomic per-prefix counter (one upsert; concurrent
    reports on SQLite or PostgreSQL never get the same number)."""
    county = await users.county_of(session, j) if j is not None else None
    code = (county.code if county and county.code else "TZ")
    prefix = f"{'XR' if kind == 'missing' else 'ZL'}-{code}-{to_local(now()).strftime('%Y%m%d')}-"
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(CaseCounter).values(prefix=prefix, value=1).on_conflict_do_update(
        index_elements=[CaseCounter.prefix], set_={"value": CaseCounter.value + 1}).returning(CaseCounter.value)
    n: int = (await session.execute(stmt)).scalar_one()
    return f"{prefix}{n:04d}"


# ---------------------------------------------------------------- consistency (NamUs-style)
def _km(a: Node | Jurisdiction | None, b: Node | Jurisdiction | None) -> float | None:
    if a is None or b is None or a.lat is None or b.lat is None or a.lon is None or b.lon is None:
        return None
    p = math.pi / 180
    x = (b.lon - a.lon) * p * math.cos((a.lat + b.lat) * p / 2)
    y = (b.lat - a.lat) * p
    return 6371.0 * math.hypot(x, y)


def consistency(m: PersonCase, f: PersonCase, *, km: float | None = None) -> tuple[list[dict], float]:
    """Flags comparing a missing person with a found one, and the total penalty.

    Each flag is {"code", "ok", **params}; the text is ``missing.flag_<code>``. ``km`` is the
    distance between the two places (None: unknown)."""
    flags: list[dict] = []
    penalty = 0.0
    if m.sex and f.sex:
        if m.sex == f.sex:
            flags.append({"code": "sex_match", "ok": True, "sex": m.sex})
        else:
            flags.append({"code": "sex_mismatch", "ok": False, "m": m.sex, "f": f.sex})
            penalty += PENALTY["sex_mismatch"]
    else:
        flags.append({"code": "sex_unknown", "ok": True})
    if m.age is not None and f.age is not None:
        elapsed = 0
        if m.seen_at and f.seen_at and f.seen_at > m.seen_at:
            elapsed = int((f.seen_at - m.seen_at).days // 365)
        expected = m.age + elapsed
        diff = abs(expected - f.age)
        if diff <= AGE_TOLERANCE:
            flags.append({"code": "age_ok", "ok": True, "expected": expected, "found": f.age, "diff": diff})
        else:
            flags.append({"code": "age_gap", "ok": False, "expected": expected, "found": f.age, "diff": diff})
            penalty += PENALTY["age_gap"]
    else:
        flags.append({"code": "age_unknown", "ok": True})
    if m.height_cm and f.height_cm:
        diff = abs(m.height_cm - f.height_cm)
        ok = diff <= HEIGHT_TOLERANCE
        flags.append({"code": "height_ok" if ok else "height_gap", "ok": ok, "m": m.height_cm,
                      "f": f.height_cm, "diff": diff})
        penalty += 0.0 if ok else PENALTY["height_gap"]
    if m.seen_at and f.seen_at:
        if f.seen_at >= m.seen_at:
            flags.append({"code": "time_ok", "ok": True, "seen": fmt_local(m.seen_at), "found": fmt_local(f.seen_at)})
        else:
            flags.append({"code": "time_before", "ok": False, "seen": fmt_local(m.seen_at),
                          "found": fmt_local(f.seen_at)})
            penalty += PENALTY["time_before"]
    else:
        flags.append({"code": "time_unknown", "ok": True})
    if km is not None:
        near = km <= NEAR_KM
        flags.append({"code": "place_near" if near else "place_far", "ok": near, "km": int(round(km))})
    return flags, penalty


def explain_flags(t, flags: list[dict]) -> str:
    out = []
    for fl in flags:
        params = {k: v for k, v in fl.items() if k not in ("code", "ok")}
        if fl["code"].startswith("sex"):
            for k in ("sex", "m", "f"):
                if k in params:
                    params[k] = t(f"missing.sex_{params[k]}")
        out.append(t(f"missing.flag_{fl['code']}", **params))
    return "\n".join(out)


async def _distance(session: AsyncSession, m: PersonCase, f: PersonCase) -> float | None:
    """km between the two places, from the most specific place of each that has coordinates."""
    async def located(j):
        if j is None:
            return None
        for node in reversed(await users.ancestors(session, j)):
            if node.lat is not None:
                return node
        return None

    return _km(await located(m.jurisdiction), await located(f.jurisdiction))


# ---------------------------------------------------------------- create cases
async def _examine_all(faces, photos: list[Photo]) -> list:
    out = []
    for i, p in enumerate(photos):
        try:
            out.append(await check_photo(faces, p.data, p.choose))
        except DomainError as e:
            e.params.setdefault("image", i + 1)
            raise
    return out


async def _store_photos(session: AsyncSession, store, photos: list[Photo], owner_id: int,
                        uploader: int) -> list[int]:
    ids = []
    for i, p in enumerate(photos):
        f = await store_file(session, store, p.data, mime=p.mime, filename=f"photo{i + 1}.jpg",
                             owner_kind="missing_case", owner_id=owner_id, uploaded_by=uploader)
        ids.append(f.id)
    return ids


async def case_by_draft(session: AsyncSession, user: User, draft_key: str) -> PersonCase:
    """The case a draft of this person became (a second tap on 提交 gets its number)."""
    case = await _existing_draft(session, draft_key)
    if case is None or case.reporter_id != user.id:
        raise Conflict("common.stale_button")
    return case


async def _existing_draft(session: AsyncSession, draft_key: str | None) -> PersonCase | None:
    if not draft_key:
        return None
    return await session.scalar(select(PersonCase).where(PersonCase.draft_key == draft_key))


async def _create(session: AsyncSession, *, kind: str, reporter: User, faces, store,
                  photos: list[Photo], draft_key: str | None = None, **fields) -> Outcome:
    """One case per draft: a second submit of the same draft (a double tap, a retried
    request) returns the first case instead of creating another."""
    done = await _existing_draft(session, draft_key)
    if done is not None:
        return Outcome(case=done, created=False, face_available=done.face_state != "pending")
    if not photos:
        raise MissingError("missing.err_no_photo")
    if len(photos) > MAX_PHOTOS:
        raise MissingError("missing.err_too_many_photos", max=MAX_PHOTOS)
    available = faces_ready(faces)
    # Every photo is checked before anything is written: a bad photo leaves nothing behind.
    seen = await _examine_all(faces, photos) if available else []
    j = fields.get("jurisdiction")
    case = PersonCase(kind=kind, status=OPEN, face_key=uuid.uuid4().hex, reporter_id=reporter.id,
                      case_no=await next_case_no(session, kind, j), draft_key=draft_key,
                      photo_faces=[e.placement() for e in seen],
                      jurisdiction_id=j.id if j else None, **{k: v for k, v in fields.items() if k != "jurisdiction"})
    case.jurisdiction = j
    session.add(case)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        # the same draft submitted at the same moment by another update: that one won
        done = await _existing_draft(session, draft_key)
        if done is None:
            raise
        return Outcome(case=done, created=False, face_available=done.face_state != "pending")
    session.add(CaseEvent(case_id=case.id, actor=f"user:{reporter.id}", from_status=None, to_status=OPEN,
                          note="reported" if kind == "missing" else "registered"))
    case.photo_ids = await _store_photos(session, store, photos, case.id, reporter.id)
    await publish(session, RecordChanged("missing", case.id))
    await users.audit(session, f"user:{reporter.id}", f"missing.{kind}_created", f"missing:{case.id}",
                      case_no=case.case_no, phone=mask_phone(case.phone))
    out = Outcome(case=case, face_available=available, different=different_people([e.embedding for e in seen]))
    if out.different:  # the reporter was asked in chat and kept them: the officers should know
        _note(session, case, f"user:{reporter.id}",
              "photo(s) %s look like another person than the others" % ", ".join(str(i + 1) for i in out.different))
    poor = [str(i + 1) for i, e in enumerate(seen) if e.quality.grade == "poor"]
    if poor:
        _note(session, case, f"user:{reporter.id}", f"photo(s) {', '.join(poor)} kept although graded poor")
    if not available:
        case.face_state = "pending"
        return out
    out.candidates = await _enrol_and_match(session, faces, case, [e.embedding for e in seen])
    log.info("missing %s %s created by user %s: %d candidate(s)", kind, case.case_no, reporter.id,
             len(out.candidates))
    return out


async def _enrol_and_match(session: AsyncSession, faces, case: PersonCase, vecs: list) -> list[MatchCandidate]:
    """Put the vectors in the case's gallery (vector id = photo number) and propose candidates
    from the other one, remembering which photo of each side matched best."""
    gallery, other = _galleries(case)
    try:
        await faces.engine.run(faces.enroll_vectors, gallery, case.face_key, vecs, [str(i) for i in range(len(vecs))])
        case.face_state = "enrolled"
        return await _propose(session, case, await _search_other(faces, other, list(enumerate(vecs))))
    except BaseException:
        # the transaction will roll back: take the vectors back out too
        await faces.engine.run(faces.erase, case.face_key)
        raise


def _galleries(case: PersonCase) -> tuple[str, str]:
    """The case's own gallery and the one it is searched against."""
    return ("missing", "found") if case.kind == "missing" else ("found", "missing")


async def _search_other(faces, other: str, photos: list[tuple[int, Any]]) -> dict[str, tuple[float, int, int]]:
    """Each person of ``other`` above the review threshold for any of the (photo number,
    vector) pairs: their best score, which of our photos and which of theirs matched."""
    best: dict[str, tuple[float, int, int]] = {}
    for i, v in photos:
        for mt, vid in await faces.engine.run(faces.search_vector_photos, other, v, SEARCH_K,
                                              min_score=faces.threshold):
            if mt.score > best.get(mt.person_id, (-1.0, 0, 0))[0]:
                best[mt.person_id] = (mt.score, i, int(vid) if vid.isdigit() else 0)
    return best


REMATCH_WINDOW = timedelta(minutes=15)


def rematch_due(at: datetime | None = None):
    """Open cases enrolled within ``REMATCH_WINDOW``: the ones :func:`rematch` looks at again."""
    since = (at or now()) - REMATCH_WINDOW
    return select(PersonCase.id).where(PersonCase.status == OPEN, PersonCase.face_state == "enrolled",
                                       PersonCase.created_at >= since).order_by(PersonCase.id)


async def rematch(session: AsyncSession, faces, case: PersonCase) -> list[MatchCandidate]:
    """Search the other gallery again with the case's enrolled faces. A report and a
    registration of the same person saved at the same moment — two requests, or two replicas
    before their galleries were in step — each searched before the other was saved, so neither
    proposed the pair; this proposes it (pairs already proposed, or rejected, stay as they are)."""
    if case.status != OPEN or case.face_state != "enrolled":
        return []
    gallery, other = _galleries(case)
    vids, vecs = await faces.engine.run(faces.vectors, gallery, case.face_key)
    photos = [(int(v) if v.isdigit() else 0, vec) for v, vec in zip(vids, vecs)]
    return await _propose(session, case, await _search_other(faces, other, photos))


async def enrol_pending(session: AsyncSession, faces, store, case: PersonCase) -> list[MatchCandidate]:
    """Match a case saved while face matching was unavailable. Photos that now turn out to
    show no face or several faces are skipped (an officer can register the person again)."""
    if case.face_state != "pending" or case.status != OPEN:
        return []
    vecs, placements = [], []
    for fid in case.photo_ids or []:
        f = await session.get(StoredFile, fid)
        data = await read_blob(store, f.sha256) if f else None
        try:
            e = await check_photo(faces, data) if data is not None else None
        except DomainError:
            e = None
        placements.append(e.placement() if e else {})
        if e is not None:
            vecs.append(e.embedding)
    case.photo_faces = placements
    if not vecs:
        case.face_state = "unusable"
        return []
    return await _enrol_and_match(session, faces, case, vecs)


async def create_missing(session: AsyncSession, reporter: User, *, faces, store, photos: list[Photo],
                         name: str, sex: str | None, age: int | None, height_cm: int | None,
                         jurisdiction: Jurisdiction | None, place: str | None, seen_at: datetime | None,
                         clothing: str | None, health: str | None, phone: str,
                         draft_key: str | None = None) -> Outcome:
    name = (name or "").strip()
    if not 1 <= len(name) <= 64:
        raise MissingError("missing.err_name")
    return await _create(session, kind="missing", reporter=reporter, faces=faces, store=store,
                         photos=photos, draft_key=draft_key, name=name, sex=sex, age=age, height_cm=height_cm,
                         jurisdiction=jurisdiction, place=place, seen_at=seen_at, clothing=clothing,
                         health=health, phone=parse_phone(phone))


async def register_found(session: AsyncSession, officer: User, *, faces, store, photos: list[Photo],
                         jurisdiction: Jurisdiction | None, place: str | None, age: int | None,
                         sex: str | None, seen_at: datetime | None = None, name: str | None = None,
                         height_cm: int | None = None, clothing: str | None = None, features: str | None = None,
                         notes: str | None = None, draft_key: str | None = None) -> Outcome:
    """A found / stranded person: several photos, when and where found, what they wear, marks,
    the name they give (may be wrong or missing) and the officer's notes."""
    require_officer(officer)
    return await _create(session, kind="found", reporter=officer, faces=faces, store=store,
                         photos=photos, draft_key=draft_key, jurisdiction=jurisdiction or officer.jurisdiction,
                         place=place, age=age, sex=sex, seen_at=seen_at or now(), name=(name or "").strip()[:64] or None,
                         height_cm=height_cm, clothing=clothing, features=features, notes=notes)


# ---------------------------------------------------------------- candidates → review queue
async def _propose(session: AsyncSession, case: PersonCase, best: dict[str, tuple[float, int, int]]
                   ) -> list[MatchCandidate]:
    if not best:
        return []
    others = {c.face_key: c for c in await session.scalars(
        select(PersonCase).where(PersonCase.face_key.in_(list(best)), PersonCase.status == OPEN))}
    made = []
    for key, (score, mine, theirs) in best.items():
        other = others.get(key)
        if other is None or other.kind == case.kind:
            continue
        m, f = (case, other) if case.kind == "missing" else (other, case)
        m_photo, f_photo = (mine, theirs) if case.kind == "missing" else (theirs, mine)
        exists = await session.scalar(select(MatchCandidate).where(
            MatchCandidate.missing_id == m.id, MatchCandidate.found_id == f.id))
        if exists is not None:
            continue
        flags, penalty = consistency(m, f, km=await _distance(session, m, f))
        c = MatchCandidate(missing_id=m.id, found_id=f.id, score=float(score), rank_score=float(score) - penalty,
                           flags=flags, status=PENDING, missing_photo=m_photo, found_photo=f_photo, checklist=[])
        c.missing, c.found = m, f
        session.add(c)
        made.append(c)
    await session.flush()
    made.sort(key=lambda c: -c.rank_score)
    return made


async def _photo_bytes(session: AsyncSession, store, case: PersonCase, n: int) -> bytes | None:
    ids = case.photo_ids or []
    if not 0 <= n < len(ids):
        return None
    f = await session.get(StoredFile, ids[n])
    return await read_blob(store, f.sha256) if f else None


def _placement(case: PersonCase, n: int) -> dict | None:
    faces = case.photo_faces or []
    return faces[n] if 0 <= n < len(faces) and faces[n] else None


async def review_image(session: AsyncSession, store, c: MatchCandidate) -> StoredFile | None:
    """The review card of a candidate: the matched face crops large and side by side, each over
    its source photo with the face boxed (made once, kept as a stored file until deletion)."""
    existing = await session.scalar(select(StoredFile).where(
        StoredFile.owner_kind == "missing_candidate", StoredFile.owner_id == c.id))
    if existing is not None and await store.exists(blob_key(existing.sha256)):
        return existing
    m, f = c.missing, c.found
    left = await _photo_bytes(session, store, m, c.missing_photo)
    right = await _photo_bytes(session, store, f, c.found_photo)
    if left is None or right is None:
        return None
    caption = f"{m.case_no}  <->  {f.case_no}    score {c.score:.3f}"
    jpeg = await asyncio.to_thread(
        evidence.review_card,
        (left, _placement(m, c.missing_photo), f"MISSING  photo {c.missing_photo + 1}/{len(m.photo_ids)}"),
        (right, _placement(f, c.found_photo), f"FOUND  photo {c.found_photo + 1}/{len(f.photo_ids)}"), caption)
    if existing is not None:
        await session.delete(existing)
    return await store_file(session, store, jpeg, mime="image/jpeg", filename="review.jpg",
                            owner_kind="missing_candidate", owner_id=c.id)


async def reviewers_for(session: AsyncSession, c: MatchCandidate, *, but: int | None = None) -> list[User]:
    """Officers whose jurisdiction contains the missing or the found person's place."""
    officers = await users.users_with_role(session, Role.officer)
    return [u for u in officers if u.id != but and (within(u, c.missing.jurisdiction) or within(u, c.found.jurisdiction))]


def review_params(t, c: MatchCandidate) -> dict:
    m, f = c.missing, c.found
    return dict(missing_no=m.case_no, found_no=f.case_no, score=f"{c.score:.3f}", rank=f"{c.rank_score:.3f}",
                name=m.name or "-", m_place=_place(m), f_place=_place(f),
                m_seen=fmt_local(m.seen_at), f_seen=fmt_local(f.seen_at), health=m.health or "-",
                m_photo=c.missing_photo + 1, m_photos=len(m.photo_ids or []),
                f_photo=c.found_photo + 1, f_photos=len(f.photo_ids or []),
                flags=explain_flags(t, c.flags))


def _place(case: PersonCase) -> str:
    parts = [case.jurisdiction.name if case.jurisdiction else None, case.place]
    return " ".join(p for p in parts if p) or "-"


def review_of(c: MatchCandidate, settings=None) -> Review:
    return Review(c, _settings(settings).missing_second_confirmation, now())


def actions_for(user: User, c: MatchCandidate, settings=None) -> list[CandidateAction]:
    """What ``user`` may do with the candidate now (chat buttons, API and console alike)."""
    return [a for a in CANDIDATES.available(user, review_of(c, settings))
            if a not in (CandidateAction.supersede, CandidateAction.withdraw)]


async def queue_for_review(session: AsyncSession, store, candidates: list[MatchCandidate],
                           key: str = "missing.review_new") -> int:
    """Tell the officers concerned; one review card per candidate, with the actions each may take.
    The buttons are the handler's business: the outbox carries the candidate id and the
    actions (``review_buttons``) the bot layer turns into callback data."""
    from backend.core.i18n import Translator

    sent = 0
    for c in candidates:
        img = await review_image(session, store, c)
        for officer in await reviewers_for(session, c):
            t = Translator(officer.language)
            # urgent: a vulnerable person may be waiting in a shelter; duty officers work nights
            await notify(session, officer, key, buttons=review_buttons(officer, c), urgent=True,
                         photo_path=blob_key(img.sha256) if img else None,
                         dedupe_key=f"missing:{key}:{c.id}:{c.status}:{officer.id}", **review_params(t, c))
            sent += 1
    return sent


# The outbox stores buttons as (label key, callback data). The data is built by the bot layer's
# factory (handlers/missing.py registers it here at import: services never format callback
# strings); without a bot (API-only process) messages go out without buttons.
_review_button_factory = None


def set_review_button_factory(factory) -> None:
    global _review_button_factory
    _review_button_factory = factory


def review_buttons(user: User, c: MatchCandidate) -> list[list[tuple[str, str]]]:
    if _review_button_factory is None:
        return []
    return _review_button_factory(actions_for(user, c), c.id)


def require_officer(user: User) -> None:
    if Role(user.role) not in (Role.officer, Role.admin):
        raise Forbidden("missing.err_officers_only")


def facts(case: PersonCase) -> Facts:
    """A case as the access policy sees it (backend/core/policy.py): its reporter and its place."""
    return Facts.of(owners=case.reporter_id, place=case.jurisdiction)


def match_facts(c: MatchCandidate) -> Facts:
    """A face-match candidate: visible where either of its two cases lies."""
    return Facts.of(place=[c.missing.jurisdiction, c.found.jurisdiction])


def can_review(user: User, c: MatchCandidate) -> bool:
    return may(user, Action.handle, Kind.match, match_facts(c))


async def get_candidate(session: AsyncSession, user: User, cid: int) -> MatchCandidate:
    require_officer(user)
    c = await session.get(MatchCandidate, cid)
    if c is None or not can_review(user, c):
        raise NotFound("missing.err_candidate_not_found")
    return c


async def pending_reviews(session: AsyncSession, user: User) -> list[MatchCandidate]:
    require_officer(user)
    rows = await session.scalars(select(MatchCandidate).where(MatchCandidate.status.in_([PENDING, CHECKED]))
                                 .order_by(MatchCandidate.rank_score.desc(), MatchCandidate.id))
    return [c for c in rows if can_review(user, c)]


# ---------------------------------------------------------------- decisions
def _decide(user: User, c: MatchCandidate, action: CandidateAction, settings=None) -> CandidateStatus:
    try:
        t = CANDIDATES.check(user, review_of(c, settings), action)
    except Conflict:
        raise MissingError("missing.err_review_done") from None
    except Forbidden:
        if action == CandidateAction.second and c.first_reviewer_id == user.id:
            raise Forbidden("missing.err_second_same_officer") from None
        if action == CandidateAction.undo:
            raise MissingError("missing.err_undo_closed") from None
        raise
    return moved(t.target)


async def begin_decision(session: AsyncSession, user: User, cid: int, action: CandidateAction,
                         settings=None) -> MatchCandidate:
    """The candidate, if ``user`` may take ``action`` on it now (before asking the checklist or
    the reason); raises like the decision itself would."""
    c = await get_candidate(session, user, cid)
    _decide(user, c, action, settings)
    return c


async def _timeline(session: AsyncSession, c: MatchCandidate, actor: str, note: str) -> None:
    for case in (c.missing, c.found):
        _note(session, case, actor, note)


async def confirm(session: AsyncSession, user: User, cid: int, note: str | None = None, *,
                  checklist: list[str] | None = None, settings=None) -> MatchCandidate:
    """Step one: the officer ticked the checklist (the face at least). With the second
    confirmation on (default) the candidate waits for another officer; otherwise it is released."""
    c = await get_candidate(session, user, cid)
    ticked = [x for x in CHECKLIST if x in set(checklist if checklist is not None else CHECKLIST)]
    if "face" not in ticked:
        raise MissingError("missing.err_checklist_face")
    target = _decide(user, c, CandidateAction.confirm, settings)
    c.checklist, c.first_reviewer_id, c.note = ticked, user.id, note
    actor = f"user:{user.id}"
    await users.audit(session, actor, "missing.match_checked", f"candidate:{c.id}", score=c.score,
                      checklist=",".join(ticked))
    await _timeline(session, c, actor, f"match #{c.id}: first confirmation ({', '.join(ticked)})")
    if target == CandidateStatus.checked:
        c.status = CHECKED
        await _ask_second(session, c, user)
        return c
    return await _release(session, user, c, settings)


async def second_confirm(session: AsyncSession, user: User, cid: int, note: str | None = None, *,
                         settings=None) -> MatchCandidate:
    """Step two: another officer of the place (or an admin) confirms; the match is released."""
    c = await get_candidate(session, user, cid)
    _decide(user, c, CandidateAction.second, settings)
    if note:
        c.note = f"{c.note or ''}\n{note}".strip()
    await _timeline(session, c, f"user:{user.id}", f"match #{c.id}: second confirmation")
    return await _release(session, user, c, settings)


async def _ask_second(session: AsyncSession, c: MatchCandidate, first: User) -> None:
    from backend.core.i18n import Translator

    for officer in await reviewers_for(session, c, but=first.id):
        t = Translator(officer.language)
        await notify(session, officer, "missing.review_second", buttons=review_buttons(officer, c), urgent=True,
                     dedupe_key=f"missing:second:{c.id}:{officer.id}:{now().isoformat()}", first=first.name or "-",
                     checklist=", ".join(t(f"missing.check_{x}") for x in c.checklist), **review_params(t, c))


async def _release(session: AsyncSession, user: User, c: MatchCandidate, settings=None) -> MatchCandidate:
    """Confirmed: both cases are found; the family and the found person's officer are told when
    the undo window closes (outbox messages due then); biometrics go after the retention period."""
    st = _settings(settings)
    c.status, c.reviewer_id, c.reviewed_at = CONFIRMED, user.id, now()
    c.release_at = now() + timedelta(minutes=st.missing_undo_minutes)
    actor = f"user:{user.id}"
    for case in (c.missing, c.found):
        if case.status != OPEN:
            raise MissingError("missing.err_case_not_open", case_no=case.case_no)
        await transition(session, case, moved(CASES.target(case, CaseAction.match)).value, actor=actor,
                         note=f"match #{c.id} confirmed")
    others = await session.scalars(select(MatchCandidate).where(
        MatchCandidate.status.in_([PENDING, CHECKED]), MatchCandidate.id != c.id,
        or_(MatchCandidate.missing_id.in_([c.missing_id, c.found_id]),
            MatchCandidate.found_id.in_([c.missing_id, c.found_id]))))
    for o in others:  # other proposals for either person are moot now
        o.status = moved(CANDIDATES.target(review_of(o, st), CandidateAction.supersede)).value
    m, f = c.missing, c.found
    officer = await session.get(User, c.first_reviewer_id) if c.first_reviewer_id else user
    await notify(session, m.reporter_id, "missing.family_found", urgent=True, at=c.release_at,
                 dedupe_key=f"missing:found:{m.id}:{c.id}", case_no=m.case_no, name=m.name or "-",
                 place=_place(f), officer=(officer.name if officer else None) or "-")
    if f.reporter_id not in (user.id, c.first_reviewer_id):
        await notify(session, f.reporter_id, "missing.found_reporter_matched", at=c.release_at,
                     dedupe_key=f"missing:found:{f.id}:{c.id}", case_no=f.case_no, missing_no=m.case_no)
    when = c.release_at + timedelta(days=st.missing_match_retention_days)
    for case in (m, f):
        if case.face_state not in ("deleted", "none"):
            case.face_state, case.face_delete_at = "scheduled", when
    await users.audit(session, actor, "missing.match_confirmed", f"candidate:{c.id}", score=c.score,
                      missing=m.case_no, found=f.case_no)
    return c


async def reject(session: AsyncSession, user: User, cid: int, note: str | None = None, *,
                 reason: str | None = None, settings=None) -> MatchCandidate:
    """Not the same person, with a reason from the list (and free text for "other")."""
    c = await get_candidate(session, user, cid)
    reason = reason or "other"
    if reason not in REJECT_REASONS:
        raise MissingError("missing.err_reason")
    if reason == "other" and not (note or "").strip():  # "other" says nothing without its words
        raise MissingError("missing.err_reason_text")
    _decide(user, c, CandidateAction.reject, settings)
    c.status, c.reviewer_id, c.reviewed_at, c.reason = REJECTED, user.id, now(), reason
    c.note = (note or "").strip()[:500] or None
    c.release_at = now() + timedelta(minutes=_settings(settings).missing_undo_minutes)
    actor = f"user:{user.id}"
    await users.audit(session, actor, "missing.match_rejected", f"candidate:{c.id}", score=c.score,
                      reason=reason, note=c.note)
    await _timeline(session, c, actor, f"match #{c.id} rejected ({reason}{': ' + c.note if c.note else ''})")
    return c


async def undo(session: AsyncSession, user: User, cid: int, *, settings=None) -> MatchCandidate:
    """Take a decision back while its undo window is open: nobody has been told yet, the
    messages due at the window's end are withdrawn, both cases and the queue are as before."""
    c = await get_candidate(session, user, cid)
    was = c.status
    _decide(user, c, CandidateAction.undo, settings)
    actor = f"user:{user.id}"
    if was == CONFIRMED:
        m, f = c.missing, c.found
        keys = [f"missing:found:{m.id}:{c.id}", f"missing:found:{f.id}:{c.id}"]
        await session.execute(sql_delete(Outbox).where(Outbox.dedupe_key.in_(keys), Outbox.sent_at.is_(None)))
        for case in (m, f):
            await transition(session, case, moved(CASES.target(case, CaseAction.undo_match)).value, actor=actor,
                             note=f"match #{c.id} undone")
            if case.face_state == "scheduled":
                case.face_state, case.face_delete_at = "enrolled", None
        await session.execute(update(MatchCandidate).where(
            MatchCandidate.status == SUPERSEDED,
            or_(MatchCandidate.missing_id.in_([m.id, f.id]), MatchCandidate.found_id.in_([m.id, f.id])))
            .values(status=PENDING))
    c.status, c.reviewer_id, c.reviewed_at, c.release_at = PENDING, None, None, None
    c.first_reviewer_id, c.checklist, c.reason = None, [], None
    await users.audit(session, actor, "missing.decision_undone", f"candidate:{c.id}", was=was)
    if was != CONFIRMED:
        await _timeline(session, c, actor, f"match #{c.id}: {was} undone")
    return c


# ---------------------------------------------------------------- evidence (chat, API, console)
async def review_evidence(session: AsyncSession, user: User, cid: int, store) -> dict:
    """Everything an officer decides on: the matched photo of each side with the face box and
    quality, every photo of both cases, the flags and the actions this officer may take."""
    c = await get_candidate(session, user, cid)
    await review_image(session, store, c)

    def side(case: PersonCase, matched: int) -> dict:
        return {"id": case.id, "case_no": case.case_no, "matched_photo": matched,
                "photos": [{"n": i, "url": f"/api/missing/cases/{case.id}/photos/{i}",
                            "face": _placement(case, i)} for i in range(len(case.photo_ids or []))]}

    await users.audit(session, f"user:{user.id}", "missing.evidence_read", f"candidate:{c.id}")
    return {**candidate_public(c), "missing": side(c.missing, c.missing_photo), "found": side(c.found, c.found_photo),
            "actions": [a.value for a in actions_for(user, c)], "checklist": c.checklist or [],
            "reason": c.reason, "release_at": c.release_at.isoformat() if c.release_at else None}


async def marked_photos(session: AsyncSession, user: User, case_id: int, store) -> list[dict]:
    """Every photo of a case (officers of the place, the reporter) with the used face boxed."""
    case = await get_case(session, user, case_id)
    out = []
    for n in range(len(case.photo_ids or [])):
        data = await _photo_bytes(session, store, case, n)
        if data is None:
            continue
        placement = _placement(case, n)
        out.append({"n": n, "total": len(case.photo_ids), "grade": (placement or {}).get("grade", "unknown"),
                    "jpeg": await asyncio.to_thread(evidence.marked_jpeg, data, placement)})
    await users.audit(session, f"user:{user.id}", "missing.photos_read", f"missing:{case.id}", n=len(out))
    return out


# ---------------------------------------------------------------- deletion (biometric data and photos)
async def _drop_files(session: AsyncSession, store, rows: list[StoredFile]) -> None:
    """Delete stored files (rows and blobs). A blob another row still uses (the same photo
    uploaded elsewhere) stays for that row; outbox messages not yet sent lose the picture."""
    for f in rows:
        await session.delete(f)
    await session.flush()
    for sha in {f.sha256 for f in rows}:
        if await session.scalar(select(func.count(StoredFile.id)).where(StoredFile.sha256 == sha)):
            continue
        key = blob_key(sha)
        await session.execute(update(Outbox).where(Outbox.photo_path == key, Outbox.sent_at.is_(None))
                              .values(photo_path=None))
        await store.delete(key)


async def erase_case_data(session: AsyncSession, case: PersonCase, faces, settings, *, actor: str, store) -> int:
    """Erase at once: face vectors (every gallery), the photos (originals), the review cards of
    every candidate of the case. Works without the face model. Returns the vectors erased."""
    if case.face_state == "deleted" and not case.photo_ids:
        return 0
    svc = faces
    if svc is None or not hasattr(svc, "erase"):
        from backend.faces.service import FaceService

        svc = FaceService(settings)  # galleries only, no model needed to erase
    n = await asyncio.to_thread(svc.erase, case.face_key)
    if svc is not faces:
        await asyncio.to_thread(svc.close)  # its database connections (face_store=db)
    cand_ids = list(await session.scalars(select(MatchCandidate.id).where(
        or_(MatchCandidate.missing_id == case.id, MatchCandidate.found_id == case.id))))
    rows = list(await session.scalars(select(StoredFile).where(or_(
        StoredFile.id.in_(case.photo_ids or [-1]),
        (StoredFile.owner_kind == "missing_case") & (StoredFile.owner_id == case.id),
        (StoredFile.owner_kind == "missing_candidate") & StoredFile.owner_id.in_(cand_ids or [-1])))))
    await _drop_files(session, store, rows)
    case.photo_ids, case.photo_faces = [], []
    case.face_state, case.face_delete_at = "deleted", None
    _note(session, case, actor, f"face data and photos deleted ({n} vectors, {len(rows)} files)")
    await users.audit(session, actor, "missing.faces_deleted", f"missing:{case.id}", vectors=n, files=len(rows))
    return n


async def close_case(session: AsyncSession, user: User, case_id: int, faces, settings, *,
                     note: str | None = None, store) -> PersonCase:
    """The reporter withdraws, or an officer of the jurisdiction closes: biometrics and photos go at once."""
    case = await session.get(PersonCase, case_id)
    if case is None:
        raise NotFound("missing.err_case_not_found")
    if not may(user, Action.read, Kind.missing, facts(case)):
        raise NotFound("missing.err_case_not_found")  # its existence is not revealed
    if case.status == CLOSED:
        if case.reporter_id == user.id or (is_officer(user) and within(user, case.jurisdiction)):
            raise MissingError("missing.err_already_closed", case_no=case.case_no)
        raise Forbidden("common.err_forbidden")
    action = CaseAction.withdraw if case.reporter_id == user.id else CaseAction.close
    try:
        await _act(session, user, case, action, note or ("withdrawn" if action == CaseAction.withdraw else "closed"))
    except Forbidden:
        raise Forbidden("common.err_forbidden") from None
    pend = await session.scalars(select(MatchCandidate).where(
        MatchCandidate.status.in_([PENDING, CHECKED]),
        or_(MatchCandidate.missing_id == case.id, MatchCandidate.found_id == case.id)))
    for c in pend:
        c.status = moved(CANDIDATES.target(review_of(c, settings), CandidateAction.withdraw)).value
    await erase_case_data(session, case, faces, settings, actor=f"user:{user.id}", store=store)
    return case


def retention_due(settings=None) -> tuple:
    """The due-date queries of the retention sweep (``scheduler/jobs/missing.py`` claims the
    rows): released matches whose retention has passed, help requests older than theirs."""
    st = _settings(settings)
    cases = (select(PersonCase).where(PersonCase.face_state == "scheduled", PersonCase.face_delete_at <= now())
             .order_by(PersonCase.face_delete_at).limit(200))
    cutoff = now() - timedelta(days=st.missing_assist_retention_days)
    requests = (select(AssistRequest).where(AssistRequest.created_at <= cutoff, AssistRequest.status != "expired")
                .order_by(AssistRequest.id).limit(200))
    return cases, requests


async def expire_assist(session: AsyncSession, req: AssistRequest, store) -> None:
    """A help request past its retention keeps its answers, loses its photos."""
    ids = [i for i in (req.photo_id, req.marked_photo_id) if i]
    rows = list(await session.scalars(select(StoredFile).where(StoredFile.id.in_(ids or [-1]))))
    req.photo_id, req.marked_photo_id, req.status = None, None, "expired"
    await session.flush()
    await _drop_files(session, store, rows)


def is_officer(user: User) -> bool:
    return Role(user.role) in (Role.officer, Role.admin)


# ---------------------------------------------------------------- reading cases
def can_see_case(user: User, case: PersonCase) -> bool:
    return may(user, Action.read, Kind.missing, facts(case))


async def visible_cases_by_face(session: AsyncSession, user: User, face_keys: list[str]) -> dict[str, str]:
    """Face key → case number, of the cases among ``face_keys`` that ``user`` may open (a face
    search never names a case elsewhere)."""
    rows = await session.scalars(select(PersonCase).where(PersonCase.face_key.in_(face_keys)))
    return {c.face_key: c.case_no for c in rows if can_see_case(user, c)}


async def visible_numbers(session: AsyncSession, user: User) -> set[str]:
    """Numbers of every case ``user`` may open — what /ask and citation cards may show them.
    The same facts and the same table as :func:`can_see_case`, read in one query."""
    places = await users.tree.current(session)
    q = select(PersonCase.case_no, PersonCase.reporter_id, PersonCase.jurisdiction_id)
    inside = places_inside(user, places.nodes)
    if inside is not None:  # only rows that could pass; may() decides
        q = q.where(or_(PersonCase.reporter_id == user.id, PersonCase.jurisdiction_id.in_(inside)))
    rows = await session.execute(q)
    return {n for n, r, j in rows if may(user, Action.read, Kind.missing, Facts.of(owners=r, place=places.get(j)))}


async def get_case(session: AsyncSession, user: User, case_id: int) -> PersonCase:
    case = await session.get(PersonCase, case_id)
    if case is None or not can_see_case(user, case):
        # a citizen must not learn that somebody else's case exists
        raise NotFound("missing.err_case_not_found")
    return case


async def list_cases(session: AsyncSession, user: User, *, kind: str | None = None,
                     status: str | None = None) -> list[PersonCase]:
    q = select(PersonCase).order_by(PersonCase.id.desc())
    if kind:
        q = q.where(PersonCase.kind == kind)
    if status:
        q = q.where(PersonCase.status == status)
    if Role(user.role) == Role.admin:
        return list(await session.scalars(q))
    if Role(user.role) == Role.officer:
        return [c for c in await session.scalars(q) if can_see_case(user, c)]
    return list(await session.scalars(q.where(PersonCase.reporter_id == user.id)))


async def my_open_reports(session: AsyncSession, user: User) -> list[PersonCase]:
    return list(await session.scalars(select(PersonCase).where(
        PersonCase.reporter_id == user.id, PersonCase.status != CLOSED).order_by(PersonCase.id)))


def phone_for(user: User, case: PersonCase) -> str:
    """Raw phone for the reporter and officers of the jurisdiction; masked for everybody else."""
    if case.phone and can_see_case(user, case):
        return case.phone
    return mask_phone(case.phone)


async def photo_of(session: AsyncSession, user: User, case_id: int, n: int, store) -> tuple[bytes, str]:
    case = await get_case(session, user, case_id)
    if not 0 <= n < len(case.photo_ids or []):
        raise NotFound("missing.err_photo_not_found")
    f = await session.get(StoredFile, case.photo_ids[n])
    data = await read_blob(store, f.sha256) if f else None
    if f is None or data is None:
        raise NotFound("missing.err_photo_not_found")
    return data, f.mime


def case_public(user: User, case: PersonCase) -> dict:
    """What the API shows (no face key, phone per entitlement, photo links only when allowed)."""
    return {
        "id": case.id, "case_no": case.case_no, "kind": case.kind, "status": case.status,
        "name": case.name, "sex": case.sex, "age": case.age, "height_cm": case.height_cm,
        "jurisdiction": case.jurisdiction.name if case.jurisdiction else None, "place": case.place,
        "seen_at": case.seen_at.isoformat() if case.seen_at else None, "clothing": case.clothing,
        "health": case.health, "features": case.features, "notes": case.notes,
        "phone": phone_for(user, case), "face_state": case.face_state,
        "photos": [f"/api/missing/cases/{case.id}/photos/{i}" for i in range(len(case.photo_ids or []))],
        "created_at": case.created_at.isoformat(),
    }


def candidate_public(c: MatchCandidate) -> dict:
    return {"id": c.id, "status": c.status, "score": round(c.score, 4), "rank_score": round(c.rank_score, 4),
            "missing": {"id": c.missing.id, "case_no": c.missing.case_no},
            "found": {"id": c.found.id, "case_no": c.found.case_no},
            "flags": c.flags, "image": f"/api/missing/reviews/{c.id}/image"}


async def timeline(session: AsyncSession, user: User, case_id: int) -> list[CaseEvent]:
    case = await get_case(session, user, case_id)
    return list(await session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)))


# ---------------------------------------------------------------- 人像协作 (cross-region help)
async def assist_counties(session: AsyncSession, officer: User) -> list[Node]:
    """Counties a help request can be sent to: every county but the officer's own."""
    mine = await users.county_of(session, officer.jurisdiction) if officer.jurisdiction else None
    return [c for c in await counties(session) if mine is None or c.id != mine.id]


async def create_assist(session: AsyncSession, officer: User, *, store, photo: Photo, faces,
                        note: str | None, target_id: int | None = None) -> tuple[AssistRequest, int]:
    """Ask officers of one county (``target_id``) or of every other county (None) whether they
    know this face. They receive the photo with the chosen face boxed."""
    require_officer(officer)
    placement = None
    if faces_ready(faces):
        placement = (await check_photo(faces, photo.data, photo.choose)).placement()
    target = await users.jurisdiction(session, target_id) if target_id else None
    if target_id and (target is None or target.level != Level.county.value):
        raise MissingError("missing.err_assist_target")
    f = await store_file(session, store, photo.data, mime=photo.mime, filename="assist.jpg",
                         owner_kind="missing_assist", uploaded_by=officer.id)
    card = await asyncio.to_thread(evidence.face_card, photo.data, placement, "HELP REQUEST: who is this?")
    marked = await store_file(session, store, card, mime="image/jpeg", filename="assist-card.jpg",
                              owner_kind="missing_assist", uploaded_by=officer.id)
    req = AssistRequest(requester_id=officer.id, jurisdiction_id=officer.jurisdiction_id, photo_id=f.id,
                        note=(note or "").strip()[:500] or None, status="open", target_id=target_id,
                        face_box=placement["box"] if placement else None, marked_photo_id=marked.id)
    session.add(req)
    await session.flush()
    f.owner_id = marked.owner_id = req.id
    mine = await users.county_of(session, officer.jurisdiction) if officer.jurisdiction else None
    sent = 0
    for other in await users.users_with_role(session, Role.officer):
        if other.id == officer.id or other.jurisdiction is None:
            continue
        if not receives(mine, await users.county_of(session, other.jurisdiction), target_id):
            continue
        await notify(session, other, "missing.assist_new", photo_path=blob_key(marked.sha256),
                     urgent=True, buttons=assist_buttons(req.id), dedupe_key=f"missing:assist:{req.id}:{other.id}",
                     no=req.id, place=mine.name if mine else "-", officer=officer.name or "-", note=req.note or "-")
        sent += 1
    await users.audit(session, f"user:{officer.id}", "missing.assist_created", f"assist:{req.id}", recipients=sent,
                      target=target.name if target else "all")
    return req, sent


def receives(requester_county: Node | None, officer_county: Node | None, target_id: int | None) -> bool:
    """Is a help request from ``requester_county`` sent to an officer of ``officer_county``? Every
    other county's officers (a broadcast), or those of the one county asked."""
    if officer_county is None or (requester_county is not None and officer_county.id == requester_county.id):
        return False
    return target_id is None or officer_county.id == target_id


async def _sent_to(session: AsyncSession, officer: User, req: AssistRequest) -> bool:
    requester = await session.get(User, req.requester_id)
    theirs = await users.county_of(session, requester.jurisdiction) if requester and requester.jurisdiction else None
    mine = await users.county_of(session, officer.jurisdiction) if officer.jurisdiction else None
    return receives(theirs, mine, req.target_id)


async def assist_inbox(session: AsyncSession, officer: User, limit: int = 50) -> list[dict]:
    """The help requests sent to ``officer`` (other counties' requests, to every county or to the
    officer's own), newest first, with the requester, the note and the officer's answer if any."""
    require_officer(officer)
    out = []
    q = (select(AssistRequest).where(AssistRequest.requester_id != officer.id, AssistRequest.status != "expired")
         .order_by(AssistRequest.id.desc()).limit(500))
    for req in await session.scalars(q):
        if Role(officer.role) != Role.admin and not await _sent_to(session, officer, req):
            continue
        who = await session.get(User, req.requester_id)
        mine = await session.scalar(select(AssistAnswer).where(AssistAnswer.request_id == req.id,
                                                               AssistAnswer.officer_id == officer.id))
        case = await session.get(PersonCase, mine.case_id) if mine is not None and mine.case_id else None
        out.append({"id": req.id, "status": req.status, "note": req.note, "created_at": req.created_at,
                    "officer": who.name if who else "-",
                    "place": who.jurisdiction.name if who and who.jurisdiction else "-",
                    "target": await place_name(session, req.target_id), "has_photo": req.marked_photo_id is not None,
                    "answer": None if mine is None else {"case_no": case.case_no if case else None,
                                                         "note": mine.note}})
        if len(out) >= limit:
            break
    return out


async def assist_marked_photo(session: AsyncSession, officer: User, request_id: int, store) -> bytes:
    """The request's photo with the chosen face boxed, for its requester and the officers it was
    sent to (anyone else: 404); the read is audited."""
    return await _assist_photo(session, officer, request_id, store, marked=True, channel="web")


async def assist_search_photo(session: AsyncSession, officer: User, request_id: int, store) -> bytes:
    """The request's photo as taken, for a face search (the faces API) by the same readers as
    :func:`assist_marked_photo`; audited."""
    return await _assist_photo(session, officer, request_id, store, marked=False, channel="faces")


async def _assist_photo(session: AsyncSession, officer: User, request_id: int, store, *, marked: bool,
                        channel: str) -> bytes:
    require_officer(officer)
    req = await session.get(AssistRequest, request_id)
    if req is None or not (req.requester_id == officer.id or Role(officer.role) == Role.admin
                           or await _sent_to(session, officer, req)):
        raise NotFound("missing.err_assist_not_found")
    file_id = req.marked_photo_id if marked else req.photo_id
    f = await session.get(StoredFile, file_id) if file_id else None
    data = await read_blob(store, f.sha256) if f else None
    if data is None:
        raise NotFound("missing.err_assist_not_found")
    await audit_read(session, officer, Kind.assist, request_id, channel=channel, action="download")
    return data


_assist_button_factory = None


def set_assist_button_factory(factory) -> None:
    global _assist_button_factory
    _assist_button_factory = factory


def assist_buttons(request_id: int) -> list[list[tuple[str, str]]]:
    return _assist_button_factory(request_id) if _assist_button_factory is not None else []


async def answer_assist(session: AsyncSession, officer: User, request_id: int, case_no: str | None,
                        note: str | None = None) -> AssistAnswer:
    require_officer(officer)
    req = await session.get(AssistRequest, request_id)
    if req is None:
        raise NotFound("missing.err_assist_not_found")
    if req.requester_id == officer.id:
        raise MissingError("missing.err_assist_own")
    if Role(officer.role) != Role.admin and not await _sent_to(session, officer, req):
        raise NotFound("missing.err_assist_not_found")  # not sent to this officer's county
    if await session.scalar(select(AssistAnswer.id).where(AssistAnswer.request_id == req.id,
                                                          AssistAnswer.officer_id == officer.id)):
        raise MissingError("missing.err_assist_answered")
    case = None
    if case_no:
        case = await session.scalar(select(PersonCase).where(PersonCase.case_no == case_no.strip().upper()))
        if case is None or not can_see_case(officer, case):
            raise MissingError("missing.err_assist_case", case_no=case_no.strip())
    a = AssistAnswer(request_id=req.id, officer_id=officer.id, case_id=case.id if case else None, note=note)
    session.add(a)
    if req.status == "open":
        req.status = "answered"
    await session.flush()
    place = officer.jurisdiction.name if officer.jurisdiction else "-"
    if case is not None:
        await notify(session, req.requester_id, "missing.assist_answer_candidate", no=req.id, place=place,
                     officer=officer.name or "-", case_no=case.case_no,
                     dedupe_key=f"missing:assist_answer:{a.id}")
    else:
        await notify(session, req.requester_id, "missing.assist_answer_none", no=req.id, place=place,
                     officer=officer.name or "-", dedupe_key=f"missing:assist_answer:{a.id}")
    return a


async def assist_answers(session: AsyncSession, officer: User, request_id: int) -> list[AssistAnswer]:
    req = await session.get(AssistRequest, request_id)
    if req is None or (req.requester_id != officer.id and Role(officer.role) != Role.admin):
        raise NotFound("missing.err_assist_not_found")
    return list(await session.scalars(select(AssistAnswer).where(AssistAnswer.request_id == req.id)
                                      .order_by(AssistAnswer.id)))


async def my_assist_requests(session: AsyncSession, officer: User) -> list[dict]:
    """The officer's help requests, newest first, with their status, target and answers."""
    require_officer(officer)
    q = select(AssistRequest).order_by(AssistRequest.id.desc())
    if Role(officer.role) != Role.admin:
        q = q.where(AssistRequest.requester_id == officer.id)
    out = []
    for req in await session.scalars(q.limit(50)):
        answers = list(await session.scalars(select(AssistAnswer).where(AssistAnswer.request_id == req.id)
                                             .order_by(AssistAnswer.id)))
        target = await users.jurisdiction(session, req.target_id) if req.target_id else None
        rows = []
        for a in answers:
            who = await session.get(User, a.officer_id)
            case = await session.get(PersonCase, a.case_id) if a.case_id else None
            rows.append({"officer": who.name if who else "-",
                         "place": who.jurisdiction.name if who and who.jurisdiction else "-",
                         "case_no": case.case_no if case else None, "note": a.note,
                         "at": a.created_at.isoformat()})
        out.append({"id": req.id, "status": req.status, "target": target.name if target else None,
                    "note": req.note, "created_at": req.created_at.isoformat(), "answers": rows})
    return out
