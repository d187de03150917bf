"""Early warning that means something (issue 15, finding 2): people counted only from
phrases that state a number of people, alarm phrases matched whole, repeats about the same
thing, reasons in words, red alerts for mediation supervisors, no grade for citizens."""
from __future__ import annotations

from backend.disputes import risk, risk_eval
from tests.conftest import texts
from tests.disputes.conftest import case, report


def test_a_room_number_is_not_a_crowd():
    text = "楼上602住户王某每天晚上拖椅子，声音很大，影响休息，已经三个月了"
    assert risk.count_parties(text, "楼上602住户王某") == 2
    assert risk.grade_description("neighbor", text, "楼上602住户王某") == "green"


def test_stated_numbers_of_people_are_counted():
    assert risk.stated_people("二十多个工友三个月没拿到工资") == 20
    assert risk.stated_people("小区40多户业主联名") == 40
    assert risk.stated_people("一百多名会员的预付卡") == 100
    assert risk.stated_people("欠款8600元，拖了5个月，住在2号楼502室") == 0


def test_bargaining_and_sales_words_are_not_violence():
    for text in ("在商场买的羽绒服有质量问题，商家答应砍价后又不肯退货",
                 "商家搞跳楼价促销，结果买回去的东西是坏的",
                 "我拼命加班了半年，公司一分加班费都不给"):
        assert "words" not in {r["code"] for r in risk.grade_text("consumer", text)[1]}, text
    assert risk.grade_description("family", "老公喝酒后拿刀说要砍死我，孩子吓坏了") == "red"


def test_a_negated_petition_is_no_alarm():
    assert risk.find_phrases("我不会上访的，只想把钱要回来") == {}


def test_red_on_the_held_out_labelled_texts_is_precise_and_complete():
    assert len(risk_eval.rows("dev")) + len(risk_eval.rows("test")) >= 100
    res = risk_eval.evaluate("test")
    assert res.n >= 50
    assert res.precision >= 0.85 and res.recall >= 0.9, res.misses


async def test_another_report_about_something_else_is_no_repeat(chat, ctx, staff):
    c = 3401
    await report(chat, c)  # neighbours at 海门街道
    other = await report(chat, c, category="消费纠纷", description="网购的手机是假货，商家不给退款，平台客服推来推去",
                         township="白云街道", other="某网店")
    assert "repeat" not in {r["code"] for r in (await case(ctx, other)).risk_reasons}
    again = await report(chat, 3402)  # someone else, same place and category
    assert "repeat" in {r["code"] for r in (await case(ctx, again)).risk_reasons}


async def test_red_alert_reaches_supervisors_with_reasons_in_words(chat, ctx, staff):
    number = await report(chat, 3403, category="劳动争议/欠薪",
                          description="老板欠了我们二十多个工友三个月工资，再不给就一起去堵路")
    assert (await case(ctx, number)).risk == "red"
    for uid in (staff["sup"], staff["off_t"], staff["off_c"]):
        alert = next(m.text for m in reversed(chat.inbox(uid)) if "红色预警" in m.text)
        assert number in alert and "堵路" in alert and "约 20 人" in alert
        assert "group:" not in alert and "words:" not in alert and "；" in alert


async def test_the_citizen_never_sees_the_risk_grade(chat, ctx, staff):
    c = 3404
    number = await report(chat, c, category="劳动争议/欠薪",
                          description="老板欠了我们二十多个工友三个月工资，再不给就一起去堵路")
    await chat.send(c, "/mycases")
    out = texts(await chat.press(c, number))
    assert number in out and "红色" not in out and "风险" not in out
    await chat.send(staff["med"], "/queue")
    assert "红色" in texts(await chat.press(staff["med"], number))
