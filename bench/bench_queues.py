"""Bench: the start page's queues (imaging/queues.py) with 100,000 requests
against an empty database.

Two SQLite instance folders are built in one temporary directory by the real
migrations and the catalogue seed (what ``ghimaging init`` does), each with
the same users (a technologist, a radiologist, a physician and one person
with all three roles); one is left empty, the other gets 20,000 patients, 10
tests and 100,000 requests ordered over the last year, about 290 a day, by
bulk Core inserts, with what a year leaves behind: older requests mostly done
with a final result and a study linked in a mirrored Orthanc, some never
performed, some cancelled; today's and yesterday's in every state (waiting,
images received, preliminary, final). Each start page is then fetched through
the Flask test client by each signed-in user, the databases taking turns,
and the script prints the median (p90, CPU) server time per page, the ratio
100k/empty (the empty database is the floor measured in the same run), the
SQL statements per page (the same number whatever the rows: no N+1), the
rows each page shows, and ``EXPLAIN QUERY PLAN`` of every statement on
``imaging_requests`` with the steps that grow with a big table flagged.

Run it from the checkout: ``python bench/bench_queues.py`` (a minute or two
on two idle cores). Results are also written to ``bench/out/queues.txt`` and
``queues.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_request_list import (
    GIVEN,
    OUT_DIR,
    TESTS,
    Probe,
    _chunks,
    _load,
    family_name,
    machine,
    make_app,
    query_plans,
)

from ghimaging import MIGRATIONS_DIR
from ghimaging.extensions import db
from ghimaging.models import (
    Counter,
    ImagingRequest,
    ImagingTest,
    ModalityType,
    OrthancServer,
    OrthancStudy,
    Patient,
    Result,
    Role,
    StudyLink,
    User,
)
from ghimaging.models._time import utcnow

PASSWORD = "bench-Passw0rd"
USERS = {"technologist": [Role.TECHNOLOGIST], "radiologist": [Role.RADIOLOGIST],
         "physician": [Role.PHYSICIAN], "all roles": [Role.TECHNOLOGIST, Role.RADIOLOGIST, Role.PHYSICIAN]}
TARGET_MS = 100.0


def username(label: str) -> str:
    return "bench." + label.replace(" ", "-")


def init_schema(app) -> None:
    import logging

    from flask_migrate import upgrade

    from ghimaging.auth.service import create_user
    from ghimaging.catalog.service import seed

    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        seed()
        for label, roles in USERS.items():
            create_user(username(label), PASSWORD, roles, full_name=f"Bench {label.title()}")
        for i in range(1, 8):
            create_user(f"physician{i}", PASSWORD, [Role.PHYSICIAN], full_name=f"Dr Physician {i}")
        for i in range(1, 3):
            create_user(f"radiologist{i}", PASSWORD, [Role.RADIOLOGIST], full_name=f"Dr Radiologist {i}")
        db.session.commit()
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _fate(rnd: random.Random, age_days: float) -> tuple[str, bool, str]:
    """(state, images, result) of a request scheduled ``age_days`` ago
    (negative: later today or tomorrow)."""
    if age_days < 0:  # still to come
        return rnd.choices([("draft", False, ""), ("requested", False, "")], [1, 6])[0]
    if age_days < 1:  # today, started
        return rnd.choices([("requested", False, ""), ("requested", True, ""), ("requested", True, "preliminary"),
                            ("done", True, "final"), ("cancelled", False, "")], [4, 3, 2, 3, 0.3])[0]
    if age_days < 3:
        return rnd.choices([("requested", False, ""), ("requested", True, ""), ("requested", True, "preliminary"),
                            ("done", True, "final"), ("cancelled", False, "")], [1, 1, 1, 8, 0.5])[0]
    return rnd.choices([("done", True, "final"), ("requested", False, ""), ("requested", True, "preliminary"),
                        ("cancelled", False, ""), ("draft", False, "")], [85, 5, 0.5, 5, 2])[0]


def populate(app, n_requests: int, n_patients: int, seed: int, chunk: int = 5000) -> dict:
    """Bulk-insert tests, patients, requests, results and linked studies in one transaction."""
    rnd = random.Random(seed)
    now = utcnow().replace(second=0, microsecond=0)
    with app.app_context():
        modality = dict(db.session.execute(select(ModalityType.code, ModalityType.id)).all())
        users = dict(db.session.execute(select(User.username, User.id)).all())
        physicians = [uid for name, uid in users.items() if "physician" in name or name == username("all roles")]
        radiologists = [uid for name, uid in users.items() if "radiologist" in name or name == username("all roles")]
        db.session.remove()
        started = time.perf_counter()
        with db.engine.begin() as conn:
            conn.execute(insert(ImagingTest), [
                {"code": c, "name": n, "modality_id": modality[m], "ae_title": ae, "worklist_template": "",
                 "active": True} for c, n, m, ae in TESTS])
            test_ids = list(conn.scalars(select(ImagingTest.id)))
            patients = []
            for i in range(1, n_patients + 1):
                p = Patient(puid=f"P{i:07d}", family_name=family_name(rnd.randrange(1000)),
                            given_name=rnd.choice(GIVEN))
                row = {"puid": p.puid, "family_name": p.family_name, "given_name": p.given_name,
                       "birth_date": date(1930, 1, 1) + timedelta(days=rnd.randrange(90 * 365)),
                       "sex": rnd.choice("FMO"), "phone": "", "notes": "", "created_at": now, "updated_at": now}
                if hasattr(p, "refresh_search_key"):
                    p.refresh_search_key()
                    row["search_key"] = p.search_key
                patients.append(row)
            for part in _chunks(patients, chunk):
                conn.execute(insert(Patient), part)
            patient_ids = list(conn.scalars(select(Patient.id)))
            server_id = conn.execute(insert(OrthancServer).values(label="Main", url="http://127.0.0.1:8042")
                                     .returning(OrthancServer.id)).scalar_one()

            span = n_requests * 5  # minutes: one request every 5 minutes, the last ones scheduled tomorrow
            requests, fates = [], []
            for n in range(1, n_requests + 1):
                created = now - timedelta(minutes=span - n * 5) - timedelta(days=1)
                scheduled = created + timedelta(days=1)
                state, images, result = _fate(rnd, (now - scheduled).total_seconds() / 86400)
                physician = rnd.choice(physicians) if rnd.random() < 0.95 else None
                requests.append({
                    "order_number": f"ORD{n:07d}", "patient_id": rnd.choice(patient_ids),
                    "test_id": rnd.choice(test_ids), "requesting_physician_id": physician,
                    "urgent": rnd.random() < 0.08, "clinical_context": "Bench request", "comment": "",
                    "scheduled_at": scheduled if rnd.random() < 0.97 else None, "state": state,
                    "accession_number": f"GH{n:08d}", "study_instance_uid": f"2.25.{uuid.uuid4().int}",
                    "cancel_reason": "Bench" if state == "cancelled" else "", "images_available": images,
                    "created_at": created, "created_by_id": physician, "updated_at": created})
                fates.append((images, result, scheduled))
            for part in _chunks(requests, chunk):
                conn.execute(insert(ImagingRequest), part)
            request_ids = list(conn.scalars(select(ImagingRequest.id).order_by(ImagingRequest.id)))
            studies, results = [], []
            for rid, req, (images, result, scheduled) in zip(request_ids, requests, fates, strict=True):
                if images:
                    studies.append({"server_id": server_id, "study_uid": req["study_instance_uid"],
                                    "orthanc_id": uuid.uuid4().hex, "patient_id": "", "accession_number":
                                    req["accession_number"], "study_date": scheduled.strftime("%Y%m%d"),
                                    "series_count": 1, "instance_count": rnd.randint(1, 40), "stable": True,
                                    "synced_at": scheduled, "_request": rid})
                if result:
                    final = result == "final"
                    results.append({"request_id": rid, "radiologist_id": rnd.choice(radiologists),
                                    "result_date": scheduled.date(), "report": "Bench report.",
                                    "report_style": "with_images", "created_at": scheduled, "updated_at": scheduled,
                                    "finalised_at": min(now, scheduled + timedelta(hours=2)) if final else None})
            for part in _chunks(studies, chunk):
                conn.execute(insert(OrthancStudy), [{k: v for k, v in s.items() if k != "_request"} for s in part])
            study_ids = list(conn.scalars(select(OrthancStudy.id).order_by(OrthancStudy.id)))
            links = [{"study_id": sid, "request_id": s["_request"], "method": "study_uid",
                      "created_at": s["synced_at"]} for sid, s in zip(study_ids, studies, strict=True)]
            for part in _chunks(links, chunk):
                conn.execute(insert(StudyLink), part)
            for part in _chunks(results, chunk):
                conn.execute(insert(Result), part)
            conn.execute(insert(Counter), [{"name": "accession", "value": n_requests},
                                           {"name": "order", "value": n_requests}])
        seconds = time.perf_counter() - started
        db.engine.dispose()
    by_state: dict[str, int] = {}
    for r in requests:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    return {"seconds": seconds, "patients": n_patients, "requests": n_requests, "by_state": by_state,
            "studies": len(studies), "results": len(results),
            "preliminary": sum(1 for r in results if r["finalised_at"] is None)}


def signed_in(app, label: str):
    client = app.test_client()
    r = client.post("/login", data={"username": username(label), "password": PASSWORD})
    if r.status_code != 302:
        sys.exit(f"bench: {label} could not sign in ({r.status_code})")
    return client


def measure(apps: dict, probes: dict, clients: dict, reps: int, warmup: int) -> dict:
    times: dict = {k: [] for k in apps}
    cpu: dict = {k: [] for k in apps}
    sql: dict = {k: [] for k in apps}
    nstmt: dict = {k: set() for k in apps}
    rows = {}
    for i in range(warmup + reps):
        for key in apps:
            probes[key].reset()
            c0, t0 = time.process_time(), time.perf_counter()
            r = clients[key].get("/")
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r.status_code != 200:
                sys.exit(f"bench: / answered {r.status_code} on the {key} database")
            if i >= warmup:
                times[key].append(dt)
                cpu[key].append(dc)
                sql[key].append(probes[key].sql_seconds)
                nstmt[key].add(len(probes[key].statements))
            rows[key] = r.get_data(as_text=True).count("data-request=")
    out = {}
    for key in apps:
        ts = sorted(times[key])
        out[key] = {"median_ms": statistics.median(ts) * 1000, "p90_ms": ts[math.ceil(0.9 * len(ts)) - 1] * 1000,
                    "cpu_median_ms": statistics.median(cpu[key]) * 1000,
                    "sql_median_ms": statistics.median(sql[key]) * 1000,
                    "statements": sorted(nstmt[key]), "rows": rows[key]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--small", type=int, default=1_000,
                    help="requests in a third database: a few days, so today's rows are as many as on the big "
                         "one and 100k/small is the cost of the table size alone, without the rendering")
    ap.add_argument("--reps", type=int, default=30, help="timed requests per page and database")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary instance folders")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="ghimaging-bench-queues-"))
    try:
        apps = {k: make_app(workdir / k) for k in ("empty", "small", "full")}
        for app in apps.values():
            init_schema(app)
        small = populate(apps["small"], args.small, max(1, args.small // 5), args.seed)
        print(f"Small database: {small['requests']:,} requests (the last {small['requests'] * 5 / 1440:.1f} days: "
              f"the same day's work as the big one)", flush=True)
        print(f"Building {args.requests:,} requests for {args.patients:,} patients ...", flush=True)
        built = populate(apps["full"], args.requests, args.patients, args.seed)
        print(f"  built in {built['seconds']:.1f} s; by state {built['by_state']}, {built['studies']:,} linked "
              f"studies, {built['results']:,} results ({built['preliminary']:,} preliminary)", flush=True)
        probes = {}
        for key, app in apps.items():
            with app.app_context():
                probes[key] = Probe()
                probes[key].attach(db.engine)
        results, plans = [], {}
        print(f"Timing {args.reps} requests per page and database (+{args.warmup} warm-up) ...", flush=True)
        for label in USERS:
            clients = {k: signed_in(app, label) for k, app in apps.items()}
            m = measure(apps, probes, clients, args.reps, args.warmup)
            m["label"] = label
            m["ratio"] = m["full"]["median_ms"] / m["empty"]["median_ms"]
            m["ratio_small"] = m["full"]["median_ms"] / m["small"]["median_ms"]
            results.append(m)
            with apps["full"].app_context():
                plans[label] = query_plans(apps["full"], probes["full"], clients["full"], "/")
        report = render(results, plans, built, args)
        print(report)
        OUT_DIR.mkdir(exist_ok=True)
        (OUT_DIR / "queues.txt").write_text(report + "\n")
        (OUT_DIR / "queues.json").write_text(json.dumps({
            "date": datetime.now().isoformat(timespec="seconds"), "machine": machine(), "data": built,
            "reps": args.reps, "results": results, "plans": plans}, indent=2, default=str))
        print(f"\nWritten: {OUT_DIR / 'queues.txt'} and queues.json")
        return 0
    finally:
        if args.keep:
            print(f"Instance folders kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def render(results: list[dict], plans: dict, built: dict, args) -> str:
    out = ["", f"Start page queues: {built['requests']:,} requests / {built['patients']:,} patients vs an empty "
               f"database; median of {args.reps} requests each ({datetime.now():%Y-%m-%d %H:%M}, {machine()}, "
               f"load average {_load()})"]
    head = (f"{'start page of':16} {'empty ms':>9} {'1k ms':>6} {'100k ms':>8} {'p90':>6} {'cpu':>6} {'/empty':>7} "
            f"{'/1k':>5} {'sql ms':>7} {'statements':>10} {'rows':>9}")
    out += [head, "-" * len(head)]
    for r in results:
        e, f = r["empty"], r["full"]
        stm = "/".join(",".join(map(str, r[k]["statements"])) for k in ("empty", "small", "full"))
        rows = f"{r['small']['rows']}/{f['rows']}"
        line = (f"{r['label']:16} {e['median_ms']:9.1f} {r['small']['median_ms']:6.1f} {f['median_ms']:8.1f} "
                f"{f['p90_ms']:6.1f} {f['cpu_median_ms']:6.1f} {r['ratio']:7.1f} {r['ratio_small']:5.1f} "
                f"{f['sql_median_ms']:7.1f} {stm:>10} {rows:>9}")
        if f["median_ms"] > TARGET_MS:
            line += "  > target"
        out.append(line)
    out += ["", "ms: median server time per page (test client); p90, cpu: of the 100k page; /empty, /1k: 100k",
            "median over the empty / small database's (the small one shows as many rows: /1k is the table size",
            "alone); sql ms: time inside cursor.execute on 100k; statements: per page (empty/1k/100k: the same",
            f"number means no N+1); rows: queue rows on the 1k/100k page; target {TARGET_MS:.0f} ms.", "", "EXPLAIN QUERY PLAN on the 100k database (statements on imaging_requests)"]
    for label, items in plans.items():
        out.append(f"\n== start page, {label}")
        for p in items:
            out.append(f"  {p['sql'][:150]}{' ...' if len(p['sql']) > 150 else ''}")
            out.extend("    " + line for line in p["plan"])
            for w in dict.fromkeys(p["warnings"]):
                out.append(f"    !! {w}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
