"""Demo data for 灯塔工程: one open missing-person report by 张三 (no photo, so no face data;
add photos through the chat to see matching), so officers have something to look at."""
from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from backend.core.clock import now
from backend.missing import service
from backend.missing.models import CaseEvent, PersonCase
from backend.users import service as users
from backend.users.models import User


async def seed(session, settings) -> None:
    reporter = await session.scalar(select(User).where(User.telegram_id == 1001))
    if reporter is None:
        return
    exists = await session.scalar(select(PersonCase.id).where(PersonCase.reporter_id == reporter.id,
                                                              PersonCase.name == "王阿公"))
    if exists:
        return
    j = await users.find_jurisdiction(session, "椒江区/海门街道")
    case = PersonCase(kind="missing", status=service.OPEN, face_key=uuid.uuid4().hex, reporter_id=reporter.id,
                      case_no=await service.next_case_no(session, "missing", j), jurisdiction_id=j.id if j else None,
                      name="王阿公", sex="M", age=78, height_cm=165, place="东山公园",
                      seen_at=now() - timedelta(hours=6), clothing="深蓝色外套、灰色裤子、黑布鞋",
                      health="阿尔茨海默症，需按时服药", phone="13800000001", photo_ids=[], face_state="none")
    session.add(case)
    await session.flush()
    session.add(CaseEvent(case_id=case.id, actor="demo", from_status=None, to_status=service.OPEN, note="demo seed"))
