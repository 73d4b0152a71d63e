"""Bench: the Orthanc full sync against the bare HTTP reads of the same data.

A real Orthanc 1.10.1 (Debian's package, the test suite's ``OrthancServer``)
is started in a temporary folder and loaded once with generated one-instance
studies (16x16 images). Then, in one run, on the same machine and the same
Orthanc, the script measures:

(a) our full sync, ``sync.run(server_id, mode="full")``, each repetition on a
    fresh copy of an SQLite instance folder (schema by the real migrations,
    server added by ``add_server``), so every run writes every row;
(b) the floor: the very HTTP requests the full sync makes (``/changes?last``,
    ``/studies?expand&since&limit=500`` pages, ``/series?expand`` pages) with a
    bare ``requests.Session``, parsing the JSON and nothing else;
(c) the per-study approach of GNU Health's ``health_orthanc``: ``/changes``
    paged by 100, then one ``GET /studies/{id}`` per study (and nothing else,
    not even a database write, which favours it);

taking turns, and prints medians with the ratios (a)/(b) (target <= 1.5) and
(c)/(a) (target >= 5). It also times an incremental sync with nothing new
(target: one request, under 50 ms), measures the peak memory of a full sync
at half and at all of the studies (target: no growth with the archive size),
and counts the requests an incremental sync makes for a new study of 50
series (target: at most 3 beyond the /changes pages) and for the Stable*
changes that follow it (target: none beyond the /changes pages).
When (a)/(b) misses its target, one more full sync runs under cProfile (and
pyinstrument when installed) and the report says where the time goes.

Run it from the checkout with the app installed (``pip install -e .``):
``python bench/bench_orthanc_sync.py`` (about two minutes on two cores;
``--help`` for the knobs). The report is also written to
``bench/out/orthanc_sync.txt`` and every number to ``bench/out/orthanc_sync.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import event, func, select

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ghimaging import MIGRATIONS_DIR, create_app  # noqa: E402 (after sys.path)
from ghimaging.extensions import db  # noqa: E402 (after sys.path)
from ghimaging.models import OrthancPatient, OrthancSeries, OrthancStudy  # noqa: E402 (after sys.path)
from ghimaging.models import OrthancServer as ServerRow  # noqa: E402 (after sys.path)
from ghimaging.orthanc import servers, sync  # noqa: E402 (after sys.path)
from tests.support import dicomgen  # noqa: E402 (after sys.path)
from tests.support.orthanc import OrthancServer  # noqa: E402 (after sys.path)

OUT_DIR = Path(__file__).resolve().parent / "out"
PAGE = 500             # what sync.full pages by (its default)
CHANGES_PAGE = 100     # what GNU Health pages /changes by
TARGET_FLOOR_RATIO = 1.5
TARGET_PER_STUDY_RATIO = 5.0
TARGET_INCREMENTAL_MS = 50.0


# --------------------------------------------------------------------------- Orthanc


def load(orthanc: OrthancServer, n_studies: int, seed: int, threads: int) -> float:
    """Upload ``n_studies`` one-instance studies (two per patient) in parallel."""
    datasets = dicomgen.generate_studies(n_studies // 2, 2, 1, 1, seed=seed, rows=16, cols=16)
    local = threading.local()
    lock = threading.Lock()

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.auth = orthanc.auth
        return local.s

    def upload(ds) -> None:
        with lock:  # pydicom encoding holds the GIL anyway; keep it off the upload threads
            body = dicomgen.to_bytes(ds)
        r = session().post(orthanc.url + "/instances", data=body, timeout=60,
                           headers={"Content-Type": "application/dicom"})
        if r.status_code != 200:
            raise RuntimeError(f"upload answered {r.status_code}: {r.text[:200]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(upload, datasets):
            pass
    return time.perf_counter() - t0


def settle(orthanc: OrthancServer, expected_studies: int, quiet: float) -> dict:
    """Wait until Orthanc holds the studies and its change log stops growing
    (the Stable* changes come StableAge seconds after the last upload)."""
    deadline = time.monotonic() + 300
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = orthanc.changes_last()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            stats = orthanc.get("/statistics")
            if int(stats["CountStudies"]) == expected_studies:
                return {"changes_last": last, **stats}
        time.sleep(0.25)
    raise RuntimeError("Orthanc did not settle within 300 s")


# --------------------------------------------------------------------------- the app


def quiet_logs() -> None:
    for name in ("alembic", "alembic.runtime.migration", "flask_migrate", "ghimaging"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_app(folder: Path):
    return create_app({
        "INSTANCE_PATH": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'ghimaging.sqlite'}",
        "TESTING": False,
    })


def build_template(folder: Path, orthanc: OrthancServer) -> int:
    """An instance folder with the migrated schema and the Orthanc server added
    (``add_server`` checks it for real). Copied afresh for every full sync."""
    from flask_migrate import upgrade

    folder.mkdir(parents=True)
    app = make_app(folder)
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        quiet_logs()
        server = servers.add_server(label="bench", url=orthanc.url, username=orthanc.username,
                                    password=orthanc.password)
        db.session.commit()
        server_id = server.id
        db.session.remove()
        db.engine.dispose()
    return server_id


class Instances:
    """Fresh copies of the template instance folder, one app each."""

    def __init__(self, workdir: Path, template: Path):
        self.workdir, self.template, self.n = workdir, template, 0

    def fresh(self):
        self.n += 1
        folder = self.workdir / f"db-{self.n:03d}"
        shutil.copytree(self.template, folder)
        return make_app(folder), folder

    @staticmethod
    def close(app, folder: Path | None = None, keep: bool = False) -> None:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if folder is not None and not keep:
            shutil.rmtree(folder, ignore_errors=True)


class HttpMeter:
    """Counts the HTTP responses a client gets (a Session response hook, so
    independent of the client's own counter) and the time spent in
    ``get_json`` (request, transfer and JSON parsing)."""

    def __init__(self) -> None:
        self.responses = 0
        self.seconds = 0.0
        self.client = None
        self.paths: list[str] = []

    def factory(self, server):
        client = servers.client_for(server)
        client.session.hooks["response"].append(self._hook)
        inner = client.get_json

        def get_json(path: str, **params: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(path, **params)
            finally:
                self.seconds += time.perf_counter() - t0

        client.get_json = get_json
        self.client = client
        return client

    def _hook(self, response, *args, **kwargs):
        self.responses += 1
        self.paths.append(urlsplit(response.request.url).path)
        return response

    def beyond_changes(self) -> int:
        return sum(1 for p in self.paths if p != "/changes")


class SqlMeter:
    """SQL statements, commits and time inside ``cursor.execute`` (diagnostic run only)."""

    def __init__(self, engine) -> None:
        self.statements = 0
        self.commits = 0
        self.seconds = 0.0
        self._t0 = 0.0
        self.by_kind: dict[str, int] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self.statements += 1
        kind = statement.lstrip().split(None, 1)[0].upper()
        if executemany:
            kind += " (executemany)"
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self._t0 = time.perf_counter()

    def _after(self, *args):
        self.seconds += time.perf_counter() - self._t0

    def _commit(self, conn):
        self.commits += 1


def mirror_counts() -> dict[str, int]:
    return {name: db.session.scalar(select(func.count()).select_from(model))
            for name, model in (("studies", OrthancStudy), ("series", OrthancSeries),
                                ("patients", OrthancPatient))}


def our_full_sync(instances: Instances, server_id: int, *, sql: bool = False,
                  wrap: Callable[[Callable[[], Any]], Any] | None = None) -> dict:
    """(a): one full sync on a fresh database; wall and CPU time around ``sync.run``."""
    app, folder = instances.fresh()
    meter = HttpMeter()
    try:
        with app.app_context():
            sqlm = SqlMeter(db.engine) if sql else None
            def call():
                return sync.run(server_id, mode="full", client_factory=meter.factory)
            c0, t0 = time.process_time(), time.perf_counter()
            summary = wrap(call) if wrap else call()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if summary.error:
                raise RuntimeError(f"full sync failed: {summary.error}")
            db.session.remove()
            counts = mirror_counts()
            out = {"seconds": wall, "cpu": cpu, "requests": summary.requests, "responses": meter.responses,
                   "http_seconds": meter.seconds, "summary_seconds": summary.seconds,
                   "studies_updated": summary.studies_updated, "counts": counts}
            if sqlm:
                out["sql"] = {"statements": sqlm.statements, "commits": sqlm.commits,
                              "execute_seconds": sqlm.seconds, "by_kind": sqlm.by_kind}
            return out
    finally:
        instances.close(app, folder)


# --------------------------------------------------------------------------- floors


def floor_reads(orthanc: OrthancServer) -> dict:
    """(b): the requests ``sync.full`` makes, with a bare Session: parse, nothing else."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = items = 0
    with requests.Session() as s:
        s.auth = orthanc.auth
        r = s.get(orthanc.url + "/changes", params={"last": ""}, timeout=30)
        r.raise_for_status()
        r.json()
        n += 1
        for level in ("studies", "series"):
            since = 0
            while True:
                r = s.get(f"{orthanc.url}/{level}", params={"since": since, "limit": PAGE, "expand": ""},
                          timeout=30)
                r.raise_for_status()
                page = r.json()
                n += 1
                items += len(page)
                if len(page) < PAGE:
                    break
                since += len(page)
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "requests": n, "items": items}


def per_study_reads(orthanc: OrthancServer) -> dict:
    """(c): GNU Health's way: ``/changes`` by 100, then ``GET /studies/{id}`` each."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    study_ids: dict[str, None] = {}
    with requests.Session() as s:
        s.auth = orthanc.auth
        since = 0
        while True:
            r = s.get(orthanc.url + "/changes", params={"since": since, "limit": CHANGES_PAGE}, timeout=30)
            r.raise_for_status()
            page = r.json()
            n += 1
            for ch in page["Changes"]:
                if ch["ResourceType"] == "Study" and ch["ChangeType"] in ("NewStudy", "StableStudy"):
                    study_ids.setdefault(ch["ID"])
            since = page["Last"]
            if page["Done"] or not page["Changes"]:
                break
        for sid in study_ids:
            r = s.get(f"{orthanc.url}/studies/{sid}", timeout=30)
            r.raise_for_status()
            r.json()
            n += 1
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "requests": n,
            "studies": len(study_ids)}


# --------------------------------------------------------------------------- incremental, memory


def incremental_nothing_new(instances: Instances, server_id: int, reps: int) -> dict:
    app, folder = instances.fresh()
    try:
        with app.app_context():
            first = sync.run(server_id, mode="full")
            if first.error:
                raise RuntimeError(first.error)
            times, cpus, reqs, summary_ms = [], [], [], []
            for i in range(reps + 2):
                meter = HttpMeter()
                c0, t0 = time.process_time(), time.perf_counter()
                summary = sync.run(server_id, client_factory=meter.factory)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                if summary.error or summary.mode != "incremental":
                    raise RuntimeError(f"incremental: {summary.mode} {summary.error}")
                if i >= 2:  # two warm-ups
                    times.append(wall * 1000)
                    cpus.append(cpu * 1000)
                    reqs.append(meter.responses)
                    summary_ms.append(summary.seconds * 1000)
            return {"median_ms": statistics.median(times), "p90_ms": _pct(times, 0.9),
                    "min_ms": min(times), "cpu_median_ms": statistics.median(cpus),
                    "requests": sorted(set(reqs)), "reps": reps, "times_ms": times}
    finally:
        instances.close(app, folder)


def new_study_cost(instances: Instances, server_id: int, orthanc: OrthancServer, expected: int) -> dict:
    """Requests of the incremental sync that follows the upload of one new
    study of 50 series, then of the one that reads its Stable* changes."""
    app, folder = instances.fresh()
    try:
        with app.app_context():
            if sync.run(server_id, mode="full").error:
                raise RuntimeError("full sync failed")
            datasets = dicomgen.generate_studies(1, 1, 50, 1, seed=2, rows=16, cols=16)
            for ds in datasets:
                orthanc.upload(dicomgen.to_bytes(ds))
            out = {}
            for key in ("new", "stable"):
                if key == "stable":
                    settle(orthanc, expected, quiet=3.0)
                meter = HttpMeter()
                summary = sync.run(server_id, client_factory=meter.factory)
                if summary.error or summary.mode != "incremental":
                    raise RuntimeError(f"incremental: {summary.mode} {summary.error}")
                out[key] = {"beyond_changes": meter.beyond_changes(), "requests": meter.responses,
                            "changes": summary.changes, "paths": meter.paths}
            return out
    finally:
        instances.close(app, folder)


def _clear_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory_of_full_sync(instances: Instances, server_id: int) -> dict:
    """Peak memory of one full sync: tracemalloc's peak (Python allocations)
    on one fresh database, the RSS high-water mark delta on another (untraced)."""
    our_full_sync(instances, server_id)  # warm caches (compiled SQL, imports) outside the measurement
    app, folder = instances.fresh()
    try:
        with app.app_context():
            db.session.get(ServerRow, server_id)
            db.session.remove()
            tracemalloc.start()
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            summary = sync.run(server_id, mode="full")
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            studies = summary.studies_updated
    finally:
        instances.close(app, folder)
    app, folder = instances.fresh()
    rss = {}
    try:
        with app.app_context():
            db.session.get(ServerRow, server_id)
            db.session.remove()
            if _clear_rss_peak():
                before = _status_kib("VmRSS")
                sync.run(server_id, mode="full")
                rss = {"rss_before_kib": before, "hwm_kib": _status_kib("VmHWM"),
                       "hwm_delta_kib": _status_kib("VmHWM") - before}
    finally:
        instances.close(app, folder)
    return {"studies": studies, "tracemalloc_peak": peak - base, "tracemalloc_left": current - base, **rss}


# --------------------------------------------------------------------------- profile


CATEGORIES = (
    ("SQLite (cursor.execute / executemany)", lambda f, fn: fn.startswith(("<method 'execute'", "<method 'executemany'"))),
    ("SQLite commit (fsync)", lambda f, fn: fn.startswith("<method 'commit' of 'sqlite3")),
    ("HTTP (requests, urllib3, http.client, socket)", lambda f, fn: any(
        p in f for p in ("/requests/", "/urllib3/", "/http/client.py", "socket.py", "ssl.py"))
     or "_socket.socket" in fn or "recv_into" in fn),
    ("JSON decoding", lambda f, fn: "/json/" in f or "simplejson" in f or "'decode' of" in fn
     or "scan_once" in fn),
    ("SQLAlchemy (ORM unit of work, attributes, SQL compilation)", lambda f, fn: "/sqlalchemy/" in f),
    ("ghimaging code itself", lambda f, fn: "/ghimaging/" in f),
)


def categorise(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time (tottime) of every function, summed by category."""
    totals: dict[str, float] = {}
    for (filename, _line, funcname), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        fn = funcname if filename == "~" else ""  # built-ins: "<method 'execute' of 'sqlite3.Cursor' objects>"
        name = next((label for label, test in CATEGORIES if test(filename, fn)),
                    "other (Python runtime, Flask, logging, ...)")
        totals[name] = totals.get(name, 0.0) + tt
    return sorted(totals.items(), key=lambda kv: -kv[1])


def profile_full_sync(instances: Instances, server_id: int, top: int) -> dict:
    prof = cProfile.Profile()

    def under_cprofile(call):
        prof.enable()
        try:
            return call()
        finally:
            prof.disable()

    run = our_full_sync(instances, server_id, wrap=under_cprofile)
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())
    by_category = categorise(stats)
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("tottime").print_stats(top)
    by_tottime = out.getvalue()
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("cumulative").print_stats(r"ghimaging|sqlalchemy/orm/(session|unitofwork|persistence)"
                                              r"|requests/sessions|sqlite3")
    cumulative = "\n".join(out.getvalue().splitlines()[: top + 12])
    result = {"seconds_under_profiler": run["seconds"], "total_own_seconds": total,
              "by_category": by_category, "top_tottime": by_tottime, "cumulative": cumulative}
    try:
        from pyinstrument import Profiler
    except ImportError:
        result["pyinstrument"] = "(pyinstrument not installed: pip install pyinstrument)"
        return result
    profiler = Profiler(interval=0.0005)

    def under_pyinstrument(call):
        profiler.start()
        try:
            return call()
        finally:
            profiler.stop()

    run = our_full_sync(instances, server_id, wrap=under_pyinstrument)
    result["pyinstrument_seconds"] = run["seconds"]
    result["pyinstrument"] = profiler.output_text(unicode=False, color=False, show_all=False)
    return result


# --------------------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarise(runs: list[dict]) -> dict:
    secs = [r["seconds"] for r in runs]
    return {"median": statistics.median(secs), "min": min(secs), "max": max(secs),
            "cpu_median": statistics.median(r["cpu"] for r in runs),
            "requests": sorted({r["requests"] for r in runs}), "runs": runs}


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg": load}


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(r: dict) -> str:
    a, b, c = r["a"], r["b"], r["c"]
    inc, mem = r["incremental"], r["memory"]
    ab = a["median"] / b["median"]
    ca = c["median"] / a["median"]
    n = r["studies"]
    L = []
    L.append(f"Orthanc full sync bench - {r['date']}, Orthanc {r['orthanc_version']}, "
             f"Python {r['machine']['python']}, {r['machine']['cpus']} CPUs, "
             f"load average at start {r['load_at_start']}")
    L.append(f"Archive: {n:,} one-instance studies of {n // 2:,} patients (16x16 images), "
             f"{r['orthanc']['changes_last']:,} changes in Orthanc's log; loaded in {r['load_seconds']:.1f} s")
    L.append(f"Medians of {r['reps']} runs each, taking turns; SQLite on disk in a temporary folder, a fresh "
             "database for every (a) run.")
    L.append("")
    L.append(f"{'':38}{'median s':>10}{'min s':>9}{'max s':>9}{'CPU s':>9}{'HTTP requests':>15}")
    for label, m in (("(a) ghimaging full sync (sync.run)", a), ("(b) floor: bare paged reads", b),
                     ("(c) per-study reads (GNU Health way)", c)):
        req = ", ".join(f"{x:,}" for x in m["requests"])
        L.append(f"{label:38}{m['median']:10.3f}{m['min']:9.3f}{m['max']:9.3f}{m['cpu_median']:9.3f}{req:>15}")
    L.append("")
    L.append(f"(a)/(b) = {ab:5.2f}   target <= {TARGET_FLOOR_RATIO}   {verdict(ab <= TARGET_FLOOR_RATIO)}")
    L.append(f"(c)/(a) = {ca:5.2f}   target >= {TARGET_PER_STUDY_RATIO}     "
             f"{verdict(ca >= TARGET_PER_STUDY_RATIO)}   ((c) writes nothing; with GNU Health's database "
             f"writes it would be slower)")
    http = statistics.median(x["http_seconds"] for x in a["runs"])
    L.append(f"Inside (a): {http:.3f} s in the client's get_json (HTTP + JSON, compare (b)), "
             f"{a['median'] - http:.3f} s everything else (ORM, SQLite, commits, lease)")
    counts = a["runs"][-1]["counts"]
    L.append(f"Rows after each (a): {counts['studies']:,} studies, {counts['series']:,} series, "
             f"{counts['patients']:,} patients; HTTP responses seen by a session hook: "
             f"{', '.join(str(x) for x in sorted({x['responses'] for x in a['runs']}))}")
    if "sql" in r:
        s = r["sql"]
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(s["by_kind"].items(), key=lambda kv: -kv[1]))
        L.append(f"SQL of one full sync: {s['statements']:,} statements, {s['statements'] / n:.1f} per study "
                 f"({kinds}), {s['commits']} commits, {s['execute_seconds']:.3f} s inside cursor.execute")
    L.append("")
    ok_inc = inc["requests"] == [1] and inc["median_ms"] < TARGET_INCREMENTAL_MS
    L.append(f"Incremental sync with nothing new (sync.run, {inc['reps']} runs): "
             f"{'/'.join(str(x) for x in inc['requests'])} HTTP request(s), median {inc['median_ms']:.1f} ms, "
             f"p90 {inc['p90_ms']:.1f} ms, min {inc['min_ms']:.1f} ms, CPU {inc['cpu_median_ms']:.1f} ms"
             f"   target 1 request, < {TARGET_INCREMENTAL_MS:.0f} ms   {verdict(ok_inc)}")
    L.append("")
    L.append("Peak memory of one full sync (tracemalloc: Python allocations above the start; RSS: growth of the "
             "high-water mark over the RSS before, untraced run, 0 = fitted in memory the process already had):")
    for m in mem:
        rss = f"{m['hwm_delta_kib'] / 1024:7.1f} MiB" if "hwm_delta_kib" in m else "    n/a"
        L.append(f"  {m['studies']:>6,} studies: tracemalloc peak {m['tracemalloc_peak'] / 2**20:7.1f} MiB, "
                 f"left after {m['tracemalloc_left'] / 2**20:5.1f} MiB; RSS peak delta {rss}")
    if len(mem) == 2:
        grow = mem[1]["tracemalloc_peak"] / mem[0]["tracemalloc_peak"]
        L.append(f"  peak at {mem[1]['studies']:,} / peak at {mem[0]['studies']:,} = {grow:.2f}"
                 f"   target: no growth (about 1.0; 2.0 would be linear)   {verdict(grow <= 1.25)}")
    if "new_study" in r:
        new, stable = r["new_study"]["new"], r["new_study"]["stable"]
        L.append("")
        L.append(f"A new study of 50 series (one incremental sync.run after its upload, {new['changes']} changes): "
                 f"{new['beyond_changes']} request(s) beyond /changes, {new['requests']} in all"
                 f"   target <= 3   {verdict(new['beyond_changes'] <= 3)}")
        L.append(f"Its Stable* changes, the study unchanged (the next incremental sync, {stable['changes']} changes): "
                 f"{stable['beyond_changes']} request(s) beyond /changes, {stable['requests']} in all"
                 f"   target 0   {verdict(stable['beyond_changes'] == 0)}")
    if "profile" in r:
        p = r["profile"]
        L.append("")
        L.append(f"Profile of one full sync (cProfile, {p['seconds_under_profiler']:.2f} s under the profiler; "
                 "own time by category):")
        for name, secs in p["by_category"]:
            L.append(f"  {secs:7.3f} s  {100 * secs / p['total_own_seconds']:5.1f} %  {name}")
        L.append("")
        L.append("Top functions by own time:")
        L.extend("  " + line for line in p["top_tottime"].strip().splitlines()[3:])
        L.append("")
        L.append("Cumulative (ghimaging, ORM flush, requests, sqlite3):")
        L.extend("  " + line for line in p["cumulative"].strip().splitlines()[3:])
        L.append("")
        L.append(f"pyinstrument (sampling, {p.get('pyinstrument_seconds', 0):.2f} s):")
        L.extend("  " + line for line in str(p["pyinstrument"]).rstrip().splitlines())
    return "\n".join(L)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=2000, help="studies to load (a multiple of 4)")
    ap.add_argument("--reps", type=int, default=5, help="timed runs of (a), (b) and (c)")
    ap.add_argument("--incremental-reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=4, help="upload threads")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="profile a full sync: when (a)/(b) misses its target (auto), always or never")
    ap.add_argument("--top", type=int, default=25, help="functions listed in the profile")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (Orthanc and databases)")
    args = ap.parse_args(argv)
    if args.studies % 4:
        ap.error("--studies must be a multiple of 4")

    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="ghimaging-bench-orthanc-"))
    result: dict[str, Any] = {"date": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                              "studies": args.studies, "reps": args.reps, "page": PAGE,
                              "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    orthanc = OrthancServer(workdir / "orthanc", stable_age=1)
    try:
        orthanc.start()
        result["orthanc_version"] = orthanc.get("/system")["Version"]
        half = args.studies // 2
        print(f"Orthanc {result['orthanc_version']} on {orthanc.url}; loading {half:,} studies ...", flush=True)
        secs = load(orthanc, half, seed=0, threads=args.threads)
        settle(orthanc, half, quiet=3.0)
        server_id = build_template(workdir / "template", orthanc)
        instances = Instances(workdir, workdir / "template")
        print(f"  loaded in {secs:.1f} s; peak memory of a full sync of {half:,} studies ...", flush=True)
        memory = [memory_of_full_sync(instances, server_id)]

        print(f"Loading {half:,} more studies ...", flush=True)
        secs += load(orthanc, half, seed=1, threads=args.threads)
        result["orthanc"] = settle(orthanc, args.studies, quiet=3.0)
        result["load_seconds"] = secs
        print(f"  {args.studies:,} studies loaded in {secs:.1f} s in all; peak memory at {args.studies:,} ...",
              flush=True)
        memory.append(memory_of_full_sync(instances, server_id))
        result["memory"] = memory

        print(f"Timing (a), (b), (c): one warm-up each, then {args.reps} runs each, taking turns ...", flush=True)
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("a", lambda: our_full_sync(instances, server_id)),
            ("b", lambda: floor_reads(orthanc)),
            ("c", lambda: per_study_reads(orthanc)),
        ]
        for _, fn in steps:
            fn()
        runs: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
        for rep in range(args.reps):
            order = steps[rep % 3:] + steps[:rep % 3]
            for key, fn in order:
                runs[key].append(fn())
            print(f"  run {rep + 1}: " + ", ".join(f"({k}) {runs[k][-1]['seconds']:.3f} s" for k in "abc"),
                  flush=True)
        for key in "abc":
            result[key] = summarise(runs[key])
        bad = [r for r in runs["a"] if r["counts"]["studies"] != args.studies
               or r["counts"]["series"] != args.studies or r["studies_updated"] != args.studies]
        if bad:
            raise RuntimeError(f"a full sync did not mirror {args.studies} studies: {bad[0]['counts']}")
        if any(r["studies"] != args.studies for r in runs["c"]):
            raise RuntimeError("the per-study reader did not find every study in /changes")

        result["sql"] = our_full_sync(instances, server_id, sql=True)["sql"]
        print(f"Incremental sync with nothing new, {args.incremental_reps} runs ...", flush=True)
        result["incremental"] = incremental_nothing_new(instances, server_id, args.incremental_reps)

        print("Requests for a new study of 50 series, and for its Stable* changes ...", flush=True)
        result["new_study"] = new_study_cost(instances, server_id, orthanc, args.studies + 1)

        ratio = result["a"]["median"] / result["b"]["median"]
        if args.profile == "always" or (args.profile == "auto" and ratio > TARGET_FLOOR_RATIO):
            print("Profiling one full sync ...", flush=True)
            result["profile"] = profile_full_sync(instances, server_id, args.top)

        report = render(result)
        print()
        print(report)
        OUT_DIR.mkdir(exist_ok=True)
        (OUT_DIR / "orthanc_sync.txt").write_text(report + "\n")
        (OUT_DIR / "orthanc_sync.json").write_text(json.dumps(result, indent=2, default=str))
        print(f"\nWritten to {OUT_DIR / 'orthanc_sync.txt'} and orthanc_sync.json")
    finally:
        orthanc.cleanup()
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
