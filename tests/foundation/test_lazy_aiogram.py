"""bot/lazy_aiogram.py defers aiogram's schema building to first use. Every Bot API type and
method must still build, and validate and serialize exactly as after a plain import."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
if sys.argv[1] == "deferred":
    import backend  # installs the hook before the first aiogram import
import aiogram, aiogram.methods, aiogram.types
import_s = time.perf_counter() - t0
import warnings
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
warnings.simplefilter("ignore")
class Schema(GenerateJsonSchema):  # arbitrary types (InputFile, Exception) as a marker, not an error
    def handle_invalid_for_json_schema(self, schema, error_info):
        return {"invalid": error_info}
classes = {f"{mod.__name__}.{n}": getattr(mod, n) for mod in (aiogram.types, aiogram.methods)
           for n in mod.__all__ if isinstance(getattr(mod, n), type) and issubclass(getattr(mod, n), BaseModel)}
complete_at_import = sum(c.__pydantic_complete__ for c in classes.values())
def first_use(c):  # as in real use, from inside a call (pydantic's rebuild reads a caller's frame)
    return c.__pydantic_validator__.title  # builds a deferred class, or raises
for c in classes.values():
    first_use(c)
# Update's schema holds nearly every type; plus the methods the bot calls
schemas = {n: classes[n].model_json_schema(schema_generator=Schema) for n in (
    "aiogram.types.Update", "aiogram.methods.SendMessage", "aiogram.methods.SendPhoto",
    "aiogram.methods.EditMessageText", "aiogram.methods.AnswerCallbackQuery", "aiogram.methods.GetFile",
    "aiogram.methods.SendDocument", "aiogram.methods.SetWebhook")}
from aiogram.types import Update
update = Update.model_validate({"update_id": 7, "message": {
    "message_id": 1, "date": 1764288000, "chat": {"id": 5, "type": "private"},
    "from": {"id": 5, "is_bot": False, "first_name": "张三", "language_code": "zh-hans"},
    "text": "/start", "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    "photo": [{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}],
    "location": {"latitude": 28.65, "longitude": 121.42},
    "reply_markup": {"inline_keyboard": [[{"text": "反映", "callback_data": "d:1"}]]}}})
from aiogram.methods import SendMessage
method = SendMessage(chat_id=5, text="你好", reply_markup={"keyboard": [[{"text": "反映"}]]})
print(json.dumps({"import_s": import_s, "classes": len(classes), "complete_at_import": complete_at_import,
                  "all_complete": all(c.__pydantic_complete__ for c in classes.values()),
                  "schemas": schemas, "update": update.model_dump(mode="json"),
                  "method": method.model_dump(mode="json", exclude_defaults=True)}, default=str))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout)


def test_deferred_aiogram_builds_every_type_and_method_exactly_like_a_plain_import():
    plain, deferred = _probe("plain"), _probe("deferred")
    assert deferred["classes"] == plain["classes"] > 500
    # the point: almost nothing is built at import time …
    assert deferred["complete_at_import"] < plain["complete_at_import"] / 10
    # … and everything builds on first use, to the same schemas and the same parsed values
    assert deferred["all_complete"] and plain["all_complete"]
    assert deferred["schemas"] == plain["schemas"]
    assert deferred["update"] == plain["update"]
    assert deferred["method"] == plain["method"]
    assert deferred["update"]["message"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "反映"


def test_the_hook_is_gone_after_the_first_aiogram_import():
    import aiogram  # noqa: F401 - conftest imports backend first, so this is the deferred import

    from bot import lazy_aiogram

    assert not any(isinstance(f, lazy_aiogram._FirstAiogramImport) for f in sys.meta_path)
    assert lazy_aiogram.install() is False  # too late: aiogram is imported
    from pydantic import BaseModel
    from pydantic._internal import _config

    assert _config.config_defaults["defer_build"] is False
    assert BaseModel.model_rebuild.__func__.__module__ == "pydantic.main"
