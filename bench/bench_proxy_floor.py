"""Bench: the floor of any frame proxy built on the fixed stack, against Orthanc.

The viewer's target (bench_viewer.py: a frame through ghimaging at most 1.3x
the same frame straight from Orthanc) asks what part of a frame's time is
ghimaging's. This bench measures what part is the stack's alone, in one run,
taking turns over kept-alive connections:

(a) a Flask application of a few lines served by gunicorn exactly as
    ghimaging is (``ghimaging.gunicorn_conf``: gthread, one worker, 8
    threads), whose one route passes Orthanc's rendered frame on: no
    sign-in, no database, no checks, one urllib3 pool kept (the least any
    proxy in this stack can do);
(b) the same frame straight from Orthanc, uncompressed (``Accept-Encoding:
    identity``, as the proxy asks);
(c) the same, as a browser asks (gzip accepted: Orthanc then compresses).

Ratio (a)/(b) is the floor of bench_viewer's "(a)/(c)", (a)/(c) of its
"(a)/(b)": when the floor is above 1.3, no frame proxy served by this stack
meets the target, whatever ghimaging does in its own code.

Run it from the checkout: ``python bench/bench_proxy_floor.py`` (a minute).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_viewer import AS_BROWSER, CENTER, UNCOMPRESSED, WIDTH, make_ct, timed  # noqa: E402

from tests.support import dicomgen  # noqa: E402
from tests.support.loadtools import free_port, stop_group, wait_serving  # noqa: E402
from tests.support.orthanc import OrthancServer  # noqa: E402

PROXY = textwrap.dedent('''
    import base64, os
    import urllib3
    from flask import Flask, Response
    app = Flask(__name__)
    pool = urllib3.PoolManager(maxsize=4)
    BASE = os.environ["FLOOR_ORTHANC"]
    AUTH = {"Authorization": "Basic " + base64.b64encode(os.environ["FLOOR_AUTH"].encode()).decode()}
    @app.route("/login")
    def ready():  # what tests.support.loadtools.wait_serving polls
        return "ok"
    @app.route("/frame/<instance>")
    def frame(instance):
        r = pool.request("GET", f"{BASE}/instances/{instance}/frames/0/rendered?window-center=40&window-width=400",
                         headers={"Accept": "image/png", **AUTH})
        return Response(r.data, mimetype="image/png")
''')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=400)
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    orthanc = OrthancServer(work / "orthanc")
    proc = None
    try:
        orthanc.start()
        instance = orthanc.upload(dicomgen.to_bytes(make_ct(512)))["ID"]
        (work / "floorapp.py").write_text(PROXY)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": f"{work}{os.pathsep}{ROOT}", "FLOOR_ORTHANC": orthanc.url,
               "FLOOR_AUTH": ":".join(orthanc.auth)}
        log = open(work / "gunicorn.log", "ab")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:ghimaging.gunicorn_conf",
                                 "--bind", f"127.0.0.1:{port}", "--worker-tmp-dir", "/dev/shm", "floorapp:app"],
                                env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        if not wait_serving(url, proc, 60):
            raise RuntimeError((work / "gunicorn.log").read_text()[-2000:])
        ours, direct = requests.Session(), requests.Session()
        direct.auth = orthanc.auth
        app_url = f"{url}/frame/{instance}"
        orthanc_url = (f"{orthanc.url}/instances/{instance}/frames/0/rendered"
                       f"?window-center={CENTER}&window-width={WIDTH}")
        _, a = timed(ours, app_url)
        _, b = timed(direct, orthanc_url, headers=UNCOMPRESSED)
        assert a.status_code == 200 and a.content == b.content
        calls = [("proxy", lambda: timed(ours, app_url)),
                 ("identity", lambda: timed(direct, orthanc_url, headers=UNCOMPRESSED)),
                 ("browser", lambda: timed(direct, orthanc_url, headers=AS_BROWSER))]
        for _ in range(20):
            for _key, call in calls:
                call()
        times: dict[str, list[float]] = {k: [] for k, _ in calls}
        for i in range(args.reps):
            for key, call in calls[i % 3:] + calls[:i % 3]:
                times[key].append(call()[0])
        log.close()
    finally:
        if proc is not None:
            stop_group(proc)
        orthanc.kill()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"Proxy floor: 512x512 CT frame, {args.reps} requests each, taking turns; "
          f"load {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"(a) minimal Flask proxy under gunicorn  {med['proxy']:.2f} ms")
    print(f"(b) Orthanc, uncompressed               {med['identity']:.2f} ms")
    print(f"(c) Orthanc, as a browser (gzip)        {med['browser']:.2f} ms")
    print(f"floor ratios: (a)/(b) = {med['proxy'] / med['identity']:.2f}, (a)/(c) = {med['proxy'] / med['browser']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
