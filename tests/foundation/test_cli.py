"""The ``hehe`` command as a person runs it: a real subprocess on a temporary data dir."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.core.clock import now
from backend.users.models import InviteCode, Jurisdiction, User
from tests.conftest import make_settings

HEHE = shutil.which("hehe", path=str(Path(sys.executable).parent))


def run_hehe(data_dir: Path, *args: str, stdin: str | None = None, demo: bool = False,
             timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(data_dir), HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8")
    if demo:
        env["HEHE_DEMO"] = "1"
    cmd = [HEHE, *args] if HEHE else [sys.executable, "-m", "backend.cli", *args]
    # cwd = the data dir's parent, so no developer's .env is picked up
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=data_dir.parent)


@pytest.fixture
def data_dir(tmp_path: Path, template_db: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    shutil.copyfile(template_db, d / "hehe.db")
    return d


async def _ctx(data_dir: Path, **kw):
    from backend.context import start_context

    return await start_context(make_settings(data_dir.parent, data_dir=data_dir, **kw), models=False,
                               workers=False, telegram=False, scheduler=False)


# ---------------------------------------------------------------- invites
async def test_invite_create_prints_a_code_that_join_redeems(data_dir):
    r = run_hehe(data_dir, "invite", "create", "--role", "deputy", "--jurisdiction", "椒江区", "--expires", "7d")
    assert r.returncode == 0, r.stderr
    code = r.stdout.strip().splitlines()[-1]
    assert len(code) == 14 and code.count("-") == 2

    ctx = await _ctx(data_dir)
    try:
        async with ctx.sm() as s:
            inv = await s.scalar(select(InviteCode).where(InviteCode.code == code))
            assert inv.role == "deputy" and inv.jurisdiction.name == "椒江区"
            assert abs((inv.expires_at - now()) - timedelta(days=7)) < timedelta(minutes=5)
        await ctx.channel.send_text(4001, f"/join {code}")
        reply = ctx.channel.out[4001][-1].text
        assert "人大代表" in reply and "椒江区" in reply
        await ctx.channel.send_text(4002, f"/join {code}")
        assert "已被使用" in ctx.channel.out[4002][-1].text
        async with ctx.sm() as s:
            u = await s.scalar(select(User).where(User.telegram_id == 4001))
            assert u.role == "deputy" and u.jurisdiction.name == "椒江区"
    finally:
        await ctx.stop()


@pytest.mark.parametrize("args,needle", [
    (["--role", "emperor", "--jurisdiction", "椒江区"], "emperor"),
    (["--role", "deputy", "--jurisdiction", "火星区"], "火星区"),
    (["--role", "deputy", "--jurisdiction", "椒江区", "--expires", "forever"], "forever"),
    (["--role", "mediator"], "辖区"),
])
def test_invite_create_errors_are_clear_and_non_zero(data_dir, args, needle):
    r = run_hehe(data_dir, "invite", "create", *args)
    assert r.returncode != 0
    assert needle in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- jurisdictions
async def test_jurisdictions_import_csv(data_dir, tmp_path):
    csv_file = tmp_path / "places.csv"
    csv_file.write_text(
        "county,township,village,grid\n"
        "椒江区,海门街道,测试社区,测试一网格\n"
        "椒江区,海门街道,测试社区,测试二网格\n"
        "温岭市,测试镇,,\n", encoding="utf-8")
    r = run_hehe(data_dir, "jurisdictions", "import", str(csv_file))
    assert r.returncode == 0, r.stderr
    created = int(re.search(r"imported: (\d+)", r.stdout).group(1))
    assert created >= 4  # village + 2 grids + the new town (海门街道 is seed data)
    again = run_hehe(data_dir, "jurisdictions", "import", str(csv_file))
    assert again.returncode == 0 and "imported: 0" in again.stdout  # idempotent

    listing = run_hehe(data_dir, "jurisdictions", "list", "椒江区/海门街道/测试社区")
    assert listing.returncode == 0 and "测试一网格" in listing.stdout and "测试二网格" in listing.stdout

    ctx = await _ctx(data_dir)
    try:
        async with ctx.sm() as s:
            grid = await s.scalar(select(Jurisdiction).where(Jurisdiction.name == "测试一网格"))
            village = await s.scalar(select(Jurisdiction).where(Jurisdiction.name == "测试社区"))
            assert grid.level == "grid" and village.level == "village"
            assert grid.parent_id == village.id and grid.path.startswith(village.path)
    finally:
        await ctx.stop()


def test_jurisdictions_import_bad_county_is_a_clear_error(data_dir, tmp_path):
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("county,township,village,grid\n椒江区,海门街道,好社区,\n火星区,奥林匹斯镇,,\n",
                        encoding="utf-8")
    r = run_hehe(data_dir, "jurisdictions", "import", str(csv_file))
    assert r.returncode != 0
    assert "火星区" in r.stderr and "2" in r.stderr and "Traceback" not in r.stderr
    # Nothing half-written: the good first row was rolled back with the bad one.
    listing = run_hehe(data_dir, "jurisdictions", "list", "椒江区/海门街道")
    assert "好社区" not in listing.stdout


def test_jurisdictions_import_missing_columns(data_dir, tmp_path):
    csv_file = tmp_path / "cols.csv"
    csv_file.write_text("name,parent\n椒江区,台州市\n", encoding="utf-8")
    r = run_hehe(data_dir, "jurisdictions", "import", str(csv_file))
    assert r.returncode != 0 and "county" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- --script replay
def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_script_replay_json(data_dir, tmp_path):
    photo = tmp_path / "evidence.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 500)
    script = tmp_path / "s.jsonl"
    script.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in [
        {"user": 1001, "text": "/start"},
        {"user": 1001, "press": "帮助"},
        {"user": 1001, "photo": "evidence.jpg", "caption": "现场照片"},
        {"user": 1001, "location": [28.65, 121.42]},
        {"user": 1002, "text": "/me"},
    ]) + "\n", encoding="utf-8")
    r = run_hehe(data_dir, "chat", "--script", str(script), "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    out = _lines(r.stdout)
    msgs = [m for m in out if not m.get("toast")]
    assert all(set(m) >= {"user", "text", "buttons", "photo"} for m in out)
    assert all(isinstance(m["buttons"], list) and isinstance(m["photo"], bool) for m in out)
    first = msgs[0]
    assert first["user"] == 1001 and "和合" in first["text"] and any("帮助" in b for b in first["buttons"])
    assert first["photo"] is False
    assert any("命令" in m["text"] or "/start" in m["text"] for m in msgs[1:3])  # the help text
    assert msgs[-1]["user"] == 1002 and "群众" in msgs[-1]["text"]
    assert len([m for m in msgs if m["user"] == 1001]) >= 4  # /start, help, photo, location each answered


def test_script_no_such_button_is_an_error_line_and_non_zero(data_dir, tmp_path):
    script = tmp_path / "s.jsonl"
    script.write_text('{"user":1001,"text":"/start"}\n{"user":1001,"press":"不存在的按钮"}\n'
                      '{"user":1001,"text":"/me"}\n', encoding="utf-8")
    r = run_hehe(data_dir, "chat", "--script", str(script), "--json")
    assert r.returncode != 0
    out = _lines(r.stdout)
    assert "和合" in out[0]["text"]
    assert out[-1]["line"] == 2 and "不存在的按钮" in out[-1]["error"]
    assert not any("群众" in m.get("text", "") and "用户" in m.get("text", "") for m in out[1:])  # stopped


@pytest.mark.parametrize("bad", ['{"text":"/start"}', "not json at all", '{"user":1001}',
                                 '{"user":1001,"photo":"missing.jpg"}'])
def test_script_bad_lines(data_dir, tmp_path, bad):
    script = tmp_path / "s.jsonl"
    script.write_text(bad + "\n", encoding="utf-8")
    r = run_hehe(data_dir, "chat", "--script", str(script), "--json")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert _lines(r.stdout)[-1]["line"] == 1


def test_script_role_lines_need_demo(data_dir, tmp_path):
    script = tmp_path / "s.jsonl"
    script.write_text('{"user":1001,"role":"mediator","jurisdiction":"椒江区"}\n{"user":1001,"text":"/me"}\n',
                      encoding="utf-8")
    refused = run_hehe(data_dir, "chat", "--script", str(script), "--json")
    assert refused.returncode != 0
    assert "HEHE_DEMO" in _lines(refused.stdout)[-1]["error"]

    allowed = run_hehe(data_dir, "chat", "--script", str(script), "--json", demo=True)
    assert allowed.returncode == 0, allowed.stderr
    me = _lines(allowed.stdout)[-1]
    assert "调解员" in me["text"] and "椒江区" in me["text"]


def test_script_from_stdin(data_dir):
    r = run_hehe(data_dir, "chat", "--script", "-", "--json", stdin='{"user":1003,"text":"/help"}\n')
    assert r.returncode == 0, r.stderr
    assert _lines(r.stdout)[0]["user"] == 1003


# ---------------------------------------------------------------- terminal chat
def test_terminal_chat_over_stdin(data_dir):
    r = run_hehe(data_dir, "chat", "--user", "1001", stdin="/start\n!press 帮助\n#99\n/lang\n#2\n/me\n!quit\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "[1001] 和合:" in out and "[1]" in out  # the menu with numbered buttons
    assert "没有这个按钮" in out  # #99
    assert "Language set to English." in out  # #2 pressed "English"
    assert "Role" in out or "role" in out  # /me now in English
    assert "Traceback" not in r.stderr


def test_chat_needs_user_or_script(data_dir):
    r = run_hehe(data_dir, "chat")
    assert r.returncode != 0 and "--user" in r.stderr
