"""Demo supervision items (``hehe demo``): one waiting for a decision, one with a 检察建议
awaiting the agency's reply, one closed and rated. Idempotent: does nothing if items exist."""
from __future__ import annotations

from sqlalchemy import select

from backend.supervision import service as svc
from backend.users import service as users
from backend.users.models import User


async def seed(session, settings) -> None:
    if await svc.count_items(session):
        return
    by_tid = {u.telegram_id: u for u in await session.scalars(select(User).where(
        User.telegram_id.in_([1003, 1004, 1011])))}
    deputy, proc, cosigner = by_tid.get(1003), by_tid.get(1004), by_tid.get(1011)
    if deputy is None or proc is None:
        return  # demo users are seeded first by backend.demo
    jj = await users.find_jurisdiction(session, "椒江区")
    hm = await users.find_jurisdiction(session, "椒江区/海门街道") or jj

    await svc.propose(session, deputy, svc.Draft(
        title="海门街道老旧小区消防通道长期被占", area="安全生产", place_id=hm.id,
        description="多个老旧小区消防通道被私家车和杂物长期占用，居民多次反映未见整改，存在重大安全隐患。",
        agency="椒江区消防救援大队"))

    b = await svc.propose(session, deputy, svc.Draft(
        title="椒江某河道企业夜间偷排", area="生态环境", place_id=jj.id,
        description="河道两岸部分企业夜间偷排污水，附近居民反映水体发黑发臭、鱼类死亡。",
        cosigners=str(cosigner.telegram_id) if cosigner else ""))
    if cosigner is not None:
        await svc.confirm_cosign(session, cosigner, b.id, True)
    await svc.accept(session, proc, b.id)
    await svc.add_note(session, proc, b.id, "现场勘查，取水样三份送检，两份超标。")
    await svc.issue_suggestion(session, proc, b.id, "椒江区生态环境分局", "责令相关企业停止偷排，限期完成截污纳管。")

    c = await svc.propose(session, deputy, svc.Draft(
        title="校园周边流动摊贩食品安全", area="食品药品安全", place_id=jj.id,
        description="多所小学门口流动摊贩售卖三无食品，学生食用后出现腹痛。"))
    await svc.accept(session, proc, c.id)
    await svc.issue_suggestion(session, proc, c.id, "椒江区市场监督管理局", "开展校园周边食品安全专项整治。")
    await svc.record_reply(session, proc, c.id, svc.to_local(svc.now()).date(), "已开展专项整治，取缔流动摊贩 12 处。",
                           "yes")
    await svc.close(session, proc, c.id, "整改到位。")
    await svc.rate(session, deputy, c.id, "satisfied", "整治及时有效。")
