"""With several replicas every one serves the web chat (issue #19.3): the transcript is in the
database, a long poll on one replica wakes when another writes (LISTEN/NOTIFY), a button sent by
one replica is pressed on the other, and two updates of one person never run at once."""
from __future__ import annotations

import asyncio
import logging

import pytest

from tests.conftest import make_settings
from tests.web.conftest import phone_sign_in, running

pytestmark = pytest.mark.postgres


async def two_sites(tmp_path, pg_url):
    """Two running replicas on one database; every replica has the same secret (docs/deploy.md)."""
    sites = []
    for name in ("a", "b"):
        s = make_settings(tmp_path / name, database_url=pg_url, demo=False, sms_provider="console",
                          api_token_secret="shared-by-every-replica-0123456789", leader_retry_seconds=0.2)
        life = running(s)
        sites.append((await life.__aenter__(), life))
    return sites


async def test_any_replica_serves_the_web_chat_and_a_long_poll_wakes_for_a_line_written_on_another(
        tmp_path, pg_url, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    sites = await two_sites(tmp_path, pg_url)
    (a, _), (b, _) = sites
    on_a, on_b = a.browser(), b.browser()
    try:
        assert a.ctx.leader.is_leader != b.ctx.leader.is_leader
        await phone_sign_in(b, on_b, caplog)  # signing in works on any replica
        on_a.c.cookies = on_b.c.cookies  # the proxy sends the same browser to either

        r = await on_b.post("/chat/api/send", json={"text": "/start"})  # the follower serves it
        assert r.status_code == 200, r.text
        shown = (await on_a.get("/chat/api/messages")).json()  # the other replica shows it all
        assert any(m["mine"] and m["text"] == "/start" for m in shown["messages"])
        assert any(not m["mine"] for m in shown["messages"])
        assert [m["seq"] for m in shown["messages"]] == sorted(m["seq"] for m in shown["messages"])

        # A long poll on A, then the person writes on B: A answers with B's lines.
        since = shown["last"]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        poll = asyncio.create_task(on_a.get("/chat/api/messages", params={"since": since, "wait": 20}))
        await asyncio.sleep(0.5)
        assert not poll.done()  # it waits
        r = await on_b.post("/chat/api/send", json={"text": "帮助"})
        assert r.status_code == 200
        woke = (await poll).json()
        assert loop.time() - t0 < 15  # woken by the notification, not by the end of the wait
        assert any(m["mine"] and m["text"] == "帮助" for m in woke["messages"])
        assert woke["last"] > since

        # A button the bot sent through A is pressed on B (the message is read from the database).
        everything = (await on_b.get("/chat/api/messages")).json()["messages"]
        with_buttons = [m for m in everything if not m["mine"] and m["inline"]]
        assert with_buttons, everything
        m = with_buttons[-1]
        r = await on_b.post("/chat/api/press", json={"message_id": m["message_id"], "data": m["inline"][0][0]["data"]})
        assert r.status_code == 200, r.text
        after = (await on_a.get("/chat/api/messages", params={"since": woke["last"]})).json()["messages"]
        assert any(x["mine"] and x.get("press") for x in after)
    finally:
        for br in (on_a, on_b):
            await br.aclose()
        for _site, life in reversed(sites):
            await life.__aexit__(None, None, None)


async def test_two_updates_of_one_person_on_two_replicas_run_one_after_the_other(tmp_path, pg_url):
    """The person lock (bot.isolation): while replica A handles an update of a person, the same
    person's update on replica B waits; another person's does not."""
    from aiogram.fsm.storage.base import StorageKey

    sites = await two_sites(tmp_path, pg_url)
    (a, _), (b, _) = sites
    iso_a = a.ctx.dispatcher.fsm.events_isolation
    iso_b = b.ctx.dispatcher.fsm.events_isolation
    key = StorageKey(bot_id=1, chat_id=42, user_id=42)
    try:
        order: list[str] = []
        async with iso_a.lock(key):
            other = asyncio.create_task(_hold(iso_b, key, order))
            stranger = asyncio.create_task(_hold(iso_b, StorageKey(bot_id=1, chat_id=43, user_id=43), order))
            await asyncio.wait_for(stranger, 10)  # another person is not held up
            await asyncio.sleep(0.5)
            assert not other.done()
            order.append("a done")
        await asyncio.wait_for(other, 10)
        assert order == ["b 43", "a done", "b 42"]
    finally:
        for _site, life in reversed(sites):
            await life.__aexit__(None, None, None)


async def _hold(iso, key, order: list[str]) -> None:
    async with iso.lock(key):
        order.append(f"b {key.chat_id}")
