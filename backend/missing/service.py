"""灯塔工程 — the rules of missing / found persons, face-match review and cross-region help.

Plain arguments and an ``AsyncSession``; the face service is passed in (``ctx.faces``, or
None when face matching is unavailable). Never imports aiogram.

Privacy rules enforced here:
* face-match candidates go to officers only (a review queue), never to the reporting family;
* photos are visible to officers of the case's jurisdiction and to the reporter;
* phones are stored normalized and shown masked to everybody else (and in logs);
* face vectors are deleted when a case closes, on the reporter's request, and a few days
  after a confirmed match (a scheduled job).
"""
from __future__ import annotations

import io
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from PIL import Image, ImageDraw, ImageOps
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import TZ, fmt_local, now, to_local
from backend.core.errors import DomainError, Forbidden, NotFound
from backend.core.files import StoredFile, blob_path, store_file
from backend.core.masking import mask_phone, normalize_phone
from backend.core.policy import Action, Facts, Kind, may, places_inside
from backend.core.security import within
from backend.missing.models import (
    AssistAnswer, AssistRequest, CaseEvent, MatchCandidate, PersonCase,
)
from backend.notify.service import notify
from backend.users import service as users
from backend.users.models import Jurisdiction, Level, Role, User
from backend.users.tree import Node, Place

log = logging.getLogger("hehe.missing")

MAX_PHOTOS = 5
FACE_DELETE_AFTER = timedelta(days=7)  # biometric data kept this long after a confirmed match
SEARCH_K = 10
AGE_TOLERANCE = 10
PENALTY = {"sex_mismatch": 0.25, "age_gap": 0.15, "time_before": 0.25}

# ---------------------------------------------------------------- state machines (data)
OPEN, FOUND, CLOSED = "open", "found", "closed"
TRANSITIONS: dict[tuple[str, str], str] = {
    (OPEN, FOUND): "matched",
    (OPEN, CLOSED): "closed",
    (FOUND, CLOSED): "closed",
}
PENDING, CONFIRMED, REJECTED, SUPERSEDED, WITHDRAWN = "pending", "confirmed", "rejected", "superseded", "withdrawn"
CANDIDATE_TRANSITIONS = {(PENDING, CONFIRMED), (PENDING, REJECTED), (PENDING, SUPERSEDED), (PENDING, WITHDRAWN)}


from knowledge_base.models import enqueue as kb_enqueue  # noqa: E402


class MissingError(DomainError):
    pass


async def transition(session: AsyncSession, case: PersonCase, to: str, *, actor: str,
                     note: str | None = None) -> None:
    """The one place a case changes status; every change is recorded."""
    if (case.status, to) not in TRANSITIONS:
        raise MissingError("missing.err_bad_transition", status=case.status, to=to)
    session.add(CaseEvent(case_id=case.id, actor=actor, from_status=case.status, to_status=to, note=note))
    case.status = to
    if to == CLOSED:
        case.closed_at = now()
    await kb_enqueue(session, "missing", case.id)  # the knowledge base follows every change


def _candidate_to(c: MatchCandidate, to: str) -> None:
    if (c.status, to) not in CANDIDATE_TRANSITIONS:
        raise MissingError("missing.err_review_done")
    c.status = to


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
_DATE_FULL = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})")
_DATE_MD = re.compile(r"(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")


def parse_seen_at(text: str, *, ref: datetime | None = None) -> datetime:
    """'今天 14:30', '昨天下午3点', '前天', '2026-11-27 08:00', '11月27日 8时', '14:30' → aware UTC.
    Local (Asia/Shanghai) time; a time in the future is refused."""
    s = (text or "").strip()
    base = to_local(ref or now())
    if s in ("刚才", "现在", "刚刚", "now"):
        return now()
    day = base.date()
    rest = s
    m = _DATE_FULL.search(s)
    if m:
        try:
            day = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3))).date()
        except ValueError:
            raise MissingError("missing.err_time") from None
        rest = s[m.end():]
    elif s.startswith(("昨天", "昨日")):
        day = day - timedelta(days=1)
        rest = s[2:]
    elif s.startswith("前天"):
        day = day - timedelta(days=2)
        rest = s[2:]
    elif s.startswith(("今天", "今日")):
        rest = s[2:]
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
    pm = any(w in rest for w in ("下午", "晚上", "傍晚", "pm", "PM"))
    tm = _TIME.search(rest)
    if tm:
        hour, minute = int(tm.group(1)), int(tm.group(2) or 0)
        if pm and hour < 12:
            hour += 12
    elif rest and not any(w in rest for w in ("上午", "下午", "晚上", "中午", "早上", "傍晚")):
        if not (m or s.startswith(("昨", "前天", "今"))):
            raise MissingError("missing.err_time")
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


# ---------------------------------------------------------------- faces (through ctx.faces)
def faces_ready(faces) -> bool:
    return faces is not None and getattr(faces, "ready", False)


async def check_photo(faces, data: bytes, choose: int | None = None):
    """Raise BadImage / NoFace / MultipleFaces (with preview) / BadChoice; return the embedding."""
    return await faces.aembed_for_enrolment(data, choose)


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


# ---------------------------------------------------------------- case numbers
async def next_case_no(session: AsyncSession, kind: str, j: Place | None) -> str:
    county = await users.county_of(session, j) if j is not None else None
    code = (county.code if county and county.code else "TZ")
    prefix = f"{'XR' if kind == 'missing' else 'ZL'}-{code}-{to_local(now()).strftime('%Y%m%d')}-"
    n = await session.scalar(select(func.count(PersonCase.id)).where(PersonCase.case_no.startswith(prefix)))
    return f"{prefix}{(n or 0) + 1:04d}"


# ---------------------------------------------------------------- consistency (NamUs-style)
def consistency(m: PersonCase, f: PersonCase) -> tuple[list[dict], float]:
    """Flags comparing a missing person with a found one, and the total penalty.

    Each flag is {"code", "ok", **params}; the text is ``missing.flag_<code>``."""
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
    if m.seen_at and f.seen_at:
        if f.seen_at >= m.seen_at:
            flags.append({"code": "time_ok", "ok": True, "seen": fmt_local(m.seen_at), "found": fmt_local(f.seen_at)})
        else:
            flags.append({"code": "time_before", "ok": False, "seen": fmt_local(m.seen_at),
                          "found": fmt_local(f.seen_at)})
            penalty += PENALTY["time_before"]
    else:
        flags.append({"code": "time_unknown", "ok": True})
    return flags, penalty


def explain_flags(t, flags: list[dict]) -> str:
    out = []
    for fl in flags:
        params = {k: v for k, v in fl.items() if k not in ("code", "ok")}
        for k in ("sex", "m", "f"):
            if k in params:
                params[k] = t(f"missing.sex_{params[k]}")
        out.append(t(f"missing.flag_{fl['code']}", **params))
    return "\n".join(out)


# ---------------------------------------------------------------- create cases
async def _embed_all(faces, photos: list[Photo]) -> list:
    vecs = []
    for i, p in enumerate(photos):
        try:
            vecs.append(await faces.aembed_for_enrolment(p.data, p.choose))
        except DomainError as e:
            e.params.setdefault("image", i + 1)
            raise
    return vecs


async def _store_photos(session: AsyncSession, files_dir, photos: list[Photo], owner_id: int,
                        uploader: int) -> list[int]:
    ids = []
    for i, p in enumerate(photos):
        f = await store_file(session, files_dir, p.data, mime=p.mime, filename=f"photo{i + 1}.jpg",
                             owner_kind="missing_case", owner_id=owner_id, uploaded_by=uploader)
        ids.append(f.id)
    return ids


async def _create(session: AsyncSession, *, kind: str, reporter: User, faces, files_dir,
                  photos: list[Photo], **fields) -> Outcome:
    if not photos:
        raise MissingError("missing.err_no_photo")
    if len(photos) > MAX_PHOTOS:
        raise MissingError("missing.err_too_many_photos", max=MAX_PHOTOS)
    available = faces_ready(faces)
    # Every photo is checked before anything is written: a bad photo leaves nothing behind.
    vecs = await _embed_all(faces, photos) if available else []
    j = fields.get("jurisdiction")
    case = PersonCase(kind=kind, status=OPEN, face_key=uuid.uuid4().hex, reporter_id=reporter.id,
                      case_no=await next_case_no(session, kind, j),
                      jurisdiction_id=j.id if j else None, **{k: v for k, v in fields.items() if k != "jurisdiction"})
    case.jurisdiction = j
    session.add(case)
    await session.flush()
    session.add(CaseEvent(case_id=case.id, actor=f"user:{reporter.id}", from_status=None, to_status=OPEN,
                          note="reported" if kind == "missing" else "registered"))
    case.photo_ids = await _store_photos(session, files_dir, photos, case.id, reporter.id)
    await kb_enqueue(session, "missing", case.id)
    await users.audit(session, f"user:{reporter.id}", f"missing.{kind}_created", f"missing:{case.id}",
                      case_no=case.case_no, phone=mask_phone(case.phone))
    out = Outcome(case=case, face_available=available)
    if not available:
        case.face_state = "pending"
        return out
    out.candidates = await _enrol_and_match(session, faces, case, vecs)
    log.info("missing %s %s created by user %s: %d candidate(s)", kind, case.case_no, reporter.id,
             len(out.candidates))
    return out


async def _enrol_and_match(session: AsyncSession, faces, case: PersonCase, vecs: list) -> list[MatchCandidate]:
    """Put the vectors in the case's gallery and propose candidates from the other one."""
    gallery, other = ("missing", "found") if case.kind == "missing" else ("found", "missing")
    try:
        await faces.engine.run(faces.enroll_vectors, gallery, case.face_key, vecs)
        case.face_state = "enrolled"
        best: dict[str, float] = {}
        for v in vecs:
            for mt in await faces.engine.run(faces.search_vector, other, v, SEARCH_K, min_score=faces.threshold):
                best[mt.person_id] = max(best.get(mt.person_id, -1.0), mt.score)
        return await _propose(session, case, best)
    except BaseException:
        # the transaction will roll back: take the vectors back out too
        await faces.engine.run(faces.delete, case.face_key)
        raise


async def enrol_pending(session: AsyncSession, faces, files_dir, case: PersonCase) -> list[MatchCandidate]:
    """Match a case saved while face matching was unavailable. Photos that now turn out to
    show no face or several faces are skipped (an officer can register the person again)."""
    if case.face_state != "pending" or case.status != OPEN:
        return []
    vecs = []
    for fid in case.photo_ids or []:
        f = await session.get(StoredFile, fid)
        p = blob_path(files_dir, f.sha256) if f else None
        if p is None or not p.exists():
            continue
        try:
            vecs.append(await faces.aembed_for_enrolment(p.read_bytes()))
        except DomainError:
            continue
    if not vecs:
        case.face_state = "unusable"
        return []
    return await _enrol_and_match(session, faces, case, vecs)


async def create_missing(session: AsyncSession, reporter: User, *, faces, files_dir, photos: list[Photo],
                         name: str, sex: str | None, age: int | None, height_cm: int | None,
                         jurisdiction: Jurisdiction | None, place: str | None, seen_at: datetime | None,
                         clothing: str | None, health: str | None, phone: str) -> Outcome:
    name = (name or "").strip()
    if not 1 <= len(name) <= 64:
        raise MissingError("missing.err_name")
    return await _create(session, kind="missing", reporter=reporter, faces=faces, files_dir=files_dir,
                         photos=photos, name=name, sex=sex, age=age, height_cm=height_cm,
                         jurisdiction=jurisdiction, place=place, seen_at=seen_at, clothing=clothing,
                         health=health, phone=parse_phone(phone))


async def register_found(session: AsyncSession, officer: User, *, faces, files_dir, photos: list[Photo],
                         jurisdiction: Jurisdiction | None, place: str | None, age: int | None,
                         sex: str | None, seen_at: datetime | None = None) -> Outcome:
    require_officer(officer)
    return await _create(session, kind="found", reporter=officer, faces=faces, files_dir=files_dir,
                         photos=photos, jurisdiction=jurisdiction or officer.jurisdiction, place=place, age=age,
                         sex=sex, seen_at=seen_at or now())


# ---------------------------------------------------------------- candidates → review queue
async def _propose(session: AsyncSession, case: PersonCase, best: dict[str, float]) -> list[MatchCandidate]:
    if not best:
        return []
    others = {c.face_key: c for c in await session.scalars(
        select(PersonCase).where(PersonCase.face_key.in_(list(best)), PersonCase.status == OPEN))}
    made = []
    for key, score in best.items():
        other = others.get(key)
        if other is None or other.kind == case.kind:
            continue
        m, f = (case, other) if case.kind == "missing" else (other, case)
        exists = await session.scalar(select(MatchCandidate).where(
            MatchCandidate.missing_id == m.id, MatchCandidate.found_id == f.id))
        if exists is not None:
            continue
        flags, penalty = consistency(m, f)
        c = MatchCandidate(missing_id=m.id, found_id=f.id, score=float(score), rank_score=float(score) - penalty,
                           flags=flags, status=PENDING)
        c.missing, c.found = m, f
        session.add(c)
        made.append(c)
    await session.flush()
    made.sort(key=lambda c: -c.rank_score)
    return made


def compose_pair(left: bytes, right: bytes, caption: str, *, height: int = 360) -> bytes:
    """One JPEG: the missing person's photo left, the found person's right, the score on top."""
    def fit(data: bytes) -> Image.Image:
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        im = im.convert("RGB")
        w = max(1, round(im.width * height / im.height))
        return im.resize((min(w, height * 2), height))

    a, b = fit(left), fit(right)
    bar, gap = 36, 8
    out = Image.new("RGB", (a.width + b.width + gap, height + bar), (255, 255, 255))
    out.paste(a, (0, bar))
    out.paste(b, (a.width + gap, bar))
    ImageDraw.Draw(out).text((8, 10), caption, fill=(0, 0, 0))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=85)
    return buf.getvalue()


async def _first_photo(session: AsyncSession, files_dir, case: PersonCase) -> bytes | None:
    if not case.photo_ids:
        return None
    f = await session.get(StoredFile, case.photo_ids[0])
    if f is None:
        return None
    p = blob_path(files_dir, f.sha256)
    return p.read_bytes() if p.exists() else None


async def review_image(session: AsyncSession, files_dir, c: MatchCandidate) -> StoredFile | None:
    """The side-by-side picture of a candidate (made once, kept as a stored file)."""
    existing = await session.scalar(select(StoredFile).where(
        StoredFile.owner_kind == "missing_candidate", StoredFile.owner_id == c.id))
    if existing is not None:
        return existing
    left, right = await _first_photo(session, files_dir, c.missing), await _first_photo(session, files_dir, c.found)
    if left is None or right is None:
        return None
    caption = f"{c.missing.case_no}  <->  {c.found.case_no}   score {c.score:.3f}"
    jpeg = compose_pair(left, right, caption)
    return await store_file(session, files_dir, jpeg, mime="image/jpeg", filename="review.jpg",
                            owner_kind="missing_candidate", owner_id=c.id)


async def reviewers_for(session: AsyncSession, c: MatchCandidate) -> list[User]:
    """Officers whose jurisdiction contains the missing or the found person's place."""
    officers = await users.users_with_role(session, Role.officer)
    return [u for u in officers if within(u, c.missing.jurisdiction) or within(u, c.found.jurisdiction)]


def review_buttons(c: MatchCandidate) -> list[list[tuple[str, str]]]:
    from backend.missing.callbacks import review_data

    return [[("missing.btn_confirm", review_data("ok", c.id)), ("missing.btn_reject", review_data("no", c.id))]]


def review_params(t, c: MatchCandidate) -> dict:
    m, f = c.missing, c.found
    return dict(missing_no=m.case_no, found_no=f.case_no, score=f"{c.score:.3f}", rank=f"{c.rank_score:.3f}",
                name=m.name or "-", m_place=_place(m), f_place=_place(f),
                m_seen=fmt_local(m.seen_at), f_seen=fmt_local(f.seen_at), health=m.health or "-",
                flags=explain_flags(t, c.flags))


def _place(case: PersonCase) -> str:
    parts = [case.jurisdiction.name if case.jurisdiction else None, case.place]
    return " ".join(p for p in parts if p) or "-"


async def queue_for_review(session: AsyncSession, files_dir, candidates: list[MatchCandidate]) -> int:
    """Notify the officers concerned; one photo message per candidate with 确认 / 否决."""
    from backend.core.i18n import Translator

    sent = 0
    for c in candidates:
        img = await review_image(session, files_dir, c)
        for officer in await reviewers_for(session, c):
            t = Translator(officer.language)
            # urgent: a vulnerable person may be waiting in a shelter; duty officers work nights
            await notify(session, officer, "missing.review_new", buttons=review_buttons(c), urgent=True,
                         photo_path=str(blob_path(files_dir, img.sha256)) if img else None,
                         dedupe_key=f"missing:review:{c.id}:{officer.id}", **review_params(t, c))
            sent += 1
    return sent


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
    rows = await session.scalars(select(MatchCandidate).where(MatchCandidate.status == PENDING)
                                 .order_by(MatchCandidate.rank_score.desc(), MatchCandidate.id))
    return [c for c in rows if can_review(user, c)]


async def confirm(session: AsyncSession, user: User, cid: int, note: str | None = None) -> MatchCandidate:
    c = await get_candidate(session, user, cid)
    _candidate_to(c, CONFIRMED)
    c.reviewer_id, c.reviewed_at, c.note = user.id, now(), note
    actor = f"user:{user.id}"
    for case in (c.missing, c.found):
        if case.status != OPEN:
            raise MissingError("missing.err_case_not_open", case_no=case.case_no)
        await transition(session, case, FOUND, actor=actor, note=f"match #{c.id} confirmed")
    # other proposals for either person are moot now
    others = await session.scalars(select(MatchCandidate).where(
        MatchCandidate.status == PENDING, MatchCandidate.id != c.id,
        or_(MatchCandidate.missing_id.in_([c.missing_id, c.found_id]),
            MatchCandidate.found_id.in_([c.missing_id, c.found_id]))))
    for o in others:
        _candidate_to(o, SUPERSEDED)
    m, f = c.missing, c.found
    await notify(session, m.reporter_id, "missing.family_found", urgent=True,
                 dedupe_key=f"missing:found:{m.id}", case_no=m.case_no, name=m.name or "-",
                 place=_place(f), officer=user.name or "-")
    if f.reporter_id != user.id:
        await notify(session, f.reporter_id, "missing.found_reporter_matched", dedupe_key=f"missing:found:{f.id}",
                     case_no=f.case_no, missing_no=m.case_no)
    when = now() + FACE_DELETE_AFTER
    for case in (m, f):
        schedule_face_deletion(session, case, when)
    await users.audit(session, actor, "missing.match_confirmed", f"candidate:{c.id}", score=c.score,
                      missing=m.case_no, found=f.case_no)
    return c


async def reject(session: AsyncSession, user: User, cid: int, note: str | None = None) -> MatchCandidate:
    c = await get_candidate(session, user, cid)
    _candidate_to(c, REJECTED)
    c.reviewer_id, c.reviewed_at, c.note = user.id, now(), note
    await users.audit(session, f"user:{user.id}", "missing.match_rejected", f"candidate:{c.id}", score=c.score)
    return c


# ---------------------------------------------------------------- biometric deletion
def schedule_face_deletion(session: AsyncSession, case: PersonCase, when: datetime) -> None:
    from scheduler.runtime import schedule_after_commit

    if case.face_state in ("deleted", "none"):
        return
    case.face_state, case.face_delete_at = "scheduled", when
    schedule_after_commit(session, "scheduler.jobs.missing:delete_faces", when, [case.id],
                          f"missing-faces-{case.id}")


async def delete_faces_now(session: AsyncSession, case: PersonCase, faces_or_settings, *, actor: str) -> int:
    """Erase the person's face vectors from every gallery (works without the model)."""
    if case.face_state == "deleted":
        return 0
    svc = faces_or_settings
    if svc is None or not hasattr(svc, "delete"):
        from backend.faces.service import FaceService

        svc = FaceService(faces_or_settings)  # galleries only, no model needed to delete
    import asyncio

    n = await asyncio.to_thread(svc.delete, case.face_key)
    case.face_state, case.face_delete_at = "deleted", None
    session.add(CaseEvent(case_id=case.id, actor=actor, from_status=case.status, to_status=case.status,
                          note=f"face data deleted ({n} vectors)"))
    await users.audit(session, actor, "missing.faces_deleted", f"missing:{case.id}", vectors=n)
    return n


async def close_case(session: AsyncSession, user: User, case_id: int, faces, settings, *,
                     note: str | None = None) -> PersonCase:
    """The reporter withdraws, or an officer of the jurisdiction closes: biometrics go at once."""
    case = await session.get(PersonCase, case_id)
    if case is None:
        raise NotFound("missing.err_case_not_found")
    if not may(user, Action.read, Kind.missing, facts(case)):
        raise NotFound("missing.err_case_not_found")
    if not (case.reporter_id == user.id or may(user, Action.handle, Kind.missing, facts(case))):
        raise Forbidden("common.err_forbidden")
    if case.status == CLOSED:
        raise MissingError("missing.err_already_closed", case_no=case.case_no)
    await transition(session, case, CLOSED, actor=f"user:{user.id}", note=note or "closed")
    pend = await session.scalars(select(MatchCandidate).where(
        MatchCandidate.status == PENDING,
        or_(MatchCandidate.missing_id == case.id, MatchCandidate.found_id == case.id)))
    for c in pend:
        _candidate_to(c, WITHDRAWN)
    from scheduler.runtime import cancel_after_commit

    cancel_after_commit(session, f"missing-faces-{case.id}")
    await delete_faces_now(session, case, faces if faces is not None else settings, actor=f"user:{user.id}")
    return case


def is_officer(user: User) -> bool:
    return Role(user.role) in (Role.officer, Role.admin)


# ---------------------------------------------------------------- reading cases
def can_see_case(user: User, case: PersonCase) -> bool:
    return may(user, Action.read, Kind.missing, facts(case))


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


async def photo_of(session: AsyncSession, user: User, case_id: int, n: int, files_dir) -> tuple[bytes, str]:
    case = await get_case(session, user, case_id)
    if not 0 <= n < len(case.photo_ids or []):
        raise NotFound("missing.err_photo_not_found")
    f = await session.get(StoredFile, case.photo_ids[n])
    p = blob_path(files_dir, f.sha256) if f else None
    if p is None or not p.exists():
        raise NotFound("missing.err_photo_not_found")
    return p.read_bytes(), f.mime


def case_public(user: User, case: PersonCase) -> dict:
    """What the API shows (no face key, phone per entitlement, photo links only when allowed)."""
    return {
        "id": case.id, "case_no": case.case_no, "kind": case.kind, "status": case.status,
        "name": case.name, "sex": case.sex, "age": case.age, "height_cm": case.height_cm,
        "jurisdiction": case.jurisdiction.name if case.jurisdiction else None, "place": case.place,
        "seen_at": case.seen_at.isoformat() if case.seen_at else None, "clothing": case.clothing,
        "health": case.health, "phone": phone_for(user, case), "face_state": case.face_state,
        "photos": [f"/api/missing/cases/{case.id}/photos/{i}" for i in range(len(case.photo_ids or []))],
        "created_at": case.created_at.isoformat(),
    }


def candidate_public(c: MatchCandidate) -> dict:
    return {"id": c.id, "status": c.status, "score": round(c.score, 4), "rank_score": round(c.rank_score, 4),
            "missing": {"id": c.missing.id, "case_no": c.missing.case_no},
            "found": {"id": c.found.id, "case_no": c.found.case_no},
            "flags": c.flags, "image": f"/api/missing/reviews/{c.id}/image"}


# ---------------------------------------------------------------- 人像协作 (cross-region help)
async def create_assist(session: AsyncSession, officer: User, *, files_dir, photo: Photo, faces,
                        note: str | None) -> tuple[AssistRequest, int]:
    require_officer(officer)
    if faces_ready(faces):
        await check_photo(faces, photo.data, photo.choose)
    f = await store_file(session, files_dir, photo.data, mime=photo.mime, filename="assist.jpg",
                         owner_kind="missing_assist", uploaded_by=officer.id)
    req = AssistRequest(requester_id=officer.id, jurisdiction_id=officer.jurisdiction_id, photo_id=f.id,
                        note=(note or "").strip()[:500] or None, status="open")
    session.add(req)
    await session.flush()
    f.owner_id = req.id
    mine = await users.county_of(session, officer.jurisdiction) if officer.jurisdiction else None
    from backend.missing.callbacks import assist_data

    sent = 0
    for other in await users.users_with_role(session, Role.officer):
        if other.id == officer.id or other.jurisdiction is None:
            continue
        theirs = await users.county_of(session, other.jurisdiction)
        if mine is not None and theirs is not None and theirs.id == mine.id:
            continue
        await notify(session, other, "missing.assist_new", photo_path=str(blob_path(files_dir, f.sha256)), urgent=True,
                     buttons=[[("missing.btn_assist_candidate", assist_data("cand", req.id)),
                               ("missing.btn_assist_none", assist_data("none", req.id))]],
                     dedupe_key=f"missing:assist:{req.id}:{other.id}", no=req.id,
                     place=mine.name if mine else "-", officer=officer.name or "-", note=req.note or "-")
        sent += 1
    await users.audit(session, f"user:{officer.id}", "missing.assist_created", f"assist:{req.id}", recipients=sent)
    return req, sent


async def answer_assist(session: AsyncSession, officer: User, request_id: int, case_no: str | None,
                        note: str | None = None) -> AssistAnswer:
    require_officer(officer)
    req = await session.get(AssistRequest, request_id)
    if req is None:
        raise NotFound("missing.err_assist_not_found")
    if req.requester_id == officer.id:
        raise MissingError("missing.err_assist_own")
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
