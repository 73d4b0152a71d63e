"""Orthanc's push, end to end: a real Orthanc 1.10.1 loads a Lua script
through its configuration (``LuaScripts``), as the installer sets it up; its
``OnStableStudy`` POSTs to the wake endpoint of the app served over HTTP
with the role-less push token; the app's background loop syncs. The
periodic sync is an hour away, so only the push can link the study.

No ``HttpTimeout`` is configured (Orthanc's default, 60 s): the wake
answers at once without calling Orthanc, so Orthanc's Lua lock is held
only for that short call and the sync's own requests to Orthanc are not
stuck behind it.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, OrthancServer, StudyLink
from ghimaging.orthanc import sync
from ghimaging.orthanc import worker as orthanc_worker
from ghimaging.orthanc.commands import orthanc_group
from tests.support import dicomgen
from tests.support.lockprobe import LockProbe
from tests.support.orthanc import OrthancServer as RealOrthanc
from tests.support.orthanc import c_store, find_free_port

NEVER = 3600

#: The script the installer writes (its @WAKE_URL@ and @TOKEN@ filled in): the
#: shipped file itself, so this test checks what a clinic gets.
PUSH_LUA = (Path(__file__).resolve().parents[1] / "deploy" / "install" / "ghimaging-push.lua.in").read_text()


@pytest.fixture
def app_config():
    return {"ORTHANC_SYNC_INTERVAL": NEVER, "ORTHANC_RECONCILE_INTERVAL": 0}


def cli(app, *args: str, stdin: str | None = None) -> dict:
    r = app.test_cli_runner().invoke(orthanc_group, [*args, "--json"], input=stdin)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def with_push(orthanc: RealOrthanc, wake_url: str, token: str) -> None:
    """Write the script and restart Orthanc with it in ``LuaScripts`` (same ports)."""
    assert PUSH_LUA.count("@WAKE_URL@") == 1 and PUSH_LUA.count("@TOKEN@") == 1
    script = orthanc.workdir / "ghimaging-push.lua"
    script.write_text(PUSH_LUA.replace("@WAKE_URL@", wake_url).replace("@TOKEN@", token))
    script.chmod(0o600)
    orthanc.extra_config["LuaScripts"] = [str(script)]
    assert "HttpTimeout" not in orthanc.config()
    orthanc.restart(graceful=False)


def linked(req: ImagingRequest) -> bool:
    db.session.expire_all()
    return db.session.scalar(select(StudyLink).where(StudyLink.request_id == req.id)) is not None


def wait_for(cond, seconds: float = 60.0) -> bool:
    """Poll ``cond``. The bound is generous for a loaded machine (the study
    is stable 1 s after its last instance here): not a timing claim."""
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.2)
    return bool(cond())


def image_for(req: ImagingRequest):
    return dicomgen.make_instance(req.patient.puid, "Doe^Jane", study_uid=req.study_instance_uid,
                                  accession=req.accession_number, rows=16, cols=16)



def test_a_c_store_is_linked_within_seconds_through_orthancs_lua_push(app, live, orthanc, create_request):
    server_id = cli(app, "add", "--url", orthanc.url, "--user", orthanc.username, "--password-stdin",
                    stdin=orthanc.password + "\n")["server_id"]
    token = cli(app, "push-token")["token"]
    with_push(orthanc, f"{live}/api/v1/orthanc/servers/{server_id}/wake", token)
    assert sync.run(server_id).error == ""  # the first full sync, before the loop starts
    req = create_request(submit=True)
    assert orthanc_worker.start(app) is not None
    try:
        c_store(orthanc, image_for(req))
        assert wait_for(lambda: linked(req)), orthanc.log_tail()
        assert "ghimaging: sync asked for stable study" in orthanc.log_tail(200)
        db.session.expire_all()
        row = db.session.get_one(OrthancServer, server_id)
        assert row.sync_wanted_at is None and row.failures == 0
    finally:
        orthanc_worker.stop()


def test_orthanc_keeps_storing_when_ghimaging_is_down(app, orthanc):
    """A push that finds nobody is logged by Orthanc and costs nothing else:
    the next study is stored as usual (the periodic sync finds both)."""
    with_push(orthanc, f"http://127.0.0.1:{find_free_port()}/api/v1/orthanc/servers/1/wake", "ghi_nobody")
    first = dicomgen.make_instance("P-1", "Doe^Jane", rows=16, cols=16)
    c_store(orthanc, first)
    assert wait_for(lambda: "could not ask for a sync" in orthanc.log_tail(200)), orthanc.log_tail()
    c_store(orthanc, dicomgen.make_instance("P-2", "Doe^John", rows=16, cols=16))
    assert len(orthanc.get("/studies")) == 2


@pytest.fixture
def probe(app, orthanc):
    """Orthanc behind a hop that holds each request until the database
    takes a write, as Orthanc does while its push waits for the wake, and
    records the requests the writes never let through
    (tests/support/lockprobe.py)."""
    with LockProbe(orthanc.url, app.config["DATABASE_URL"]) as hop:
        yield hop


def test_nothing_asks_orthanc_while_holding_a_write_lock(app, orthanc, create_request, make_user, login, probe):
    """What makes the push safe without a short global HttpTimeout: while
    the push waits for the wake, every REST request to Orthanc waits for
    Orthanc's Lua lock (checked on 1.10.1), and the wake writes one row. A
    sync (or a registration) that asked Orthanc while holding a write lock
    could keep the wake waiting for it, each side waiting for the other."""
    server_id = cli(app, "add", "--url", probe.url, "--user", orthanc.username, "--password-stdin",
                    stdin=orthanc.password + "\n")["server_id"]
    for n in range(3):
        orthanc.upload(dicomgen.to_bytes(dicomgen.make_instance(f"P-{n}", "Doe^Jane", rows=8, cols=8)))
    assert sync.run(server_id).error == ""  # full
    req = create_request(submit=True)
    orthanc.upload(dicomgen.to_bytes(image_for(req)))
    assert sync.run(server_id).error == ""  # incremental
    assert sync.run(server_id, mode="reconcile").error == ""
    assert linked(req)
    cli(app, "add", "--url", probe.url, "--user", orthanc.username, "--password-stdin",
        stdin=orthanc.password + "\n")  # the installer's re-run
    make_user("tech", "technologist")
    data = {"server_id": str(server_id), "files": [(io.BytesIO(dicomgen.to_bytes(
        dicomgen.make_instance("P-UP", "Up^Load", rows=8, cols=8))), "up.dcm")]}
    r = login("tech").post("/upload/?format=json", data, token_from="/upload/", content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["counts"]["stored"] == 1  # stored, then synced at once
    assert probe.seen > 10  # the syncs, the registration and the upload went through it
    assert probe.found == []
