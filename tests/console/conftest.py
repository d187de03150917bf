"""The console's tests run on the web tests' real application (tests/web/conftest.py) with
browser-like clients; cases are filed through the disputes service, as the chat files them."""
from __future__ import annotations

from backend.core.db import session_scope
from backend.disputes import service as disputes
from backend.users import service as users
from backend.users.models import Role
from tests.web.conftest import site  # noqa: F401  (the fixture)
from tests.web.test_route_table import signed_in

__all__ = ["as_role", "file_cases"]

TEXTS = ["邻居装修噪音一直到深夜，多次沟通无果，电话13912345678", "楼上漏水把我家天花板泡坏了，物业不管",
         "工地拖欠三个月工资共计两万元，老板不接电话", "土地承包合同到期后对方不肯归还承包地"]
CATEGORIES = ["neighbor", "property", "labor", "land_contract"]


async def as_role(site, role: Role):
    """A browser signed in (second factor done) as a new person of ``role`` at 椒江区."""
    return await signed_in(site, role)


async def file_cases(site, n: int, place: str = "白云街道") -> list[int]:
    """``n`` cases filed by one citizen at ``place`` through the disputes service."""
    ids = []
    async with session_scope(site.ctx.sm) as s:
        citizen, _ = await users.get_or_create_user(s, 990001, name="王女士")
        j = await users.find_jurisdiction(s, place)
        for i in range(n):
            d = await disputes.create_case(s, citizen=citizen, category=CATEGORIES[i % 4],
                                           description=TEXTS[i % 4] + f"（第{i + 1}件）", place=j,
                                           phone="13912345678")
            ids.append(d.id)
    return ids
