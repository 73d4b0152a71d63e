"""Bench: the footprint of ghimaging served as the installer's unit serves it
(issue 11, "Small footprint": a Raspberry Pi with 1 GB also runs Orthanc).

One run, one machine, a real Orthanc 1.10.1 (the test suite's
``OrthancServer``) holding a few studies, registered in a SQLite instance
in a temporary folder (``ghimaging init``, a technologist, the Orthanc
added: what an administrator does). Then:

1. **Idle PSS.** ``ghimaging serve --workers 1`` (the unit's ExecStart:
   gunicorn, one gthread worker with serve's default threads, the background
   loop a thread in it) with the default sync intervals: the first
   background tick syncs the Orthanc, a signed-in technologist fetches a few
   pages; then, idle, the PSS of the gunicorn master and its worker from
   ``/proc/PID/smaps_rollup``, summed (PSS shares the pages the processes
   have in common, so the sum is what the app costs the machine). Target
   <= 60 MB. Measured the same way, to compare: gunicorn's ``--preload``
   (the app built in the master, then forked), and a floor, the frameworks
   alone (Flask, Flask-SQLAlchemy on SQLite, Flask-Login, CSRF, one page)
   served in the same shape.
2. **``ghimaging --help``**, wall time of the whole process, median of 5,
   beside floors measured in the same run: ``python -c pass`` and
   ``python -c "import flask"``. Target <= 0.3 s.
3. **``ghimaging sync``** of that idle server (one Orthanc, nothing new) as a
   whole process under ``/usr/bin/time -v``: wall (median of 5), CPU and
   maximum RSS, beside the floor ``python -c "import flask, sqlalchemy.orm,
   flask_sqlalchemy"``. Target <= 0.5 s.
4. **A 200 MB upload** (500 DICOM files of about 400 KB in one stored ZIP;
   ``--folder`` adds the same as 500 parts of one request) to a freshly
   started server warmed by small uploads of both forms: growth of the
   summed PSS and RSS of the served processes over their idle figure,
   sampled every 50 ms. Target <= 30 MB.

Compiled modules are kept (``PYTHONPYCACHEPREFIX`` in the run's folder,
written by the set-up commands), as pip leaves them for an installed
package, whatever PYTHONDONTWRITEBYTECODE says in the caller's environment.

Run it from the checkout: ``python bench/bench_footprint.py`` (three to four
minutes on two cores; ``--help`` for the knobs). Report:
``bench/out/footprint.txt``; every number: ``bench/out/footprint.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ghimaging import gunicorn_conf  # noqa: E402
from tests.support import dicomgen  # noqa: E402
from tests.support.loadtools import Sampler, ServedApp, free_port, rss_kb, tree, wait_serving  # noqa: E402
from tests.support.orthanc import OrthancServer  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "out"
BIN = Path(sys.executable).parent
TARGETS = {"idle_pss_mb": 60.0, "help_s": 0.3, "sync_s": 0.5, "upload_growth_mb": 30.0}
THREADS = gunicorn_conf.threads  # ghimaging serve's default (--threads)


# --------------------------------------------------------------------------- measures


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_figures(pid: int) -> dict[str, Any]:
    pids = tree(pid)
    per = {p: {"pss_kb": pss_kb(p), "rss_kb": rss_kb(p)} for p in pids}
    return {"pss_mb": sum(v["pss_kb"] for v in per.values()) / 1024,
            "rss_mb": sum(v["rss_kb"] for v in per.values()) / 1024,
            "processes": {str(p): {"pss_mb": v["pss_kb"] / 1024, "rss_mb": v["rss_kb"] / 1024} for p, v in per.items()}}


def wall(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)
    return time.perf_counter() - t0


def time_v(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """``/usr/bin/time -v`` of one command: wall seconds and max RSS (MB)."""
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    assert m, r.stderr
    seconds = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", r.stderr).group(1)) for kind in ("User", "System"))
    return {"seconds": seconds, "cpu_s": cpu, "max_rss_mb": rss / 1024, "stdout": r.stdout}


# --------------------------------------------------------------------------- the app


class UnitApp(ServedApp):
    """``ghimaging serve`` exactly as the unit's ExecStart runs it: the
    console script, one worker, ``THREADS`` threads, the background loop on
    with the default intervals. ``preload``: gunicorn with the same
    settings and ``--preload`` instead (the application built in the master
    before the worker is forked), to compare."""

    preload = False

    def command(self, port: int) -> list[str]:
        if self.preload:
            return [sys.executable, "-m", "gunicorn", "--config", "python:ghimaging.gunicorn_conf", "--preload",
                    "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(THREADS),
                    "ghimaging:create_app()"]
        return [str(BIN / "ghimaging"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--threads", str(THREADS)]

    def start(self, wait: float = 60) -> UnitApp:
        port = free_port()
        self._log = open(self.base / "serve.log", "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            self.command(port),
            env=self.env, cwd=self.base, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        if not wait_serving(self.url, self.proc, wait):
            self.stop()
            raise RuntimeError("ghimaging serve did not start:\n" + self.log_tail())
        return self

    def last_sync(self) -> str | None:
        con = sqlite3.connect(self.base / "instance" / "ghimaging.sqlite", timeout=10)
        try:
            return con.execute("SELECT last_sync_at FROM orthanc_servers").fetchone()[0]
        finally:
            con.close()

    def want_full_sync(self) -> None:
        """The next tick syncs again (each served variant then loads what a tick loads)."""
        con = sqlite3.connect(self.base / "instance" / "ghimaging.sqlite", timeout=10)
        try:
            con.execute("UPDATE orthanc_servers SET needs_full_sync = 1, last_sync_at = NULL")
            con.commit()
        finally:
            con.close()

    def idle(self) -> dict[str, Any]:
        """Started, one background tick, a few pages, then idle: the figures."""
        self.want_full_sync()
        self.start()
        self.wait_for_tick(None)
        pages = browse(self)
        time.sleep(2.0)
        out = tree_figures(self.pid)
        out["pages"] = pages
        self.stop()
        return out

    def wait_for_tick(self, after: str | None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.last_sync() == after:
            if time.monotonic() > deadline:
                raise RuntimeError("no background tick:\n" + self.log_tail())
            time.sleep(0.2)


def as_installed(env: dict[str, str], work: Path) -> None:
    """Compiled modules are kept, as pip does for an installed package (the
    checkout's environment may say PYTHONDONTWRITEBYTECODE): in a folder of
    the run's own, filled by the set-up commands before anything is timed."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")


FLOOR_APP = '''
"""The frameworks ghimaging stands on and nothing of ghimaging: Flask,
Flask-SQLAlchemy on SQLite, Flask-Login, Flask-WTF's CSRF, one page."""
from flask import Flask, render_template_string
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

db = SQLAlchemy(model_class=Base)

class Item(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]

app = Flask(__name__)
app.config.update(SECRET_KEY="floor", SQLALCHEMY_DATABASE_URI="sqlite:///" + __file__ + ".sqlite")
db.init_app(app)
CSRFProtect(app)
login = LoginManager(app)
login.user_loader(lambda user_id: None)
with app.app_context():
    db.create_all()

@app.route("/")
def index():
    return render_template_string("<ul>{% for i in items %}<li>{{ i.name }}</li>{% endfor %}</ul>",
                                  items=db.session.scalars(db.select(Item)).all())
'''


def floor_pss(work: Path, env: dict[str, str]) -> dict[str, Any]:
    """The same gunicorn shape serving FLOOR_APP: what the frameworks alone cost."""
    folder = work / "floor"
    folder.mkdir()
    (folder / "floor.py").write_text(FLOOR_APP)
    port = free_port()
    log = open(folder / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--no-control-socket",
                             "--workers", "1", "--threads", str(THREADS), "--bind", f"127.0.0.1:{port}", "floor:app"],
                            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the floor app did not start:\n" + (folder / "gunicorn.log").read_text()[-3000:])
            time.sleep(0.2)
        for _ in range(5):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        time.sleep(1.0)
        return tree_figures(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        log.close()


def browse(app: UnitApp) -> list[tuple[str, int]]:
    """A few pages as a technologist (login, lists, a form, the health check)."""
    s, _, _ = app.signed_in()
    seen = []
    for path in ("/requests", "/requests?state=all", "/patients/", "/orthanc/studies", "/upload/", "/healthz",
                 "/requests"):
        r = s.get(app.url + path, timeout=30)
        seen.append((path, r.status_code))
    s.close()
    return seen


# --------------------------------------------------------------------------- upload


def instances(n: int, side: int, tag: str):
    per_study = max(1, n // 5)
    seed = uuid.uuid4().hex
    for i in range(n):
        s = i // per_study
        study = dicomgen.generate_uid(entropy_srcs=[tag, seed, str(s)])
        series = dicomgen.generate_uid(entropy_srcs=[tag, seed, str(s), "se"])
        ds = dicomgen.make_instance(f"FP-{tag}-{s}", "FOOTPRINT^BENCH", study, series, accession=f"FP{s:03d}",
                                    instance_number=i % per_study + 1, rows=side, cols=side,
                                    study_description="FOOTPRINT BENCH")
        yield f"study{s}/IM{i:04d}.dcm", dicomgen.to_bytes(ds)


def write_zip(path: Path, n: int, side: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in instances(n, side, path.stem):
            zf.writestr(name, data)
    return path


def write_folder(folder: Path, n: int, side: int) -> list[Path]:
    out = []
    for name, data in instances(n, side, folder.name):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out.append(p)
    return out


def upload_growth(app: UnitApp, orthanc: OrthancServer, work: Path, form: str, n: int, side: int) -> dict[str, Any]:
    """A fresh server, warmed by small uploads of both forms, then one big
    upload of ``form`` with the process tree sampled every 50 ms."""
    big = write_zip(work / f"big-{form}.zip", n, side) if form == "zip" else None
    parts = write_folder(work / f"big-{form}", n, side) if form == "folder" else []
    files = [(big.name, big)] if big else [(str(p.relative_to(work)), p) for p in parts]
    size = sum(p.stat().st_size for _, p in files)
    warm_parts = write_folder(work / f"warm-{form}", 10, side)
    warm_zip = write_zip(work / f"warm-{form}.zip", 10, side)
    app.stop()
    orthanc.wipe()
    app.start()
    for _ in range(2):
        for payload in ([(p.name, p) for p in warm_parts], [(warm_zip.name, warm_zip)]):
            r = app.upload(payload)
            assert r.status_code == 200, r.text[:300]
    session = app.signed_in()
    time.sleep(1.0)
    idle = tree_figures(app.pid)
    with Sampler(app.pid, measure=pss_kb) as pss, Sampler(app.pid) as rss:
        r = app.upload(files, session)
    assert r.status_code == 200, r.text[:300]
    counts = r.json()["counts"]
    assert counts["stored"] == n, counts
    session[0].close()
    shutil.rmtree(work / f"big-{form}", ignore_errors=True)
    if big:
        big.unlink()
    return {"form": form, "bytes": size, "counts": counts, "idle_pss_mb": idle["pss_mb"], "idle_rss_mb": idle["rss_mb"],
            "peak_pss_mb": pss.peak_kb / 1024, "peak_rss_mb": rss.peak_kb / 1024,
            "pss_growth_mb": pss.peak_kb / 1024 - idle["pss_mb"], "rss_growth_mb": rss.peak_kb / 1024 - idle["rss_mb"],
            "samples": len(pss.samples)}


# --------------------------------------------------------------------------- report


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    idle, help_, sync = res["idle"], res["help"], res["sync"]
    lines = [f"Footprint bench, {res['date']}, {m['platform']}, {m['cpus']} CPU, Python {m['python']}, "
             f"Orthanc {res['orthanc_version']}, load at start {res['load_at_start']}, at end {res['load_at_end']}",
             f"Served as the unit serves it: ghimaging serve --workers 1 --threads {THREADS} (gunicorn gthread, "
             f"background loop a thread in the worker), SQLite, one Orthanc with {res['studies']} studies.",
             "",
             f"{'figure':48} {'value':>10} {'target':>9}  verdict"]

    def row(name: str, value: float, unit: str, key: str) -> None:
        t = TARGETS[key]
        lines.append(f"{name:48} {value:>8.2f} {unit:1} {'<= ' + format(t, 'g'):>7} {unit:1} {verdict(value, t)}")

    row("idle PSS, master + worker (MB)", idle["pss_mb"], "M", "idle_pss_mb")
    row("ghimaging --help, median of 5 (s)", help_["median_s"], "s", "help_s")
    row("ghimaging sync of an idle server, median (s)", sync["median_s"], "s", "sync_s")
    for u in res["uploads"]:
        row(f"200 MB upload ({u['form']}): PSS growth (MB)", u["pss_growth_mb"], "M", "upload_growth_mb")
    lines += ["",
              "Idle, per process (PSS / RSS MB): " + ", ".join(
                  f"{p}: {v['pss_mb']:.1f} / {v['rss_mb']:.1f}" for p, v in idle["processes"].items())
              + f"; summed RSS {idle['rss_mb']:.1f} MB",
              *([f"With gunicorn's --preload instead (app built in the master, then forked): PSS "
                 f"{res['idle_preload']['pss_mb']:.1f} MB ("
                 + ", ".join(f"{p}: {v['pss_mb']:.1f}" for p, v in res['idle_preload']['processes'].items()) + ")"]
                if "idle_preload" in res else []),
              f"Floor, the frameworks alone (Flask, Flask-SQLAlchemy on SQLite, Flask-Login, CSRF, one page) served "
              f"the same way: PSS {res['floor_idle']['pss_mb']:.1f} MB (RSS {res['floor_idle']['rss_mb']:.1f}); "
              f"ghimaging is {idle['pss_mb'] / res['floor_idle']['pss_mb']:.2f}x that",
              f"Pages fetched before idle: {', '.join(f'{p} {c}' for p, c in res['pages'])}",
              f"ghimaging --help: runs {', '.join(f'{s:.3f}' for s in help_['runs'])} s; floors (median of 5): "
              f"python -c pass {res['floor_pass_s']:.3f} s, python -c 'import flask' {res['floor_flask_s']:.3f} s; "
              f"--help is {help_['median_s'] / res['floor_flask_s']:.2f}x the flask floor",
              f"ghimaging sync: runs {', '.join(f'{s:.3f}' for s in sync['runs'])} s (CPU {sync['cpu_s']:.3f} s), "
              f"max RSS {sync['max_rss_mb']:.1f} MB; floor python -c '{res['frameworks']}' "
              f"{res['floor_frameworks_s']:.3f} s, sync is {sync['median_s'] / res['floor_frameworks_s']:.2f}x that; "
              f"its output: {sync['line']}"]
    for u in res["uploads"]:
        lines.append(f"Upload {u['form']}: {u['bytes'] / 1024**2:.0f} MB, {u['counts']}; idle PSS {u['idle_pss_mb']:.1f} "
                     f"-> peak {u['peak_pss_mb']:.1f} MB; RSS {u['idle_rss_mb']:.1f} -> {u['peak_rss_mb']:.1f} MB "
                     f"(+{u['rss_growth_mb']:.1f}); {u['samples']} samples")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=500, help="DICOM files in the big upload (default 500)")
    ap.add_argument("--side", type=int, default=448, help="image side in pixels (448: about 400 KB a file)")
    ap.add_argument("--folder", action="store_true", help="also upload the files as 500 parts of one request")
    ap.add_argument("--no-upload", action="store_true", help="skip the upload figures")
    ap.add_argument("--no-preload", action="store_true", help="skip the --preload comparison")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    OUT_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    res: dict[str, Any] = {"date": datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                           "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    orthanc = OrthancServer(work / "orthanc")
    app = None
    try:
        orthanc.start()
        res["orthanc_version"] = orthanc.get("/system")["Version"]
        for _name, data in instances(15, 64, "seed"):
            orthanc.upload(data)
        res["studies"] = len(orthanc.get("/studies"))
        # The unit's environment: default sync intervals (the first tick syncs at once).
        app = UnitApp(work, orthanc, env={"GHIMAGING_ORTHANC_SYNC_INTERVAL": "60",
                                          "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "900"})
        as_installed(app.env, work)
        app.setup()
        res["idle"] = app.idle()
        res["pages"] = res["idle"].pop("pages")
        print(f"idle PSS {res['idle']['pss_mb']:.1f} MB", flush=True)
        if not args.no_preload:
            app.preload = True
            res["idle_preload"] = app.idle()
            app.preload = False
            print(f"idle PSS, preloaded {res['idle_preload']['pss_mb']:.1f} MB", flush=True)

        res["floor_idle"] = floor_pss(work, app.env)
        print(f"floor PSS {res['floor_idle']['pss_mb']:.1f} MB", flush=True)

        env, cwd = app.env, work
        py = sys.executable
        frameworks = "import flask, sqlalchemy.orm, flask_sqlalchemy"
        for cmd in ([py, "-c", frameworks], [str(BIN / "ghimaging"), "--help"], [str(BIN / "ghimaging"), "sync"]):
            wall(cmd, env, cwd)  # compiled modules written once, as an installed package has them
        res["floor_pass_s"] = statistics.median(wall([py, "-c", "pass"], env, cwd) for _ in range(5))
        res["floor_flask_s"] = statistics.median(wall([py, "-c", "import flask"], env, cwd) for _ in range(5))
        res["frameworks"] = frameworks
        res["floor_frameworks_s"] = statistics.median(wall([py, "-c", frameworks], env, cwd) for _ in range(5))
        runs = [wall([str(BIN / "ghimaging"), "--help"], env, cwd) for _ in range(5)]
        res["help"] = {"runs": runs, "median_s": statistics.median(runs)}
        print(f"--help {res['help']['median_s']:.3f} s", flush=True)

        syncs = [time_v([str(BIN / "ghimaging"), "sync"], env, cwd) for _ in range(5)]
        res["sync"] = {"runs": [s["seconds"] for s in syncs], "median_s": statistics.median(s["seconds"] for s in syncs),
                       "cpu_s": statistics.median(s["cpu_s"] for s in syncs),
                       "max_rss_mb": max(s["max_rss_mb"] for s in syncs),
                       "line": " / ".join(syncs[-1]["stdout"].strip().splitlines())}
        print(f"sync {res['sync']['median_s']:.3f} s", flush=True)

        res["uploads"] = []
        if not args.no_upload:
            for form in ("zip", "folder") if args.folder else ("zip",):
                res["uploads"].append(upload_growth(app, orthanc, work, form, args.files, args.side))
                print(f"upload {form}: +{res['uploads'][-1]['pss_growth_mb']:.1f} MB PSS", flush=True)
    finally:
        if app is not None:
            app.stop()
        orthanc.cleanup()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    res["load_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(res)
    print("\n" + text)
    (OUT_DIR / "footprint.txt").write_text(text + "\n")
    (OUT_DIR / "footprint.json").write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
