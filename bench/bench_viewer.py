"""Bench: one viewer frame through ghimaging against the same frame straight from Orthanc.

One run, one machine, one Orthanc 1.10.1 (Debian's package, the test suite's
``OrthancServer``) holding one 512x512 CT instance (16 bit, a body outline
with noise, so its PNG is not a trivially compressible one: about 75 KB), taking turns:

(a) ghimaging: ``GET /viewer/series/<id>/instances/<id>/frames/0?c=40&w=400``
    of the app under gunicorn with ghimaging's own settings
    (``-c python:ghimaging.gunicorn_conf``: one worker, 8 threads) as a
    subprocess, signed in as a radiologist, over a kept-alive connection, as
    the browser asks while a person scrolls (no ``If-None-Match``: every
    request is rendered);
(b) direct, as a browser asks: ``GET /instances/<id>/frames/0/rendered?window-center=40&window-width=400``
    of Orthanc (``Accept: image/png``, basic auth, ``Accept-Encoding: gzip,
    deflate`` as requests and every browser send it), over a kept-alive
    connection;
(c) direct, uncompressed: the same with ``Accept-Encoding: identity``.
    Orthanc (``HttpCompressionEnabled``, on by default) gzips its PNG for a
    client that accepts gzip: 160 bytes saved of 78 KB, at several
    milliseconds of Orthanc's CPU. ghimaging does not ask Orthanc to
    compress what is already compressed (``OrthancClient._get_image``), so
    (c) is the floor for what ghimaging itself adds, (b) the floor of what a
    viewer asking Orthanc straight would wait.

Both answers are checked to be the same PNG. Ratios = median (a) / median
(b) and median (a) / median (c), target <= 1.3. Also printed: what ghimaging adds in milliseconds, the 304
answer to a revalidation (the browser's cached frame, ETag), the load
average at the start and the end, and the CPU seconds per frame of the app
and of Orthanc (from /proc, over a block of (a) and a block of (b)): on a
busy machine the wall-clock ratio moves with the load (1.17-1.39 was seen
at loads 8-11 on two cores), the CPU per frame much less.

Run it from the checkout: ``python bench/bench_viewer.py`` (under a minute on
two cores; ``--help`` for the knobs). Report: ``bench/out/viewer.txt``;
every number: ``bench/out/viewer.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = Path(__file__).resolve().parent / "out"
sys.path.insert(0, str(ROOT))

from tests.support import dicomgen  # noqa: E402
from tests.support.loadtools import cpu_seconds, free_port, sign_in, stop_group, tree, wait_serving  # noqa: E402
from tests.support.orthanc import OrthancServer  # noqa: E402

PASSWORD = "bench-Passw0rd"
TARGET = 1.3
CENTER, WIDTH = 40, 400
AS_BROWSER = {"Accept": "image/png", "Accept-Encoding": "gzip, deflate"}
UNCOMPRESSED = {"Accept": "image/png", "Accept-Encoding": "identity"}


def ct_pixels(side: int, seed: int = 7) -> bytes:
    """A CT-like slice in stored values (HU + 1024): air outside an ellipse
    of soft tissue with a bright rim (bone) and Gaussian noise (sd 12 HU)."""
    rng = random.Random(seed)
    px = array("H", bytes(2 * side * side))
    c = side / 2
    for r in range(side):
        for col in range(side):
            d = math.hypot((col - c) / (0.42 * side), (r - c) / (0.36 * side))
            hu = -1000.0 if d > 1 else (700.0 if d > 0.93 else 40.0 + 25 * math.sin(col / 9) * math.cos(r / 13))
            px[r * side + col] = max(0, min(4095, int(hu + 1024 + rng.gauss(0, 12))))
    if sys.byteorder == "big":
        px.byteswap()
    return px.tobytes()


def make_ct(side: int):
    ds = dicomgen.make_instance("BENCH-CT", "Bench^Viewer", modality="CT", rows=side, cols=side,
                                accession="BENCHV1", series_description="AXIAL",
                                extra={"RescaleIntercept": -1024, "RescaleSlope": 1,
                                       "WindowCenter": CENTER, "WindowWidth": WIDTH})
    ds.PixelData = ct_pixels(side)
    return ds


class App:
    """ghimaging under gunicorn with its own settings, in a subprocess."""

    def __init__(self, workdir: Path, orthanc: OrthancServer):
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "GHIMAGING_INSTANCE_PATH": str(workdir / "instance"),
                    "GHIMAGING_ORTHANC_SYNC_INTERVAL": "0", "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "0"}
        cli = [sys.executable, "-c", "from ghimaging.cli import main; main()"]
        run = dict(env=self.env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
        subprocess.run([*cli, "init"], **run)
        out = subprocess.run([sys.executable, "-c", f"""
from ghimaging import create_app
from ghimaging.auth.service import create_user
from ghimaging.extensions import db
from ghimaging.models import OrthancSeries, Role
from ghimaging.orthanc import servers, sync
with create_app().app_context():
    create_user("rad", {PASSWORD!r}, [Role.RADIOLOGIST], full_name="Bench Radiologist")
    row = servers.add_server(label="Main", url={orthanc.url!r}, username={orthanc.username!r},
                             password={orthanc.password!r})
    db.session.commit()
    summary = sync.run(row.id, mode="full")
    assert summary.error == "", summary.error
    print(db.session.query(OrthancSeries).one().id)
"""], **run)
        self.series_id = int(out.stdout.strip().splitlines()[-1])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "gunicorn.log", "ab")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:ghimaging.gunicorn_conf",
             "--bind", f"127.0.0.1:{self.port}", "--worker-tmp-dir", "/dev/shm", "wsgi:app"],
            env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_serving(self.url, self.proc, 60):
            raise RuntimeError("gunicorn did not start:\n" + (workdir / "gunicorn.log").read_text()[-3000:])

    def session(self) -> requests.Session:
        return sign_in(self.url, "rad", PASSWORD)

    def close(self) -> None:
        stop_group(self.proc)
        self.log.close()


def timed(session: requests.Session, url: str, **kw) -> tuple[float, requests.Response]:
    t = time.perf_counter()
    r = session.get(url, timeout=30, **kw)
    _ = r.content
    return (time.perf_counter() - t) * 1000, r


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=200, help="timed requests of each kind")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--side", type=int, default=512, help="rows = columns of the CT frame")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    orthanc = OrthancServer(workdir / "orthanc")
    app = None
    try:
        orthanc.start()
        instance = orthanc.upload(dicomgen.to_bytes(make_ct(args.side)))["ID"]
        app = App(workdir, orthanc)
        ours = app.session()
        direct = requests.Session()
        direct.auth = orthanc.auth
        app_url = f"{app.url}/viewer/series/{app.series_id}/instances/{instance}/frames/0?c={CENTER}&w={WIDTH}"
        orthanc_url = (f"{orthanc.url}/instances/{instance}/frames/0/rendered"
                       f"?window-center={CENTER}&window-width={WIDTH}")
        _, a = timed(ours, app_url)
        _, b = timed(direct, orthanc_url, headers=AS_BROWSER)
        assert a.status_code == 200 and a.headers["Content-Type"] == "image/png", a.text[:300]
        _, c = timed(direct, orthanc_url, headers=UNCOMPRESSED)
        assert a.content == b.content == c.content, "ghimaging passes Orthanc's PNG on unchanged"
        etag = a.headers["ETag"]
        for _ in range(args.warmup):
            timed(ours, app_url)
            timed(direct, orthanc_url, headers=AS_BROWSER)
            timed(direct, orthanc_url, headers=UNCOMPRESSED)
        times: dict[str, list[float]] = {"app": [], "direct": [], "identity": [], "revalidate": []}
        for i in range(args.reps):
            turn = [("app", lambda: timed(ours, app_url)),
                    ("direct", lambda: timed(direct, orthanc_url, headers=AS_BROWSER)),
                    ("identity", lambda: timed(direct, orthanc_url, headers=UNCOMPRESSED))]
            turn = turn[i % 3:] + turn[:i % 3]  # none always goes first
            for key, call in turn:
                ms, r = call()
                assert r.status_code == 200
                times[key].append(ms)
            ms, r = timed(ours, app_url, headers={"If-None-Match": f'"{etag}"' if not etag.startswith('"') else etag})
            assert r.status_code == 304, r.status_code
            times["revalidate"].append(ms)
        cpu = {}
        for key, call in (("app", lambda: timed(ours, app_url)),
                          ("direct", lambda: timed(direct, orthanc_url, headers=AS_BROWSER)),
                          ("identity", lambda: timed(direct, orthanc_url, headers=UNCOMPRESSED))):
            before = (cpu_seconds(tree(app.proc.pid)), cpu_seconds([orthanc.proc.pid]))
            for _ in range(args.reps):
                call()
            after = (cpu_seconds(tree(app.proc.pid)), cpu_seconds([orthanc.proc.pid]))
            cpu[key] = {"app_ms": (after[0] - before[0]) * 1000 / args.reps,
                        "orthanc_ms": (after[1] - before[1]) * 1000 / args.reps}
    finally:
        if app is not None:
            app.close()
        orthanc.kill()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    load_end = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["app"] / med["direct"]
    ratio_identity = med["app"] / med["identity"]
    res = {"when": datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
           "cpus": os.cpu_count(), "side": args.side, "png_bytes": len(a.content), "reps": args.reps,
           "median_ms": med, "p90_ms": {k: pct(v, 0.9) for k, v in times.items()}, "ratio": ratio,
           "ratio_identity": ratio_identity,
           "target": TARGET, "cpu_ms_per_frame": cpu, "load_start": load_start, "load_end": load_end, "times_ms": times}
    lines = [
        f"Viewer frame: {args.side}x{args.side} CT, PNG {len(a.content) / 1024:.0f} KB, window {CENTER}/{WIDTH}, "
        f"{args.reps} requests each, alternating ({res['when']}, {os.cpu_count()} CPUs)",
        f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}",
        f"{'':28}{'median ms':>10}{'p90 ms':>10}",
        f"{'(a) through ghimaging':28}{med['app']:>10.2f}{res['p90_ms']['app']:>10.2f}",
        f"{'(b) Orthanc, as a browser':28}{med['direct']:>10.2f}{res['p90_ms']['direct']:>10.2f}",
        f"{'(c) Orthanc, uncompressed':28}{med['identity']:>10.2f}{res['p90_ms']['identity']:>10.2f}",
        f"{'revalidation (304, ETag)':28}{med['revalidate']:>10.2f}{res['p90_ms']['revalidate']:>10.2f}",
        f"ratio (a)/(b) = {ratio:.2f} (target <= {TARGET}: {'met' if ratio <= TARGET else 'missed'}); "
        f"ratio (a)/(c) = {ratio_identity:.2f} ({'met' if ratio_identity <= TARGET else 'missed'}); "
        f"ghimaging adds {med['app'] - med['identity']:.2f} ms to (c)",
        f"CPU ms per frame: (a) app {cpu['app']['app_ms']:.2f} + Orthanc {cpu['app']['orthanc_ms']:.2f}; "
        f"(b) Orthanc {cpu['direct']['orthanc_ms']:.2f}; (c) Orthanc {cpu['identity']['orthanc_ms']:.2f}",
    ]
    text = "\n".join(lines)
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "viewer.txt").write_text(text + "\n")
    (OUT_DIR / "viewer.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
