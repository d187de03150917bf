"""Every user-facing text exists in Chinese and English, with the same placeholders — one test
over every catalog file (backend/locales/<lang>/<namespace>.toml)."""
from __future__ import annotations

import string
import tomllib
from pathlib import Path

import pytest

from backend.core.i18n import LANGUAGES, LOCALES_DIR, _flatten

# TEMPORARY (issue #13): these namespaces' English is being completed by their slice helpers.
# Their gaps are reported (xfail with the list) instead of failing; the lead empties this set
# after merging, and from then on every namespace must be complete.

NAMESPACES = sorted({p.stem for lang in LANGUAGES for p in (LOCALES_DIR / lang).glob("*.toml")})


def texts(lang: str, namespace: str, root: Path = LOCALES_DIR) -> dict[str, str]:
    path = root / lang / f"{namespace}.toml"
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    with path.open("rb") as fh:
        _flatten(namespace, tomllib.load(fh), out)
    return out


def placeholders(text: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(text)
            if field is not None}


def gaps(namespace: str, root: Path = LOCALES_DIR) -> list[str]:
    by_lang = {lang: texts(lang, namespace, root) for lang in LANGUAGES}
    problems = []
    for lang, mine in by_lang.items():
        for other, theirs in by_lang.items():
            problems += [f"{k}: no {other}" for k in sorted(mine) if other != lang and k not in theirs]
    zh, en = by_lang["zh"], by_lang["en"]
    problems += [f"{k}: placeholders zh {sorted(placeholders(zh[k]))} ≠ en {sorted(placeholders(en[k]))}"
                 for k in sorted(zh.keys() & en.keys()) if placeholders(zh[k]) != placeholders(en[k])]
    return problems


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_text_exists_in_both_languages_with_the_same_placeholders(namespace):
    problems = gaps(namespace)
    assert not problems, "\n".join(problems)


def test_the_parity_check_sees_a_missing_translation_and_a_changed_placeholder(tmp_path):
    for lang, body in (("zh", 'a = "你好 {name}"\nb = "再见"\n'), ("en", 'a = "Hello {who}"\n')):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "probe.toml").write_text(body, encoding="utf-8")
    assert gaps("probe", tmp_path) == ["probe.b: no en", "probe.a: placeholders zh ['name'] ≠ en ['who']"]
