"""Schemathesis over the running server's OpenAPI schema, anonymously and with an admin token:
no server error, and every answer as the schema describes it (status code and body). Bounded:
a few examples per operation, one fixed seed."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.context import start_context
from backend.core.db import session_scope
from backend.users import service as users
from backend.users import tokens
from backend.users.models import Role
from tests.serving import hehe_serve

ST = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def _admin_token(settings) -> str:
    ctx = await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)
    try:
        async with session_scope(ctx.sm) as s:
            admin, _ = await users.get_or_create_user(s, 990001, name="管理员", channel="local")
            await users.set_role(s, admin, Role.admin, None, actor="test")
            return (await tokens.issue(s, admin, actor="test"))[1]
    finally:
        await ctx.stop()


@pytest.mark.skipif(ST is None, reason="schemathesis not installed")
@pytest.mark.parametrize("who", ["anonymous", "admin"])
async def test_the_api_never_errs_and_answers_as_its_schema_says(settings, tmp_path, who):
    headers = []
    if who == "admin":
        headers = ["-H", f"Authorization: Bearer {await _admin_token(settings)}"]
    with hehe_serve(tmp_path, settings.data_dir, HEHE_FACE_ENABLED="false", HEHE_KB_ENABLED="false") as (base, _):
        r = subprocess.run(
            [ST, "run", f"{base}/openapi.json", "--checks", CHECKS, "--max-examples", "8", "--seed", "1",
             "--phases", "examples,fuzzing", "--workers", "1", "--request-timeout", "20",
             *headers],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = r.stdout + r.stderr
    (tmp_path / "st.txt").write_text(out)
    summary = out[out.rfind("Failures:"):] if "Failures:" in out else ""
    kinds = set(re.findall(r"(ST\d+) ", summary))
    # 503 is the one server answer Hehe sends on purpose (a model still loading, phone sign-in not
    # configured), documented as such; any other 5xx, and any schema violation, fails.
    server_errors = re.findall(r"^\[(5\d\d)\]", out, flags=re.M)
    assert kinds <= {"ST101"} and set(server_errors) <= {"503"}, out[-8000:]
    assert "API Operations:" in out and "Tested: 0" not in out, out[-3000:]
