"""人大·检察智联督办 in chat: deputies propose, follow, urge and rate; procurators decide and
handle; officials see the figures. Thin: parse → backend.supervision.service → t(...)."""
from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local, to_local
from backend.core.errors import DomainError
from backend.core.files import store_file
from backend.core.i18n import Translator
from backend.core.policy import place_scope
from backend.supervision import export, metrics, service as svc
from backend.supervision.models import SupervisionItem
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import Role, User
from bot.menu import MenuCb, inline, register_menu_item

PRIORITY = 45  # before disputes (50): our /queue answers procurators only and lets the rest through
MAX_EVIDENCE = 10

register_menu_item("sup_propose", "supervision.menu_propose", {Role.deputy}, order=30)
register_menu_item("sup_myitems", "supervision.menu_myitems", {Role.deputy, Role.official}, order=31)
register_menu_item("sup_queue", "supervision.menu_queue", {Role.procurator}, order=30)
register_menu_item("sup_stats", "supervision.menu_stats", {Role.official}, order=40)


class SupCb(CallbackData, prefix="sp"):
    """Item actions; the service writes the same shape (``sp:<action>:<item id>``) into notifications."""

    action: str
    item_id: int = 0


class PropCb(CallbackData, prefix="spp"):
    action: str
    value: int = 0


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


def _role(user: User) -> Role:
    return Role(user.role)


def is_procurator(message: Message, user: User) -> bool:
    """/queue is shared with disputes (mediators): we answer procurators only, the rest falls through."""
    return _role(user) == Role.procurator


async def _fail(session: AsyncSession, target: Message, t: Translator, e: DomainError) -> None:
    """Nothing half-written: drop whatever the failed step flushed, then explain."""
    await session.rollback()
    await target.answer(t(e.key, **e.params))


async def _finish(session: AsyncSession, state: FSMContext) -> None:
    """Commit the step, then clear the conversation: the FSM storage writes through its own
    connection, which SQLite would block while this transaction holds the write lock."""
    await session.commit()
    await state.clear()


def _stale(item: SupervisionItem | None) -> DomainError:
    return svc.Conflict("supervision.err_stale", status=svc.status_label(item.status) if item else "-")


def _kb(t: Translator, rows: list[list[tuple[str, str]]]):
    return inline([[(t(label), data) for label, data in row] for row in rows])


# ---------------------------------------------------------------- rendering
async def render_item(session: AsyncSession, item: SupervisionItem, t: Translator, with_timeline: bool = True,
                      mask: bool = False) -> str:
    d = await export.summary(session, item, t.lang, mask=mask)
    text = t("supervision.item_card", number=item.number, title=item.title, area=item.area,
             place=d["place"], status=d["status"], agency=d["agency"], procuratorate=d["procuratorate"],
             deputies="、".join(d["participants"]), created=d["created"], description=d["description"][:600])
    if with_timeline:
        lines = [t("supervision.timeline_line", at=e["at"], who=e["who"], what=e["what"],
                   note=(" — " + e["note"][:200]) if e["note"] else "") for e in d["events"]]
        text += "\n" + t("supervision.timeline_header") + "\n" + "\n".join(lines)
    return text


def item_buttons(user: User, item: SupervisionItem, is_deputy: bool) -> list[list[tuple[str, str]]]:
    rows: list[list[tuple[str, str]]] = []
    cb = lambda a: SupCb(action=a, item_id=item.id).pack()  # noqa: E731
    if svc.is_handler(user, item):
        acts = set(svc.allowed_actions(item.status))
        row = []
        for a, label in (("accept", "btn_accept"), ("decline", "btn_decline"), ("clue", "btn_clue"),
                         ("file_case", "btn_file_case"), ("suggest", "btn_suggest"), ("reply", "btn_reply"),
                         ("litigate", "btn_litigate"), ("close", "btn_close")):
            if a in acts:
                row.append((f"supervision.{label}", cb(a)))
        if item.status == "review" and svc.is_supervisor(user, item):
            row = [("supervision.btn_review_reopen", cb("reopen")), ("supervision.btn_review_close", cb("close"))]
        elif item.status == "review":
            row = []
        if item.status in svc.NOTE_STATES:
            row.append(("supervision.btn_note", cb("note")))
        rows += [row[i:i + 3] for i in range(0, len(row), 3)]
    if is_deputy:
        row = []
        if item.status in svc.OPEN_STATES:
            row.append(("supervision.btn_urge", cb("urge")))
        if item.status == "declined" and not item.appealed:
            row.append(("supervision.btn_appeal", cb("appeal")))
        if item.status == "closed" and item.rating is None:
            row.append(("supervision.btn_rate", cb("rate")))
        if row:
            rows.append(row)
    rows.append([("supervision.btn_export_md", cb("md")), ("supervision.btn_export_pdf", cb("pdf"))])
    return rows


async def show_item(target: Message, session: AsyncSession, user: User, t: Translator, item: SupervisionItem
                    ) -> None:
    await svc.require_view(session, user, item)
    await audit_read(session, user, "supervision", item.number, channel="chat")
    is_dep = _role(user) == Role.deputy  # require_view above: a deputy here is attached to the item
    text = await render_item(session, item, t, mask=not svc.sees_personal_data(user))
    await target.answer(text[:4000], reply_markup=_kb(t, item_buttons(user, item, is_dep)))


async def show_list(target: Message, session: AsyncSession, user: User, t: Translator, *, queue: bool) -> None:
    if _role(user) == Role.citizen:
        await target.answer(t("supervision.err_forbidden"))
        return
    items = await svc.list_items(session, user, open_only=queue, limit=20)
    if not items:
        await target.answer(t("supervision.no_items"))
        return
    head = t("supervision.queue_header" if queue else "supervision.myitems_header", n=len(items))
    lines = []
    for i in items:
        lines.append(t("supervision.list_line", number=i.number, title=i.title,
                       status=svc.status_label(i.status, t.lang), updated=fmt_local(i.updated_at)))
        if not queue:  # 代表督: each item with its latest steps; the button opens the full timeline
            for e in (await svc.timeline(session, i))[-3:]:
                lines.append(t("supervision.list_step", at=fmt_local(e.at),
                               what=t(f"supervision.action_{e.action}")))
    lines.append(t("supervision.list_hint"))
    rows = [[(f"{i.number}", SupCb(action="open", item_id=i.id).pack())] for i in items]
    await target.answer((head + "\n" + "\n".join(lines))[:4000], reply_markup=inline(rows))


# ---------------------------------------------------------------- propose (代表提)
async def start_propose(target: Message, state: FSMContext, user: User, t: Translator) -> None:
    if _role(user) not in (Role.deputy, Role.admin):
        await target.answer(t("supervision.err_deputy_only"))
        return
    await state.clear()
    await state.set_state(Propose.title)
    await state.update_data(files=[])
    await target.answer(t("supervision.ask_title", max=svc.TITLE_MAX))


async def ask_county(target: Message, session: AsyncSession, t: Translator) -> None:
    counties = await users.children(session, None)
    rows = [[(c.name, PropCb(action="county", value=c.id).pack()) for c in counties[i:i + 3]]
            for i in range(0, len(counties), 3)]
    await target.answer(t("supervision.ask_place_county"), reply_markup=inline(rows))


async def summary_text(session: AsyncSession, data: dict, t: Translator) -> str:
    place = await users.jurisdiction(session, data["place_id"])
    return t("supervision.summary", title=data["title"], description=data["description"][:500],
             area=data["area"], place=place.name if place else "-", agency=data.get("agency") or t("common.none"),
             files=len(data.get("files", [])), cosigners=data.get("cosigners") or t("common.none"))


def make_router() -> Router:
    r = Router(name="supervision")

    # ------------------------------------------------ entry points
    @r.message(Command("propose"))
    async def cmd_propose(message: Message, state: FSMContext, user: User, t: Translator) -> None:
        await start_propose(message, state, user, t)

    @r.callback_query(MenuCb.filter(F.action == "sup_propose"))
    async def menu_propose(cq: CallbackQuery, state: FSMContext, user: User, t: Translator) -> None:
        await cq.answer()
        await start_propose(cq.message, state, user, t)

    @r.message(Command("myitems"))
    async def cmd_myitems(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        await show_list(message, session, user, t, queue=False)

    @r.callback_query(MenuCb.filter(F.action == "sup_myitems"))
    async def menu_myitems(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
        await cq.answer()
        await show_list(cq.message, session, user, t, queue=False)

    @r.message(Command("queue", "supqueue"), is_procurator)
    async def cmd_queue(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        await show_list(message, session, user, t, queue=True)

    @r.message(Command("supqueue"))
    async def cmd_queue_other(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        if _role(user) == Role.admin:
            await show_list(message, session, user, t, queue=True)
            return
        await message.answer(t("supervision.err_forbidden"))

    @r.callback_query(MenuCb.filter(F.action == "sup_queue"))
    async def menu_queue(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
        await cq.answer()
        await show_list(cq.message, session, user, t, queue=True)

    @r.message(Command("item"))
    async def cmd_item(message: Message, command: CommandObject, session: AsyncSession, user: User,
                       t: Translator) -> None:
        if not command.args:
            await message.answer(t("supervision.item_usage"))
            return
        try:
            item = await svc.get_by_number(session, command.args)
            await show_item(message, session, user, t, item)
        except DomainError as e:
            await _fail(session, message, t, e)

    @r.message(Command("follow"))
    async def cmd_follow(message: Message, command: CommandObject, session: AsyncSession, user: User,
                         t: Translator) -> None:
        if not command.args:
            await message.answer(t("supervision.follow_usage"))
            return
        try:
            item = await svc.follow(session, user, command.args)
            joined = await svc.can_view(session, user, item)
        except DomainError as e:
            await _fail(session, message, t, e)
            return
        await message.answer(t("supervision.follow_ok" if joined else "supervision.follow_requested",
                               number=item.number, title=item.title))

    async def stats(target: Message, session: AsyncSession, user: User, t: Translator) -> None:
        if _role(user) not in (Role.official, Role.admin, Role.procurator):
            await target.answer(t("supervision.err_forbidden"))
            return
        if place_scope(user) is None:  # no jurisdiction: no figures (never city-wide by default)
            await target.answer(t("common.err_out_of_jurisdiction"))
            return
        from backend.supervision.digest import _figures
        m = await metrics.compute(session, user.jurisdiction)
        await target.answer(t("supervision.stats", place=m["jurisdiction"] or "台州市", **_figures(m),
                              closed=m["closed"], clues=m["clues"], cases=m["cases_filed"]))

    @r.message(Command("supstats"))
    async def cmd_stats(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        await stats(message, session, user, t)

    @r.callback_query(MenuCb.filter(F.action == "sup_stats"))
    async def menu_stats(cq: CallbackQuery, session: AsyncSession, user: User, t: Translator) -> None:
        await cq.answer()
        await stats(cq.message, session, user, t)

    # ------------------------------------------------ the propose conversation
    @r.message(Propose.title, F.text)
    async def p_title(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            title = svc.check_title(message.text)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(title=title)
        await state.set_state(Propose.description)
        await message.answer(t("supervision.ask_description", max=svc.DESCRIPTION_MAX))

    @r.message(Propose.description, F.text)
    async def p_description(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            text = svc.check_description(message.text)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(description=text)
        await state.set_state(Propose.area)
        rows = [[(a, PropCb(action="area", value=i).pack()) for i, a in list(enumerate(svc.AREAS))[k:k + 2]]
                for k in range(0, len(svc.AREAS), 2)]
        await message.answer(t("supervision.ask_area"), reply_markup=inline(rows))

    @r.callback_query(Propose.area, PropCb.filter(F.action == "area"))
    async def p_area(cq: CallbackQuery, callback_data: PropCb, state: FSMContext, session: AsyncSession,
                     t: Translator) -> None:
        await cq.answer()
        if not 0 <= callback_data.value < len(svc.AREAS):
            await cq.message.answer(t("supervision.err_area"))
            return
        await state.update_data(area=svc.AREAS[callback_data.value])
        await state.set_state(Propose.county)
        await ask_county(cq.message, session, t)

    @r.callback_query(Propose.county, PropCb.filter(F.action == "county"))
    async def p_county(cq: CallbackQuery, callback_data: PropCb, state: FSMContext, session: AsyncSession,
                       t: Translator) -> None:
        await cq.answer()
        try:
            _place, county = await svc.check_place(session, callback_data.value)
        except DomainError as e:
            await cq.message.answer(t(e.key, **e.params))
            return
        towns = await users.children(session, county.id)
        await state.update_data(place_id=county.id)
        if not towns:
            await state.set_state(Propose.agency)
            await cq.message.answer(t("supervision.ask_agency"), reply_markup=_kb(t, [[(
                "supervision.btn_skip", PropCb(action="skip").pack())]]))
            return
        await state.set_state(Propose.township)
        rows = [[(t("supervision.btn_whole_county", county=county.name), PropCb(action="town", value=county.id).pack())]]
        rows += [[(j.name, PropCb(action="town", value=j.id).pack()) for j in towns[i:i + 3]]
                 for i in range(0, len(towns), 3)]
        await cq.message.answer(t("supervision.ask_place_township"), reply_markup=inline(rows))

    @r.callback_query(Propose.township, PropCb.filter(F.action == "town"))
    async def p_town(cq: CallbackQuery, callback_data: PropCb, state: FSMContext, session: AsyncSession,
                     t: Translator) -> None:
        await cq.answer()
        data = await state.get_data()
        try:
            _place, county = await svc.check_place(session, callback_data.value)
        except DomainError as e:
            await cq.message.answer(t(e.key, **e.params))
            return
        if county.id != data.get("place_id") and callback_data.value != data.get("place_id"):
            await cq.message.answer(t("supervision.err_place"))
            return
        await state.update_data(place_id=callback_data.value)
        await state.set_state(Propose.agency)
        await cq.message.answer(t("supervision.ask_agency"), reply_markup=_kb(t, [[(
            "supervision.btn_skip", PropCb(action="skip").pack())]]))

    async def to_evidence(target: Message, state: FSMContext, t: Translator) -> None:
        await state.set_state(Propose.evidence)
        await target.answer(t("supervision.ask_evidence", max=MAX_EVIDENCE), reply_markup=_kb(t, [[(
            "supervision.btn_done", PropCb(action="done").pack())]]))

    @r.message(Propose.agency, F.text)
    async def p_agency(message: Message, state: FSMContext, t: Translator) -> None:
        agency = message.text.strip()
        if not agency or len(agency) > 128:
            await message.answer(t("supervision.err_text_long", max=128))
            return
        await state.update_data(agency=agency)
        await to_evidence(message, state, t)

    @r.callback_query(Propose.agency, PropCb.filter(F.action == "skip"))
    async def p_agency_skip(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await state.update_data(agency=None)
        await to_evidence(cq.message, state, t)

    @r.message(Propose.evidence, F.photo | F.document)
    async def p_evidence(message: Message, state: FSMContext, t: Translator) -> None:
        files = (await state.get_data()).get("files", [])
        if len(files) >= MAX_EVIDENCE:
            await message.answer(t("supervision.err_too_many_files", max=MAX_EVIDENCE))
            return
        if message.photo:
            files.append({"file_id": message.photo[-1].file_id, "mime": "image/jpeg", "name": "photo.jpg"})
        else:
            doc = message.document
            if doc.file_size and doc.file_size > 20 * 1024 * 1024:
                await message.answer(t("common.err_file_too_large"))
                return
            files.append({"file_id": doc.file_id, "mime": doc.mime_type or "application/octet-stream",
                          "name": doc.file_name or "document"})
        await state.update_data(files=files)
        await message.answer(t("supervision.evidence_saved", n=len(files)), reply_markup=_kb(t, [[(
            "supervision.btn_done", PropCb(action="done").pack())]]))

    @r.callback_query(Propose.evidence, PropCb.filter(F.action == "done"))
    async def p_evidence_done(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await state.set_state(Propose.cosigners)
        await cq.message.answer(t("supervision.ask_cosigners"), reply_markup=_kb(t, [[(
            "supervision.btn_skip", PropCb(action="skip").pack())]]))

    async def to_confirm(target: Message, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        await state.set_state(Propose.confirm)
        text = await summary_text(session, await state.get_data(), t)
        await target.answer(text, reply_markup=_kb(t, [[("supervision.btn_confirm", PropCb(action="confirm").pack()),
                                                         ("supervision.btn_cancel", PropCb(action="cancel").pack())]]))

    @r.message(Propose.cosigners, F.text)
    async def p_cosigners(message: Message, state: FSMContext, session: AsyncSession, user: User,
                          t: Translator) -> None:
        try:
            found = await svc.resolve_cosigners(session, user, message.text)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(cosigners=" ".join(str(u.telegram_id) for u in found),
                                cosigner_names="、".join(u.name or str(u.telegram_id) for u in found))
        await message.answer(t("supervision.cosigners_ok", names="、".join(u.name or "-" for u in found)))
        await to_confirm(message, state, session, t)

    @r.callback_query(Propose.cosigners, PropCb.filter(F.action == "skip"))
    async def p_cosigners_skip(cq: CallbackQuery, state: FSMContext, session: AsyncSession, t: Translator) -> None:
        await cq.answer()
        await state.update_data(cosigners="")
        await to_confirm(cq.message, state, session, t)

    @r.callback_query(Propose.confirm, PropCb.filter(F.action == "cancel"))
    async def p_cancel(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await state.clear()
        await cq.message.answer(t("supervision.propose_cancelled"))

    @r.callback_query(Propose.confirm, PropCb.filter(F.action == "confirm"))
    async def p_confirm(cq: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, t: Translator,
                        ctx: Any) -> None:
        await cq.answer()
        data = await state.get_data()
        try:
            file_ids = []
            for f in data.get("files", []):
                blob = await cq.bot.download(f["file_id"])
                stored = await store_file(session, ctx.settings.files_dir, blob.read(), mime=f["mime"],
                                          filename=f["name"], uploaded_by=user.id)
                file_ids.append(stored.id)
            item = await svc.propose(session, user, svc.Draft(
                title=data.get("title", ""), description=data.get("description", ""), area=data.get("area", ""),
                place_id=data.get("place_id", 0), agency=data.get("agency"), file_ids=file_ids,
                cosigners=data.get("cosigners", "")))
        except DomainError as e:
            await _fail(session, cq.message, t, e)
            return
        await _finish(session, state)
        await cq.message.answer(t("supervision.created", number=item.number, due=fmt_local(item.acceptance_due)))

    # Anything else typed during the conversation gets a hint for the current step.
    @r.message(StateFilter(Propose.area, Propose.county, Propose.township, Propose.evidence, Propose.confirm))
    async def p_hint(message: Message, t: Translator) -> None:
        await message.answer(t("supervision.use_buttons"))

    @r.message(StateFilter(Propose.title, Propose.description, Propose.agency, Propose.cosigners))
    async def p_text_only(message: Message, t: Translator) -> None:
        await message.answer(t("supervision.text_only"))

    # ------------------------------------------------ item buttons
    @r.callback_query(SupCb.filter())
    async def on_item(cq: CallbackQuery, callback_data: SupCb, state: FSMContext, session: AsyncSession,
                      user: User, t: Translator) -> None:
        await cq.answer()
        a, iid = callback_data.action, callback_data.item_id
        msg = cq.message
        item = await session.get(SupervisionItem, iid) if iid else None
        try:
            if a == "open":
                await show_item(msg, session, user, t, await svc.get_item(session, iid))
            elif a == "accept":
                item = await svc.accept(session, user, iid)
                await msg.answer(t("supervision.done_accept", number=item.number))
            elif a == "clue":
                item = await svc.to_clue(session, user, iid)
                await msg.answer(t("supervision.done_clue", number=item.number))
            elif a == "file_case":
                item = await svc.file_case(session, user, iid)
                await msg.answer(t("supervision.done_file_case", number=item.number))
            elif a in ("decline", "note", "litigate", "close", "reopen"):
                item = await svc.get_item(session, iid)
                if a == "close" and item.status == "review":
                    if not svc.is_supervisor(user, item):
                        raise svc.Forbidden("supervision.err_supervisor_only")
                else:
                    svc.require_handler(user, item)
                if a == "note" and item.status not in svc.NOTE_STATES:
                    raise _stale(item)
                if a == "reopen" and not svc.is_supervisor(user, item):
                    raise svc.Forbidden("supervision.err_supervisor_only")
                check = {"reopen": "review_reopen", "close": "review_close" if item.status == "review" else "close"
                         }.get(a, a)
                if a != "note" and check not in svc.allowed_actions(item.status):
                    raise _stale(item)
                await state.set_state(Act.text)
                await state.update_data(op=a, item_id=iid)
                await msg.answer(t(f"supervision.ask_{a}", number=item.number))
            elif a == "appeal":
                item = await svc.get_item(session, iid)
                if item.proposer_id != user.id:
                    raise svc.Forbidden("supervision.err_forbidden")
                if item.appealed:
                    raise svc.Conflict("supervision.err_appealed_once")
                if "appeal" not in svc.allowed_actions(item.status):
                    raise _stale(item)
                await state.set_state(Act.text)
                await state.update_data(op="appeal", item_id=iid)
                await msg.answer(t("supervision.ask_appeal", number=item.number))
            elif a == "suggest":
                item = await svc.get_item(session, iid)
                svc.require_handler(user, item)
                if "suggest" not in svc.allowed_actions(item.status):
                    raise _stale(item)
                await state.set_state(Act.sugg_agency)
                await state.update_data(item_id=iid)
                await msg.answer(t("supervision.ask_sugg_agency", agency=item.agency or "-"))
            elif a == "reply":
                item = await svc.get_item(session, iid)
                svc.require_handler(user, item)
                if "reply" not in svc.allowed_actions(item.status):
                    raise _stale(item)
                await state.set_state(Act.reply_date)
                await state.update_data(item_id=iid)
                await msg.answer(t("supervision.ask_reply_date"))
            elif a == "urge":
                item = await svc.urge(session, user, iid)
                await msg.answer(t("supervision.urge_ok", number=item.number))
            elif a == "rate":
                item = await svc.get_item(session, iid)
                if item.status != "closed" or item.rating is not None:
                    raise _stale(item)
                await state.clear()
                await state.update_data(item_id=iid)
                await msg.answer(t("supervision.ask_rating", number=item.number), reply_markup=_kb(t, [[
                    ("supervision.rating_satisfied", SupCb(action="r_satisfied", item_id=iid).pack()),
                    ("supervision.rating_basic", SupCb(action="r_basic", item_id=iid).pack()),
                    ("supervision.rating_unsatisfied", SupCb(action="r_unsatisfied", item_id=iid).pack())]]))
            elif a == "r_nocomment":
                data = await state.get_data()
                if await state.get_state() != Act.rate_comment.state or data.get("item_id") != iid:
                    raise _stale(item)
                await state.clear()
                item = await svc.rate(session, user, iid, data["rating"], None)
                await msg.answer(t("supervision.rate_ok", rating=svc.rating_label(item.rating or data["rating"],
                                                                                   t.lang)))
            elif a.startswith("r_"):
                item = await svc.get_item(session, iid)
                if item.status != "closed" or item.rating is not None or a[2:] not in svc.RATINGS:
                    raise _stale(item)
                await state.set_state(Act.rate_comment)
                await state.update_data(item_id=iid, rating=a[2:])
                await msg.answer(t("supervision.ask_comment"), reply_markup=_kb(t, [[
                    ("supervision.btn_skip", SupCb(action="r_nocomment", item_id=iid).pack())]]))
            elif a in ("rect_yes", "rect_partly", "rect_no"):
                data = await state.get_data()
                if await state.get_state() != Act.reply_rectified.state or data.get("item_id") != iid:
                    raise _stale(item)
                s = await svc.record_reply(session, user, iid, svc.parse_date(data["reply_date"]),
                                           data["reply_content"], a[5:])
                await _finish(session, state)
                await msg.answer(t("supervision.done_reply", followup=fmt_local(s.followup_at)))
            elif a == "due_default":
                data = await state.get_data()
                if await state.get_state() != Act.sugg_due.state or data.get("item_id") != iid:
                    raise _stale(item)
                await _issue(msg, state, session, user, t, data, None)
            elif a in ("follow_ok", "follow_no"):  # item_id carries the request (participant) id
                item = await svc.decide_follow(session, user, iid, a == "follow_ok")
                await msg.answer(t("supervision.follow_decided", number=item.number))
            elif a in ("cosign", "cosign_no"):
                item = await svc.confirm_cosign(session, user, iid, a == "cosign")
                await msg.answer(t("supervision.cosign_ok" if a == "cosign" else "supervision.cosign_no_ok",
                                   number=item.number))
            elif a in ("md", "pdf"):
                item = await svc.get_item(session, iid)
                await svc.require_view(session, user, item)
                await audit_read(session, user, "supervision", item.number, channel="export", action="export",
                                 detail={"format": a})
                d = await export.summary(session, item, t.lang, mask=not svc.sees_personal_data(user))
                if a == "md":
                    data_ = export.to_markdown(d, t.lang).encode("utf-8")
                else:
                    import asyncio
                    data_ = await asyncio.to_thread(export.to_pdf, d, t.lang)
                await msg.answer_document(BufferedInputFile(data_, f"{item.number}.{a}"),
                                          caption=t("supervision.export_caption", number=item.number))
            else:
                raise _stale(item)
        except DomainError as e:
            await _fail(session, msg, t, e)

    async def _issue(msg: Message, state: FSMContext, session: AsyncSession, user: User, t: Translator,
                     data: dict, due) -> None:
        s = await svc.issue_suggestion(session, user, data["item_id"], data["agency"], data["content"], due)
        await _finish(session, state)
        await msg.answer(t("supervision.done_suggest", agency=s.agency, due=fmt_local(s.reply_due)))

    # ------------------------------------------------ free-text steps of handling
    @r.message(Act.text, F.text)
    async def act_text(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       t: Translator) -> None:
        data = await state.get_data()
        op, iid, text = data.get("op"), data.get("item_id", 0), message.text
        fn = {"decline": svc.decline, "note": svc.add_note, "litigate": svc.file_litigation, "close": svc.close,
              "reopen": svc.reopen, "appeal": svc.appeal}.get(op)
        if fn is None:
            await state.clear()
            await message.answer(t("common.stale_button"))
            return
        try:
            item = await fn(session, user, iid, text)
        except DomainError as e:
            await _fail(session, message, t, e)
            if e.key in ("supervision.err_text_empty", "supervision.err_text_long"):
                return  # ask again
            await state.clear()
            return
        await _finish(session, state)
        await message.answer(t(f"supervision.done_{op}", number=item.number))

    @r.message(Act.sugg_agency, F.text)
    async def sugg_agency(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            agency = svc.check_text(message.text, 128)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(agency=agency)
        await state.set_state(Act.sugg_content)
        await message.answer(t("supervision.ask_sugg_content"))

    @r.message(Act.sugg_content, F.text)
    async def sugg_content(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            content = svc.check_text(message.text)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(content=content)
        await state.set_state(Act.sugg_due)
        iid = (await state.get_data())["item_id"]
        await message.answer(t("supervision.ask_sugg_due", months=svc.REPLY_MONTHS), reply_markup=_kb(t, [[
            ("supervision.btn_default_due", SupCb(action="due_default", item_id=iid).pack())]]))

    @r.message(Act.sugg_due, F.text)
    async def sugg_due(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       t: Translator) -> None:
        try:
            due = svc.parse_date(message.text)
            await _issue(message, state, session, user, t, await state.get_data(), due)
        except DomainError as e:
            await _fail(session, message, t, e)

    @r.message(Act.reply_date, F.text)
    async def reply_date(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            d = svc.parse_date(message.text)
            if d > to_local(svc.now()).date():
                raise DomainError("supervision.err_date_future")
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(reply_date=d.isoformat())
        await state.set_state(Act.reply_content)
        await message.answer(t("supervision.ask_reply_content"))

    @r.message(Act.reply_content, F.text)
    async def reply_content(message: Message, state: FSMContext, t: Translator) -> None:
        try:
            content = svc.check_text(message.text)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await state.update_data(reply_content=content)
        await state.set_state(Act.reply_rectified)
        iid = (await state.get_data())["item_id"]
        await message.answer(t("supervision.ask_rectified"), reply_markup=_kb(t, [[
            ("supervision.rectified_yes", SupCb(action="rect_yes", item_id=iid).pack()),
            ("supervision.rectified_partly", SupCb(action="rect_partly", item_id=iid).pack()),
            ("supervision.rectified_no", SupCb(action="rect_no", item_id=iid).pack())]]))

    @r.message(Act.rate_comment, F.text)
    async def rate_comment(message: Message, state: FSMContext, session: AsyncSession, user: User,
                           t: Translator) -> None:
        data = await state.get_data()
        try:
            await svc.rate(session, user, data["item_id"], data["rating"], message.text)
        except DomainError as e:
            await _fail(session, message, t, e)
            await state.clear()
            return
        await _finish(session, state)
        await message.answer(t("supervision.rate_ok", rating=svc.rating_label(data["rating"], t.lang)))

    @r.message(StateFilter(Act.text, Act.sugg_agency, Act.sugg_content, Act.sugg_due, Act.reply_date,
                           Act.reply_content, Act.rate_comment))
    async def act_text_only(message: Message, t: Translator) -> None:
        await message.answer(t("supervision.text_only"))

    @r.message(StateFilter(Act.reply_rectified))
    async def act_buttons_only(message: Message, t: Translator) -> None:
        await message.answer(t("supervision.use_buttons"))

    return r
