"""Dispute mediation in chat (五环智控): /report intake, complaint detection, mediator
actions (/queue), /mycases with the timeline, ratings, /overdue and /stats.
Thin: parse → backend.disputes.service → reply with t("disputes.…")."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.i18n import Translator
from backend.core.masking import mask_phone
from backend.disputes import config, routing, service, stats
from backend.disputes.models import Dispute
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import Role, User
from backend.users.tree import Node
from bot.menu import MenuCb, inline, register_menu_item

log = logging.getLogger("hehe.handlers.disputes")
PRIORITY = 50

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


class CatCb(CallbackData, prefix="dcat"):
    code: str


class PlaceCb(CallbackData, prefix="dpl"):
    id: int
    pick: int = 0


class InCb(CallbackData, prefix="din"):
    op: str


class SugCb(CallbackData, prefix="dsg"):
    op: str
    code: str


class CaseCb(CallbackData, prefix="dsp"):
    action: str
    id: int


class RateCb(CallbackData, prefix="dsr"):
    v: str
    id: int


class RefCb(CallbackData, prefix="dref"):
    v: str
    id: int


STEP_ORDER = ["category", "description", "place", "other_party", "evidence", "phone", "confirm"]


# ---------------------------------------------------------------- rendering
def cat_name(code: str, t: Translator) -> str:
    return config.get().category(code).name(t.lang)


def category_keyboard(t: Translator):
    cats = list(config.get().categories.values())
    rows = [[(c.name(t.lang), CatCb(code=c.code).pack()) for c in cats[i:i + 2]] for i in range(0, len(cats), 2)]
    return inline(rows)


def risk_text(d: Dispute, t: Translator) -> str:
    reasons = "；".join(t(f"disputes.risk_{r['code']}", detail=r.get("detail", "")) for r in d.risk_reasons or [])
    return t("disputes.risk_line", grade=t(f"disputes.risk_{d.risk}"), reasons=reasons or "-")


async def card_text(session: AsyncSession, d: Dispute, viewer: User, t: Translator, with_timeline=True) -> str:
    mediator = await session.get(User, d.mediator_id) if d.mediator_id else None
    sess = t("disputes.card_session", when=fmt_local(d.session_at), place=d.session_place) if d.session_at else ""
    outcome = ""
    if d.outcome == "success":
        outcome = t("disputes.card_outcome", outcome=f"{t('disputes.status_resolved')}：{service.text_for(viewer, d, d.agreement)}")
    elif d.outcome == "failed":
        outcome = t("disputes.card_outcome", outcome=t("disputes.status_failed") + " → "
                    + t(f"disputes.referral_{d.referral}"))
    text = t("disputes.card", number=d.number, status=t(f"disputes.status_{d.status}"), risk=risk_text(d, t),
             category=cat_name(d.category, t), place=d.place.name, unit=d.unit.name,
             mediator=mediator.name if mediator else "-", other_party=service.party_for(viewer, d) or "-",
             phone=service.phone_for(viewer, d), files=await service.evidence_count(session, d),
             description=service.text_for(viewer, d, d.description), accept_due=fmt_local(d.accept_due), resolve_due=fmt_local(d.resolve_due),
             session=sess, outcome=outcome)
    if with_timeline:
        lines = [t("disputes.timeline_title")]
        for ev in await service.timeline(session, d):
            actor = await session.get(User, ev.actor_id) if ev.actor_id else None
            status = "" if ev.from_status == ev.to_status else f" → {t(f'disputes.status_{ev.to_status}')}"
            note = f"：{service.text_for(viewer, d, ev.note)}" if ev.note and ev.action not in ("create", "overdue") else ""
            lines.append(t("disputes.timeline_line", when=fmt_local(ev.at), action=t(f"disputes.action_{ev.action}"),
                           actor=(actor.name or "-") if actor else t("disputes.system"), status=status, note=note))
        text += "\n\n" + "\n".join(lines)
    return text


def case_keyboard(d: Dispute, user: User, t: Translator):
    if not service.can_handle(user, d):
        return None
    rows = [[(t(label), data) for label, data in row] for row in service.case_buttons(d)]
    return inline(rows) if rows else None


async def show_case(target: Message, session: AsyncSession, d: Dispute, user: User, t: Translator) -> None:
    await audit_read(session, user, "dispute", d.number, channel="chat")
    await target.answer(await card_text(session, d, user, t), reply_markup=case_keyboard(d, user, t))


async def say_error(target: Message | CallbackQuery, e: DomainError, t: Translator) -> None:
    text = t(e.key, **e.params)
    if isinstance(target, CallbackQuery):
        await target.answer(text, show_alert=True)
    else:
        await target.answer(text)


async def release(session: AsyncSession | None) -> None:
    """End the update's read transaction before touching the FSM storage: it uses its own
    pooled connection, and an update holding one connection while waiting for a second one
    exhausts the pool under concurrency (20 citizens → QueuePool timeouts in the benchmark)."""
    if session is not None and session.in_transaction():
        await session.commit()


# ---------------------------------------------------------------- intake prompts
async def county_keyboard(session: AsyncSession, t: Translator):
    rows = await users.children(session, None)
    return inline([[(j.name, PlaceCb(id=j.id).pack()) for j in rows[i:i + 3]] for i in range(0, len(rows), 3)])


async def prompt(step: str, message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    """Ask for ``step`` (also used to continue a draft after a restart)."""
    await release(session)
    await state.set_state(getattr(Report, step))
    if step == "category":
        await message.answer(t("disputes.ask_category"), reply_markup=category_keyboard(t))
    elif step == "description":
        await message.answer(t("disputes.ask_description"))
    elif step == "place":
        await message.answer(t("disputes.ask_place"), reply_markup=await county_keyboard(session, t))
    elif step == "other_party":
        await message.answer(t("disputes.ask_other_party"),
                             reply_markup=inline([[(t("disputes.btn_skip"), InCb(op="skip").pack())]]))
    elif step == "evidence":
        await message.answer(t("disputes.ask_evidence"), reply_markup=inline([[
            (t("disputes.btn_done"), InCb(op="done").pack()), (t("disputes.btn_skip"), InCb(op="done").pack())]]))
    elif step == "phone":
        await message.answer(t("disputes.ask_phone"),
                             reply_markup=inline([[(t("disputes.btn_skip"), InCb(op="skip").pack())]]))
    else:
        await show_summary(message, state, t)


async def show_summary(message: Message, state: FSMContext, t: Translator) -> None:
    await state.set_state(Report.confirm)
    data = await state.get_data()
    await message.answer(t("disputes.summary", category=cat_name(data.get("category", "other"), t),
                           description=data.get("description", "-"), place=data.get("place_label", "-"),
                           other_party=data.get("other_party") or "-", files=len(data.get("evidence", [])),
                           phone=mask_phone(data.get("phone"))),
                         reply_markup=inline([[(t("disputes.btn_confirm"), InCb(op="confirm").pack())],
                                              [(t("disputes.btn_edit"), InCb(op="edit").pack()),
                                               (t("disputes.btn_cancel"), InCb(op="cancel").pack())]]))


async def advance(done: str, message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    data = await state.get_data()
    if data.get("editing") or done == "phone":
        await state.update_data(editing=False)
        await show_summary(message, state, t)
        return
    nxt = STEP_ORDER[STEP_ORDER.index(done) + 1]
    if nxt == "description" and data.get("description"):
        nxt = "place"  # the complaint text already is the description
    await prompt(nxt, message, state, session, t)


async def set_place(message: Message, state: FSMContext, session: AsyncSession, t: Translator,
                    j: Node, *, address: str | None = None, lat=None, lon=None) -> None:
    chain = await users.ancestors(session, j)
    label = "".join(a.name for a in chain[1:]) or j.name
    await release(session)
    await state.update_data(place_id=j.id, place_label=label + (f"（{address}）" if address else ""),
                            address=address, lat=lat, lon=lon)
    await message.answer(t("disputes.place_set", place=label))
    await advance("place", message, state, session, t)


async def start_report(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
    current = await state.get_state()
    if current and current.startswith("Report:"):
        await message.answer(t("disputes.draft_exists"), reply_markup=inline([[
            (t("disputes.btn_continue"), InCb(op="continue").pack()),
            (t("disputes.btn_restart"), InCb(op="restart").pack())]]))
        return
    await state.clear()
    await state.update_data(evidence=[])
    await prompt("category", message, state, session, t)


# ---------------------------------------------------------------- complaint detection
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


def make_router() -> Router:
    r = Router(name="disputes")

    # ------------------------------------------------------------ entry points
    @r.message(Command("report"), StateFilter("*"))
    async def cmd_report(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        await start_report(message, state, session, t)

    @r.callback_query(MenuCb.filter(F.action == "d_report"))
    async def menu_report(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        await cq.answer()
        await start_report(cq.message, state, session, t)

    @r.callback_query(InCb.filter(F.op.in_({"continue", "restart"})))
    async def draft_choice(cq: CallbackQuery, callback_data: InCb, state: FSMContext, session: AsyncSession,
                           t: Translator) -> None:
        await cq.answer()
        current = await state.get_state()
        if callback_data.op == "restart" or not current or not current.startswith("Report:"):
            await state.clear()
            await state.update_data(evidence=[])
            await prompt("category", cq.message, state, session, t)
            return
        await prompt(current.split(":", 1)[1], cq.message, state, session, t)

    @r.message(StateFilter(None), F.text, looks_like_complaint)
    async def complaint(message: Message, state: FSMContext, suggested: str, t: Translator) -> None:
        await state.update_data(pending_text=message.text[: service.MAX_DESCRIPTION])
        name = cat_name(suggested, t)
        await message.answer(t("disputes.suggest", category=name), reply_markup=inline([
            [(t("disputes.btn_suggest_yes", category=name), SugCb(op="yes", code=suggested).pack())],
            [(t("disputes.btn_suggest_change"), SugCb(op="change", code=suggested).pack()),
             (t("disputes.btn_suggest_no"), SugCb(op="no", code=suggested).pack())]]))

    @r.callback_query(SugCb.filter())
    async def suggestion(cq: CallbackQuery, callback_data: SugCb, state: FSMContext, session: AsyncSession,
                         t: Translator) -> None:
        await cq.answer()
        data = await state.get_data()
        text = data.get("pending_text", "")
        if callback_data.op == "no":
            await state.clear()
            await cq.message.answer(t("disputes.suggest_declined"))
            return
        await state.clear()
        draft: dict = {"evidence": []}
        try:
            draft["description"] = service.validate_description(text)
        except DomainError:
            pass
        await state.update_data(**draft)
        if callback_data.op == "change":
            await prompt("category", cq.message, state, session, t)
            return
        await state.update_data(category=service.validate_category(callback_data.code))
        if draft.get("description"):
            await cq.message.answer(t("disputes.suggest_kept"))
        await advance("category", cq.message, state, session, t)

    # ------------------------------------------------------------ intake steps
    @r.callback_query(CatCb.filter(), StateFilter(Report))
    async def got_category(cq: CallbackQuery, callback_data: CatCb, state: FSMContext, session: AsyncSession,
                           t: Translator) -> None:
        await cq.answer()
        try:
            await state.update_data(category=service.validate_category(callback_data.code))
        except DomainError as e:
            await say_error(cq.message, e, t)
            return
        await advance("category", cq.message, state, session, t)

    @r.message(Report.category)
    async def category_text(message: Message, t: Translator) -> None:
        await message.answer(t("disputes.expect_button"), reply_markup=category_keyboard(t))

    @r.message(Report.description, F.text)
    async def got_description(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        try:
            desc = service.validate_description(message.text)
        except DomainError as e:
            await say_error(message, e, t)
            return
        await state.update_data(description=desc)
        await advance("description", message, state, session, t)

    @r.callback_query(PlaceCb.filter(), StateFilter(Report))
    async def place_button(cq: CallbackQuery, callback_data: PlaceCb, state: FSMContext, session: AsyncSession,
                           t: Translator) -> None:
        await cq.answer()
        if callback_data.id == 0:
            await cq.message.answer(t("disputes.ask_place"), reply_markup=await county_keyboard(session, t))
            return
        j = await users.jurisdiction(session, callback_data.id)
        if j is None or j.level == "city":
            await cq.message.answer(t("disputes.err_place"), reply_markup=await county_keyboard(session, t))
            return
        kids = [] if callback_data.pick else await users.children(session, j.id)
        if kids:
            rows = [[(k.name, PlaceCb(id=k.id).pack()) for k in kids[i:i + 3]] for i in range(0, len(kids), 3)]
            rows.append([(t("disputes.btn_this_level", name=j.name), PlaceCb(id=j.id, pick=1).pack()),
                         (t("disputes.btn_back"), PlaceCb(id=0).pack())])
            await cq.message.answer(t("disputes.ask_place_child", name=j.name), reply_markup=inline(rows))
            return
        await set_place(cq.message, state, session, t, j)

    @r.message(Report.place, F.location)
    async def place_location(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        lat, lon = message.location.latitude, message.location.longitude
        if not users.in_taizhou(lat, lon):
            await message.answer(t("disputes.err_place_outside"), reply_markup=await county_keyboard(session, t))
            return
        j = await users.nearest(session, lat, lon)
        if j is None or j.level == "city":
            await message.answer(t("disputes.err_place_far"), reply_markup=await county_keyboard(session, t))
            return
        await set_place(message, state, session, t, j, lat=lat, lon=lon)

    @r.message(Report.place, F.text)
    async def place_text(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        text = message.text.strip()[:255]
        j = await routing.place_from_text(session, text)
        if j is None:
            await message.answer(t("disputes.err_place_unknown"), reply_markup=await county_keyboard(session, t))
            return
        await set_place(message, state, session, t, j, address=text)

    @r.message(Report.other_party, F.text)
    async def got_other_party(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        await state.update_data(other_party=message.text.strip()[:255])
        await advance("other_party", message, state, session, t)

    @r.message(Report.evidence, F.photo | F.document)
    async def got_evidence(message: Message, state: FSMContext, bot: Bot, ctx: Any, t: Translator) -> None:
        data = await state.get_data()
        evidence = list(data.get("evidence", []))
        if len(evidence) >= service.MAX_FILES:
            await message.answer(t("disputes.err_too_many_files", max=service.MAX_FILES))
            return
        photo = bool(message.photo)
        f = message.photo[-1] if photo else message.document
        if (f.file_size or 0) > service.filestore.MAX_FILE_BYTES:
            await message.answer(t("disputes.err_file_big", mb=service.filestore.MAX_FILE_BYTES // 2**20))
            return
        raw = (await bot.download(f.file_id)).read()
        try:
            item = service.keep_evidence(ctx.settings.files_dir, raw, photo=photo)
        except DomainError as e:
            await say_error(message, e, t)
            return
        item["name"] = None if photo else (message.document.file_name or "file")[:255]
        evidence.append(item)
        await state.update_data(evidence=evidence)
        if len(evidence) >= service.MAX_FILES:
            await message.answer(t("disputes.evidence_full"))
            await advance("evidence", message, state, None, t)  # type: ignore[arg-type] - no DB needed
            return
        kind = "图片" if item["mime"].startswith("image/") else "PDF"
        await message.answer(t("disputes.evidence_saved", n=len(evidence), kind=kind),
                             reply_markup=inline([[(t("disputes.btn_done"), InCb(op="done").pack())]]))

    @r.message(Report.evidence)
    async def evidence_other(message: Message, t: Translator) -> None:
        await message.answer(t("disputes.expect_photo"), reply_markup=inline([[
            (t("disputes.btn_done"), InCb(op="done").pack())]]))

    @r.message(Report.phone, F.text)
    async def got_phone(message: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        try:
            phone = service.validate_phone(message.text)
        except DomainError as e:
            await say_error(message, e, t)
            return
        await state.update_data(phone=phone)
        await advance("phone", message, state, session, t)

    @r.callback_query(InCb.filter(F.op.in_({"skip", "done"})), StateFilter(Report))
    async def skip(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        await cq.answer()
        step = (await state.get_state()).split(":", 1)[1]
        if step in ("other_party", "evidence", "phone"):
            await advance(step, cq.message, state, session, t)

    @r.callback_query(InCb.filter(F.op == "edit"), StateFilter(Report))
    async def edit(cq: CallbackQuery, t: Translator) -> None:
        await cq.answer()
        fields = ["category", "description", "place", "other_party", "evidence", "phone"]
        rows = [[(t(f"disputes.edit_{f}"), InCb(op=f"e_{f}").pack()) for f in fields[i:i + 3]]
                for i in range(0, 6, 3)]
        await cq.message.answer(t("disputes.edit_choose"), reply_markup=inline(rows))

    @r.callback_query(InCb.filter(F.op.startswith("e_")), StateFilter(Report))
    async def edit_field(cq: CallbackQuery, callback_data: InCb, state: FSMContext, session: AsyncSession,
                         t: Translator) -> None:
        await cq.answer()
        step = callback_data.op[2:]
        if step not in STEP_ORDER[:-1]:
            return
        await state.update_data(editing=True, **({"evidence": []} if step == "evidence" else {}))
        await prompt(step, cq.message, state, session, t)

    @r.callback_query(InCb.filter(F.op == "cancel"), StateFilter(Report))
    async def cancel(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await state.clear()
        await cq.message.answer(t("disputes.report_cancelled"))

    @r.callback_query(InCb.filter(F.op == "confirm"), Report.confirm)
    async def confirm(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, ctx: Any,
                      t: Translator) -> None:
        await cq.answer()
        data = await state.get_data()
        place = await users.jurisdiction(session, data.get("place_id"))
        if place is None:
            await prompt("place", cq.message, state, session, t)
            return
        try:
            d = await service.create_case(
                session, citizen=user, category=data.get("category", "other"),
                description=data.get("description", ""), place=place, files_dir=ctx.settings.files_dir,
                address=data.get("address"), lat=data.get("lat"), lon=data.get("lon"),
                other_party=data.get("other_party"), phone=data.get("phone"), evidence=data.get("evidence"))
        except DomainError as e:
            await session.rollback()
            await say_error(cq.message, e, t)
            return
        await state.clear()
        await session.commit()  # the case and the end of the conversation, before we say so
        await cq.message.answer(t("disputes.created", number=d.number, status=t(f"disputes.status_{d.status}"),
                                  unit=d.unit.name))

    @r.callback_query(InCb.filter(), StateFilter(None))
    async def stale_intake(cq: CallbackQuery, t: Translator) -> None:
        await cq.answer(t("common.stale_button"), show_alert=True)

    # ------------------------------------------------------------ lists
    async def mycases(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        cases = await service.list_cases(session, user, mine=True, limit=10)
        if not cases:
            await message.answer(t("disputes.mycases_empty"))
            return
        await message.answer(t("disputes.mycases_title", n=len(cases)), reply_markup=inline([
            [(t("disputes.btn_view", number=d.number, status=t(f"disputes.status_{d.status}")),
              CaseCb(action="view", id=d.id).pack())] for d in cases]))

    async def queue(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        if Role(user.role) not in (Role.mediator, Role.admin):
            await message.answer(t("disputes.only_mediator"))
            return
        cases = await service.queue(session, user)
        if not cases:
            await message.answer(t("disputes.queue_empty"))
            return
        await message.answer(t("disputes.queue_title", n=len(cases)), reply_markup=inline([
            [(t("disputes.btn_view", number=d.number, status=t(f"disputes.status_{d.status}")) + " "
              + t(f"disputes.risk_{d.risk}")[:1], CaseCb(action="view", id=d.id).pack())] for d in cases]))

    async def overdue(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        if Role(user.role) not in (Role.official, Role.mediator, Role.admin):
            await message.answer(t("disputes.only_official"))
            return
        cases = await service.overdue_cases(session, user)
        if not cases:
            await message.answer(t("disputes.overdue_empty"))
            return
        lines = [t("disputes.overdue_line", number=d.number, category=cat_name(d.category, t), unit=d.unit.name,
                   status=t(f"disputes.status_{d.status}"), accept_due=fmt_local(d.accept_due),
                   resolve_due=fmt_local(d.resolve_due)) for d in cases]
        await message.answer(t("disputes.overdue_title", n=len(cases)) + "\n" + "\n".join(lines))

    async def stats_cmd(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        if Role(user.role) not in (Role.official, Role.admin):
            await message.answer(t("disputes.only_official"))
            return
        scope = user.jurisdiction
        rows = await stats.compute(session, scope)
        if not rows:
            await message.answer(t("disputes.stats_empty"))
            return
        s = stats.summary(rows)
        pct = lambda v: "-" if v is None else f"{v * 100:.1f}%"  # noqa: E731
        months = f"{rows[0].month}…{rows[-1].month}" if rows else "-"
        text = t("disputes.stats_text", scope=scope.name if scope else "台州市", months=months, total=s["total"],
                 decided=s["decided"], resolved=s["resolved"], local=pct(s["local_resolution_rate"]),
                 days=s["avg_resolution_days"] if s["avg_resolution_days"] is not None else "-",
                 sat=pct(s["satisfaction_rate"]), overdue=pct(s["overdue_rate"]))
        by_place = await stats.compute(session, scope, totals=True)
        text += "\n" + "\n".join(t("disputes.stats_row", name=r.jurisdiction, month="", total=r.total,
                                   local=pct(r.local_resolution_rate), sat=pct(r.satisfaction_rate),
                                   overdue=pct(r.overdue_rate)) for r in by_place[:20])
        await message.answer(text)
        png = stats.chart_png(rows, title=f"Disputes · {(scope.code or 'area') if scope else 'TZ'}")
        await message.answer_photo(BufferedInputFile(png, "stats.png"), caption=t("disputes.stats_chart_caption"))

    for cmd, fn, action in (("mycases", mycases, "d_mine"), ("queue", queue, "d_queue"),
                            ("overdue", overdue, "d_overdue"), ("stats", stats_cmd, "d_stats")):
        r.message(Command(cmd))(fn)

        async def via_menu(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator, _fn=fn) -> None:
            await cq.answer()
            await _fn(cq.message, session, user, t)

        r.callback_query(MenuCb.filter(F.action == action))(via_menu)

    # ------------------------------------------------------------ case actions
    @r.callback_query(CaseCb.filter())
    async def case_action(cq: CallbackQuery, callback_data: CaseCb, state: FSMContext, session: AsyncSession,
                          user: User, t: Translator) -> None:
        action, cid = callback_data.action, callback_data.id
        try:
            d = await service.get_case(session, cid, user)
            if action == "view":
                await cq.answer()
                await show_case(cq.message, session, d, user, t)
                return
            if action not in service.MEDIATOR_ACTIONS:
                raise NotFound("disputes.err_not_found")
            if not service.can_handle(user, d):
                raise Forbidden("disputes.err_not_your_unit")
            if action not in service.allowed_actions(d):
                raise Conflict("disputes.err_bad_state", number=d.number, status=t(f"disputes.status_{d.status}"))
            if action == "accept":
                await service.accept(session, d, user)
                await cq.answer()
                await cq.message.answer(t("disputes.done_accept", number=d.number, due=fmt_local(d.resolve_due)),
                                        reply_markup=case_keyboard(d, user, t))
            elif action == "close":
                await service.close(session, d, user)
                await cq.answer()
                await cq.message.answer(t("disputes.done_close", number=d.number))
            elif action == "fail":
                await cq.answer()
                await cq.message.answer(t("disputes.prompt_fail"), reply_markup=inline([[
                    (t(f"disputes.referral_{v}"), RefCb(v=v, id=d.id).pack()) for v in service.REFERRALS]]))
            else:
                await cq.answer()
                await release(session)
                await state.set_state(Act.input)
                await state.update_data(act=action, case_id=d.id)
                await cq.message.answer(t(f"disputes.prompt_{action}"))
        except (Forbidden, NotFound, Conflict) as e:
            await session.rollback()
            await say_error(cq, e, t)
        except DomainError as e:
            await session.rollback()
            await say_error(cq, e, t)

    @r.callback_query(RefCb.filter())
    async def referral(cq: CallbackQuery, callback_data: RefCb, session: AsyncSession, user: User,
                       t: Translator) -> None:
        try:
            d = await service.get_case(session, callback_data.id, user)
            await service.record_outcome(session, d, user, False, referral=callback_data.v)
        except DomainError as e:
            await session.rollback()
            await say_error(cq, e, t)
            return
        await cq.answer()
        await cq.message.answer(t("disputes.done_fail", number=d.number, referral=t(f"disputes.referral_{d.referral}")),
                                reply_markup=case_keyboard(d, user, t))

    @r.message(Act.input, F.text)
    async def action_input(message: Message, state: FSMContext, session: AsyncSession, user: User,
                           t: Translator) -> None:
        data = await state.get_data()
        action, text = data.get("act"), message.text.strip()
        try:
            d = await service.get_case(session, int(data.get("case_id") or 0), user)
            if action == "transfer":
                name, _, reason = text.partition(" ")
                target = await users.find_jurisdiction(session, name) or await routing.place_from_text(session, name)
                if target is None:
                    raise DomainError("disputes.err_transfer_target", name=name[:30])
                await service.transfer(session, d, user, target, reason)
                reply = t("disputes.done_transfer", number=d.number, unit=d.unit.name)
            elif action == "escalate":
                await service.escalate(session, d, user, text)
                reply = t("disputes.done_escalate", number=d.number, unit=d.unit.name)
            elif action == "note":
                await service.add_note(session, d, user, text)
                reply = t("disputes.done_note", number=d.number)
            elif action == "schedule":
                at, place = service.parse_session_input(text)
                await service.schedule_session(session, d, user, at, place)
                reply = t("disputes.done_schedule", number=d.number, when=fmt_local(at), place=place)
            elif action == "succeed":
                await service.record_outcome(session, d, user, True, agreement=text)
                reply = t("disputes.done_succeed", number=d.number)
            else:
                await state.clear()
                return
        except (Forbidden, NotFound, Conflict) as e:
            await session.rollback()
            await state.clear()
            await say_error(message, e, t)
            return
        except DomainError as e:
            await session.rollback()
            await say_error(message, e, t)  # stay in the state: the mediator can correct it
            return
        await session.commit()
        await state.clear()
        await message.answer(reply, reply_markup=case_keyboard(d, user, t))

    # ------------------------------------------------------------ rating
    @r.callback_query(RateCb.filter())
    async def rating(cq: CallbackQuery, callback_data: RateCb, state: FSMContext, session: AsyncSession,
                     user: User, t: Translator) -> None:
        try:
            d = await service.get_case(session, callback_data.id, user)
            await service.rate(session, d, user, callback_data.v)
        except DomainError as e:
            await session.rollback()
            await say_error(cq, e, t)
            return
        await session.commit()
        await cq.answer()
        await state.set_state(Act.comment)
        await state.update_data(case_id=d.id)
        key = "disputes.rated_reopened" if d.rating == "unsatisfied" else "disputes.rated"
        await cq.message.answer(t(key, unit=d.unit.name),
                                reply_markup=inline([[(t("disputes.btn_skip"), InCb(op="nocomment").pack())]]))

    @r.callback_query(InCb.filter(F.op == "nocomment"))
    async def no_comment(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        if await state.get_state() == Act.comment.state:
            await state.clear()
        await cq.message.answer(t("disputes.comment_saved"))

    @r.message(Act.comment, F.text)
    async def got_comment(message: Message, state: FSMContext, session: AsyncSession, user: User,
                          t: Translator) -> None:
        data = await state.get_data()
        try:
            d = await service.get_case(session, int(data.get("case_id") or 0), user)
            await service.comment_rating(session, d, user, message.text)
        except DomainError as e:
            await session.rollback()
            await say_error(message, e, t)
            return
        await session.commit()
        await state.clear()
        await message.answer(t("disputes.comment_saved"))

    return r
