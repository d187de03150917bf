"""The role-aware main menu. Each capability registers its entries when its handler
module is imported; ``/start`` shows the entries for the person's role."""
from __future__ import annotations

from dataclasses import dataclass

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from backend.core.i18n import Translator
from backend.users.models import Role


class MenuCb(CallbackData, prefix="m"):
    action: str


@dataclass(frozen=True)
class MenuItem:
    action: str
    label_key: str
    roles: frozenset[Role]
    order: int


_ITEMS: dict[str, MenuItem] = {}
ALL_ROLES = frozenset(Role)


_KEYBOARDS: dict[tuple[Role, str], InlineKeyboardMarkup] = {}


def register_menu_item(action: str, label_key: str, roles=ALL_ROLES, order: int = 100) -> None:
    _ITEMS[action] = MenuItem(action, label_key, frozenset(roles), order)
    _KEYBOARDS.clear()


def menu_items(role: Role) -> list[MenuItem]:
    return sorted((i for i in _ITEMS.values() if role in i.roles or role == Role.admin),
                  key=lambda i: (i.order, i.action))


def menu_keyboard(role: Role, t: Translator) -> InlineKeyboardMarkup:
    """The main menu for ``role`` in ``t``'s language (built once per role and language; nothing changes a sent keyboard)."""
    key = (role, t.lang)
    kb = _KEYBOARDS.get(key)
    if kb is None:
        kb = _KEYBOARDS[key] = _build_menu(role, t)
    return kb


def _build_menu(role: Role, t: Translator) -> InlineKeyboardMarkup:
    items = menu_items(role)
    rows, row = [], []
    for item in items:
        row.append(InlineKeyboardButton(text=t(item.label_key), callback_data=MenuCb(action=item.action).pack()))
        if len(row) == 2:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def inline(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
    """[[(label, callback_data)]] → markup. Labels are already translated."""
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=l, callback_data=d) for l, d in row] for row in rows])
