"""人大·检察智联督办 in chat: deputies propose, follow, urge and rate; procurators decide and
handle; officials see the figures. Thin: parse → backend.supervision.service → t(...).

The buttons of an item are the service's ``available_actions`` for the person; a pressed action
is dispatched by tables (done at once / asks a text first / opens a short form), never re-checked
here: the service holds every rule, and a refused step (``DomainError``) becomes a rollback and a
polite reply in the one place that does that (``bot.middlewares.DbUserMiddleware``)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local
from backend.core.errors import Conflict
from backend.core.files import read_blob, store_file
from backend.core.i18n import Translator
from backend.supervision import export, metrics, service as svc
from backend.supervision.models import SupervisionItem
from backend.supervision.service import Action, View
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import Role, User
from bot.filters import RoleFilter
from bot.menu import MenuCb, inline, register_menu_item

PRIORITY = 45  # before disputes (50): our /queue answers procurators only and lets the rest through
MAX_EVIDENCE = 10

register_menu_item("sup_propose", "supervision.menu_propose", {Role.deputy}, order=30)
register_menu_item("sup_myitems", "supervision.menu_myitems", {Role.deputy, Role.official}, order=31)
register_menu_item("sup_queue", "supervision.menu_queue", {Role.procurator}, order=30)
register_menu_item("sup_stats", "supervision.menu_stats", {Role.official}, order=40)

router = Router(name="supervision")


# ---------------------------------------------------------------- callback data (bot layer only)
class ItemCb(CallbackData, prefix="sp"):
    """A workflow action on an item (``sp:accept:7``)."""

    action: Action
    item_id: int


class ViewCb(CallbackData, prefix="sp"):
    """Something to open about an item: the card, its evidence, an export, a co-sign answer."""

    view: View
    item_id: int


class Step(StrEnum):
    due_default = "due_default"
    r_satisfied = "r_satisfied"
    r_basic = "r_basic"
    r_unsatisfied = "r_unsatisfied"
    no_comment = "no_comment"
    rect_yes = "rect_yes"
    rect_partly = "rect_partly"
    rect_no = "rect_no"


class StepCb(CallbackData, prefix="sps"):
    """A choice inside one of the short handling forms."""

    step: Step
    item_id: int


class Prop(StrEnum):
    area = "area"
    county = "county"
    town = "town"
    skip = "skip"
    done = "done"
    confirm = "confirm"
    cancel = "cancel"


class PropCb(CallbackData, prefix="spp"):
    """A choice in the propose conversation."""

    action: Prop
    value: int = 0


def _pack(what: StrEnum, item_id: int) -> str:
    if isinstance(what, Action):
        return ItemCb(action=what, item_id=item_id).pack()
    return ViewCb(view=View(what), item_id=item_id).pack()


svc.set_button_packer(_pack)  # notifications written by the service carry these buttons


class Propose(StatesGroup):
    title = State()
    description = State()
    area = State()
    county = State()
    township = State()
    agency = State()
    evidence = State()
    cosigners = State()
    confirm = State()


class Act(StatesGroup):
    text = State()  # one free-text answer for data["op"]
    sugg_agency = State()
    sugg_content = State()
    sugg_due = State()
    reply_date = State()
    reply_content = State()
    reply_rectified = State()
    rate_comment = State()


def _kb(t: Translator, rows: list[list[tuple[str, str]]]):
    return inline([[(t(label), data) for label, data in row] for row in rows])


def _stale() -> Conflict:
    return Conflict("common.stale_button")


# ---------------------------------------------------------------- rendering
LABEL = {Action.accept: "btn_accept", Action.decline: "btn_decline", Action.clue: "btn_clue",
         Action.file_case: "btn_file_case", Action.suggest: "btn_suggest", Action.reply: "btn_reply",
         Action.litigate: "btn_litigate", Action.close: "btn_close", Action.reopen: "btn_review_reopen",
         Action.note: "btn_note", Action.urge: "btn_urge", Action.rate: "btn_rate", Action.appeal: "btn_appeal"}


async def render_item(session: AsyncSession, item: SupervisionItem, t: Translator, with_timeline: bool = True,
                      mask: bool = False) -> str:
    d = await export.summary(session, item, t.lang, mask=mask)
    text = t("supervision.item_card", number=item.number, title=item.title, area=item.area,
             place=d["place"], status=d["status"], agency=d["agency"], procuratorate=d["procuratorate"],
             deputies="、".join(d["participants"]), created=d["created"], description=d["description"][:600])
    if d["result"] != "-":
        text += "\n" + t("supervision.card_result", result=d["result"][:300], rating=d["rating"])
    if d["evidence"]:
        text += "\n" + t("supervision.card_evidence", n=len(d["evidence"]))
    if with_timeline:
        lines = [t("supervision.timeline_line", at=e["at"], who=e["who"], what=e["what"],
                   note=(" — " + e["note"][:200]) if e["note"] else "") for e in d["events"]]
        text += "\n" + t("supervision.timeline_header") + "\n" + "\n".join(lines)
    return text


def item_buttons(item: SupervisionItem, actions: list[Action], files: int) -> list[list[tuple[str, str]]]:
    """The person's available actions, three to a row, then evidence and exports."""
    row = [(f"supervision.{LABEL[a]}" if not (a == Action.close and item.status == svc.S.review)
            else "supervision.btn_review_close", ItemCb(action=a, item_id=item.id).pack()) for a in actions]
    rows = [row[i:i + 3] for i in range(0, len(row), 3)]
    if files:
        rows.append([("supervision.btn_evidence", ViewCb(view=View.evidence, item_id=item.id).pack())])
    rows.append([(f"supervision.btn_export_{v.value}", ViewCb(view=v, item_id=item.id).pack())
                 for v in (View.md, View.pdf, View.docx)])
    return rows


async def show_item(target: Message, session: AsyncSession, user: User, t: Translator, item: SupervisionItem
                    ) -> None:
    await svc.require_view(session, user, item)
    await audit_read(session, user, "supervision", item.number, channel="chat")
    text = await render_item(session, item, t, mask=not svc.sees_personal_data(user))
    actions = await svc.available_actions(session, user, item)
    files = len(await svc.files_of(session, svc.OWNER_KIND, item.id))
    await target.answer(text[:4000], reply_markup=_kb(t, item_buttons(item, actions, files)))


async def show_list(target: Message, session: AsyncSession, user: User, t: Translator, *, queue: bool) -> None:
    items = await svc.list_items(session, user, open_only=queue, limit=20)
    if not items:
        await target.answer(t("supervision.no_items"))
        return
    lines = [t("supervision.queue_header" if queue else "supervision.myitems_header", n=len(items))]
    for i in items:
        lines.append(t("supervision.list_line", number=i.number, title=i.title,
                       status=svc.status_label(i.status, t.lang), updated=fmt_local(i.updated_at)))
        if not queue:  # 代表督: each item with its latest steps; the button opens the full timeline
            lines += [t("supervision.list_step", at=fmt_local(e.at), what=t(f"supervision.action_{e.action}"))
                      for e in (await svc.timeline(session, i))[-3:]]
    lines.append(t("supervision.list_hint"))
    rows = [[(i.number, ViewCb(view=View.open, item_id=i.id).pack())] for i in items]
    await target.answer("\n".join(lines)[:4000], reply_markup=inline(rows))


# ---------------------------------------------------------------- entry points
async def start_propose(target: Message, state: FSMContext, session: AsyncSession, user: User,
                        t: Translator) -> None:
    if Role(user.role) not in (Role.deputy, Role.admin):
        raise svc.Forbidden("supervision.err_deputy_only")
    await state.clear()
    await state.update_data(files=[])
    await ask_step("title", target, state, session, t)


@router.message(Command("propose"))
async def cmd_propose(message: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator) -> None:
    await start_propose(message, state, session, user, t)


@router.callback_query(MenuCb.filter(F.action == "sup_propose"))
async def menu_propose(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User,
                       t: Translator) -> None:
    await start_propose(cq.message, state, session, user, t)
    await cq.answer()


@router.message(Command("myitems"))
async def cmd_myitems(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    svc.require_reader(user)
    await show_list(message, session, user, t, queue=False)


@router.callback_query(MenuCb.filter(F.action == "sup_myitems"))
async def menu_myitems(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
    svc.require_reader(user)
    await show_list(cq.message, session, user, t, queue=False)
    await cq.answer()


def is_procurator(message: Message, user: User) -> bool:
    """/queue is shared with disputes (mediators, admins): we answer procurators only."""
    return Role(user.role) == Role.procurator


@router.message(Command("queue"), is_procurator)
@router.message(Command("supqueue"), RoleFilter(Role.procurator))
async def cmd_queue(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    await show_list(message, session, user, t, queue=True)


@router.message(Command("supqueue"))
async def cmd_queue_other(message: Message, t: Translator) -> None:
    await message.answer(t("supervision.err_forbidden"))


@router.callback_query(MenuCb.filter(F.action == "sup_queue"))
async def menu_queue(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
    await show_list(cq.message, session, user, t, queue=True)
    await cq.answer()


@router.message(Command("item"))
async def cmd_item(message: Message, command: CommandObject, session: AsyncSession, user: User,
                   t: Translator) -> None:
    if not command.args:
        await message.answer(t("supervision.item_usage"))
        return
    await show_item(message, session, user, t, await svc.get_by_number(session, command.args))


@router.message(Command("follow"))
async def cmd_follow(message: Message, command: CommandObject, session: AsyncSession, user: User,
                     t: Translator) -> None:
    if not command.args:
        await message.answer(t("supervision.follow_usage"))
        return
    item = await svc.follow(session, user, command.args)
    joined = await svc.can_view(session, user, item)  # else: waiting for the proposer's consent
    await message.answer(t("supervision.follow_ok" if joined else "supervision.follow_requested",
                           number=item.number, title=item.title))


@router.callback_query(ViewCb.filter(F.view.in_({View.follow_ok, View.follow_no})))
async def on_follow_decision(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User,
                             t: Translator) -> None:
    """The proposer agrees to (or declines) a deputy's request to follow; item_id is the request."""
    item = await svc.decide_follow(session, user, callback_data.item_id, callback_data.view == View.follow_ok)
    await cq.answer()
    await cq.message.answer(t("supervision.follow_decided", number=item.number))


async def stats(target: Message, session: AsyncSession, user: User, t: Translator) -> None:
    from backend.supervision.digest import _figures

    svc.require_stats(user)
    m = await metrics.compute(session, user.jurisdiction)
    await target.answer(t("supervision.stats", place=m["jurisdiction"] or "台州市", **_figures(m),
                          closed=m["closed"], clues=m["clues"], cases=m["cases_filed"]))


@router.message(Command("supstats"))
async def cmd_stats(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    await stats(message, session, user, t)


@router.callback_query(MenuCb.filter(F.action == "sup_stats"))
async def menu_stats(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
    await stats(cq.message, session, user, t)
    await cq.answer()


# ---------------------------------------------------------------- the propose conversation
def _skip_row(t: Translator):
    return _kb(t, [[("supervision.btn_skip", PropCb(action=Prop.skip).pack())]])


async def _no_keyboard(session: AsyncSession, t: Translator, data: dict) -> None:
    return None


async def _skip_keyboard(session: AsyncSession, t: Translator, data: dict):
    return _skip_row(t)


async def _area_keyboard(session: AsyncSession, t: Translator, data: dict):
    return inline([[(a, PropCb(action=Prop.area, value=i).pack()) for i, a in list(enumerate(svc.AREAS))[k:k + 2]]
                   for k in range(0, len(svc.AREAS), 2)])


async def _county_keyboard(session: AsyncSession, t: Translator, data: dict):
    counties = await users.children(session, None)
    return inline([[(c.name, PropCb(action=Prop.county, value=c.id).pack()) for c in counties[i:i + 3]]
                   for i in range(0, len(counties), 3)])


async def _town_keyboard(session: AsyncSession, t: Translator, data: dict):
    county = await users.jurisdiction(session, data["place_id"])
    towns = await users.children(session, county.id)
    rows = [[(t("supervision.btn_whole_county", county=county.name), PropCb(action=Prop.town, value=county.id).pack())]]
    rows += [[(j.name, PropCb(action=Prop.town, value=j.id).pack()) for j in towns[i:i + 3]]
             for i in range(0, len(towns), 3)]
    return inline(rows)


async def _done_keyboard(session: AsyncSession, t: Translator, data: dict):
    return _kb(t, [[("supervision.btn_done", PropCb(action=Prop.done).pack())]])


async def _confirm_keyboard(session: AsyncSession, t: Translator, data: dict):
    return _kb(t, [[("supervision.btn_confirm", PropCb(action=Prop.confirm).pack()),
                    ("supervision.btn_cancel", PropCb(action=Prop.cancel).pack())]])


async def _no_towns(session: AsyncSession, data: dict) -> bool:
    return not await users.children(session, data["place_id"])


async def summary_text(session: AsyncSession, data: dict, t: Translator) -> str:
    place = await users.jurisdiction(session, data["place_id"])
    return t("supervision.summary", title=data["title"], description=data["description"][:500],
             area=data["area"], place=place.name if place else "-", agency=data.get("agency") or t("common.none"),
             files=len(data.get("files", [])), cosigners=data.get("cosigner_names") or t("common.none"))


@dataclass(frozen=True)
class ProposeStep:
    state: State
    ask: str | None  # the question's i18n key (None: the summary of the draft)
    keyboard: Callable[[AsyncSession, Translator, dict], Awaitable[Any]] = _no_keyboard
    params: dict[str, Any] = field(default_factory=dict)
    typed: bool = False  # answered by typing (else: buttons, or files and a button)
    skip_if: Callable[[AsyncSession, dict], Awaitable[bool]] | None = None


PROPOSE: dict[str, ProposeStep] = {
    "title": ProposeStep(Propose.title, "supervision.ask_title", params={"max": svc.TITLE_MAX}, typed=True),
    "description": ProposeStep(Propose.description, "supervision.ask_description",
                               params={"max": svc.DESCRIPTION_MAX}, typed=True),
    "area": ProposeStep(Propose.area, "supervision.ask_area", _area_keyboard),
    "county": ProposeStep(Propose.county, "supervision.ask_place_county", _county_keyboard),
    "township": ProposeStep(Propose.township, "supervision.ask_place_township", _town_keyboard, skip_if=_no_towns),
    "agency": ProposeStep(Propose.agency, "supervision.ask_agency", _skip_keyboard, typed=True),
    "evidence": ProposeStep(Propose.evidence, "supervision.ask_evidence", _done_keyboard,
                            params={"max": MAX_EVIDENCE}),
    "cosigners": ProposeStep(Propose.cosigners, "supervision.ask_cosigners", _skip_keyboard, typed=True),
    "confirm": ProposeStep(Propose.confirm, None, _confirm_keyboard),
}
PROPOSE_ORDER = list(PROPOSE)


async def ask_step(name: str, target: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    step = PROPOSE[name]
    await state.set_state(step.state)
    data = await state.get_data()
    text = t(step.ask, **step.params) if step.ask else await summary_text(session, data, t)
    await target.answer(text, reply_markup=await step.keyboard(session, t, data))


async def advance(done: str, target: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    """Ask the step after ``done`` (passing over one that does not apply to this draft)."""
    data = await state.get_data()
    for name in PROPOSE_ORDER[PROPOSE_ORDER.index(done) + 1:]:
        skip = PROPOSE[name].skip_if
        if skip is None or not await skip(session, data):
            await ask_step(name, target, state, session, t)
            return


@router.message(Propose.title, F.text)
async def p_title(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await state.update_data(title=svc.check_title(message.text))
    await advance("title", message, state, session, t)


@router.message(Propose.description, F.text)
async def p_description(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await state.update_data(description=svc.check_description(message.text))
    await advance("description", message, state, session, t)


@router.callback_query(Propose.area, PropCb.filter(F.action == Prop.area))
async def p_area(cq: CallbackQuery, callback_data: PropCb, state: FSMContext, session: AsyncSession,
                 t: Translator) -> None:
    if not 0 <= callback_data.value < len(svc.AREAS):
        raise svc.DomainError("supervision.err_area")
    await cq.answer()
    await state.update_data(area=svc.AREAS[callback_data.value])
    await advance("area", cq.message, state, session, t)


@router.callback_query(Propose.county, PropCb.filter(F.action == Prop.county))
async def p_county(cq: CallbackQuery, callback_data: PropCb, state: FSMContext, session: AsyncSession,
                   t: Translator) -> None:
    _place, county = await svc.check_place(session, callback_data.value)
    await cq.answer()
    await state.update_data(place_id=county.id)
    await advance("county", cq.message, state, session, t)


@router.callback_query(Propose.township, PropCb.filter(F.action == Prop.town))
async def p_town(cq: CallbackQuery, callback_data: PropCb, state: FSMContext, session: AsyncSession,
                 t: Translator) -> None:
    chosen = (await state.get_data()).get("place_id")
    _place, county = await svc.check_place(session, callback_data.value)
    if chosen not in (county.id, callback_data.value):
        raise svc.DomainError("supervision.err_place")
    await cq.answer()
    await state.update_data(place_id=callback_data.value)
    await advance("township", cq.message, state, session, t)


@router.message(Propose.agency, F.text)
async def p_agency(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await state.update_data(agency=svc.check_text(message.text, 128))
    await advance("agency", message, state, session, t)


@router.callback_query(Propose.agency, PropCb.filter(F.action == Prop.skip))
async def p_agency_skip(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await cq.answer()
    await state.update_data(agency=None)
    await advance("agency", cq.message, state, session, t)


def _evidence_entry(message: Message) -> dict:
    if message.photo:
        return {"file_id": message.photo[-1].file_id, "mime": "image/jpeg", "name": "photo.jpg"}
    doc = message.document
    svc.check_file_size(doc.file_size or 0)
    return {"file_id": doc.file_id, "mime": doc.mime_type or "application/octet-stream",
            "name": doc.file_name or "document"}


@router.message(Propose.evidence, F.photo | F.document)
async def p_evidence(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    files = (await state.get_data()).get("files", [])
    if len(files) >= MAX_EVIDENCE:
        raise svc.DomainError("supervision.err_too_many_files", max=MAX_EVIDENCE)
    files.append(_evidence_entry(message))
    await state.update_data(files=files)
    await message.answer(t("supervision.evidence_saved", n=len(files)),
                         reply_markup=await _done_keyboard(session, t, {}))


@router.callback_query(Propose.evidence, PropCb.filter(F.action == Prop.done))
async def p_evidence_done(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await cq.answer()
    await advance("evidence", cq.message, state, session, t)


@router.message(Propose.cosigners, F.text)
async def p_cosigners(message: Message, state: FSMContext, session: AsyncSession, user: User,
                      t: Translator) -> None:
    found = await svc.resolve_cosigners(session, user, message.text)
    names = "、".join([await svc.display_name(session, u, t.lang) for u in found])
    await state.update_data(cosigners=" ".join(str(u.telegram_id) for u in found), cosigner_names=names)
    await message.answer(t("supervision.cosigners_ok", names=names))
    await advance("cosigners", message, state, session, t)


@router.callback_query(Propose.cosigners, PropCb.filter(F.action == Prop.skip))
async def p_cosigners_skip(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await cq.answer()
    await state.update_data(cosigners="", cosigner_names="")
    await advance("cosigners", cq.message, state, session, t)


@router.callback_query(Propose.confirm, PropCb.filter(F.action == Prop.cancel))
async def p_cancel(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    await state.clear()
    await cq.message.answer(t("supervision.propose_cancelled"))


@router.callback_query(Propose.confirm, PropCb.filter(F.action == Prop.confirm))
async def p_confirm(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, t: Translator,
                    ctx: Any) -> None:
    data = await state.get_data()
    file_ids = []
    for f in data.get("files", []):
        blob = await cq.bot.download(f["file_id"])
        stored = await store_file(session, ctx.files, blob.read(), mime=f["mime"],
                                  filename=f["name"], uploaded_by=user.id)
        file_ids.append(stored.id)
    item = await svc.propose(session, user, svc.Draft(
        title=data.get("title", ""), description=data.get("description", ""), area=data.get("area", ""),
        place_id=data.get("place_id", 0), agency=data.get("agency"), file_ids=file_ids,
        cosigners=data.get("cosigners", "")))
    await cq.answer()
    await state.clear()
    await cq.message.answer(t("supervision.created", number=item.number, due=fmt_local(item.acceptance_due)))


# Anything else typed during the conversation gets a hint for the current step.
@router.message(StateFilter(*(s.state for s in PROPOSE.values() if not s.typed)))
async def p_hint(message: Message, t: Translator) -> None:
    await message.answer(t("supervision.use_buttons"))


@router.message(StateFilter(*(s.state for s in PROPOSE.values() if s.typed)))
async def p_text_only(message: Message, t: Translator) -> None:
    await message.answer(t("supervision.text_only"))


# ---------------------------------------------------------------- item actions, dispatched by table
DONE_AT_ONCE = {Action.accept: (svc.accept, "supervision.done_accept"),
                Action.clue: (svc.to_clue, "supervision.done_clue"),
                Action.file_case: (svc.file_case, "supervision.done_file_case"),
                Action.urge: (svc.urge, "supervision.urge_ok")}
WITH_TEXT = {Action.decline: svc.decline, Action.note: svc.add_note, Action.litigate: svc.file_litigation,
             Action.close: svc.close, Action.reopen: svc.reopen, Action.appeal: svc.appeal}
FIRST_STEP = {Action.suggest: Act.sugg_agency, Action.reply: Act.reply_date}


def _rating_row(item_id: int):
    return [[(f"supervision.rating_{r}", StepCb(step=Step(f"r_{r}"), item_id=item_id).pack()) for r in svc.RATINGS]]


@router.callback_query(ItemCb.filter())
async def on_action(cq: CallbackQuery, callback_data: ItemCb, state: FSMContext, session: AsyncSession,
                    user: User, t: Translator) -> None:
    a, item = callback_data.action, await svc.get_item(session, callback_data.item_id)
    if a in DONE_AT_ONCE:
        fn, done = DONE_AT_ONCE[a]
        await fn(session, user, item.id)
        await cq.answer()
        await cq.message.answer(t(done, number=item.number))
        return
    await svc.check_action(session, user, item, a)
    await cq.answer()
    await state.clear()
    await state.update_data(op=a.value, item_id=item.id)
    if a == Action.rate:
        await cq.message.answer(t("supervision.ask_rating", number=item.number), reply_markup=_kb(t, _rating_row(item.id)))
        return
    await state.set_state(FIRST_STEP.get(a, Act.text))
    ask = {Action.suggest: "ask_sugg_agency", Action.reply: "ask_reply_date"}.get(a, f"ask_{a.value}")
    await cq.message.answer(t(f"supervision.{ask}", number=item.number, agency=item.agency or "-"))


@router.message(Act.text, F.text)
async def act_text(message: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator) -> None:
    data = await state.get_data()
    op = Action(data["op"])
    item = await WITH_TEXT[op](session, user, data["item_id"], message.text)
    await state.clear()
    await message.answer(t(f"supervision.done_{op.value}", number=item.number))


# ---------------------------------------------------------------- views: card, evidence, exports, co-sign
@router.callback_query(ViewCb.filter(F.view == View.open))
async def on_open(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User, t: Translator) -> None:
    await show_item(cq.message, session, user, t, await svc.get_item(session, callback_data.item_id))
    await cq.answer()


@router.callback_query(ViewCb.filter(F.view.in_({View.cosign, View.cosign_no})))
async def on_cosign(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User,
                    t: Translator) -> None:
    yes = callback_data.view == View.cosign
    item = await svc.confirm_cosign(session, user, callback_data.item_id, yes)
    await cq.answer()
    await cq.message.answer(t("supervision.cosign_ok" if yes else "supervision.cosign_no_ok", number=item.number))


@router.callback_query(ViewCb.filter(F.view == View.evidence))
async def on_evidence(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User, t: Translator,
                      ctx: Any) -> None:
    """The item's evidence files, sent to a person who may open the item (photos as photos)."""
    item = await svc.get_item(session, callback_data.item_id)
    files = await svc.evidence(session, user, item)
    await cq.answer()
    await cq.message.answer(t("supervision.evidence_header", number=item.number, n=len(files)))
    for n, f in enumerate(files, 1):
        data = await read_blob(ctx.files, f.sha256)
        if data is None:  # erased meanwhile
            continue
        doc = BufferedInputFile(data, f.filename or f"{item.number}-{n}")
        caption = t("supervision.evidence_caption", number=item.number, n=n, total=len(files))
        if svc.is_image(data):
            await cq.message.answer_photo(doc, caption=caption)
        else:
            await cq.message.answer_document(doc, caption=caption)


@router.callback_query(ViewCb.filter(F.view.in_({View.md, View.pdf, View.docx})))
async def on_export(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User, t: Translator,
                    ctx: Any) -> None:
    item = await svc.get_item(session, callback_data.item_id)
    await svc.require_view(session, user, item)
    await audit_read(session, user, "supervision", item.number, channel="export", action="export",
                     detail={"format": callback_data.view.value})
    d = await export.summary(session, item, t.lang, mask=not svc.sees_personal_data(user),
                             store=ctx.files)
    data = await asyncio.to_thread(export.render, d, callback_data.view.value, t.lang)
    await cq.answer()
    await cq.message.answer_document(BufferedInputFile(data, f"{item.number}.{callback_data.view.value}"),
                                     caption=t("supervision.export_caption", number=item.number))


# ---------------------------------------------------------------- the short handling forms
@router.message(Act.sugg_agency, F.text)
async def sugg_agency(message: Message, state: FSMContext, t: Translator) -> None:
    await state.update_data(agency=svc.check_text(message.text, 128))
    await state.set_state(Act.sugg_content)
    await message.answer(t("supervision.ask_sugg_content"))


@router.message(Act.sugg_content, F.text)
async def sugg_content(message: Message, state: FSMContext, t: Translator) -> None:
    await state.update_data(content=svc.check_text(message.text))
    await state.set_state(Act.sugg_due)
    iid = (await state.get_data())["item_id"]
    await message.answer(t("supervision.ask_sugg_due", months=svc.REPLY_MONTHS), reply_markup=_kb(t, [[
        ("supervision.btn_default_due", StepCb(step=Step.due_default, item_id=iid).pack())]]))


async def _issue(msg: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator, due) -> None:
    data = await state.get_data()
    s = await svc.issue_suggestion(session, user, data["item_id"], data["agency"], data["content"], due)
    await state.clear()
    await msg.answer(t("supervision.done_suggest", agency=s.agency, due=fmt_local(s.reply_due)))


@router.message(Act.sugg_due, F.text)
async def sugg_due(message: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator) -> None:
    await _issue(message, state, session, user, t, svc.parse_date(message.text))


@router.callback_query(Act.sugg_due, StepCb.filter(F.step == Step.due_default))
async def sugg_due_default(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User,
                           t: Translator) -> None:
    await _issue(cq.message, state, session, user, t, None)
    await cq.answer()


@router.message(Act.reply_date, F.text)
async def reply_date(message: Message, state: FSMContext, t: Translator) -> None:
    d = svc.check_reply_date(svc.parse_date(message.text))
    await state.update_data(reply_date=d.isoformat())
    await state.set_state(Act.reply_content)
    await message.answer(t("supervision.ask_reply_content"))


@router.message(Act.reply_content, F.text)
async def reply_content(message: Message, state: FSMContext, t: Translator) -> None:
    await state.update_data(reply_content=svc.check_text(message.text))
    await state.set_state(Act.reply_rectified)
    iid = (await state.get_data())["item_id"]
    await message.answer(t("supervision.ask_rectified"), reply_markup=_kb(t, [[
        (f"supervision.rectified_{r}", StepCb(step=Step(f"rect_{r}"), item_id=iid).pack()) for r in svc.RECTIFIED]]))


@router.callback_query(Act.reply_rectified, StepCb.filter(F.step.in_({Step.rect_yes, Step.rect_partly, Step.rect_no})))
async def reply_rectified(cq: CallbackQuery, callback_data: StepCb, state: FSMContext, session: AsyncSession,
                          user: User, t: Translator) -> None:
    data = await state.get_data()
    if data.get("item_id") != callback_data.item_id:
        raise _stale()
    s = await svc.record_reply(session, user, callback_data.item_id, svc.parse_date(data["reply_date"]),
                               data["reply_content"], callback_data.step.value[5:])
    await cq.answer()
    await state.clear()
    await cq.message.answer(t("supervision.done_reply", followup=fmt_local(s.followup_at)))


@router.callback_query(StepCb.filter(F.step.in_({Step.r_satisfied, Step.r_basic, Step.r_unsatisfied})))
async def rate_choice(cq: CallbackQuery, callback_data: StepCb, state: FSMContext, session: AsyncSession,
                      user: User, t: Translator) -> None:
    rating = callback_data.step.value[2:]
    await svc.check_rating(session, user, await svc.get_item(session, callback_data.item_id), rating)
    await cq.answer()
    await state.set_state(Act.rate_comment)
    await state.update_data(item_id=callback_data.item_id, rating=rating)
    await cq.message.answer(t("supervision.ask_comment"), reply_markup=_kb(t, [[
        ("supervision.btn_skip", StepCb(step=Step.no_comment, item_id=callback_data.item_id).pack())]]))


async def _rate(target: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator,
                comment: str | None) -> None:
    data = await state.get_data()
    await svc.rate(session, user, data["item_id"], data["rating"], comment)
    await state.clear()
    await target.answer(t("supervision.rate_ok", rating=svc.rating_label(data["rating"], t.lang)))


@router.message(Act.rate_comment, F.text)
async def rate_comment(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       t: Translator) -> None:
    await _rate(message, state, session, user, t, message.text)


@router.callback_query(Act.rate_comment, StepCb.filter(F.step == Step.no_comment))
async def rate_no_comment(cq: CallbackQuery, callback_data: StepCb, state: FSMContext, session: AsyncSession,
                          user: User, t: Translator) -> None:
    if (await state.get_data()).get("item_id") != callback_data.item_id:
        raise _stale()
    await _rate(cq.message, state, session, user, t, None)
    await cq.answer()


@router.callback_query(StepCb.filter())
async def step_out_of_place(cq: CallbackQuery) -> None:
    """A form's button pressed when that form is no longer open."""
    raise _stale()


@router.message(StateFilter(Act.text, Act.sugg_agency, Act.sugg_content, Act.sugg_due, Act.reply_date,
                            Act.reply_content, Act.rate_comment))
async def act_text_only(message: Message, t: Translator) -> None:
    await message.answer(t("supervision.text_only"))


@router.message(StateFilter(Act.reply_rectified))
async def act_buttons_only(message: Message, t: Translator) -> None:
    await message.answer(t("supervision.use_buttons"))
