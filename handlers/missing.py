"""灯塔工程 in chat: 报告走失人员 (everyone), 登记滞留人员 / 比对审核 / 人像协作 (officers).

Thin: parse, call ``backend.missing.service``, reply with ``t("missing.*")``. A refused action
is a ``DomainError`` the update middleware turns into a rollback and a polite reply (no
try/except here). The two forms are tables of steps (``REPORT``, ``FOUND``): one set of
handlers walks any table — a typed answer, a skip, a sex or place button — and ends in a
summary with an edit button per field before anything is written. Photos are checked as they
arrive (no face → ask again; several faces → numbered boxes; a poor photo → the reasons and a
request for a better one; somebody else than on the other photos → asked).
"""
from __future__ import annotations

import asyncio
import enum
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local, now
from backend.core.files import read_blob
from backend.core.i18n import Translator
from backend.faces.errors import MultipleFaces
from backend.faces.images import MAX_UPLOAD_BYTES, load_image
from backend.missing import service
from backend.users.audit import audit_read
from backend.missing.workflow import CandidateAction, Check, RejectReason
from backend.users.models import Role, User
from bot.filters import RoleFilter
from bot.menu import ALL_ROLES, MenuCb, inline, register_menu_item

# Before disputes (50): every handler here is bound to a missing-person state, command or
# button, except the "someone is lost" hint, which must win over the complaint detector.
PRIORITY = 40
TEXT = F.text & ~F.text.startswith("/")  # commands (other slices' too) pass through our steps
LOST_WORDS = re.compile(r"走失|走丢|失踪|寻人|找不到.{0,6}(人|老人|孩子|儿子|女儿|父亲|母亲|爸|妈|爷|奶|婆|公)")

register_menu_item("missing_report", "missing.menu_report", ALL_ROLES, order=20)
register_menu_item("missing_mine", "missing.menu_mine", ALL_ROLES, order=21)
register_menu_item("missing_found", "missing.menu_found", {Role.officer}, order=30)
register_menu_item("missing_review", "missing.menu_review", {Role.officer}, order=31)
register_menu_item("missing_assist", "missing.menu_assist", {Role.officer}, order=32)

router = Router(name="missing")
staff = Router(name="missing-staff")  # officers (and admins) only
staff.message.filter(RoleFilter(Role.officer))
staff.callback_query.filter(RoleFilter(Role.officer))
refused = Router(name="missing-refused")  # what reaches here came from somebody else: the service says no


# ---------------------------------------------------------------- callback data (bot layer only)
class StepAct(str, enum.Enum):
    skip = "skip"
    next = "next"  # photos done → summary
    keep = "keep"  # use a poor photo anyway
    drop = "drop"  # remove the photo that looks like somebody else
    same = "same"  # it is the same person after all


class ReviewCb(CallbackData, prefix="mrv"):
    action: CandidateAction
    id: int


class EvidenceCb(CallbackData, prefix="mev"):
    id: int


class CheckCb(CallbackData, prefix="mck"):
    id: int
    mask: int  # the ticks after this press, one bit per Check
    item: Check


class CheckDoneCb(CallbackData, prefix="mcd"):
    id: int
    mask: int


class RejectCb(CallbackData, prefix="mrj"):
    id: int
    reason: RejectReason


class AssistAct(str, enum.Enum):
    cand = "cand"
    none = "none"


class AssistCb(CallbackData, prefix="mas"):
    action: AssistAct
    id: int


class TargetCb(CallbackData, prefix="mat"):
    id: int  # county id, 0 = every other county


class Sex(str, enum.Enum):
    M = "M"
    F = "F"
    U = "U"  # unknown


class SexCb(CallbackData, prefix="msx"):
    v: Sex


class PlaceCb(CallbackData, prefix="mpl"):
    id: int


class FaceCb(CallbackData, prefix="mfc"):
    n: int  # 1-based label drawn on the preview


class StepCb(CallbackData, prefix="mst"):
    a: StepAct


class FormField(str, enum.Enum):
    """The fields a summary can edit (the ``field`` of a form step; ``place`` edits the place step)."""

    name = "name"
    sex = "sex"
    age = "age"
    height = "height"
    place = "place"
    seen_at = "seen_at"
    clothing = "clothing"
    health = "health"
    phone = "phone"
    photos = "photos"
    features = "features"
    notes = "notes"


class EditCb(CallbackData, prefix="med"):
    field: FormField


class SubmitCb(CallbackData, prefix="msb"):
    draft: str  # the draft's key: a second tap finds the case the first one created


class WithdrawCb(CallbackData, prefix="mwd"):
    id: int
    go: bool = False


STAFF_PREFIXES = {cb.__prefix__ for cb in (ReviewCb, EvidenceCb, CheckCb, CheckDoneCb, RejectCb, AssistCb, TargetCb)}
REVIEW_LABELS = {CandidateAction.confirm: "missing.btn_confirm", CandidateAction.second: "missing.btn_second",
                 CandidateAction.reject: "missing.btn_reject", CandidateAction.undo: "missing.btn_undo"}


def review_buttons(actions, cid: int) -> list[list[tuple[str, str]]]:
    row = [(REVIEW_LABELS[a], ReviewCb(action=a, id=cid).pack()) for a in actions if a in REVIEW_LABELS]
    return [row, [("missing.btn_evidence", EvidenceCb(id=cid).pack())]] if row else []


service.set_review_button_factory(review_buttons)
service.set_assist_button_factory(lambda rid: [[("missing.btn_assist_candidate", AssistCb(action=AssistAct.cand, id=rid).pack()),
                                                ("missing.btn_assist_none", AssistCb(action=AssistAct.none, id=rid).pack())]])


# ---------------------------------------------------------------- the forms, as tables
class MissingReport(StatesGroup):
    name = State()
    sex = State()
    age = State()
    height = State()
    place = State()
    place_detail = State()
    seen_at = State()
    clothing = State()
    health = State()
    phone = State()
    photos = State()
    choose = State()
    summary = State()


class MissingFound(StatesGroup):
    photos = State()
    choose = State()
    place = State()
    place_detail = State()
    seen_at = State()
    age = State()
    sex = State()
    height = State()
    name = State()
    clothing = State()
    features = State()
    notes = State()
    summary = State()


class MissingAssist(StatesGroup):
    photos = State()
    choose = State()
    target = State()
    note = State()


class RejectNote(StatesGroup):
    note = State()


class MissingAssistReply(StatesGroup):
    case_no = State()


def _text(limit: int) -> Callable[[str], str]:
    return lambda s: s.strip()[:limit]


def _seen_at(s: str) -> str:
    return service.parse_seen_at(s).isoformat()


@dataclass(frozen=True)
class Step:
    state: State
    field: str
    ask: str  # i18n key of the question
    parse: Callable[[str], object] | None = None  # None: the step has its own handler (place, photos)
    skip: str | None = None  # label key of the skip button (the value is then None)
    kb: str | None = None  # "sex" | "place"


R, FD = MissingReport, MissingFound
REPORT = (
    Step(R.name, "name", "missing.ask_name", _text(64)),
    Step(R.sex, "sex", "missing.ask_sex", service.parse_sex, kb="sex"),
    Step(R.age, "age", "missing.ask_age", service.parse_age),
    Step(R.height, "height", "missing.ask_height", service.parse_height, skip="missing.btn_skip"),
    Step(R.place, "jid", "missing.ask_place", kb="place"),
    Step(R.place_detail, "place", "missing.ask_place_detail"),
    Step(R.seen_at, "seen_at", "missing.ask_seen_at", _seen_at, skip="missing.btn_unknown"),
    Step(R.clothing, "clothing", "missing.ask_clothing", _text(500), skip="missing.btn_skip"),
    Step(R.health, "health", "missing.ask_health", _text(500), skip="missing.btn_none"),
    Step(R.phone, "phone", "missing.ask_phone", service.parse_phone),
    Step(R.photos, "photos", "missing.ask_photos"),
)
FOUND = (
    Step(FD.photos, "photos", "missing.found_intro"),
    Step(FD.place, "jid", "missing.found_ask_place", kb="place"),
    Step(FD.place_detail, "place", "missing.ask_place_detail"),
    Step(FD.seen_at, "seen_at", "missing.found_ask_time", _seen_at, skip="missing.btn_just_now"),
    Step(FD.age, "age", "missing.found_ask_age", lambda s: service.parse_age(s, allow_unknown=True),
         skip="missing.btn_unknown"),
    Step(FD.sex, "sex", "missing.found_ask_sex", service.parse_sex, kb="sex"),
    Step(FD.height, "height", "missing.found_ask_height", service.parse_height, skip="missing.btn_skip"),
    Step(FD.name, "name", "missing.found_ask_name", _text(64), skip="missing.btn_skip"),
    Step(FD.clothing, "clothing", "missing.found_ask_clothing", _text(500), skip="missing.btn_skip"),
    Step(FD.features, "features", "missing.found_ask_features", _text(500), skip="missing.btn_skip"),
    Step(FD.notes, "notes", "missing.found_ask_notes", _text(500), skip="missing.btn_skip"),
)
FORMS = {"report": REPORT, "found": FOUND}
SUMMARY = {"report": R.summary, "found": FD.summary}
CHOOSE = {"report": R.choose, "found": FD.choose, "assist": MissingAssist.choose}
PHOTO_STEP = {"report": R.photos, "found": FD.photos, "assist": MissingAssist.photos}
STEPS = {s.state.state: (flow, i) for flow, form in FORMS.items() for i, s in enumerate(form)}
TABLE_TEXT = [s.state for form in FORMS.values() for s in form if s.parse is not None]
PLACE_STATES = [R.place, FD.place]
DETAIL_STATES = [R.place_detail, FD.place_detail]


def _flow_of(state: str | None) -> str:
    """The flow (report / found / assist) a photo step or face choice belongs to."""
    return next(flow for flow in PHOTO_STEP if state in (PHOTO_STEP[flow].state, CHOOSE[flow].state))


def sex_kb(t: Translator):
    return inline([[(t(f"missing.sex_{v.value}"), SexCb(v=v).pack()) for v in Sex]])


async def place_kb(session: AsyncSession, cb=lambda j: PlaceCb(id=j.id).pack(), extra=(), nodes=None):
    items = [(j.name, cb(j)) for j in (nodes if nodes is not None else await service.counties(session))] + list(extra)
    return inline([items[i:i + 3] for i in range(0, len(items), 3)])


async def ask(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, step: Step) -> None:
    """Put the person on ``step`` and ask its question with the right buttons."""
    await state.set_state(step.state)
    kb = None
    if step.kb == "sex":
        kb = sex_kb(t)
    elif step.kb == "place":
        kb = await place_kb(session)
    elif step.skip:
        kb = inline([[(t(step.skip), StepCb(a=StepAct.skip).pack())]])
    params = {"max": service.MAX_PHOTOS}
    await reply.answer(t(step.ask, **params), reply_markup=kb)


async def advance(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, **values) -> None:
    """Store the answer of the current step and go on: the next step, or back to the summary
    when the person came from its edit button (place → detail still asks the detail)."""
    await state.update_data(**values)
    flow, i = STEPS[await state.get_state()]
    form = FORMS[flow]
    data = await state.get_data()
    nxt = form[i + 1] if i + 1 < len(form) else None
    if data.get("editing") and form[i].kb != "place":  # an edited answer goes back to the summary
        nxt = None  # (a place still asks its detail)
    if nxt is None:
        await show_summary(reply, state, t, session, flow)
    else:
        await ask(reply, state, t, session, nxt)


async def show_summary(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, flow: str) -> None:
    await state.set_state(SUMMARY[flow])
    await state.update_data(editing=False)
    d = await state.get_data()
    lines, edits = [], []
    for s in FORMS[flow]:
        if s.field in ("jid",):
            continue
        lines.append(t(f"missing.sum_{s.field}", value=await _shown(session, t, s.field, d)))
        edits.append((t(f"missing.edit_{s.field}"), EditCb(field=FormField(s.field)).pack()))
    rows = [edits[i:i + 3] for i in range(0, len(edits), 3)]
    rows.append([(t("missing.btn_submit"), SubmitCb(draft=d["draft"]).pack())])
    await reply.answer(t("missing.summary_header") + "\n" + "\n".join(lines), reply_markup=inline(rows))


async def _shown(session: AsyncSession, t: Translator, field: str, d: dict) -> str:
    v = d.get(field)
    if field == "place":
        return " ".join(x for x in (await service.place_name(session, d.get("jid")), v) if x) or "-"
    if field == "sex":
        return t(f"missing.sex_{v or 'U'}")
    if field == "seen_at":
        return fmt_local(datetime.fromisoformat(v)) if v else t("missing.btn_unknown")
    if field == "photos":
        return str(len(v or []))
    return "-" if v in (None, "") else str(v)


# ---------------------------------------------------------------- starting the forms
async def _opened(event: Message | CallbackQuery) -> Message:
    """The message to answer, for a command and a menu button alike."""
    if isinstance(event, CallbackQuery):
        await event.answer()
        return event.message
    return event


async def start_form(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, flow: str) -> None:
    await state.clear()
    await state.update_data(draft=uuid.uuid4().hex, photos=[])
    if flow == "report":
        await reply.answer(t("missing.intro"))
    await ask(reply, state, t, session, FORMS[flow][0])


@router.message(Command("missing"))
@router.callback_query(MenuCb.filter(F.action == "missing_report"))
async def open_report(event: Message | CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    await start_form(await _opened(event), state, t, session, "report")


@router.message(StateFilter(None), F.text.func(lambda s: bool(s) and not s.startswith("/") and bool(LOST_WORDS.search(s))))
async def lost_hint(message: Message, t: Translator) -> None:
    await message.answer(t("missing.lost_hint"), reply_markup=inline([[
        (t("missing.menu_report"), MenuCb(action="missing_report").pack())]]))


@staff.message(Command("missing_found"))
@staff.callback_query(MenuCb.filter(F.action == "missing_found"))
async def open_found(event: Message | CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    await start_form(await _opened(event), state, t, session, "found")


# ---------------------------------------------------------------- walking a table
@router.message(StateFilter(*TABLE_TEXT), TEXT)
async def typed_answer(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    flow, i = STEPS[await state.get_state()]
    step = FORMS[flow][i]
    value = step.parse(message.text)
    if step.field == "name" and not value:
        raise service.MissingError("missing.err_name")
    await advance(message, state, t, session, **{step.field: value})


@router.callback_query(StepCb.filter(F.a == StepAct.skip), StateFilter(*[s.state for f in FORMS.values() for s in f if s.skip]))
async def skip(cq: CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    await cq.answer()
    flow, i = STEPS[await state.get_state()]
    await advance(cq.message, state, t, session, **{FORMS[flow][i].field: None})


@router.callback_query(SexCb.filter(), StateFilter(R.sex, FD.sex))
async def sex_button(cq: CallbackQuery, callback_data: SexCb, state: FSMContext, t: Translator,
                     session: AsyncSession) -> None:
    await cq.answer()
    await advance(cq.message, state, t, session, sex=None if callback_data.v == Sex.U else callback_data.v.value)


@router.callback_query(PlaceCb.filter(), StateFilter(*PLACE_STATES))
async def place_button(cq: CallbackQuery, callback_data: PlaceCb, state: FSMContext, t: Translator,
                       session: AsyncSession) -> None:
    await cq.answer()
    await advance(cq.message, state, t, session, jid=callback_data.id)


@router.message(StateFilter(*PLACE_STATES), TEXT)
async def place_text(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    j = await service.resolve_place(session, message.text)
    if j is None:
        await message.answer(t("missing.err_place"), reply_markup=await place_kb(session))
        return
    await state.update_data(jid=j.id, place=message.text.strip()[:255])
    flow, i = STEPS[await state.get_state()]
    await state.set_state(FORMS[flow][i + 1].state)  # the detail is given already
    await advance(message, state, t, session)


@router.message(StateFilter(*PLACE_STATES), F.location)
async def place_location(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    j = await service.nearest_place(session, message.location.latitude, message.location.longitude)
    if j is None:
        await message.answer(t("missing.err_place"), reply_markup=await place_kb(session))
        return
    await state.update_data(jid=j.id, place=j.name)
    flow, i = STEPS[await state.get_state()]
    await state.set_state(FORMS[flow][i + 1].state)
    await advance(message, state, t, session)


@router.message(StateFilter(*DETAIL_STATES), TEXT)
async def place_detail(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    d = await state.get_data()
    finer = await service.resolve_place_within(session, d.get("jid"), message.text)
    await advance(message, state, t, session, place=message.text.strip()[:255],
                  jid=finer.id if finer else d.get("jid"))


@router.callback_query(EditCb.filter(), StateFilter(R.summary, FD.summary))
async def edit_field(cq: CallbackQuery, callback_data: EditCb, state: FSMContext, t: Translator,
                     session: AsyncSession) -> None:
    await cq.answer()
    flow = "report" if await state.get_state() == R.summary.state else "found"
    field = "jid" if callback_data.field == FormField.place else callback_data.field.value
    step = next(s for s in FORMS[flow] if s.field == field)
    await state.update_data(editing=True)
    if field == "photos":
        await state.update_data(photos=[])
    await ask(cq.message, state, t, session, step)


# ---------------------------------------------------------------- photos (all three flows)
def _photo_ref(message: Message) -> tuple[str | None, int | None, str]:
    """(file_id, size, mime) of an attached photo or image document."""
    if message.photo:
        p = message.photo[-1]
        return p.file_id, p.file_size, "image/jpeg"
    if message.document:
        d = message.document
        return d.file_id, d.file_size, d.mime_type or "application/octet-stream"
    return None, None, ""


def _faces(ctx):
    return ctx.faces if service.faces_ready(ctx.faces) else None


async def _download(bot: Bot, file_id: str) -> bytes:
    return (await bot.download(file_id)).read()


async def _photos(bot: Bot, items: list[dict]) -> list[service.Photo]:
    return [service.Photo(await _download(bot, p["fid"]), p.get("choose"),
                          p["mime"] if (p.get("mime") or "").startswith("image/") else "image/jpeg") for p in items]


@router.message(StateFilter(*PHOTO_STEP.values()), F.photo | F.document)
async def got_photo(message: Message, bot: Bot, state: FSMContext, t: Translator, ctx, session: AsyncSession,
                    user: User) -> None:
    flow = _flow_of(await state.get_state())
    if len((await state.get_data()).get("photos", [])) >= service.MAX_PHOTOS:
        await message.answer(t("missing.photo_limit", max=service.MAX_PHOTOS))
        return
    fid, size, mime = _photo_ref(message)
    if size is not None and size > MAX_UPLOAD_BYTES:
        await message.answer(t("faces.err_too_large", max_mb=MAX_UPLOAD_BYTES // (1024 * 1024)))
        return
    await _check(message, bot, state, t, ctx, session, flow, {"fid": fid, "choose": None, "mime": mime}, user)


async def _check(reply: Message, bot: Bot, state: FSMContext, t: Translator, ctx, session: AsyncSession,
                 flow: str, photo: dict, user: User) -> None:
    """Check one photo: unusable → say why and stay; several faces → choose; poor → ask for a
    better one (or keep it); somebody else than on the other photos → ask. Else take it."""
    data, faces = await _download(bot, photo["fid"]), _faces(ctx)
    if faces is None:  # no face model: still refuse files that are not photos
        await asyncio.to_thread(load_image, data)
        await _take(reply, state, t, session, flow, photo, note="\n" + t("missing.faces_unavailable"), user=user)
        return
    try:
        seen = await service.check_photo(faces, data, photo["choose"])
    except MultipleFaces as e:
        await state.update_data(pending=photo)
        await state.set_state(CHOOSE[flow])
        rows = [[(str(i), FaceCb(n=i).pack()) for i in range(1, len(e.faces) + 1)]]
        await reply.answer_photo(BufferedInputFile(e.preview_jpeg(), "faces.jpg"),
                                 caption=t("missing.choose_face", count=len(e.faces)), reply_markup=inline(rows))
        return
    reasons = service.quality_reasons(seen)
    if reasons and not photo.get("poor"):
        await state.update_data(pending={**photo, "poor": True})
        await state.set_state(PHOTO_STEP[flow])
        why = t("missing.list_sep").join(t(f"missing.quality_{r}") for r in reasons)
        await reply.answer(t("missing.photo_poor", reasons=why), reply_markup=inline([[
            (t("missing.btn_keep_poor"), StepCb(a=StepAct.keep).pack())]]))
        return
    await _take(reply, state, t, session, flow, photo, user=user)
    await _same_person_check(reply, bot, state, t, faces, flow)


async def _take(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, flow: str, photo: dict,
                note: str = "", user: User | None = None) -> None:
    photos = (await state.get_data()).get("photos", []) + [photo]
    await state.update_data(photos=photos, pending=None)
    await state.set_state(PHOTO_STEP[flow])
    if flow == "assist":
        await state.set_state(MissingAssist.target)
        extra = [(t("missing.btn_assist_all"), TargetCb(id=0).pack())]
        await reply.answer(t("missing.assist_ask_target") + note, reply_markup=await place_kb(
            session, cb=lambda j: TargetCb(id=j.id).pack(), extra=extra,
            nodes=await service.assist_counties(session, user)))
        return
    key = "missing.photo_limit" if len(photos) >= service.MAX_PHOTOS else "missing.photo_ok"
    await reply.answer(t(key, n=len(photos), max=service.MAX_PHOTOS) + note,
                       reply_markup=inline([[(t("missing.btn_next"), StepCb(a=StepAct.next).pack())]]))


async def _same_person_check(reply: Message, bot: Bot, state: FSMContext, t: Translator, faces, flow: str) -> None:
    photos = (await state.get_data()).get("photos", [])
    if len(photos) < 2:
        return
    seen = [await service.check_photo(faces, p.data, p.choose) for p in await _photos(bot, photos)]
    odd = service.different_people([s.embedding for s in seen])
    if len(photos) - 1 in odd:
        await reply.answer(t("missing.photo_other_person", n=len(photos)), reply_markup=inline([[
            (t("missing.btn_drop_photo"), StepCb(a=StepAct.drop).pack()),
            (t("missing.btn_same_person"), StepCb(a=StepAct.same).pack())]]))


@router.callback_query(StepCb.filter(F.a == StepAct.keep), StateFilter(*PHOTO_STEP.values()))
async def keep_poor(cq: CallbackQuery, bot: Bot, state: FSMContext, t: Translator, ctx, session: AsyncSession,
                    user: User) -> None:
    await cq.answer()
    pending = (await state.get_data()).get("pending")
    if not pending:
        raise service.MissingError("common.stale_button")
    await _check(cq.message, bot, state, t, ctx, session, _flow_of(await state.get_state()), pending, user)


@router.callback_query(StepCb.filter(F.a.in_({StepAct.drop, StepAct.same})), StateFilter(R.photos, FD.photos))
async def other_person(cq: CallbackQuery, callback_data: StepCb, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    photos = (await state.get_data()).get("photos", [])
    if callback_data.a == StepAct.drop and photos:
        await state.update_data(photos=photos[:-1])
    await cq.message.answer(t("missing.photo_ok", n=len(photos) - (callback_data.a == StepAct.drop),
                              max=service.MAX_PHOTOS),
                            reply_markup=inline([[(t("missing.btn_next"), StepCb(a=StepAct.next).pack())]]))


@router.callback_query(FaceCb.filter(), StateFilter(*CHOOSE.values()))
async def chose_face(cq: CallbackQuery, callback_data: FaceCb, bot: Bot, state: FSMContext, t: Translator,
                     ctx, session: AsyncSession, user: User) -> None:
    await cq.answer()
    pending = (await state.get_data()).get("pending")
    if not pending:
        raise service.MissingError("common.stale_button")
    await _check(cq.message, bot, state, t, ctx, session, _flow_of(await state.get_state()),
                 {**pending, "choose": callback_data.n - 1}, user)


@router.message(StateFilter(*PHOTO_STEP.values(), *CHOOSE.values()), ~F.text.startswith("/"))
async def not_a_photo(message: Message, state: FSMContext, t: Translator) -> None:
    choosing = await state.get_state() in {s.state for s in CHOOSE.values()}
    await message.answer(t("missing.choose_face_hint" if choosing else "missing.ask_photo_again"))


@router.callback_query(StepCb.filter(F.a == StepAct.next), StateFilter(R.photos, FD.photos))
async def photos_done(cq: CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    await cq.answer()
    if not (await state.get_data()).get("photos"):
        raise service.MissingError("missing.err_no_photo")
    await advance(cq.message, state, t, session)


# ---------------------------------------------------------------- submit (once per draft)
@router.callback_query(SubmitCb.filter())
async def submit(cq: CallbackQuery, callback_data: SubmitCb, state: FSMContext, t: Translator,
                 session: AsyncSession, user: User, bot: Bot, ctx) -> None:
    await cq.answer()
    d = await state.get_data()
    flow = "found" if await state.get_state() == FD.summary.state else "report"
    if d.get("draft") != callback_data.draft:  # submitted already (a second tap) or a stale summary
        case = await service.case_by_draft(session, user, callback_data.draft)
        await cq.message.answer(t("missing.already_submitted", case_no=case.case_no))
        return
    out = await _create(flow, d, session, user, bot, ctx)
    await service.queue_for_review(session, ctx.files, out.candidates)
    await state.clear()
    key = "missing.report_done" if flow == "report" else (
        "missing.found_done" if out.candidates else "missing.found_done_none")
    text = t(key, case_no=out.case.case_no, n=len(out.candidates))
    if not out.face_available:
        text += "\n" + t("missing.faces_unavailable")
    if not out.created:
        text = t("missing.already_submitted", case_no=out.case.case_no)
    await cq.message.answer(text)


async def _create(flow: str, d: dict, session: AsyncSession, user: User, bot: Bot, ctx) -> service.Outcome:
    j = await session.get(service.Jurisdiction, d["jid"]) if d.get("jid") else None
    seen_at = datetime.fromisoformat(d["seen_at"]) if d.get("seen_at") else None
    common = dict(faces=_faces(ctx), store=ctx.files, photos=await _photos(bot, d["photos"]),
                  jurisdiction=j, place=d.get("place"), sex=d.get("sex"), age=d.get("age"),
                  height_cm=d.get("height"), clothing=d.get("clothing"), draft_key=d["draft"])
    if flow == "report":
        return await service.create_missing(session, user, name=d.get("name") or "", seen_at=seen_at,
                                            health=d.get("health"), phone=d.get("phone") or "", **common)
    return await service.register_found(session, user, name=d.get("name"), seen_at=seen_at or now(),
                                        features=d.get("features"), notes=d.get("notes"), **common)


# ---------------------------------------------------------------- officer: review queue
async def _card(reply: Message, t: Translator, session: AsyncSession, user: User, ctx, c) -> None:
    img = await service.review_image(session, ctx.files, c)
    key = "missing.review_second" if c.status == service.CHECKED else "missing.review_new"
    text = t(key, first="-", checklist=", ".join(t(f"missing.check_{x}") for x in c.checklist or []),
             **service.review_params(t, c))
    kb = inline([[(t(label), data) for label, data in row] for row in review_buttons(service.actions_for(user, c), c.id)])
    data = await read_blob(ctx.files, img.sha256) if img is not None else None
    if data is None:
        await reply.answer(text, reply_markup=kb)
        return
    await reply.answer_photo(BufferedInputFile(data, "review.jpg"), caption=text[:1024], reply_markup=kb)


@staff.message(Command("missing_review"))
@staff.callback_query(MenuCb.filter(F.action == "missing_review"))
async def show_reviews(event: Message | CallbackQuery, session: AsyncSession, user: User, t: Translator, ctx) -> None:
    reply = await _opened(event)
    pending = await service.pending_reviews(session, user)
    if not pending:
        await reply.answer(t("missing.review_none"))
        return
    await audit_read(session, user, "match", None, channel="chat", action="queue",
                     detail={"candidates": [c.id for c in pending[:10]]})
    for c in pending[:10]:
        await _card(reply, t, session, user, ctx, c)


def checklist_kb(t: Translator, cid: int, mask: int):
    rows = [[(("☑ " if mask & (1 << i) else "☐ ") + t(f"missing.check_{x.value}"),
              CheckCb(id=cid, mask=mask ^ (1 << i), item=x).pack())] for i, x in enumerate(Check)]
    rows.append([(t("missing.btn_checklist_done"), CheckDoneCb(id=cid, mask=mask).pack())])
    return inline(rows)


@staff.callback_query(ReviewCb.filter(F.action == CandidateAction.confirm))
async def review_confirm(cq: CallbackQuery, callback_data: ReviewCb, session: AsyncSession, user: User,
                         t: Translator, ctx) -> None:
    c = await service.begin_decision(session, user, callback_data.id, CandidateAction.confirm, ctx.settings)
    await cq.answer()
    await _drop_buttons(cq)  # the decision goes on below (the card comes back with /missing_review)
    await cq.message.answer(t("missing.checklist", missing_no=c.missing.case_no, found_no=c.found.case_no),
                            reply_markup=checklist_kb(t, c.id, 0))


@staff.callback_query(CheckCb.filter())
async def checklist_toggle(cq: CallbackQuery, callback_data: CheckCb, t: Translator) -> None:
    await cq.answer()
    await cq.message.edit_reply_markup(reply_markup=checklist_kb(t, callback_data.id, callback_data.mask))


@staff.callback_query(CheckDoneCb.filter())
async def checklist_done(cq: CallbackQuery, callback_data: CheckDoneCb, session: AsyncSession, user: User,
                         t: Translator, ctx) -> None:
    ticked = [x.value for i, x in enumerate(Check) if callback_data.mask & (1 << i)]
    c = await service.confirm(session, user, callback_data.id, checklist=ticked, settings=ctx.settings)
    await cq.answer()
    await _drop_buttons(cq)
    await _decided(cq.message, t, c, ctx)


async def _decided(reply: Message, t: Translator, c, ctx) -> None:
    params = dict(missing_no=c.missing.case_no, found_no=c.found.case_no, minutes=ctx.settings.missing_undo_minutes)
    key = {service.CHECKED: "missing.review_checked", service.CONFIRMED: "missing.review_confirmed",
           service.REJECTED: "missing.review_rejected", service.PENDING: "missing.review_undone"}[c.status]
    kb = None
    if c.status in (service.CONFIRMED, service.REJECTED) and ctx.settings.missing_undo_minutes:
        kb = inline([[(t("missing.btn_undo"), ReviewCb(action=CandidateAction.undo, id=c.id).pack())]])
    await reply.answer(t(key, **params), reply_markup=kb)


DECISIONS = {CandidateAction.second: service.second_confirm, CandidateAction.undo: service.undo}


@staff.callback_query(ReviewCb.filter(F.action.in_(set(DECISIONS))))
async def review_decision(cq: CallbackQuery, callback_data: ReviewCb, session: AsyncSession, user: User,
                          t: Translator, ctx) -> None:
    c = await DECISIONS[callback_data.action](session, user, callback_data.id, settings=ctx.settings)
    await cq.answer()
    await _drop_buttons(cq)
    await _decided(cq.message, t, c, ctx)
    if c.status == service.PENDING:  # undone: back in the queue, with its buttons
        await _card(cq.message, t, session, user, ctx, c)


@staff.callback_query(ReviewCb.filter(F.action == CandidateAction.reject))
async def review_reject(cq: CallbackQuery, callback_data: ReviewCb, session: AsyncSession, user: User,
                        t: Translator, ctx) -> None:
    await service.begin_decision(session, user, callback_data.id, CandidateAction.reject, ctx.settings)
    await cq.answer()
    await _drop_buttons(cq)
    rows = [[(t(f"missing.reason_{r.value}"), RejectCb(id=callback_data.id, reason=r).pack())] for r in RejectReason]
    await cq.message.answer(t("missing.ask_reject_reason"), reply_markup=inline(rows))


@staff.callback_query(RejectCb.filter())
async def reject_reason(cq: CallbackQuery, callback_data: RejectCb, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    await state.set_state(RejectNote.note)
    await state.update_data(reject_id=callback_data.id, reason=callback_data.reason.value)
    await cq.message.answer(t("missing.ask_reject_note", reason=t(f"missing.reason_{callback_data.reason.value}")),
                            reply_markup=inline([[(t("missing.btn_skip"), StepCb(a=StepAct.skip).pack())]]))


async def _reject(reply: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator, ctx,
                  note: str | None) -> None:
    d = await state.get_data()
    c = await service.reject(session, user, d["reject_id"], note, reason=d["reason"], settings=ctx.settings)
    await state.clear()
    await _decided(reply, t, c, ctx)


@staff.message(RejectNote.note, TEXT)
async def reject_note(message: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator,
                      ctx) -> None:
    await _reject(message, state, session, user, t, ctx, message.text)


@staff.callback_query(StepCb.filter(F.a == StepAct.skip), RejectNote.note)
async def reject_no_note(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, t: Translator,
                         ctx) -> None:
    await _reject(cq.message, state, session, user, t, ctx, None)  # refused ("other" needs words): an alert
    await cq.answer()


@staff.callback_query(EvidenceCb.filter())
async def review_evidence(cq: CallbackQuery, callback_data: EvidenceCb, session: AsyncSession, user: User,
                          t: Translator, ctx) -> None:
    """Every photo of both cases, the face that was used boxed on each."""
    ev = await service.review_evidence(session, user, callback_data.id, ctx.files)
    await cq.answer()
    for side in ("missing", "found"):
        for p in await service.marked_photos(session, user, ev[side]["id"], ctx.files):
            caption = t("missing.evidence_photo", case_no=ev[side]["case_no"], n=p["n"] + 1, total=p["total"],
                        grade=t(f"missing.grade_{p['grade']}"),
                        matched=t("missing.evidence_matched") if p["n"] == ev[side]["matched_photo"] else "")
            await cq.message.answer_photo(BufferedInputFile(p["jpeg"], "photo.jpg"), caption=caption)


async def _drop_buttons(cq: CallbackQuery) -> None:
    """A decided review / answered request keeps its text but loses its buttons."""
    try:
        await cq.message.edit_reply_markup(reply_markup=None)
    except TelegramBadRequest:  # too old to edit, or edited already: the decision stands
        pass


# ---------------------------------------------------------------- citizen: my reports, withdraw
@router.message(Command("missing_my", "missing_delete"))
@router.callback_query(MenuCb.filter(F.action == "missing_mine"))
async def show_mine(event: Message | CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
    reply = await _opened(event)
    cases = [c for c in await service.list_cases(session, user) if c.reporter_id == user.id]
    if not cases:
        await reply.answer(t("missing.mine_none"))
        return
    lines = [t("missing.mine_line", case_no=c.case_no, name=c.name or "-", status=t(f"missing.status_{c.status}"),
               faces=t(f"missing.face_state_{c.face_state}")) for c in cases]
    rows = [[(t("missing.btn_withdraw", case_no=c.case_no), WithdrawCb(id=c.id).pack())]
            for c in cases if c.status != service.CLOSED]
    await reply.answer(t("missing.mine_header") + "\n" + "\n".join(lines), reply_markup=inline(rows) if rows else None)


@router.callback_query(WithdrawCb.filter(~F.go))
async def withdraw_ask(cq: CallbackQuery, callback_data: WithdrawCb, session: AsyncSession, user: User,
                       t: Translator) -> None:
    case = await service.get_case(session, user, callback_data.id)
    await cq.answer()
    await cq.message.answer(t("missing.withdraw_confirm", case_no=case.case_no), reply_markup=inline([[
        (t("missing.btn_withdraw_go"), WithdrawCb(id=case.id, go=True).pack())]]))


@router.callback_query(WithdrawCb.filter(F.go))
async def withdraw(cq: CallbackQuery, callback_data: WithdrawCb, session: AsyncSession, user: User,
                   t: Translator, ctx) -> None:
    case = await service.close_case(session, user, callback_data.id, ctx.faces, ctx.settings,
                                    note="withdrawn by reporter", store=ctx.files)
    await cq.answer()
    await cq.message.answer(t("missing.withdraw_done", case_no=case.case_no))


# ---------------------------------------------------------------- officer: 人像协作
@staff.message(Command("missing_assist"))
@staff.callback_query(MenuCb.filter(F.action == "missing_assist"))
async def open_assist(event: Message | CallbackQuery, state: FSMContext, t: Translator) -> None:
    reply = await _opened(event)
    await state.clear()
    await state.update_data(photos=[])
    await state.set_state(MissingAssist.photos)
    await reply.answer(t("missing.assist_intro"))


@staff.callback_query(TargetCb.filter(), MissingAssist.target)
async def assist_target(cq: CallbackQuery, callback_data: TargetCb, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    await state.update_data(target=callback_data.id or None)
    await state.set_state(MissingAssist.note)
    await cq.message.answer(t("missing.assist_ask_note"),
                            reply_markup=inline([[(t("missing.btn_skip"), StepCb(a=StepAct.skip).pack())]]))


async def _send_assist(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, user: User,
                       bot: Bot, ctx, note: str | None) -> None:
    d = await state.get_data()
    photo = (await _photos(bot, d["photos"]))[0]
    req, n = await service.create_assist(session, user, store=ctx.files, photo=photo,
                                         faces=_faces(ctx), note=note, target_id=d.get("target"))
    await state.clear()
    await reply.answer(t("missing.assist_sent", no=req.id, n=n))


@staff.message(MissingAssist.note, TEXT)
async def assist_note(message: Message, state: FSMContext, t: Translator, session: AsyncSession, user: User,
                      bot: Bot, ctx) -> None:
    await _send_assist(message, state, t, session, user, bot, ctx, message.text)


@staff.callback_query(StepCb.filter(F.a == StepAct.skip), MissingAssist.note)
async def assist_no_note(cq: CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession, user: User,
                         bot: Bot, ctx) -> None:
    await cq.answer()
    await _send_assist(cq.message, state, t, session, user, bot, ctx, None)


@staff.callback_query(AssistCb.filter(F.action == AssistAct.cand))
async def assist_candidate(cq: CallbackQuery, callback_data: AssistCb, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    await state.set_state(MissingAssistReply.case_no)
    await state.update_data(assist_id=callback_data.id)
    await cq.message.answer(t("missing.assist_ask_case_no"))


@staff.callback_query(AssistCb.filter(F.action == AssistAct.none))
async def assist_none(cq: CallbackQuery, callback_data: AssistCb, session: AsyncSession, user: User,
                      t: Translator) -> None:
    await service.answer_assist(session, user, callback_data.id, None)
    await cq.answer()
    await _drop_buttons(cq)
    await cq.message.answer(t("missing.assist_answered_none", no=callback_data.id))


@staff.message(MissingAssistReply.case_no, TEXT)
async def assist_case_no(message: Message, state: FSMContext, session: AsyncSession, user: User,
                         t: Translator) -> None:
    d = await state.get_data()
    await service.answer_assist(session, user, d["assist_id"], message.text)
    await state.clear()
    await message.answer(t("missing.assist_answered_candidate", no=d["assist_id"], case_no=message.text.strip().upper()))


@staff.message(Command("missing_requests"))
async def cmd_requests(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    """The officer's help requests with their status and every answer."""
    reqs = await service.my_assist_requests(session, user)
    if not reqs:
        await message.answer(t("missing.requests_none"))
        return
    parts = []
    for r in reqs[:10]:
        answers = "\n".join(t("missing.request_answer", place=a["place"], officer=a["officer"],
                              case_no=a["case_no"] or t("missing.btn_assist_none")) for a in r["answers"])
        parts.append(t("missing.request_line", no=r["id"], status=t(f"missing.assist_status_{r['status']}"),
                       target=r["target"] or t("missing.btn_assist_all"), n=len(r["answers"]),
                       answers=answers or t("missing.request_no_answer")))
    await message.answer("\n\n".join(parts))


# ---------------------------------------------------------------- somebody else pressed an officer's button
@refused.message(Command("missing_found", "missing_assist", "missing_review", "missing_requests"))
@refused.callback_query(F.data.func(lambda d: (d or "").split(":")[0] in STAFF_PREFIXES))
async def officers_only(event, user: User) -> None:
    service.require_officer(user)  # raises: the middleware replies "仅限民警"


router.include_routers(staff, refused)
