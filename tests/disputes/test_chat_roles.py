"""Chat commands × roles: who may use /queue, /overdue, /stats, /mycases, /report."""
from __future__ import annotations

import pytest

from tests.conftest import texts
from tests.disputes.conftest import report

ROLES = [("citizen", None), ("mediator", "椒江区/海门街道"), ("official", "椒江区"), ("deputy", "椒江区"),
         ("procurator", "椒江区"), ("officer", "椒江区"), ("admin", None)]
ALLOWED = {
    "/queue": {"mediator", "admin"},
    "/overdue": {"mediator", "official", "admin"},
    "/stats": {"official", "admin"},
    "/mycases": {r for r, _ in ROLES},
    "/report": {r for r, _ in ROLES},
}
REFUSAL = {"/queue": "仅调解员可用", "/overdue": "仅领导和工作人员可用", "/stats": "仅领导和工作人员可用"}


@pytest.mark.parametrize("role,place", ROLES)
async def test_command_matrix(chat, ctx, role, place):
    await report(chat, 3301)  # one case in 海门街道 so lists are not empty
    uid = 3400 + [r for r, _ in ROLES].index(role)
    if role != "citizen":
        await chat.as_role(uid, role, place)
    for cmd, allowed in ALLOWED.items():
        out = texts(await chat.send(uid, cmd))
        refused = REFUSAL.get(cmd)
        if cmd == "/queue" and role in ("deputy", "procurator"):
            # the supervision slice answers /queue for its own roles: no dispute queue leaks
            assert "本单位待办纠纷" not in out and "TZ-" not in out
        elif role in allowed:
            assert out and (refused is None or refused not in out), (role, cmd, out)
        else:
            assert refused in out, (role, cmd, out)
        await chat.send(uid, "/cancel")


async def test_menu_buttons_by_role(chat):
    await chat.send(3501, "/start")
    assert "📝 反映纠纷" in chat.buttons(3501) and "📋 调解待办" not in chat.buttons(3501)
    await chat.as_role(3502, "mediator", "椒江区/海门街道")
    await chat.send(3502, "/start")
    assert {"📝 反映纠纷", "📋 调解待办", "⏰ 超期案件"} <= set(chat.buttons(3502))
    await chat.as_role(3503, "official", "椒江区")
    await chat.send(3503, "/start")
    assert {"📊 纠纷统计", "⏰ 超期案件"} <= set(chat.buttons(3503))
    msgs = await chat.press(3501, "反映纠纷")
    assert "选择纠纷类别" in texts(msgs)


async def test_stats_answers_with_numbers_and_a_chart(chat, ctx, staff):
    number = await report(chat, 3504)
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "调解成功")
    await chat.send(staff["med"], "双方签订协议，问题解决")
    msgs = await chat.send(staff["off_c"], "/stats")
    assert "就地化解率：100.0%" in texts(msgs) and "海门街道" in texts(msgs)
    assert any(m.photo for m in msgs)
    png = chat.ch.get_file([m for m in msgs if m.photo][0].photo).data
    assert png.startswith(b"\x89PNG")
    queue = texts(await chat.send(staff["med"], "/queue"))
    assert "待办" in queue and number in " ".join(chat.buttons(staff["med"]))
