"""灯塔工程 in chat: 报告走失人员 (everyone), 登记滞留人员 / 比对审核 / 人像协作 (officers).

Thin: parse, call ``backend.missing.service``, reply with ``t("missing.*")``. Photos are
checked by the face service as they arrive (no face → ask again; several faces → numbered
boxes and buttons 1…n); nothing is written until the report is submitted.
"""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.errors import DomainError
from backend.core.files import blob_path
from backend.core.i18n import Translator
from backend.faces.errors import MultipleFaces
from backend.faces.images import load_image
from backend.missing import callbacks, service
from backend.missing.models import PersonCase
from backend.users.audit import audit_read
from backend.users.models import Role, User
from bot.menu import ALL_ROLES, MenuCb, inline, register_menu_item

log = logging.getLogger("hehe.missing")
# Before disputes (50): every handler here is bound to a missing-person state, command or
# button, except the "someone is lost" hint, which must win over the complaint detector.
PRIORITY = 40
MAX_UPLOAD = 10 * 1024 * 1024
TEXT = F.text & ~F.text.startswith("/")  # commands (other slices' too) pass through our steps
LOST_WORDS = re.compile(r"走失|走丢|失踪|寻人|找不到.{0,6}(人|老人|孩子|儿子|女儿|父亲|母亲|爸|妈|爷|奶|婆|公)")

register_menu_item("missing_report", "missing.menu_report", ALL_ROLES, order=20)
register_menu_item("missing_mine", "missing.menu_mine", ALL_ROLES, order=21)
register_menu_item("missing_found", "missing.menu_found", {Role.officer}, order=30)
register_menu_item("missing_review", "missing.menu_review", {Role.officer}, order=31)
register_menu_item("missing_assist", "missing.menu_assist", {Role.officer}, order=32)


class ReviewCb(CallbackData, prefix=callbacks.REVIEW_PREFIX):
    action: str  # ok | no
    id: int


class AssistCb(CallbackData, prefix=callbacks.ASSIST_PREFIX):
    action: str  # cand | none
    id: int


class SexCb(CallbackData, prefix="msx"):
    v: str  # M | F | U


class PlaceCb(CallbackData, prefix="mpl"):
    id: int


class FaceCb(CallbackData, prefix="mfc"):
    n: int  # 1-based label drawn on the preview


class StepCb(CallbackData, prefix="mst"):
    a: str  # skip | submit


class WithdrawCb(CallbackData, prefix="mwd"):
    id: int
    go: int = 0


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


class MissingFound(StatesGroup):
    photo = State()
    choose = State()
    place = State()
    place_detail = State()
    age = State()
    sex = State()


class MissingAssist(StatesGroup):
    photo = State()
    choose = State()
    note = State()


class MissingAssistReply(StatesGroup):
    case_no = State()


PHOTO_STATES = {"report": (MissingReport.photos, MissingReport.choose), "found": (MissingFound.photo, MissingFound.choose),
                "assist": (MissingAssist.photo, MissingAssist.choose)}


# ---------------------------------------------------------------- small helpers
def _err(t: Translator, e: DomainError) -> str:
    return t(e.key, **e.params)


def sex_kb(t: Translator):
    return inline([[(t("missing.sex_M"), SexCb(v="M").pack()), (t("missing.sex_F"), SexCb(v="F").pack()),
                    (t("missing.sex_U"), SexCb(v="U").pack())]])


def skip_kb(t: Translator, key: str = "missing.btn_skip"):
    return inline([[(t(key), StepCb(a="skip").pack())]])


async def place_kb(session: AsyncSession):
    rows, row = [], []
    for j in await service.counties(session):
        row.append((j.name, PlaceCb(id=j.id).pack()))
        if len(row) == 3:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    return inline(rows)


def _officer(user: User) -> bool:
    return service.is_officer(user)


def _faces(ctx):
    return ctx.faces if service.faces_ready(ctx.faces) else None


async def _download(bot: Bot, file_id: str) -> bytes:
    buf = await bot.download(file_id)
    return buf.read()


def _photo_ref(message: Message) -> tuple[str | None, int | None, str]:
    """(file_id, size, mime) of an attached photo or image document."""
    if message.photo:
        p = message.photo[-1]
        return p.file_id, p.file_size, "image/jpeg"
    if message.document:
        d = message.document
        return d.file_id, d.file_size, d.mime_type or "application/octet-stream"
    return None, None, ""


# ---------------------------------------------------------------- photo intake (shared)
async def _intake(message: Message, bot: Bot, state: FSMContext, t: Translator, ctx, flow: str,
                  session: AsyncSession) -> None:
    """Check one incoming photo; on success hand it to the flow, on several faces ask to choose."""
    fid, size, mime = _photo_ref(message)
    if fid is None:
        await message.answer(t("missing.ask_photo_again"))
        return
    if size is not None and size > MAX_UPLOAD:
        await message.answer(t("faces.err_too_large", max_mb=MAX_UPLOAD // (1024 * 1024)))
        return
    data = await _download(bot, fid)
    faces = _faces(ctx)
    if faces is not None:
        try:
            await service.check_photo(faces, data)
        except MultipleFaces as e:
            await state.update_data(pending={"fid": fid, "mime": mime})
            await state.set_state(PHOTO_STATES[flow][1])
            rows = [[(str(i), FaceCb(n=i).pack()) for i in range(1, len(e.faces) + 1)]]
            await message.answer_photo(BufferedInputFile(e.preview_jpeg(), "faces.jpg"),
                                       caption=t("missing.choose_face", count=len(e.faces)),
                                       reply_markup=inline(rows))
            return
        except DomainError as e:
            await message.answer(_err(t, e) + "\n" + t("missing.ask_photo_again"))
            return
    else:
        try:  # no face model: still refuse files that are not photos
            await asyncio.to_thread(load_image, data)
        except DomainError as e:
            await message.answer(_err(t, e) + "\n" + t("missing.ask_photo_again"))
            return
    await _photo_ok(message, state, t, flow, {"fid": fid, "choose": None, "mime": mime},
                    checked=faces is not None, session=session)


async def _photo_ok(message: Message, state: FSMContext, t: Translator, flow: str, photo: dict,
                    *, checked: bool, session: AsyncSession) -> None:
    data = await state.get_data()
    note = "" if checked else "\n" + t("missing.faces_unavailable")
    if flow == "report":
        photos = data.get("photos", []) + [photo]
        await state.update_data(photos=photos, pending=None)
        await state.set_state(MissingReport.photos)
        if len(photos) >= service.MAX_PHOTOS:
            await message.answer(t("missing.photo_limit", max=service.MAX_PHOTOS) + note)
            return
        await message.answer(t("missing.photo_ok", n=len(photos), max=service.MAX_PHOTOS) + note,
                             reply_markup=inline([[(t("missing.btn_submit"), StepCb(a="submit").pack())]]))
    elif flow == "found":
        await state.update_data(photos=[photo], pending=None)
        await state.set_state(MissingFound.place)
        await message.answer(t("missing.found_ask_place") + note, reply_markup=await place_kb(session))
    else:
        await state.update_data(photos=[photo], pending=None)
        await state.set_state(MissingAssist.note)
        await message.answer(t("missing.assist_ask_note") + note, reply_markup=skip_kb(t))


async def _choose(cq: CallbackQuery, callback_data: FaceCb, bot: Bot, state: FSMContext, t: Translator,
                  ctx, flow: str, session: AsyncSession) -> None:
    data = await state.get_data()
    pending = data.get("pending")
    await cq.answer()
    if not pending:
        await cq.message.answer(t("common.stale_button"))
        return
    faces = _faces(ctx)
    raw = await _download(bot, pending["fid"])
    if faces is not None:
        try:
            await service.check_photo(faces, raw, callback_data.n - 1)
        except DomainError as e:
            await cq.message.answer(_err(t, e))
            return
    await _photo_ok(cq.message, state, t, flow,
                    {"fid": pending["fid"], "choose": callback_data.n - 1, "mime": pending.get("mime", "image/jpeg")},
                    checked=faces is not None, session=session)


async def _drop_buttons(cq: CallbackQuery) -> None:
    """A decided review / answered request keeps its text but loses its buttons."""
    try:
        await cq.message.edit_reply_markup(reply_markup=None)
    except Exception:  # noqa: BLE001 - too old to edit, or already edited: harmless
        pass


async def _photos(bot: Bot, items: list[dict]) -> list[service.Photo]:
    out = []
    for p in items:
        mime = p.get("mime") or "image/jpeg"
        out.append(service.Photo(await _download(bot, p["fid"]), p.get("choose"),
                                 mime if mime.startswith("image/") else "image/jpeg"))
    return out


# ---------------------------------------------------------------- router
def make_router() -> Router:
    r = Router(name="missing")

    # ------------------------------------------------ citizen: 报告走失人员
    async def start_report(message: Message, state: FSMContext, t: Translator) -> None:
        await state.clear()
        await state.set_state(MissingReport.name)
        await message.answer(t("missing.intro") + "\n\n" + t("missing.ask_name"))

    @r.message(Command("missing"))
    async def cmd_missing(message: Message, state: FSMContext, t: Translator) -> None:
        await start_report(message, state, t)

    @r.callback_query(MenuCb.filter(F.action == "missing_report"))
    async def menu_report(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await start_report(cq.message, state, t)

    @r.message(StateFilter(None), F.text.func(lambda s: bool(s) and not s.startswith("/") and bool(LOST_WORDS.search(s))))
    async def lost_hint(message: Message, t: Translator) -> None:
        await message.answer(t("missing.lost_hint"), reply_markup=inline([[
            (t("missing.menu_report"), MenuCb(action="missing_report").pack())]]))

    @r.message(MissingReport.name, TEXT)
    async def got_name(message: Message, state: FSMContext, t: Translator) -> None:
        name = message.text.strip()
        if not 1 <= len(name) <= 64 or name.startswith("/"):
            await message.answer(t("missing.err_name"))
            return
        await state.update_data(name=name)
        await state.set_state(MissingReport.sex)
        await message.answer(t("missing.ask_sex"), reply_markup=sex_kb(t))

    @r.callback_query(SexCb.filter(), StateFilter(MissingReport.sex, MissingFound.sex))
    async def sex_button(cq: CallbackQuery, callback_data: SexCb, state: FSMContext, t: Translator,
                         session: AsyncSession, user: User, bot: Bot, ctx) -> None:
        await cq.answer()
        v = None if callback_data.v == "U" else callback_data.v
        if await state.get_state() == MissingFound.sex.state:
            await state.update_data(sex=v)
            await _finish_found(cq.message, state, t, session, user=user, bot=bot, ctx=ctx)
            return
        await state.update_data(sex=v)
        await state.set_state(MissingReport.age)
        await cq.message.answer(t("missing.ask_age"))

    @r.message(MissingReport.sex, TEXT)
    async def sex_text(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            v = service.parse_sex(message.text)
        except DomainError as e:
            await message.answer(_err(t, e), reply_markup=sex_kb(t))
            return
        await state.update_data(sex=v)
        await state.set_state(MissingReport.age)
        await message.answer(t("missing.ask_age"))

    @r.message(MissingReport.age, TEXT)
    async def got_age(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            age = service.parse_age(message.text)
        except DomainError as e:
            await message.answer(_err(t, e))
            return
        await state.update_data(age=age)
        await state.set_state(MissingReport.height)
        await message.answer(t("missing.ask_height"), reply_markup=skip_kb(t))

    async def _after_height(reply: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
        await state.set_state(MissingReport.place)
        await reply.answer(t("missing.ask_place"), reply_markup=await place_kb(session))

    @r.message(MissingReport.height, TEXT)
    async def got_height(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
        try:
            h = service.parse_height(message.text)
        except DomainError as e:
            await message.answer(_err(t, e), reply_markup=skip_kb(t))
            return
        await state.update_data(height=h)
        await _after_height(message, state, t, session)

    @r.callback_query(PlaceCb.filter(), StateFilter(MissingReport.place, MissingFound.place))
    async def place_button(cq: CallbackQuery, callback_data: PlaceCb, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await state.update_data(jid=callback_data.id)
        found = await state.get_state() == MissingFound.place.state
        await state.set_state(MissingFound.place_detail if found else MissingReport.place_detail)
        await cq.message.answer(t("missing.ask_place_detail"))

    async def _place_done(reply: Message, state: FSMContext, t: Translator) -> None:
        if await state.get_state() in (MissingFound.place.state, MissingFound.place_detail.state):
            await state.set_state(MissingFound.age)
            await reply.answer(t("missing.found_ask_age"), reply_markup=skip_kb(t, "missing.btn_unknown"))
        else:
            await state.set_state(MissingReport.seen_at)
            await reply.answer(t("missing.ask_seen_at"), reply_markup=skip_kb(t, "missing.btn_unknown"))

    @r.message(StateFilter(MissingReport.place, MissingFound.place), TEXT)
    async def place_text(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
        j = await service.resolve_place(session, message.text)
        if j is None:
            await message.answer(t("missing.err_place"), reply_markup=await place_kb(session))
            return
        await state.update_data(jid=j.id, place=message.text.strip()[:255])
        await _place_done(message, state, t)

    @r.message(StateFilter(MissingReport.place, MissingFound.place), F.location)
    async def place_location(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
        from backend.users.service import nearest

        j = await nearest(session, message.location.latitude, message.location.longitude)
        if j is None:
            await message.answer(t("missing.err_place"), reply_markup=await place_kb(session))
            return
        await state.update_data(jid=j.id, place=j.name)
        await _place_done(message, state, t)

    @r.message(StateFilter(MissingReport.place_detail, MissingFound.place_detail), TEXT)
    async def place_detail(message: Message, state: FSMContext, t: Translator, session: AsyncSession) -> None:
        d = await state.get_data()
        finer = await service.resolve_place_within(session, d.get("jid"), message.text)
        await state.update_data(place=message.text.strip()[:255], jid=finer.id if finer else d.get("jid"))
        await _place_done(message, state, t)

    @r.message(MissingReport.seen_at, TEXT)
    async def got_seen_at(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            at = service.parse_seen_at(message.text)
        except DomainError as e:
            await message.answer(_err(t, e), reply_markup=skip_kb(t, "missing.btn_unknown"))
            return
        await state.update_data(seen_at=at.isoformat())
        await state.set_state(MissingReport.clothing)
        await message.answer(t("missing.ask_clothing"), reply_markup=skip_kb(t))

    @r.message(MissingReport.clothing, TEXT)
    async def got_clothing(message: Message, state: FSMContext, t: Translator) -> None:
        await state.update_data(clothing=message.text.strip()[:500])
        await state.set_state(MissingReport.health)
        await message.answer(t("missing.ask_health"), reply_markup=skip_kb(t, "missing.btn_none"))

    @r.message(MissingReport.health, TEXT)
    async def got_health(message: Message, state: FSMContext, t: Translator) -> None:
        await state.update_data(health=message.text.strip()[:500])
        await state.set_state(MissingReport.phone)
        await message.answer(t("missing.ask_phone"))

    @r.message(MissingReport.phone, TEXT)
    async def got_phone(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            phone = service.parse_phone(message.text)
        except DomainError as e:
            await message.answer(_err(t, e))
            return
        await state.update_data(phone=phone, photos=[])
        await state.set_state(MissingReport.photos)
        await message.answer(t("missing.ask_photos", max=service.MAX_PHOTOS))

    @r.callback_query(StepCb.filter(F.a == "skip"))
    async def skip(cq: CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession, user: User,
                   bot: Bot, ctx) -> None:
        await cq.answer()
        st = await state.get_state()
        m = cq.message
        if st == MissingReport.height.state:
            await state.update_data(height=None)
            await _after_height(m, state, t, session)
        elif st == MissingReport.seen_at.state:
            await state.update_data(seen_at=None)
            await state.set_state(MissingReport.clothing)
            await m.answer(t("missing.ask_clothing"), reply_markup=skip_kb(t))
        elif st == MissingReport.clothing.state:
            await state.update_data(clothing=None)
            await state.set_state(MissingReport.health)
            await m.answer(t("missing.ask_health"), reply_markup=skip_kb(t, "missing.btn_none"))
        elif st == MissingReport.health.state:
            await state.update_data(health=None)
            await state.set_state(MissingReport.phone)
            await m.answer(t("missing.ask_phone"))
        elif st == MissingFound.age.state:
            await state.update_data(age=None)
            await state.set_state(MissingFound.sex)
            await m.answer(t("missing.found_ask_sex"), reply_markup=sex_kb(t))
        elif st == MissingAssist.note.state:
            await _finish_assist(m, state, t, session, user, bot, ctx, None)
        else:
            await m.answer(t("common.stale_button"))

    @r.message(StateFilter(MissingReport.photos, MissingFound.photo, MissingAssist.photo), F.photo | F.document)
    async def got_photo(message: Message, bot: Bot, state: FSMContext, t: Translator, ctx,
                        session: AsyncSession) -> None:
        st = await state.get_state()
        flow = "report" if st == MissingReport.photos.state else "found" if st == MissingFound.photo.state else "assist"
        if flow == "report" and len((await state.get_data()).get("photos", [])) >= service.MAX_PHOTOS:
            await message.answer(t("missing.photo_limit", max=service.MAX_PHOTOS))
            return
        await _intake(message, bot, state, t, ctx, flow, session)

    @r.message(StateFilter(MissingReport.photos, MissingFound.photo, MissingAssist.photo, MissingReport.choose,
                           MissingFound.choose, MissingAssist.choose), ~F.text.startswith("/"))
    async def not_a_photo(message: Message, state: FSMContext, t: Translator) -> None:
        st = await state.get_state()
        if st in (MissingReport.choose.state, MissingFound.choose.state, MissingAssist.choose.state):
            await message.answer(t("missing.choose_face_hint"))
        else:
            await message.answer(t("missing.ask_photo_again"))

    @r.callback_query(FaceCb.filter(), StateFilter(MissingReport.choose, MissingFound.choose, MissingAssist.choose))
    async def chose_face(cq: CallbackQuery, callback_data: FaceCb, bot: Bot, state: FSMContext, t: Translator,
                         ctx, session: AsyncSession) -> None:
        st = await state.get_state()
        flow = "report" if st == MissingReport.choose.state else "found" if st == MissingFound.choose.state else "assist"
        await _choose(cq, callback_data, bot, state, t, ctx, flow, session)

    @r.callback_query(StepCb.filter(F.a == "submit"), StateFilter(MissingReport.photos))
    async def submit_button(cq: CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession,
                            user: User, bot: Bot, ctx) -> None:
        await cq.answer()
        await _submit_report(cq.message, state, t, session, user, bot, ctx)

    async def _submit_report(reply: Message, state: FSMContext, t: Translator, session: AsyncSession,
                             user: User, bot: Bot, ctx) -> None:
        d = await state.get_data()
        if not d.get("photos"):
            await reply.answer(t("missing.err_no_photo"))
            return
        j = await session.get(service.Jurisdiction, d["jid"]) if d.get("jid") else None
        try:
            out = await service.create_missing(
                session, user, faces=_faces(ctx), files_dir=ctx.settings.files_dir,
                photos=await _photos(bot, d["photos"]), name=d["name"], sex=d.get("sex"), age=d.get("age"),
                height_cm=d.get("height"), jurisdiction=j, place=d.get("place"),
                seen_at=datetime.fromisoformat(d["seen_at"]) if d.get("seen_at") else None,
                clothing=d.get("clothing"), health=d.get("health"), phone=d["phone"])
            await service.queue_for_review(session, ctx.settings.files_dir, out.candidates)
        except DomainError as e:
            await session.rollback()
            await reply.answer(_err(t, e))
            return
        await session.commit()  # before the FSM storage writes (SQLite: one writer)
        await state.clear()
        text = t("missing.report_done", case_no=out.case.case_no)
        if not out.face_available:
            text += "\n" + t("missing.faces_unavailable")
        await reply.answer(text)

    # ------------------------------------------------ officer: 登记滞留人员
    async def start_found(message: Message, state: FSMContext, t: Translator, user: User) -> None:
        if not _officer(user):
            await message.answer(t("missing.err_officers_only"))
            return
        await state.clear()
        await state.set_state(MissingFound.photo)
        await message.answer(t("missing.found_intro"))

    @r.message(Command("missing_found"))
    async def cmd_found(message: Message, state: FSMContext, t: Translator, user: User) -> None:
        await start_found(message, state, t, user)

    @r.callback_query(MenuCb.filter(F.action == "missing_found"))
    async def menu_found(cq: CallbackQuery, state: FSMContext, t: Translator, user: User) -> None:
        await cq.answer()
        await start_found(cq.message, state, t, user)

    @r.message(MissingFound.age, TEXT)
    async def found_age(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            age = service.parse_age(message.text, allow_unknown=True)
        except DomainError as e:
            await message.answer(_err(t, e))
            return
        await state.update_data(age=age)
        await state.set_state(MissingFound.sex)
        await message.answer(t("missing.found_ask_sex"), reply_markup=sex_kb(t))

    @r.message(MissingFound.sex, TEXT)
    async def found_sex_text(message: Message, state: FSMContext, t: Translator, session: AsyncSession,
                             user: User, bot: Bot, ctx) -> None:
        try:
            v = service.parse_sex(message.text)
        except DomainError as e:
            await message.answer(_err(t, e), reply_markup=sex_kb(t))
            return
        await state.update_data(sex=v)
        await _finish_found(message, state, t, session, user=user, bot=bot, ctx=ctx)

    async def _finish_found(reply: Message, state: FSMContext, t: Translator, session: AsyncSession, *,
                            user: User, bot: Bot, ctx) -> None:
        d = await state.get_data()
        j = await session.get(service.Jurisdiction, d["jid"]) if d.get("jid") else None
        try:
            out = await service.register_found(
                session, user, faces=_faces(ctx), files_dir=ctx.settings.files_dir,
                photos=await _photos(bot, d["photos"]), jurisdiction=j, place=d.get("place"),
                age=d.get("age"), sex=d.get("sex"))
            await service.queue_for_review(session, ctx.settings.files_dir, out.candidates)
        except DomainError as e:
            await session.rollback()
            await reply.answer(_err(t, e))
            return
        await session.commit()  # before the FSM storage writes (SQLite: one writer)
        await state.clear()
        text = t("missing.found_done", case_no=out.case.case_no, n=len(out.candidates))
        if not out.face_available:
            text += "\n" + t("missing.faces_unavailable")
        await reply.answer(text)

    # ------------------------------------------------ officer: review queue
    async def show_reviews(reply: Message, session: AsyncSession, user: User, t: Translator, ctx) -> None:
        try:
            pending = await service.pending_reviews(session, user)
        except DomainError as e:
            await reply.answer(_err(t, e))
            return
        if not pending:
            await reply.answer(t("missing.review_none"))
            return
        await audit_read(session, user, "match", None, channel="chat", action="queue",
                         detail={"candidates": [c.id for c in pending[:10]]})
        for c in pending[:10]:
            img = await service.review_image(session, ctx.settings.files_dir, c)
            text = t("missing.review_new", **service.review_params(t, c))
            kb = inline([[(t(label), data) for label, data in row] for row in service.review_buttons(c)])
            if img is not None:
                data = blob_path(ctx.settings.files_dir, img.sha256).read_bytes()
                await reply.answer_photo(BufferedInputFile(data, "review.jpg"), caption=text[:1024], reply_markup=kb)
            else:
                await reply.answer(text, reply_markup=kb)

    @r.message(Command("missing_review"))
    async def cmd_review(message: Message, session: AsyncSession, user: User, t: Translator, ctx) -> None:
        await show_reviews(message, session, user, t, ctx)

    @r.callback_query(MenuCb.filter(F.action == "missing_review"))
    async def menu_review(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator, ctx) -> None:
        await cq.answer()
        await show_reviews(cq.message, session, user, t, ctx)

    @r.callback_query(ReviewCb.filter())
    async def review_decision(cq: CallbackQuery, callback_data: ReviewCb, session: AsyncSession, user: User,
                              t: Translator) -> None:
        try:
            if callback_data.action == "ok":
                c = await service.confirm(session, user, callback_data.id)
                key = "missing.review_confirmed"
            elif callback_data.action == "no":
                c = await service.reject(session, user, callback_data.id)
                key = "missing.review_rejected"
            else:
                await cq.answer(t("common.stale_button"), show_alert=True)
                return
        except DomainError as e:
            await session.rollback()
            await cq.answer(_err(t, e), show_alert=True)
            return
        await cq.answer()
        await _drop_buttons(cq)
        await cq.message.answer(t(key, missing_no=c.missing.case_no, found_no=c.found.case_no))

    # ------------------------------------------------ citizen: my reports, withdraw + delete face data
    async def show_mine(reply: Message, session: AsyncSession, user: User, t: Translator) -> None:
        cases = [c for c in await service.list_cases(session, user) if c.reporter_id == user.id]
        if not cases:
            await reply.answer(t("missing.mine_none"))
            return
        lines = [t("missing.mine_line", case_no=c.case_no, name=c.name or "-",
                   status=t(f"missing.status_{c.status}"), faces=t(f"missing.face_state_{c.face_state}"))
                 for c in cases]
        rows = [[(t("missing.btn_withdraw", case_no=c.case_no), WithdrawCb(id=c.id).pack())]
                for c in cases if c.status != service.CLOSED]
        await reply.answer(t("missing.mine_header") + "\n" + "\n".join(lines), reply_markup=inline(rows) if rows else None)

    @r.message(Command("missing_my"))
    async def cmd_mine(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        await show_mine(message, session, user, t)

    @r.message(Command("missing_delete"))
    async def cmd_delete(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        await show_mine(message, session, user, t)

    @r.callback_query(MenuCb.filter(F.action == "missing_mine"))
    async def menu_mine(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
        await cq.answer()
        await show_mine(cq.message, session, user, t)

    @r.callback_query(WithdrawCb.filter())
    async def withdraw(cq: CallbackQuery, callback_data: WithdrawCb, session: AsyncSession, user: User,
                       t: Translator, ctx) -> None:
        case = await session.get(PersonCase, callback_data.id)
        if case is None or case.reporter_id != user.id:
            await cq.answer(t("missing.err_case_not_found"), show_alert=True)
            return
        if not callback_data.go:
            await cq.answer()
            await cq.message.answer(t("missing.withdraw_confirm", case_no=case.case_no), reply_markup=inline([[
                (t("missing.btn_withdraw_go"), WithdrawCb(id=case.id, go=1).pack())]]))
            return
        try:
            await service.close_case(session, user, case.id, ctx.faces, ctx.settings, note="withdrawn by reporter")
        except DomainError as e:
            await session.rollback()
            await cq.answer(_err(t, e), show_alert=True)
            return
        await cq.answer()
        await cq.message.answer(t("missing.withdraw_done", case_no=case.case_no))

    # ------------------------------------------------ officer: 人像协作
    async def start_assist(message: Message, state: FSMContext, t: Translator, user: User) -> None:
        if not _officer(user):
            await message.answer(t("missing.err_officers_only"))
            return
        await state.clear()
        await state.set_state(MissingAssist.photo)
        await message.answer(t("missing.assist_intro"))

    @r.message(Command("missing_assist"))
    async def cmd_assist(message: Message, state: FSMContext, t: Translator, user: User) -> None:
        await start_assist(message, state, t, user)

    @r.callback_query(MenuCb.filter(F.action == "missing_assist"))
    async def menu_assist(cq: CallbackQuery, state: FSMContext, t: Translator, user: User) -> None:
        await cq.answer()
        await start_assist(cq.message, state, t, user)

    @r.message(MissingAssist.note, TEXT)
    async def assist_note(message: Message, state: FSMContext, t: Translator, session: AsyncSession,
                          user: User, bot: Bot, ctx) -> None:
        await _finish_assist(message, state, t, session, user, bot, ctx, message.text)

    async def _finish_assist(reply: Message, state: FSMContext, t: Translator, session: AsyncSession,
                             user: User, bot: Bot, ctx, note: str | None) -> None:
        d = await state.get_data()
        photo = (await _photos(bot, d["photos"]))[0]
        try:
            req, n = await service.create_assist(session, user, files_dir=ctx.settings.files_dir, photo=photo,
                                                 faces=_faces(ctx), note=note)
        except DomainError as e:
            await session.rollback()
            await reply.answer(_err(t, e))
            return
        await session.commit()  # before the FSM storage writes (SQLite: one writer)
        await state.clear()
        await reply.answer(t("missing.assist_sent", no=req.id, n=n))

    @r.callback_query(AssistCb.filter())
    async def assist_answer(cq: CallbackQuery, callback_data: AssistCb, state: FSMContext, session: AsyncSession,
                            user: User, t: Translator) -> None:
        if not _officer(user):
            await cq.answer(t("missing.err_officers_only"), show_alert=True)
            return
        if callback_data.action == "cand":
            await cq.answer()
            await state.set_state(MissingAssistReply.case_no)
            await state.update_data(assist_id=callback_data.id)
            await cq.message.answer(t("missing.assist_ask_case_no"))
            return
        try:
            await service.answer_assist(session, user, callback_data.id, None)
        except DomainError as e:
            await session.rollback()
            await cq.answer(_err(t, e), show_alert=True)
            return
        await cq.answer()
        await _drop_buttons(cq)
        await cq.message.answer(t("missing.assist_answered_none", no=callback_data.id))

    @r.message(MissingAssistReply.case_no, TEXT)
    async def assist_case_no(message: Message, state: FSMContext, session: AsyncSession, user: User,
                             t: Translator) -> None:
        d = await state.get_data()
        try:
            await service.answer_assist(session, user, d["assist_id"], message.text)
        except DomainError as e:
            await session.rollback()
            await message.answer(_err(t, e))
            return
        await session.commit()  # before the FSM storage writes (SQLite: one writer)
        await state.clear()
        await message.answer(t("missing.assist_answered_candidate", no=d["assist_id"],
                               case_no=message.text.strip().upper()))

    return r
