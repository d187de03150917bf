"""Users, roles, jurisdictions and invite codes — the rules."""
from __future__ import annotations

import csv
import io
import math
import re
import secrets
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from backend.core.clock import now
from backend.core.errors import DomainError, NotFound
from backend.core.i18n import normalize_language
from backend.users import tree
from backend.users.cache import UserCache
from backend.users.models import AuditLog, InviteCode, Jurisdiction, Level, Role, User
from backend.users.tree import Node, Place

SEED_DIR = Path(__file__).resolve().parent / "seed"
CITY_NAME = "台州市"
# Taizhou with its islands (大陈, 披山…): anything outside is not ours.
TAIZHOU_BBOX = (27.9, 29.5, 120.2, 122.2)  # lat_min, lat_max, lon_min, lon_max


# ---------------------------------------------------------------- audit
async def audit(session: AsyncSession, actor: str, action: str, subject: str | None = None,
                note: str | None = None, **detail) -> None:
    session.add(AuditLog(actor=actor, action=action, subject=subject, note=note, detail=detail))


# ---------------------------------------------------------------- users
async def get_or_create_user(
    session: AsyncSession, telegram_id: int, *, name: str = "", username: str | None = None,
    language_code: str | None = None, channel: str = "telegram", cache: UserCache | None = None,
) -> tuple[User, bool]:
    """The person behind ``telegram_id``, created as a citizen on first contact. With a
    ``cache`` (the bot's), a recently seen person is attached without a query."""
    user = cache.attach(session, telegram_id) if cache is not None else None
    if user is None:
        user = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    if user is not None:
        # A channel that does not know the person's name (the offline channel after a restart)
        # sends the placeholder 用户<id>: it never replaces a name the person gave.
        if name and user.name != name and not (user.name and name == f"用户{telegram_id}"):
            user.name = name
        return user, False
    user = User(
        telegram_id=telegram_id, name=name or "", username=username,
        language=normalize_language(language_code), role=Role.citizen.value, channel=channel,
    )
    session.add(user)
    await session.flush()
    await audit(session, "system", "user.created", f"user:{user.id}", channel=channel)
    return user, True


async def set_role(session: AsyncSession, user: User, role: Role, jurisdiction: Jurisdiction | None,
                   *, actor: str, title: str | None = None, note: str | None = None) -> None:
    old = (user.role, user.jurisdiction_id, user.title)
    user.role = role.value
    user.jurisdiction_id = jurisdiction.id if jurisdiction else None
    user.jurisdiction = jurisdiction
    user.title = title
    await audit(session, actor, "user.role_changed", f"user:{user.id}", note=note,
                old_role=old[0], old_jurisdiction=old[1], old_title=old[2],
                role=role.value, jurisdiction=user.jurisdiction_id, title=title)


async def set_language(session: AsyncSession, user: User, lang: str) -> None:
    user.language = normalize_language(lang)


# ---------------------------------------------------------------- jurisdictions
def _short_name(name: str) -> str:
    """椒江区 → 椒江, 海门街道 → 海门 (used to match what people type)."""
    for suffix in ("街道", "社区", "网格", "区", "市", "县", "镇", "乡", "村"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


async def _child(session: AsyncSession, parent: Jurisdiction | None, name: str, level: Level,
                 cache: dict | None = None, **extra) -> Jurisdiction:
    """Get or create the node ``name`` under ``parent``. ``cache`` maps
    (parent_id, name, level) → node to avoid one query per row in bulk imports."""
    key = (parent.id if parent else None, name, level.value)
    j = cache.get(key) if cache is not None else None
    if j is None and cache is None:
        q = select(Jurisdiction).where(Jurisdiction.name == name, Jurisdiction.level == level.value)
        q = q.where(Jurisdiction.parent_id == parent.id) if parent else q.where(Jurisdiction.parent_id.is_(None))
        j = await session.scalar(q)
    if j is None:
        j = Jurisdiction(name=name, level=level.value, parent_id=parent.id if parent else None, **extra)
        session.add(j)
        await session.flush()
        j.path = f"{parent.path if parent else '/'}{j.id}/"
    else:
        for k, v in extra.items():
            if v is not None and getattr(j, k) is None:
                setattr(j, k, v)
    if cache is not None:
        cache[key] = j
    return j


async def _cache(session: AsyncSession) -> dict:
    return {(j.parent_id, j.name, j.level): j for j in await session.scalars(select(Jurisdiction))}


async def city(session: AsyncSession) -> Jurisdiction:
    return await _child(session, None, CITY_NAME, Level.city, code="TZ", lat=28.6560, lon=121.4210)


async def import_rows(session: AsyncSession, rows: list[dict]) -> int:
    """Rows {county, township, village, grid (+ optional lat, lon)}; idempotent. Returns new nodes."""
    before = await session.scalar(select(func.count(Jurisdiction.id))) or 0
    await city(session)
    cache = await _cache(session)
    counties = {j.name: j for j in cache.values() if j.level == Level.county.value}
    for i, row in enumerate(rows, start=1):
        cname = (row.get("county") or "").strip()
        if cname not in counties:
            raise DomainError("users.err_unknown_county", line=i, name=cname)
        node = counties[cname]
        chain = [(row.get("township"), Level.township), (row.get("village"), Level.village),
                 (row.get("grid"), Level.grid)]
        names = [(n.strip(), lvl) for n, lvl in chain if n and n.strip()]
        for idx, (name, lvl) in enumerate(names):
            last = idx == len(names) - 1
            lat = _float(row.get("lat")) if last else None
            lon = _float(row.get("lon")) if last else None
            node = await _child(session, node, name, lvl, cache, lat=lat, lon=lon)
    after = await session.scalar(select(func.count(Jurisdiction.id))) or 0
    return after - before


def _float(v) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


async def seed_jurisdictions(session: AsyncSession) -> int:
    """The 9 county-level divisions of Taizhou and their townships/streets (idempotent)."""
    seeded = await session.scalar(select(func.count(Jurisdiction.id)).where(
        Jurisdiction.level == Level.township.value))
    if seeded:
        return 0
    top = await city(session)
    with (SEED_DIR / "counties.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            await _child(session, top, row["name"], Level.county, code=row["code"],
                         lat=float(row["lat"]), lon=float(row["lon"]))
    with (SEED_DIR / "taizhou.csv").open(encoding="utf-8") as fh:
        return await import_rows(session, list(csv.DictReader(fh)))


async def import_csv(session: AsyncSession, path: Path) -> int:
    with path.open(encoding="utf-8-sig") as fh:
        return await import_csv_text(session, fh.read())


async def import_csv_text(session: AsyncSession, text: str) -> int:
    """The CSV of ``hehe jurisdictions import`` (county, township, village, grid, lat, lon) as text."""
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    missing = {"county", "township"} - set(rows[0].keys() if rows else [])
    if missing:
        raise DomainError("users.err_csv_columns", columns=",".join(sorted(missing)))
    return await import_rows(session, rows)


async def find_jurisdiction(session: AsyncSession, name: str) -> Jurisdiction | None:
    """Find by full name (椒江区), short name (椒江) or "county/township" path."""
    name = name.strip()
    if "/" in name:
        node = None
        for part in name.split("/"):
            node = await _find_under(session, node, part)
            if node is None:
                return None
        return node
    return await _find_under(session, None, name)


async def _find_under(session: AsyncSession, parent: Jurisdiction | None, name: str) -> Jurisdiction | None:
    q = select(Jurisdiction)
    if parent is not None:
        q = q.where(Jurisdiction.path.startswith(parent.path))
    rows = list(await session.scalars(q.order_by(Jurisdiction.path)))
    exact = [j for j in rows if j.name == name]
    if exact:
        return min(exact, key=lambda j: LEVEL_INDEX[j.level])
    short = [j for j in rows if _short_name(j.name) == name]
    if short:
        return min(short, key=lambda j: LEVEL_INDEX[j.level])
    return None


LEVEL_INDEX = {lvl.value: i for i, lvl in enumerate([Level.city, Level.county, Level.township,
                                                       Level.village, Level.grid])}


# Reads of the tree come from memory (backend/users/tree.py): keyboards, routing, case numbers
# and summaries need names, levels and paths, not ORM objects.
async def jurisdiction(session: AsyncSession, jid: int | None) -> Node | None:
    """The place ``jid`` (None if there is no such place)."""
    return (await tree.current(session, need=jid)).get(jid) if jid else None


async def jurisdiction_row(session: AsyncSession, j: Place) -> Jurisdiction:
    """The ORM row of a place, for relationships and writes (no query if the session has it)."""
    if isinstance(j, Jurisdiction):
        return j
    row = await session.get(Jurisdiction, j.id)
    if row is None:
        raise NotFound("common.err_not_found")
    return row


async def children(session: AsyncSession, parent_id: int | None) -> list[Node]:
    """The children of ``parent_id`` by id; no parent → the county-level divisions."""
    return list((await tree.current(session, need=parent_id or None)).children(parent_id))


async def ancestors(session: AsyncSession, j: Place) -> list[Node]:
    """From the city down to j itself."""
    return list((await tree.current(session, need=j.id)).ancestors(j))


async def county_of(session: AsyncSession, j: Place) -> Node | None:
    return (await tree.current(session, need=j.id)).county_of(j)


def in_taizhou(lat: float, lon: float) -> bool:
    a, b, c, d = TAIZHOU_BBOX
    return a <= lat <= b and c <= lon <= d


def _distance_km(lat1, lon1, lat2, lon2) -> float:
    p = math.pi / 180
    x = (lon2 - lon1) * p * math.cos((lat1 + lat2) * p / 2)
    y = (lat2 - lat1) * p
    return 6371 * math.hypot(x, y)


async def nearest(session: AsyncSession, lat: float, lon: float) -> Node | None:
    """Most specific known place near a shared location (village/community if we have its
    coordinates, else township, else county). None if the point is outside Taizhou."""
    if not in_taizhou(lat, lon):
        return None
    best: tuple[int, float, Node] | None = None
    for j in (await tree.current(session)).nodes:
        if j.lat is None:
            continue
        d = _distance_km(lat, lon, j.lat, j.lon)
        # a village within 3 km beats a county seat that is closer on paper
        radius = {"village": 3.0, "grid": 1.0, "township": 8.0, "county": 60.0, "city": 200.0}[j.level]
        if d > radius:
            continue
        rank = (-LEVEL_INDEX[j.level], d)
        if best is None or rank < (best[0], best[1]):
            best = (rank[0], rank[1], j)
    return best[2] if best else None


# ---------------------------------------------------------------- invite codes
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: people type these
_DURATION = re.compile(r"^(\d+)\s*([dhm])$")


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise DomainError("users.err_duration", value=text)
    n, unit = int(m.group(1)), m.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


async def create_invite(session: AsyncSession, role: Role, jurisdiction: Jurisdiction | None,
                        expires_in: timedelta, *, actor: str, title: str | None = None) -> InviteCode:
    if role != Role.citizen and role != Role.admin and jurisdiction is None:
        raise DomainError("users.err_jurisdiction_required")
    code = "-".join("".join(secrets.choice(_CODE_ALPHABET) for _ in range(4)) for _ in range(3))
    inv = InviteCode(code=code, role=role.value, jurisdiction_id=jurisdiction.id if jurisdiction else None,
                     title=title, created_by=actor, expires_at=now() + expires_in)
    session.add(inv)
    await session.flush()
    await audit(session, actor, "invite.created", f"invite:{inv.id}", role=role.value,
                jurisdiction=inv.jurisdiction_id, expires_at=inv.expires_at.isoformat())
    return inv


def normalize_code(raw: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]", "", raw or "").upper()
    return "-".join(s[i:i + 4] for i in range(0, len(s), 4))


class TooManyAttempts(DomainError):
    status = 429
    code = "too_many_requests"


JOIN_ACTIONS = ("invite.redeemed", "invite.rejected")


async def _check_join_rate(session: AsyncSession, user: User, per_hour: int, global_per_minute: int) -> None:
    """Invite codes are guessable only by trying: attempts are counted in the audit log (shared by
    every replica) per person per hour and for everyone per minute."""
    t = now()
    mine = await session.scalar(select(func.count(AuditLog.id)).where(
        AuditLog.action.in_(JOIN_ACTIONS), AuditLog.actor == f"user:{user.id}", AuditLog.at >= t - timedelta(hours=1))) or 0
    everyone = await session.scalar(select(func.count(AuditLog.id)).where(
        AuditLog.action.in_(JOIN_ACTIONS), AuditLog.at >= t - timedelta(minutes=1))) or 0
    if mine >= per_hour or everyone >= global_per_minute:
        await audit(session, f"user:{user.id}", "invite.throttled", None, mine=mine, everyone=everyone)
        raise TooManyAttempts("users.err_join_too_many")


async def redeem_invite(session: AsyncSession, user: User, raw_code: str, *, per_hour: int = 5,
                        global_per_minute: int = 60) -> InviteCode:
    """Redeem a single-use code. The code is taken by one conditional UPDATE (… WHERE used_by IS
    NULL AND not expired): of any number of simultaneous redemptions exactly one changes the row,
    on SQLite and PostgreSQL alike; the others are told the code was used."""
    await _check_join_rate(session, user, per_hour, global_per_minute)
    code = normalize_code(raw_code)
    inv = await session.scalar(select(InviteCode).where(InviteCode.code == code)) if code else None
    if inv is None:
        await audit(session, f"user:{user.id}", "invite.rejected", None, reason="unknown")
        raise DomainError("users.err_code_invalid")
    if inv.used_by is not None:
        await audit(session, f"user:{user.id}", "invite.rejected", f"invite:{inv.id}", reason="used")
        raise DomainError("users.err_code_used")
    if inv.expires_at <= now():
        await audit(session, f"user:{user.id}", "invite.rejected", f"invite:{inv.id}", reason="expired")
        raise DomainError("users.err_code_expired")
    taken: CursorResult = await session.execute(  # type: ignore[assignment]  # an UPDATE's result has rowcount
        update(InviteCode).where(InviteCode.id == inv.id, InviteCode.used_by.is_(None), InviteCode.expires_at > now())
        .values(used_by=user.id, used_at=now()).execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        await audit(session, f"user:{user.id}", "invite.rejected", f"invite:{inv.id}", reason="used")
        raise DomainError("users.err_code_used")
    await session.refresh(inv, ["used_by", "used_at"])
    await audit(session, f"user:{user.id}", "invite.redeemed", f"invite:{inv.id}")
    await set_role(session, user, Role(inv.role), inv.jurisdiction, actor=f"invite:{inv.id}",
                   title=inv.title)
    return inv


async def users_with_role(session: AsyncSession, role: Role, jurisdiction: Place | None = None,
                          *, exact: bool = True, title: str | None = None) -> list[User]:
    """Users of a role at a jurisdiction (exact=True) or anywhere inside it."""
    q = select(User).where(User.role == role.value, User.active.is_(True))
    if title is not None:
        q = q.where(User.title == title)
    if jurisdiction is not None:
        if exact:
            q = q.where(User.jurisdiction_id == jurisdiction.id)
        else:
            q = q.join(Jurisdiction, Jurisdiction.id == User.jurisdiction_id).where(
                Jurisdiction.path.startswith(jurisdiction.path))
    # the jurisdiction in the same statement (a JOIN), not a second query
    return list(await session.scalars(q.options(joinedload(User.jurisdiction)).order_by(User.id)))


async def get_user(session: AsyncSession, user_id: int) -> User:
    u = await session.get(User, user_id)
    if u is None:
        raise NotFound("common.err_not_found")
    return u


async def set_active(session: AsyncSession, user: User, active: bool, *, actor: str,
                     note: str | None = None) -> User:
    """Deactivate or reactivate a person. It takes effect on their next API request (tokens are
    checked against ``active`` every time) and their next chat message (the bot answers only
    with a note); a change made by another process reaches a running bot's user cache within
    ``HEHE_USER_CACHE_SECONDS``."""
    if user.active != active:
        user.active = active
        await audit(session, actor, "user.reactivated" if active else "user.deactivated", f"user:{user.id}",
                    note=note)
    return user


async def find_user(session: AsyncSession, ref: str | int) -> User:
    """A person by Telegram/local id, or by ``#<user id>``."""
    s = str(ref).strip()
    u = None
    if s.startswith("#") and s[1:].isdigit():
        u = await session.get(User, int(s[1:]))
    elif s.lstrip("-").isdigit():
        u = await session.scalar(select(User).where(User.telegram_id == int(s)))
    if u is None:
        raise NotFound("users.err_no_user", ref=s)
    return u


async def revoke_invite(session: AsyncSession, invite_id: int, *, actor: str) -> InviteCode:
    """An unused invite stops working now (it expires at once); a used one cannot be revoked
    (change the person's role instead)."""
    inv = await session.get(InviteCode, invite_id)
    if inv is None:
        raise NotFound("common.err_not_found")
    if inv.used_by is not None:
        raise DomainError("users.err_code_used")
    if inv.expires_at > now():
        inv.expires_at = now()
        await audit(session, actor, "invite.revoked", f"invite:{inv.id}")
    return inv
