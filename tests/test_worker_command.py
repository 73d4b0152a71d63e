"""`ghimaging worker`: the background work alone in its own process, as a
setup with several app hosts runs it; and app processes that leave it to
that worker when RUN_BACKGROUND is off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from sqlalchemy import func, select

from ghimaging import background
from ghimaging.extensions import db
from ghimaging.models import OrthancStudy
from tests.support import dicomgen

CLI = [sys.executable, "-c", "from ghimaging.cli import main; main()"]


def studies() -> int:
    db.session.rollback()  # see the other process's commits
    return db.session.scalar(select(func.count()).select_from(OrthancStudy)) or 0


def test_the_worker_syncs_a_new_study_and_stops_cleanly_on_sigterm(app, orthanc, orthanc_row, tmp_path):
    env = {**os.environ, "GHIMAGING_INSTANCE_PATH": app.instance_path,
           "GHIMAGING_DATABASE_URL": app.config["DATABASE_URL"], "GHIMAGING_ORTHANC_SYNC_INTERVAL": "1",
           "GHIMAGING_WORKLIST_DIR": str(tmp_path / "worklists")}
    log = (tmp_path / "worker.log").open("w+")
    proc = subprocess.Popen([*CLI, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        orthanc.upload(dicomgen.to_bytes(dicomgen.make_instance("W-0001", "WORKER^WANDA")))
        deadline = time.monotonic() + 60
        while studies() == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None, log.read()
        assert studies() == 1, "the worker did not sync the new study within 60 s"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    out = log.read()
    assert "background work running" in out and "ghimaging worker: stopped" in out


def test_serving_processes_leave_the_work_to_the_worker_when_run_background_is_off(app):
    app.config["RUN_BACKGROUND"] = False
    assert background.start(app) is False
    assert not any(t.name.startswith("ghimaging-") for t in threading.enumerate())
