"""The web channel: the offline channel (same Dispatcher path, bot session named ``web``)
whose transcript and files are persisted — messages in ``web_messages``, files in the object
store under ``web-files/`` (backend/core/storage.py) with who may fetch each in ``web_files`` —
so history survives a restart and memory stays flat: only the recent messages of the most
recently active people are kept in memory (settings.web_cache_users), everything older than
settings.web_retention_days is deleted.

Writes are queued and made outside the bot's handler transactions (:meth:`persist`, called by
the web routes after each step and by :meth:`run` in the background): on SQLite a second
writer inside a handler would wait for the handler's own write lock."""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth.models import WebFile, WebMessage
from backend.core.clock import now
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.core.storage import LocalStore, ObjectStore
from bot.offline import OfflineChannel, OutMessage, StoredBlob

log = logging.getLogger("hehe.web")
KEEP_PER_PERSON = 200  # messages of one person kept in memory
FILE_ID = re.compile(r"^off-[0-9a-f]{32}$")
UPDATE_ID_BASE = 2 ** 40


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


class WebChannel(OfflineChannel):
    def __init__(self, sm: async_sessionmaker[AsyncSession], settings: Settings,
                 store: ObjectStore | None = None) -> None:
        super().__init__()
        self.session.channel_name = "web"
        self.sm = sm
        self.settings = settings
        self.store: ObjectStore = store or LocalStore(settings.data_dir)  # files: web-files/<2>/<id>
        self.inbound = _MineLog(self)  # type: ignore[assignment]
        self.out: OrderedDict[int, list[OutMessage]] = OrderedDict()  # type: ignore[assignment]
        self.mine: dict[int, list[dict]] = {}
        self.times: dict[int, datetime] = {}  # id(OutMessage) → first sent
        self._pending_out: dict[tuple[int, int, int], OutMessage] = {}
        self._pending_mine: list[dict] = []
        self._pending_files: dict[tuple[str, int], tuple[str, str]] = {}
        self._file_meta: OrderedDict[str, tuple[str, str]] = OrderedDict()  # file id → (mime, name)
        self._last = 0
        self._write = asyncio.Lock()

    async def start(self) -> None:
        """Continue the ids and change counter where the stored transcript ends."""
        async with self.sm() as s:
            top_seq = await s.scalar(select(func.max(WebMessage.seq))) or 0
            top_mid = await s.scalar(select(func.max(WebMessage.message_id))) or 0
        self._seq = itertools.count(top_seq + 1)
        self._message_ids = itertools.count(top_mid + 1)
        # The Dispatcher ignores an (bot id, update_id) it has seen; the terminal's offline
        # channel shares the bot id and counts from 1, so this channel counts from far away.
        self._update_ids = itertools.count(UPDATE_ID_BASE)
        self._last = top_seq

    async def reload(self) -> None:
        """Forget the transcripts in memory and continue after the stored ones (this replica
        became the leader: another one served the web chat until now)."""
        await self.persist()
        for chat_id in list(self.out):
            self.reply_keyboards.pop(chat_id, None)
        self.out.clear()
        self.mine.clear()
        self.times.clear()
        await self.start()

    # ------------------------------------------------------------- memory (a bounded cache)
    def _list(self, chat_id: int) -> list[OutMessage]:
        if chat_id not in self.out:
            self.out[chat_id] = []
            self.mine[chat_id] = []
        self.out.move_to_end(chat_id)
        while len(self.out) > max(1, self.settings.web_cache_users):
            old, msgs = self.out.popitem(last=False)
            self.mine.pop(old, None)
            self.reply_keyboards.pop(old, None)
            self.profiles.pop(old, None)
            for m in msgs:
                self.times.pop(id(m), None)
        return self.out[chat_id]

    def _trim(self, chat_id: int) -> None:
        msgs = self.out.get(chat_id)
        if msgs is not None and len(msgs) > KEEP_PER_PERSON:
            for m in msgs[:-KEEP_PER_PERSON]:
                self.times.pop(id(m), None)
            del msgs[:-KEEP_PER_PERSON]
        mine = self.mine.get(chat_id)
        if mine is not None and len(mine) > KEEP_PER_PERSON:
            del mine[:-KEEP_PER_PERSON]

    async def load(self, chat_id: int, *, name: str | None = None, language: str | None = None) -> None:
        """Bring a person's recent transcript into memory (after a restart or eviction)."""
        if name or language:
            self.set_profile(chat_id, name=name, language_code=language)
        if chat_id in self.out:
            self.out.move_to_end(chat_id)
            return
        await self.persist()
        async with self.sm() as s:
            rows = list(await s.scalars(select(WebMessage).where(WebMessage.chat_id == chat_id)
                                        .order_by(WebMessage.seq.desc()).limit(2 * KEEP_PER_PERSON)))
        if chat_id in self.out:  # loaded meanwhile
            return
        out = self._list(chat_id)
        for r in reversed(rows):
            body = json.loads(r.body)
            if r.mine:
                self.mine[chat_id].append({**body, "seq": r.seq, "at": r.at})
            else:
                m = out_message(chat_id, r.message_id, r.seq, body)
                self.times[id(m)] = r.at
                out.append(m)
                if m.reply_keyboard is not None:
                    self.reply_keyboards[chat_id] = m.reply_keyboard
        self._trim(chat_id)

    # ------------------------------------------------------------- recording
    async def _record(self, msg: OutMessage) -> OutMessage:
        msg.seq = next(self._seq)
        self._last = msg.seq
        if not msg.recorded:
            msg.recorded = True
            self._list(msg.chat_id).append(msg)
            self.times[id(msg)] = now()
            self._trim(msg.chat_id)
        for fid in (msg.photo, msg.document):
            if fid and fid not in self._file_meta:
                await self._meta(fid)  # a file kept earlier (or by another replica): its type and name
            if fid:
                self._grant(fid, msg.chat_id)
        key = (msg.chat_id, msg.message_id, msg.seq if msg.toast else 0)
        self._pending_out[key] = msg
        async with self._changed:
            self._changed.notify_all()
        return msg

    async def press_callback(self, user_id: int, m: OutMessage, data: str, text: str = "") -> Any:
        self._pressed = m.message_id  # recorded with the press, so the page keeps its buttons used
        return await super().press_callback(user_id, m, data, text)

    def record_mine(self, chat_id: int, entry: dict) -> None:
        if "press" in entry:
            entry = {**entry, "message_id": getattr(self, "_pressed", 0)}
        seq = next(self._seq)
        self._last = seq
        item = {**entry, "seq": seq, "at": now()}
        self._list(chat_id)
        self.mine[chat_id].append(item)
        self._trim(chat_id)
        if entry.get("photo"):
            self._grant(entry["photo"], chat_id)
        self._pending_mine.append({"chat_id": chat_id, **item})

    def _grant(self, file_id: str, chat_id: int) -> None:
        meta = self._file_meta.get(file_id)  # only files that are kept (save_file, _meta)
        if meta is not None:
            self._pending_files[(file_id, chat_id)] = meta

    def last_seq(self) -> int:
        return self._last

    def transcript(self, chat_id: int, since_seq: int = 0) -> list[OutMessage]:
        return [m for m in self.out.get(chat_id, []) if m.seq > since_seq and not m.deleted]

    def history(self, chat_id: int, since_seq: int = 0) -> list[dict]:
        """What the page shows: the bot's messages and the person's own, in order."""
        items = [{**m.as_json(), "seq": m.seq, "mine": False, "deleted": m.deleted,
                  "at": self.times.get(id(m), now()).isoformat(),
                  "inline": [[{"text": l, "data": d} for l, d in row] for row in m.inline]}
                 for m in self.out.get(chat_id, []) if m.seq > since_seq and not (m.deleted and since_seq == 0)]
        for e in self.mine.get(chat_id, []):
            if e["seq"] > since_seq:
                items.append({"mine": True, "seq": e["seq"], "at": e["at"].isoformat(),
                              "text": e.get("text") or e.get("press") or "",
                              **({"photo_id": e["photo"]} if e.get("photo") else {}),
                              **({"document": e["document"]} if e.get("document") else {}),
                              **({"location": e["location"]} if e.get("location") else {}),
                              **({"press": True, "message_id": e.get("message_id", 0)} if e.get("press") else {})})
        return sorted(items, key=lambda d: d["seq"])

    # ------------------------------------------------------------- files (the object store)
    @staticmethod
    def _key(file_id: str) -> str:
        return f"web-files/{file_id[4:6]}/{file_id}"

    def _remember(self, file_id: str, mime: str, name: str) -> tuple[str, str]:
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
        return self._remember(file_id, meta.get("mime", "application/octet-stream"), meta.get("name", "file"))

    async def save_file(self, data: bytes, mime: str = "application/octet-stream", name: str = "file") -> str:
        file_id = "off-" + hashlib.sha256(data).hexdigest()[:32]
        if not await self.store.exists(self._key(file_id)):
            await self.store.put(self._key(file_id), data)
        await self.store.put(self._key(file_id) + ".json", json.dumps({"mime": mime, "name": name[:200]}).encode())
        self._remember(file_id, mime, name[:200])
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
        async with self._write:
            if not (self._pending_out or self._pending_mine or self._pending_files):
                return
            outs, self._pending_out = self._pending_out, {}
            mine, self._pending_mine = self._pending_mine, []
            files, self._pending_files = self._pending_files, {}
            try:
                async with session_scope(self.sm) as s:
                    await self._write_rows(s, outs, mine, files)
            except Exception:
                # Put them back: they are written with the next batch.
                self._pending_out = {**outs, **self._pending_out}
                self._pending_mine = mine + self._pending_mine
                self._pending_files = {**files, **self._pending_files}
                raise

    async def _write_rows(self, s: AsyncSession, outs, mine, files) -> None:
        for (chat_id, message_id, toast_seq), m in outs.items():
            body = json.dumps(out_body(m), ensure_ascii=False)
            at = self.times.get(id(m), now())
            if not toast_seq:
                res = await s.execute(update(WebMessage).where(
                    WebMessage.chat_id == chat_id, WebMessage.message_id == message_id,
                    WebMessage.mine.is_(False)).values(body=body, seq=m.seq))
                if res.rowcount:
                    continue
            s.add(WebMessage(chat_id=chat_id, message_id=message_id, seq=m.seq, mine=False, body=body, at=at))
        for e in mine:
            body = {k: v for k, v in e.items() if k not in ("chat_id", "seq", "at")}
            s.add(WebMessage(chat_id=e["chat_id"], message_id=0, seq=e["seq"], mine=True,
                             body=json.dumps(body, ensure_ascii=False), at=e["at"]))
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


