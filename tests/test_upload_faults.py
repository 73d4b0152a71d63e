"""Uploads that go wrong, against a real Orthanc 1.10.1: damaged archives
and members, gzip bombs, more files than allowed, many parts under a low
open-file limit (the app served by gunicorn in a subprocess), and an Orthanc
that accepts connections but never answers (a silent TCP port: the one fake
here, a fault a real Orthanc cannot show on demand).

Whatever happens, the answer is a report, never a 500, and the files stored
before the fault are reported stored."""

from __future__ import annotations

import gzip
import io
import random
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from ghimaging.extensions import db
from ghimaging.uploads import archive
from tests.support import dicomgen
from tests.support.loadtools import Sampler, ServedApp, open_fds
from tests.support.orthanc import OrthancServer as RealOrthanc
from tests.support.orthanc import SilentServer, TricklingServer
from tests.test_upload import dcm, instances, outcomes, send, tar_of, zip_of


@pytest.fixture
def app_config(request):
    """Settings per test, through ``@pytest.mark.parametrize("app_config", [...], indirect=True)``."""
    return getattr(request, "param", {})


@pytest.fixture
def tech(make_user, login, orthanc_row):
    make_user("tech", "technologist")
    return login("tech")


def corrupt_gzip(seed: int = 9) -> bytes:
    """The header of a gzip stream (magic, deflate, no flags) and then noise,
    as a damaged download looks. Checked to make zlib itself fail."""
    noise = random.Random(seed).randbytes(4000)
    data = b"\x1f\x8b\x08\x00" + noise
    with pytest.raises(zlib.error):
        gzip.decompress(data)
    return data


def zip_with_corrupt_deflate(members: dict[str, bytes], damaged: str) -> bytes:
    """A ZIP whose member ``damaged`` has its deflate data overwritten with
    0xFF bytes: a block of the reserved type 3, so zlib fails ("invalid block
    type") rather than the CRC check at the end."""
    data = bytearray(zip_of(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo(damaged)
    # The local header: 30 bytes, then the name and the extra field.
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start:start + info.compress_size] = b"\xff" * info.compress_size
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf, pytest.raises(zlib.error):
        zf.read(damaged)
    return bytes(data)


# -- damaged archives and members ------------------------------------------------

def test_a_corrupt_gzip_is_a_damaged_archive_and_the_file_before_it_is_reported_stored(tech, orthanc):
    r = send(tech, [("good.dcm", dcm()), ("image.dcm.gz", corrupt_gzip()), ("after.dcm", dcm("UP-2"))])
    got = outcomes(r)
    assert got["good.dcm"] == ("stored", "")
    status, detail = got["image.dcm.gz"]
    assert status == "rejected" and detail.startswith("damaged archive: its gzip data is corrupt"), detail
    assert detail.endswith("nothing of it was sent.")
    assert got["after.dcm"] == ("stored", "")  # a damaged file does not stop the upload
    assert r.get_json()["counts"] == {"stored": 2, "already": 0, "rejected": 1, "failed": 0}
    assert len(instances(orthanc)) == 2


def test_a_corrupt_gzip_in_the_form_without_script_gets_the_table(tech, orthanc):
    r = send(tech, [("good.dcm", dcm()), ("bad.gz", corrupt_gzip(seed=3))], path="/upload/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "1 stored, 0 already stored, 1 rejected, 0 failed" in html
    assert '<tr class="outcome-rejected"><td>bad.gz</td>' in html and "damaged archive" in html


def test_a_zip_member_with_corrupt_deflate_data_is_a_damaged_file_and_the_others_are_stored(tech, orthanc):
    archive_bytes = zip_with_corrupt_deflate({"a.dcm": dcm(instance_number=1), "b.dcm": dcm(instance_number=2),
                                              "c.dcm": dcm(instance_number=3)}, damaged="b.dcm")
    r = send(tech, [("first.dcm", dcm("UP-0")), ("cd.zip", archive_bytes)])
    got = outcomes(r)
    assert got["first.dcm"] == ("stored", "")
    assert got["cd.zip/a.dcm"] == ("stored", "")
    status, detail = got["cd.zip/b.dcm"]
    assert status == "rejected" and detail.startswith("damaged file: its compressed data in the ZIP is corrupt")
    assert "invalid block type" in detail
    assert got["cd.zip/c.dcm"] == ("stored", "")
    assert len(instances(orthanc)) == 3


def test_a_gzip_inside_a_zip_that_is_damaged_is_named_by_its_path(tech, orthanc):
    r = send(tech, [("cd.zip", zip_of({"ok.dcm": dcm(), "IMG.dcm.gz": corrupt_gzip()}, zipfile.ZIP_STORED))])
    got = outcomes(r)
    assert got["cd.zip/ok.dcm"] == ("stored", "")
    assert got["cd.zip/IMG.dcm.gz"][1].startswith("damaged archive:")


def test_a_tar_cut_inside_a_member_is_damaged_and_the_members_before_it_are_stored(tech, orthanc):
    whole = tar_of({"1.dcm": dcm(instance_number=1), "2.dcm": dcm(instance_number=2, rows=64, cols=64)})
    cut = whole[:512 + 4096 + 512 + 2000]  # into the second member's data (the first is < 4 KB)
    assert len(dcm(instance_number=1)) < 4096
    got = outcomes(send(tech, [("series.tar", cut)]))
    assert got["series.tar/1.dcm"] == ("stored", "")
    status, detail = got["series.tar/2.dcm"]
    assert status == "rejected" and detail.startswith("damaged file: the tar ends inside it"), detail
    assert len(instances(orthanc)) == 1


def test_a_fault_of_ours_while_reading_a_file_is_a_line_not_a_500(tech, orthanc, monkeypatch):
    """The last line of defence: whatever a reader raises, the file stored
    before it is reported. (The fault is injected: no real file makes our
    readers raise anything but damage once the cases above are handled.)"""
    real = archive.walk

    def walk(f, name, *args, **kw):
        if name == "trap.dcm":
            raise RuntimeError("a bug")
        return real(f, name, *args, **kw)

    monkeypatch.setattr(archive, "walk", walk)
    r = send(tech, [("good.dcm", dcm()), ("trap.dcm", dcm("UP-9"))])
    got = outcomes(r)
    assert got["good.dcm"] == ("stored", "")
    assert got["trap.dcm"] == ("failed", "could not be read: an error on this server (logged)")
    assert "stopped by an error on this server" in r.get_json()["aborted"]
    assert len(instances(orthanc)) == 1


# -- gzip bombs: the ZIP rule, checked as the stream expands -----------------------

def zeros_gz(path: Path, size: int) -> Path:
    """A gzip of a DICOM preamble and ``size`` zero bytes, written in chunks."""
    chunk = bytes(1024**2)
    with gzip.GzipFile(path, "wb", compresslevel=9) as gz:
        gz.write(bytes(128) + b"DICM")
        left = size
        while left > 0:
            gz.write(chunk[:left])
            left -= len(chunk)
    return path


def written_bytes() -> int:
    """Bytes this process has written so far (every write and pwrite)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


def test_a_gzip_bomb_is_stopped_early_with_the_zip_rule(tech, orthanc, tmp_path):
    """256 MB of zeros in a 250 KB gzip. Without the rule the whole of it
    went to a temporary file (the 1 GB member bound was the only one); with
    it, decompressing stops a few MB past 10 MB, the ZIP rule's threshold."""
    bomb = zeros_gz(tmp_path / "bomb.dcm.gz", 256 * 1024**2).read_bytes()
    assert len(bomb) < 300 * 1024
    before = written_bytes()
    r = send(tech, [("good.dcm", dcm()), ("bomb.dcm.gz", bomb)])
    written = written_bytes() - before
    body = r.get_json()
    got = outcomes(r)
    assert got["good.dcm"] == ("stored", "")
    status, detail = got["bomb.dcm.gz"]
    assert status == "failed" and "stopped: bomb.dcm.gz expands" in detail and "(a zip bomb?)" in detail, detail
    assert body["aborted"].startswith("The upload was stopped: bomb.dcm.gz expands")
    assert written < 40 * 1024**2, f"{written / 1024**2:.0f} MB written for a bomb stopped at about 11 MB"
    assert len(instances(orthanc)) == 1


def test_five_gzip_bombs_stop_at_the_first(tech, orthanc, tmp_path):
    bomb = zeros_gz(tmp_path / "b.gz", 64 * 1024**2).read_bytes()
    before = written_bytes()
    r = send(tech, [(f"bomb{i}.dcm.gz", bomb) for i in range(5)])
    written = written_bytes() - before
    got = outcomes(r)
    assert list(got) == ["bomb0.dcm.gz"] and "(a zip bomb?)" in got["bomb0.dcm.gz"][1]
    assert written < 40 * 1024**2


def blank(side: int) -> bytes:
    """A real DICOM image of ``side`` x ``side`` 16-bit pixels, all zero (a
    blank frame: it compresses more than 1,000 times)."""
    ds = dicomgen.make_instance("UP-B", "BLANK^IMAGE", rows=side, cols=side)
    ds.PixelData = bytes(side * side * 2)
    return dicomgen.to_bytes(ds)


@pytest.mark.parametrize("form", ["zip", "gzip"])
def test_zip_members_and_gzip_streams_share_one_rule(tech, orthanc, form):
    """A blank 12.5 MB image is refused the same way in either wrapper; a
    blank 8 MB one (under the 10 MB a member may expand freely) is stored."""
    wrap = (lambda b: zip_of({"x.dcm": b})) if form == "zip" else gzip.compress
    name = "x.zip" if form == "zip" else "x.dcm.gz"
    shown = "x.zip/x.dcm" if form == "zip" else "x.dcm"
    stopped = "x.zip/x.dcm" if form == "zip" else "x.dcm.gz"  # the member, or the stream named as sent
    small, big = wrap(blank(2048)), wrap(blank(2560))
    assert len(blank(2048)) > 200 * len(small) and len(blank(2560)) > 200 * len(big)
    got = outcomes(send(tech, [(name, small)]))
    assert got == {shown: ("stored", "")}
    r = send(tech, [(name, big)])
    detail = outcomes(r)[name][1]
    assert detail.startswith(f"stopped: {stopped} expands ") and detail.endswith("times (a zip bomb?)"), detail
    assert len(instances(orthanc)) == 1


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILE_BYTES": 8 * 1024**2}], indirect=True)
def test_a_gzip_past_the_member_size_bound_stops_at_the_bound(tech, orthanc):
    """Noise does not compress: the ratio rule cannot apply, the size bound does."""
    noise = random.Random(1).randbytes(9 * 1024**2)
    body = gzip.compress(bytes(128) + b"DICM" + noise, compresslevel=1)
    before = written_bytes()
    r = send(tech, [("big.dcm.gz", body)])
    written = written_bytes() - before
    detail = outcomes(r)["big.dcm.gz"][1]
    assert detail == "stopped: a file expands to more than 8 MB", detail
    # The body is written twice (the test client spools it, the app's spool
    # holds it); the stream stopped at 8 MB.
    assert written < 2 * len(body) + 9 * 1024**2


# -- UPLOAD_MAX_FILES, exactly ----------------------------------------------------

@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILES": 50}], indirect=True)
def test_the_file_limit_is_exact_50_go_51_are_refused_before_anything_is_sent(tech, orthanc):
    files = [(f"cd/IM{i}", dcm(instance_number=i)) for i in range(1, 52)]
    r = send(tech, files)
    assert r.status_code == 413, r.get_data(as_text=True)[:300]
    assert r.get_json() == {"error": "too_large", "message": "Too many files in one upload (51); "
                                                             "the limit is 50 files. Upload in parts."}
    assert instances(orthanc) == []
    html = send(tech, files, path="/upload/")
    assert html.status_code == 413 and "the limit is 50 files" in html.get_data(as_text=True)
    r = send(tech, files[:50])
    body = r.get_json()
    assert body["counts"] == {"stored": 50, "already": 0, "rejected": 0, "failed": 0} and body["aborted"] == ""
    assert len(instances(orthanc)) == 50


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILES": 5}], indirect=True)
def test_archive_members_still_count_against_the_limit_as_they_are_opened(tech, orthanc):
    """A ZIP counts as one file and each member as one more (as before): 2
    files and a ZIP of 2 make 5 and go; a ZIP of 3 makes 6 and stops."""
    two = zip_of({"1.dcm": dcm(instance_number=1), "2.dcm": dcm(instance_number=2)})
    r = send(tech, [("a.dcm", dcm(instance_number=3)), ("b.dcm", dcm(instance_number=4)), ("two.zip", two)])
    assert r.get_json()["counts"]["stored"] == 4 and r.get_json()["aborted"] == ""
    three = zip_of({f"{i}.dcm": dcm(instance_number=i) for i in (5, 6, 7)})
    r = send(tech, [("a.dcm", dcm(instance_number=3)), ("b.dcm", dcm(instance_number=4)), ("three.zip", three)])
    assert "more than 5 files" in r.get_json()["aborted"]


def test_the_default_limit_is_20000_files_exactly(app, tech, orthanc):
    """Not refused by the form parser, not by open files: 20,000 parts are
    read (and, being text, rejected one by one); 20,001 are refused, and so
    are 20,200 (before: "Too many open files", a 500, under a 20,000 limit)."""
    assert app.config["UPLOAD_MAX_FILES"] == 20_000
    page = tech.get("/upload/").get_data(as_text=True)
    assert 'data-max-files="20000"' in page
    files = [(f"junk/{i:05d}.txt", b"x") for i in range(20_001)]
    r = send(tech, files)
    assert r.status_code == 413 and r.get_json()["message"] == (
        "Too many files in one upload (20001); the limit is 20000 files. Upload in parts.")
    r = send(tech, files[:20_000])
    assert r.status_code == 200 and r.get_json()["counts"]["rejected"] == 20_000
    # Past the form parser's own bound (the limit + 100 parts) it refuses, as clearly.
    r = send(tech, files + [(f"more/{i}.txt", b"x") for i in range(199)])
    assert r.status_code == 413 and r.get_json()["message"] == (
        "Too many files in one upload; the limit is 20000 files. Upload in parts.")


def test_the_default_settings(app):
    """What a clinic gets without a config: the file limit of the README;
    a silent Orthanc ends a small file's wait within a minute (well inside
    the 120 s after which a sync gunicorn worker would be killed), a 1 GB
    file gets minutes; and a 2 GB upload to a Pi's Orthanc can finish."""
    from ghimaging.uploads import service

    assert app.config["UPLOAD_MAX_FILES"] == 20_000
    d = service.Deadlines.from_config()
    (connect, idle), total = d.for_file(1024**2)
    assert connect + idle < 60 and connect + total < 60
    (connect, idle), total = d.for_file(1024**3)
    assert idle > 120 and total > 1000
    assert d.total >= 300


# -- an Orthanc that accepts connections and never answers -------------------------

@pytest.fixture
def silent(app, orthanc_row):
    """The Orthanc server row pointed at a port that accepts and never answers."""
    with SilentServer() as port:
        orthanc_row.url = port.url
        db.session.commit()
        port.server_id = orthanc_row.id
        yield port


def upload_in_thread(tech, silent, files, within: float):
    """Send, and give the answer ``within`` seconds; a call that would hang is
    left to the silent port's close (which ends it) instead of hanging the test."""
    box: dict = {}

    def run():
        started = time.monotonic()
        box["response"] = send(tech, files, server_id=silent.server_id)
        box["seconds"] = time.monotonic() - started

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(within)
    assert not t.is_alive(), f"no answer within {within} s"
    return box["response"], box["seconds"]


@pytest.mark.parametrize("app_config", [{"UPLOAD_ORTHANC_TIMEOUT": 2}], indirect=True)
def test_a_silent_orthanc_fails_the_upload_within_its_deadline(tech, silent):
    """2 s per file: every file of the 10 gets its line within 30 s (generous
    on a busy machine; before the deadline existed the same upload waited
    300 s per file, and gunicorn killed the worker at 120 s)."""
    files = [(f"IM{i}", dcm(instance_number=i)) for i in range(10)]
    r, seconds = upload_in_thread(tech, silent, files, within=30)
    body = r.get_json()
    assert r.status_code == 200, body
    assert silent.accepted >= 1
    first = body["outcomes"][0]
    assert first == {"name": "IM0", "status": "failed", "detail": "Orthanc did not answer within 2 s", "study": ""}
    assert body["aborted"].startswith("Orthanc stopped answering: Orthanc did not answer within 2 s. "
                                      "Nothing after it was sent")
    assert {o["status"] for o in body["outcomes"]} == {"failed"}
    details = {o["detail"] for o in body["outcomes"]}
    assert details <= {"Orthanc did not answer within 2 s", "not sent: Orthanc stopped answering"}, details
    # Once Orthanc failed to answer, no further file was tried: at most the
    # files already on their way (one per connection) waited.
    assert sum(o["detail"].startswith("Orthanc did not answer") for o in body["outcomes"]) <= 3
    print(f"\nsilent Orthanc: answered in {seconds:.1f} s")


def test_a_silent_orthanc_with_the_default_deadline_answers_within_a_minute(tech, silent):
    """The default (30 s), well inside the 120 s after which a sync gunicorn
    worker would be killed, with room to spare on a busy machine."""
    r, seconds = upload_in_thread(tech, silent, [("a.dcm", dcm()), ("b.dcm", dcm("UP-2"))], within=100)
    body = r.get_json()
    assert body["outcomes"][0]["detail"] == "Orthanc did not answer within 30 s"
    assert seconds < 100
    print(f"\nsilent Orthanc, default deadline: answered in {seconds:.1f} s")


@pytest.mark.parametrize("part", ["headers", "body"])
@pytest.mark.parametrize("app_config", [{"UPLOAD_ORTHANC_TIMEOUT": 2}], indirect=True)
def test_an_orthanc_trickling_its_answer_is_stopped_by_the_files_deadline(tech, orthanc_row, part):
    """A byte every 0.5 s never lets the 2 s read timeout strike; the whole
    call's deadline (2 s and a second a MB) does. Bounded at 30 s against a
    wait that would otherwise never end."""
    with TricklingServer(interval=0.5, part=part) as port:
        orthanc_row.url = port.url
        db.session.commit()
        port.server_id = orthanc_row.id
        r, seconds = upload_in_thread(tech, port, [("a.dcm", dcm()), ("b.dcm", dcm("UP-2"))], within=30)
    body = r.get_json()
    assert body["outcomes"][0] == {"name": "a.dcm", "status": "failed", "detail": "Orthanc did not answer within 2 s",
                                   "study": ""}
    assert body["aborted"].startswith("Orthanc stopped answering")
    print(f"\ntrickling Orthanc ({part}): answered in {seconds:.1f} s")


class SlowOrthanc:
    """An HTTP port that stores nothing and answers every ``POST /instances``
    with Orthanc's "Success" after ``delay`` seconds: an Orthanc on a slow
    disk, which a real one cannot be made into on demand."""

    def __init__(self, delay: float):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.posts = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts += 1
                time.sleep(delay)
                body = b'{"Status": "Success", "ParentStudy": "", "ID": "x", "Path": "/instances/x"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("app_config", [{"UPLOAD_DEADLINE": 2}], indirect=True)
def test_an_upload_to_a_slow_orthanc_stops_at_its_total_deadline(tech, app, orthanc_row):
    """Each file answered after 1 s (under the per-file deadline), 60 files
    over 3 connections: 20 s in all. With a 2 s deadline for the upload the
    files after it are not sent, and the answer says so."""
    slow = SlowOrthanc(delay=1.0)
    try:
        orthanc_row.url = slow.url
        db.session.commit()
        started = time.monotonic()
        r = send(tech, [(f"IM{i:02d}", dcm(instance_number=i)) for i in range(60)])
        seconds = time.monotonic() - started
    finally:
        slow.close()
    body = r.get_json()
    assert r.status_code == 200, body
    statuses = [o["status"] for o in body["outcomes"]]
    stored = statuses.count("stored")
    assert 3 <= stored < 20 and statuses[:stored] == ["stored"] * stored, statuses
    assert all(o == {"name": o["name"], "status": "failed", "detail": "not sent: the upload passed its 2 s deadline",
                     "study": ""} for o in body["outcomes"][stored:]), body["outcomes"][stored:]
    assert body["aborted"].startswith("The upload was stopped after 2 s: Orthanc is storing slowly.")
    assert slow.posts == stored
    # Sent before the deadline, answered within a second of it: about 3 s,
    # bounded generously against the 20 s all 60 files would take.
    assert seconds < 15, seconds


# -- many parts under a low open-file limit (served app) ---------------------------

@pytest.fixture(scope="module")
def served_low_nofile(tmp_path_factory):
    """The app under gunicorn with ``ulimit -n 1024``, beside a real Orthanc."""
    base = tmp_path_factory.mktemp("upload-fds")
    orthanc = RealOrthanc(base / "orthanc")
    orthanc.start()
    served = ServedApp(base, orthanc, nofile=1024, workers=1)
    try:
        served.setup().start()
        yield served
    finally:
        served.stop()
        orthanc.cleanup()


def test_1100_files_under_ulimit_1024_are_stored_with_a_few_descriptors(served_low_nofile, tmp_path):
    """Before: one open temporary file per part, and "Too many open files"
    (a 500) past about 1,000 parts. Now the parts share one spool file: the
    worker's open descriptors stay within a few dozen of idle."""
    served = served_low_nofile
    (worker,) = served.workers_pids()
    limits = Path(f"/proc/{worker}/limits").read_text()
    assert any(line.startswith("Max open files") and line.split()[3:5] == ["1024", "1024"]
               for line in limits.splitlines()), limits
    study = dicomgen.generate_uid()
    series = dicomgen.generate_uid()
    paths = []
    for i in range(1100):
        path = tmp_path / "cd" / f"IM{i:04d}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(dicomgen.to_bytes(dicomgen.make_instance(
            "FD-1", "MANY^FILES", study, series, instance_number=i + 1, rows=8, cols=8)))
        paths.append(path)
    session = served.signed_in()
    idle = open_fds(worker)
    with Sampler(served.pid, every=0.02, measure=open_fds) as fds:
        r = served.upload([(f"cd/{p.name}", p) for p in paths], session=session)
    assert r.status_code == 200, r.text[:500] + served.log_tail()
    body = r.json()
    assert body["counts"] == {"stored": 1100, "already": 0, "rejected": 0, "failed": 0}, body["aborted"]
    peak, after = fds.per_process.get(worker, 0), open_fds(worker)
    print(f"\n1,100 parts: worker descriptors idle {idle}, peak {peak} over {len(fds.samples)} samples, "
          f"after {after}")
    assert len(fds.samples) > 20
    assert peak - idle < 40, f"{peak - idle} more descriptors open while uploading 1,100 files"
    assert after <= idle + 2, f"{after - idle} descriptors left open after the upload"
    assert len(served_low_nofile.orthanc.get("/instances")) == 1100
