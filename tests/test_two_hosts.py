"""Two app hosts on one database, one real Orthanc.

Each host is set up as a second host really is (README, *Production →
Several hosts*): its own instance folder, the same database URL, and the
two shared keys (``credentials.key`` decrypts the stored Orthanc password,
``secret_key`` signs sessions) copied from the first host before it ever
starts. The main test runs twice, once for each way a host may run its
background work (Orthanc sync, worklist files, GNU Health outbox):

- ``serve``: each host serves with ``ghimaging serve`` and runs its own
  background loop in its served process (the installer's single unit);
- ``worker``: each host serves with ``GHIMAGING_RUN_BACKGROUND=false`` and
  runs ``ghimaging worker`` beside it (the installer's
  ``ghimaging-worker.service``, for several app hosts). The two served
  processes then sync only when a request asks (an upload, *Sync now*),
  never on their own; the two workers race for the lease.

What is checked comes from the database and Orthanc, not from timing:
test-only triggers log every change of a server's lease owner and, for
every mirrored row written, who held the lease at that moment (and, on
PostgreSQL, which host wrote it: each host's ``application_name``).

Which database: two hosts need a database server, so on the suite's
PostgreSQL pass (``GHIMAGING_TEST_DATABASE_URL``, set by ``bash
deploy/test.sh``) the two hosts share a fresh PostgreSQL database. On the
SQLite pass there is no database server: the same test then runs the two
hosts' processes on one SQLite file (WAL), as several processes of one
machine share it (``ghimaging serve --workers 2``, or ``serve`` beside
``ghimaging worker``); the rules (one sync at a time, no duplicates,
unique numbers) are the same.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text

from tests.support import dicomgen
from tests.support.served import Host

TEST_CODE = "XR-2H"
# Every host syncs each second it may; its loop looks every few seconds.
SHARED_SETTINGS = {"GHIMAGING_ORTHANC_SYNC_INTERVAL": "1", "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "0",
                   "GHIMAGING_GNUHEALTH_PULL_INTERVAL": "0"}

TRIGGERS = {
    "postgresql": [
        "CREATE TABLE test_lease_log (id serial PRIMARY KEY, server_id int, old_owner text, new_owner text)",
        "CREATE TABLE test_mirror_writes (id serial PRIMARY KEY, tbl text, holder text, app text)",
        """CREATE FUNCTION test_log_lease() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             INSERT INTO test_lease_log (server_id, old_owner, new_owner)
             VALUES (NEW.id, OLD.lease_owner, NEW.lease_owner); RETURN NEW; END $$""",
        """CREATE TRIGGER test_log_lease AFTER UPDATE ON orthanc_servers FOR EACH ROW
             WHEN (OLD.lease_owner IS DISTINCT FROM NEW.lease_owner) EXECUTE FUNCTION test_log_lease()""",
        """CREATE FUNCTION test_log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             INSERT INTO test_mirror_writes (tbl, holder, app)
             SELECT TG_TABLE_NAME, s.lease_owner, current_setting('application_name')
             FROM orthanc_servers s WHERE s.id = NEW.server_id; RETURN NEW; END $$""",
        """CREATE FUNCTION test_log_series_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             INSERT INTO test_mirror_writes (tbl, holder, app)
             SELECT TG_TABLE_NAME, s.lease_owner, current_setting('application_name')
             FROM orthanc_servers s JOIN orthanc_studies st ON st.server_id = s.id WHERE st.id = NEW.study_id;
             RETURN NEW; END $$""",
        "CREATE TRIGGER test_log_study AFTER INSERT ON orthanc_studies FOR EACH ROW EXECUTE FUNCTION test_log_write()",
        "CREATE TRIGGER test_log_patient AFTER INSERT ON orthanc_patients FOR EACH ROW EXECUTE FUNCTION test_log_write()",
        """CREATE TRIGGER test_log_series AFTER INSERT ON orthanc_series FOR EACH ROW
             EXECUTE FUNCTION test_log_series_write()""",
    ],
    "sqlite": [
        "CREATE TABLE test_lease_log (id INTEGER PRIMARY KEY AUTOINCREMENT, server_id INT, old_owner TEXT,"
        " new_owner TEXT)",
        "CREATE TABLE test_mirror_writes (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, holder TEXT, app TEXT)",
        """CREATE TRIGGER test_log_lease AFTER UPDATE OF lease_owner ON orthanc_servers FOR EACH ROW
             WHEN OLD.lease_owner IS NOT NEW.lease_owner BEGIN
             INSERT INTO test_lease_log (server_id, old_owner, new_owner)
             VALUES (NEW.id, OLD.lease_owner, NEW.lease_owner); END""",
        *[f"""CREATE TRIGGER test_log_{table} AFTER INSERT ON {table} FOR EACH ROW BEGIN
                INSERT INTO test_mirror_writes (tbl, holder, app)
                SELECT '{table}', lease_owner, '' FROM orthanc_servers WHERE id = NEW.server_id; END"""
          for table in ("orthanc_studies", "orthanc_patients")],
        """CREATE TRIGGER test_log_orthanc_series AFTER INSERT ON orthanc_series FOR EACH ROW BEGIN
             INSERT INTO test_mirror_writes (tbl, holder, app)
             SELECT 'orthanc_series', s.lease_owner, '' FROM orthanc_servers s
             JOIN orthanc_studies st ON st.server_id = s.id WHERE st.id = NEW.study_id; END""",
    ],
}

DUPLICATES = {
    "studies": "SELECT server_id, study_uid, patient_id FROM orthanc_studies GROUP BY 1, 2, 3 HAVING count(*) > 1",
    "series": "SELECT study_id, series_uid FROM orthanc_series GROUP BY 1, 2 HAVING count(*) > 1",
    "Orthanc patients": "SELECT server_id, patient_id FROM orthanc_patients GROUP BY 1, 2 HAVING count(*) > 1",
    "links": "SELECT study_id, request_id FROM study_links GROUP BY 1, 2 HAVING count(*) > 1",
    "link events": "SELECT study_uid, patient_id, request_id FROM link_events WHERE action = 'link'"
                   " GROUP BY 1, 2, 3 HAVING count(*) > 1",
    "accession numbers": "SELECT accession_number FROM imaging_requests GROUP BY 1 HAVING count(*) > 1",
    "StudyInstanceUIDs of requests": "SELECT study_instance_uid FROM imaging_requests GROUP BY 1 HAVING count(*) > 1",
    "PUIDs": "SELECT puid FROM patients GROUP BY 1 HAVING count(*) > 1",
}


def with_app_name(url: str, name: str) -> str:
    """The host's database URL; on PostgreSQL it names the host
    (``application_name``, seen in ``pg_stat_activity`` and by the triggers)."""
    if not url.startswith("postgresql"):
        return url
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def owner_pid(owner: str) -> int:
    """The process id in a lease owner (``host:pid:thread:nonce``, see orthanc/lease.py)."""
    return int(owner.split(":")[1])


def wait_until(what: str, check: Callable[[], Any], seconds: float = 150) -> Any:
    """Poll ``check`` until it gives something true (a condition, not a
    measured time: the deadline only stops a hung test)."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.5)


def dicom(puid: str, name: str, study_uid: str | None = None, accession: str = "", series: int = 2) -> list[bytes]:
    uid = study_uid or generate_uid(prefix=None)
    return [dicomgen.to_bytes(dicomgen.make_instance(puid, name, uid, accession=accession, series_number=n,
                                                     series_uid=f"{uid}.{n}"))
            for n in range(1, series + 1)]


@pytest.fixture
def two_hosts(request, tmp_path, fresh_url, orthanc):
    """Hosts A and B, set up as the README says and not yet serving; the
    database with the test's triggers; Orthanc logging every HTTP request.
    Parametrised indirectly: ``worker`` gives each host a ``ghimaging
    worker`` beside a served process that leaves the background work to it."""
    kind = "postgresql" if fresh_url.startswith("postgresql") else "sqlite"
    settings = {**SHARED_SETTINGS, "GHIMAGING_WORKLIST_DIR": str(tmp_path / "worklists")}
    separate = getattr(request, "param", "serve") == "worker"
    a = Host(tmp_path / "host-a", with_app_name(fresh_url, "host-a"), env=settings, separate_worker=separate)
    a.cli("init")
    for user, role in (("admin", "admin"), ("phys", "physician"), ("tech", "technologist")):
        a.create_user(user, role)
    add_server = (f"from ghimaging import create_app\nfrom ghimaging.extensions import db\n"
                  f"from ghimaging.orthanc import servers\nwith create_app().app_context():\n"
                  f"    servers.add_server(label='Main', url={orthanc.url!r}, username={orthanc.username!r},"
                  f" password={orthanc.password!r})\n    db.session.commit()\n")
    subprocess.run([sys.executable, "-c", add_server], env=a.env, check=True, capture_output=True, timeout=120)
    b = Host(tmp_path / "host-b", with_app_name(fresh_url, "host-b"), env=settings, separate_worker=separate)
    b.copy_secrets_from(a)
    b.cli("init")  # on a database already made: nothing to do, as on an upgrade
    engine = create_engine(fresh_url)
    with engine.begin() as conn:
        for statement in TRIGGERS[kind]:
            conn.execute(text(statement))
    orthanc.session.put(orthanc.url + "/tools/log-level-http", data="verbose", timeout=30).raise_for_status()
    try:
        yield kind, a, b, engine
    finally:
        a.stop()
        b.stop()
        engine.dispose()


@pytest.mark.parametrize("two_hosts", ["serve", "worker"], indirect=True)
def test_two_hosts_sync_one_at_a_time_without_duplicates_and_number_orders_uniquely(two_hosts, orthanc, tmp_path):
    kind, a, b, engine = two_hosts
    hosts = (a, b)
    separate = a.separate_worker
    for n in range(4):  # studies waiting before either host starts: both race for the first, full sync
        for data in dicom(f"OLD{n}", f"Old^Patient{n}"):
            orthanc.upload(data)
    a.spawn(), b.spawn()
    a.ready(), b.ready()
    served = {"host-a": a.pids(), "host-b": b.pids()}
    workers = {"host-a": a.worker_pids(), "host-b": b.worker_pids()}
    assert all(workers.values()) == separate, workers  # each worker still running beside its host
    pids = {host: served[host] | workers[host] for host in served}
    # Whose loop must win the lease on each host: the worker's, or (without one) the served process's.
    loops = workers if separate else served
    for user in ("admin", "phys", "tech"):  # each chooses their own password at the first sign-in
        a.signed_in(user)
    admin = a.api(a.token("admin"))
    assert admin.post("/api/v1/tests", {"code": TEST_CODE, "name": "Chest, two hosts", "modality": "CR",
                                        "ae_title": "XRAY1"}).status_code == 201
    server_id = admin.get("/api/v1/orthanc/servers").json()["items"][0]["id"]
    phys = [h.api(h.token("phys")) for h in hosts]
    tech = [h.api(h.token("tech")) for h in hosts]
    sessions = [h.signed_in("tech") for h in hosts]
    answers: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def seen(what: str, r: requests.Response) -> requests.Response:
        with lock:
            answers.append((what, r.status_code, r.text[:300]))
        return r

    orders: list[dict[str, Any]] = []

    def order(i: int) -> None:
        api = phys[i % 2]
        p = seen("patient", api.post("/api/v1/patients", {"puid": f"P2H{i:03d}", "family_name": f"Two{i}",
                                                          "given_name": "Host", "sex": "F"}))
        r = seen("order", api.post("/api/v1/requests", {"patient_id": p.json()["id"], "test_code": TEST_CODE,
                                                         "submit": True}))
        with lock:
            orders.append(r.json())

    race: dict[str, list[int]] = {}

    def same_puid(j: int) -> None:
        """Both hosts register the same PUID at the same moment: one wins, the other is told."""
        gate = threading.Barrier(2)

        def one(api) -> int:
            gate.wait()
            return seen("same PUID", api.post("/api/v1/patients", {"puid": f"RACE{j}", "family_name": "Race",
                                                                   "given_name": f"N{j}", "sex": "M"})).status_code

        with ThreadPoolExecutor(2) as pool:
            race[f"RACE{j}"] = sorted(pool.map(one, phys))

    def api_sync(i: int) -> None:
        seen("API sync", tech[i % 2].post(f"/api/v1/orthanc/servers/{server_id}/sync"))

    shared_study = dicom("SHARED", "Both^Hosts")  # the same files sent through both hosts at once

    def upload(i: int) -> None:
        files = shared_study if i < 2 else dicom(f"UP{i}", f"Upload^N{i}")
        seen("upload", hosts[i % 2].upload(sessions[i % 2], [(f"f{k}.dcm", d) for k, d in enumerate(files)]))

    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(order, i) for i in range(16)]
        jobs += [pool.submit(same_puid, j) for j in range(4)]
        jobs += [pool.submit(api_sync, i) for i in range(10)]
        jobs += [pool.submit(upload, i) for i in range(6)]
        for job in jobs:
            job.result()

    def image_for(i: int) -> None:
        """The modality's images for each order, sent through either host;
        every other one uploaded "for request" (a link by hand racing the
        other host's automatic one)."""
        o = orders[i]
        files = dicom(o["patient_puid"], f"Two{i}^Host", o["study_instance_uid"], o["accession_number"], series=1)
        seen("upload for order", hosts[i % 2].upload(sessions[i % 2], [("img.dcm", files[0])],
                                                     request_id=str(o["id"]) if i % 2 else ""))

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(image_for, i) for i in range(len(orders))]
        jobs += [pool.submit(api_sync, i) for i in range(10)]
        for job in jobs:
            job.result()

    def db_rows(sql: str) -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))

    in_orthanc = len(orthanc.get("/studies"))
    wait_until("every study mirrored", lambda: db_rows("SELECT count(*) FROM orthanc_studies")[0][0] == in_orthanc)
    wait_until("every order linked", lambda: db_rows(
        "SELECT count(DISTINCT request_id) FROM study_links")[0][0] == len(orders))
    wait_until("the lease held by both hosts' background loops at some time", lambda: {
        host for (owner,) in db_rows("SELECT new_owner FROM test_lease_log WHERE new_owner IS NOT NULL")
        for host, ids in loops.items() if owner_pid(owner) in ids} == {"host-a", "host-b"})

    # Quiet now: no request that syncs is in flight, so only a background
    # loop may take the lease. A wake (Orthanc's push) sent to each host in
    # turn is answered by a loop, which clears the wish once it has synced;
    # the woken process's own loop, if it has one, is nudged at once while
    # the other loops sleep, so a served process whose loop runs despite
    # RUN_BACKGROUND=false takes the lease here.
    def last_lease_id() -> int:
        return db_rows("SELECT coalesce(max(id), 0) FROM test_lease_log")[0][0]

    def wish_cleared() -> bool:
        return db_rows("SELECT sync_wanted_at FROM orthanc_servers")[0][0] is None

    quiet_from = last_lease_id()
    for round_ in range(3):
        for i, host in enumerate(hosts):
            wait_until("no sync wanted", wish_cleared)
            assert seen("wake", tech[i].post(f"/api/v1/orthanc/servers/{server_id}/wake")).status_code == 202
            wait_until(f"the wake sent to {host.base.name} (round {round_}) answered by a sync", wish_cleared)
    quiet = [owner for (owner,) in db_rows(
        f"SELECT new_owner FROM test_lease_log WHERE id > {quiet_from} AND new_owner IS NOT NULL")]
    strays = [owner for owner in quiet if owner_pid(owner) not in loops["host-a"] | loops["host-b"]]
    assert quiet and not strays, f"the lease taken with no request asking, not by {loops}: {strays}"
    assert all(h.worker is None or h.worker.poll() is None for h in hosts), "a worker ended by itself"
    a.stop(), b.stop()

    # No 5xx, no lock errors, nothing unexpected answered.
    unexpected = [x for x in answers if x[1] >= 500 or (x[0] == "API sync" and x[1] not in (200, 409))
                  or (x[0] in ("patient", "order") and x[1] != 201)
                  or (x[0].startswith("upload") and x[1] != 200)]
    assert not unexpected, unexpected
    assert race == {f"RACE{j}": [201, 409] for j in range(4)}, race
    for host in hosts:
        assert not host.log_problems(), host.log_problems()

    # One sync at a time: the lease only ever passed through "free".
    lease = db_rows("SELECT old_owner, new_owner FROM test_lease_log ORDER BY id")
    handovers = [(old, new) for old, new in lease if old is not None and new is not None]
    assert not handovers, f"the lease passed from one runner to another without being released: {handovers}"
    writes = db_rows("SELECT tbl, holder, app FROM test_mirror_writes")
    assert writes and all(holder for _, holder, _ in writes), "a mirrored row was written with no lease held"
    if kind == "postgresql":  # and by the host that held it
        strays = [(tbl, holder, app) for tbl, holder, app in writes if owner_pid(holder) not in pids[app]]
        assert not strays, strays
    if separate:
        # With RUN_BACKGROUND off a served process syncs only when a request
        # asks (an upload, Sync now), each time under an owner of its own; a
        # background loop takes the lease again and again under one owner
        # (orthanc/worker.py SyncWorker.owner). No served owner twice, then.
        taken = [owner for (owner,) in db_rows("SELECT new_owner FROM test_lease_log WHERE new_owner IS NOT NULL")]
        by_served = [owner for owner in taken if any(owner_pid(owner) in ids for ids in served.values())]
        again = sorted({owner for owner in by_served if by_served.count(owner) > 1})
        assert not again, f"a served process took the lease again and again (its background loop ran): {again}"
        for host in hosts:
            assert "ghimaging worker: background work running" in host.worker_log(), host.worker_log()[-2000:]
    # One full sync, though both hosts started needing one (read in the database and in Orthanc's log).
    assert db_rows("SELECT sync_generation FROM orthanc_servers")[0][0] == 1
    assert len(re.findall(r"\(http\) GET /series$", orthanc.log_path.read_text(), re.MULTILINE)) == 1

    # No duplicate rows; numbers unique; everything Orthanc has, once.
    for what, sql in DUPLICATES.items():
        assert db_rows(sql) == [], f"duplicate {what}"
    assert db_rows("SELECT count(*) FROM orthanc_studies")[0][0] == in_orthanc
    accessions = {o["accession_number"] for o in orders}
    assert len(accessions) == len(orders) == 16
    # A linked order left the worklist, whichever host wrote its file and whichever linked it.
    assert sorted(Path(tmp_path / "worklists").glob("*.wl")) == []


def test_a_second_host_without_the_first_hosts_credentials_key_cannot_reach_orthanc(two_hosts, tmp_path):
    """Why the README has the key copied: a host that made its own
    credentials.key cannot decrypt the stored Orthanc password."""
    _, a, _, _ = two_hosts
    lone = Host(tmp_path / "host-c", a.env["GHIMAGING_DATABASE_URL"], env=SHARED_SETTINGS)
    done = lone.run("sync")
    assert "cannot be decrypted" in done.stdout + done.stderr, done
    assert (lone.instance / "credentials.key").read_bytes() != (a.instance / "credentials.key").read_bytes()


def test_a_puid_another_host_registers_between_the_check_and_the_insert_is_a_409(api, app, monkeypatch):
    """The race of the test above made certain: the other host's patient is
    committed after this request's lookup found the PUID free and before
    its insert. The unique index refuses the insert; the answer is the same
    409 as for a PUID taken earlier, not a 500."""
    from ghimaging.extensions import db
    from ghimaging.patients import service

    real_validate = service.validate

    def validate_then_other_host_commits(data, patient=None, **kw):
        clean = real_validate(data, patient, **kw)
        with db.engine.begin() as other:  # another connection: the other host
            other.execute(text(
                "INSERT INTO patients (puid, family_name, given_name, sex, phone, notes, alerts, search_key,"
                " created_at, updated_at) VALUES ('RACE-X', 'Other', 'Host', 'F', '', '', '', 'race-x other host',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        return clean

    monkeypatch.setattr(service, "validate", validate_then_other_host_commits)
    r = api("physician").post("/api/v1/patients", {"puid": "RACE-X", "family_name": "This", "given_name": "Host",
                                                   "sex": "M"})
    assert r.status_code == 409, r.get_data(as_text=True)
    assert "Another patient already has PUID RACE-X." in r.get_data(as_text=True)
