"""The web chat in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real ``hehe serve`` process: send a message, see the reply, press a button."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.serving import hehe_serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def server(tmp_path: Path, template_db: Path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(template_db, data / "hehe.db")
    with hehe_serve(tmp_path, data, timeout=180, HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0", HEHE_DEMO="1",
                    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1") as (base, _checks):
        yield base


def test_web_chat_send_and_press(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900}, locale="zh-CN")
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/chat")
            page.click("#demo-new")  # demo mode: a new web user, signed in
            expect(page.locator("#text")).to_be_visible(timeout=20_000)

            page.fill("#text", "/start")
            page.press("#text", "Enter")
            welcome = page.locator(".msg.bot", has_text="台州市数字法治助手")
            expect(welcome).to_be_visible(timeout=20_000)
            expect(page.locator(".msg.me", has_text="/start")).to_be_visible()
            expect(welcome.locator(".kb button", has_text="帮助")).to_be_visible()

            welcome.locator(".kb button", has_text="帮助").click()
            help_msg = page.locator(".msg.bot", has_text="常用命令")
            expect(help_msg).to_be_visible(timeout=20_000)

            # Free text gets a polite answer, too.
            page.fill("#text", "你好")
            page.press("#text", "Enter")
            expect(page.locator(".msg.me", has_text="你好")).to_be_visible()
            expect(page.locator(".msg.bot")).to_have_count(3, timeout=20_000)

            shot = tmp_path / "webchat.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 5_000
            if os.environ.get("HEHE_SCREENSHOT_DIR"):  # keep a copy to look at
                shutil.copy(shot, Path(os.environ["HEHE_SCREENSHOT_DIR"]) / "webchat.png")
            assert not errors, errors
        finally:
            browser.close()


def test_web_chat_new_user_and_language(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(server + "/chat")
            page.fill("#demo-name", "李四")
            page.click("#demo-new")
            expect(page.locator("#whoami", has_text="李四")).to_have_count(1, timeout=20_000)
            page.fill("#text", "/lang")
            page.press("#text", "Enter")
            page.locator(".kb button", has_text="English").click()
            expect(page.locator(".msg.bot", has_text="Language set to English.")).to_be_visible(timeout=20_000)
        finally:
            browser.close()
