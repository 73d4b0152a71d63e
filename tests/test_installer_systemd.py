"""deploy/install.sh where systemd runs (PID 1 of a Debian 12 amd64 rootfs
booted by systemd-nspawn: tests/support/nspawn.py): the branch that the
chroot tests never reach. The installer enables and (re)starts Orthanc and
ghimaging.service itself; the services are active and enabled, the app
answers /login and /healthz, the worker unit is installed but not enabled,
a re-run restarts them, and --uninstall stops and removes ghimaging's
units while Orthanc keeps running.
"""

from __future__ import annotations

import os
import time

import pytest
import requests

from tests.support.nspawn import Booted
from tests.support.rootfs import host_arch
from tests.test_installer_chroot import choose_own_password, copy_checkout, free_ports, one_time_password, wait_for

pytestmark = pytest.mark.slow


def state(box: Booted, unit: str) -> tuple[str, str]:
    """(is-active, is-enabled) of ``unit`` as systemd inside says."""
    active = box.run(["systemctl", "is-active", unit], check=False).stdout.strip()
    enabled = box.run(["systemctl", "is-enabled", unit], check=False).stdout.strip()
    return active, enabled


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

        def journal() -> str:
            return box.run(["journalctl", "-u", "ghimaging.service", "--no-pager", "-n", "60"], check=False).stdout

        assert wait_for("ghimaging.service answers /login", lambda: requests.get(f"{base}/login", timeout=10).ok,
                        90, log=journal)
        health = wait_for("/healthz 200", lambda: (r := requests.get(f"{base}/healthz", timeout=30)).status_code
                          == 200 and r, 60, every=2, log=journal)
        assert health.json()["status"] == "ok", health.text
        choose_own_password(base, one_time_password(install.stdout))
        # The app's output goes to the journal (gunicorn's access log included).
        assert "GET /healthz" in journal()

        # A re-run (upgrade) restarts the services it enabled.
        pid = box.run(["systemctl", "show", "-P", "MainPID", "ghimaging.service"]).stdout.strip()
        box.run(["bash", "/src/deploy/install.sh"])
        assert state(box, "ghimaging.service") == ("active", "enabled")
        assert box.run(["systemctl", "show", "-P", "MainPID", "ghimaging.service"]).stdout.strip() != pid
        wait_for("/healthz 200 after the upgrade",
                 lambda: requests.get(f"{base}/healthz", timeout=30).status_code == 200, 90, every=2, log=journal)

        # --uninstall stops and removes ghimaging's units; Orthanc runs on.
        box.run(["bash", "/src/deploy/install.sh", "--uninstall"])
        assert state(box, "ghimaging.service")[0] in ("inactive", "unknown")
        assert not box.file("/etc/systemd/system/ghimaging.service").exists()
        assert state(box, "orthanc.service")[0] == "active"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/login", timeout=10)
    print(f"\ninstaller under systemd: boot {booted:.1f} s, whole {time.monotonic() - t0:.1f} s")
