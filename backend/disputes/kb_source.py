"""Knowledge-base source "dispute": one record per case, without personal data (no phone,
address, contact or other party; free text masked), so officials and mediators can ask
questions answered from cases with citations. Access follows ``jurisdiction_ids``."""
from __future__ import annotations

from sqlalchemy import select

from backend.core.clock import to_local
from backend.core.i18n import gettext
from backend.core.masking import mask_personal
from backend.disputes import config
from backend.disputes.models import Dispute
from knowledge_base.models import register_source
from knowledge_base.records import Record, jurisdiction_ids_from_path


async def build(session, ref_id) -> Record | None:
    d = await session.get(Dispute, int(ref_id))
    if d is None:
        return None
    cat = config.get().category(d.category)
    status = gettext("zh", f"disputes.status_{d.status}")
    text = (f"{cat.zh}纠纷，发生在{d.place.name}，由{d.unit.name}办理，当前状态：{status}，"
            f"风险等级：{gettext('zh', f'disputes.risk_{d.risk}')}。\n{mask_personal(d.description)}")
    if d.agreement:
        text += f"\n调解协议摘要：{mask_personal(d.agreement)}"
    if d.referral:
        text += f"\n调解不成，转入：{gettext('zh', f'disputes.referral_{d.referral}')}"
    if d.rating:
        text += f"\n当事人评价：{gettext('zh', f'disputes.rating_{d.rating}')}"
    return Record(id=d.number, kind="dispute", title=f"{d.number} {cat.zh}", text=text, category=cat.zh,
                  location=d.place.name, jurisdiction_ids=jurisdiction_ids_from_path(d.place.path),
                  date=to_local(d.created_at).date(), owner_user_ids=[d.citizen_id] if d.citizen_id else [],
                  public=False)


async def all_ids(session) -> list:
    return list(await session.scalars(select(Dispute.id).order_by(Dispute.id)))


register_source("dispute", build, all_ids)


# ---------------------------------------------------------------- statistical questions
# "本月椒江区有多少件未办结的纠纷？", "哪个乡镇欠薪纠纷最多？", "近半年纠纷趋势" are answered
# from the database, never guessed from retrieval. The knowledge base parses the question.
KB_CATEGORY_CODES = {
    "劳动争议": ("labor",), "邻里纠纷": ("neighbor",), "婚姻家庭": ("family",),
    "土地山林": ("land_contract", "homestead"), "物业纠纷": ("property",), "交通事故": ("traffic",),
    "消费纠纷": ("consumer",), "医疗纠纷": ("medical",), "征地拆迁": ("expropriation",),
}


async def dispute_stats(session, q, scope):
    from datetime import datetime, time

    from sqlalchemy import func

    from backend.core.clock import TZ
    from backend.disputes.models import CLOSED_STATUSES, OPEN_STATUSES, Status
    from backend.users import service as users
    from backend.users.models import Jurisdiction, User
    from knowledge_base.stats import StatsAnswer

    base = select(Dispute).join(Jurisdiction, Jurisdiction.id == Dispute.place_id)
    if not scope.sees_all:
        me = await session.get(User, scope.user_id) if scope.user_id else None
        if me is None or me.jurisdiction is None:
            return StatsAnswer(value=0, note=gettext("zh", "common.err_out_of_jurisdiction"))
        base = base.where(Jurisdiction.path.startswith(me.jurisdiction.path))
    if q.place_id is not None:
        place = await users.jurisdiction(session, q.place_id)
        if place is not None:
            base = base.where(Jurisdiction.path.startswith(place.path))
    if q.category:
        codes = KB_CATEGORY_CODES.get(q.category)
        if codes is None:
            return StatsAnswer(value=0, rows=[], series=[])
        base = base.where(Dispute.category.in_(codes))
    if q.status == "open":
        base = base.where(Dispute.status.in_([s.value for s in OPEN_STATUSES]))
    elif q.status == "closed":
        closed = list(CLOSED_STATUSES) + [Status.resolved, Status.failed]
        base = base.where(Dispute.status.in_([s.value for s in closed]))
    elif q.status == "overdue":
        base = base.where(Dispute.overdue == 1, Dispute.status.in_([s.value for s in OPEN_STATUSES]))
    if q.period is not None:
        start = datetime.combine(q.period.start, time.min, tzinfo=TZ)
        end = datetime.combine(q.period.end, time.max, tzinfo=TZ)
        base = base.where(Dispute.created_at >= start, Dispute.created_at <= end)
    sub = base.subquery()
    if q.measure == "count":
        return StatsAnswer(value=await session.scalar(select(func.count()).select_from(sub)) or 0)
    if q.measure == "trend":
        rows = (await session.execute(select(sub.c.month, func.count()).group_by(sub.c.month)
                                      .order_by(sub.c.month))).all()
        return StatsAnswer(series=[(m, n) for m, n in rows])
    if q.group_by == "category":
        rows = (await session.execute(select(sub.c.category, func.count()).group_by(sub.c.category))).all()
        cfg = config.get()
        labelled = [(cfg.category(c).zh, n) for c, n in rows]
    else:
        col = {"county": sub.c.county_id, "village": sub.c.place_id}.get(q.group_by, sub.c.township_id)
        rows = (await session.execute(select(col, func.count()).where(col.is_not(None)).group_by(col))).all()
        places = {jid: await users.jurisdiction(session, jid) for jid, _n in rows}
        labelled = [(places[jid].name if places[jid] else str(jid), n) for jid, n in rows]
    return StatsAnswer(rows=sorted(labelled, key=lambda r: (-r[1], r[0])))


from knowledge_base.stats import register_stats_provider  # noqa: E402

register_stats_provider("dispute", dispute_stats)
