"""Demo data: a living system for newcomers (``hehe demo``). Slices add their own sample
data through ``backend/<slice>/demo.py: async def seed(session, settings)``."""
from __future__ import annotations

import asyncio
import importlib
import pkgutil

import backend
from backend.core import migrate
from backend.core.config import Settings
from backend.core.db import make_engine, make_sessionmaker, session_scope
from backend.users import service as users
from backend.users.models import Role

# (local id, name, role, jurisdiction, title)
DEMO_USERS = [
    (1001, "张三", Role.citizen, None, None),
    (1002, "李调解", Role.mediator, "椒江区/海门街道", None),
    (1003, "王代表", Role.deputy, "椒江区", None),
    (1004, "赵检察", Role.procurator, "椒江区", None),
    (1005, "陈警官", Role.officer, "椒江区", None),
    (1006, "周主任", Role.official, "椒江区", None),
    (1007, "管理员", Role.admin, None, None),
    (1008, "吴调解", Role.mediator, "椒江区", "supervisor"),
    (1009, "郑检察长", Role.procurator, "椒江区", "chief"),
    (1010, "孙警官", Role.officer, "温岭市", None),
    (1011, "钱代表", Role.deputy, "椒江区", None),
    (1012, "黄主任", Role.official, "黄岩区", None),
]


async def seed_users(session) -> None:
    for uid, name, role, place, title in DEMO_USERS:
        user, _ = await users.get_or_create_user(session, uid, name=name, channel="local")
        j = await users.find_jurisdiction(session, place) if place else None
        if user.role != role.value or user.jurisdiction_id != (j.id if j else None):
            await users.set_role(session, user, role, j, actor="demo", title=title, note="demo seed")


async def seed_demo(settings: Settings) -> None:
    settings.ensure_dirs()
    await asyncio.to_thread(migrate.upgrade, settings.sync_db_url)
    engine = make_engine(settings.db_url)
    # The chat layer registers how the buttons of notifications are written (e.g.
    # backend.supervision.service.set_button_packer): load it so the seeded notices carry them.
    from bot.dispatcher import handler_modules
    handler_modules()
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            await users.seed_jurisdictions(session)
            await seed_users(session)
            for info in pkgutil.iter_modules(backend.__path__):
                if not info.ispkg:
                    continue
                try:
                    mod = importlib.import_module(f"backend.{info.name}.demo")
                except ModuleNotFoundError as e:
                    if e.name != f"backend.{info.name}.demo":
                        raise
                    continue
                await mod.seed(session, settings)
    finally:
        await engine.dispose()
