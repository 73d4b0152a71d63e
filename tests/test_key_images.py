"""Key images are what the radiologist saw, against a real Orthanc 1.10.1
(with Debian's orthanc-gdcm plugin, as the test command installs it).

- one rendering (``orthanc.rendering.display_png``) for the page preview and
  the key image: the stored window when the file has one, else a computed
  window, so an image without a stored window is not black;
- JPEG 2000 previews and captures (and without orthanc-gdcm the message
  names the plugin);
- SR, PDF and RT series show a placeholder, never a broken preview, and an
  encapsulated PDF opens through the application.

Pixel statistics come from Pillow on the PNG bytes.
"""

from __future__ import annotations

import io
import re
import subprocess
from datetime import date

import pytest
from PIL import Image, ImageStat

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, Result
from ghimaging.orthanc import rendering, sync
from ghimaging.orthanc.client import OrthancClient
from ghimaging.orthanc.matching import studies_of
from tests.support import dicomgen
from tests.support.orthanc import OrthancServer as RealOrthanc


def pixel_stats(png: bytes) -> tuple[tuple[int, int], float]:
    """(min, max) and standard deviation of the grey levels."""
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        grey = img.convert("L")
        return grey.getextrema(), ImageStat.Stat(grey).stddev[0]


def assert_not_flat(png: bytes) -> None:
    """A picture a person can read: a wide range of grey and real contrast,
    not one value (black: range 0-0, stddev 0) or nearly one. JPEG2000.dcm,
    dark by nature, has a stddev of about 19."""
    (low, high), spread = pixel_stats(png)
    assert high - low >= 128 and spread >= 10, f"range {low}-{high}, stddev {spread:.1f}"


def client_of(orthanc: RealOrthanc) -> OrthancClient:
    return OrthancClient(orthanc.url, orthanc.username, orthanc.password)


def instance_of(orthanc: RealOrthanc, ds) -> str:
    found = orthanc.session.post(orthanc.url + "/tools/find", json={
        "Level": "Instance", "Query": {"SOPInstanceUID": str(ds.SOPInstanceUID)}}, timeout=30).json()
    assert len(found) == 1
    return found[0]


def text(resp) -> str:
    return resp.get_data(as_text=True)


# -- the rendering itself ------------------------------------------------------------------------

def test_an_image_without_a_stored_window_is_not_black(orthanc):
    ds = dicomgen.make_unwindowed("P-NOWIN", "NOWIN^PATIENT")
    orthanc.upload(ds)
    inst = instance_of(orthanc, ds)
    # What went wrong before: Orthanc's /rendered maps all 16 stored bits.
    rendered = orthanc.session.get(f"{orthanc.url}/instances/{inst}/rendered", timeout=30).content
    (_low, high), _ = pixel_stats(rendered)
    assert high <= 20, "the case this test is about: /rendered is (almost) black here"
    with client_of(orthanc) as client:
        png = rendering.display_png(client, inst)
    assert_not_flat(png)


def test_the_stored_window_is_used_when_the_file_has_one(orthanc):
    """MR_small carries WindowCenter 600 / WindowWidth 1600: the picture is
    the modality's window (Orthanc's /rendered), not a min/max stretch."""
    ds = dicomgen.from_testdata("MR_small.dcm", "P-MR", "MR^PATIENT")
    orthanc.upload(ds)
    inst = instance_of(orthanc, ds)
    with client_of(orthanc) as client:
        png = rendering.display_png(client, inst)
    rendered = orthanc.session.get(f"{orthanc.url}/instances/{inst}/rendered", timeout=30).content
    stretched = orthanc.session.get(f"{orthanc.url}/instances/{inst}/preview", timeout=30).content
    assert png == rendered and png != stretched
    assert_not_flat(png)


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_jp2klossless.dcm"])
def test_jpeg_2000_decodes(orthanc, name):
    """JPEG2000.dcm has no stored window either; MR_small_jp2klossless has one."""
    ds = dicomgen.from_testdata(name, "P-J2K", "J2K^PATIENT")
    assert ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
    orthanc.upload(ds)
    with client_of(orthanc) as client:
        png = rendering.display_png(client, instance_of(orthanc, ds))
    assert_not_flat(png)


def test_without_orthanc_gdcm_jpeg_2000_is_a_message_naming_the_plugin(tmp_path):
    with RealOrthanc(tmp_path / "bare", gdcm=False) as bare:
        assert "gdcm" not in bare.get("/plugins")
        ds = dicomgen.from_testdata("JPEG2000.dcm", "P-J2K", "J2K^PATIENT")
        bare.upload(ds)
        with client_of(bare) as client, pytest.raises(rendering.CannotDecode) as caught:
            rendering.display_png(client, instance_of(bare, ds))
    assert "JPEG 2000" in str(caught.value) and "orthanc-gdcm" in str(caught.value)


@pytest.mark.parametrize("make,label", [
    (lambda: dicomgen.make_sr_instance("P-SR", "SR^PATIENT"), "Structured report"),
    (lambda: dicomgen.make_pdf_instance("P-PDF", "PDF^PATIENT"), "PDF document"),
    (lambda: dicomgen.from_testdata("rtstruct.dcm", "P-RT", "RT^PATIENT"), "RT structure set"),
    (lambda: dicomgen.from_testdata("rtdose.dcm", "P-RT", "RT^PATIENT"), "RT dose"),
])
def test_an_instance_with_no_picture_is_refused_with_what_it_is(orthanc, make, label):
    ds = make()
    orthanc.upload(ds)
    with client_of(orthanc) as client, pytest.raises(rendering.NotAnImage) as caught:
        rendering.display_png(client, instance_of(orthanc, ds))
    assert "not an image" in str(caught.value) and label in str(caught.value)


@pytest.mark.parametrize("modality,sop_class,kind", [
    ("CT", "", "image"), ("SR", "", "report"), ("RTDOSE", "", "rt"), ("KO", "", "key-objects"),
    ("DOC", "1.2.840.10008.5.1.4.1.1.104.1", "pdf"), ("OT", "1.2.840.10008.5.1.4.1.1.104.1", "pdf"),
    ("OT", "1.2.840.10008.5.1.4.1.1.7", "image"), ("", "1.2.840.10008.5.1.4.1.1.88.22", "report"),
    ("RTIMAGE", "", "image"), ("OT", "1.2.840.10008.5.1.4.1.1.481.1", "image"),
    ("OT", "1.2.840.10008.5.1.4.1.1.481.3", "rt"), ("OT", "1.2.840.10008.5.1.4.1.1.88.59", "key-objects"),
])
def test_the_kind_comes_from_the_modality_or_else_the_sop_class(modality, sop_class, kind):
    decided = rendering.kind_of_modality(modality)
    if decided is None:
        decided = rendering.kind_of_sop_class(sop_class)
    assert decided.key == kind


def test_a_sop_class_prefix_matches_whole_components_only():
    assert rendering.kind_of_sop_class("1.2.840.10008.5.1.4.1.1.88.11").key == "report"
    # 1.2.840.10008.5.1.4.1.1.8... is not under ...1.1.88
    assert rendering.kind_of_sop_class("1.2.840.10008.5.1.4.1.1.8").image
    assert rendering.kind_of_sop_class("1.2.840.10008.5.1.4.1.1.9999").image


# -- pages: a study of one patient with an image, a JPEG 2000, an SR and PDFs ------------------

@pytest.fixture
def staff(make_user):
    return {"doc": make_user("doc", "physician"), "rad": make_user("rad", "radiologist")}


@pytest.fixture
def mixed(app, orthanc, orthanc_row, staff, create_patient, create_request):
    """A submitted request and its study, linked by the sync: series 1 an
    image without a stored window, 2 a JPEG 2000 image, 3 an SR, 4 a PDF filed
    as DOC, 5 a PDF filed as OT (only the SOP class says it is a PDF).
    Returns (request, study, {series number: dataset})."""
    patient = create_patient(family_name="Hong", given_name="Gildong")
    req = create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"])
    name = "Hong^Gildong=洪^吉洞=홍^길동"
    common = {"accession": req.accession_number}
    datasets = {
        1: dicomgen.make_unwindowed(patient.puid, name, req.study_instance_uid, series_number=1,
                                    series_description="CHEST PA", rows=32, cols=32, **common),
        2: dicomgen.from_testdata("JPEG2000.dcm", patient.puid, name, req.study_instance_uid,
                                  series_number=2, **common),
        3: dicomgen.make_sr_instance(patient.puid, name, req.study_instance_uid, series_number=3, **common),
        4: dicomgen.make_pdf_instance(patient.puid, name, req.study_instance_uid, series_number=4,
                                      pdf=dicomgen.minimal_pdf("Signed request form"), **common),
        5: dicomgen.make_pdf_instance(patient.puid, name, req.study_instance_uid, series_number=5,
                                      modality="OT", series_description="SCANNED CONSENT",
                                      pdf=dicomgen.minimal_pdf("Scanned consent"), **common),
    }
    for ds in datasets.values():
        orthanc.upload(ds)
    summary = sync.run(orthanc_row.id, mode="full")
    assert summary.error == "", summary.error
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    links = studies_of(req)
    assert len(links) == 1, "the study is the request's (same PUID, UID and accession)"
    return req, links[0].study, datasets


def series_figures(html: str) -> dict[str, str]:
    """Series caption number -> the figure's HTML, on the study page."""
    out = {}
    for fig in re.findall(r'<figure class="series[^"]*">.*?</figure>', html, re.S):
        number = re.search(r"<figcaption><strong>([^<]+)</strong>", fig).group(1)
        out[number] = fig
    return out


def test_study_page_shows_placeholders_for_series_with_no_picture(app, mixed, login, orthanc):
    _req, study, datasets = mixed
    html = text(login("rad").get(f"/orthanc/studies/{study.id}"))
    figures = series_figures(html)
    assert set(figures) == {"1", "2", "3", "4", "5"}
    for n in ("1", "2"):
        assert re.search(r'<img [^>]*data-preview src="/orthanc/servers/\d+/instances/[0-9a-f-]+/preview"',
                         figures[n]), figures[n]
        assert "placeholder" not in figures[n]
    for n, label in (("3", "Structured report"), ("4", "PDF document"), ("5", "PDF document")):
        assert "<img" not in figures[n] and "placeholder" in figures[n] and label in figures[n]
    for n in ("4", "5"):  # the OT one is known as a PDF by its SOP class only
        inst = instance_of(orthanc, datasets[int(n)])
        assert f'href="/orthanc/servers/{study.server_id}/instances/{inst}/pdf"' in figures[n]
        assert "Open PDF" in figures[n]
    assert "Open PDF" not in figures["3"] and "DICOM viewer" in figures["3"]


def test_with_orthanc_away_the_study_page_still_renders_its_placeholders(app, mixed, login, orthanc):
    """The SR is known by its Modality and the DOC series is a document
    whatever its SOP class; the PDF filed as OT cannot be asked about, so it
    gets a preview that the page's script turns into "No preview" (see the
    browser test)."""
    _req, study, _datasets = mixed
    orthanc.kill()
    rad = login("rad")
    for _ in range(2):  # the second view does not try Orthanc again (paused after the failure)
        r = rad.get(f"/orthanc/studies/{study.id}")
        assert r.status_code == 200
        figures = series_figures(text(r))
        assert "Structured report" in figures["3"] and "placeholder" in figures["4"]
        assert "<img" not in figures["4"] and "Document" in figures["4"]
        assert "data-preview" in figures["5"]


def test_every_preview_the_study_page_shows_is_a_readable_png(app, mixed, login):
    _req, study, _datasets = mixed
    rad = login("rad")
    html = text(rad.get(f"/orthanc/studies/{study.id}"))
    sources = re.findall(r'<img [^>]*data-preview src="([^"]+)"', html)
    assert len(sources) == 2
    for src in sources:
        r = rad.get(src)
        assert r.status_code == 200 and r.mimetype == "image/png"
        assert_not_flat(r.data)


def test_the_preview_of_a_non_image_is_415_with_a_sentence(app, mixed, login, orthanc):
    _req, study, datasets = mixed
    inst = instance_of(orthanc, datasets[3])
    r = login("rad").get(f"/orthanc/servers/{study.server_id}/instances/{inst}/preview")
    assert r.status_code == 415 and "not an image" in text(r)


def test_an_encapsulated_pdf_opens_through_the_app(app, mixed, login, orthanc, tmp_path):
    _req, study, datasets = mixed
    inst = instance_of(orthanc, datasets[4])
    r = login("rad").get(f"/orthanc/servers/{study.server_id}/instances/{inst}/pdf")
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    assert r.data.startswith(b"%PDF") and r.data.rstrip().endswith(b"%%EOF")
    assert r.headers["Content-Disposition"].startswith("inline")
    assert "no-store" in r.headers["Cache-Control"] and "Authorization" not in r.headers
    path = tmp_path / "doc.pdf"
    path.write_bytes(r.data)
    shown = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "Signed request form" in shown


def test_the_pdf_route_needs_login_and_a_pdf(app, client, mixed, login, orthanc):
    _req, study, datasets = mixed
    pdf = instance_of(orthanc, datasets[4])
    r = client.get(f"/orthanc/servers/{study.server_id}/instances/{pdf}/pdf")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    rad = login("rad")
    image = instance_of(orthanc, datasets[1])
    assert rad.get(f"/orthanc/servers/{study.server_id}/instances/{image}/pdf").status_code == 404
    assert rad.get(f"/orthanc/servers/{study.server_id}/instances/..%2Fsystem/pdf").status_code == 404
    assert rad.get(f"/orthanc/servers/999/instances/{pdf}/pdf").status_code == 404
    orthanc.kill()
    assert rad.get(f"/orthanc/servers/{study.server_id}/instances/{pdf}/pdf").status_code == 502


def test_result_page_shows_placeholders_and_offers_key_images_only_for_pictures(app, mixed, login, staff, orthanc):
    req, study, datasets = mixed
    result = workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                    report="See images.")
    db.session.commit()
    html = text(login("rad").get(f"/results/{result.id}"))
    offered = set(re.findall(r'name="instance_id" value="([0-9a-f-]+)"', html))
    assert offered == {instance_of(orthanc, datasets[1]), instance_of(orthanc, datasets[2])}
    assert html.count("Structured report") >= 1 and html.count('class="noimg placeholder"') == 3
    for n in (4, 5):
        assert f"/orthanc/servers/{study.server_id}/instances/{instance_of(orthanc, datasets[n])}/pdf" in html


# -- key images through the result page ----------------------------------------------------------
# These need imaging/workflow.py's add_key_image to use rendering.display_png
# (it used Orthanc's /rendered, black for series 1 and 2 here).

def add_key_image(rad, result, study, inst, caption=""):
    return rad.post(f"/results/{result.id}/key-images",
                    {"server_id": study.server_id, "instance_id": inst, "caption": caption},
                    token_from=f"/results/{result.id}", follow_redirects=True)


@pytest.mark.parametrize("series", [1, 2], ids=["no-stored-window", "jpeg2000"])
def test_the_key_image_is_the_picture_the_preview_showed(app, mixed, login, staff, orthanc, series):
    req, study, datasets = mixed
    result = workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                    report="See images.")
    db.session.commit()
    inst = instance_of(orthanc, datasets[series])
    rad = login("rad")
    seen = rad.get(f"/orthanc/servers/{study.server_id}/instances/{inst}/preview")
    assert seen.status_code == 200
    r = add_key_image(rad, result, study, inst, "as seen")
    assert "Key image added" in text(r)
    db.session.expire_all()
    images = db.session.get(Result, result.id).images
    assert [i.caption for i in images] == ["as seen"]
    stored = rad.get(f"/results/images/{images[0].stored_name}").data
    assert_not_flat(stored)
    assert pixel_stats(stored) == pixel_stats(seen.data)


def test_a_key_image_of_a_report_is_refused_saying_it_is_not_an_image(app, mixed, login, staff, orthanc):
    req, study, datasets = mixed
    result = workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                    report="See images.")
    db.session.commit()
    r = add_key_image(login("rad"), result, study, instance_of(orthanc, datasets[3]))
    assert "not an image" in text(r) and "Structured report" in text(r)
    db.session.expire_all()
    assert db.session.get(Result, result.id).images == []


# -- the page in a real browser ------------------------------------------------------------------

@pytest.mark.browser
def test_browser_study_page_with_placeholders_and_a_cjk_name(app, mixed, browser, live, shots, staff):
    import playwright.sync_api as playwright_api

    from tests.support.browser import shoot
    from tests.support.factories import PASSWORD

    expect = playwright_api.expect
    req, study, _datasets = mixed
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-GB")
    page = context.new_page()
    try:
        page.goto(live + "/login")
        page.fill("#username", "rad")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        page.goto(f"{live}/orthanc/studies/{study.id}")
        expect(page.locator("dl.facts")).to_contain_text("Hong, Gildong (洪 吉洞 · 홍 길동)")
        expect(page.locator(".placeholder")).to_have_count(3)
        for img in page.locator("img[data-preview]").element_handles():
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
        expect(page.get_by_role("link", name="Open PDF")).to_have_count(2)
        shoot(page, shots, "study-placeholders-cjk-name")
        # A preview Orthanc cannot draw becomes a placeholder, not a broken image.
        page.evaluate("""() => { const img = document.querySelector('img[data-preview]');
            img.src = img.src.replace(/instances\\/[^/]+\\/preview/, 'instances/00000000-00000000-00000000-00000000-00000000/preview'); }""")
        expect(page.locator(".placeholder")).to_have_count(4)
        expect(page.locator(".placeholder").filter(has_text="No preview")).to_have_count(1)

        result = workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                        report="See images.")

        db.session.commit()
        page.goto(f"{live}/results/{result.id}")
        expect(page.locator(".study-patient")).to_contain_text("Images of Hong, Gildong (洪 吉洞 · 홍 길동)")
        expect(page.locator(".placeholder")).to_have_count(3)
        expect(page.get_by_role("button", name="Add as key image")).to_have_count(2)
        shoot(page, shots, "result-placeholders-cjk-name")
    finally:
        context.close()
