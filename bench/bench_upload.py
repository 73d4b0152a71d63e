"""Bench: DICOM upload through ghimaging against posting straight to Orthanc.

One run, one machine, one Orthanc 1.10.1 (Debian's package, the test suite's
``OrthancServer``), 500 generated DICOM files of about 400 KB (448x448, 16 bit;
about 200 MB in all), taking turns, several repetitions:

(a) ghimaging, one multipart request with the 500 files (what the folder
    picker sends), to ``POST /upload/`` of the app running under gunicorn
    (``python -m gunicorn wsgi:app``, 2 workers) as a subprocess;
(b) ghimaging, the same files in one stored ZIP, one request;
(c) direct: the 500 files posted one by one, sequentially, to Orthanc's
    ``POST /instances`` with a ``requests.Session`` (the floor);
(d) direct: the ZIP posted once to Orthanc's ``POST /instances``.

Orthanc is wiped (storage and index) before every timed run, so every run
stores 500 new instances. The client streams every body from disk. The
app's answer includes the sync of the new studies (as a user waits for it).
Throughput ratio = direct time / ghimaging time (target >= 0.8).

Memory: the summed RSS of the gunicorn process tree is sampled every 50 ms
during every ghimaging run, and against the idle RSS measured just before;
the uploads are repeated at half size (250 files, about 100 MB) to see
whether the peak grows with the upload (target: under idle + 100 MB, not
growing). CPU seconds of the app, Orthanc and the client are read from
/proc around every run.

When a ratio misses its target (``--profile auto``), one upload of each
form runs in-process through the Flask test client under pyinstrument (or
cProfile) and the report lists where the time goes.

Run it from the checkout: ``python bench/bench_upload.py`` (a few minutes on
two cores; ``--help`` for the knobs). Report: ``bench/out/upload.txt``; every
number: ``bench/out/upload.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import dicomgen  # noqa: E402
from tests.support.loadtools import MultipartFile, Sampler, cpu_seconds, free_port, stop_group, tree  # noqa: E402
from tests.support.orthanc import OrthancServer  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "out"
PASSWORD = "bench-Passw0rd-1"
TARGET_RATIO = 0.8
TARGET_RSS_MB = 100


# --------------------------------------------------------------------------- data


def generate(folder: Path, n: int, side: int) -> list[Path]:
    """``n`` instances in 5 studies, written one at a time."""
    per_study = max(1, n // 5)
    seed = uuid.uuid4().hex
    paths = []
    for i in range(n):
        s = i // per_study
        study = dicomgen.generate_uid(entropy_srcs=["bench-upload", seed, str(s)])
        series = dicomgen.generate_uid(entropy_srcs=["bench-upload", seed, str(s), "se"])
        ds = dicomgen.make_instance(f"BENCH-{s}", "BENCH^UPLOAD", study, series, accession=f"BU{s:03d}",
                                    instance_number=i % per_study + 1, rows=side, cols=side,
                                    study_description="UPLOAD BENCH")
        path = folder / f"study{s}" / f"IM{i:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        dicomgen.write(ds, path)
        paths.append(path)
    return paths


def write_zip(path: Path, files: list[Path], base: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            zf.write(f, str(f.relative_to(base)))
    return path


def size_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


# The multipart body and the process sampling live in tests/support/loadtools.py.

class App:
    """ghimaging under gunicorn in a subprocess, with its own instance folder."""

    def __init__(self, workdir: Path, orthanc: OrthancServer, workers: int, connections: int | None = None):
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "GHIMAGING_INSTANCE_PATH": str(workdir / "instance"),
                    "GHIMAGING_ORTHANC_SYNC_INTERVAL": "0", "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "0"}
        if connections is not None:
            self.env["GHIMAGING_UPLOAD_CONNECTIONS"] = str(connections)
        cli = [sys.executable, "-c", "from ghimaging.cli import main; main()"]
        run = dict(env=self.env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
        subprocess.run([*cli, "init"], **run)
        subprocess.run([*cli, "create-user", "tech", "--role", "technologist", "--password-stdin"],
                       input=PASSWORD + "\n", **run)
        subprocess.run([sys.executable, "-c", f"""
from ghimaging import create_app
from ghimaging.extensions import db
from ghimaging.orthanc import servers
with create_app().app_context():
    servers.add_server(label="Main", url={orthanc.url!r}, username={orthanc.username!r},
                       password={orthanc.password!r})
    db.session.commit()
"""], **run)
        self.workers = workers
        self.proc = None
        self.start()

    def start(self) -> None:
        """A fresh gunicorn (new workers: no memory high-water mark carried over)."""
        self.close()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.workdir / "gunicorn.log", "ab")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(self.workers), "--timeout", "900",
             "--bind", f"127.0.0.1:{self.port}", "--worker-tmp-dir", "/dev/shm", "wsgi:app"],
            env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/login", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start:\n" + (self.workdir / "gunicorn.log").read_text()[-3000:])
            time.sleep(0.2)

    def warm(self, parts: list[tuple[str, Path]], archive: Path) -> None:
        """Every worker takes a few real-size uploads of both forms first, so
        one-time allocations (imports, buffers, arenas) are in the idle figure."""
        for _ in range(2 * self.workers):
            self.upload(parts)
            self.upload([(archive.name, archive)])

    def session(self) -> tuple[requests.Session, dict[str, str]]:
        s = requests.Session()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', s.get(self.url + "/login").text)
        r = s.post(self.url + "/login", data={"username": "tech", "password": PASSWORD,
                                               "csrf_token": token.group(1)}, allow_redirects=False)
        assert r.status_code == 302, r.text[:300]
        page = s.get(self.url + "/upload/").text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        server_id = re.search(r'<select id="server_id" name="server_id"><option value="(\d+)"', page).group(1)
        return s, {"csrf_token": token, "server_id": server_id, "request_id": ""}

    def upload(self, files: list[tuple[str, Path]], signed_in=None) -> dict:
        """One upload; sign in first unless ``signed_in`` (from ``session()``)
        is given, so that a timed or sampled upload does not include the
        login (its scrypt hash alone takes 32 MB for a moment)."""
        s, fields = signed_in or self.session()
        body = MultipartFile(fields, files)
        r = s.post(self.url + "/upload/?format=json", data=body, timeout=1800,
                   headers={"Content-Type": body.content_type, "Accept": "application/json"})
        if signed_in is None:
            s.close()
        if r.status_code != 200:
            raise RuntimeError(f"upload answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def close(self) -> None:
        if self.proc is None:
            return
        stop_group(self.proc)
        self.log.close()


# --------------------------------------------------------------------------- runs


def direct_files(orthanc: OrthancServer, files: list[Path]) -> dict:
    counts: dict[str, int] = {}
    with requests.Session() as s:
        s.auth = orthanc.auth
        for path in files:
            with open(path, "rb") as fh:
                r = s.post(orthanc.url + "/instances", data=fh, timeout=300,
                           headers={"Content-Type": "application/dicom"})
            r.raise_for_status()
            status = r.json().get("Status", "?")
            counts[status] = counts.get(status, 0) + 1
    return counts


def direct_files_threads(orthanc: OrthancServer, files: list[Path], threads: int) -> dict:
    """The same POSTs from ``threads`` connections at once (what a parallel forwarder could do)."""
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    sessions = []

    def one(path: Path) -> str:
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.auth = orthanc.auth
            sessions.append(s)
        with open(path, "rb") as fh:
            r = s.post(orthanc.url + "/instances", data=fh, timeout=300, headers={"Content-Type": "application/dicom"})
        r.raise_for_status()
        return r.json().get("Status", "?")

    counts: dict[str, int] = {}
    with ThreadPoolExecutor(threads) as pool:
        for status in pool.map(one, files):
            counts[status] = counts.get(status, 0) + 1
    for s in sessions:
        s.close()
    return counts


def direct_zip(orthanc: OrthancServer, archive: Path) -> dict:
    with requests.Session() as s, open(archive, "rb") as fh:
        s.auth = orthanc.auth
        r = s.post(orthanc.url + "/instances", data=fh, timeout=1800, headers={"Content-Type": "application/zip"})
        r.raise_for_status()
        answer = r.json()
    counts: dict[str, int] = {}
    for item in answer if isinstance(answer, list) else [answer]:
        counts[item.get("Status", "?")] = counts.get(item.get("Status", "?"), 0) + 1
    return counts


def timed(name: str, fn: Callable[[], dict], orthanc: OrthancServer, app: App, sample: bool) -> dict:
    """Wipe Orthanc, then time ``fn`` (CPU of everyone around it; RSS when ``sample``)."""
    orthanc.wipe()
    app_pids, orthanc_pids = tree(app.proc.pid), [orthanc.proc.pid]
    idle = None
    if sample:
        with Sampler(app.proc.pid) as s:
            time.sleep(0.5)
        idle = s.peak_kb
    cpu_app0, cpu_orth0, cpu_me0 = cpu_seconds(app_pids), cpu_seconds(orthanc_pids), time.process_time()
    t0 = time.perf_counter()
    if sample:
        with Sampler(app.proc.pid) as s:
            answer = fn()
    else:
        s, answer = None, fn()
    wall = time.perf_counter() - t0
    out = {"variant": name, "seconds": wall, "cpu_app": cpu_seconds(app_pids) - cpu_app0,
           "cpu_orthanc": cpu_seconds(orthanc_pids) - cpu_orth0, "cpu_client": time.process_time() - cpu_me0,
           "answer": answer}
    if s is not None:
        out.update(idle_mb=idle / 1024, peak_mb=s.peak_kb / 1024, grew_mb=(s.peak_kb - idle) / 1024,
                   samples=len(s.samples), per_process_peak_mb={str(p): v / 1024 for p, v in s.per_process.items()})
    return out


def counts_of(answer: dict) -> dict:
    return answer.get("counts", answer)


# --------------------------------------------------------------------------- profile


def profile_in_process(workdir: Path, app: App, orthanc: OrthancServer, forms: dict[str, list[tuple[str, Path]]],
                       top: int) -> dict[str, str]:
    """One upload of each form through the Flask test client, in this process."""
    os.environ.update({k: v for k, v in app.env.items() if k.startswith("GHIMAGING_")})
    from ghimaging import create_app

    flask_app = create_app()
    flask_app.config["WTF_CSRF_ENABLED"] = False
    out = {}
    try:
        from pyinstrument import Profiler
    except ImportError:
        Profiler = None
    for name, files in forms.items():
        orthanc.wipe()
        client = flask_app.test_client()
        r = client.post("/login", data={"username": "tech", "password": PASSWORD})
        assert r.status_code == 302
        with flask_app.app_context():
            from sqlalchemy import select

            from ghimaging.extensions import db
            from ghimaging.models import OrthancServer as Row

            server_id = str(db.session.scalar(select(Row.id)))
        body = MultipartFile({"server_id": server_id}, files)

        def go(client: Any = client, body: MultipartFile = body) -> dict[str, int]:
            resp = client.post("/upload/?format=json", input_stream=body, content_length=len(body),
                               content_type=body.content_type)
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
            return resp.get_json()["counts"]

        if Profiler is not None:
            prof = Profiler(interval=0.002)
            prof.start()
            counts = go()
            prof.stop()
            text = prof.output_text(unicode=False, color=False, show_all=False)
            (workdir / f"profile-{name}.html").write_text(prof.output_html())
        else:
            prof = cProfile.Profile()
            counts = prof.runcall(go)
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
            text = buf.getvalue()
        out[name] = f"counts {counts}\n" + text
    return out


# --------------------------------------------------------------------------- report


def machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg": os.getloadavg()}


def med(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def render(res: dict) -> str:
    lines = [f"Upload bench, {res['date']}, {res['machine']['platform']}, {res['machine']['cpus']} CPU, "
             f"Python {res['machine']['python']}, Orthanc {res['orthanc_version']}, load at start {res['load_at_start']}",
             f"{res['files']} files of {res['file_kb']:.0f} KB ({res['total_mb']:.0f} MB; ZIP {res['zip_mb']:.0f} MB), "
             f"{res['reps']} reps, gunicorn {res['workers']} workers, default settings "
             f"(UPLOAD_CONNECTIONS {res['upload_connections']})", ""]
    lines.append("| variant | median s | min s | max s | MB/s | app CPU s | Orthanc CPU s | client CPU s |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    n = res["files"]
    for key, label in (("a", f"(a) ghimaging, {n} parts"), ("b", "(b) ghimaging, one ZIP"),
                       ("c", f"(c) direct, {n} POSTs"), ("d", "(d) direct, one ZIP"),
                       ("e", f"(e) direct, {n} POSTs on {res['threads']} connections")):
        runs = res["runs"][key]
        lines.append(f"| {label} | {med(runs):.2f} | {min(r['seconds'] for r in runs):.2f} | "
                     f"{max(r['seconds'] for r in runs):.2f} | "
                     f"{res['total_mb'] / med(runs):.1f} | {med(runs, 'cpu_app'):.1f} | {med(runs, 'cpu_orthanc'):.1f} | "
                     f"{med(runs, 'cpu_client'):.1f} |")
    lines.append("")
    for name, (num, _den) in res["ratios"].items():
        lines.append(f"* throughput {name}: {num:.3f}  ({'met' if num >= TARGET_RATIO else 'MISSED'}, target >= {TARGET_RATIO})")
    lines.append("")
    lines.append("Peak RSS of the gunicorn tree over idle (MB), by upload size:")
    lines.append(f"| form | ~{res['half_mb']:.0f} MB | ~{res['total_mb']:.0f} MB | idle (tree) |")
    lines.append("|---|---:|---:|---:|")
    for form, label in (("parts", f"{n} parts (folder)"), ("zip", "one ZIP")):
        m = res["memory"][form]
        ok = m["full"]["grew_mb"] < TARGET_RSS_MB
        lines.append(f"| {label} | {m['half']['grew_mb']:.0f} | {m['full']['grew_mb']:.0f} "
                     f"{'' if ok else '**(MISSED)**'} | {m['full']['idle_mb']:.0f} |")
    lines.append(f"(each on a fresh gunicorn after a warm-up; target: < {TARGET_RSS_MB} MB over idle, no growth with size)")
    if res.get("profiles"):
        for name, text in res["profiles"].items():
            lines += ["", f"--- in-process profile, {name} ---", text]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--side", type=int, default=448, help="image rows = cols (448: about 400 KB a file)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=None,
                    help="GHIMAGING_UPLOAD_CONNECTIONS for the app (default: the app's own default)")
    ap.add_argument("--threads", type=int, default=3, help="connections of the parallel direct variant (e)")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="ghimaging-bench-upload-"))
    OUT_DIR.mkdir(exist_ok=True)
    res: dict[str, Any] = {"date": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                           "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "reps": args.reps,
                           "files": args.files, "workers": args.workers, "threads": args.threads}
    orthanc = OrthancServer(workdir / "orthanc")
    app = None
    try:
        print(f"generating {args.files} files ...", flush=True)
        data = workdir / "data"
        files = generate(data, args.files, args.side)
        half = files[: len(files) // 2]
        archive = write_zip(workdir / "all.zip", files, data)
        half_zip = write_zip(workdir / "half.zip", half, data)
        res.update(total_mb=size_of(files) / 1024**2, file_kb=size_of(files) / len(files) / 1024,
                   zip_mb=archive.stat().st_size / 1024**2, half_mb=size_of(half) / 1024**2)
        orthanc.start()
        res["orthanc_version"] = orthanc.get("/system")["Version"]
        from ghimaging.config import Defaults

        res["upload_connections"] = args.connections or getattr(Defaults, "UPLOAD_CONNECTIONS", 1)
        app = App(workdir, orthanc, args.workers, args.connections)
        parts = [(str(p.relative_to(data)), p) for p in files]
        half_parts = [(str(p.relative_to(data)), p) for p in half]
        warm_parts = parts[:10]
        warm_zip = write_zip(workdir / "warm.zip", files[:10], data)
        app.warm(warm_parts, warm_zip)

        signed_in = app.session()
        variants = {
            "a": (lambda: app.upload(parts, signed_in), False),
            "b": (lambda: app.upload([("all.zip", archive)], signed_in), False),
            "c": (lambda: direct_files(orthanc, files), False),
            "d": (lambda: direct_zip(orthanc, archive), False),
            "e": (lambda: direct_files_threads(orthanc, files, args.threads), False),
        }
        runs: dict[str, list[dict]] = {k: [] for k in variants}
        order = list(variants)
        for rep in range(args.reps + 1):  # the first round warms up and is dropped
            for key in order[rep % len(order):] + order[: rep % len(order)]:
                fn, sample = variants[key]
                r = timed(key, fn, orthanc, app, sample)
                c = counts_of(r["answer"])
                stored = c.get("stored", c.get("Success", 0))
                assert stored == args.files, f"{key}: {c}"
                print(f"  rep {rep} {key}: {r['seconds']:.2f} s" + (" (warm-up)" if rep == 0 else ""), flush=True)
                if rep:
                    runs[key].append({k: v for k, v in r.items() if k != "answer"})
        res["runs"] = runs
        res["ratios"] = {
            "(c)/(a) direct files / ghimaging files": (med(runs["c"]) / med(runs["a"]), None),
            "(c)/(b) direct files / ghimaging ZIP": (med(runs["c"]) / med(runs["b"]), None),
            "(d)/(b) direct ZIP / ghimaging ZIP": (med(runs["d"]) / med(runs["b"]), None),
        }

        print("memory at half and full size, each on a fresh gunicorn ...", flush=True)
        memory: dict[str, dict] = {"parts": {}, "zip": {}}
        for size, p, z in (("half", half_parts, [("half.zip", half_zip)]), ("full", parts, [("all.zip", archive)])):
            for form, payload in (("parts", p), ("zip", z)):
                app.start()
                app.warm(warm_parts, warm_zip)
                signed_in = app.session()
                r = timed(f"{form}-{size}", lambda payload=payload, signed_in=signed_in: app.upload(payload, signed_in), orthanc, app, True)
                memory[form][size] = {k: v for k, v in r.items() if k != "answer"}
                print(f"  {form} {size}: idle {r['idle_mb']:.0f} MB, +{r['grew_mb']:.0f} MB", flush=True)
        res["memory"] = memory

        missed = any(v < TARGET_RATIO for v, _ in res["ratios"].values())
        if args.profile == "always" or (args.profile == "auto" and missed):
            print("profiling in-process ...", flush=True)
            res["profiles"] = profile_in_process(workdir, app, orthanc,
                                                 {"parts": parts, "zip": [("all.zip", archive)]}, args.top)
    finally:
        if app is not None:
            app.close()
        orthanc.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    text = render(res)
    print("\n" + text)
    (OUT_DIR / "upload.txt").write_text(text + "\n")
    (OUT_DIR / "upload.json").write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
