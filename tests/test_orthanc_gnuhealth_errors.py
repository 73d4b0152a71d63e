"""The Orthanc and GNU Health errors are typed (ghimaging.exceptions), so the
one mapping of each caller answers them: a remote that fails is 502, one
that times out 504, a resource Orthanc lacks 404, a taken label 409, bad
input and a failed check 422 with the field at fault."""

from __future__ import annotations

import pytest

from ghimaging import exceptions
from ghimaging.api.errors import from_domain
from ghimaging.gnuhealth import errors as gh
from ghimaging.gnuhealth.pull import ImportProblem
from ghimaging.gnuhealth.push import PatientMismatch
from ghimaging.gnuhealth.settings import SettingsError
from ghimaging.orthanc import client as orthanc_client
from ghimaging.orthanc import errors as oe
from ghimaging.orthanc import servers
from tests.support.orthanc import find_free_port


@pytest.mark.parametrize("exc,status,code", [
    (oe.Unreachable("Orthanc at x: connection refused."), 502, "orthanc_unreachable"),
    (oe.TimedOut("Orthanc at x did not answer in time."), 504, "orthanc_timeout"),
    (oe.Unauthorized("Orthanc refused the username or password."), 502, "orthanc_unauthorized"),
    (oe.BadAnswer("Orthanc answered 500.", status=500), 502, "orthanc_bad_answer"),
    (oe.NotFound("/studies/x not found in Orthanc."), 404, "not_found"),
    (gh.Unreachable("GNU Health cannot be reached."), 502, "unreachable"),
    (gh.Timeout("GNU Health did not answer within 1 s."), 504, "timeout"),
    (gh.WrongPassword("refused"), 502, "wrong_password"),
    (PatientMismatch("someone else"), 409, "patient_mismatch"),
    (ImportProblem("no PUID"), 409, "import_problem"),
    (servers.LabelTaken("A server labelled 'Main' already exists.", "label"), 409, "conflict"),
    (servers.CheckFailed("Orthanc refused the username or password.", "password"), 422, "check_failed"),
    (servers.ServerError("The label is required (at most 64 characters).", "label"), 422, "validation"),
    (SettingsError("The password is required.", "password"), 422, "validation"),
])
def test_each_error_has_its_kind_and_the_api_status_follows(exc, status, code):
    answer = from_domain(exc)
    assert (answer.status, answer.error, answer.message) == (status, code, str(exc))


def test_the_names_other_modules_import_stay_where_they_were():
    assert orthanc_client.TimedOut is oe.TimedOut and orthanc_client.NotFound is oe.NotFound
    assert issubclass(oe.TimedOut, oe.Unreachable) and oe.TimedOut("x").timeout
    assert issubclass(oe.NotFound, exceptions.NotFound) and issubclass(oe.NotFound, oe.OrthancError)
    from ghimaging.gnuhealth import client as ghc

    assert ghc.Timeout is gh.Timeout and ghc.GnuHealthError is gh.GnuHealthError
    assert gh.Timeout("x").transient and not gh.WrongPassword("x").transient
    assert issubclass(PatientMismatch, gh.GnuHealthError)  # the outbox still records it as a failed push


def test_field_errors_name_their_field():
    assert servers.ServerError("bad", "username").fields == {"username": "bad"}
    assert servers.ServerError("bad").fields == {"url": "bad"}
    assert SettingsError("bad", "database").fields == {"database": "bad"}
    assert SettingsError("Configure the GNU Health server first.").fields == {}


def test_a_failed_check_answers_422_check_failed_with_the_field(app, api):
    closed = f"http://127.0.0.1:{find_free_port()}"
    r = api("admin").post("/api/v1/orthanc/servers", json={"label": "Nowhere", "url": closed})
    assert r.status_code == 422, r.json
    assert r.json["error"] == "check_failed" and "refused" in r.json["fields"]["url"]


def test_a_taken_label_answers_409_conflict_from_its_type(app, api):
    from ghimaging.extensions import db
    from ghimaging.models import OrthancServer

    db.session.add(OrthancServer(label="Main", url="http://127.0.0.1:9"))
    db.session.commit()
    r = api("admin").post("/api/v1/orthanc/servers", json={"label": "MAIN", "url": "http://127.0.0.1:10"})
    assert (r.status_code, r.json["error"]) == (409, "conflict")
