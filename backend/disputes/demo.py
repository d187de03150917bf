"""Demo cases for ``hehe demo`` (idempotent): one new, one red and accepted, one resolved and rated."""
from __future__ import annotations

from sqlalchemy import func, select

from backend.disputes import service
from backend.disputes.models import Dispute
from backend.users import service as users
from backend.users.models import User

DEMO_MARK = "【演示】"


async def seed(session, settings) -> None:
    if await session.scalar(select(func.count(Dispute.id)).where(Dispute.description.startswith(DEMO_MARK))):
        return
    citizen = await session.scalar(select(User).where(User.telegram_id == 1001))
    mediator = await session.scalar(select(User).where(User.telegram_id == 1002))
    if citizen is None or mediator is None:
        return
    haimen = await users.find_jurisdiction(session, "椒江区/海门街道")
    baiyun = await users.find_jurisdiction(session, "椒江区/白云街道")
    await service.create_case(
        session, citizen=citizen, category="neighbor", place=haimen, other_party="楼上502住户",
        description=DEMO_MARK + "楼上住户装修每天从早上七点钻到晚上十点，老人孩子休息不了，沟通两次没有改善。",
        phone="13800001001", address="椒江区海门街道东山路12号")
    red = await service.create_case(
        session, citizen=citizen, category="labor", place=haimen, other_party="某建筑劳务公司",
        description=DEMO_MARK + "包工头拖欠我们二十多个工友三个月工资共十几万，再不给大家就去堵路上访。")
    await service.accept(session, red, mediator, "已联系劳务公司负责人")
    done = await service.create_case(
        session, citizen=citizen, category="property", place=baiyun or haimen, other_party="小区物业公司",
        description=DEMO_MARK + "小区电梯坏了两周物业一直不修，八楼老人没法下楼看病。")
    handler = mediator if service.can_handle(mediator, done) else await session.scalar(
        select(User).where(User.telegram_id == 1008))
    await service.accept(session, done, handler)
    await service.record_outcome(session, done, handler, True, agreement="物业三日内修复电梯，减免当月电梯费")
    await service.close(session, done, handler)
    await service.rate(session, done, citizen, "satisfied", "修得很快")
