"""/follow: an ordinary deputy joins an item only with the proposer's consent; guessing a number
gives nothing until then."""
from __future__ import annotations

import time_machine

from tests.conftest import texts
from tests.supervision.helpers import DEPUTY, LIAISON, local, people, propose

OUTSIDER = 3006


async def test_a_deputy_joins_only_after_the_proposer_agrees(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.as_role(OUTSIDER, "deputy", "椒江区")
        number = await propose(chat)
        assert "已请求" in texts(await chat.send(OUTSIDER, f"/follow {number}"))
        assert "没有找到" in texts(await chat.send(OUTSIDER, f"/item {number}"))
        await ctx.flush()
        ask = next(m for m in reversed(chat.inbox(DEPUTY)) if "请求加入" in m.text)
        assert "同意加入" in [label for row in ask.inline for label, _ in row]
        await chat.ch.press_callback(DEPUTY, ask, next(d for row in ask.inline for label, d in row
                                                       if label == "同意加入"))
        await ctx.flush()
        assert any("已加入联合督办事项" in m.text for m in chat.inbox(OUTSIDER))
        assert number in texts(await chat.send(OUTSIDER, f"/item {number}"))
        # the liaison of the standing committee still joins at once
        assert "已加入" in texts(await chat.send(LIAISON, f"/follow {number}"))


async def test_a_declined_request_leaves_the_deputy_outside(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.as_role(OUTSIDER, "deputy", "椒江区")
        number = await propose(chat)
        await chat.send(OUTSIDER, f"/follow {number}")
        await ctx.flush()
        ask = next(m for m in reversed(chat.inbox(DEPUTY)) if "请求加入" in m.text)
        await chat.ch.press_callback(DEPUTY, ask, next(d for row in ask.inline for label, d in row
                                                       if label == "不同意"))
        await ctx.flush()
        assert any("未同意" in m.text for m in chat.inbox(OUTSIDER))
        assert "没有找到" in texts(await chat.send(OUTSIDER, f"/item {number}"))
        # a forged approval by someone who is not the proposer does nothing
        assert "已请求" in texts(await chat.send(OUTSIDER, f"/follow {number}"))
        await ctx.flush()
        ask = next(m for m in reversed(chat.inbox(DEPUTY)) if "请求加入" in m.text)
        data = next(d for row in ask.inline for label, d in row if label == "同意加入")
        await chat.ch.press_callback(OUTSIDER, chat.inbox(OUTSIDER)[-1], data)
        await ctx.flush()
        assert "没有找到" in texts(await chat.send(OUTSIDER, f"/item {number}"))
