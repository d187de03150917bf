"""Knowledge-base source "missing": one record per missing/found case with non-sensitive
fields only — no name, phone, health, photos or face data — so officers and officials can
ask about cases in their jurisdiction ("温岭最近有没有走失老人的报告？")."""
from __future__ import annotations

from sqlalchemy import select

from backend.core.clock import to_local
from backend.missing.models import PersonCase
from backend.users.models import Jurisdiction
from knowledge_base.models import register_source
from knowledge_base.records import Record, jurisdiction_ids_from_path

STATUS_ZH = {"open": "寻找中", "found": "已找到", "closed": "已结案"}
SEX_ZH = {"M": "男", "F": "女"}


async def build(session, ref_id) -> Record | None:
    c = await session.get(PersonCase, int(ref_id))
    if c is None:
        return None
    j = await session.get(Jurisdiction, c.jurisdiction_id) if c.jurisdiction_id else None
    what = "走失人员报告" if c.kind == "missing" else "滞留（被发现）人员登记"
    when = to_local(c.seen_at).strftime("%Y-%m-%d") if c.seen_at else "时间不详"
    who = "，".join(x for x in (SEX_ZH.get(c.sex or "", ""), f"约{c.age}岁" if c.age else "",
                               f"身高约{c.height_cm}厘米" if c.height_cm else "") if x) or "特征不详"
    text = (f"{what}：{who}。{'最后出现' if c.kind == 'missing' else '发现'}地点："
            f"{j.name if j else '未知'}，时间：{when}。衣着：{(c.clothing or '不详')[:200]}。"
            f"当前状态：{STATUS_ZH.get(c.status, c.status)}。")
    return Record(id=c.case_no, kind="missing", title=f"{c.case_no} {what}", text=text,
                  category="走失" if c.kind == "missing" else "滞留", location=j.name if j else "",
                  jurisdiction_ids=jurisdiction_ids_from_path(j.path) if j else [],
                  date=to_local(c.created_at).date(), owner_user_ids=[c.reporter_id], public=False)


async def all_ids(session) -> list:
    return list(await session.scalars(select(PersonCase.id).order_by(PersonCase.id)))


register_source("missing", build, all_ids)
