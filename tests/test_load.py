"""A served app under a load of list pages and API calls while Orthanc
syncs (the background loop of each worker, syncs asked through the API and
wakes as Orthanc's push sends them)
and DICOM uploads run: no 5xx, and no lock error ("database is locked",
deadlock, serialization failure) in any answer or in the server's log.

Runs on the suite's database: SQLite (WAL) on the first pass, PostgreSQL on
the second. ``ghimaging serve`` with two worker processes, so two background
loops and two pools of request threads share the database, as on a box
that serves with the defaults. Nothing here measures time.
"""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from tests.support import dicomgen
from tests.support.served import LOCK_ERRORS, Host

TEST_CODE = "XR-LOAD"
REQUESTS = 320  # list pages and API calls, spread over the threads below
THREADS = 6
UPLOADS = 8

# What each role reads: the lists a person of that role opens all day.
PAGES = {
    "phys": ["/", "/requests", "/requests?state=requested", "/patients/", "/orthanc/studies"],
    "tech": ["/", "/requests", "/upload/", "/orthanc/studies", "/orthanc/patients"],
    "rad": ["/", "/requests?state=done", "/orthanc/studies"],
    "admin": ["/admin/users", "/catalog/", "/orthanc/servers", "/admin/worklists/", "/orthanc/studies"],
}
API_READS = ["/api/v1/requests", "/api/v1/studies", "/api/v1/patients", "/api/v1/tests",
             "/api/v1/requests?state=requested", "/api/v1/studies/unmatched"]


def one_study(n: int) -> list[tuple[str, bytes]]:
    uid = generate_uid(prefix=None)
    return [(f"s{n}-{k}.dcm", dicomgen.to_bytes(dicomgen.make_instance(
        f"LOAD{n}", f"Load^Patient{n}", uid, series_uid=f"{uid}.{k}", series_number=k)))
        for k in (1, 2)]


@pytest.fixture
def served(tmp_path, fresh_url, orthanc):
    host = Host(tmp_path / "host", fresh_url, workers=2, threads=6,
                env={"GHIMAGING_ORTHANC_SYNC_INTERVAL": "1", "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "1",
                     "GHIMAGING_GNUHEALTH_PULL_INTERVAL": "0",
                     "GHIMAGING_WORKLIST_DIR": str(tmp_path / "worklists")})
    host.cli("init")
    for user, role in (("admin", "admin"), ("phys", "physician"), ("tech", "technologist"),
                       ("rad", "radiologist")):
        host.create_user(user, role)
    for n in range(3):
        for _, data in one_study(100 + n):
            orthanc.upload(data)
    host.start()
    try:  # from here on the served processes are stopped whatever fails
        for user in PAGES:  # each chooses their own password at the first sign-in
            host.signed_in(user)
        admin = host.api(host.token("admin"))
        r = admin.post("/api/v1/orthanc/servers", {"label": "Main", "url": orthanc.url, "username": orthanc.username,
                                                   "password": orthanc.password})
        assert r.status_code == 201, r.text
        r = admin.post("/api/v1/tests", {"code": TEST_CODE, "name": "Chest under load", "modality": "CR",
                                         "ae_title": "XRAY1"})
        assert r.status_code == 201, r.text
        yield host, r.json()
    finally:
        host.stop()


def test_list_pages_and_api_calls_under_syncs_and_uploads_answer_without_5xx_or_lock_errors(served):
    host, _ = served
    tokens = {user: host.token(user) for user in PAGES}
    server_id = host.api(tokens["admin"]).get("/api/v1/orthanc/servers").json()["items"][0]["id"]
    local = threading.local()
    answers: list[tuple[str, str, int, str]] = []
    lock = threading.Lock()
    puids = itertools.count(1)

    def seen(user: str, what: str, r: requests.Response) -> requests.Response:
        with lock:
            answers.append((user, what, r.status_code, r.text[:300]))
        return r

    def clients(user: str) -> tuple[requests.Session, Any]:
        """This thread's browser and API client for ``user`` (a
        requests.Session is not shared between threads)."""
        if not hasattr(local, "c"):
            local.c = {}
        if user not in local.c:
            local.c[user] = (host.signed_in(user), host.api(tokens[user]))
        return local.c[user]

    def call(i: int) -> None:
        rnd = random.Random(i)  # the same mix every run
        user = rnd.choice(list(PAGES))
        browser, api = clients(user)
        kind = rnd.random()
        if kind < 0.5:
            path = rnd.choice(PAGES[user])
            seen(user, path, browser.get(host.url + path, timeout=120))
        elif kind < 0.8:
            path = rnd.choice(API_READS)
            seen(user, path, api.get(path))
        elif kind < 0.92:
            _, phys = clients("phys")
            p = seen("phys", "POST patient", phys.post("/api/v1/patients", {
                "puid": f"LD{next(puids):05d}", "family_name": "Load", "given_name": f"N{i}", "sex": "O"}))
            if p.status_code == 201:
                seen("phys", "POST order", phys.post("/api/v1/requests", {
                    "patient_id": p.json()["id"], "test_code": TEST_CODE, "submit": True}))
        elif i % 2:
            _, tech = clients("tech")
            seen("tech", "POST sync", tech.post(f"/api/v1/orthanc/servers/{server_id}/sync"))
        else:  # as Orthanc's push does: the background loop syncs soon after
            _, tech = clients("tech")
            seen("tech", "POST wake", tech.post(f"/api/v1/orthanc/servers/{server_id}/wake"))

    def uploads() -> None:
        browser = host.signed_in("tech")
        for n in range(UPLOADS):
            seen("tech", "upload", host.upload(browser, one_study(n)))

    with ThreadPoolExecutor(THREADS + 1) as pool:
        jobs = [pool.submit(uploads)] + [pool.submit(call, i) for i in range(REQUESTS)]
        for job in jobs:
            job.result()
    host.stop()

    expected = {"POST patient": {201}, "POST order": {201}, "POST sync": {200, 409}, "POST wake": {202}}
    wrong = [a for a in answers if a[2] not in expected.get(a[1], {200})]
    assert not wrong, wrong[:10]
    assert not [a for a in answers if LOCK_ERRORS.search(a[3])]
    assert not host.log_problems(), host.log_problems()[:20]
    assert len(answers) >= REQUESTS + UPLOADS
    kinds = {a[1] for a in answers}
    assert {"upload", "POST sync", "POST wake", "POST order"} <= kinds and any(k.startswith("/api/") for k in kinds)
