"""Officials ask in chat: answers with citations whose buttons open the case card, only
within the asker's jurisdiction; the index follows cases created in the app."""
from __future__ import annotations

from backend.core.db import session_scope
from backend.users import service as users
from tests.conftest import texts


async def test_official_asks_and_opens_a_cited_card(chat, kb_ctx):
    await chat.as_role(3001, "official", "椒江区")
    msgs = await chat.send(3001, "/ask 椒江区的欠薪纠纷是怎么调解的？")
    answer = msgs[-1]
    assert "[1]" in answer.text
    cited = [label for label in chat.buttons(3001) if label.startswith("[1]")]
    assert cited and "TZ-JJ-" in cited[0]
    card = await chat.press(3001, "[1]")
    assert card and "TZ-JJ-" in card[-1].text and "类型" in card[-1].text


async def test_plain_question_from_official_is_answered(chat, kb_ctx):
    await chat.as_role(3002, "official", "椒江区")
    msgs = await chat.send(3002, "白云街道安置房工地欠薪是怎么解决的？")
    assert "TZ-JJ-20260305-0001" in " ".join(chat.buttons(3002)) or "垫付" in texts(msgs)


async def test_huangyan_official_never_receives_jiaojiang_records(chat, kb_ctx):
    await chat.as_role(3003, "official", "黄岩区")
    await chat.send(3003, "/ask 安置房工地包工头拖欠木工工资怎么处理的？")
    refs = " ".join(chat.buttons(3003))
    assert "TZ-JJ-" not in refs
    # pressing a forged citation of another jurisdiction's case opens nothing
    from handlers.ask import CiteCb

    m = chat.inbox(3003)[-1]
    await chat.ch.press_callback(3003, m, CiteCb(ref="TZ-JJ-20260305-0001").pack())
    toast = [x for x in chat.ch.out[3003] if x.toast][-1]
    assert "无权" in toast.text


async def test_citizen_plain_text_is_not_treated_as_a_query(chat, kb_ctx):
    msgs = await chat.send(3004, "椒江区有哪些欠薪纠纷？")
    assert "TZ-JJ-" not in texts(msgs) and not any(b.startswith("[1]") for b in chat.buttons(3004))


async def test_ask_from_menu_then_question(chat, kb_ctx):
    await chat.as_role(3005, "official", "温岭市")
    await chat.send(3005, "/start")
    await chat.press(3005, "智能问答")
    msgs = await chat.send(3005, "温岭老板失联欠薪怎么处理的")
    assert "[1]" in msgs[-1].text and "TZ-WL-" in " ".join(chat.buttons(3005))


async def test_knowledge_base_not_loaded_is_said_politely(chat, ctx):
    await chat.as_role(3006, "official", "椒江区")
    msgs = await chat.send(3006, "/ask 欠薪")
    assert "正在加载" in msgs[-1].text


async def test_new_dispute_is_indexed_and_answerable(chat, kb_ctx):
    """A case created in the app reaches the index through the ingestion queue."""
    from backend.disputes import service as disputes
    from knowledge_base.models import drain

    async with session_scope(kb_ctx.sm) as s:
        citizen, _ = await users.get_or_create_user(s, 3007, name="市民", channel="local")
        place = await users.find_jurisdiction(s, "椒江区/葭沚街道")
        d = await disputes.create_case(s, citizen=citizen, category="property",
                                       description="葭沚街道某小区物业擅自占用消防通道设停车位，业主多次投诉无果",
                                       place=place)
        number = d.number
    await drain(kb_ctx.sm, kb_ctx.kb)
    await chat.as_role(3008, "official", "椒江区")
    await chat.send(3008, "/ask 物业占用消防通道设停车位")
    assert number in " ".join(chat.buttons(3008))
    await chat.as_role(3009, "official", "黄岩区")
    await chat.send(3009, "/ask 物业占用消防通道设停车位")
    assert number not in " ".join(chat.buttons(3009))


async def _cases(ctx, specs):
    from backend.disputes import service as disputes

    async with session_scope(ctx.sm) as s:
        citizen, _ = await users.get_or_create_user(s, 3100, name="市民", channel="local")
        for place, category in specs:
            j = await users.find_jurisdiction(s, place)
            await disputes.create_case(s, citizen=citizen, category=category, place=j,
                                       description="这是一起用于统计测试的纠纷，情况描述足够长。")


async def test_statistical_questions_are_answered_from_the_database(chat, kb_ctx):
    await _cases(kb_ctx, [("椒江区/海门街道", "labor"), ("椒江区/海门街道", "labor"),
                          ("椒江区/白云街道", "labor"), ("椒江区/白云街道", "neighbor"),
                          ("黄岩区/东城街道", "labor")])
    await chat.as_role(3101, "official", "椒江区")
    msgs = await chat.send(3101, "/ask 本月椒江区有多少件未办结的纠纷？")
    text = msgs[-1].text
    assert "共有 4 件" in text and "统计口径" in text and "未办结" in text
    msgs = await chat.send(3101, "/ask 哪个乡镇欠薪纠纷最多？")
    assert "1. 海门街道：2 件" in msgs[-1].text
    # the 黄岩区 case is outside this official's jurisdiction and is never counted
    msgs = await chat.send(3101, "/ask 一共有多少件欠薪纠纷？")
    assert "共有 3 件" in msgs[-1].text
    await chat.as_role(3102, "official", "黄岩区")
    msgs = await chat.send(3102, "/ask 一共有多少件欠薪纠纷？")
    assert "共有 1 件" in msgs[-1].text


async def test_missing_person_reports_are_indexed_without_personal_data(kb_ctx):
    from knowledge_base.models import drain
    from knowledge_base.records import Scope

    from backend.missing.models import PersonCase
    from backend.core.events import RecordChanged, publish

    async with session_scope(kb_ctx.sm) as s:
        reporter, _ = await users.get_or_create_user(s, 3200, name="家属", channel="local")
        j = await users.find_jurisdiction(s, "温岭市/泽国镇")
        c = PersonCase(kind="missing", status="open", face_key="k3200", reporter_id=reporter.id,
                       case_no="XR-WL-20261128-0099", jurisdiction_id=j.id, name="王秀英", sex="F", age=78,
                       clothing="蓝色外套，灰色裤子", health="阿尔茨海默症", phone="13812345678")
        s.add(c)
        await s.flush()
        await publish(s, RecordChanged("missing", c.id))  # what the service does on a new case
    await drain(kb_ctx.sm, kb_ctx.kb)
    async with kb_ctx.sm() as s:
        wl = await users.find_jurisdiction(s, "温岭市")
        hy = await users.find_jurisdiction(s, "黄岩区")
    ans = kb_ctx.kb.answer("泽国镇走失的老人，蓝色外套", Scope("officer", 999, wl.id))
    assert "XR-WL-20261128-0099" in ans.citations
    record = kb_ctx.kb.store.get("XR-WL-20261128-0099")
    assert "王秀英" not in record["text"] and "13812345678" not in record["text"]
    assert "阿尔茨海默" not in record["text"]
    assert "XR-WL-20261128-0099" not in kb_ctx.kb.answer("泽国镇走失的老人，蓝色外套",
                                                         Scope("officer", 999, hy.id)).citations
