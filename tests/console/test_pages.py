"""The console behind the web sign-in: each role sees its menu and its pages and is refused the
others'; lists filter (OR within a field, AND across), search, save views; the case page
masks what the service masks and offers the slice's own actions; exports need a fresh second
factor; bulk actions report per case and audit each."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from backend.auth.models import WebSession
from backend.console.api import PAGES
from backend.core.db import session_scope
from backend.users import service as users
from backend.core.clock import now
from backend.disputes.models import Dispute
from backend.users.models import AuditLog, InviteCode, Role
from tests.console.conftest import as_role, file_cases

PAGE_ROLES = {p.path: p.roles | {Role.admin} for p in PAGES}
STAFF = [r for r in Role if r != Role.citizen]


async def test_an_anonymous_visitor_gets_the_staff_sign_in_form_not_a_page(site):
    b = site.browser()
    for path in ["/console", *PAGE_ROLES, "/console/cases/1"]:
        r = await b.get(path)
        assert r.status_code == 401, path
        assert "工作人员登录" in r.text and 'data-api="/auth/api/password"' in r.text, path
    r = await b.get("/console/static/console.css")
    assert r.status_code == 200 and "text/css" in r.headers["content-type"]


async def test_a_citizen_signed_in_on_the_web_is_refused_every_console_page(site):
    b = await as_role(site, Role.citizen)
    for path in PAGE_ROLES:
        r = await b.get(path)
        assert r.status_code == 403 and "无权访问" in r.text, path


@pytest.mark.parametrize("role", STAFF, ids=[r.value for r in STAFF])
async def test_each_staff_role_opens_its_own_pages_sees_them_in_its_menu_and_is_refused_the_others(site, role):
    b = await as_role(site, role)
    home = await b.get("/console", follow_redirects=False)
    mine = [path for path, roles in PAGE_ROLES.items() if role in roles]
    if mine:
        assert home.status_code == 303 and home.headers["location"] == mine[0]
    else:
        assert home.status_code == 200 and "暂无工作台页面" in home.text
    for path, roles in PAGE_ROLES.items():
        r = await b.get(path)
        if role in roles:
            assert r.status_code == 200, (role, path, r.text[:300])
            for other, other_roles in PAGE_ROLES.items():
                assert (f'href="{other}"' in r.text) == (role in other_roles), (role, other)
        else:
            assert r.status_code == 403 and "此页面不属于您的角色" in r.text, (role, path)


async def test_a_staff_session_without_its_second_factor_gets_the_sign_in_form(site):
    b = await as_role(site, Role.mediator)
    async with site.ctx.sm() as s:
        await s.execute(update(WebSession).values(second_factor=False))
        await s.commit()
    r = await b.get("/console/cases")
    assert r.status_code == 401 and "工作人员登录" in r.text


async def test_the_mediator_queue_splits_cases_into_tabs_and_filters_combine(site):
    ids = await file_cases(site, 8)
    b = await as_role(site, Role.mediator)
    r = await b.get("/console/cases?tab=new")
    assert r.status_code == 200 and "共 8 件" in r.text
    # accept two through the same REST route the case page's button posts to
    for cid in ids[:2]:
        assert (await b.post(f"/api/disputes/{cid}/accept")).status_code == 200
    assert "共 6 件" in (await b.get("/console/cases?tab=new")).text
    assert "共 2 件" in (await b.get("/console/cases?tab=accepted")).text
    # several values of one field = OR; different fields = AND
    both = await b.get("/console/cases?tab=all&category=neighbor&category=labor")
    assert "共 4 件" in both.text
    narrowed = await b.get("/console/cases?tab=all&category=neighbor&category=labor&status=accepted")
    assert "共 1 件" in narrowed.text
    # search by text (the mediator reads it unmasked) and by number
    async with site.ctx.sm() as s:
        number = (await s.get(Dispute, ids[3])).number
    assert "共 2 件" in (await b.get("/console/cases?tab=all&q=土地承包")).text
    assert "共 1 件" in (await b.get(f"/console/cases?tab=all&q={number}")).text


async def test_the_at_risk_queue_holds_cases_whose_deadline_falls_within_the_chosen_window(site):
    ids = await file_cases(site, 3)
    async with site.ctx.sm() as s:
        await s.execute(update(Dispute).where(Dispute.id == ids[0]).values(accept_due=now() + timedelta(hours=5)))
        await s.execute(update(Dispute).where(Dispute.id == ids[1]).values(accept_due=now() + timedelta(hours=40)))
        await s.execute(update(Dispute).where(Dispute.id == ids[2]).values(accept_due=now() - timedelta(hours=1)))
        await s.execute(update(Dispute).where(Dispute.id.not_in(ids)).values(accept_due=now() + timedelta(days=9)))
        await s.commit()
    b = await as_role(site, Role.mediator)
    assert "共 1 件" in (await b.get("/console/cases?tab=at_risk&window=24")).text
    assert "共 2 件" in (await b.get("/console/cases?tab=at_risk&window=48")).text
    overdue = await b.get("/console/cases?tab=overdue")
    assert "共 1 件" in overdue.text


async def test_an_official_sees_the_queue_masked_cannot_search_free_text_and_gets_no_buttons(site):
    ids = await file_cases(site, 2)
    b = await as_role(site, Role.official)
    page = await b.get(f"/console/cases/{ids[0]}")
    assert page.status_code == 200
    assert "13912345678" not in page.text and "139****5678" in page.text
    assert "您当前不能对此案件办理操作" in page.text and 'data-action="accept"' not in page.text
    assert "共 0 件" in (await b.get("/console/cases?tab=all&q=139")).text  # masked text is not searchable
    async with site.ctx.sm() as s:
        number = (await s.get(Dispute, ids[0])).number
        audited = await s.scalar(select(AuditLog).where(AuditLog.action == "dispute.read",
                                                        AuditLog.subject == f"dispute:{number}"))
    assert audited is not None and audited.detail["channel"] == "web"


async def test_the_case_page_offers_the_workflow_actions_and_a_mediator_records_an_outcome(site):
    [cid] = await file_cases(site, 1)
    b = await as_role(site, Role.mediator)
    page = (await b.get(f"/console/cases/{cid}")).text
    assert "13912345678" in page  # the handling mediator sees the phone whole
    for a in ("accept", "transfer", "escalate"):
        assert f'data-action="{a}"' in page
    assert 'data-action="succeed"' not in page
    assert (await b.post(f"/api/disputes/{cid}/accept", json={"note": "已联系双方"})).status_code == 200
    page = (await b.get(f"/console/cases/{cid}")).text
    assert 'data-action="succeed"' in page and 'data-action="accept"' not in page and "已联系双方" in page
    r = await b.post(f"/api/disputes/{cid}/outcome", json={"success": True, "agreement": "双方同意晚十点后停工"})
    assert r.status_code == 200
    page = (await b.get(f"/console/cases/{cid}")).text
    assert "调解成功" in page and "双方同意晚十点后停工" in page


async def test_a_mediator_cannot_open_a_case_outside_their_unit(site):
    [cid] = await file_cases(site, 1, place="路桥区")
    b = await as_role(site, Role.mediator)  # at 椒江区
    assert (await b.get(f"/console/cases/{cid}")).status_code == 404
    assert "共 0 件" in (await b.get("/console/cases?tab=all")).text


async def test_a_saved_view_is_the_list_url_and_shared_views_reach_colleagues(site):
    await file_cases(site, 4)
    a = await as_role(site, Role.mediator)
    r = await a.post("/console/api/views", json={"name": "劳动纠纷", "query": "tab=all&category=labor&bogus=1",
                                                 "shared": True})
    assert r.status_code == 201 and r.json()["url"] == "/console/cases?tab=all&category=labor"
    await a.post("/console/api/views", json={"name": "我的新件", "query": "tab=new"})
    b = await as_role(site, Role.official)
    page = (await b.get("/console/cases")).text
    assert "劳动纠纷" in page and "我的新件" not in page
    assert "共 1 件" in (await b.get(r.json()["url"])).text


async def test_an_export_needs_a_fresh_second_factor_and_carries_the_list_as_the_person_may_see_it(site):
    await file_cases(site, 5)
    b = await as_role(site, Role.official)
    async with site.ctx.sm() as s:
        await s.execute(update(WebSession).values(second_factor_at=now() - timedelta(hours=2)))
        await s.commit()
    r = await b.get("/console/cases/export.csv?tab=all")
    assert r.status_code == 403 and r.json()["error"] == "step_up_required"
    async with site.ctx.sm() as s:
        await s.execute(update(WebSession).values(second_factor_at=now()))
        await s.commit()
    r = await b.get("/console/cases/export.csv?tab=all&category=neighbor&category=labor")
    assert r.status_code == 200
    text = r.content.decode("utf-8-sig")
    lines = text.strip().splitlines()
    assert lines[0].startswith("编号,类别,状态") and len(lines) == 1 + 3
    assert "13912345678" not in text and "139****5678" in text
    x = await b.get("/console/cases/export.xlsx?tab=all")
    ws = load_workbook(io.BytesIO(x.content)).active
    assert ws.max_row == 1 + 5 and ws["A1"].value == "编号"
    async with site.ctx.sm() as s:
        rows = list(await s.scalars(select(AuditLog).where(AuditLog.action == "dispute.export")
                                    .order_by(AuditLog.id)))
    assert [a.detail["rows"] for a in rows] == [3, 5]


async def test_a_bulk_action_reports_each_case_and_audits_each(site):
    ids = await file_cases(site, 3)
    [outside] = await file_cases(site, 1, place="路桥区")
    b = await as_role(site, Role.mediator)
    await b.post(f"/api/disputes/{ids[0]}/accept")
    r = await b.post("/console/api/bulk", json={"ids": [*ids, outside], "action": "accept"})
    assert r.status_code == 200
    res = {x["id"]: x for x in r.json()["results"]}
    assert r.json()["done"] == 2 and r.json()["failed"] == 2
    assert res[ids[1]]["ok"] and res[ids[2]]["ok"]
    assert not res[ids[0]]["ok"] and not res[outside]["ok"] and res[outside]["error"]
    async with site.ctx.sm() as s:
        assert (await s.get(Dispute, outside)).status == "new"
        audited = list(await s.scalars(select(AuditLog).where(AuditLog.action == "console.bulk")))
    assert sorted(int(a.subject.split(":")[1]) for a in audited) == sorted([*ids, outside])
    too_many = await b.post("/console/api/bulk", json={"ids": list(range(1, 502)), "action": "accept"})
    assert too_many.status_code == 422


async def test_the_board_shows_the_figures_boards_and_heat_table_for_the_officials_jurisdiction(site):
    async with session_scope(site.ctx.sm) as s:  # a township mediator: cases are handled there
        local, _ = await users.get_or_create_user(s, 990201, name="街道调解员")
        await users.set_role(s, local, Role.mediator, await users.find_jurisdiction(s, "白云街道"), actor="test")
    ids = await file_cases(site, 6)
    m = await as_role(site, Role.mediator)  # at the county: handles the township's cases too
    assert (await m.post(f"/api/disputes/{ids[0]}/accept")).status_code == 200
    assert (await m.post(f"/api/disputes/{ids[0]}/outcome", json={"success": True, "agreement": "和解"})
            ).status_code == 200
    assert (await m.post(f"/api/disputes/{ids[1]}/escalate", json={"reason": "需区级协调"})).status_code == 200
    b = await as_role(site, Role.official)
    page = await b.get("/console/board")
    assert page.status_code == 200
    html = page.text
    assert 'id="figures"' in html and "白云街道" in html and "四色预警" in html
    assert "/console/static/echarts.min.js" in html
    assert f'href="/console/cases/{ids[1]}"' in html  # on the escalated board
    assert "地区 × 类别热力表" in html
    states = html[html.index('class="states"'):]
    states = states[:states.index("</table>")]
    # ids[0] went new → accepted → resolved, ids[1] new → escalated: two stays in 新建, one in 已受理
    assert re.search(r"<td>新建</td><td>2</td><td>[\d.]+</td>", states), states
    assert re.search(r"<td>已受理</td><td>1</td><td>[\d.]+</td>", states), states
    times = html[html.index('class="times"'):]
    assert re.search(r"<td>白云街道</td><td>1</td>", times[:times.index("</table>")])


async def test_an_admin_creates_and_revokes_an_invite_and_reads_the_audit_log_with_filters(site):
    b = await as_role(site, Role.admin)
    r = await b.post("/api/admin/invites", json={"role": "mediator", "jurisdiction": "椒江区", "expires": "7d"})
    assert r.status_code == 201
    code = r.json()["code"]
    page = (await b.get("/console/admin")).text
    assert code in page and "作废" in page
    async with site.ctx.sm() as s:
        inv = await s.scalar(select(InviteCode).where(InviteCode.code == code))
    assert (await b.post(f"/console/api/invites/{inv.id}/revoke")).status_code == 200
    redeem = await site.browser().post("/auth/api/invite", json={"code": code, "login": "late1", "name": "x",
                                                                   "password": "correct horse battery"})
    assert redeem.status_code == 400
    log = (await b.get("/console/admin?action=invite.")).text
    assert "invite.revoked" in log and "invite.created" in log and "web.signed_in" not in log
    mediator = await as_role(site, Role.mediator)
    assert (await mediator.post(f"/console/api/invites/{inv.id}/revoke")).status_code == 403


async def test_the_language_switch_shows_the_console_in_english(site):
    b = await as_role(site, Role.mediator)
    r = await b.get("/console/lang/en?next=/console/cases", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/cases"
    b.c.cookies.set("hehe_console_lang", "en", domain="hehe.test", path="/console")
    page = (await b.get("/console/cases")).text
    assert "Case queue" in page and "案件队列" not in page
    assert (await b.get("/console/lang/en?next=https://evil.example", follow_redirects=False)
            ).headers["location"] == "/console"
