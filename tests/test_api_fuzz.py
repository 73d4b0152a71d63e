"""Schemathesis over the whole of /api/v1, from its own OpenAPI document.

Every documented operation is called with data generated from its schema,
valid and invalid, in-process through the WSGI app, with the bearer token
of a user who holds every role (so no handler stops at 403 before reading
its input). Patients, tests, requests in every state and a real Orthanc with
synced studies are seeded; id paths and id fields (patient_id, request_id,
test_code, physician, ...) draw from real rows most of the time, so handlers
get past "not found" to their real work. Before each operation the requests
are made anew and the Orthanc row is put back as seeded: a cancel fuzzed
earlier must not leave submit nothing to submit, nor a PATCH leave sync
nothing but a refused password.

What must hold for every call:
- never a 500, and no other 5xx unless the operation documents it (502:
  Orthanc failed; 503: the worklist folder refused a file);
- the status code, the content type, the headers and the body are the
  documented ones (the document is fixed when they differ, not the check).

``FUZZ_EXAMPLES`` (default 100) sets the examples per operation and mode.
Runs are derandomized (the same cases every run: CI cannot fail by luck);
``FUZZ_SEED=<n>`` explores other cases. ``-s`` prints the statuses seen.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict
from datetime import date

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from ghimaging.extensions import db
from tests.support import dicomgen

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
SEED = os.environ.get("FUZZ_SEED")


@pytest.fixture
def app_config():
    # A PATCH or POST may point a server at a closed or silent port: give up in a second.
    return {"ORTHANC_TIMEOUT": 1}



class World:
    """The seeded rows, the ids the hooks draw from, and :meth:`reset`."""

    def __init__(self, api, catalog, create_patient, create_request, orthanc_row, orthanc):
        from ghimaging.models import OrthancStudy
        from ghimaging.orthanc import sync

        self.staff = api("admin", "physician", "technologist", "radiologist")
        self.catalog, self.create_request = catalog, create_request
        studies = list(dicomgen.generate_studies(2, 1, seed=9, rows=16, cols=16))
        for ds in studies:
            orthanc.upload(dicomgen.to_bytes(ds))
        # Two patients whose PUID is a study's PatientID (links need no
        # confirmation), one of nobody's studies.
        self.patients = [create_patient(puid=str(ds.PatientID)) for ds in studies] + [create_patient(puid="FZ-3")]
        assert sync.run(orthanc_row.id).error == ""
        self.server_id = orthanc_row.id
        self.server_as_seeded = {k: getattr(orthanc_row, k) for k in
                                 ("label", "url", "browser_url", "username", "password_enc")}
        self.ids = {
            "patients": [p.id for p in self.patients],
            "requests": [],
            "studies": list(db.session.scalars(select(OrthancStudy.id).order_by(OrthancStudy.id))),
            "orthanc/servers": [orthanc_row.id],
            "tests": [catalog["chest"].code, catalog["abd"].code],
        }
        assert len(self.ids["studies"]) == 2
        self.orthanc_url, self.orthanc_user, self.orthanc_password = orthanc.url, orthanc.username, orthanc.password
        self.headers = self.staff.headers
        self.username = self.staff.user.username

    def reset(self) -> None:
        """Fresh requests in every state (for the id pool), and the Orthanc row as seeded."""
        from ghimaging.imaging import workflow
        from ghimaging.models import OrthancServer, OrthancStudy
        from ghimaging.orthanc import matching

        db.session.rollback()
        p = self.patients
        draft = self.create_request(p[0])
        requested = self.create_request(p[0], submit=True)
        linked = self.create_request(p[1], submit=True)
        done = self.create_request(p[2], submit=True)
        workflow.create_result(done, self.staff.user, radiologist=None, result_date=date.today(), report="Normal.")
        cancelled = self.create_request(p[0], self.catalog["abd"])
        workflow.cancel(cancelled, self.staff.user, "duplicate")
        db.session.commit()
        self.ids["requests"][:] = [draft.id, requested.id, done.id, cancelled.id, linked.id]
        # each patient's own study: the first one free to link to ``requested``,
        # the second one linked, for unlink to find
        matching.link(db.session.get(OrthancStudy, self.ids["studies"][1]), linked, self.staff.user)
        server = db.session.get(OrthancServer, self.server_id)
        for key, value in self.server_as_seeded.items():
            setattr(server, key, value)
        db.session.commit()


@pytest.fixture
def world(app, api, catalog, create_patient, create_request, orthanc_row, orthanc):
    return World(api, catalog, create_patient, create_request, orthanc_row, orthanc)


def _pool(path: str) -> str:
    for key in ("orthanc/servers", "patients", "requests", "studies"):
        if path.startswith(f"/{key}/"):
            return key
    raise AssertionError(f"no id pool for {path}")


def load_schema(app, world: World):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    ids = world.ids
    fields = {"patient_id": "patients", "request_id": "requests", "test_code": "tests"}

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        """Two cases in three use a real row's id."""
        if "id" not in (path_parameters or {}):
            return st.just(path_parameters)
        pool = _pool(context.operation.path)
        return st.integers(0, 5).map(
            lambda i: {**path_parameters, "id": ids[pool][i % len(ids[pool])]} if i < 4 else path_parameters)

    @schema.hook
    def flatmap_body(context, body):
        """Three bodies in four name a real patient, request, test or user, and
        often a well-formed time (else nearly every order would stop at "no
        patient" or at a malformed date, before the workflow)."""
        if not isinstance(body, dict):
            return st.just(body)

        def realistic(pick: int) -> dict:
            out = dict(body)
            for name, pool in fields.items():
                if name in out:
                    out[name] = ids[pool][pick % len(ids[pool])]
            if "request_id" in out and context.operation.path.endswith("/unlink") and pick % 2:
                out["request_id"] = ids["requests"][-1]  # the request the second study is linked to
            if "test_codes" in out and pick % 3 == 0:
                out["test_codes"] = ids["tests"][: 1 + pick % 2]
            if "patient_id" in out and "test_code" not in out and "test_codes" not in out:
                out["test_code"] = ids["tests"][pick % 2]  # an order needs one or the other
            for name in ("physician", "radiologist"):
                if name in out and pick % 2:
                    out[name] = world.username
            if "scheduled_at" in out and pick % 4:
                out["scheduled_at"] = "2030-01-02T08:15" if pick % 2 else "2030-01-02T08:15+05:30"
            if "date" in out and pick % 4:
                out["date"] = "2030-01-02"
            if "modality" in out and pick % 2:
                out.update(modality="CR", ae_title=f"FUZZ{pick}")
            if "url" in out and pick % 3 == 0:  # the real Orthanc: right, wrong or generated password
                out.update(url=world.orthanc_url, username=world.orthanc_user,
                           password=[world.orthanc_password, "wrong", out.get("password")][pick // 3 % 3])
            return out

        return st.integers(0, 15).map(lambda pick: realistic(pick) if pick < 12 else body)

    return schema


def no_server_error(ctx, response, case):
    """A 500 never; another 5xx only where the operation documents it."""
    documented = set(case.operation.definition.raw.get("responses", {}))
    if response.status_code == 500 or (response.status_code >= 500 and str(response.status_code) not in documented):
        raise AssertionError(f"{case.operation.label} answered {response.status_code}: {response.text[:500]}")


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # a re-check that died
def test_no_operation_answers_a_server_error_or_off_its_document(app, world):
    """One test for all operations (one seeding, one Orthanc), each fuzzed
    with valid and with invalid data; every failure is reported at the end."""
    schema = load_schema(app, world)
    failures: list[str] = []
    statuses: dict[str, Counter] = defaultdict(Counter)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            world.reset()

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=SEED is None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
            def run(case):
                response = case.call(headers=world.headers)
                statuses[operation.label][response.status_code] += 1  # noqa: B023 - run in this iteration only
                case.validate_response(response, checks=CHECKS, headers=world.headers)

            if SEED:
                run = hypothesis.seed(int(SEED))(run)
            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    for label, counts in sorted(statuses.items()):
        print(f"{label:40} {dict(sorted(counts.items()))}")
    assert len(statuses) >= 23, f"only {len(statuses)} operations were called"
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(failures)
    # The seeding and the hooks work: the handlers got past "not found" to their real work.
    succeeded = {label for label, counts in statuses.items() if any(200 <= code < 300 for code in counts)}
    assert {"POST /patients", "POST /tests", "POST /requests", "POST /requests/{id}/submit",
            "POST /requests/{id}/cancel", "POST /requests/{id}/result", "POST /studies/{id}/link",
            "POST /studies/{id}/unlink", "POST /orthanc/servers", "POST /orthanc/servers/{id}/sync",
            "PATCH /orthanc/servers/{id}", "GET /studies/{id}"} <= succeeded, statuses


@pytest.fixture(autouse=True)
def _rechecks_end(app):
    """A PATCH that changes a server re-checks it in a background thread:
    let those end before the tables are emptied (each is bounded by
    ORTHANC_TIMEOUT, 1 s here)."""
    yield
    for t in threading.enumerate():
        if t.name.startswith("orthanc-recheck-"):
            t.join(30)
