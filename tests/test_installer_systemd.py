"""deploy/install.sh where systemd runs (PID 1 of a Debian 12 amd64 rootfs
booted by systemd-nspawn: tests/support/nspawn.py): the branch that the
chroot tests never reach. The installer enables and (re)starts Orthanc and
ghimaging.service itself; the services are active and enabled, the app
answers /login and /healthz, the worker unit is installed but not enabled,
a re-run restarts them, and --uninstall stops and removes ghimaging's
units while Orthanc keeps running.

The worker unit is switched on too, as its own comment tells an IT person
with several app hosts (``GHIMAGING_RUN_BACKGROUND=false``, ``enable --now``
the worker, restart the web unit), and started by systemd as installed (its
user, sandbox and environment file): a study stored by C-STORE is synced
and linked, its order leaves the worklist, and every lease of the Orthanc
server is taken by the worker's process, never the web unit's (a test-only
trigger logs the lease owners, ``host:pid:...``). A re-run restarts the
enabled worker and keeps the setting; --uninstall stops and removes it.
The units installed are Debian's orthanc.service, ghimaging.service and
ghimaging-worker.service; the installer adds no timer or other unit.
"""

from __future__ import annotations

import os
import time

import pytest
import requests

from tests.support.dicomgen import make_instance
from tests.support.nspawn import Booted
from tests.support.rootfs import host_arch
from tests.test_installer_chroot import (
    c_store,
    choose_own_password,
    copy_checkout,
    free_ports,
    mwl_find,
    one_time_password,
    wait_for,
)

pytestmark = pytest.mark.slow

#: Every owner a server's lease passes to, logged in the installed database
#: by a test-only trigger (as in tests/test_two_hosts.py); run inside the
#: rootfs as the service user: ``create`` or ``read``.
LEASE_LOG = r"""
import sqlite3, sys
db = sqlite3.connect("/var/lib/ghimaging/instance/ghimaging.sqlite", timeout=30)
if sys.argv[1] == "create":
    db.executescript(
        "CREATE TABLE test_lease_log (id INTEGER PRIMARY KEY AUTOINCREMENT, new_owner TEXT);"
        "CREATE TRIGGER test_log_lease AFTER UPDATE OF lease_owner ON orthanc_servers FOR EACH ROW"
        " WHEN NEW.lease_owner IS NOT NULL AND OLD.lease_owner IS NOT NEW.lease_owner BEGIN"
        " INSERT INTO test_lease_log (new_owner) VALUES (NEW.lease_owner); END;")
else:
    print("\n".join(owner for (owner,) in db.execute("SELECT new_owner FROM test_lease_log ORDER BY id")))
db.close()
"""


def state(box: Booted, unit: str) -> tuple[str, str]:
    """(is-active, is-enabled) of ``unit`` as systemd inside says."""
    active = box.run(["systemctl", "is-active", unit], check=False).stdout.strip()
    enabled = box.run(["systemctl", "is-enabled", unit], check=False).stdout.strip()
    return active, enabled


def main_pid(box: Booted, unit: str) -> int:
    """The unit's main process id, in the container's PID namespace (as the
    app sees its own pid); 0 when it is not running."""
    return int(box.run(["systemctl", "show", "-P", "MainPID", unit]).stdout.strip())


def lease_log(box: Booted, action: str) -> list[str]:
    """Create the lease log, or read the owners it logged."""
    done = box.run(["setpriv", "--reuid=ghimaging", "--regid=ghimaging", "--init-groups",
                    "/opt/ghimaging/venv/bin/python", "-c", LEASE_LOG, action])
    return done.stdout.split()


def test_installer_with_systemd_enables_and_starts_the_services(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the installer tests run as root (systemd-nspawn): run the test command as root")
    if host_arch() != "amd64":
        pytest.fail(f"this machine is {host_arch()}; the systemd installer test boots the amd64 rootfs")
    http_port, dicom_port, app_port = free_ports(3)
    base = f"http://127.0.0.1:{app_port}"
    t0 = time.monotonic()
    with Booted.boot("amd64", log=tmp_path / "boot.log") as box:
        booted = time.monotonic() - t0
        copy_checkout(box)
        install = box.run(["bash", "/src/deploy/install.sh", "--http-port", str(http_port),
                           "--dicom-port", str(dicom_port), "--app-port", str(app_port)], check=False)
        (tmp_path / "install.log").write_text(install.stdout + install.stderr)
        assert install.returncode == 0, f"{install.stdout[-4000:]}\n{install.stderr[-4000:]}"
        assert "enabled and (re)started" in install.stdout and "systemd is not running" not in install.stdout
        for unit in ("orthanc.service", "ghimaging.service"):
            assert state(box, unit) == ("active", "enabled"), unit
        # For several app hosts only: installed, not enabled, not running.
        assert state(box, "ghimaging-worker.service") == ("inactive", "disabled")

        def journal(unit: str = "ghimaging.service") -> str:
            return box.run(["journalctl", "-u", unit, "--no-pager", "-n", "60"], check=False).stdout

        def worker_journal() -> str:
            return journal("ghimaging-worker.service")

        assert wait_for("ghimaging.service answers /login", lambda: requests.get(f"{base}/login", timeout=10).ok,
                        90, log=journal)
        health = wait_for("/healthz 200", lambda: (r := requests.get(f"{base}/healthz", timeout=30)).status_code
                          == 200 and r, 60, every=2, log=journal)
        assert health.json()["status"] == "ok", health.text
        choose_own_password(base, one_time_password(install.stdout))
        # The app's output goes to the journal (gunicorn's access log included).
        assert "GET /healthz" in journal()

        # Several app hosts: the background work moved to ghimaging-worker.service
        # as its unit file says, the web unit leaving it to the worker.
        env_file = box.file("/etc/ghimaging/ghimaging.env")
        env_file.write_text(env_file.read_text() + "GHIMAGING_RUN_BACKGROUND=false\n")
        box.run(["systemctl", "enable", "--now", "ghimaging-worker.service"])
        box.run(["systemctl", "restart", "ghimaging.service"])  # its earlier process synced: not logged
        lease_log(box, "create")
        assert state(box, "ghimaging-worker.service") == ("active", "enabled")
        worker_pid = main_pid(box, "ghimaging-worker.service")
        wait_for("the worker started", lambda: "background work running" in worker_journal(), 60, log=worker_journal)
        wait_for("ghimaging.service answers /login again", lambda: requests.get(f"{base}/login", timeout=10).ok,
                 90, log=journal)
        token = box.run(["ghimaging", "create-token", "admin"]).stdout.strip().splitlines()[-1]
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        r = api.post(f"{base}/api/v1/tests", json={"code": "XR-W", "name": "Chest, worker", "modality": "CR",
                                                   "ae_title": "INSTALLTEST"}, timeout=30)
        assert r.status_code == 201, r.text
        r = api.post(f"{base}/api/v1/patients", json={"puid": "SYSD-W-1", "family_name": "Ωμέγα",
                                                      "given_name": "Άλφα", "sex": "F"}, timeout=30)
        assert r.status_code == 201, r.text
        r = api.post(f"{base}/api/v1/requests", json={"patient_id": r.json()["id"], "test_code": "XR-W",
                                                      "submit": True}, timeout=30)
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["accession_number"] in {str(i.AccessionNumber) for i in mwl_find(dicom_port)}
        c_store(dicom_port, make_instance("SYSD-W-1", "Ωμέγα^Άλφα", study_uid=order["study_instance_uid"],
                                          accession=order["accession_number"]))

        def linked() -> bool:
            r = api.get(f"{base}/api/v1/requests/{order['id']}", timeout=30)
            return bool(r.ok and r.json()["studies"])

        # Orthanc's push reaches the web unit, which leaves the sync to the worker.
        wait_for("the stored study linked by the worker", linked, 90, every=0.5, log=worker_journal)
        assert order["accession_number"] not in {str(i.AccessionNumber) for i in mwl_find(dicom_port)}
        owners = lease_log(box, "read")
        assert owners and {int(o.split(":")[1]) for o in owners} == {worker_pid}, \
            (owners, worker_pid, main_pid(box, "ghimaging.service"))
        assert "Traceback" not in worker_journal(), worker_journal()

        # A re-run (upgrade) restarts the services it enabled, the worker too, and keeps the settings.
        pid = main_pid(box, "ghimaging.service")
        box.run(["bash", "/src/deploy/install.sh"])
        assert state(box, "ghimaging.service") == ("active", "enabled")
        assert main_pid(box, "ghimaging.service") != pid
        assert state(box, "ghimaging-worker.service") == ("active", "enabled")
        assert main_pid(box, "ghimaging-worker.service") not in (0, worker_pid)
        assert "ghimaging worker: stopped" in worker_journal()  # the restart stopped it cleanly
        assert "GHIMAGING_RUN_BACKGROUND=false" in env_file.read_text()
        wait_for("/healthz 200 after the upgrade",
                 lambda: requests.get(f"{base}/healthz", timeout=30).status_code == 200, 90, every=2, log=journal)
        assert linked(), "the link was lost on upgrade"

        # --uninstall stops and removes ghimaging's units; Orthanc runs on.
        box.run(["bash", "/src/deploy/install.sh", "--uninstall"])
        for unit in ("ghimaging.service", "ghimaging-worker.service"):
            assert state(box, unit)[0] in ("inactive", "unknown"), unit
            assert not box.file(f"/etc/systemd/system/{unit}").exists(), unit
        assert state(box, "orthanc.service")[0] == "active"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/login", timeout=10)
    print(f"\ninstaller under systemd: boot {booted:.1f} s, whole {time.monotonic() - t0:.1f} s")
