"""DICOM upload in Debian's headless Chromium (Playwright) into a real Orthanc:
a folder through the folder picker, archives and bad files through the file
picker, a drop on the drop zone; the progress bar shows while sending and
every file gets its line in the outcome table. Screenshots land in
test-artifacts/screenshots/upload-*.png."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import OrthancStudy
from tests.support import dicomgen
from tests.support.browser import shoot as browser_shot
from tests.support.factories import PASSWORD

expect = playwright_api.expect

pytestmark = pytest.mark.browser

LABELS = {"stored": "stored", "already": "already stored", "rejected": "rejected", "failed": "failed"}

# Records, every 10 ms, whether the progress box shows, the bar's value and
# whether the outcome table has arrived, so the test can tell that the bar
# was on screen before the answer.
WATCH_PROGRESS = """() => {
  window.__progress = [];
  const box = document.getElementById('progress'), bar = document.getElementById('progress-bar');
  window.__watch = setInterval(() => window.__progress.push({
    shown: !box.hidden && box.offsetHeight > 0, value: bar.value,
    answered: !!document.querySelector('#upload-result table')}), 10);
}"""


def shoot(page, folder: Path, name: str) -> None:
    browser_shot(page, folder, f"upload-{name}")


@pytest.fixture
def page(browser, live, make_user, orthanc_row):
    make_user("tech", "technologist", full_name="Theo Technologist")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(live + "/login")
    pg.fill("#username", "tech")
    pg.fill("#password", PASSWORD)
    pg.get_by_role("button", name="Sign in").click()
    expect(pg.get_by_role("button", name="Sign out")).to_be_visible()
    pg.goto(live + "/upload/")
    expect(pg.locator("h1")).to_have_text("Upload DICOM")
    yield pg
    context.close()
    assert errors == [], errors


def dcm(patient_id: str = "BR-1", name: str = "BROWSER^BEA", **kw) -> bytes:
    kw.setdefault("rows", 32)
    kw.setdefault("cols", 32)
    return dicomgen.to_bytes(dicomgen.make_instance(patient_id, name, **kw))


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def table(page) -> dict[str, tuple[str, str]]:
    """File name -> (badge text, detail) from the outcome table on screen."""
    rows = page.locator("#upload-result table tbody tr")
    out = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        out[cells.nth(0).inner_text()] = (cells.nth(1).inner_text(), cells.nth(2).inner_text())
    return out


def upload_and_wait(page) -> None:
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#progress-bar")).to_be_visible()
    expect(page.locator("#upload-result h2")).to_contain_text("Result:", timeout=60_000)
    page.evaluate("clearInterval(window.__watch)")


def test_a_folder_of_dicom_files_uploads_with_a_visible_progress_bar(page, shots, tmp_path, orthanc):
    folder = tmp_path / "CD" / "PATIENT"
    study = dicomgen.generate_uid()
    for se in (1, 2):
        (folder / f"SE{se}").mkdir(parents=True)
        series = dicomgen.generate_uid()
        for i in range(1, 6):
            (folder / f"SE{se}" / f"IM{i}").write_bytes(
                dcm(study_uid=study, series_uid=series, series_number=se, instance_number=i, rows=256, cols=256,
                    accession="BR-ACC-1", study_description="CT FROM A CD"))
    (folder / "README.TXT").write_text("Burned by CDWriter 2.0")
    shoot(page, shots, "01-page")

    page.set_input_files("#folder", str(folder))
    expect(page.locator("#chosen")).to_contain_text("11 file(s)")
    upload_and_wait(page)

    seen = page.evaluate("window.__progress")
    assert any(s["shown"] and not s["answered"] for s in seen), "the bar never showed before the answer"
    assert page.evaluate("document.getElementById('progress-bar').value") == 100
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#progress-text")).to_have_text("Done.")

    got = table(page)
    expected = {f"PATIENT/SE{se}/IM{i}": ("stored", "") for se in (1, 2) for i in range(1, 6)}
    expected["PATIENT/README.TXT"] = ("rejected", "not a DICOM file")
    assert got == expected
    expect(page.locator("#upload-result h2")).to_have_text(
        "Result: 10 stored, 0 already stored, 1 rejected, 0 failed")
    assert len(orthanc.get("/instances")) == 10
    link = page.locator("#upload-result a", has_text="CT FROM A CD")
    expect(link).to_have_count(1)
    shoot(page, shots, "02-folder-done")
    link.click()
    expect(page.locator("dl.facts")).to_contain_text("BR-ACC-1")
    db.session.expire_all()
    assert page.url.endswith(f"/orthanc/studies/{db.session.scalar(select(OrthancStudy.id))}")


def test_each_kind_of_file_gets_its_outcome_in_the_table(page, shots, tmp_path, orthanc):
    files = {
        "plain.dcm": dcm(instance_number=1),
        "series.zip": zip_of({"IM1.dcm": dcm(instance_number=2), "IM2.dcm": dcm(instance_number=3)}),
        "image.dcm.gz": gzip.compress(dcm(instance_number=4)),
        "letter.dcm": b"Dear colleague,\nplease find the images enclosed.\n" * 10,
        "cut.dcm": dcm(instance_number=5, rows=64, cols=64)[:450],
        "cd.zip": zip_of({"DICOM/A/B/IM9": dcm(instance_number=9), "autorun.inf": b"[autorun]\nopen=viewer.exe",
                          "viewer/readme.txt": b"read me"}),
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    assert files["cut.dcm"][128:132] == b"DICM"
    page.set_input_files("#files", paths)
    expect(page.locator("#chosen")).to_contain_text("6 file(s)")
    upload_and_wait(page)
    shoot(page, shots, "03-mixed-done")

    got = table(page)
    assert got.pop("plain.dcm") == ("stored", "")
    assert got.pop("series.zip/IM1.dcm") == ("stored", "")
    assert got.pop("series.zip/IM2.dcm") == ("stored", "")
    assert got.pop("image.dcm") == ("stored", "")
    assert got.pop("letter.dcm") == ("rejected", "not a DICOM file")
    badge, detail = got.pop("cut.dcm")
    assert badge in ("rejected", "failed") and detail
    assert got.pop("cd.zip/DICOM/A/B/IM9") == ("stored", "")
    assert got.pop("cd.zip/autorun.inf") == ("rejected", "not a DICOM file")
    assert got.pop("cd.zip/viewer/readme.txt") == ("rejected", "not a DICOM file")
    assert got == {}
    expect(page.locator("#upload-result h2")).to_have_text(
        "Result: 5 stored, 0 already stored, 4 rejected, 0 failed")
    assert page.evaluate("document.getElementById('progress-bar').value") == 100
    assert len(orthanc.get("/instances")) == 5

    # The same files again: the DICOM ones are already there.
    page.set_input_files("#files", [str(tmp_path / "plain.dcm"), str(tmp_path / "series.zip")])
    upload_and_wait(page)
    assert table(page) == {n: ("already stored", "already in Orthanc")
                           for n in ("plain.dcm", "series.zip/IM1.dcm", "series.zip/IM2.dcm")}
    shoot(page, shots, "04-already")


def test_files_dropped_on_the_zone_are_uploaded(page, shots, orthanc):
    drop = """([names, blobs]) => {
      const dt = new DataTransfer();
      names.forEach((n, i) => dt.items.add(new File([new Uint8Array(blobs[i])], n)));
      const zone = document.getElementById('dropzone');
      zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
      zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }"""
    page.evaluate(drop, [["dropped.dcm", "notes.txt"], [list(dcm()), list(b"just text")]])
    expect(page.locator("#chosen")).to_contain_text("2 file(s)")
    upload_and_wait(page)
    assert table(page) == {"dropped.dcm": ("stored", ""), "notes.txt": ("rejected", "not a DICOM file")}
    shoot(page, shots, "05-dropped")


@pytest.fixture
def app_config(request):
    return getattr(request, "param", {})


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_BYTES": 200_000}], indirect=True)
def test_a_choice_over_the_limit_is_refused_before_sending(page, shots, tmp_path, orthanc):
    big = tmp_path / "big.dcm"
    big.write_bytes(dcm(rows=512, cols=512))  # 512 KB
    page.set_input_files("#files", str(big))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#chosen")).to_have_text("Too large: 513 KB; the limit is 195 KB. Upload in parts.")
    expect(page.locator("#progress")).to_be_hidden()
    assert orthanc.get("/instances") == []
    shoot(page, shots, "06-too-large")


def test_a_413_from_the_server_is_shown_as_a_clear_message(app, page, shots, tmp_path, orthanc):
    """The page checks the size first; when the server refuses anyway (the
    limit was lowered after the page was loaded), its message is shown, not a
    dropped connection or a bare status code."""
    files = []
    for i in range(3):
        path = tmp_path / f"IM{i}.dcm"
        path.write_bytes(dcm(instance_number=i, rows=512, cols=512))  # 513 KB each
        files.append(str(path))
    page.set_input_files("#files", files)
    app.config.update(UPLOAD_MAX_BYTES=1024**2, MAX_CONTENT_LENGTH=1024**2)  # the served app is this one
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#progress-text")).to_have_text("The upload is too large; the limit is 1 MB.",
                                                        timeout=20_000)
    expect(page.get_by_role("button", name="Upload")).to_be_enabled()
    assert orthanc.get("/instances") == []
    shoot(page, shots, "07-refused-by-server")


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILES": 3}], indirect=True)
def test_a_choice_of_more_files_than_allowed_is_refused_before_sending(page, shots, tmp_path, orthanc):
    paths = []
    for i in range(4):
        path = tmp_path / f"IM{i}"
        path.write_bytes(dcm(instance_number=i))
        paths.append(str(path))
    expect(page.locator(".dropzone")).to_contain_text("and 3 files at once")
    page.set_input_files("#files", paths)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#chosen")).to_have_text("Too many files in one upload (4); the limit is 3 files. "
                                                 "Upload in parts.")
    expect(page.locator("#progress")).to_be_hidden()
    assert orthanc.get("/instances") == []
    shoot(page, shots, "08-too-many-files")


def test_a_damaged_archive_gets_its_line_and_the_good_file_is_stored(page, shots, tmp_path, orthanc):
    good, bad = tmp_path / "good.dcm", tmp_path / "scan.dcm.gz"
    good.write_bytes(dcm())
    bad.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8)  # a gzip header, then garbage
    page.set_input_files("#files", [str(good), str(bad)])
    upload_and_wait(page)
    got = table(page)
    assert got["good.dcm"] == ("stored", "")
    badge, detail = got["scan.dcm.gz"]
    assert badge == "rejected" and detail.startswith("damaged archive: its gzip data is corrupt"), detail
    expect(page.locator("#upload-result h2")).to_have_text("Result: 1 stored, 0 already stored, 1 rejected, 0 failed")
    shoot(page, shots, "09-damaged-archive")
