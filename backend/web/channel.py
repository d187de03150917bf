"""The web channel: the offline channel (same Dispatcher path, bot session named ``web``)
whose transcript and files are persisted — messages in ``web_messages``, files in the object
store under ``web-files/`` (backend/core/storage.py) with who may fetch each in ``web_files``. The database is the
transcript: every page read and every long poll reads it, so any replica serves any person
(issue #19) and history survives a restart. Memory holds only the bot's recent messages of the
most recently active people (settings.web_cache_users), to answer edits and button presses;
everything older than settings.web_retention_days is deleted.

Writes:

* **PostgreSQL** (replicas may share the database): each line is written at once, in a
  transaction that takes the person's transcript lock (``pg_advisory_xact_lock``), numbers it
  from the shared sequence ``web_messages_seq`` — so one person's lines commit in the order of
  their numbers and a poller reading "after n" misses none — and notifies ``hehe_web`` with the
  person's chat id. Every replica listens (backend.core.listen) and wakes that person's long
  polls. Message ids come in blocks from ``web_message_id_blocks``. A line delivered from the
  outbox carries the delivery's key: a delivery repeated after a replica died mid-send is
  stored once.
* **SQLite** (one process): lines are numbered in memory, queued and written outside the bot's
  handler transactions (:meth:`persist`, called before every read, by the web routes after each
  step and by :meth:`run` in the background): a second writer inside a handler would wait for
  the handler's own write lock. Long polls are woken in the process.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
from collections import OrderedDict, deque
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.methods import TelegramMethod
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Update
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth.models import WebFile, WebMessage
from backend.core.clock import now
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.core.storage import LocalStore, ObjectStore
from backend.notify.delivery import DELIVERY_KEY
from bot.offline import OFFLINE_TOKEN, OfflineChannel, OfflineSession, OutMessage, StoredBlob

log = logging.getLogger("hehe.web")
KEEP_PER_PERSON = 200  # messages of one person kept in memory
FILE_ID = re.compile(r"^off-[0-9a-f]{32}$")
UPDATE_ID_BASE = 2 ** 40
NOTIFY_CHANNEL = "hehe_web"
ID_BLOCK = 1000  # message ids taken at a time from web_message_id_blocks (migration auth_0002)
REREAD_SECONDS = 5.0  # a long poll reads again this often when a notification could be missed
EDITS = ("editMessageText", "editMessageReplyMarkup", "editMessageCaption", "deleteMessage")
class _MineLog:
    """Stands in for OfflineChannel.inbound: what a person sends is recorded (and persisted),
    not accumulated in memory."""

    def __init__(self, channel: WebChannel):
        self.channel = channel

    def __getitem__(self, chat_id: int) -> _MineLog._One:
        return _MineLog._One(self.channel, chat_id)

    class _One:
        def __init__(self, channel: WebChannel, chat_id: int):
            self.channel, self.chat_id = channel, chat_id

        def append(self, entry: dict) -> None:
            self.channel.record_mine(self.chat_id, entry)


def out_body(m: OutMessage) -> dict:
    return {"text": m.text, "inline": [[list(b) for b in row] for row in m.inline],
            "reply_keyboard": m.reply_keyboard, "photo": m.photo, "document": m.document,
            "edited": m.edited, "deleted": m.deleted, "toast": m.toast}


def out_message(chat_id: int, message_id: int, seq: int, body: dict) -> OutMessage:
    inline = [[(l, d) for l, d in row] for row in body.get("inline") or []]
    m = OutMessage(chat_id=chat_id, message_id=message_id, text=body.get("text") or "",
                   reply_keyboard=body.get("reply_keyboard"), photo=body.get("photo"), document=body.get("document"),
                   edited=bool(body.get("edited")), deleted=bool(body.get("deleted")), toast=bool(body.get("toast")),
                   seq=seq, recorded=True)
    if inline:
        m.keep_keyboard(InlineKeyboardMarkup(inline_keyboard=[
            [InlineKeyboardButton(text=l, url=d) if d.startswith(("http://", "https://"))
             else InlineKeyboardButton(text=l, callback_data=d) for l, d in row] for row in inline]))
    return m


def page_item(row: WebMessage) -> dict:
    """A stored line as the page shows it."""
    body = json.loads(row.body)
    if row.mine:
        return {"mine": True, "seq": row.seq, "at": row.at.isoformat(),
                "text": body.get("text") or body.get("press") or "",
                **({"photo_id": body["photo"]} if body.get("photo") else {}),
                **({"document": body["document"]} if body.get("document") else {}),
                **({"location": body["location"]} if body.get("location") else {}),
                **({"press": True, "message_id": body.get("message_id", 0)} if body.get("press") else {})}
    m = out_message(row.chat_id, row.message_id, row.seq, body)
    return {**m.as_json(), "seq": row.seq, "mine": False, "deleted": m.deleted, "at": row.at.isoformat(),
            "inline": [[{"text": l, "data": d} for l, d in row_] for row_ in m.inline]}


def transcript_lock(chat_id: int) -> int:
    """The advisory-lock key of one person's transcript (a name space of its own)."""
    h = hashlib.blake2b(f"hehe-web:{chat_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


class _Ids:
    """Message ids from blocks reserved in the database (PostgreSQL): unique across replicas."""

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self.sm = sm
        self._ranges: deque[range] = deque()
        self._left = 0
        self._lock = asyncio.Lock()

    def __iter__(self) -> _Ids:
        return self

    def __next__(self) -> int:
        while self._ranges and not self._ranges[0]:
            self._ranges.popleft()
        if not self._ranges:
            raise RuntimeError("no message ids reserved (top_up not awaited)")
        r = self._ranges[0]
        self._ranges[0] = r[1:]
        self._left -= 1
        return r[0]

    async def top_up(self) -> None:
        """Keep at least half a block in hand (an update uses a few ids; this runs before each)."""
        if self._left >= ID_BLOCK // 2:
            return
        async with self._lock:
            if self._left >= ID_BLOCK // 2:
                return
            async with session_scope(self.sm) as s:
                block = await s.scalar(text("SELECT nextval('web_message_id_blocks')"))
            self._ranges.append(range(block * ID_BLOCK, (block + 1) * ID_BLOCK))
            self._left += ID_BLOCK


class WebSession(OfflineSession):
    """The offline session with the transcript in the database: an edit or a deletion acts on
    the message as stored now (another replica may have changed it); on PostgreSQL new
    messages take their ids from the shared blocks."""

    channel: WebChannel

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        ch = self.channel
        if method.__api_method__ in EDITS:
            await ch.fetch(int(method.chat_id), int(method.message_id))  # type: ignore[attr-defined]
        elif ch.shared:
            await ch.ids.top_up()
        return await super().make_request(bot, method, timeout)


class WebChannel(OfflineChannel):
    def __init__(self, sm: async_sessionmaker[AsyncSession], settings: Settings,
                 store: ObjectStore | None = None) -> None:
        super().__init__()
        self.session = WebSession(self)
        self.session.channel_name = "web"
        self.bot = Bot(OFFLINE_TOKEN, session=self.session)
        self.sm = sm
        self.settings = settings
        self.shared = make_url(settings.db_url).get_backend_name() == "postgresql"
        self.store: ObjectStore = store or LocalStore(settings.data_dir)  # files: web-files/<2>/<id>
        self.inbound = _MineLog(self)  # type: ignore[assignment]
        self.out: OrderedDict[int, list[OutMessage]] = OrderedDict()  # type: ignore[assignment]
        self.ids = _Ids(sm)
        self._pending_out: dict[tuple[int, int, int], tuple[OutMessage, datetime]] = {}
        self._pending_mine: dict[int, list[dict]] = {}
        self._pending_files: dict[tuple[str, int], tuple[str, str]] = {}
        self._file_meta: OrderedDict[str, tuple[str, str]] = OrderedDict()  # file id → (mime, name)
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._last = 0
        self._write = asyncio.Lock()
        self.listener: Any = None  # backend.core.listen.Listener on PostgreSQL
        self.closing = False  # the server is stopping: long polls answer at once

    async def start(self) -> None:
        """Continue the ids and change counter where the stored transcript ends (SQLite), or
        reserve ids and listen for other replicas' lines (PostgreSQL)."""
        # Update ids of this process only (every replica counts the same): the duplicate filter
        # looks up Telegram's updates only (bot.middlewares.DedupeMiddleware). Counted from far
        # away from the terminal channel's (same bot id, from 1), so a log tells them apart.
        self._update_ids = itertools.count(UPDATE_ID_BASE)
        if self.shared:
            self._message_ids = self.ids  # type: ignore[assignment]
            await self.ids.top_up()
            return
        async with self.sm() as s:
            top_seq = await s.scalar(select(func.max(WebMessage.seq))) or 0
            top_mid = await s.scalar(select(func.max(WebMessage.message_id))) or 0
        self._seq = itertools.count(top_seq + 1)
        self._message_ids = itertools.count(top_mid + 1)
        self._last = top_seq

    async def listen(self) -> None:
        """PostgreSQL: wake this process's long polls for lines other replicas write."""
        if not self.shared or self.listener is not None:
            return
        from backend.core.leader import asyncpg_dsn
        from backend.core.listen import Listener

        self.listener = Listener(asyncpg_dsn(self.settings.db_url), NOTIFY_CHANNEL,
                                 lambda chat: self._wake(int(chat)), self._wake_all)
        await self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        await self.persist()

    # ------------------------------------------------------------- memory (a bounded cache)
    def _list(self, chat_id: int) -> list[OutMessage]:
        if chat_id not in self.out:
            self.out[chat_id] = []
        self.out.move_to_end(chat_id)
        while len(self.out) > max(1, self.settings.web_cache_users):
            old, _msgs = self.out.popitem(last=False)
            self.reply_keyboards.pop(old, None)
            self.profiles.pop(old, None)
        return self.out[chat_id]

    def set_profile(self, user_id: int, name: str | None = None, language_code: str | None = None) -> None:
        self._list(user_id)  # the person becomes the most recent (the oldest one is forgotten)
        super().set_profile(user_id, name=name, language_code=language_code)

    def _remember(self, m: OutMessage) -> None:
        msgs = self._list(m.chat_id)
        if not m.toast:
            msgs[:] = [x for x in msgs if x.message_id != m.message_id]
        msgs.append(m)
        if len(msgs) > KEEP_PER_PERSON:
            del msgs[:-KEEP_PER_PERSON]

    async def fetch(self, chat_id: int, message_id: int) -> OutMessage | None:
        """The bot's message ``message_id`` as stored now (its buttons, text, deleted or not)."""
        if not self.shared:  # one process: what it remembers is current
            m = self.find(chat_id, message_id)
            if m is not None:
                return m
        async with self.sm() as s:
            row = await s.scalar(select(WebMessage).where(
                WebMessage.chat_id == chat_id, WebMessage.message_id == message_id,
                WebMessage.mine.is_(False)).order_by(WebMessage.seq.desc()).limit(1))
        if row is None:
            return self.find(chat_id, message_id)
        m = out_message(chat_id, row.message_id, row.seq, json.loads(row.body))
        self._remember(m)
        return m

    # ------------------------------------------------------------- waking long polls
    def _wake(self, chat_id: int) -> None:
        for ev in self._waiters.get(chat_id, ()):
            ev.set()

    def release_waiters(self) -> None:
        """The server is stopping: every long poll answers now with what it has (and new ones
        do not wait), so no connection holds the shutdown."""
        self.closing = True
        self._wake_all()

    def _wake_all(self) -> None:
        for evs in self._waiters.values():
            for ev in evs:
                ev.set()

    async def history(self, chat_id: int, since_seq: int = 0) -> tuple[int, list[dict]]:
        """What the page shows after ``since_seq`` (the bot's messages and the person's own, in
        order, the latest 2×KEEP_PER_PERSON at most), and the number to read after next."""
        await self.persist()  # SQLite: what is queued (PostgreSQL: written already)
        async with self.sm() as s:
            rows = list(await s.scalars(select(WebMessage).where(
                WebMessage.chat_id == chat_id, WebMessage.seq > since_seq)
                .order_by(WebMessage.seq.desc()).limit(2 * KEEP_PER_PERSON)))
        rows.reverse()
        items = [i for i in map(page_item, rows) if not (i.get("deleted") and since_seq == 0)]
        return max([since_seq] + [r.seq for r in rows]), items

    async def wait_history(self, chat_id: int, since_seq: int, timeout: float) -> tuple[int, list[dict]]:
        """:meth:`history`, waiting up to ``timeout`` seconds for something new (a long poll):
        woken by a line written for this person here or, on PostgreSQL, on any replica."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            ev = asyncio.Event()
            self._waiters.setdefault(chat_id, set()).add(ev)  # before reading: no wake is missed
            try:
                last, items = await self.history(chat_id, since_seq)
                left = end - loop.time()
                if items or left <= 0 or self.closing:
                    return last, items
                listening = self.listener is not None and self.listener.connected.is_set()
                try:
                    await asyncio.wait_for(ev.wait(), left if listening or not self.shared else min(left, REREAD_SECONDS))
                except asyncio.TimeoutError:
                    pass
            finally:
                evs = self._waiters.get(chat_id)
                if evs is not None:
                    evs.discard(ev)
                    if not evs:
                        del self._waiters[chat_id]

    # ------------------------------------------------------------- recording
    async def _record(self, msg: OutMessage) -> OutMessage:
        first = not msg.recorded
        if first:
            msg.recorded = True
            self._remember(msg)
        for fid in (msg.photo, msg.document):
            if fid and fid not in self._file_meta:
                await self._meta(fid)  # a file kept earlier (or by another replica): its type and name
        grants = {(fid, msg.chat_id): meta for fid in (msg.photo, msg.document)
                  if fid and (meta := self._grant_meta(fid)) is not None}
        if self.shared:
            dedupe = DELIVERY_KEY.get() if first and not msg.toast else None
            await self._write_shared(msg.chat_id, outs=[(msg, dedupe)], grants=grants)
            return msg
        msg.seq = next(self._seq)
        self._last = msg.seq
        self._pending_out[(msg.chat_id, msg.message_id, msg.seq if msg.toast else 0)] = (msg, now())
        self._pending_files.update(grants)
        self._wake(msg.chat_id)
        return msg

    async def press_callback(self, user_id: int, m: OutMessage, data: str, text: str = "") -> Any:
        self._pressed = m.message_id  # recorded with the press, so the page keeps its buttons used
        return await super().press_callback(user_id, m, data, text)

    async def feed(self, update: Update) -> Any:
        if self.shared:
            from bot.middlewares import _chat_id

            chat = _chat_id(update)
            if chat is not None:  # the person's own line is stored (and numbered) before the replies
                await self._write_shared(chat, mine=self._pending_mine.pop(chat, []),
                                         grants=self._pop_grants(chat))
            await self.ids.top_up()
        return await super().feed(update)

    def record_mine(self, chat_id: int, entry: dict) -> None:
        if "press" in entry:
            entry = {**entry, "message_id": getattr(self, "_pressed", 0)}
        item = {**entry, "at": now()}
        if entry.get("photo") and (meta := self._grant_meta(entry["photo"])) is not None:
            self._pending_files[(entry["photo"], chat_id)] = meta
        if not self.shared:
            item["seq"] = self._last = next(self._seq)
            self._wake(chat_id)
        self._pending_mine.setdefault(chat_id, []).append(item)

    def _grant_meta(self, file_id: str) -> tuple[str, str] | None:
        return self._file_meta.get(file_id)  # only files that are kept (save_file, _meta)

    def _pop_grants(self, chat_id: int) -> dict[tuple[str, int], tuple[str, str]]:
        return {k: self._pending_files.pop(k) for k in [k for k in self._pending_files if k[1] == chat_id]}

    def last_seq(self) -> int:
        return self._last

    # ------------------------------------------------------------- files (the object store)
    @staticmethod
    def _key(file_id: str) -> str:
        return f"web-files/{file_id[4:6]}/{file_id}"

    def _remember_file(self, file_id: str, mime: str, name: str) -> tuple[str, str]:
        self._file_meta[file_id] = meta = (mime, name)
        while len(self._file_meta) > 10_000:  # the recent ones are enough: _record reads the rest
            self._file_meta.popitem(last=False)
        return meta

    async def _meta(self, file_id: str) -> tuple[str, str] | None:
        """(mime, name) of a kept file; None when there is no such file."""
        if not FILE_ID.match(file_id or ""):
            return None
        raw = await self.store.get(self._key(file_id) + ".json")
        try:
            meta = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(meta, dict):
            return None
        return self._remember_file(file_id, meta.get("mime", "application/octet-stream"), meta.get("name", "file"))

    async def save_file(self, data: bytes, mime: str = "application/octet-stream", name: str = "file") -> str:
        file_id = "off-" + hashlib.sha256(data).hexdigest()[:32]
        if not await self.store.exists(self._key(file_id)):
            await self.store.put(self._key(file_id), data)
        await self.store.put(self._key(file_id) + ".json", json.dumps({"mime": mime, "name": name[:200]}).encode())
        self._remember_file(file_id, mime, name[:200])
        return file_id

    def put_file(self, data: bytes, mime: str = "application/octet-stream", name: str = "file") -> str:
        raise NotImplementedError("the web channel keeps files in the object store: await save_file()")

    def get_file(self, file_id: str) -> StoredBlob | None:
        raise NotImplementedError("the web channel keeps files in the object store: await load_file()")

    async def load_file(self, file_id: str) -> StoredBlob | None:
        meta = await self._meta(file_id)
        if meta is None:
            return None
        data = await self.store.get(self._key(file_id))
        if data is None:
            return None
        return StoredBlob(data, *meta)

    async def may_fetch(self, chat_id: int, file_id: str) -> bool:
        """Only the people a file was sent to, or who sent it, may fetch it."""
        if not FILE_ID.match(file_id or ""):
            return False
        await self.persist()
        async with self.sm() as s:
            return bool(await s.scalar(select(WebFile.id).where(WebFile.file_id == file_id,
                                                                WebFile.chat_id == chat_id)))

    # ------------------------------------------------------------- persistence
    async def persist(self) -> None:
        """Write what is queued (SQLite; on PostgreSQL only what was recorded outside an update)."""
        if self.shared:
            for chat in {*self._pending_mine, *(c for _f, c in self._pending_files)}:
                await self._write_shared(chat, mine=self._pending_mine.pop(chat, []), grants=self._pop_grants(chat))
            return
        async with self._write:
            if not (self._pending_out or self._pending_mine or self._pending_files):
                return
            outs, self._pending_out = self._pending_out, {}
            mine, self._pending_mine = self._pending_mine, {}
            files, self._pending_files = self._pending_files, {}
            try:
                async with session_scope(self.sm) as s:
                    await self._write_rows(s, outs, mine, files)
            except Exception:
                # Put them back: they are written with the next batch.
                self._pending_out = {**outs, **self._pending_out}
                for chat, items in mine.items():
                    self._pending_mine[chat] = items + self._pending_mine.get(chat, [])
                self._pending_files = {**files, **self._pending_files}
                raise

    async def _write_rows(self, s: AsyncSession, outs, mine, files) -> None:
        for m, at in outs.values():
            await self._put_out(s, m, m.seq, at)
        for chat_id, items in mine.items():
            for e in items:
                self._put_mine(s, chat_id, e, e["seq"])
        await self._put_grants(s, files)

    async def _write_shared(self, chat_id: int, *, outs: list[tuple[OutMessage, str | None]] = (),  # type: ignore[assignment]
                            mine: list[dict] = (), grants: dict | None = None) -> None:  # type: ignore[assignment]
        """PostgreSQL: store lines of one person now, numbered in commit order, and notify."""
        if not (outs or mine or grants):
            return
        nextval = text("SELECT nextval('web_messages_seq')")
        async with session_scope(self.sm) as s:
            await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": transcript_lock(chat_id)})
            for e in mine:
                self._put_mine(s, chat_id, e, await s.scalar(nextval))
            for m, dedupe in outs:
                if dedupe is not None:
                    done = await s.scalar(select(WebMessage.seq).where(WebMessage.dedupe == dedupe))
                    if done is not None:  # delivered before a replica died: not twice
                        m.seq = done
                        continue
                m.seq = await s.scalar(nextval)
                await self._put_out(s, m, m.seq, now(), dedupe=dedupe)
            await self._put_grants(s, grants or {})
            await s.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": str(chat_id)})
        self._wake(chat_id)

    @staticmethod
    async def _put_out(s: AsyncSession, m: OutMessage, seq: int, at: datetime, dedupe: str | None = None) -> None:
        """A bot message: an edit replaces the stored one (with the new number); a toast is new."""
        body = json.dumps(out_body(m), ensure_ascii=False)
        if not m.toast:
            res = await s.execute(update(WebMessage).where(
                WebMessage.chat_id == m.chat_id, WebMessage.message_id == m.message_id,
                WebMessage.mine.is_(False)).values(body=body, seq=seq))
            if res.rowcount:
                return
        s.add(WebMessage(chat_id=m.chat_id, message_id=m.message_id, seq=seq, mine=False, body=body, at=at,
                         dedupe=dedupe))

    @staticmethod
    def _put_mine(s: AsyncSession, chat_id: int, e: dict, seq: int) -> None:
        body = {k: v for k, v in e.items() if k not in ("chat_id", "seq", "at")}
        s.add(WebMessage(chat_id=chat_id, message_id=0, seq=seq, mine=True,
                         body=json.dumps(body, ensure_ascii=False), at=e["at"]))

    @staticmethod
    async def _put_grants(s: AsyncSession, files: dict) -> None:
        for (file_id, chat_id), (mime, name) in files.items():
            if not await s.scalar(select(WebFile.id).where(WebFile.file_id == file_id, WebFile.chat_id == chat_id)):
                s.add(WebFile(file_id=file_id, chat_id=chat_id, mime=mime[:100], name=name[:200]))

    async def prune(self) -> int:
        """Delete messages and files older than the retention period. Returns files removed."""
        cutoff = now() - timedelta(days=self.settings.web_retention_days)
        async with session_scope(self.sm) as s:
            await s.execute(delete(WebMessage).where(WebMessage.at < cutoff))
            old = set(await s.scalars(select(WebFile.file_id).where(WebFile.at < cutoff)))
            await s.execute(delete(WebFile).where(WebFile.at < cutoff))
            kept = set(await s.scalars(select(WebFile.file_id).where(WebFile.file_id.in_(old)))) if old else set()
        removed = 0
        for fid in old - kept:
            for key in (self._key(fid), self._key(fid) + ".json"):
                await self.store.delete(key)
            self._file_meta.pop(fid, None)
            removed += 1
        return removed

    async def run(self, interval: float = 1.0, prune_every: float = 6 * 3600) -> None:
        """Background: write what was queued; prune once at start and then periodically."""
        last_prune = -prune_every
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.persist()
                if loop.time() - last_prune >= prune_every:
                    await self.prune()
                    last_prune = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("persisting the web transcript failed")
            await asyncio.sleep(interval)


