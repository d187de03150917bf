"""Terminal chat and ``--script`` replay over the offline channel."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.web import chat_service
from bot.offline import ChannelError, OutMessage


class ScriptError(Exception):
    pass


def _out_line(m: OutMessage) -> dict:
    d = {"user": m.chat_id, "text": m.text,
         "buttons": [l for row in m.inline for l, _ in row] + [l for row in (m.reply_keyboard or []) for l in row],
         "photo": m.photo is not None}
    if m.edited:
        d["edited"] = True
    if m.toast:
        d["toast"] = True
    return d


async def apply_line(ctx: Any, step: dict, base: Path) -> None:
    if not isinstance(step, dict) or "user" not in step:
        raise ScriptError("each line needs a \"user\"")
    try:
        uid = int(step["user"])
    except (TypeError, ValueError) as e:
        raise ScriptError("\"user\" must be a number") from e
    ch = ctx.channel
    if "name" in step or "lang" in step:
        ch.set_profile(uid, name=step.get("name"), language_code=step.get("lang"))
    if "role" in step:
        try:
            await chat_service.set_role_direct(ctx, uid, step["role"], step.get("jurisdiction"), step.get("title"))
        except DomainError as e:
            raise ScriptError(gettext("zh", e.key, **e.params) + " (role lines need HEHE_DEMO=1)") from e
        return
    await chat_service.ensure_local_user(ctx, uid)
    if "text" in step:
        await ch.send_text(uid, str(step["text"]))
    elif "press" in step:
        try:
            await ch.press(uid, str(step["press"]))
        except ChannelError as e:
            raise ScriptError(str(e)) from e
    elif "photo" in step or "document" in step:
        key = "photo" if "photo" in step else "document"
        p = Path(step[key])
        p = p if p.is_absolute() else (base / p if (base / p).exists() else p)
        if not p.exists():
            raise ScriptError(f"file not found: {step[key]}")
        if key == "photo":
            await ch.send_photo(uid, p.read_bytes(), step.get("caption"))
        else:
            await ch.send_document(uid, p.read_bytes(), p.name, step.get("caption"))
    elif "location" in step:
        lat, lon = step["location"]
        await ch.send_location(uid, float(lat), float(lon))
    else:
        raise ScriptError("nothing to do: expected text, press, photo, document, location or role")


async def run_script(ctx: Any, lines: list[str], base: Path, out: TextIO = sys.stdout,
                     as_json: bool = True) -> int:
    """Replay ``lines``; print every bot message. Returns the exit code."""
    seq = ctx.channel.last_seq()
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            step = json.loads(raw)
            await apply_line(ctx, step, base)
        except (ScriptError, json.JSONDecodeError, ValueError) as e:
            await _emit(ctx, seq, out, as_json)
            print(json.dumps({"error": str(e), "line": n}, ensure_ascii=False), file=out, flush=True)
            return 1
        await ctx.flush()
        seq = await _emit(ctx, seq, out, as_json)
    return 0


async def _emit(ctx: Any, since: int, out: TextIO, as_json: bool) -> int:
    msgs = sorted((m for msgs in ctx.channel.out.values() for m in msgs if m.seq > since),
                  key=lambda m: m.seq)
    for m in msgs:
        if as_json:
            print(json.dumps(_out_line(m), ensure_ascii=False), file=out, flush=True)
        else:
            print(render_text(m), file=out, flush=True)
    return max([since] + [m.seq for m in msgs])


def render_text(m: OutMessage) -> str:
    head = f"[{m.chat_id}] 和合{'（已更新）' if m.edited else ''}:"
    body = ("🖼 [图片] " if m.photo else "") + m.text
    buttons = [l for row in m.inline for l, _ in row] + [l for row in (m.reply_keyboard or []) for l in row]
    tail = "\n" + "  ".join(f"[{i}] {b}" for i, b in enumerate(buttons, 1)) if buttons else ""
    return f"{head} {body}{tail}"


TERMINAL_HELP = ("输入文字发送；#N 按第 N 个按钮；!press 文字；!photo 路径；!loc 纬度 经度；!quit 退出\n"
                 "Type text to send; #N presses button N; !press LABEL; !photo PATH; !loc LAT LON; !quit")


async def terminal(ctx: Any, uid: int, read=input) -> None:
    import asyncio

    print(TERMINAL_HELP)
    seq = ctx.channel.last_seq()
    while True:
        try:
            line = (await asyncio.to_thread(read, f"{uid}> ")).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line in ("!quit", "!exit"):
            break
        step: dict[str, Any] = {"user": uid}
        try:
            if line.startswith("#") and line[1:].isdigit():
                latest = next((m for m in reversed(ctx.channel.out.get(uid, [])) if m.inline and not m.deleted), None)
                labels = [l for row in latest.inline for l, _ in row] if latest else []
                labels += [l for row in (ctx.channel.reply_keyboards.get(uid) or []) for l in row]
                idx = int(line[1:]) - 1
                if not 0 <= idx < len(labels):
                    print("没有这个按钮 / no such button")
                    continue
                step["press"] = labels[idx]
            elif line.startswith("!press "):
                step["press"] = line[7:]
            elif line.startswith("!photo "):
                step["photo"] = line[7:].strip()
            elif line.startswith("!loc "):
                lat, lon = line[5:].split()
                step["location"] = [float(lat), float(lon)]
            else:
                step["text"] = line
            await apply_line(ctx, step, Path.cwd())
        except (ScriptError, ValueError) as e:
            print(f"错误 / error: {e}")
            continue
        await ctx.flush()
        seq = await _emit(ctx, seq, sys.stdout, as_json=False)
