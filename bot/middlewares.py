"""Update middlewares: dedupe → errors → ignore bots/channels → throttle → DB session + user + i18n."""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from backend.auth import ratelimit
from backend.core.errors import DomainError
from backend.core.i18n import Translator, gettext, normalize_language
from backend.core.masking import mask_text
from backend.users.cache import UserCache
from backend.users.service import get_or_create_user
from bot.fsm_storage import SQLStorage
from bot.offline import BOT_ID as OFFLINE_BOT_ID

log = logging.getLogger("hehe.bot")
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


@asynccontextmanager
async def own_statements(ctx: Any) -> AsyncIterator[Any]:
    """A connection for a statement or two of a middleware's own, committed before the handler
    runs: on PostgreSQL in autocommit (each statement is its own durable transaction, without the
    BEGIN and COMMIT round trips), on SQLite committed at the end (it holds SQLite's write lock
    only from its first write to that commit). A plain connection: no ORM session to set up."""
    async with ctx.engine.connect() as conn:
        if ctx.engine.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
        await conn.commit()


class DedupeMiddleware(BaseMiddleware):
    """A Telegram update handled before — by this replica or another — is ignored: Telegram
    re-delivers after a timeout, with a webhook perhaps to another replica.

    The update is marked handled in the database (``seen_updates``) when its handling returns, so
    a replica that dies while handling it leaves it to Telegram's re-delivery: at least once,
    never lost. Meanwhile a re-delivery to another replica waits behind the person lock (which
    aiogram takes around these middlewares, bot/isolation.py) and then finds the mark; in this
    process the set of updates in flight drops it.

    The offline channels' updates (web chat, terminal chat, script replay) are made by this
    process and never re-delivered; their ids are counters of each process, which another
    replica's channel repeats, so they are not looked up (a shared filter would drop them)."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.inflight: set[tuple[int, int]] = set()

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        bot = data["bot"]
        if bot.id == OFFLINE_BOT_ID:
            return await handler(event, data)
        key = (bot.id, event.update_id)
        if key in self.inflight:
            log.info("duplicate update %s ignored (in flight)", event.update_id)
            return None
        self.inflight.add(key)
        try:
            async with own_statements(self.ctx) as db:
                if await ratelimit.seen_update(db, *key):
                    log.info("duplicate update %s ignored", event.update_id)
                    return None
            result = await handler(event, data)
            async with own_statements(self.ctx) as db:
                await ratelimit.mark_update(db, *key)
            return result
        finally:
            self.inflight.discard(key)


def _chat_id(event: Update) -> int | None:
    if event.message:
        return event.message.chat.id
    if event.callback_query and event.callback_query.message:
        return event.callback_query.message.chat.id
    if event.callback_query:
        return event.callback_query.from_user.id
    return None


class ErrorMiddleware(BaseMiddleware):
    """Nothing escapes: log with a correlation id, tell the person politely that nothing was lost."""

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        except Exception as e:  # noqa: BLE001
            cid = uuid.uuid4().hex[:8]
            # Tracebacks carry user input: mask phones / ID numbers before they reach the log.
            log.error("update %s failed [cid=%s]: %s\n%s", event.update_id, cid, mask_text(str(e)),
                      mask_text(traceback.format_exc()))
            chat_id = _chat_id(event)
            lang = data.get("t").lang if data.get("t") else "zh"
            try:
                if event.callback_query:
                    await event.callback_query.answer()
                if chat_id is not None:
                    await data["bot"].send_message(chat_id, gettext(lang, "common.error", cid=cid))
            except Exception:  # noqa: BLE001 - the channel itself is down; the log has it
                log.warning("could not tell chat %s about error %s", chat_id, cid)
            return None


class IgnoreBotsMiddleware(BaseMiddleware):
    """Updates from bots, channels and groups are deliberately ignored."""

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        chat = data.get("event_chat")
        if user is None or user.is_bot:
            return None
        if chat is not None and chat.type != "private":
            return None
        return await handler(event, data)


class ThrottleMiddleware(BaseMiddleware):
    """At most ``per_minute`` updates of a person a minute (a fixed window); the first update
    dropped in a minute gets one polite note (a second counter, one a minute).

    On PostgreSQL the counters are in the database (backend.auth.ratelimit.hit), shared by every
    replica: an update that passes costs one short statement. SQLite is served by one process,
    so the same windows are counted in memory (ratelimit.LocalCounters): a write per update there
    would share nothing and cost about as much as the rest of the update (docs/benchmarks.md)."""

    def __init__(self, ctx: Any, per_minute: int):
        self.ctx = ctx
        self.per_minute = per_minute
        self.local = ratelimit.LocalCounters() if ctx.engine.dialect.name == "sqlite" else None

    async def _count(self, hit: Callable[[str, int, int], Awaitable[bool]], person: int) -> tuple[bool, bool]:
        """(the update passes, the person is to get the note)"""
        allowed = await hit(f"flood:{person}", ratelimit.MINUTE, self.per_minute)
        return allowed, not allowed and await hit(f"flood-note:{person}", ratelimit.MINUTE, 1)

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        user = data["event_from_user"]
        if self.local is not None:
            allowed, note = await self._count(self.local.hit, user.id)
        else:
            async with own_statements(self.ctx) as db:
                allowed, note = await self._count(functools.partial(ratelimit.hit, db), user.id)
        if allowed:
            return await handler(event, data)
        chat_id = _chat_id(event)
        if note and chat_id is not None:
            lang = "en" if (user.language_code or "").startswith("en") else "zh"
            await data["bot"].send_message(chat_id, gettext(lang, "common.throttled"))
        return None


async def reply_domain_error(event: Update, err: DomainError, t: Translator, bot: Any) -> None:
    """The polite answer to a refused action: an alert on the pressed button, a reply to a message."""
    text = t(err.key, **err.params)
    if event.callback_query is not None:
        await event.callback_query.answer(text, show_alert=True)
    elif event.message is not None:
        await event.message.answer(text)
    elif (chat_id := _chat_id(event)) is not None:
        await bot.send_message(chat_id, text)


# C0 controls except tab/newline/carriage return, DEL, C1 controls, and non-characters: a NUL
# had passed every form step and then failed the commit on PostgreSQL forever.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def has_control_chars(text: str | None) -> bool:
    return bool(text) and _CONTROL.search(text) is not None


class ControlCharsMiddleware(BaseMiddleware):
    """A message whose text or caption carries control characters is refused with a polite
    message before anything reads it; the person's conversation stays where it was."""

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        msg = event.message
        if msg is not None and (has_control_chars(msg.text) or has_control_chars(msg.caption)):
            lang = normalize_language(msg.from_user.language_code if msg.from_user else None)
            await data["bot"].send_message(msg.chat.id, gettext(lang, "notify.control_chars"))
            return None
        return await handler(event, data)


async def _writing(session: Any) -> bool:
    """Has ``session`` written on SQLite already (its connection holds the write lock)?"""
    if not session.in_transaction():
        return False
    raw = await (await session.connection()).get_raw_connection()
    return bool(raw.driver_connection.in_transaction)


class DbUserMiddleware(BaseMiddleware):
    """One DB session — and one transaction — per update: loads (or creates, as a citizen)
    the user, injects ``session``, ``user``, ``t`` and ``ctx``, and commits what the handler
    did together with the conversation's FSM step when the handler returns.

    A :class:`~backend.core.errors.DomainError` raised by a handler (or the service it called)
    rolls the transaction back — the FSM step included — and becomes the polite reply
    ``t(err.key, **err.params)``: handlers need no try/except. Any other exception rolls back
    and goes on to :class:`ErrorMiddleware`.

    Recently seen users come from a :class:`~backend.users.cache.UserCache` (no query)."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.cache = UserCache(ttl=ctx.settings.user_cache_seconds)
        # SQLite has one writer at a time (see _commit); None on other databases.
        self.commit_queue = asyncio.Lock() if ctx.engine.dialect.name == "sqlite" else None

    async def _commit(self, session: Any, fsm_writes: Any) -> None:
        """Commit the update. On SQLite, an update whose writes all happen at the commit (the
        conversation step, changes flushed only now) queues here for the single write lock,
        instead of meeting the others in SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms
        between tries (8 form steps in flight: 110–121 → 629–906 /s, docs/benchmarks.md). An update that
        already holds SQLite's write lock commits without queuing, so the queue never waits for
        it: nothing can deadlock. An update with nothing to write does not queue at all."""
        if self.commit_queue is None:
            if fsm_writes is not None and fsm_writes.only_write(session):
                # PostgreSQL: a conversation step that is the update's only write is one statement,
                # which the server commits by itself (autocommit: the same single durable
                # transaction, without the BEGIN and COMMIT round trips).
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            await session.commit()
            return
        writes_now = bool(session.new or session.dirty or session.deleted or (fsm_writes is not None and fsm_writes.changes))
        if not writes_now or await _writing(session):
            await session.commit()
            return
        async with self.commit_queue:
            await session.commit()

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        tg_user = data["event_from_user"]
        channel = getattr(data["bot"].session, "channel_name", "telegram")
        storage = data.get("fsm_storage")
        writes = storage.update_writes() if isinstance(storage, SQLStorage) else nullcontext(None)
        version = self.cache.version(tg_user.id)
        with writes as fsm_writes:
            async with self.ctx.sm() as session:
                if fsm_writes is not None:
                    fsm_writes.bind(session)
                user, created = await get_or_create_user(
                    session, tg_user.id, name=tg_user.full_name, username=tg_user.username,
                    language_code=tg_user.language_code, channel=channel, cache=self.cache)
                if created or session.dirty:  # keep a new user even if the handler fails
                    await session.commit()
                if not user.active:  # deactivated (hehe users deactivate): nothing but this note
                    chat_id = _chat_id(event)
                    if chat_id is not None:
                        await data["bot"].send_message(chat_id, gettext(user.language, "users.deactivated"))
                    self.cache.settle(tg_user.id, user, version)
                    return None
                data.update(session=session, user=user, t=Translator(user.language), ctx=self.ctx)
                try:
                    result = await handler(event, data)
                    # what the handler did + the conversation's step, in one transaction
                    await self._commit(session, fsm_writes)
                except BaseException as err:
                    await session.rollback()
                    self.cache.invalidate(tg_user.id)
                    if fsm_writes is not None:
                        fsm_writes.forget()
                    if not isinstance(err, DomainError):
                        raise
                    # A rule said no: nothing the handler did is kept, the person is told why.
                    await reply_domain_error(event, err, data["t"], data["bot"])
                    return None
        self.cache.settle(tg_user.id, user, version)
        self.ctx.deliverer.wake.set()  # notifications the handler queued go out now
        return result
