"""Dispute mediation in chat (五环智控): /report intake, complaint detection, mediator
actions (/queue), /mycases with the timeline and the evidence, ratings, /overdue and /stats.

Thin: parse → backend.disputes.service → reply with t("disputes.…"). A DomainError raised by
the service becomes a rollback and a polite reply in one place (bot/middlewares.py); roles are
RoleFilters; the intake wizard is the table STEPS; buttons are CallbackData factories with Enum
fields, built here only (the service names actions, ChatButtons spells them)."""
from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local
from backend.core.errors import DomainError
from backend.core.i18n import Translator
from backend.core.masking import mask_phone
from backend.disputes import config, risk, routing, service, stats
from backend.disputes.models import Dispute
from backend.disputes.workflow import Action, Rating, Referral
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import Role, User
from backend.users.tree import Node
from bot.filters import RoleFilter
from bot.menu import MenuCb, inline, register_menu_item

PRIORITY = 50
NEAR_KM = 8.0  # a shared location this close to township centroids offers them as buttons
router = Router(name="disputes")

register_menu_item("d_report", "disputes.menu_report", order=10)
register_menu_item("d_mine", "disputes.menu_mycases", order=11)
register_menu_item("d_queue", "disputes.menu_queue", roles={Role.mediator}, order=12)
register_menu_item("d_overdue", "disputes.menu_overdue", roles={Role.official, Role.mediator}, order=13)
register_menu_item("d_stats", "disputes.menu_stats", roles={Role.official}, order=14)


class Report(StatesGroup):
    category = State()
    description = State()
    place = State()
    other_party = State()
    evidence = State()
    phone = State()
    confirm = State()


class Act(StatesGroup):
    input = State()
    comment = State()


class Op(enum.StrEnum):
    skip = "skip"
    done = "done"
    confirm = "confirm"
    edit = "edit"
    cancel = "cancel"
    resume = "continue"
    restart = "restart"
    nocomment = "nocomment"


class Suggest(enum.StrEnum):
    yes = "yes"
    change = "change"
    no = "no"


class View(enum.StrEnum):
    case = "view"
    evidence = "evidence"


class CatCb(CallbackData, prefix="dcat"):
    code: str  # a category code of config.toml (data, not an enum)


class PlaceCb(CallbackData, prefix="dpl"):
    id: int
    pick: int = 0


class InCb(CallbackData, prefix="din"):
    op: Op


class EditCb(CallbackData, prefix="ded"):
    step: str  # one of EDITABLE


class SugCb(CallbackData, prefix="dsg"):
    op: Suggest
    code: str


class CaseCb(CallbackData, prefix="dsp"):
    action: Action
    id: int


class ViewCb(CallbackData, prefix="dsp"):  # shares CaseCb's prefix: "dsp:view:7", "dsp:accept:7"
    what: View
    id: int


class RateCb(CallbackData, prefix="dsr"):
    v: Rating
    id: int


class RefCb(CallbackData, prefix="dref"):
    v: Referral
    id: int


def _rows(buttons: list[tuple[str, str]], width: int) -> list[list[tuple[str, str]]]:
    return [buttons[i:i + width] for i in range(0, len(buttons), width)]


class ChatButtons:
    """The buttons of the service's notifications (labels are i18n keys, rendered per person)."""

    def case(self, d: Dispute, actions: list[Action]) -> list[list[tuple[str, str]]]:
        return _rows([(f"disputes.btn_{a}", CaseCb(action=a, id=d.id).pack()) for a in actions], 3)

    def rating(self, d: Dispute) -> list[list[tuple[str, str]]]:
        return [[(f"disputes.rating_{r}", RateCb(v=r, id=d.id).pack()) for r in Rating]]


service.use_buttons(ChatButtons())


# ---------------------------------------------------------------- rendering
def cat_name(code: str, t: Translator) -> str:
    return config.get().category(code).name(t.lang)


def category_keyboard(t: Translator) -> InlineKeyboardMarkup:
    cats = list(config.get().categories.values())
    return inline(_rows([(c.name(t.lang), CatCb(code=c.code).pack()) for c in cats], 2))


def risk_text(d: Dispute, viewer: User, t: Translator) -> str:
    """The grade and its reasons, for staff only: a citizen never sees the internal grade."""
    if not service.sees_risk(viewer, d):
        return ""
    return t("disputes.risk_line", grade=t(f"disputes.risk_{d.risk}"), reasons=risk.describe(d.risk_reasons, t.lang))


def outcome_text(d: Dispute, viewer: User, t: Translator) -> str:
    if d.outcome == "success":
        agreement = service.text_for(viewer, d, d.agreement)
        return t("disputes.card_outcome", outcome=f"{t('disputes.status_resolved')}：{agreement}")
    if d.outcome == "failed":
        return t("disputes.card_outcome", outcome=t("disputes.status_failed") + " → " + t(f"disputes.referral_{d.referral}"))
    return ""


async def timeline_text(session: AsyncSession, d: Dispute, viewer: User, t: Translator) -> str:
    lines = [t("disputes.timeline_title")]
    for ev in await service.timeline(session, d):
        actor = await session.get(User, ev.actor_id) if ev.actor_id else None
        status = "" if ev.from_status == ev.to_status else f" → {t(f'disputes.status_{ev.to_status}')}"
        note = f"：{service.text_for(viewer, d, ev.note)}" if ev.note and ev.action not in ("create", "overdue") else ""
        lines.append(t("disputes.timeline_line", when=fmt_local(ev.at), action=t(f"disputes.action_{ev.action}"),
                       actor=(actor.name or "-") if actor else t("disputes.system"), status=status, note=note))
    return "\n".join(lines)


async def card_text(session: AsyncSession, d: Dispute, viewer: User, t: Translator, files: int) -> str:
    mediator = await session.get(User, d.mediator_id) if d.mediator_id else None
    sess = t("disputes.card_session", when=fmt_local(d.session_at), place=d.session_place) if d.session_at else ""
    text = t("disputes.card", number=d.number, status=t(f"disputes.status_{d.status}"), risk=risk_text(d, viewer, t),
             category=cat_name(d.category, t), place=d.place.name, unit=d.unit.name,
             mediator=mediator.name if mediator else "-", other_party=service.party_for(viewer, d) or "-",
             phone=service.phone_for(viewer, d), files=files, description=service.text_for(viewer, d, d.description),
             accept_due=fmt_local(d.accept_due), resolve_due=fmt_local(d.resolve_due), session=sess,
             outcome=outcome_text(d, viewer, t))
    return text + "\n\n" + await timeline_text(session, d, viewer, t)


def case_keyboard(d: Dispute, user: User, t: Translator, files: int = 0) -> InlineKeyboardMarkup | None:
    """The actions ``user`` may take now (the workflow table), and the evidence if there is any."""
    rows = _rows([(t(f"disputes.btn_{a}"), CaseCb(action=a, id=d.id).pack())
                  for a in service.available_actions(user, d)], 3)
    if files:
        rows.append([(t("disputes.btn_evidence", n=files), ViewCb(what=View.evidence, id=d.id).pack())])
    return inline(rows) if rows else None


async def show_case(target: Message, session: AsyncSession, d: Dispute, user: User, t: Translator) -> None:
    await audit_read(session, user, "dispute", d.number, channel="chat")
    files = await service.evidence_count(session, d)
    await target.answer(await card_text(session, d, user, t, files), reply_markup=case_keyboard(d, user, t, files))


# ---------------------------------------------------------------- the intake wizard (a table)
async def county_keyboard(session: AsyncSession, t: Translator) -> InlineKeyboardMarkup:
    return inline(_rows([(j.name, PlaceCb(id=j.id).pack()) for j in await users.children(session, None)], 3))


def op_keyboard(t: Translator, *ops: tuple[str, Op]) -> InlineKeyboardMarkup:
    return inline([[(t(label), InCb(op=op).pack()) for label, op in ops]])


async def _skip_keyboard(session: AsyncSession, t: Translator) -> InlineKeyboardMarkup:
    return op_keyboard(t, ("disputes.btn_skip", Op.skip))


async def _evidence_keyboard(session: AsyncSession, t: Translator) -> InlineKeyboardMarkup:
    return op_keyboard(t, ("disputes.btn_done", Op.done), ("disputes.btn_skip", Op.done))


async def _category_keyboard(session: AsyncSession, t: Translator) -> InlineKeyboardMarkup:
    return category_keyboard(t)


async def _no_keyboard(session: AsyncSession, t: Translator) -> None:
    return None


@dataclass(frozen=True)
class Step:
    state: State
    ask: str  # the question's i18n key
    keyboard: Callable[[AsyncSession, Translator], Awaitable[InlineKeyboardMarkup | None]]
    optional: bool = False  # 跳过 / 完成 move on


STEPS: dict[str, Step] = {
    "category": Step(Report.category, "disputes.ask_category", _category_keyboard),
    "description": Step(Report.description, "disputes.ask_description", _no_keyboard),
    "place": Step(Report.place, "disputes.ask_place", county_keyboard),
    "other_party": Step(Report.other_party, "disputes.ask_other_party", _skip_keyboard, optional=True),
    "evidence": Step(Report.evidence, "disputes.ask_evidence", _evidence_keyboard, optional=True),
    "phone": Step(Report.phone, "disputes.ask_phone", _skip_keyboard, optional=True),
}
ORDER = [*STEPS, "confirm"]
EDITABLE = list(STEPS)


def step_of(state_name: str | None) -> str | None:
    """"Report:phone" → "phone" (None outside the report)."""
    return state_name.split(":", 1)[1] if state_name and state_name.startswith("Report:") else None


async def prompt(step: str, message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    """Ask for ``step`` (also used to continue a draft after a restart)."""
    if step not in STEPS:
        await show_summary(message, state, t)
        return
    s = STEPS[step]
    await state.set_state(s.state)
    await message.answer(t(s.ask), reply_markup=await s.keyboard(session, t))


async def show_summary(message: Message, state: FSMContext, t: Translator) -> None:
    await state.set_state(Report.confirm)
    data = await state.get_data()
    await message.answer(t("disputes.summary", category=cat_name(data.get("category", "other"), t),
                           description=data.get("description", "-"), place=data.get("place_label", "-"),
                           other_party=data.get("other_party") or "-", files=len(data.get("evidence", [])),
                           phone=mask_phone(data.get("phone"))),
                         reply_markup=inline([[(t("disputes.btn_confirm"), InCb(op=Op.confirm).pack())],
                                              [(t("disputes.btn_edit"), InCb(op=Op.edit).pack()),
                                               (t("disputes.btn_cancel"), InCb(op=Op.cancel).pack())]]))


async def advance(done: str, message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    data = await state.get_data()
    if data.get("editing") or done == "phone":
        await state.update_data(editing=False)
        await show_summary(message, state, t)
        return
    nxt = ORDER[ORDER.index(done) + 1]
    if nxt == "description" and data.get("description"):
        nxt = "place"  # the complaint text already is the description
    await prompt(nxt, message, state, session, t)


async def new_draft(state: FSMContext, **data: Any) -> None:
    """A fresh draft with its own intake key: confirming it twice creates one case."""
    await state.clear()
    await state.update_data(evidence=[], draft=uuid.uuid4().hex, **data)


async def set_place(message: Message, state: FSMContext, session: AsyncSession, t: Translator,
                    j: Node, *, address: str | None = None, lat=None, lon=None) -> None:
    chain = await users.ancestors(session, j)
    label = "".join(a.name for a in chain[1:]) or j.name
    located = {"lat": lat, "lon": lon} if lat is not None else {}  # a GPS shared before a button keeps
    await state.update_data(place_id=j.id, place_label=label + (f"（{address}）" if address else ""),
                            address=address, **located)
    await message.answer(t("disputes.place_set", place=label))
    await advance("place", message, state, session, t)


async def start_report(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    if step_of(await state.get_state()):
        await message.answer(t("disputes.draft_exists"), reply_markup=op_keyboard(
            t, ("disputes.btn_continue", Op.resume), ("disputes.btn_restart", Op.restart)))
        return
    await new_draft(state)
    await prompt("category", message, state, session, t)


# ---------------------------------------------------------------- entry points
@router.message(Command("report"), StateFilter("*"))
async def cmd_report(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await start_report(message, state, session, t)


@router.callback_query(MenuCb.filter(F.action == "d_report"))
async def menu_report(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await cq.answer()
    await start_report(cq.message, state, session, t)


@router.callback_query(InCb.filter(F.op.in_({Op.resume, Op.restart})))
async def draft_choice(cq: CallbackQuery, callback_data: InCb, state: FSMContext, session: AsyncSession,
                       t: Translator) -> None:
    await cq.answer()
    step = step_of(await state.get_state())
    if callback_data.op == Op.restart or step is None:
        await new_draft(state)
        step = "category"
    await prompt(step, cq.message, state, session, t)


async def looks_like_complaint(message: Message, user: User, ctx: Any = None) -> bool | dict:
    text = message.text or ""
    if text.startswith("/") or Role(user.role) != Role.citizen or len(text) > service.MAX_DESCRIPTION:
        return False
    kb = getattr(ctx, "kb", None)
    if routing._embedder(kb) is None:
        code = routing.classify(text)
    else:  # the embedder is CPU work: keep the event loop free
        code = await asyncio.to_thread(routing.classify, text, kb)
    return {"suggested": code} if code else False


@router.message(StateFilter(None), F.text, looks_like_complaint)
async def complaint(message: Message, state: FSMContext, suggested: str, t: Translator) -> None:
    await state.update_data(pending_text=message.text[: service.MAX_DESCRIPTION])
    name = cat_name(suggested, t)
    await message.answer(t("disputes.suggest", category=name), reply_markup=inline([
        [(t("disputes.btn_suggest_yes", category=name), SugCb(op=Suggest.yes, code=suggested).pack())],
        [(t("disputes.btn_suggest_change"), SugCb(op=Suggest.change, code=suggested).pack()),
         (t("disputes.btn_suggest_no"), SugCb(op=Suggest.no, code=suggested).pack())]]))


@router.callback_query(SugCb.filter())
async def suggestion(cq: CallbackQuery, callback_data: SugCb, state: FSMContext, session: AsyncSession,
                     t: Translator) -> None:
    await cq.answer()
    text = (await state.get_data()).get("pending_text", "")
    if callback_data.op == Suggest.no:
        await state.clear()
        await cq.message.answer(t("disputes.suggest_declined"))
        return
    description = service.description_or_none(text)
    await new_draft(state, **({"description": description} if description else {}))
    if callback_data.op == Suggest.change:
        await prompt("category", cq.message, state, session, t)
        return
    await state.update_data(category=service.validate_category(callback_data.code))
    if description:
        await cq.message.answer(t("disputes.suggest_kept"))
    await advance("category", cq.message, state, session, t)


# ---------------------------------------------------------------- intake steps
@router.callback_query(CatCb.filter(), StateFilter(Report))
async def got_category(cq: CallbackQuery, callback_data: CatCb, state: FSMContext, session: AsyncSession,
                       t: Translator) -> None:
    await state.update_data(category=service.validate_category(callback_data.code))
    await cq.answer()
    await advance("category", cq.message, state, session, t)


@router.message(Report.category)
async def category_text(message: Message, t: Translator) -> None:
    await message.answer(t("disputes.expect_button"), reply_markup=category_keyboard(t))


@router.message(Report.description, F.text)
async def got_description(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await state.update_data(description=service.validate_description(message.text))
    await advance("description", message, state, session, t)


@router.callback_query(PlaceCb.filter(), StateFilter(Report))
async def place_button(cq: CallbackQuery, callback_data: PlaceCb, state: FSMContext, session: AsyncSession,
                       t: Translator) -> None:
    await cq.answer()
    j = await users.jurisdiction(session, callback_data.id) if callback_data.id else None
    if j is None or j.level == "city":
        key = "disputes.ask_place" if callback_data.id == 0 else "disputes.err_place"
        await cq.message.answer(t(key), reply_markup=await county_keyboard(session, t))
        return
    kids = [] if callback_data.pick else await users.children(session, j.id)
    if not kids:
        await set_place(cq.message, state, session, t, j)
        return
    rows = _rows([(k.name, PlaceCb(id=k.id).pack()) for k in kids], 3)
    rows.append([(t("disputes.btn_this_level", name=j.name), PlaceCb(id=j.id, pick=1).pack()),
                 (t("disputes.btn_back"), PlaceCb(id=0).pack())])
    await cq.message.answer(t("disputes.ask_place_child", name=j.name), reply_markup=inline(rows))


@router.message(Report.place, F.location)
async def place_location(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    lat, lon = message.location.latitude, message.location.longitude
    if not users.in_taizhou(lat, lon):
        await message.answer(t("disputes.err_place_outside"), reply_markup=await county_keyboard(session, t))
        return
    candidates = await routing.nearest_townships(session, lat, lon)
    j = routing.clear_nearest(candidates)
    if j is None and candidates and candidates[0][1] <= NEAR_KM:
        await state.update_data(lat=lat, lon=lon)
        rows = [[(t("disputes.btn_place_near", name=c.name, km=f"{km:.1f}"), PlaceCb(id=c.id, pick=1).pack())]
                for c, km in candidates]
        rows.append([(t("disputes.btn_place_other"), PlaceCb(id=0).pack())])
        await message.answer(t("disputes.ask_place_near"), reply_markup=inline(rows))
        return
    j = j or await users.nearest(session, lat, lon)
    if j is None or j.level == "city":
        await message.answer(t("disputes.err_place_far"), reply_markup=await county_keyboard(session, t))
        return
    await set_place(message, state, session, t, j, lat=lat, lon=lon)


@router.message(Report.place, F.text)
async def place_text(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    text = message.text.strip()[:255]
    j = await routing.place_from_text(session, text)
    if j is None:
        await message.answer(t("disputes.err_place_unknown"), reply_markup=await county_keyboard(session, t))
        return
    await set_place(message, state, session, t, j, address=text)


@router.message(Report.other_party, F.text)
async def got_other_party(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await state.update_data(other_party=message.text.strip()[:255])
    await advance("other_party", message, state, session, t)


@router.message(Report.evidence, F.photo | F.document)
async def got_evidence(message: Message, state: FSMContext, bot: Bot, ctx: Any, t: Translator) -> None:
    evidence = list((await state.get_data()).get("evidence", []))
    photo = bool(message.photo)
    f = message.photo[-1] if photo else message.document
    service.check_upload(len(evidence), f.file_size or 0)
    item = await service.keep_evidence(ctx.files, (await bot.download(f.file_id)).read(), photo=photo)
    item["name"] = None if photo else (message.document.file_name or "file")[:255]
    evidence.append(item)
    await state.update_data(evidence=evidence)
    if len(evidence) >= service.MAX_FILES:
        await message.answer(t("disputes.evidence_full"))
        await advance("evidence", message, state, None, t)  # type: ignore[arg-type] - no DB needed
        return
    kind = "图片" if item["mime"].startswith("image/") else "PDF"
    await message.answer(t("disputes.evidence_saved", n=len(evidence), kind=kind),
                         reply_markup=op_keyboard(t, ("disputes.btn_done", Op.done)))


@router.message(Report.evidence)
async def evidence_other(message: Message, t: Translator) -> None:
    await message.answer(t("disputes.expect_photo"), reply_markup=op_keyboard(t, ("disputes.btn_done", Op.done)))


@router.message(Report.phone, F.text)
async def got_phone(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await state.update_data(phone=service.validate_phone(message.text))
    await advance("phone", message, state, session, t)


@router.callback_query(InCb.filter(F.op.in_({Op.skip, Op.done})), StateFilter(Report))
async def skip(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    await cq.answer()
    step = step_of(await state.get_state())
    if step in STEPS and STEPS[step].optional:
        await advance(step, cq.message, state, session, t)


@router.callback_query(InCb.filter(F.op == Op.edit), StateFilter(Report))
async def edit(cq: CallbackQuery, t: Translator) -> None:
    await cq.answer()
    rows = _rows([(t(f"disputes.edit_{f}"), EditCb(step=f).pack()) for f in EDITABLE], 3)
    await cq.message.answer(t("disputes.edit_choose"), reply_markup=inline(rows))


@router.callback_query(EditCb.filter(F.step.in_(EDITABLE)), StateFilter(Report))
async def edit_field(cq: CallbackQuery, callback_data: EditCb, state: FSMContext, session: AsyncSession,
                     t: Translator) -> None:
    await cq.answer()
    await state.update_data(editing=True, **({"evidence": []} if callback_data.step == "evidence" else {}))
    await prompt(callback_data.step, cq.message, state, session, t)


@router.callback_query(InCb.filter(F.op == Op.cancel), StateFilter(Report))
async def cancel(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    await state.clear()
    await cq.message.answer(t("disputes.report_cancelled"))


def intake_key(user: User, data: dict) -> str:
    """The draft's own key; a draft from before keys existed is keyed by its content."""
    if data.get("draft"):
        return f"chat:{data['draft']}"
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    return f"chat:{user.id}:{digest[:40]}"


@router.callback_query(InCb.filter(F.op == Op.confirm), Report.confirm)
async def confirm(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, ctx: Any,
                  t: Translator) -> None:
    await cq.answer()
    data = await state.get_data()
    place = await users.jurisdiction(session, data.get("place_id"))
    if place is None:
        await prompt("place", cq.message, state, session, t)
        return
    d = await service.create_case(
        session, citizen=user, category=data.get("category", "other"), description=data.get("description", ""),
        place=place, store=ctx.files, address=data.get("address"), lat=data.get("lat"),
        lon=data.get("lon"), other_party=data.get("other_party"), phone=data.get("phone"),
        evidence=data.get("evidence"), intake_key=intake_key(user, data))
    await state.clear()
    await cq.message.answer(t("disputes.created", number=d.number, status=t(f"disputes.status_{d.status}"),
                              unit=d.unit.name))


@router.callback_query(InCb.filter(), StateFilter(None))
async def stale_intake(cq: CallbackQuery, t: Translator) -> None:
    await cq.answer(t("common.stale_button"), show_alert=True)


# ---------------------------------------------------------------- lists
def view_buttons(cases: list[Dispute], t: Translator, *, grade: bool = False) -> InlineKeyboardMarkup:
    return inline([[(t("disputes.btn_view", number=d.number, status=t(f"disputes.status_{d.status}"))
                     + (" " + t(f"disputes.risk_{d.risk}")[:1] if grade else ""),
                     ViewCb(what=View.case, id=d.id).pack())] for d in cases])


async def show_mycases(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    cases = await service.list_cases(session, user, mine=True, limit=10)
    if not cases:
        await message.answer(t("disputes.mycases_empty"))
        return
    await message.answer(t("disputes.mycases_title", n=len(cases)), reply_markup=view_buttons(cases, t))


async def show_queue(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    cases = await service.queue(session, user)
    if not cases:
        await message.answer(t("disputes.queue_empty"))
        return
    await message.answer(t("disputes.queue_title", n=len(cases)), reply_markup=view_buttons(cases, t, grade=True))


async def show_overdue(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    cases = await service.overdue_cases(session, user)
    if not cases:
        await message.answer(t("disputes.overdue_empty"))
        return
    lines = [t("disputes.overdue_line", number=d.number, category=cat_name(d.category, t), unit=d.unit.name,
               status=t(f"disputes.status_{d.status}"), accept_due=fmt_local(d.accept_due),
               resolve_due=fmt_local(d.resolve_due)) for d in cases]
    await message.answer(t("disputes.overdue_title", n=len(cases)) + "\n" + "\n".join(lines))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


async def show_stats(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
    scope = user.jurisdiction
    rows = await stats.compute(session, scope)
    if not rows:
        await message.answer(t("disputes.stats_empty"))
        return
    s = stats.summary(rows)
    text = t("disputes.stats_text", scope=scope.name if scope else "台州市", months=f"{rows[0].month}…{rows[-1].month}",
             total=s["total"], decided=s["decided"], resolved=s["resolved"], local=_pct(s["local_resolution_rate"]),
             days=s["avg_resolution_days"] if s["avg_resolution_days"] is not None else "-",
             sat=_pct(s["satisfaction_rate"]), overdue=_pct(s["overdue_rate"]))
    text += "\n" + "\n".join(t("disputes.stats_row", name=r.jurisdiction, month="", total=r.total,
                               local=_pct(r.local_resolution_rate), sat=_pct(r.satisfaction_rate),
                               overdue=_pct(r.overdue_rate)) for r in (await stats.compute(session, scope, totals=True))[:20])
    await message.answer(text)
    png = stats.chart_png(rows, title=f"Disputes · {(scope.code or 'area') if scope else 'TZ'}")
    await message.answer_photo(BufferedInputFile(png, "stats.png"), caption=t("disputes.stats_chart_caption"))


@dataclass(frozen=True)
class ListCommand:
    command: str
    menu: str
    show: Callable[..., Awaitable[None]]
    roles: tuple[Role, ...] = ()  # empty: everyone
    refusal: str | None = None  # what the other roles hear


LISTS = (ListCommand("mycases", "d_mine", show_mycases),
         ListCommand("queue", "d_queue", show_queue, (Role.mediator,), "disputes.only_mediator"),
         ListCommand("overdue", "d_overdue", show_overdue, (Role.official, Role.mediator), "disputes.only_official"),
         ListCommand("stats", "d_stats", show_stats, (Role.official,), "disputes.only_official"))


def _list_handlers(cmd: ListCommand) -> None:
    """/command and its menu button for the allowed roles, then the refusal for the others."""
    allowed = [RoleFilter(*cmd.roles)] if cmd.roles else []

    async def by_menu(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
        await cq.answer()
        await cmd.show(cq.message, session, user, t)

    async def refuse(event: Message | CallbackQuery, t: Translator) -> None:
        await (event.answer(t(cmd.refusal), show_alert=True) if isinstance(event, CallbackQuery)
               else event.answer(t(cmd.refusal)))

    router.message(Command(cmd.command), *allowed)(cmd.show)
    router.callback_query(MenuCb.filter(F.action == cmd.menu), *allowed)(by_menu)
    if cmd.refusal:
        router.message(Command(cmd.command))(refuse)
        router.callback_query(MenuCb.filter(F.action == cmd.menu))(refuse)


for _cmd in LISTS:
    _list_handlers(_cmd)


# ---------------------------------------------------------------- the case card and its actions
@router.callback_query(ViewCb.filter(F.what == View.case))
async def view_case(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User,
                    t: Translator) -> None:
    d = await service.get_case(session, callback_data.id, user)
    await cq.answer()
    await show_case(cq.message, session, d, user, t)


@router.callback_query(ViewCb.filter(F.what == View.evidence))
async def view_evidence(cq: CallbackQuery, callback_data: ViewCb, session: AsyncSession, user: User, ctx: Any,
                        t: Translator) -> None:
    """The case's files, sent to someone allowed to see the case (the read is audited)."""
    d = await service.get_case(session, callback_data.id, user)
    files = await service.evidence_files(session, d, user, ctx.files)
    await cq.answer()
    if not files:
        await cq.message.answer(t("disputes.evidence_none", number=d.number))
        return
    for i, (f, data) in enumerate(files, start=1):
        caption = t("disputes.evidence_caption", number=d.number, i=i, n=len(files))
        upload = BufferedInputFile(data, f.filename or f"{d.number}-{i}")
        if f.mime.startswith("image/"):
            await cq.message.answer_photo(upload, caption=caption)
        else:
            await cq.message.answer_document(upload, caption=caption)


async def _accept(cq: CallbackQuery, session: AsyncSession, d: Dispute, user: User, t: Translator) -> None:
    await service.accept(session, d, user)
    await cq.message.answer(t("disputes.done_accept", number=d.number, due=fmt_local(d.resolve_due)),
                            reply_markup=case_keyboard(d, user, t))


async def _close(cq: CallbackQuery, session: AsyncSession, d: Dispute, user: User, t: Translator) -> None:
    await service.close(session, d, user)
    await cq.message.answer(t("disputes.done_close", number=d.number))


async def _ask_referral(cq: CallbackQuery, session: AsyncSession, d: Dispute, user: User, t: Translator) -> None:
    await cq.message.answer(t("disputes.prompt_fail"), reply_markup=inline([[
        (t(f"disputes.referral_{v}"), RefCb(v=v, id=d.id).pack()) for v in Referral]]))


AT_ONCE = {Action.accept: _accept, Action.close: _close, Action.fail: _ask_referral}  # the rest asks for text


@router.callback_query(CaseCb.filter())
async def case_action(cq: CallbackQuery, callback_data: CaseCb, state: FSMContext, session: AsyncSession,
                      user: User, t: Translator) -> None:
    d = await service.get_case(session, callback_data.id, user)
    action = callback_data.action
    service.check_action(user, d, action)
    await cq.answer()
    if action in AT_ONCE:
        await AT_ONCE[action](cq, session, d, user, t)
        return
    await state.set_state(Act.input)
    await state.update_data(act=action.value, case_id=d.id)
    await cq.message.answer(t(f"disputes.prompt_{action}"))


@router.callback_query(RefCb.filter())
async def referral(cq: CallbackQuery, callback_data: RefCb, session: AsyncSession, user: User,
                   t: Translator) -> None:
    d = await service.get_case(session, callback_data.id, user)
    await service.record_outcome(session, d, user, False, referral=callback_data.v.value)
    await cq.answer()
    await cq.message.answer(t("disputes.done_fail", number=d.number, referral=t(f"disputes.referral_{d.referral}")),
                            reply_markup=case_keyboard(d, user, t))


# what the mediator's text means after each button: (session, case, user, text, t) → the reply
async def _transfer(session: AsyncSession, d: Dispute, user: User, text: str, t: Translator) -> str:
    name, _, reason = text.partition(" ")
    target = await users.find_jurisdiction(session, name) or await routing.place_from_text(session, name)
    if target is None:
        raise DomainError("disputes.err_transfer_target", name=name[:30])
    await service.transfer(session, d, user, target, reason)
    if d.unit_id == target.id:
        return t("disputes.done_transfer", number=d.number, unit=d.unit.name)
    return t("disputes.done_transfer_up", number=d.number, unit=d.unit.name, target=target.name)


async def _escalate(session: AsyncSession, d: Dispute, user: User, text: str, t: Translator) -> str:
    await service.escalate(session, d, user, text)
    return t("disputes.done_escalate", number=d.number, unit=d.unit.name)


async def _note(session: AsyncSession, d: Dispute, user: User, text: str, t: Translator) -> str:
    await service.add_note(session, d, user, text)
    return t("disputes.done_note", number=d.number)


async def _schedule(session: AsyncSession, d: Dispute, user: User, text: str, t: Translator) -> str:
    at, place = service.parse_session_input(text)
    await service.schedule_session(session, d, user, at, place)
    return t("disputes.done_schedule", number=d.number, when=fmt_local(at), place=place)


async def _succeed(session: AsyncSession, d: Dispute, user: User, text: str, t: Translator) -> str:
    await service.record_outcome(session, d, user, True, agreement=text)
    return t("disputes.done_succeed", number=d.number)


WITH_TEXT = {Action.transfer: _transfer, Action.escalate: _escalate, Action.note: _note,
             Action.schedule: _schedule, Action.succeed: _succeed}


@router.message(Act.input, F.text)
async def action_input(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       t: Translator) -> None:
    """The text a case button asked for. A refusal keeps the step: the mediator can correct it
    (or /cancel)."""
    data = await state.get_data()
    act = WITH_TEXT.get(Action(data["act"])) if data.get("act") in Action.__members__ else None
    if act is None:
        await state.clear()
        return
    d = await service.get_case(session, int(data.get("case_id") or 0), user)
    reply = await act(session, d, user, message.text.strip(), t)
    await state.clear()
    await message.answer(reply, reply_markup=case_keyboard(d, user, t))


# ---------------------------------------------------------------- rating
@router.callback_query(RateCb.filter())
async def rating(cq: CallbackQuery, callback_data: RateCb, state: FSMContext, session: AsyncSession,
                 user: User, t: Translator) -> None:
    d = await service.get_case(session, callback_data.id, user)
    await service.rate(session, d, user, callback_data.v.value)
    await cq.answer()
    await state.set_state(Act.comment)
    await state.update_data(case_id=d.id)
    key = "disputes.rated_reopened" if d.rating == Rating.unsatisfied else "disputes.rated"
    await cq.message.answer(t(key, unit=d.unit.name), reply_markup=op_keyboard(t, ("disputes.btn_skip", Op.nocomment)))


@router.callback_query(InCb.filter(F.op == Op.nocomment))
async def no_comment(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
    await cq.answer()
    if await state.get_state() == Act.comment.state:
        await state.clear()
    await cq.message.answer(t("disputes.comment_saved"))


@router.message(Act.comment, F.text)
async def got_comment(message: Message, state: FSMContext, session: AsyncSession, user: User,
                      t: Translator) -> None:
    d = await service.get_case(session, int((await state.get_data()).get("case_id") or 0), user)
    await service.comment_rating(session, d, user, message.text)
    await state.clear()
    await message.answer(t("disputes.comment_saved"))
