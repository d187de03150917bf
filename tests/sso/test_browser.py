"""A staff member signs in through the 浙政钉 mock in a real headless Chromium (Debian's
/usr/bin/chromium via Playwright): Hehe's sign-in screen, the provider's QR page on its own
origin, the confirmation, and back on Hehe's chat page, signed in."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.sso.conftest import provider_settings
from tests.sso.driver import running_hehe

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def test_staff_member_signs_in_through_zzd_in_chromium_and_lands_signed_in(tmp_path, template_db, zzd_mock):
    from playwright.sync_api import expect, sync_playwright

    settings = make_settings(tmp_path, demo=False, **provider_settings(zzd_mock))
    settings.ensure_dirs()
    shutil.copyfile(template_db, settings.data_dir / "hehe.db")
    with running_hehe(settings) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/chat")  # the sign-in screen; government sign-in is on the staff tab
            page.click("button[data-tab=staff]")
            page.locator("#providers a", has_text="浙政钉扫码登录").click()
            expect(page).to_have_url(re.compile(rf"^{re.escape(zzd_mock.base)}/oauth2/auth\.htm\?"))
            expect(page.locator("#qrcode")).to_be_visible()
            page.select_option("#account", "wangfang")
            page.click("#confirm")  # the phone scanned and confirmed
            expect(page).to_have_url(base + "/chat", timeout=20_000)
            expect(page.locator("#whoami")).to_contain_text("王芳", timeout=20_000)  # signed in, in the chat
            expect(page.locator("#chat")).to_be_visible()

            me = context.request.get(base + "/auth/api/me")
            assert me.status == 200, me.text()
            body = me.json()
            assert (body["user"]["name"], body["user"]["role"], body["method"]) == ("王芳", "citizen", "zzd")
            session_cookie = next(c for c in context.cookies() if c["name"] == "hehe_session")
            assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax"
            assert not any(c["name"] == "hehe_sso_state" for c in context.cookies())  # spent and cleared

            shot = tmp_path / "sso-zzd.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("HEHE_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["HEHE_SCREENSHOT_DIR"]) / "sso-zzd.png")
            assert not errors, errors
        finally:
            browser.close()
