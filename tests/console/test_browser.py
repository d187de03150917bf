"""The console in a real Chromium against a real ``hehe serve``: each role signs in (invite →
password + TOTP) and does its main task end to end — the mediator records an outcome, the
official drills from a chart bar to a case, the admin revokes an invite — and is refused the
other roles' pages. Screenshots of each main page at 1280 px and 390 px go to
docs/screenshots/console/ (docs/console.md shows them)."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pyotp
import pytest

from backend.console.api import PAGES
from backend.core.db import make_engine, make_sessionmaker, session_scope
from backend.core.storage import LocalStore
from backend.disputes import service as disputes
from backend.users import service as users
from backend.users.models import Role
from tests.browser.test_web_sign_in import hehe
from tests.browser.test_webchat import CHROMIUM, CHROMIUM_ARGS
from tests.console.conftest import FAMILY_PHOTOS, FOUND_PHOTOS, file_face_match
from tests.conftest import make_settings
from tests.serving import hehe_serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "console"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
PLACES = ["白云街道", "海门街道", "葭沚街道", "洪家街道", "章安街道", "下陈街道"]
CASES = [("neighbor", "邻居装修噪音一直到深夜，多次沟通无果，对方说再吵就动手"),
         ("property", "楼上漏水把我家天花板泡坏了，物业推脱不管"),
         ("labor", "工地拖欠三个月工资共计两万元，十几个工友一起讨薪"),
         ("land_contract", "土地承包合同到期后对方不肯归还承包地"),
         ("family", "兄弟因赡养老人费用分摊发生争执")]


def _seed(data: Path, tmp: Path, face_engine) -> None:
    """Cases across 椒江区's townships, some accepted and resolved, filed through the service;
    a face-match candidate made by the missing slice with the real face model (``face_engine``)."""
    from backend.faces.service import FaceService

    settings = make_settings(tmp, data_dir=data, face_enabled=True)
    faces = FaceService(settings)
    faces.engine = face_engine
    faces.load()

    async def run():
        engine = make_engine(settings.db_url)
        async with session_scope(make_sessionmaker(engine)) as s:
            citizen, _ = await users.get_or_create_user(s, 880001, name="王女士")
            helper, _ = await users.get_or_create_user(s, 880002, name="种子调解员")
            await users.set_role(s, helper, Role.mediator, await users.find_jurisdiction(s, "椒江区"), actor="test")
            for i in range(30):
                cat, text = CASES[i % len(CASES)]
                place = await users.find_jurisdiction(s, PLACES[i % len(PLACES)])
                d = await disputes.create_case(s, citizen=citizen, category=cat, description=f"{text}（{i + 1}）",
                                               place=place, phone="13912345678")
                if i % 3 == 0:
                    await disputes.accept(s, d, helper)
                    if i % 2 == 0:
                        await disputes.record_outcome(s, d, helper, True, agreement="双方达成和解")
            store = LocalStore(settings.data_dir)
            await file_face_match(s, store, faces)
            await _seed_more(s, store)
        await engine.dispose()

    asyncio.run(run())
    faces.flush()


@pytest.fixture(scope="module")
def face_engine(tmp_path_factory):
    """The real face model, loaded once for this module (the seed and the crop checks)."""
    from backend.faces.engine import FaceEngine

    engine = FaceEngine(make_settings(tmp_path_factory.mktemp("console-models"), face_enabled=True)).load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, template_db: Path, face_engine):
    tmp = tmp_path_factory.mktemp("console")
    data = tmp / "data"
    data.mkdir()
    shutil.copyfile(template_db, data / "hehe.db")
    _seed(data, tmp, face_engine)
    with hehe_serve(tmp, data, timeout=180, HEHE_FACE_ENABLED="0", HEHE_KB_ENABLED="0",
                    HEHE_SMS_PROVIDER="console", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1") as (base, _checks):
        yield base, data


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


async def _seed_more(s, store) -> None:
    """A deputy's supervision item at 白云街道, and a help request from an officer of 路桥区 to 椒江区."""
    from backend.core.files import store_file
    from backend.missing.models import AssistRequest
    from backend.supervision import service as sup
    from tests.console.conftest import FACES

    deputy, _ = await users.get_or_create_user(s, 880003, name="陈代表")
    await users.set_role(s, deputy, Role.deputy, await users.find_jurisdiction(s, "椒江区"), actor="test")
    await sup.propose(s, deputy, sup.Draft(title="白云街道河道长期排污", area="生态环境", place_id=(
        await users.find_jurisdiction(s, "白云街道")).id,
        description="白云街道某河道长期有工厂排污，气味很大，附近居民反映多次无果。"))
    asker, _ = await users.get_or_create_user(s, 880004, name="路桥派出所")
    await users.set_role(s, asker, Role.officer, await users.find_jurisdiction(s, "路桥区"), actor="test")
    photo = sorted((FACES / "obama").iterdir())[0]
    f = await store_file(s, store, photo.read_bytes(), mime="image/jpeg", filename="assist-card.jpg",
                         owner_kind="missing_assist", owner_id=None)
    s.add(AssistRequest(requester_id=asker.id, jurisdiction_id=asker.jurisdiction_id, photo_id=f.id,
                        marked_photo_id=f.id, note="路桥火车站发现一名老人，说不清住址", status="open",
                        target_id=(await users.find_jurisdiction(s, "椒江区")).id))


def _forget_invite_attempts(data: Path) -> None:
    """Every browser here redeems its invite from 127.0.0.1, and the module's server signs in more
    staff than the per-address hourly limit on invite redemptions (10) allows: clear that counter."""
    import sqlite3

    con = sqlite3.connect(data / "hehe.db", timeout=30)
    try:
        con.execute("DELETE FROM rate_counters WHERE key LIKE 'invite:client:%'")
        con.commit()
    finally:
        con.close()


def staff(browser, server, role: Role, login: str, viewport=WIDE, title: str | None = None):
    """A browser context signed in as a new staff person: the invite redeemed and the TOTP
    confirmed through the sign-in API, in the browser's own cookie jar."""
    base, data = server
    args = ["invite", "create", "--role", role.value, "--expires", "1d"]
    if role != Role.admin:
        args += ["--jurisdiction", "椒江区"]
    if title:
        args += ["--title", title]
    code = hehe(data, *args)
    _forget_invite_attempts(data)
    ctx = browser.new_context(viewport=viewport, locale="zh-CN", base_url=base)
    r = ctx.request.post("/auth/api/invite", data={"code": code, "login": login, "name": f"{login}同志",
                                                   "password": PASSWORD})
    assert r.ok, r.text()
    secret = r.json()["totp_secret"]
    csrf = next(c["value"] for c in ctx.cookies() if c["name"] == "hehe_csrf")
    r = ctx.request.post("/auth/api/totp", data={"code": pyotp.TOTP(secret).now()},
                         headers={"x-csrf-token": csrf})
    assert r.ok, r.text()
    return ctx


def on_phone(browser, server, ctx):
    """A 390 px page signed in as the person of ``ctx``."""
    return browser.new_context(viewport=PHONE, locale="zh-CN", base_url=server[0],
                               storage_state=ctx.storage_state()).new_page()


def wait_until(page, expression: str, timeout: float = 20.0) -> None:
    """Poll ``expression`` from the test side. (``page.wait_for_function`` polls with ``eval``
    inside the page, which the console's CSP, script-src 'self', rightly refuses.)"""
    import time

    end = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < end, f"not true within {timeout} s: {expression}"
        page.wait_for_timeout(100)


def shot(page, name: str, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    wait_until(page, "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(SHOTS / f"{name}-{page.viewport_size['width']}.png"), full_page=full)


def refused_elsewhere(page, role: Role) -> None:
    for p in PAGES:
        if role not in p.roles and role != Role.admin:
            resp = page.goto(p.path)
            assert resp.status == 403, (role, p.path)
            assert "无权访问" in page.content()


def test_a_mediator_works_the_queue_and_records_an_outcome_in_the_browser(server, browser):
    from playwright.sync_api import expect

    ctx = staff(browser, server, Role.mediator, "med1")
    page = ctx.new_page()
    page.goto("/console")
    assert page.url.endswith("/console/cases")
    expect(page.locator("a[data-page=cases]")).to_have_text("案件队列")
    page.click("a[data-tab=new]")
    expect(page.locator(".total")).to_contain_text("共")
    shot(page, "cases")
    page.locator("table.cases tbody tr a").first.click()
    expect(page.locator("details[data-action=accept]")).to_be_visible()
    page.fill("details[data-action=accept] input[name=note]", "已电话联系双方")
    page.click("details[data-action=accept] button[type=submit]")
    expect(page.locator("details[data-action=succeed]")).to_be_visible()
    page.click("details[data-action=succeed] summary")
    page.fill("details[data-action=succeed] textarea[name=agreement]", "双方同意晚上十点后停止施工")
    page.click("details[data-action=succeed] button[type=submit]")
    expect(page.locator(".outcome")).to_contain_text("双方同意晚上十点后停止施工")
    expect(page.locator(".timeline")).to_contain_text("已电话联系双方")
    shot(page, "case")
    refused_elsewhere(page, Role.mediator)
    phone = on_phone(browser, server, ctx)
    phone.goto("/console/cases?tab=open")
    shot(phone, "cases")
    phone.locator("table.cases tbody tr a").first.click()
    shot(phone, "case")
    ctx.close()


def test_an_official_drills_from_a_chart_bar_to_the_cases_and_opens_one(server, browser):
    from playwright.sync_api import expect

    ctx = staff(browser, server, Role.official, "off1")
    page = ctx.new_page()
    page.goto("/console/board")
    expect(page.locator("body[data-charts-ready='1']")).to_have_count(1)
    page.wait_for_timeout(800)  # the bars' entry animation
    shot(page, "board")
    x, y = page.evaluate("""() => {
        const el = document.getElementById('chart-places');
        const c = echarts.getInstanceByDom(el);
        const d = JSON.parse(document.getElementById('figures').textContent).places[0];
        const p = c.convertToPixel({seriesIndex: 0}, [0, d.total / 2]);
        const r = el.getBoundingClientRect();
        return [r.left + p[0], r.top + p[1]];
    }""")
    page.mouse.click(x, y)
    page.wait_for_url(lambda u: "place=" in u)
    assert "/console/cases" in page.url
    expect(page.locator(".total")).not_to_contain_text("共 0 件")
    page.locator("table.cases tbody tr a").first.click()
    expect(page.locator(".phone")).to_contain_text("139****5678")  # an official sees it masked
    refused_elsewhere(page, Role.official)
    phone = on_phone(browser, server, ctx)
    phone.goto("/console/board")
    expect(phone.locator("body[data-charts-ready='1']")).to_have_count(1)
    phone.wait_for_timeout(800)
    shot(phone, "board")
    ctx.close()


def test_an_admin_creates_and_revokes_an_invite_in_the_browser(server, browser):
    from playwright.sync_api import expect

    ctx = staff(browser, server, Role.admin, "adm1")
    page = ctx.new_page()
    page.goto("/console/admin")
    page.select_option("#new-invite select[name=role]", "mediator")
    page.fill("#new-invite input[name=jurisdiction]", "椒江区")
    page.click("#new-invite button[type=submit]")
    notice = page.locator(".notice")
    expect(notice).to_contain_text("已创建邀请码")
    code = notice.inner_text().split("：")[-1].strip()
    row = page.locator(f"tr[data-invite='{code}']")
    expect(row.locator(".state")).to_contain_text("可用")
    with page.expect_response(lambda r: r.url.endswith("/revoke")) as answer:
        row.locator("button").click()
    assert answer.value.status == 200, answer.value.text()
    page.wait_for_load_state()
    expect(page.locator(f"tr[data-invite='{code}'] .state")).to_have_text("已失效", timeout=15_000)
    page.fill("#audit-filters input[name=action]", "invite.")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit")).to_contain_text("invite.revoked")
    shot(page, "admin")
    phone = on_phone(browser, server, ctx)
    phone.goto("/console/admin")
    shot(phone, "admin")
    ctx.close()


def matched_photos(data: Path) -> list[tuple[bytes, dict]]:
    """The seed's matched photo of each side (missing, found) and the face box the model recorded."""
    import json
    import sqlite3

    con = sqlite3.connect(data / "hehe.db")
    try:
        m, f = con.execute("SELECT missing_photo, found_photo FROM missing_candidates").fetchone()
        boxes = dict(con.execute("SELECT kind, photo_faces FROM missing_cases").fetchall())
    finally:
        con.close()
    return [(FAMILY_PHOTOS[m][0].read_bytes(), json.loads(boxes["missing"])[m]),
            (FOUND_PHOTOS[f][0].read_bytes(), json.loads(boxes["found"])[f])]


def shown_image(img):
    """The picture of the ``img`` locator as the browser decoded it (drawn on a canvas, read back)."""
    import base64
    import io

    from PIL import Image

    url = img.evaluate("""(i) => {
        const c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight;
        c.getContext('2d').drawImage(i, 0, 0);
        return c.toDataURL('image/png');
    }""")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def test_two_officers_confirm_a_face_match_in_two_steps_and_the_family_is_told(server, browser, face_engine):
    import sqlite3

    import cv2
    import numpy as np
    from playwright.sync_api import expect

    from tests.missing.cards import check_card

    first = staff(browser, server, Role.officer, "pol1")
    page = first.new_page()
    page.goto("/console")
    assert page.url.endswith("/console/faces")
    shot(page, "faces")
    page.locator("a.facerow").first.click()
    expect(page.locator("img.review-card")).to_be_visible()
    wait_until(page, "() => document.querySelector('img.review-card').naturalWidth > 0")
    # the card the officer sees: the crops of the two photos that matched (the family's group
    # photo, 2/2, not its first photo), large and side by side, over the source photos with the
    # chosen face boxed — recomputed from the photos and the boxes the real model recorded
    crops = check_card(shown_image(page.locator("img.review-card")), matched_photos(server[1]))
    found = [face_engine.detect(cv2.cvtColor(np.asarray(c), cv2.COLOR_RGB2BGR)) for c in crops]
    assert [len(f) for f in found] == [1, 1] and min(f[0].size for f in found) >= 120  # one large face each
    assert float(found[0][0].embedding @ found[1][0].embedding) >= face_engine.settings.face_review_threshold
    expect(page.locator(".thumbs a.matched")).to_have_count(2)
    assert page.locator(".thumbs a.matched").first.get_attribute("href").endswith("/photos/1")
    expect(page.locator(".thumbs img")).to_have_count(len(FAMILY_PHOTOS) + len(FOUND_PHOTOS))
    shot(page, "face")
    # the same officer in the web chat: /missing_review sends the same card as a photo
    chat = browser.new_context(viewport={"width": 390, "height": 1400}, locale="zh-CN", base_url=server[0],
                               storage_state=first.storage_state()).new_page()  # tall: the whole card
    chat.goto("/chat")
    expect(chat.locator("#text")).to_be_visible(timeout=20_000)
    chat.fill("#text", "/missing_review")
    chat.press("#text", "Enter")
    card = chat.locator(".msg.bot", has_text="待审核").last
    expect(card.locator("img")).to_have_count(1, timeout=20_000)
    expect(card).to_contain_text("第 2/2 张照片")  # the caption names the family's photo that matched
    wait_until(chat, "() => Array.from(document.querySelectorAll('.msg.bot img')).every(i => i.naturalWidth > 0)")
    check_card(shown_image(card.locator("img")), matched_photos(server[1]))
    card.scroll_into_view_if_needed()
    chat.screenshot(path=str(SHOTS.parent / "missing_review_card_webchat-390.png"))
    chat.context.close()
    page.check("#confirm input[value=face]")
    page.check("#confirm input[value=sex]")
    page.click("#confirm button[type=submit]")
    expect(page.locator("#confirm .msg")).to_contain_text("再看一眼")  # the second look
    page.click("#confirm button[type=submit]")
    expect(page.locator("#cand-status")).to_have_text("待第二人确认")
    expect(page.locator("#second")).to_have_count(0)  # never by the same officer
    refused_elsewhere(page, Role.officer)
    second = staff(browser, server, Role.officer, "pol2")
    page2 = second.new_page()
    page2.goto("/console/faces")
    page2.locator("a.facerow").first.click()
    expect(page2.locator(".first-by")).to_contain_text("面部特征一致")
    page2.click("#second button[type=submit]")
    page2.click("#second button[type=submit]")
    expect(page2.locator("#cand-status")).to_have_text("已确认")
    con = sqlite3.connect(server[1] / "hehe.db")
    try:
        rows = con.execute("SELECT o.user_id FROM outbox o JOIN missing_cases m ON o.user_id = m.reporter_id "
                           "WHERE o.dedupe_key LIKE 'missing:found:%' AND m.kind = 'missing'").fetchall()
    finally:
        con.close()
    assert rows, "the family's notice is queued (sent when the undo window closes)"
    phone = on_phone(browser, server, second)
    phone.goto("/console/faces")
    shot(phone, "faces")
    phone.goto("/console/faces/1")
    shot(phone, "face")
    first.close()
    second.close()


@pytest.mark.parametrize("role", [Role.procurator, Role.deputy], ids=lambda r: r.value)
def test_the_other_staff_roles_are_refused_the_pages_not_theirs(server, browser, role):
    ctx = staff(browser, server, role, f"{role.value}1")
    page = ctx.new_page()
    page.goto("/console")
    refused_elsewhere(page, role)
    if role == Role.procurator:
        page.goto("/console/supervision")
        shot(page, "supervision")
        phone = on_phone(browser, server, ctx)
        phone.goto("/console/supervision")
        shot(phone, "supervision")
    ctx.close()


def test_the_sign_in_form_answers_an_anonymous_visitor(server, browser):
    ctx = browser.new_context(viewport=PHONE, locale="zh-CN", base_url=server[0])
    page = ctx.new_page()
    resp = page.goto("/console/cases")
    assert resp.status == 401
    page.fill("#signin input[name=login]", "nobody")
    page.fill("#signin input[name=password]", "wrong password 1")
    page.click("#signin button[type=submit]")
    from playwright.sync_api import expect

    expect(page.locator("#signin .msg")).not_to_be_empty()
    shot(page, "signin")
    ctx.close()


def test_a_supervisor_keeps_a_template_and_bulk_replies_with_it_in_the_browser(server, browser):
    import sqlite3

    from playwright.sync_api import expect

    ctx = staff(browser, server, Role.mediator, "sup1", title="supervisor")
    page = ctx.new_page()
    page.goto("/console/templates")
    page.fill("#new-template input[name=name]", "进展告知")
    page.fill("#new-template textarea[name=body]", "您的纠纷 {number} 正在办理中，调解员将尽快与您联系。")
    page.click("#new-template button[type=submit]")
    expect(page.locator("tr[data-template='进展告知']")).to_have_count(1)
    shot(page, "templates")
    page.goto("/console/cases?tab=new")
    boxes = page.locator("input[name=ids]")
    for i in range(3):
        boxes.nth(i).check()
    numbers = [page.locator("table.cases tbody tr").nth(i).locator("a").inner_text() for i in range(3)]
    page.select_option("#bulk select[name=action]", "reply")
    page.select_option("#bulk select[name=template_id]", label="进展告知")
    page.click("#bulk button[type=submit]")
    expect(page.locator("#bulk .msg")).to_contain_text("完成 3 件，失败 0 件")
    expect(page.locator("#bulk .bulk-results li.ok")).to_have_count(3)
    shot(page, "bulk")
    con = sqlite3.connect(server[1] / "hehe.db")
    try:
        texts = [t for (t,) in con.execute("SELECT text FROM outbox WHERE text LIKE '%正在办理中%'")]
    finally:
        con.close()
    assert sorted(n for n in numbers if any(n in t for t in texts)) == sorted(numbers)
    page.locator("table.cases tbody tr a", has_text=numbers[0]).click()
    expect(page.locator(".timeline")).to_contain_text("正在办理中")
    phone = on_phone(browser, server, ctx)
    phone.goto("/console/templates")
    shot(phone, "templates")
    ctx.close()


def test_a_procurator_opens_a_supervision_item_and_accepts_it_in_the_browser(server, browser):
    from playwright.sync_api import expect

    ctx = staff(browser, server, Role.procurator, "proc2")
    page = ctx.new_page()
    page.goto("/console/supervision")
    page.locator("tr[data-item-row] a").first.click()
    expect(page.locator("h1")).to_contain_text("白云街道河道长期排污")
    expect(page.locator("details[data-action=accept]")).to_be_visible()
    page.fill("details[data-action=accept] input[name=note]", "已受理，派员调查")
    page.click("details[data-action=accept] button[type=submit]")
    expect(page.locator("#item-status")).to_have_text("已受理", timeout=15_000)
    expect(page.locator(".timeline")).to_contain_text("已受理，派员调查")
    page.locator("details[data-action=suggest]").evaluate("d => { d.open = true; }")
    page.fill("details[data-action=suggest] input[name=agency]", "椒江区生态环境分局")
    page.fill("details[data-action=suggest] textarea[name=content]", "责令排污企业限期整改，并向本院书面回复。")
    page.click("details[data-action=suggest] button[type=submit]")
    expect(page.locator("#suggestions")).to_contain_text("椒江区生态环境分局", timeout=15_000)
    expect(page.locator("details[data-action=reply]")).to_have_count(1)
    shot(page, "supervision-item")
    phone = on_phone(browser, server, ctx)
    phone.goto(page.url)
    shot(phone, "supervision-item")
    ctx.close()


def test_an_admin_changes_a_persons_role_and_imports_jurisdictions_in_the_browser(server, browser, tmp_path):
    from playwright.sync_api import expect

    other = staff(browser, server, Role.mediator, "med9")
    other_page = other.new_page()
    other_page.goto("/console/board")
    assert other_page.url.endswith("/console/board")
    ctx = staff(browser, server, Role.admin, "adm2")
    page = ctx.new_page()
    page.goto("/console/admin")
    row = page.locator("#people tr[data-user]", has_text="med9同志")
    uid = row.get_attribute("data-user")
    form = page.locator(f"tr[data-user-form='{uid}']")
    form.locator("summary").click()
    form.locator("select[name=role]").select_option("official")
    form.locator("button[type=submit]").click()
    expect(page.locator(f"tr[data-user='{uid}'] .role")).to_have_text("督导领导", timeout=15_000)
    resp = other_page.goto("/console/board")
    assert resp.status == 200  # the person now opens the official's board
    bad = tmp_path / "bad.csv"
    bad.write_text("county,township\n火星区,某街道\n", encoding="utf-8")
    page.set_input_files("#import input[type=file]", str(bad))
    page.click("#import button[type=submit]")
    expect(page.locator("#import .msg")).to_contain_text("火星区")
    good = tmp_path / "good.csv"
    good.write_text("county,township,village\n椒江区,白云街道,浏览器新村\n", encoding="utf-8")
    page.set_input_files("#import input[type=file]", str(good))
    page.click("#import button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("新增 1 个", timeout=15_000)
    shot(page, "admin-users", full=False)  # the top: people, role form, import (the log runs long)
    phone = on_phone(browser, server, ctx)
    phone.goto("/console/admin")
    phone.locator(f"tr[data-user-form='{uid}'] summary").click()
    shot(phone, "admin-users", full=False)
    other.close()
    ctx.close()


def test_an_officer_answers_a_help_request_sent_to_the_county_in_the_browser(server, browser):
    from playwright.sync_api import expect

    ctx = staff(browser, server, Role.officer, "pol9")
    page = ctx.new_page()
    page.goto("/console/assist")
    req = page.locator("section.assist").first
    expect(req).to_contain_text("路桥火车站发现一名老人")
    wait_until(page, "() => document.querySelector('img.assist-photo').naturalWidth > 0")
    shot(page, "assist")
    req.locator("input[name=note]").fill("本区无此人走失报案")
    req.locator("button[type=submit]").click()
    expect(page.locator("section.assist .answered").first).to_contain_text("本区无此人走失报案", timeout=15_000)
    phone = on_phone(browser, server, ctx)
    phone.goto("/console/assist")
    shot(phone, "assist")
    ctx.close()
