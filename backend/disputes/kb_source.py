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
