"""The offline channel: Telegram without Telegram.

``OfflineSession`` is an aiogram ``BaseSession`` that answers Bot API calls locally and
records what the bot said; ``OfflineChannel`` builds real ``Update`` objects for what a
person does (type, press a button, send a photo or a location) and feeds them to the same
Dispatcher that serves Telegram. The web chat, the terminal chat, ``--script`` replay and
the conversation tests all use it. Handlers cannot tell the difference.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import mimetypes
from collections import defaultdict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.types import (
    CallbackQuery, Chat, Document, File, InlineKeyboardMarkup, InputFile, Location, Message,
    PhotoSize, ReplyKeyboardMarkup, ReplyKeyboardRemove, Sticker, Update, User, Voice,
)

OFFLINE_TOKEN = "123456:OFFLINE-hehe-local-channel-token"
BOT_ID = 123456


@dataclass
class OutMessage:
    """One message the bot sent, as a person in the chat sees it."""

    chat_id: int
    message_id: int
    text: str = ""
    inline: list[list[tuple[str, str]]] = field(default_factory=list)  # [(label, callback_data)]
    reply_keyboard: list[list[str]] | None = None
    photo: str | None = None  # file_id
    document: str | None = None
    edited: bool = False
    deleted: bool = False
    seq: int = 0  # change counter for pollers
    toast: bool = False  # an answerCallbackQuery notice
    markup: Any = field(default=None, compare=False, repr=False)  # the InlineKeyboardMarkup sent
    recorded: bool = field(default=False, compare=False, repr=False)

    def keep_keyboard(self, markup: Any) -> None:
        """Remember the inline keyboard the bot sent with this message (none: no buttons)."""
        self.markup = markup if isinstance(markup, InlineKeyboardMarkup) else None
        self.inline = [[(b.text, b.callback_data or b.url or "") for b in row]
                       for row in self.markup.inline_keyboard] if self.markup else []

    def as_json(self, user: int | None = None) -> dict:
        return {
            "user": self.chat_id if user is None else user,
            "message_id": self.message_id,
            "text": self.text,
            "buttons": [label for row in self.inline for label, _ in row]
            + [label for row in (self.reply_keyboard or []) for label in row],
            "photo": self.photo is not None,
            **({"photo_id": self.photo} if self.photo else {}),
            **({"document_id": self.document} if self.document else {}),
            **({"edited": True} if self.edited else {}),
            **({"toast": True} if self.toast else {}),
        }


class ChannelError(Exception):
    """Something a person tried to do cannot be done (no such button, …)."""


@dataclass
class StoredBlob:
    data: bytes
    mime: str
    name: str


class OfflineChannel:
    def __init__(self) -> None:
        self.files: dict[str, StoredBlob] = {}
        self.out: dict[int, list[OutMessage]] = defaultdict(list)
        self.inbound: dict[int, list[dict]] = defaultdict(list)  # what each person sent (for the web chat)
        self.reply_keyboards: dict[int, list[list[str]] | None] = {}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._changed = asyncio.Condition()
        self.session = OfflineSession(self)
        self.bot = Bot(OFFLINE_TOKEN, session=self.session)
        self.dispatcher: Dispatcher | None = None
        self.profiles: dict[int, dict] = {}
        self.callback_users: dict[str, int] = {}

    # ------------------------------------------------------------- files
    def put_file(self, data: bytes, mime: str = "application/octet-stream", name: str = "file") -> str:
        file_id = "off-" + hashlib.sha256(data).hexdigest()[:32]
        self.files[file_id] = StoredBlob(data, mime, name)
        return file_id

    def get_file(self, file_id: str) -> StoredBlob | None:
        return self.files.get(file_id)

    # What the bot session calls: a subclass keeps files elsewhere (the web chat: the object store).
    async def save_file(self, data: bytes, mime: str = "application/octet-stream", name: str = "file") -> str:
        return self.put_file(data, mime, name)

    async def load_file(self, file_id: str) -> StoredBlob | None:
        return self.get_file(file_id)

    # ------------------------------------------------------------- outgoing (bot → person)
    async def _record(self, msg: OutMessage) -> OutMessage:
        msg.seq = next(self._seq)
        if not msg.recorded:  # an edit re-records the same message
            msg.recorded = True
            self.out[msg.chat_id].append(msg)
        async with self._changed:
            self._changed.notify_all()
        return msg

    def find(self, chat_id: int, message_id: int) -> OutMessage | None:
        for m in reversed(self.out.get(chat_id, [])):
            if m.message_id == message_id and not m.toast:
                return m
        return None

    async def wait_changes(self, since_seq: int, timeout: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.last_seq() > since_seq), timeout)
            except asyncio.TimeoutError:
                pass

    def last_seq(self) -> int:
        return max((m.seq for msgs in self.out.values() for m in msgs), default=0)

    def transcript(self, chat_id: int, since_seq: int = 0) -> list[OutMessage]:
        return [m for m in self.out.get(chat_id, []) if m.seq > since_seq and not m.deleted]

    # ------------------------------------------------------------- incoming (person → bot)
    def _tg_user(self, user_id: int) -> User:
        p = self.profiles.get(user_id, {})
        return User(id=user_id, is_bot=p.get("is_bot", False), first_name=p.get("name") or f"用户{user_id}",
                    language_code=p.get("language_code", "zh-hans"))

    def set_profile(self, user_id: int, name: str | None = None, language_code: str | None = None) -> None:
        p = self.profiles.setdefault(user_id, {})
        if name:
            p["name"] = name
        if language_code:
            p["language_code"] = language_code

    def _message(self, user_id: int, **kw) -> Message:
        return Message(
            message_id=next(self._message_ids), date=datetime.now(timezone.utc),
            chat=Chat(id=user_id, type="private"), from_user=self._tg_user(user_id), **kw,
        )

    async def feed(self, update: Update) -> Any:
        assert self.dispatcher is not None, "attach a dispatcher first"
        return await self.dispatcher.feed_update(self.bot, update)

    async def send_text(self, user_id: int, text: str) -> Any:
        self.inbound[user_id].append({"text": text})
        return await self.feed(Update(update_id=next(self._update_ids), message=self._message(user_id, text=text)))

    async def edit_text(self, user_id: int, message_id: int, text: str) -> Any:
        msg = Message(message_id=message_id, date=datetime.now(timezone.utc), edit_date=int(datetime.now().timestamp()),
                      chat=Chat(id=user_id, type="private"), from_user=self._tg_user(user_id), text=text)
        return await self.feed(Update(update_id=next(self._update_ids), edited_message=msg))

    async def send_photo(self, user_id: int, data: bytes, caption: str | None = None,
                         width: int = 0, height: int = 0) -> Any:
        file_id = await self.save_file(data, "image/jpeg", "photo.jpg")
        self.inbound[user_id].append({"photo": file_id, "text": caption or ""})
        sizes = [PhotoSize(file_id=file_id, file_unique_id=file_id[-16:], width=width or 1280,
                           height=height or 960, file_size=len(data))]
        return await self.feed(Update(update_id=next(self._update_ids),
                                      message=self._message(user_id, photo=sizes, caption=caption)))

    async def send_document(self, user_id: int, data: bytes, filename: str, caption: str | None = None) -> Any:
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        file_id = await self.save_file(data, mime, filename)
        self.inbound[user_id].append({"document": filename, "text": caption or ""})
        doc = Document(file_id=file_id, file_unique_id=file_id[-16:], file_name=filename, mime_type=mime,
                       file_size=len(data))
        return await self.feed(Update(update_id=next(self._update_ids),
                                      message=self._message(user_id, document=doc, caption=caption)))

    async def send_location(self, user_id: int, lat: float, lon: float) -> Any:
        self.inbound[user_id].append({"location": [lat, lon]})
        return await self.feed(Update(update_id=next(self._update_ids), message=self._message(
            user_id, location=Location(latitude=lat, longitude=lon))))

    async def send_sticker(self, user_id: int) -> Any:
        st = Sticker(file_id="off-sticker", file_unique_id="sticker", type="regular", width=512, height=512,
                     is_animated=False, is_video=False)
        return await self.feed(Update(update_id=next(self._update_ids), message=self._message(user_id, sticker=st)))

    async def send_voice(self, user_id: int) -> Any:
        v = Voice(file_id="off-voice", file_unique_id="voice", duration=3)
        return await self.feed(Update(update_id=next(self._update_ids), message=self._message(user_id, voice=v)))

    async def send_raw(self, update: Update) -> Any:
        return await self.feed(update)

    def next_update_id(self) -> int:
        return next(self._update_ids)

    async def press(self, user_id: int, label: str) -> Any:
        """Press the button whose label contains ``label`` on the user's latest bot message
        that has buttons (inline keyboard, else the current reply keyboard)."""
        for m in reversed(self.out.get(user_id, [])):
            if m.deleted or m.toast or not m.inline:
                continue
            for row in m.inline:
                for text, data in row:
                    if label in text:
                        return await self.press_callback(user_id, m, data, text)
            break  # only the latest message with buttons counts
        kb = self.reply_keyboards.get(user_id)
        if kb:
            for row in kb:
                for text in row:
                    if label in text:
                        return await self.send_text(user_id, text)
        raise ChannelError(f"no button containing {label!r} for user {user_id}")

    async def press_callback(self, user_id: int, m: OutMessage, data: str, text: str = "") -> Any:
        self.inbound[user_id].append({"press": text or data})
        cq_id = str(next(self._update_ids))
        self.callback_users[cq_id] = user_id
        cq = CallbackQuery(
            id=cq_id, from_user=self._tg_user(user_id), chat_instance=str(user_id),
            data=data, message=self.as_message(m),
        )
        return await self.feed(Update(update_id=next(self._update_ids), callback_query=cq))

    def as_message(self, m: OutMessage) -> Message:
        """The ``Message`` Telegram would return for ``m``, with the keyboard object the bot
        sent (reused: nothing changes a sent keyboard)."""
        kb = m.markup
        extra: dict[str, Any] = {}
        if m.photo:
            extra["photo"] = [PhotoSize(file_id=m.photo, file_unique_id=m.photo[-16:], width=1, height=1)]
            extra["caption"] = m.text
        else:
            extra["text"] = m.text
        return Message(message_id=m.message_id, date=datetime.now(timezone.utc),
                       chat=Chat(id=m.chat_id, type="private"),
                       from_user=User(id=BOT_ID, is_bot=True, first_name="和合"), reply_markup=kb, **extra)


class OfflineSession(BaseSession):
    channel_name = "local"

    def __init__(self, channel: OfflineChannel) -> None:
        super().__init__()
        self.channel = channel

    async def close(self) -> None:  # nothing to close
        return None

    async def _read_input(self, bot: Bot, value: Any, mime: str, name: str) -> str:
        if isinstance(value, str):
            return value  # an existing file_id
        if isinstance(value, InputFile):
            chunks = [c async for c in value.read(bot)]
            return await self.channel.save_file(b"".join(chunks), mime, value.filename or name)
        raise TypeError(f"unsupported file input {type(value)!r}")

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        ch = self.channel
        name = method.__api_method__
        p = method
        if name == "getMe":
            return User(id=BOT_ID, is_bot=True, first_name="和合 Hehe", username="hehe_offline_bot")
        if name in ("sendMessage", "sendPhoto", "sendDocument", "sendLocation"):
            chat_id = int(p.chat_id)
            m = OutMessage(chat_id=chat_id, message_id=next(ch._message_ids))
            if name == "sendMessage":
                m.text = p.text
            elif name == "sendPhoto":
                m.photo = await self._read_input(bot, p.photo, "image/jpeg", "photo.jpg")
                m.text = p.caption or ""
            elif name == "sendDocument":
                m.document = await self._read_input(bot, p.document, "application/octet-stream", "file")
                m.text = p.caption or ""
            else:
                m.text = f"📍 {p.latitude:.5f}, {p.longitude:.5f}"
            m.keep_keyboard(p.reply_markup)
            if isinstance(p.reply_markup, ReplyKeyboardMarkup):
                ch.reply_keyboards[chat_id] = [[b.text for b in row] for row in p.reply_markup.keyboard]
                m.reply_keyboard = ch.reply_keyboards[chat_id]
            elif isinstance(p.reply_markup, ReplyKeyboardRemove):
                ch.reply_keyboards[chat_id] = None
            await ch._record(m)
            return ch.as_message(m)
        if name in ("editMessageText", "editMessageReplyMarkup", "editMessageCaption"):
            m = ch.find(int(p.chat_id), int(p.message_id))
            if m is None:
                from aiogram.exceptions import TelegramBadRequest
                raise TelegramBadRequest(method=method, message="Bad Request: message to edit not found")
            if name == "editMessageText":
                m.text = p.text
            elif name == "editMessageCaption":
                m.text = p.caption or ""
            m.keep_keyboard(p.reply_markup)
            m.edited = True
            await ch._record(m)
            return ch.as_message(m)
        if name == "deleteMessage":
            m = ch.find(int(p.chat_id), int(p.message_id))
            if m:
                m.deleted = True
                await ch._record(m)
            return True
        if name == "answerCallbackQuery":
            uid = ch.callback_users.pop(p.callback_query_id, None)
            if p.text and uid is not None:
                # A small notice for the person who pressed (a toast in the web chat).
                await ch._record(OutMessage(chat_id=uid, message_id=0, text=p.text, toast=True))
            return True
        if name == "getFile":
            blob = await ch.load_file(p.file_id)
            if blob is None:
                from aiogram.exceptions import TelegramBadRequest
                raise TelegramBadRequest(method=method, message="Bad Request: invalid file_id")
            return File(file_id=p.file_id, file_unique_id=p.file_id[-16:], file_size=len(blob.data),
                        file_path=f"offline/{p.file_id}")
        if name in ("sendChatAction", "setMyCommands", "deleteWebhook", "setWebhook", "deleteMyCommands"):
            return True
        raise NotImplementedError(f"offline channel does not implement {name}")

    async def stream_content(self, url: str, headers: dict[str, Any] | None = None, timeout: int = 30,
                             chunk_size: int = 65536, raise_for_status: bool = True) -> AsyncGenerator[bytes, None]:
        file_id = url.rsplit("/", 1)[-1]
        blob = await self.channel.load_file(file_id)
        if blob is None:
            raise FileNotFoundError(file_id)
        for i in range(0, len(blob.data), chunk_size):
            yield blob.data[i:i + chunk_size]
