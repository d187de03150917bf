"""Signing in on the web page in a real Chromium against a real ``hehe serve`` (no demo mode):
a citizen with a code from the console SMS provider files a dispute on a 390 px phone screen;
a staff member redeems an invite, sets a password and TOTP and sees their menu; a second
browser sees neither the messages nor the files of the first."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
from PIL import Image

from tests.browser.test_webchat import CHROMIUM, CHROMIUM_ARGS
from tests.serving import hehe_serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def server(tmp_path: Path, template_db: Path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(template_db, data / "hehe.db")
    with hehe_serve(tmp_path, data, timeout=180, HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0",
                    HEHE_SMS_PROVIDER="console", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1") as (base, _checks):
        yield base, tmp_path / "serve.log", data


def code_from(log: Path, phone: str, timeout: float = 20) -> str:
    masked = re.escape(phone[:3] + "****" + phone[-4:])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(rf"SMS sign-in code for {masked}: (\d{{6}})", log.read_text())
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError("no code in the server log:\n" + log.read_text()[-2000:])


def sign_in(page, base: str, log: Path, phone: str, name: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/chat")
    page.fill("#phone", phone)
    page.click("#getcode")
    page.fill("#code", code_from(log, phone))
    page.fill("#pname", name)
    page.click("#f-phone button[type=submit]")
    expect(page.locator("#text")).to_be_visible(timeout=20_000)


def send(page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def jpeg_file(tmp_path: Path) -> Path:
    p = tmp_path / "scene.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(buf, "JPEG")
    p.write_bytes(buf.getvalue())
    return p


def test_a_citizen_signs_in_with_a_console_code_and_files_a_dispute_on_a_390px_screen(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, log, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=PHONE, locale="zh-CN", geolocation={"latitude": 28.6730,
                                          "longitude": 121.4420}, permissions=["geolocation"])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())  # "send your location?" — yes
            page.goto(base + "/chat")
            expect(page.locator("#f-phone")).to_be_visible(timeout=20_000)
            assert page.locator("text=手机号登录").is_visible()  # Chinese first
            page.click("#lang")
            expect(page.locator("button[data-tab=phone]")).to_have_text("Phone")
            page.click("#lang")
            sign_in(page, base, log, "13912345678", "王五")
            send(page, "/report")
            page.locator(".msg.bot .kb button", has_text="邻里纠纷").last.click()
            expect(page.locator(".msg.me", has_text="邻里纠纷")).to_be_visible(timeout=20_000)
            send(page, "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")
            expect(page.locator(".msg.bot")).not_to_have_count(0)
            page.wait_for_timeout(500)
            page.click("#loc")  # the browser's real geolocation, after consent
            expect(page.locator(".msg.bot", has_text="椒江区").last).to_be_visible(timeout=20_000)
            send(page, "隔壁302住户")
            page.wait_for_timeout(500)
            page.set_input_files("#camera", str(jpeg_file(tmp_path)))  # the camera input (capture)
            expect(page.locator(".msg.bot", has_text="第 1 份").last).to_be_visible(timeout=20_000)
            expect(page.locator(".msg.me img")).to_have_count(1)
            page.locator("button", has_text="完成").last.click()
            page.wait_for_timeout(500)
            send(page, "138 1234 5678")
            page.locator("button", has_text="确认提交").last.click()
            done = page.locator(".msg.bot", has_text="TZ-JJ-")
            expect(done).to_be_visible(timeout=20_000)
            # Used buttons stay disabled; every message has a time; nothing is wider than the phone.
            expect(page.locator(".msg.bot .kb button", has_text="邻里纠纷").last).to_be_disabled()
            assert page.locator(".msg .at").count() >= page.locator(".msg.me").count()
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            # History is kept across a reload.
            page.reload()
            expect(page.locator(".msg.bot", has_text="TZ-JJ-")).to_be_visible(timeout=20_000)
            expect(page.locator(".msg.me", has_text="隔壁302住户")).to_be_visible()
            if os.environ.get("HEHE_SCREENSHOT_DIR"):
                page.screenshot(path=str(Path(os.environ["HEHE_SCREENSHOT_DIR"]) / "web-citizen-390.png"))
            assert not errors, errors
        finally:
            browser.close()


def hehe(data: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEHE_")}
    env.update(HEHE_DATA_DIR=str(data), HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0")
    exe = shutil.which("hehe", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "backend.cli"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120, cwd=data.parent,
                       check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_a_staff_member_redeems_an_invite_sets_password_and_totp_and_sees_their_menu(server):
    from playwright.sync_api import expect, sync_playwright

    base, _log, data = server
    code = hehe(data, "invite", "create", "--role", "mediator", "--jurisdiction", "椒江区", "--expires", "1d")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=PHONE, locale="zh-CN")
            page.goto(base + "/chat")
            page.click("button[data-tab=invite]")
            page.fill("#icode", code)
            page.fill("#iname", "李调解")
            page.fill("#ilogin", "li.mediator")
            page.fill("#ipass", "a long pass phrase 2026")
            page.click("#f-invite button[type=submit]")
            secret = page.locator("#secret")
            expect(secret).to_be_visible(timeout=20_000)
            totp = pyotp.TOTP(secret.inner_text().replace(" ", ""))
            assert page.locator("#qr").evaluate("img => img.complete && img.naturalWidth > 100")
            page.fill("#ttotp", "000000")
            page.click("#f-totp button[type=submit]")
            expect(page.locator("#setup-msg")).not_to_be_empty()
            page.fill("#ttotp", totp.now())
            page.click("#f-totp button[type=submit]")
            expect(page.locator("#text")).to_be_visible(timeout=20_000)
            expect(page.locator("#whoami")).to_contain_text("调解员")
            send(page, "/start")
            welcome = page.locator(".msg.bot", has_text="调解员").last
            expect(welcome).to_be_visible(timeout=20_000)
            assert welcome.locator(".kb button").count() >= 2  # the mediator's menu
            # Signing in again later needs the password and a new TOTP code.
            page.click("#menu")
            page.click("#logout")
            page.click("button[data-tab=staff]")
            page.fill("#slogin", "li.mediator")
            page.fill("#spass", "a long pass phrase 2026")
            time.sleep(max(0.0, 30 - time.time() % 30) + 0.5)  # the code of the next 30 s step
            page.fill("#stotp", totp.now())
            page.click("#f-staff button[type=submit]")
            expect(page.locator("#text")).to_be_visible(timeout=20_000)
        finally:
            browser.close()


def test_a_second_browser_cannot_see_the_first_ones_messages_or_files(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, log, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            first = browser.new_context(viewport=PHONE).new_page()
            sign_in(first, base, log, "13500000001", "甲")
            send(first, "我住东山路88号3单元502室")
            first.set_input_files("#file", str(jpeg_file(tmp_path)))
            img = first.locator(".msg.me img")
            expect(img).to_have_count(1, timeout=20_000)
            src = img.get_attribute("src")
            assert first.request.get(base + src).status == 200

            second = browser.new_context(viewport=PHONE).new_page()
            sign_in(second, base, log, "13500000002", "乙")
            send(second, "/start")
            expect(second.locator(".msg.bot").first).to_be_visible(timeout=20_000)
            assert "东山路88号" not in second.locator("#log").inner_text()
            assert second.locator(".msg.me img").count() == 0
            assert second.request.get(base + src).status == 404
            assert second.request.get(base + "/chat/api/messages").ok
            assert "东山路" not in second.request.get(base + "/chat/api/messages").text()
        finally:
            browser.close()


def test_the_api_docs_render_from_local_assets_under_the_page_csp(server):
    from playwright.sync_api import expect, sync_playwright

    base, _log, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
            page.goto(base + "/docs")
            expect(page.locator(".info .title")).to_contain_text("Hehe", timeout=20_000)
            assert page.locator(".opblock").count() > 20
            assert not outside, outside  # no CDN
        finally:
            browser.close()
