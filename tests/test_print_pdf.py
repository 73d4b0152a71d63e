"""The printed report as a clinic hands it out, and the same report as a PDF
rendered on the server (WeasyPrint): every page names the patient and
says "Page N of M"; the examination date, the ordering physician, the
status and the signature are there; the labels follow the clinic's
language. Pages of the PDF are read back with poppler's ``pdftotext``."""

from __future__ import annotations

import html
import re
import subprocess
from datetime import date
from pathlib import Path

import pytest

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, Result, Setting, User
from ghimaging.orthanc import sync
from ghimaging.orthanc.matching import studies_of
from tests.support import dicomgen
from tests.support.factories import png_bytes

#: A report long enough for two pages on A4 and on Letter.
LONG_REPORT = "\n".join(f"{n}. Finding line {n}: the lung fields are clear, no effusion." for n in range(1, 61))


@pytest.fixture
def staff(make_user):
    rad = make_user("rad", "radiologist", full_name="Dr Rita Rad")
    rad.credentials = "MD, FRCR - Consultant Radiologist"
    db.session.commit()
    return {"doc": make_user("doc", "physician", full_name="Dr Otto Order"), "rad": rad}


@pytest.fixture
def req(create_request, create_patient, staff):
    patient = create_patient(family_name="Nakamura", given_name="Ken", birth_date=date(1971, 4, 9))
    return create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"],
                          clinical_context="Fall from a ladder.")


def make_result(req: ImagingRequest, rad: User, report: str = LONG_REPORT, *, final: bool = False,
                images: int = 0) -> Result:
    result = workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report=report,
                                    new_images=[workflow.NewImage(png_bytes(), f"key{i}.png", f"View {i}")
                                                for i in range(images)])
    if final:
        workflow.finalise_result(result, rad)
    db.session.commit()
    return result


def set_clinic(**values: str) -> None:
    """The settings table directly (the settings page may not offer every key yet)."""
    for key, value in values.items():
        db.session.merge(Setting(key=key, value=value))
    db.session.commit()


def pdf_pages(data: bytes, tmp_path: Path) -> list[str]:
    assert data.startswith(b"%PDF-"), data[:40]
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    count = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    return [subprocess.run(["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(path), "-"],
                           capture_output=True, text=True, check=True).stdout for n in range(1, count + 1)]


def get_pdf(client, result: Result, tmp_path: Path) -> list[str]:
    r = client.get(f"/results/{result.id}/report.pdf")
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    assert r.mimetype == "application/pdf"
    assert "private" in r.headers["Cache-Control"]
    assert f"report-{result.request.accession_number}.pdf" in r.headers["Content-Disposition"]
    return pdf_pages(r.data, tmp_path)


def squeeze(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def linked_req(app, orthanc, orthanc_row, req):
    """The request's images in a real Orthanc, linked by the sync: the
    examination date and time come from the study."""
    orthanc.upload(dicomgen.make_instance(req.patient.puid, "Nakamura^Ken", req.study_instance_uid,
                                          accession=req.accession_number, study_date="20240311",
                                          study_time="143005", study_description="CHEST PA", rows=16, cols=16))
    assert sync.run(orthanc_row.id, mode="full").error == ""
    db.session.expire_all()
    linked = db.session.get(ImagingRequest, req.id)
    assert len(studies_of(linked)) == 1
    return linked


def test_pdf_every_page_names_the_patient_and_counts_pages(login, linked_req, staff, tmp_path):
    set_clinic(clinic_name="Lakeside Imaging Centre", clinic_address="12 Harbour Road\nKisumu",
               clinic_phone="+254 700 000000")
    result = make_result(linked_req, staff["rad"], final=True)
    pages = get_pdf(login("doc"), result, tmp_path)
    assert len(pages) == 2
    puid, accession = linked_req.patient.puid, linked_req.accession_number
    for n, text in enumerate(pages, start=1):
        flat = squeeze(text)
        for expected in ("Nakamura, Ken", f"PUID {puid}", f"Accession {accession}", f"Page {n} of 2"):
            assert expected in flat, (n, expected, flat[:400])
    first = squeeze(pages[0])
    for expected in ("Lakeside Imaging Centre", "12 Harbour Road", "+254 700 000000", "Imaging report",
                     "Examination date 2024-03-11 14:30", "Ordering physician Dr Otto Order",
                     "Chest X-ray PA (CR)", "Fall from a ladder.", "Final report"):
        assert expected.casefold() in first.casefold(), expected  # headings are set in capitals
    last = squeeze(pages[-1])
    assert "60. Finding line 60" in last
    assert "Finalised" in last and "by Dr Rita Rad." in last
    assert "MD, FRCR - Consultant Radiologist" in last
    assert "PRELIMINARY" not in first + last


def test_a_preliminary_report_says_so_in_the_pdf_and_on_the_print_page(login, req, staff, tmp_path):
    result = make_result(req, staff["rad"], report="Short report.")
    pages = get_pdf(login("rad"), result, tmp_path)
    assert len(pages) == 1
    flat = squeeze(pages[0])
    assert "PRELIMINARY" in flat and "Preliminary report: not yet finalised." in flat
    assert "Page 1 of 1" in flat and "Final report" not in flat
    printed = html.unescape(login("rad").get(f"/results/{result.id}/print").get_data(as_text=True))
    assert "PRELIMINARY" in printed and "Final report" not in printed


@pytest.mark.parametrize("lang,labels", [
    ("de", ["Radiologischer Befund", "Geburtsdatum", "Untersuchungsdatum", "Zuweisender Arzt", "Befund",
            "Endgültiger Befund", "Seite {n} von 2"]),
    ("es", ["Informe radiológico", "Fecha de nacimiento", "Fecha del estudio", "Médico solicitante",
            "Informe definitivo", "Página {n} de 2"]),
])
def test_pdf_labels_follow_the_clinics_language(login, req, staff, tmp_path, lang, labels):
    set_clinic(language=lang)
    result = make_result(req, staff["rad"], final=True)
    pages = get_pdf(login("doc"), result, tmp_path)
    assert len(pages) == 2
    for n, text in enumerate(pages, start=1):
        flat = squeeze(text)
        assert "Nakamura, Ken" in flat and req.patient.puid in flat
        assert labels[-1].format(n=n) in flat, flat[-300:]
        assert f"Page {n} of" not in flat
    first = squeeze(pages[0])
    for label in labels[:-1]:
        assert label.casefold() in first.casefold(), label  # headings are set in capitals
    assert "imaging report" not in first.casefold() and "Ordering physician" not in first


def test_the_clinics_language_wins_over_the_readers(login, req, staff, tmp_path):
    """A German clinic's report is German whatever the browser asks for."""
    set_clinic(language="de")
    result = make_result(req, staff["rad"], report="Kurz.")
    c = login("doc")
    body = html.unescape(c.get(f"/results/{result.id}/print", headers={"Accept-Language": "es, en;q=0.5"})
                         .get_data(as_text=True))
    assert "Radiologischer Befund" in body and "VORLÄUFIG" in body and 'lang="de"' in body
    assert "Informe" not in body


def test_print_page_has_the_same_content_as_the_pdf(login, linked_req, staff, tmp_path):
    result = make_result(linked_req, staff["rad"], final=True)
    c = login("doc")
    printed = squeeze(re.sub(r"<[^>]+>", " ", html.unescape(c.get(f"/results/{result.id}/print")
                                                             .get_data(as_text=True))))
    pdf = squeeze(" ".join(get_pdf(c, result, tmp_path)))
    for expected in ("Nakamura, Ken", f"PUID {linked_req.patient.puid}", f"Accession {linked_req.accession_number}",
                     "Born 1971-04-09", "Examination date 2024-03-11 14:30", "Ordering physician Dr Otto Order",
                     "Final report", "Dr Rita Rad", "MD, FRCR - Consultant Radiologist", "60. Finding line 60"):
        assert expected in printed, expected
        assert expected.casefold() in pdf.casefold(), expected  # headings are set in capitals
    assert f'href="/results/{result.id}/report.pdf"' in c.get(f"/results/{result.id}/print").get_data(as_text=True)


def test_pdf_carries_the_key_images_and_letter_paper(login, req, staff, tmp_path):
    set_clinic(paper_size="Letter")
    result = make_result(req, staff["rad"], report="With images.", images=2)
    r = login("doc").get(f"/results/{result.id}/report.pdf")
    assert r.status_code == 200
    path = tmp_path / "r.pdf"
    path.write_bytes(r.data)
    listed = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True).stdout
    assert len([line for line in listed.splitlines()[2:] if line.strip()]) >= 2, listed
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    assert "612 x 792 pts (letter)" in info, info


def test_pdf_needs_a_role_and_a_sign_in(login, make_user, client, req, staff):
    result = make_result(req, staff["rad"], report="Short.")
    nobody = make_user("nobody", "physician")
    c = login("nobody")
    nobody.role_rows.clear()  # an administrator took every role away
    db.session.commit()
    assert c.get(f"/results/{result.id}/report.pdf").status_code == 403
    assert c.get(f"/results/{result.id}/print").status_code == 403
    r = client.get(f"/results/{result.id}/report.pdf")
    assert r.status_code == 302 and "/login" in r.location
    assert login("doc").get("/results/999999/report.pdf").status_code == 404


def test_the_pdf_renderer_fetches_nothing_from_the_network_or_the_disk(app, req, staff, tmp_path):
    """Only the page's own stylesheet and key images are read; a URL to
    another host (here a real local server that counts its requests) or a
    file: URL is refused, so text in a report can never make the server
    fetch or embed anything else."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ghimaging.imaging import printing

    hits: list[str] = []

    class Counting(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png_bytes().getvalue())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes().getvalue())
    result = make_result(req, staff["rad"], report="Short.", images=1)
    try:
        with app.test_request_context(base_url="http://clinic.example/"):
            base = "http://clinic.example/"
            files = printing.LocalFiles(base, printing.build(result, pdf=True))
            own = f'{base.rstrip("/")}/results/images/{result.images[0].stored_name}'
            page = (f'<link rel="stylesheet" href="http://127.0.0.1:{server.server_port}/x.css">'
                    f'<img src="http://127.0.0.1:{server.server_port}/x.png"><img src="{secret.as_uri()}">'
                    f'<img src="{own}"><p>text</p>')
            pdf = printing.render_pdf(page, base, files)
    finally:
        server.shutdown()
    assert hits == []
    path = tmp_path / "x.pdf"
    path.write_bytes(pdf)
    listed = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True).stdout
    assert len([line for line in listed.splitlines()[2:] if line.strip()]) == 1, listed  # the key image alone


def test_the_print_page_has_no_inline_style_and_its_page_css_follows_the_clinic(login, req, staff):
    """The pages' Content-Security-Policy refuses inline style, so paper
    size and the page counter come in a stylesheet of their own."""
    set_clinic(paper_size="Letter", language="es")
    result = make_result(req, staff["rad"], report="Short.")
    c = login("doc")
    r = c.get(f"/results/{result.id}/print")
    assert "style-src 'self'" in r.headers["Content-Security-Policy"]
    body = r.get_data(as_text=True)
    assert "<style" not in body and " style=" not in body
    assert 'href="/results/print-page.css"' in body
    css = c.get("/results/print-page.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert css.get_data(as_text=True).strip() == \
        '@page { size: Letter; @bottom-right { content: "Página " counter(page) " de " counter(pages); } }'


def test_without_images_the_examination_date_is_when_the_request_was_done(login, req, staff):
    """No linked study: the time the request was marked done, in the
    clinic's zone; before that (a preliminary report) none."""
    result = make_result(req, staff["rad"], report="Short.")
    c = login("doc")
    body = html.unescape(c.get(f"/results/{result.id}/print").get_data(as_text=True))
    assert re.search(r'<td class="exam-when">—</td>', body)
    workflow.finalise_result(result, staff["rad"])
    db.session.commit()
    done = [e for e in req.events if e.action == "complete"][-1]
    from ghimaging.ui import local_time

    body = html.unescape(c.get(f"/results/{result.id}/print").get_data(as_text=True))
    assert f'<td class="exam-when">{local_time(done.at)}</td>' in body


def test_dates_follow_the_clinics_zone_and_format_in_the_pdf(login, linked_req, staff, tmp_path):
    """Birth date and the study's date in the clinic's date format; the
    finalised time, stored in UTC, in the clinic's zone; the study's time
    as the modality wrote it."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    set_clinic(date_format="dd.mm.yyyy", time_zone="America/La_Paz")
    result = make_result(linked_req, staff["rad"], final=True)
    result.finalised_at = datetime(2024, 5, 2, 2, 30)  # 22:30 the day before in La Paz (UTC-4)
    db.session.commit()
    assert datetime(2024, 5, 2, 2, 30, tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo("America/La_Paz")).hour == 22
    pages = [squeeze(p) for p in get_pdf(login("doc"), result, tmp_path)]
    for text in pages:
        assert "Born 09.04.1971" in text
    assert "Examination date 11.03.2024 14:30".casefold() in pages[0].casefold()
    assert "Finalised 01.05.2024 22:30 by Dr Rita Rad." in pages[-1]
