"""Bench: the request list page with 100,000 requests against an empty database.

Three SQLite instance folders are built in one temporary directory, each by
the real migrations and the catalogue seed (what ``ghimaging init`` does):
one is left empty, one gets 1,000 requests, and one 20,000 patients, 10 tests
and 100,000 requests, by bulk Core inserts. Each page is then fetched through
the Flask test client by a signed-in physician, the databases taking turns,
and the script prints:

* the median (and 90th percentile, and CPU) server time per page on each
  database, and the ratios full/empty and full/small: the empty database is
  the floor measured in the same run, so the ratio is what 100,000 rows
  cost whatever the machine; the small one has full pages too, so
  full/small is the cost of the table size without the rendering;
* the SQL statements per page on each database (no N+1: the number does not
  change with the rows on the page, only an empty page saves one);
* ``EXPLAIN QUERY PLAN`` of every request-list statement the full page ran,
  flagging in plain words the steps that grow with a big table.

Run it from the checkout: ``python bench/bench_request_list.py`` (under a
minute on two idle cores). ``--help`` lists the knobs. Results are also written
to ``bench/out/request_list.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, insert, select

from ghimaging import MIGRATIONS_DIR, create_app
from ghimaging.extensions import db
from ghimaging.models import Counter, ImagingRequest, ImagingTest, ModalityType, Patient, Role, User

OUT_DIR = Path(__file__).resolve().parent / "out"
USERNAME = "bench.physician"
PASSWORD = "bench-Passw0rd"
TARGET_MS = 100.0

# Ten tests across the seeded modalities: (code, name, modality, AE title).
TESTS = [
    ("XR-CHEST", "Chest X-ray PA", "CR", "XRAY1"),
    ("XR-KNEE", "Knee X-ray two views", "DX", "XRAY1"),
    ("CT-HEAD", "CT head without contrast", "CT", "CT1"),
    ("CT-ABD", "CT abdomen and pelvis", "CT", "CT1"),
    ("MR-BRAIN", "MRI brain", "MR", "MR1"),
    ("MR-LSPINE", "MRI lumbar spine", "MR", "MR1"),
    ("US-ABD", "Abdominal ultrasound", "US", "US1"),
    ("US-OB", "Obstetric ultrasound", "US", "US1"),
    ("MG-SCREEN", "Screening mammography", "MG", "MAMMO1"),
    ("RF-SWALLOW", "Barium swallow", "RF", "FLUORO1"),
]

# 40 x 25 = 1,000 family names, so one name is ~20 patients and ~100 requests.
NAME_HEADS = ["Abe", "Bar", "Cas", "Dal", "Eko", "Fen", "Gar", "Hal", "Ito", "Jar",
              "Kel", "Lin", "Mar", "Nor", "Oka", "Pal", "Quin", "Ros", "Sal", "Tan",
              "Ulm", "Var", "Wen", "Xan", "Yar", "Zed", "Bren", "Cor", "Dun", "Esk",
              "Fal", "Grim", "Hest", "Ivar", "Jun", "Kov", "Lom", "Mend", "Nak", "Orv"]
NAME_TAILS = ["ley", "sen", "ford", "vale", "wick", "ton", "ura", "ez", "ani", "berg",
              "ström", "ov", "ski", "ard", "ini", "oye", "ada", "mont", "ridge", "holm",
              "aki", "dóttir", "ero", "ach", "ue"]
GIVEN = ["Ana", "Ben", "Chiara", "Dmitri", "Ebere", "Farah", "Guo", "Hana", "Ines", "Jonas",
         "Kofi", "Lucía", "Mateo", "Nadia", "Omar", "Priya", "Rosa", "Sven", "Tariq", "Yuki"]
STATES = [("draft", 0.10), ("requested", 0.30), ("done", 0.55), ("cancelled", 0.05)]
URGENT_SHARE = 0.08
SEARCH_NAME = "Marvale"  # one of the generated family names


def family_name(i: int) -> str:
    return NAME_HEADS[i % len(NAME_HEADS)] + NAME_TAILS[(i // len(NAME_HEADS)) % len(NAME_TAILS)]


# --------------------------------------------------------------------------- build


def make_app(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    return create_app({
        "INSTANCE_PATH": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'ghimaging.sqlite'}",
        "WTF_CSRF_ENABLED": False,  # the bench signs in with a plain POST
        "TESTING": False,
    })


def init_schema(app) -> None:
    """The migrations and the catalogue seed, as ``ghimaging init`` runs them."""
    from flask_migrate import upgrade

    from ghimaging.auth.service import create_user
    from ghimaging.catalog.service import seed

    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        seed()
        create_user(USERNAME, PASSWORD, [Role.PHYSICIAN], full_name="Bench Physician")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _chunks(rows: list[dict], size: int):
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def populate(app, n_requests: int, n_patients: int, seed: int, chunk: int = 5000) -> dict:
    """Bulk-insert tests, patients and requests in one transaction."""
    from ghimaging.auth.service import create_user

    rnd = random.Random(seed)
    now = datetime(2025, 6, 1, 12, 0)
    with app.app_context():
        modality = dict(db.session.execute(select(ModalityType.code, ModalityType.id)).all())
        # Eight physicians (the bench user and seven more) order; one request
        # in ten has none recorded.
        for i in range(1, 8):
            create_user(f"physician{i}", PASSWORD, [Role.PHYSICIAN], full_name=f"Dr Physician {i}")
        physician_ids = list(db.session.scalars(select(User.id).join(User.role_rows)))
        db.session.remove()

        started = time.perf_counter()
        with db.engine.begin() as conn:
            conn.execute(insert(ImagingTest), [
                {"code": c, "name": n, "modality_id": modality[m], "ae_title": ae,
                 "worklist_template": "", "active": True} for c, n, m, ae in TESTS
            ])
            test_ids = list(conn.scalars(select(ImagingTest.id)))

            patients = []
            for i in range(1, n_patients + 1):
                patients.append({
                    "puid": f"P{i:07d}", "family_name": family_name(rnd.randrange(1000)),
                    "given_name": rnd.choice(GIVEN),
                    "birth_date": date(1930, 1, 1) + timedelta(days=rnd.randrange(90 * 365)),
                    "sex": rnd.choice("FMO"), "phone": "", "notes": "",
                    "created_at": now, "updated_at": now,
                })
            if hasattr(Patient, "refresh_search_key"):  # a derived column the model fills itself
                for row in patients:
                    p = Patient(puid=row["puid"], family_name=row["family_name"], given_name=row["given_name"])
                    p.refresh_search_key()
                    row["search_key"] = p.search_key
            for part in _chunks(patients, chunk):
                conn.execute(insert(Patient), part)
            patient_ids = list(conn.scalars(select(Patient.id)))

            states = [s for s, _ in STATES]
            weights = [w for _, w in STATES]
            requests = []
            order_no = 0
            per_order = 0
            for n in range(1, n_requests + 1):
                if per_order == 0:  # one to three tests share an order number
                    order_no += 1
                    per_order = rnd.choice((1, 1, 1, 2, 3))
                    patient_id = rnd.choice(patient_ids)
                    state = rnd.choices(states, weights)[0]
                    urgent = rnd.random() < URGENT_SHARE
                    physician_id = rnd.choice(physician_ids) if rnd.random() < 0.9 else None
                per_order -= 1
                created = now - timedelta(minutes=(n_requests - n) * 5)
                requests.append({
                    "order_number": f"ORD{order_no:06d}", "patient_id": patient_id,
                    "test_id": rnd.choice(test_ids), "requesting_physician_id": physician_id,
                    "urgent": urgent, "clinical_context": "Bench request", "comment": "",
                    "scheduled_at": created + timedelta(days=1), "state": state,
                    "accession_number": f"GH{n:08d}", "study_instance_uid": f"2.25.{uuid.uuid4().int}",
                    "cancel_reason": "Bench" if state == "cancelled" else "",
                    "created_at": created, "created_by_id": physician_id, "updated_at": created,
                })
            for part in _chunks(requests, chunk):
                conn.execute(insert(ImagingRequest), part)
            conn.execute(insert(Counter), [{"name": "accession", "value": n_requests},
                                           {"name": "order", "value": order_no}])
        seconds = time.perf_counter() - started
        counts = {s: sum(1 for r in requests if r["state"] == s) for s in states}
        urgent = sum(1 for r in requests if r["urgent"])
        db.engine.dispose()
    return {"seconds": seconds, "patients": n_patients, "requests": n_requests, "by_state": counts,
            "urgent": urgent, "orders": order_no}


# --------------------------------------------------------------------------- measure


@dataclass
class Probe:
    """Counts SQL statements (and the time spent executing them) per request."""

    statements: list[tuple[str, object]] = field(default_factory=list)
    sql_seconds: float = 0.0
    _t0: float = 0.0

    def attach(self, engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.statements = []
        self.sql_seconds = 0.0

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((statement, parameters))
        self._t0 = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.sql_seconds += time.perf_counter() - self._t0


def signed_in_client(app):
    client = app.test_client()
    r = client.post("/login", data={"username": USERNAME, "password": PASSWORD})
    if r.status_code != 302:
        sys.exit(f"bench: could not sign in ({r.status_code})")
    return client


def cases(n_requests: int) -> list[tuple[str, str]]:
    deep = 2000
    mid_accession = f"GH{max(1, n_requests // 2):08d}"
    return [
        ("requested p1 (default tab)", "/requests"),
        ("draft p1", "/requests?state=draft"),
        ("done p1", "/requests?state=done"),
        ("cancelled p1", "/requests?state=cancelled"),
        ("all p1", "/requests?state=all"),
        (f"all p{deep}", f"/requests?state=all&page={deep}"),
        (f"done p{deep}", f"/requests?state=done&page={deep}"),
        ("all, search accession", f"/requests?state=all&q={mid_accession}"),
        ("all, search family name", f"/requests?state=all&q={SEARCH_NAME}"),
        ("requested, search family name", f"/requests?state=requested&q={SEARCH_NAME}"),
    ]


def measure(apps: dict, probes: dict, clients: dict, url: str, reps: int, warmup: int) -> dict:
    times = {k: [] for k in apps}
    cpu = {k: [] for k in apps}
    sql = {k: [] for k in apps}
    nstmt = {k: set() for k in apps}
    rows = {}
    for i in range(warmup + reps):
        for key in apps:  # the databases take turns, so drift hits all alike
            probes[key].reset()
            c0, t0 = time.process_time(), time.perf_counter()
            r = clients[key].get(url)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r.status_code != 200:
                sys.exit(f"bench: {url} answered {r.status_code} on the {key} database")
            if i >= warmup:
                times[key].append(dt)
                cpu[key].append(dc)
                sql[key].append(probes[key].sql_seconds)
                nstmt[key].add(len(probes[key].statements))
            rows[key] = r.get_data(as_text=True).count('<tr class="')
    out = {}
    for key in apps:
        ts = sorted(times[key])
        out[key] = {
            "median_ms": statistics.median(ts) * 1000,
            "p90_ms": ts[math.ceil(0.9 * len(ts)) - 1] * 1000,  # nearest rank
            "cpu_median_ms": statistics.median(cpu[key]) * 1000,
            "sql_median_ms": statistics.median(sql[key]) * 1000,
            "statements": sorted(nstmt[key]),
            "rows": rows[key],
        }
    return out


def query_plans(app, probe: Probe, client, url: str) -> list[dict]:
    """EXPLAIN QUERY PLAN of the request-list statements one page ran."""
    probe.reset()
    client.get(url)
    seen = [(s, p) for s, p in probe.statements if "imaging_requests" in s]
    db_path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    con = sqlite3.connect(db_path)
    plans = []
    try:
        for statement, params in seen:
            rows = con.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            lines = _plan_lines(rows)
            kind = "count" if statement.lstrip().upper().startswith("SELECT COUNT") else "list"
            plans.append({
                "kind": kind,
                "sql": " ".join(statement.split()),
                "params": list(params) if isinstance(params, (list, tuple)) else params,
                "plan": lines,
                "warnings": _warnings(lines, kind, statement, params),
            })
    finally:
        con.close()
    return plans


def _plan_lines(rows) -> list[str]:
    depth = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


BIG_TABLES = ("imaging_requests", "patients")  # the ones that grow with the clinic


def _warnings(lines: list[str], kind: str, statement: str, params) -> list[str]:
    """Plain-words notes on the plan lines that cost time in proportion to a
    big table; small catalogue tables are left alone."""
    out = []
    offset = params[-1] if kind == "list" and isinstance(params, (list, tuple)) and params else 0
    searching = " LIKE " in statement
    for line in lines:
        d = line.strip()
        table = d.split()[1] if d.startswith(("SCAN", "SEARCH")) else ""
        if table not in BIG_TABLES and "TEMP B-TREE" not in d:
            continue
        if d.startswith("SCAN") and "INDEX" not in d:
            out.append(f"full table scan of {table} on every page ({d})")
        elif d.startswith("SCAN") and kind == "count":
            out.append(f"count reads every entry of an index of {table} ({d})")
        elif d.startswith("SCAN") and offset:
            out.append(f"ordered index walk: steps over {offset:,} rows (joins included) before the page")
        elif d.startswith("SEARCH") and offset and "(state=?)" in d:
            out.append(f"index range walk: steps over {offset:,} rows (joins included) before the page")
        elif d.startswith("SEARCH") and kind == "count" and not searching and "(state=?)" in d:
            out.append(f"count reads every entry of the state range ({d})")
        elif d.startswith("SEARCH") and searching and "(state=?)" in d:
            out.append("search tested row by row over the whole state range (the OR of the search "
                       "is not used as an index lookup)")
        if "TEMP B-TREE" in d:
            out.append(f"sorts every matching row ({d})")
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--small", type=int, default=1_000,
                    help="requests in a third, small database (0: skip); it has full pages, so "
                         "full/small is the cost of the table size alone, without the rendering")
    ap.add_argument("--reps", type=int, default=30, help="timed requests per page and database")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary instance folders")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="ghimaging-bench-"))
    try:
        keys = ["empty", "small", "full"] if args.small else ["empty", "full"]
        apps = {k: make_app(workdir / k) for k in keys}
        for app in apps.values():
            init_schema(app)
        if args.small:
            small = populate(apps["small"], args.small, max(1, args.small // 5), args.seed)
            print(f"Small database: {small['requests']:,} requests for {small['patients']:,} patients",
                  flush=True)
        print(f"Building {args.requests:,} requests for {args.patients:,} patients ...", flush=True)
        built = populate(apps["full"], args.requests, args.patients, args.seed)
        print(f"  built in {built['seconds']:.1f} s (bulk inserts, one transaction); by state "
              f"{built['by_state']}, {built['urgent']:,} urgent, {built['orders']:,} orders", flush=True)

        probes, clients = {}, {}
        for key, app in apps.items():
            with app.app_context():
                probes[key] = Probe()
                probes[key].attach(db.engine)
            clients[key] = signed_in_client(app)

        results = []
        print(f"Timing {args.reps} requests per page and database (+{args.warmup} warm-up) ...", flush=True)
        for label, url in cases(args.requests):
            m = measure(apps, probes, clients, url, args.reps, args.warmup)
            m["label"], m["url"] = label, url
            m["ratio"] = m["full"]["median_ms"] / m["empty"]["median_ms"]
            results.append(m)

        plans = {}
        with apps["full"].app_context():
            for label, url in cases(args.requests):
                plans[label] = query_plans(apps["full"], probes["full"], clients["full"], url)
        first = cases(args.requests)[0]
        probes["full"].reset()
        clients["full"].get(first[1])
        statements = [" ".join(s.split()) for s, _ in probes["full"].statements]

        report = render(results, plans, built, args, (first[0], statements))
        print(report)
        OUT_DIR.mkdir(exist_ok=True)
        (OUT_DIR / "request_list.txt").write_text(report + "\n")
        (OUT_DIR / "request_list.json").write_text(json.dumps({
            "date": datetime.now().isoformat(timespec="seconds"),
            "machine": machine(), "data": built, "reps": args.reps,
            "results": results, "plans": plans,
        }, indent=2, default=str))
        print(f"\nWritten: {OUT_DIR / 'request_list.txt'} and request_list.json")
        return 0
    finally:
        if args.keep:
            print(f"Instance folders kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPU, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


def _size(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def render(results: list[dict], plans: dict, built: dict, args, statements) -> str:
    out = []
    out.append("")
    out.append(f"Request list page: {built['requests']:,} requests / {built['patients']:,} patients "
               f"vs an empty database; median of {args.reps} requests each "
               f"({datetime.now():%Y-%m-%d}, {machine()}, load average {_load()})")
    small = "small" in results[0]
    big, little = _size(built["requests"]), _size(args.small)
    head = f"{'page':30} {'empty ms':>9}"
    if small:
        head += f" {little + ' ms':>7}"
    head += f" {big + ' ms':>8} {'p90':>6} {'cpu':>6} {'/empty':>7}"
    if small:
        head += f" {'/' + little:>5}"
    head += f" {'sql ms':>7} {'statements':>10} {'rows':>5}"
    out.append(head)
    out.append("-" * len(head))
    keys = ["empty", "small", "full"] if small else ["empty", "full"]
    for r in results:
        e, f = r["empty"], r["full"]
        stm = "/".join(",".join(map(str, r[k]["statements"])) for k in keys)
        line = f"{r['label']:30} {e['median_ms']:9.1f}"
        if small:
            line += f" {r['small']['median_ms']:7.1f}"
        line += f" {f['median_ms']:8.1f} {f['p90_ms']:6.1f} {f['cpu_median_ms']:6.1f} {r['ratio']:7.1f}"
        if small:
            line += f" {f['median_ms'] / r['small']['median_ms']:5.1f}"
        line += f" {f['sql_median_ms']:7.1f} {stm:>10} {f['rows']:5d}"
        if f["median_ms"] > TARGET_MS:
            line += "  > target"
        out.append(line)
    out.append("")
    out.append("ms: median server time per page (Flask test client, perf_counter around client.get);")
    out.append(f"p90, cpu: 90th percentile and median CPU time (process_time) of the {big} page;")
    out.append(f"/empty, /{little}: ratio of the {big} median to the empty / small database's median;")
    out.append(f"sql ms: median time inside cursor.execute per page on the {big} database;")
    out.append("statements: SQL statements per page on each database (" + "/".join(keys) + ");")
    out.append(f"rows: table rows on the {big} page; target: {TARGET_MS:.0f} ms median.")
    out.append("")
    out.append(f"Statements of one '{statements[0]}' page on the full database:")
    for sql in statements[1]:
        out.append(f"  {sql[:110]}{' ...' if len(sql) > 110 else ''}")
    out.append("")
    out.append("EXPLAIN QUERY PLAN on the full database (statements that touch imaging_requests)")
    for label, items in plans.items():
        out.append(f"\n== {label}")
        for p in items:
            out.append(f"  [{p['kind']}] params={p['params']}")
            out.extend("    " + line for line in p["plan"])
            for w in dict.fromkeys(p["warnings"]):
                out.append(f"    !! {w}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
