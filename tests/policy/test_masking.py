"""Masking holds for the formats people actually write (table-driven): mobiles with +86 / 0086,
spaces, dashes and full-width digits; landlines with area codes; 15- and 18-digit IDs, also
spaced; bank cards. And what must stay readable: dates, amounts, case numbers, coordinates."""
from __future__ import annotations

import pytest

from backend.core.masking import mask_party, mask_personal, mask_text, normalize_phone

# (written, must not survive, must appear)
MASKED = [
    ("电话13912345678", "13912345678", "139****5678"),
    ("电话+8613912345678", "12345678", "139****5678"),
    ("+86 139 1234 5678", "1234 5678", "139****5678"),
    ("0086-139-1234-5678", "1234", "139****5678"),
    ("手机139 1234 5678联系", "1234 5678", "139****5678"),
    ("手机139-1234-5678", "1234-5678", "139****5678"),
    ("手机１３９１２３４５６７８", "１２３４", "139****5678"),
    ("手机＋８６ １３９ １２３４ ５６７８", "１２３４", "139****5678"),
    ("两个号码13912345678 13700001111", "13700001111", "137****1111"),
    ("座机0576-88123456", "88123456", "0576-****3456"),
    ("座机（0576）88123456", "88123456", "0576-****3456"),
    ("座机0576 8812 3456", "8812 3456", "0576-****3456"),
    ("北京010-61234567", "61234567", "010-****4567"),
    ("身份证330102197001011234", "19700101", "330102"),
    ("身份证33010219700101123X", "19700101", "330102"),
    ("身份证330102 19700101 1234", "19700101", "330102"),
    ("身份证330102-1970-0101-1234", "0101", "330102"),
    ("老身份证330102700101123", "700101", "330102"),
    ("身份证３３０１０２１９７００１０１１２３４", "１９７００１０１", "330102"),
    ("卡号6222021234567890123", "02123456789", "6222 **** **** 0123"),
    ("卡号6222 0212 3456 7890 123", "0212 3456", "6222 **** **** 0123"),
    ("卡号4392-2500-1234-5678", "2500-1234", "4392 **** **** 5678"),
]

# written → unchanged
KEPT = [
    "2026-11-28 下午三点",
    "案件编号 TZ-JJ-20261128-0001",
    "欠款30000元，共3个月",
    "位置 28.67312,121.44187",
    "报警请拨110或12345",
    "门牌东山路88号3单元502室",
]


@pytest.mark.parametrize("written,gone,shown", MASKED)
def test_personal_numbers_are_masked_in_every_common_format(written, gone, shown):
    out = mask_text(written)
    assert gone not in out and shown in out, out
    assert mask_personal(written) == out


@pytest.mark.parametrize("written", KEPT)
def test_dates_amounts_case_numbers_and_coordinates_stay_readable(written):
    assert mask_text(written) == written


def test_a_date_next_to_a_phone_keeps_its_dashes():
    assert mask_text("2026-11-28 13912345678") == "2026-11-28 139****5678"


@pytest.mark.parametrize("raw", ["13912345678", "+86 139 1234 5678", "139-1234-5678", "１３９１２３４５６７８",
                                 "0086 13912345678"])
def test_every_mobile_format_is_understood_as_the_same_number(raw):
    assert normalize_phone(raw) == "13912345678"


@pytest.mark.parametrize("party,gone,shown", [
    ("陈大富 13700001111", ["大富", "13700001111"], ["陈**", "137****1111"]),
    ("楼上602住户王某", ["王某"], ["王*", "602"]),
    ("张三、李四两家", ["张三", "李四"], ["张*", "李*"]),
])
def test_party_names_and_numbers_are_masked_for_people_who_do_not_own_the_case(party, gone, shown):
    out = mask_party(party)
    assert all(g not in out for g in gone) and all(s in out for s in shown), out
