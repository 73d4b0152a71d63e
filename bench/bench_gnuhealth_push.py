"""Bench: pushing finalised results to a real GNU Health 5.0 through the
outbox, against a floor measured in the same run.

A real trytond with GNU Health (the test suite's ``GnuHealthServer``, from
the cached template with health_imaging and health_orthanc; built first if
missing) is started on a loopback port, and a ghimaging instance (SQLite,
schema by the real migrations) is configured to sync with it. Then:

(a) ours: N requests ordered and pushed (not timed), then N results with
    two key images each (64x48 PNG) finalised, and the outbox drained:
    calls and milliseconds per result, with session auth (one login for the
    whole drain); every lookup that makes a retry safe is included;
(b) the floor: for N other requests created there directly, the fewest calls
    that make the same result by hand with a bare ``xmlrpc.client`` and the
    same session: the wizard (create, execute, delete), the comment (write),
    the two attachments (one create) - no lookups, no local database;
(c) what one call costs with HTTP basic auth (trytond checks the password
    every time) against the same call with the session.

Run from the checkout: ``python bench/bench_gnuhealth_push.py [-n 100]``.
Numbers go to stdout and to ``bench/out/gnuhealth_push.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
import xmlrpc.client
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ghimaging import MIGRATIONS_DIR, create_app  # noqa: E402
from ghimaging.extensions import db  # noqa: E402
from ghimaging.gnuhealth import client as ghc  # noqa: E402
from ghimaging.gnuhealth import worker  # noqa: E402
from ghimaging.gnuhealth.settings import configure  # noqa: E402
from tests.support import gnuhealth as support  # noqa: E402


class Counting:
    """Counts the XML-RPC calls ghimaging's client sends (logins included)."""

    def __init__(self):
        self.calls = 0
        self._orig = ghc.GnuHealthClient._send

    def __enter__(self):
        counter = self

        def send(client, proxy, method, args):
            counter.calls += 1
            return counter._orig(client, proxy, method, args)

        ghc.GnuHealthClient._send = send
        return self

    def __exit__(self, *exc):
        ghc.GnuHealthClient._send = self._orig


def png(i: int):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (i % 256, 40, 90)).save(buf, "PNG")
    buf.seek(0)
    return buf


def make_results(n: int, prefix: str):
    """N submitted requests, pushed, then N finalised results with two key images."""
    from ghimaging.auth.service import create_user
    from ghimaging.catalog.service import modality_by_code, save_test, seed
    from ghimaging.imaging import workflow
    from ghimaging.models import Role
    from ghimaging.patients.service import create_patient

    seed()
    test = save_test(None, code="XR-CHEST", name="Chest X-ray PA", modality=modality_by_code("CR"), ae_title="XR1")
    rad = create_user("rad", "bench-Passw0rd-1", [Role.RADIOLOGIST], full_name="Dr Bench")
    reqs = []
    for i in range(n):
        patient = create_patient({"puid": f"{prefix}{i:05d}", "family_name": f"Bench{i}", "given_name": "Pat",
                                  "birth_date": date(1970, 1, 1 + i % 28), "sex": "F"})
        reqs.append(workflow.create_order(patient, [test], user=rad, submit=True)[0])
    return rad, reqs


def finalise_all(rad, reqs):
    from ghimaging.imaging import workflow

    for i, req in enumerate(reqs):
        result = workflow.create_result(req, rad, radiologist=rad, result_date=date(2026, 3, 5),
                                        report=f"Report {i}: no acute findings.",
                                        new_images=[workflow.NewImage(png(i), "a.png", "Key image 1"),
                                                    workflow.NewImage(png(i + 1), "b.png", "Key image 2")])
        workflow.finalise_result(result, rad)


class Floor:
    """A bare xmlrpc.client with a session: the fewest calls for a result."""

    def __init__(self, url: str, database: str, user: str, password: str):
        self.transport = support._Transport(use_builtin_types=True)
        self.proxy = xmlrpc.client.ServerProxy(f"{url}{database}/", transport=self.transport, allow_none=True,
                                               use_builtin_types=True)
        uid, session = self.proxy.common.db.login(user, {"password": password}, "en")
        self.transport.auth = "Session " + base64.b64encode(f"{user}:{uid}:{session}".encode()).decode()
        self.calls = 0

    def call(self, method: str, *args):
        self.calls += 1
        return getattr(self.proxy, method)(*args)

    def result(self, request_id: int, comment: str, images: list[bytes]) -> None:
        ctx = {"active_model": "gnuhealth.imaging.test.request", "active_ids": [request_id],
               "active_id": request_id}
        sid, _, _ = self.call("wizard.wizard.generate.result.create", {})
        answer = self.call("wizard.wizard.generate.result.execute", sid, {}, "open_", ctx)
        self.call("wizard.wizard.generate.result.delete", sid, ctx)
        domain = answer["actions"][0][0]["pyson_domain"]
        result_id = json.loads(domain)[0][2][0]
        self.call("model.gnuhealth.imaging.test.result.write", [result_id], {"comment": comment}, {})
        self.call("model.ir.attachment.create", [
            {"name": f"f{k}.png", "data": data, "description": f"Key image {k}",
             "resource": f"gnuhealth.imaging.test.result,{result_id}"} for k, data in enumerate(images, 1)], {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="results to push (default 100)")
    args = parser.parse_args()
    n = args.n
    logging.basicConfig(level=logging.WARNING)
    t0 = time.monotonic()
    support.build(progress=lambda m: print(f"[cache] {m}", flush=True))
    work = Path(tempfile.mkdtemp(prefix="bench-gnuhealth-"))
    gh = support.GnuHealthServer(work / "gnuhealth", template="full")
    gh.start()
    print(f"GNU Health ready in {time.monotonic() - t0:.1f} s (trytond start {gh.start_seconds:.1f} s)")
    out: dict = {"n": n, "machine": platform.platform(), "python": platform.python_version()}
    try:
        app = create_app({"INSTANCE_PATH": str(work / "instance"), "TESTING": True,
                          "DATABASE_URL": f"sqlite:///{work / 'ghimaging.sqlite'}",
                          "WORKLIST_DIR": str(work / "worklists"), "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
        with app.app_context():
            from flask_migrate import upgrade

            logging.getLogger("alembic").setLevel(logging.WARNING)
            upgrade(directory=str(MIGRATIONS_DIR))
            configure(url=gh.url, database=gh.database, username=gh.user, password=gh.password)
            db.session.commit()
            rad, reqs = make_results(n, "BENCH")
            t = time.perf_counter()
            with Counting() as c:
                pushed = worker.drain()
            out["requests_ms_per_request"] = (time.perf_counter() - t) * 1000 / n
            out["requests_calls_per_request"] = c.calls / n
            assert pushed.sent >= n and not pushed.errors, pushed.line()
            finalise_all(rad, reqs)
            t = time.perf_counter()
            with Counting() as c:
                drained = worker.drain()
            elapsed = time.perf_counter() - t
            assert not drained.errors, drained.line()
            out["ours_ms_per_result"] = elapsed * 1000 / n
            out["ours_calls_per_result"] = c.calls / n
            out["ours_sent_items"] = drained.sent
            admin = gh.admin()
            made = admin("model.gnuhealth.imaging.test.result.search_count", [])
            files = admin("model.ir.attachment.search_count",
                          [("resource", "like", "gnuhealth.imaging.test.result,%")])
            assert made == n and files == 2 * n, (made, files)

        # (b) the floor, on N requests created there directly
        admin = gh.admin()
        doctor = admin("model.gnuhealth.healthprofessional.search", [], 0, 1, None)[0]
        patient = admin("model.gnuhealth.patient.search", [], 0, 1, None)[0]
        test = admin("model.gnuhealth.imaging.test.search", [], 0, 1, None)[0]
        ids = admin("model.gnuhealth.imaging.test.request.create", [
            {"patient": patient, "requested_test": test, "doctor": doctor, "urgent": False}
            for _ in range(n)])
        admin("model.gnuhealth.imaging.test.request.requested", ids)
        images = [png(1).getvalue(), png(2).getvalue()]
        floor = Floor(gh.url, gh.database, gh.user, gh.password)
        t = time.perf_counter()
        for i, rid in enumerate(ids):
            floor.result(rid, f"Report {i}: no acute findings.", images)
        elapsed = time.perf_counter() - t
        out["floor_ms_per_result"] = elapsed * 1000 / n
        out["floor_calls_per_result"] = floor.calls / n

        # (c) one call with basic auth vs with the session
        basic = xmlrpc.client.ServerProxy(
            gh.url.replace("http://", f"http://{gh.user}:{gh.password}@") + f"{gh.database}/", allow_none=True)
        session_times, basic_times = [], []
        for _ in range(10):
            t = time.perf_counter()
            floor.call("model.gnuhealth.imaging.test.type.search", [], 0, None, None, {})
            session_times.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            basic.model.gnuhealth.imaging.test.type.search([], 0, None, None, {})
            basic_times.append((time.perf_counter() - t) * 1000)
        out["session_call_ms"] = statistics.median(session_times)
        out["basic_auth_call_ms"] = statistics.median(basic_times)
    finally:
        gh.kill()
    out["ratio_ms"] = out["ours_ms_per_result"] / out["floor_ms_per_result"]
    print(f"\nPush of {n} finalised results with two key images each (session auth, one login):")
    print(f"  ours : {out['ours_calls_per_result']:.1f} calls, {out['ours_ms_per_result']:.1f} ms per result")
    print(f"  floor: {out['floor_calls_per_result']:.1f} calls, {out['floor_ms_per_result']:.1f} ms per result "
          "(wizard + comment + one attachment create, no lookups)")
    print(f"  ours / floor: {out['ratio_ms']:.2f}x time, "
          f"{out['ours_calls_per_result'] / out['floor_calls_per_result']:.2f}x calls")
    print(f"  (requests before them: {out['requests_calls_per_request']:.1f} calls, "
          f"{out['requests_ms_per_request']:.1f} ms per request, patient and test created once each)")
    print(f"One call: {out['session_call_ms']:.1f} ms with the session, {out['basic_auth_call_ms']:.1f} ms with "
          "basic auth (median of 10)")
    target = ROOT / "bench" / "out"
    target.mkdir(exist_ok=True)
    (target / "gnuhealth_push.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
