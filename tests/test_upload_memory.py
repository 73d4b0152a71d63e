"""Peak memory of the app while it takes a 200 MB upload: the real app under
gunicorn (``ghimaging serve``) as a subprocess, a real Orthanc, 500 real
DICOM files of about 400 KB, the multipart body streamed from disk by the
client, and the resident memory of the app's processes sampled every 50 ms.

A memory bound, not a timing: the peak must stay under IDLE + 30 MB (issue
11: a Raspberry Pi with 1 GB also runs Orthanc)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import requests

from tests.support import dicomgen
from tests.support.loadtools import MultipartFile, Sampler, free_port
from tests.support.orthanc import OrthancServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-Passw0rd"
N_FILES = 500
SIDE = 448  # 448 x 448 x 2 bytes: about 400 KB per instance, 200 MB in all
BOUND_MB = 30


# -- the data -------------------------------------------------------------------

def instances(n: int = N_FILES, side: int = SIDE, seed: str = ""):
    """``n`` instances in 5 studies of one series, as (name, bytes), one at a time."""
    per_study = max(1, n // 5)
    seed = seed or uuid.uuid4().hex
    for i in range(n):
        s = i // per_study
        study = dicomgen.generate_uid(entropy_srcs=["mem", seed, str(s)])
        series = dicomgen.generate_uid(entropy_srcs=["mem", seed, str(s), "se"])
        ds = dicomgen.make_instance(f"MEM-{s}", "MEMORY^TEST", study, series, accession=f"MEM{s:03d}",
                                    instance_number=i % per_study + 1, rows=side, cols=side,
                                    study_description="MEMORY BOUND")
        yield f"study{s}/IM{i:04d}.dcm", dicomgen.to_bytes(ds)


def write_zip(path: Path, n: int = N_FILES, side: int = SIDE) -> int:
    """A stored (uncompressed) ZIP written member by member; returns its size."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in instances(n, side):
            zf.writestr(name, data)
        zf.writestr("README.TXT", b"not a DICOM file")
    return path.stat().st_size


def write_folder(folder: Path, n: int = N_FILES, side: int = SIDE) -> list[Path]:
    out = []
    for name, data in instances(n, side):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """Orthanc, an instance folder made by ``ghimaging init``, a technologist
    and the Orthanc added, as an administrator would set them up."""
    base = tmp_path_factory.mktemp("upload-memory")
    orthanc = OrthancServer(base / "orthanc")
    orthanc.start()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "GHIMAGING_INSTANCE_PATH": str(base / "instance"), "GHIMAGING_ORTHANC_SYNC_INTERVAL": "0",
           "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "0"}  # default limits: 200 MB is far over MAX_CONTENT_LENGTH
    run = dict(env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    subprocess.run([*CLI, "init"], **run)
    subprocess.run([*CLI, "create-user", "tech", "--role", "technologist", "--password-stdin"],
                   input="Given-by-admin-1\n", **run)
    subprocess.run([sys.executable, "-c", f"""
from ghimaging import create_app
from ghimaging.auth import service
from ghimaging.extensions import db
from ghimaging.orthanc import servers
with create_app().app_context():
    # create-user's password is the admin's choice: tech chooses their own
    service.change_own_password(service.find_user("tech"), "Given-by-admin-1", {PASSWORD!r})
    servers.add_server(label="Main", url={orthanc.url!r}, username={orthanc.username!r}, password={orthanc.password!r})
    db.session.commit()
"""], **run)
    try:
        yield {"env": env, "orthanc": orthanc, "base": base}
    finally:
        orthanc.cleanup()


CLI = [sys.executable, "-c", "from ghimaging.cli import main; main()"]


@pytest.fixture
def served(instance):
    """``ghimaging serve`` (gunicorn, its default: one worker, as the installer
    runs it) on a free port, fresh for each test: a worker keeps its
    high-water mark, so a reused one would hide growth."""
    base, port = instance["base"], free_port()
    log = open(base / "serve.log", "ab")  # noqa: SIM115 - closed when the server stops
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--timeout", "600"],
                            env=instance["env"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/login", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (base / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        yield {"url": url, "pid": proc.pid, **instance}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def signed_in(url: str) -> tuple[requests.Session, str, str]:
    s = requests.Session()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', s.get(url + "/login").text).group(1)
    r = s.post(url + "/login", data={"username": "tech", "password": PASSWORD, "csrf_token": token},
               allow_redirects=False)
    assert r.status_code == 302
    page = s.get(url + "/upload/").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    server_id = re.search(r'<select id="server_id" name="server_id"><option value="(\d+)"', page).group(1)
    return s, token, server_id


def post(served, files: list[tuple[str, Path]], session=None) -> requests.Response:
    """Upload; with ``session`` (from ``signed_in``) the login is not part of it
    (its scrypt hash alone takes 32 MB for a moment)."""
    s, token, server_id = session or signed_in(served["url"])
    body = MultipartFile({"csrf_token": token, "server_id": server_id, "request_id": ""}, files)
    return s.post(served["url"] + "/upload/?format=json", data=body, timeout=900,
                  headers={"Content-Type": body.content_type, "Accept": "application/json"})


def idle_kb(served) -> int:
    """Warm every worker with real-size uploads of both forms (one-time
    allocations belong to idle), then the idle RSS over a second."""
    warm = served["base"] / f"warm-{uuid.uuid4().hex}"
    files = write_folder(warm, n=10)
    archive = warm / "warm.zip"
    write_zip(archive, n=10)
    for _ in range(2):
        assert post(served, [(p.name, p) for p in files]).status_code == 200
        assert post(served, [(archive.name, archive)]).status_code == 200
    with Sampler(served["pid"]) as sampler:
        time.sleep(1.0)
    return sampler.peak_kb


def check_bound(served, sampler: Sampler, idle: int, what: str) -> None:
    grew_mb = (sampler.peak_kb - idle) / 1024
    per = sampler.peak_process_kb()
    print(f"\n{what}: idle {idle / 1024:.0f} MB, peak {sampler.peak_kb / 1024:.0f} MB (+{grew_mb:.0f} MB) "
          f"over {len(sampler.samples)} samples; per process peak MB: "
          + ", ".join(f"{p}: {v / 1024:.0f}" for p, v in per.items()))
    assert len(sampler.samples) > 20
    assert grew_mb < BOUND_MB, f"{what}: the app grew by {grew_mb:.0f} MB (bound {BOUND_MB} MB)"


def test_a_200_mb_zip_goes_through_in_bounded_memory(served, tmp_path):
    archive = tmp_path / "study.zip"
    size = write_zip(archive)
    assert 190 * 1024**2 < size < 230 * 1024**2
    idle = idle_kb(served)
    session = signed_in(served["url"])
    with Sampler(served["pid"]) as sampler:
        r = post(served, [("study.zip", archive)], session)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["counts"] == {"stored": N_FILES, "already": 0, "rejected": 1, "failed": 0}, body["aborted"]
    assert body["aborted"] == "" and len(body["study_links"]) == 5
    check_bound(served, sampler, idle, "200 MB ZIP")


def test_a_200_mb_folder_of_files_goes_through_in_bounded_memory(served, tmp_path):
    """500 parts of 400 KB each, as the folder picker sends them."""
    paths = write_folder(tmp_path / "cd")
    assert 190 * 1024**2 < sum(p.stat().st_size for p in paths) < 230 * 1024**2
    idle = idle_kb(served)
    session = signed_in(served["url"])
    with Sampler(served["pid"]) as sampler:
        r = post(served, [(str(p.relative_to(tmp_path)), p) for p in paths], session)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["counts"] == {"stored": N_FILES, "already": 0, "rejected": 0, "failed": 0}, body["aborted"]
    check_bound(served, sampler, idle, "200 MB folder (500 parts)")
