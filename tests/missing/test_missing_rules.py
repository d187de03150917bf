"""Rules without the model: consistency flags, parsing, callback data agreement, transitions."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from backend.core.errors import DomainError
from backend.core.i18n import Translator
from backend.missing import service
from backend.missing.models import PersonCase

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)


def case(kind, sex=None, age=None, seen_at=None):
    return PersonCase(kind=kind, sex=sex, age=age, seen_at=seen_at, status="open")


def codes(flags):
    return [f["code"] for f in flags]


def test_consistency_all_agree():
    flags, pen = service.consistency(case("missing", "M", 78, T0), case("found", "M", 80, T0 + timedelta(days=2)))
    assert codes(flags) == ["sex_match", "age_ok", "time_ok"] and pen == 0


def test_consistency_conflicts_lower_the_rank():
    flags, pen = service.consistency(case("missing", "M", 8, T0), case("found", "F", 30, T0 - timedelta(days=1)))
    assert codes(flags) == ["sex_mismatch", "age_gap", "time_before"]
    assert pen == pytest.approx(0.65)
    text = service.explain_flags(Translator("zh"), flags)
    assert "性别不一致：走失人员为男，滞留人员为女" in text
    assert "相差 22 岁" in text and "早于" in text


def test_consistency_unknowns_and_elapsed_years():
    flags, pen = service.consistency(case("missing", None, 5, T0), case("found", "F", 17, T0 + timedelta(days=365 * 10)))
    assert codes(flags) == ["sex_unknown", "age_ok", "time_ok"] and pen == 0
    assert flags[1]["expected"] == 15  # a child missing for ten years has grown up
    flags, _ = service.consistency(case("missing"), case("found"))
    assert codes(flags) == ["sex_unknown", "age_unknown", "time_unknown"]
    assert "❔" in service.explain_flags(Translator("en"), flags)


@pytest.mark.parametrize("text,local", [
    ("今天 08:30", (2026, 11, 28, 8, 30)),
    ("昨天下午3点", (2026, 11, 27, 15, 0)),
    ("前天", (2026, 11, 26, 12, 0)),
    ("2026-11-27 08:00", (2026, 11, 27, 8, 0)),
    ("11月25日 7时", (2026, 11, 25, 7, 0)),
    ("9:15", (2026, 11, 28, 9, 15)),
    ("昨天下午3点半", (2026, 11, 27, 15, 30)),
    ("今天上午8点左右", (2026, 11, 28, 8, 0)),
])
def test_parse_seen_at(text, local):
    ref = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)  # 10:00 in Taizhou
    got = service.parse_seen_at(text, ref=ref).astimezone(service.TZ)
    assert got.timetuple()[:5] == local


@pytest.mark.parametrize("text", ["明天", "不知道", "2026-13-40 10:00", "23:59", "明天上午9点", "后天",
                                  "上周三", "今天早上九点多在菜场"])
def test_parse_seen_at_refuses(text):
    ref = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)
    with pytest.raises(DomainError):
        service.parse_seen_at(text, ref=ref)


def test_parse_fields():
    assert service.parse_sex("女") == "F" and service.parse_sex("不详") is None
    assert service.parse_age("78岁") == 78 and service.parse_age("不详", allow_unknown=True) is None
    assert service.parse_height("1.65") == 165 and service.parse_height("170cm") == 170
    assert service.parse_phone("+86 138-1234-5678") == "13812345678"
    for bad in (lambda: service.parse_age("两百"), lambda: service.parse_height("3米"),
                lambda: service.parse_phone("12345"), lambda: service.parse_sex("?!")):
        with pytest.raises(DomainError):
            bad()


def test_services_never_format_callback_strings():
    """Buttons are built by the bot layer's CallbackData factories (Enum fields); the service
    only names the actions the workflow table allows."""
    from pathlib import Path

    from handlers.missing import ReviewCb, review_buttons
    from backend.missing.workflow import CandidateAction

    root = Path(__file__).resolve().parents[2]
    for f in (root / "backend" / "missing").glob("*.py"):
        assert not re.search(r'f"m[a-z]{1,3}:', f.read_text(encoding="utf-8")), f.name
    rows = review_buttons([CandidateAction.confirm, CandidateAction.reject], 12)
    assert rows[0][0][1] == ReviewCb(action=CandidateAction.confirm, id=12).pack()
    assert ReviewCb.unpack(rows[0][1][1]).action is CandidateAction.reject


async def test_transitions_are_data_and_checked(ctx):
    c = PersonCase(id=1, status="closed")
    async with ctx.sm() as s:
        with pytest.raises(DomainError):
            await service.transition(s, c, "found", actor="test")
    assert ("open", "found") in service.TRANSITIONS and ("closed", "open") not in service.TRANSITIONS


def test_every_text_key_exists_in_both_languages():
    import re
    from pathlib import Path

    from backend.core.i18n import catalog

    root = Path(__file__).resolve().parents[2]
    used = set()
    for f in ("backend/missing/service.py", "backend/missing/api.py", "handlers/missing.py"):
        used |= set(re.findall(r'"(missing\.[a-z_]+)"', (root / f).read_text(encoding="utf-8")))
    used -= {"missing.assist_created", "missing.faces_deleted", "missing.match_confirmed",
             "missing.match_rejected", "missing.match_checked", "missing.decision_undone",
             "missing.evidence_read", "missing.photos_read", "missing.cases",
             "missing.candidates"}  # audit action and workflow names, not text
    used |= {f"missing.flag_{c}" for c in ("sex_match", "sex_mismatch", "sex_unknown", "age_ok", "age_gap",
                                           "age_unknown", "time_ok", "time_before", "time_unknown",
                                           "height_ok", "height_gap", "place_near", "place_far")}
    from backend.missing.workflow import CHECKLIST, REJECT_REASONS

    used |= {f"missing.check_{c}" for c in CHECKLIST} | {f"missing.reason_{r}" for r in REJECT_REASONS}
    used |= {f"missing.quality_{r}" for r in ("small", "blurred", "unsure", "turned")}
    used |= {f"missing.grade_{g}" for g in ("good", "fair", "poor", "unknown")}
    used |= {f"missing.assist_status_{s}" for s in ("open", "answered", "expired")}
    from handlers.missing import FORMS

    used |= {f"missing.{p}_{s.field}" for f in FORMS.values() for s in f if s.field != "jid" for p in ("sum", "edit")}
    used |= {f"missing.status_{s}" for s in ("open", "found", "closed")}
    used |= {f"missing.face_state_{s}" for s in ("none", "enrolled", "pending", "unusable", "scheduled", "deleted")}
    for lang in ("zh", "en"):
        missing = sorted(k for k in used if k not in catalog(lang))
        assert not missing, (lang, missing)
    assert set(k for k in catalog("zh") if k.startswith("missing.")) == set(
        k for k in catalog("en") if k.startswith("missing."))


def test_relative_dates_that_cannot_be_understood_are_asked_again_never_guessed():
    ref = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)
    with pytest.raises(DomainError) as e:
        service.parse_seen_at("明天上午9点", ref=ref)  # once stored as today 09:00
    assert e.value.key == "missing.err_time_unclear"
    assert "明天" in Translator("zh")(e.value.key) and Translator("en")(e.value.key)


def test_height_and_place_distance_join_the_consistency_flags():
    m, f = case("missing", "M", 78, T0), case("found", "M", 80, T0 + timedelta(days=1))
    m.height_cm, f.height_cm = 165, 182
    flags, pen = service.consistency(m, f, km=120.4)
    assert {"height_gap", "place_far"} <= set(codes(flags)) and pen >= service.PENALTY["height_gap"]
    text = service.explain_flags(Translator("zh"), flags)
    assert "17 厘米" in text and "120 公里" in text
    m.height_cm = 178
    flags, pen2 = service.consistency(m, f, km=3)
    assert {"height_ok", "place_near"} <= set(codes(flags)) and pen2 < pen
