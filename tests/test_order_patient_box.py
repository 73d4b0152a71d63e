"""The order form's patient box must not be fooled into ordering for the
wrong person: text that only partly matches one patient (a prefix of a
name, part of a PUID, a PUID in other letters' case) is listed for a
choice, never taken as that patient; only a PUID, or words that are whole
words of one patient's name or their birth date, name a patient."""

from __future__ import annotations

from datetime import date

import pytest

from tests.test_order_traps import order, order_after_a_look, page, patient_errors, requests


@pytest.fixture
def desk(make_user, login):
    """A physician signed in, CSRF on."""
    make_user("doc", "physician", full_name="Dr Alice Doe")
    return login("doc")


@pytest.mark.parametrize("typed", ["P-1", "p-10", "Ana", "quisp", "quispe anab", "-", "- -", "-,"])
def test_part_of_a_name_or_puid_orders_for_nobody(desk, catalog, create_patient, typed):
    anabel = create_patient(puid="P-10", family_name="Quispe Mamani", given_name="Anabel",
                            birth_date=date(1980, 1, 2))
    r = order(desk, typed, catalog)
    assert r.status_code == 400
    assert requests() == []
    said = " ".join(patient_errors(r))
    assert "P-10" in said, said  # offered to pick, with the PUID to tell people apart
    assert anabel.puid == "P-10"


def test_a_whole_name_among_partial_matches_is_that_patient(desk, catalog, create_patient):
    create_patient(puid="P-10", family_name="Mamani", given_name="Anabel")
    ana = create_patient(puid="P-11", family_name="Quispe", given_name="Ana")
    order_after_a_look(desk, "ana", catalog, ana)
    assert [req.patient_id for req in requests()] == [ana.id]


def test_the_birth_date_tells_two_same_names_apart(desk, catalog, create_patient):
    create_patient(puid="P-20", family_name="García", given_name="Ana", birth_date=date(1980, 1, 2))
    second = create_patient(puid="P-21", family_name="Garcia", given_name="Ana", birth_date=date(1991, 5, 6))
    r = order(desk, "ana garcía", catalog)
    assert r.status_code == 400 and requests() == []
    assert "2 patients match" in " ".join(patient_errors(r))
    order_after_a_look(desk, "ana garcia 1991-05-06", catalog, second)
    assert [req.patient_id for req in requests()] == [second.id]


def test_a_hyphenated_family_name_is_two_words(desk, catalog, create_patient):
    lopez = create_patient(puid="P-30", family_name="López-Ruiz", given_name="María")
    order_after_a_look(desk, "ruiz maria", catalog, lopez)
    assert [req.patient_id for req in requests()] == [lopez.id]


def test_the_patient_found_by_name_is_shown_with_their_alerts_before_ordering(desk, catalog, create_patient):
    quispe = create_patient(puid="P-10", family_name="Quispe", given_name="Anabel",
                            alerts="ALLERGIC TO IODINE CONTRAST")
    r = order(desk, "quispe anabel", catalog, action="submit")
    assert r.status_code == 400 and requests() == []
    assert "ALLERGIC TO IODINE CONTRAST" in page(r)
    r = order_after_a_look(desk, "quispe anabel", catalog, quispe, action="submit")
    # and on the request's own page, where the technologist and radiologist look
    assert "ALLERGIC TO IODINE CONTRAST" in page(desk.get(r.headers["Location"]))
