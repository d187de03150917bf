"""The disputes slice in the shared shape (issue 13): one workflow table the service enforces
and the buttons follow, thin handlers, reminders as due dates (no job per reminder)."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest

import handlers.disputes as chat
from backend.core.errors import Conflict, Forbidden
from backend.disputes import workflow
from backend.disputes.workflow import Action
from backend.users.models import Role

ROOT = Path(__file__).resolve().parents[2]


def _case(status: str, **kw):
    unit = SimpleNamespace(path="/1/2/3/", id=3)
    return SimpleNamespace(status=status, unit=unit, citizen_id=7, closed_at=None, number="TZ-1", **kw)


def _person(role: Role, pid: int = 1, path: str | None = "/1/2/3/"):
    return SimpleNamespace(id=pid, role=role.value, jurisdiction=SimpleNamespace(path=path) if path else None,
                           jurisdiction_id=3)


def test_every_action_has_a_row_in_the_table():
    assert {t.action for t in workflow.FLOW.transitions} | {Action.create} == set(Action)


def test_who_may_act_is_asked_before_the_status():
    new = _case("new")
    with pytest.raises(Forbidden):
        workflow.check(_person(Role.citizen, 7), new, Action.schedule)  # wrong person: 403 …
    with pytest.raises(Conflict):
        workflow.check(_person(Role.mediator), new, Action.schedule)  # … right person, wrong status: 409
    assert workflow.check(_person(Role.mediator), new, Action.accept).target.value == "accepted"
    assert workflow.available_actions(_person(Role.mediator), new) == [Action.accept, Action.transfer,
                                                                        Action.escalate, Action.note]
    assert workflow.available_actions(_person(Role.citizen, 7), new) == []
    assert workflow.check(None, _case("visited"), Action.archive).target.value == "archived"  # the system


def test_services_never_spell_buttons_nor_schedule_jobs():
    for path in (ROOT / "backend" / "disputes").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert '"dsp:' not in text and "f\"dsp" not in text and "dsr:" not in text, path
        imported = {n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(ast.parse(text))
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        assert not any((m or "").startswith(("scheduler", "aiogram")) for m in imported) or path.name == "cli.py", path
    assert "schedule_after_commit" not in (ROOT / "backend" / "disputes" / "service.py").read_text()


def test_handlers_are_thin():
    tree = ast.parse(inspect.getsource(chat))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= 30, node.name
        if isinstance(node, ast.ExceptHandler):
            pytest.fail(f"try/except in handlers/disputes.py line {node.lineno}")
    assert isinstance(chat.router, chat.Router) and not hasattr(chat, "make_router")
    assert chat.CaseCb(action=Action.accept, id=7).pack() == "dsp:accept:7"
