"""The policy table itself: who may read, see unmasked and handle which kind of record."""
from __future__ import annotations

import pytest

from backend.core.errors import NotFound
from backend.core.policy import (
    ROLES, Action, Facts, Kind, Person, describe, may, may_ever, place_scope, require,
)

CITY, JIAOJIANG, HAIMEN, WENLING = "/1/", "/1/2/", "/1/2/30/", "/1/5/"


def person(role, pid=100, path=JIAOJIANG, active=True):
    return Person(role=role, id=pid, path=path, active=active)


DISPUTE = Facts.of(owners=7, staff=8, unit=HAIMEN, place=HAIMEN)


def test_a_mediator_of_the_unit_reads_and_handles_a_dispute_but_one_elsewhere_does_not():
    assert may(person("mediator"), Action.read, Kind.dispute, DISPUTE)
    assert may(person("mediator"), Action.handle, Kind.dispute, DISPUTE)
    assert not may(person("mediator", path=WENLING), Action.read, Kind.dispute, DISPUTE)


def test_officers_procurators_and_deputies_never_read_a_dispute():
    for role in ("officer", "procurator", "deputy"):
        assert not may(person(role, path=CITY), Action.read, Kind.dispute, DISPUTE), role


def test_an_official_reads_a_dispute_of_the_place_but_only_masked():
    assert may(person("official"), Action.read, Kind.dispute, DISPUTE)
    assert not may(person("official"), Action.personal, Kind.dispute, DISPUTE)


def test_the_citizen_who_reported_it_reads_it_unmasked_and_nobody_else_does():
    assert may(person("citizen", pid=7, path=None), Action.personal, Kind.dispute, DISPUTE)
    assert not may(person("citizen", pid=9, path=None), Action.read, Kind.dispute, DISPUTE)


def test_staff_without_a_jurisdiction_get_nothing_place_bound_and_no_statistics():
    nowhere = person("official", path=None)
    assert not may(nowhere, Action.read, Kind.dispute, DISPUTE)
    assert not may(nowhere, Action.read, Kind.stats, Facts.of(place=CITY))
    assert place_scope(nowhere) is None
    assert place_scope(person("official", path=CITY)) == CITY


def test_a_deactivated_person_may_nothing_even_as_admin_or_owner():
    assert not may(person("admin", active=False), Action.read, Kind.dispute, DISPUTE)
    assert not may(person("citizen", pid=7, active=False), Action.read, Kind.dispute, DISPUTE)
    assert may(person("admin", path=None), Action.read, Kind.audit)


def test_procurators_read_items_of_their_procuratorate_exactly_not_those_below_it():
    item = Facts.of(owners=1, parties=[1, 2], procuratorate=JIAOJIANG, county=JIAOJIANG, place=HAIMEN)
    assert may(person("procurator", path=JIAOJIANG), Action.handle, Kind.supervision, item)
    assert not may(person("procurator", path=CITY), Action.read, Kind.supervision, item)
    assert not may(person("officer", path=CITY), Action.read, Kind.supervision, item)
    assert may(person("deputy", pid=2, path=None), Action.personal, Kind.supervision, item)
    assert not may(person("deputy", pid=3, path=JIAOJIANG), Action.read, Kind.supervision, item)


def test_require_answers_not_found_so_existence_is_never_revealed():
    with pytest.raises(NotFound):
        require(person("officer"), Action.read, Kind.dispute, DISPUTE)
    require(person("mediator"), Action.read, Kind.dispute, DISPUTE)


def test_public_documents_are_open_to_every_role_and_nothing_else_is_by_default():
    for role in ROLES:
        assert may(person(role), Action.read, Kind.document, Facts(public=True))
        if role != "admin":
            assert not may(person(role), Action.read, Kind.audit)
    assert not may_ever(person("citizen"), Action.handle, Kind.dispute)


def test_a_face_match_is_visible_to_officers_where_either_case_lies():
    m = Facts.of(place=[HAIMEN, "/1/9/"])
    assert may(person("officer", path="/1/9/"), Action.read, Kind.match, m)
    assert may(person("officer", path=JIAOJIANG), Action.read, Kind.match, m)
    assert not may(person("officer", path=WENLING), Action.read, Kind.match, m)


def test_the_table_can_be_printed_for_the_docs():
    rows = describe()
    assert ("official", "dispute", "read", "owner, place within jurisdiction") in rows
    assert ("officer", "dispute", "read", "owner") in rows  # only a dispute they reported themselves


def test_the_sql_prefilter_of_places_is_a_superset_of_every_within_and_at_rule():
    from backend.core.policy import places_inside

    class N:
        def __init__(self, i, path):
            self.id, self.path = i, path

    nodes = [N(1, CITY), N(2, JIAOJIANG), N(30, HAIMEN), N(5, WENLING)]
    assert places_inside(person("official"), nodes) == [2, 30]
    assert places_inside(person("official", path=None), nodes) == []
    assert places_inside(person("admin"), nodes) is None
    assert places_inside(person("official", path=CITY), nodes) is None  # everything: no filter needed
