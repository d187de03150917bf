"""A fake Telegram Bot API server on loopback for the drills: answers like Telegram, or fails
the way Telegram does (500/502, 429 with retry_after, 403 for a blocked chat, a hang)."""
from __future__ import annotations

import asyncio
import json
import socket
import time

from aiohttp import web


class FakeTelegram:
    def __init__(self):
        self.mode = "ok"  # ok | hang | 500 | 502
        self.blocked: set[int] = set()  # chats that blocked the bot (403)
        self.retry_after: int = 0  # >0: the next sendMessage answers 429 with this
        self.calls: list[tuple[str, dict, float]] = []
        self.sent: list[dict] = []
        self._mid = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._unhang = asyncio.Event()

    async def start(self) -> "FakeTelegram":
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def stop(self) -> None:
        self._unhang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def count(self, method: str) -> int:
        return sum(1 for m, _, _ in self.calls if m == method)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        form = dict(await request.post())
        self.calls.append((method, form, time.monotonic()))
        if self.mode == "hang":
            await self._unhang.wait()  # until the test ends (or hangs up itself)
        if self.mode in ("500", "502"):
            return web.json_response({"ok": False, "error_code": int(self.mode), "description": "Bad Gateway"},
                                     status=int(self.mode))
        if method == "getUpdates":
            await asyncio.sleep(0.2)
            return web.json_response({"ok": True, "result": []})
        if method in ("deleteWebhook", "setWebhook", "answerCallbackQuery"):
            return web.json_response({"ok": True, "result": True})
        if method == "getMe":
            return web.json_response({"ok": True, "result": {"id": 42, "is_bot": True, "first_name": "Hehe",
                                                             "username": "hehe_bot"}})
        if method in ("sendMessage", "sendPhoto"):
            chat_id = int(form["chat_id"])
            if self.retry_after:
                ra, self.retry_after = self.retry_after, 0
                return web.json_response({"ok": False, "error_code": 429, "description": "Too Many Requests",
                                          "parameters": {"retry_after": ra}}, status=429)
            if chat_id in self.blocked:
                return web.json_response({"ok": False, "error_code": 403,
                                          "description": "Forbidden: bot was blocked by the user"}, status=403)
            text = str(form.get("text", form.get("caption", "")))
            if len(text) > 4096:
                return web.json_response({"ok": False, "error_code": 400,
                                          "description": "Bad Request: message is too long"}, status=400)
            self._mid += 1
            markup = json.loads(form["reply_markup"]) if form.get("reply_markup") else None
            self.sent.append({"chat_id": chat_id, "text": text, "method": method, "markup": markup})
            return web.json_response({"ok": True, "result": {
                "message_id": self._mid, "date": int(time.time()), "chat": {"id": chat_id, "type": "private"},
                "text": text}})
        return web.json_response({"ok": True, "result": True})
