"""With several replicas the web chat is served by the leader: a follower answers the chat API
with 503 (the proxy tries the next replica), the signed-in session works on every replica, and
after a failover the new leader shows the person's transcript from the database."""
from __future__ import annotations

import logging

import pytest

from tests.conftest import make_settings
from tests.replicas.test_leader import until
from tests.web.conftest import phone_sign_in, running

pytestmark = pytest.mark.postgres


async def open_site(settings):
    """A running replica and the context to stop it with (``await life.__aexit__(...)``)."""
    life = running(settings)
    return await life.__aenter__(), life


async def test_the_web_chat_is_served_by_the_leader_and_moves_with_it(tmp_path, pg_url, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    sites = []
    for name in ("a", "b"):
        # Every replica has the same secret (sessions, CSRF): docs/deploy.md.
        s = make_settings(tmp_path / name, database_url=pg_url, demo=False, sms_provider="console",
                          api_token_secret="shared-by-every-replica-0123456789", leader_retry_seconds=0.2)
        sites.append(await open_site(s))
    (a, a_life), (b, b_life) = sites
    on_a, on_b = a.browser(), b.browser()
    try:
        assert a.ctx.leader.is_leader and not b.ctx.leader.is_leader
        await phone_sign_in(b, on_b, caplog)  # signing in works on any replica
        on_a.c.cookies = on_b.c.cookies  # the proxy sends the same browser to either

        r = await on_b.get("/chat/api/messages")
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
        assert "另一台服务器" in r.json()["message"]

        r = await on_a.post("/chat/api/send", json={"text": "/start"})
        assert r.status_code == 200, r.text
        shown = (await on_a.get("/chat/api/messages")).json()["messages"]
        assert any(m["mine"] and m["text"] == "/start" for m in shown)
        replies = [m for m in shown if not m["mine"]]
        assert replies

        await a_life.__aexit__(None, None, None)
        sites.remove((a, a_life))
        await until(lambda: b.ctx.leader.is_leader, timeout=5)
        r = await on_b.get("/chat/api/messages")
        assert r.status_code == 200, r.text
        after = r.json()["messages"]
        assert [m["text"] for m in after] == [m["text"] for m in shown]
        assert r.json()["last"] >= max(m["seq"] for m in shown)
        r = await on_b.post("/chat/api/send", json={"text": "/start"})
        assert r.status_code == 200
        again = (await on_b.get("/chat/api/messages", params={"since": r.json().get("last", 0)})).json()
        newest = [m for m in again["messages"] if m["seq"] > max(m["seq"] for m in shown)]
        assert any(m["mine"] and m["text"] == "/start" for m in newest)  # numbered after the stored ones
    finally:
        for br in (on_a, on_b):
            await br.aclose()
        for _site, life in reversed(sites):
            await life.__aexit__(None, None, None)
