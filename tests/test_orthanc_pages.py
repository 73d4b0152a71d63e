"""The Orthanc mirror pages: studies list and filters, study page with
previews and viewer links, the preview proxy, Orthanc patients and linking,
against studies synced from a real Orthanc 1.10.1."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import OrthancPatient, OrthancServer, OrthancStudy
from ghimaging.orthanc import servers, sync
from tests.support import dicomgen
from tests.support.orthanc import OrthancServer as RealOrthanc

# Four studies of three patients, with known names, ids, dates and modalities.
STUDIES = [
    # accession, PatientID, name, date, modality, series
    ("ACC-1", "PID-001", "MUELLER^ANNA", "20260105", "CR", 1),
    ("ACC-2", "PID-001", "MUELLER^ANNA", "20260210", "CT", 1),
    ("ACC-3", "PID-002", "TANAKA^YUKI", "20260315", "MR", 2),
    ("ACC-4", "PID-003", "SILVA^LUIS", "20250101", "US", 1),
]


def datasets(studies=STUDIES):
    out = []
    for acc, pid, name, day, modality, n_series in studies:
        study_uid = dicomgen.generate_uid()
        for se in range(n_series):
            out.append(dicomgen.make_instance(pid, name, study_uid, accession=acc, modality=modality,
                                              study_date=day, study_description=f"{modality} STUDY {acc}",
                                              series_number=se + 1, rows=16, cols=16))
    return out


@pytest.fixture
def synced(orthanc_row, upload):
    upload(datasets())
    assert sync.run(orthanc_row.id).error == ""
    return orthanc_row


@pytest.fixture
def admin_reader(make_user, login):
    """Orthanc's own viewers ask for Orthanc's own sign-in, which only
    administrators have: only they are shown the links."""
    make_user("boss", "admin")
    return login("boss")


@pytest.fixture
def reader(make_user, login):
    """Any signed-in member of staff may read the mirror."""
    make_user("rad", "radiologist")
    return login("rad")


def study(accession: str) -> OrthancStudy:
    db.session.expire_all()
    return db.session.scalar(select(OrthancStudy).where(OrthancStudy.accession_number == accession))


def accessions(html: str) -> list[str]:
    return re.findall(r"<td><code>([^<]*)</code></td>", html)


def listed(client, query: str = "") -> list[str]:
    r = client.get("/orthanc/studies" + query)
    assert r.status_code == 200, query
    return accessions(r.get_data(as_text=True))


def viewer_links(html: str) -> dict[str, str]:
    return {label: href.replace("&amp;", "&") for href, label in
            re.findall(r'<a class="button[^"]*" href="([^"]+)" target="_blank" rel="noopener">([^<]+)</a>', html)}


# -- studies list -----------------------------------------------------------------------------

def test_studies_list_shows_every_synced_study_newest_first(app, synced, reader):
    assert listed(reader) == ["ACC-3", "ACC-2", "ACC-1", "ACC-4"]
    html = reader.get("/orthanc/studies").get_data(as_text=True)
    assert "MUELLER, ANNA" in html
    assert "2026-03-15" in html and "PID-002" in html


SEARCHES = [
    ("mueller", {"ACC-1", "ACC-2"}),     # part of the family name, any case
    ("Tanaka", {"ACC-3"}),
    ("PID-003", {"ACC-4"}),              # PatientID
    ("ACC-2", {"ACC-2"}),                # accession number
    ("  ACC-1 ", {"ACC-1"}),             # pasted with spaces
    ("nobody-like-this", set()),
]


def test_studies_search_by_name_patient_id_or_accession(app, synced, reader):
    from urllib.parse import quote

    found = {q: set(listed(reader, "?q=" + quote(q))) for q, _ in SEARCHES}
    assert found == dict(SEARCHES)


def test_studies_search_finds_a_name_typed_as_the_page_shows_it(app, synced, reader):
    """The list shows 'MUELLER, ANNA'; staff copy or type it that way (or 'Anna Mueller')."""
    html = reader.get("/orthanc/studies").get_data(as_text=True)
    shown = re.search(r"(MUELLER, ANNA|Mueller, Anna)", html).group(1)
    assert set(listed(reader, "?q=" + shown.replace(" ", "+"))) == {"ACC-1", "ACC-2"}
    assert set(listed(reader, "?q=Anna+Mueller")) == {"ACC-1", "ACC-2"}


def test_studies_filter_by_date_range(app, synced, reader):
    assert set(listed(reader, "?date_from=2026-02-01&date_to=2026-03-31")) == {"ACC-2", "ACC-3"}
    assert set(listed(reader, "?date_from=2026-02-10")) == {"ACC-2", "ACC-3"}  # the bound is included
    assert set(listed(reader, "?date_to=2026-01-05")) == {"ACC-1", "ACC-4"}
    assert listed(reader, "?date_from=2027-01-01") == []


def test_date_filter_with_a_year_before_1000_compares_as_a_date(app, synced, reader):
    """DICOM dates are YYYYMMDD; strftime('%Y') gives '999' for year 999 on Linux, and
    '9991231' sorts after every '2026....' string."""
    assert listed(reader, "?date_to=0999-12-31") == []
    assert len(listed(reader, "?date_from=0999-12-31")) == 4


def test_studies_filter_by_modality(app, synced, reader):
    assert listed(reader, "?modality=CT") == ["ACC-2"]
    assert listed(reader, "?modality=mr") == ["ACC-3"]
    assert set(listed(reader, "?modality=US&q=PID-003")) == {"ACC-4"}
    assert listed(reader, "?modality=XA") == []


def test_search_takes_percent_and_underscore_literally(app, synced, reader):
    """A search for '%' or '_' is a search for that character, not a wildcard that lists everything."""
    for query in ("?q=%25", "?q=_", "?q=%25A%25", "?modality=%25", "?modality=_R"):
        assert listed(reader, query) == [], query
    html = reader.get("/orthanc/patients?q=%25").get_data(as_text=True)
    assert "PID-001" not in html and "No patient matches." in html


def test_modality_filter_matches_whole_codes(app, synced, reader):
    """'R' is not a modality: it must not list the CR and MR studies."""
    assert listed(reader, "?modality=R") == []
    assert listed(reader, "?modality=C") == []


def test_studies_filter_by_server_when_there_are_two(app, synced, reader, tmp_path):
    with RealOrthanc(tmp_path / "second") as second:
        second.upload_many(datasets([("ACC-9", "PID-009", "KIM^SARA", "20260401", "DX", 1)]))
        other = servers.add_server(label="Annex", url=second.url, username=second.username,
                                   password=second.password)
        db.session.commit()
        assert sync.run(other.id).error == ""
    first_id, other_id = synced.id, other.id
    assert set(listed(reader)) == {"ACC-1", "ACC-2", "ACC-3", "ACC-4", "ACC-9"}
    assert set(listed(reader, f"?server={first_id}")) == {"ACC-1", "ACC-2", "ACC-3", "ACC-4"}
    assert listed(reader, f"?server={other_id}") == ["ACC-9"]
    html = reader.get(f"/orthanc/studies?server={other_id}").get_data(as_text=True)
    assert f'<option value="{other_id}" selected>Annex</option>' in html
    assert "<td>Annex</td>" in html


def test_studies_pages_split_the_list_without_losing_or_repeating(app, synced, reader):
    app.config["ITEMS_PER_PAGE"] = 3
    html = reader.get("/orthanc/studies").get_data(as_text=True)
    first = accessions(html)
    assert first == ["ACC-3", "ACC-2", "ACC-1"] and "Page 1 of 2" in html
    assert "page=2" in html
    second = listed(reader, "?page=2")
    assert second == ["ACC-4"]
    # filters stay on when paging
    app.config["ITEMS_PER_PAGE"] = 1
    html = reader.get("/orthanc/studies?q=mueller&page=2").get_data(as_text=True)
    assert accessions(html) == ["ACC-1"] and "Page 2 of 2" in html and "q=mueller" in html


def test_studies_list_says_when_no_server_is_configured(app, reader):
    html = reader.get("/orthanc/studies").get_data(as_text=True)
    assert "No Orthanc server is configured yet." in html


def test_anonymous_is_sent_to_login_from_mirror_pages(app, client, synced):
    for path in ("/orthanc/studies", f"/orthanc/studies/{study('ACC-1').id}", "/orthanc/patients"):
        r = client.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path


# -- bad input --------------------------------------------------------------------------------

BAD_QUERIES = [
    "?date_from=garbage", "?date_to=2026-13-45", "?date_from=0000-00-00", "?date_from=2026-02-30",
    "?page=-1", "?page=0", "?page=abc", "?page=99999", "?page=99999999999999999999",
    "?server=abc", "?server=-5", "?server=99999999999999999999",
    "?modality=" + "X" * 500, "?modality=%25", "?q=%25%25", "?q=_", "?q=" + "a" * 5000, "?q=%00",
    "?q=%ff%fe", "?date_from=2026-01-01&date_to=2025-01-01",
]


def test_bad_query_parameters_never_give_a_500(app, synced, reader):
    answers = {path + query: reader.get(path + query).status_code
               for query in BAD_QUERIES for path in ("/orthanc/studies", "/orthanc/patients")}
    assert {url: status for url, status in answers.items() if status not in (200, 400)} == {}


def test_a_garbage_date_is_ignored_with_a_message(app, synced, reader):
    r = reader.get("/orthanc/studies?date_from=garbage&modality=CT")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "use YYYY-MM-DD" in html
    assert accessions(html) == ["ACC-2"]  # the other filters still apply


@pytest.mark.parametrize("path", ["/orthanc/studies/999999", "/orthanc/patients/999999",
                                  "/orthanc/studies/99999999999999999999",
                                  "/orthanc/patients/99999999999999999999"])
def test_unknown_study_or_patient_is_404(app, reader, path):
    assert reader.get(path).status_code == 404


# -- study page --------------------------------------------------------------------------------

def test_study_page_shows_its_series_with_previews_served_by_the_app(app, synced, reader, orthanc):
    s = study("ACC-3")
    html = reader.get(f"/orthanc/studies/{s.id}").get_data(as_text=True)
    assert "MR STUDY ACC-3" in html and s.study_uid in html and "PID-002" in html
    sources = re.findall(r'<figure class="series">\s*<img[^>]* src="([^"]+)"', html)
    assert len(sources) == 2  # one thumbnail per series
    instance_ids = set()
    for src in sources:
        m = re.fullmatch(rf"/orthanc/servers/{s.server_id}/instances/([0-9a-f-]+)/preview", src)
        assert m, src  # on the app, never on Orthanc
        instance_ids.add(m.group(1))
    assert orthanc.url not in " ".join(sources) and orthanc.password not in html
    in_orthanc = {i["ID"] for i in orthanc.get(f"/studies/{s.orthanc_id}/instances")}
    assert instance_ids == in_orthanc


def test_preview_is_a_real_png_from_orthanc_with_a_private_cache_header(app, synced, reader):
    s = study("ACC-1")
    src = re.search(r'<figure class="series">\s*<img[^>]* src="([^"]+)"', reader.get(f"/orthanc/studies/{s.id}").get_data(as_text=True)).group(1)
    r = reader.get(src)
    assert r.status_code == 200 and r.mimetype == "image/png"
    image = Image.open(io.BytesIO(r.data))
    assert image.format == "PNG" and image.size == (16, 16)
    cache = r.headers["Cache-Control"]
    assert "private" in cache and "public" not in cache and "max-age" in cache
    assert "Authorization" not in r.headers and "WWW-Authenticate" not in r.headers


def test_preview_needs_login(app, client, synced):
    instance = study("ACC-1").series[0].first_instance
    r = client.get(f"/orthanc/servers/{synced.id}/instances/{instance}/preview")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_preview_of_an_instance_orthanc_does_not_have_is_404(app, synced, reader):
    r = reader.get(f"/orthanc/servers/{synced.id}/instances/{'0' * 8}-{'1' * 8}-{'2' * 8}-{'3' * 8}-{'4' * 8}/preview")
    assert r.status_code == 404


@pytest.mark.parametrize("bad", ["ABCDEF", "zz", "a" * 65, "..", "..%2Fsystem", "x%20y", "%00",
                                 "abc;rm", "deadbeef%3Fx=1"])
def test_preview_with_bad_id_characters_is_404(app, synced, reader, bad):
    assert reader.get(f"/orthanc/servers/{synced.id}/instances/{bad}/preview").status_code == 404


def test_preview_of_an_unknown_server_is_404(app, synced, reader):
    instance = study("ACC-1").series[0].first_instance
    assert reader.get(f"/orthanc/servers/999/instances/{instance}/preview").status_code == 404


def test_preview_when_orthanc_is_down_is_502_not_500(app, synced, reader, orthanc):
    instance = study("ACC-1").series[0].first_instance
    orthanc.kill()
    assert reader.get(f"/orthanc/servers/{synced.id}/instances/{instance}/preview").status_code == 502
    # the study page itself still renders from the mirror
    assert reader.get(f"/orthanc/studies/{study('ACC-1').id}").status_code == 200


# -- viewer links ------------------------------------------------------------------------------

def set_server(server_id: int, **values) -> None:
    server = db.session.get(OrthancServer, server_id)
    for k, v in values.items():
        setattr(server, k, v)
    db.session.commit()


def test_orthanc_explorer_is_always_linked_and_nothing_else_without_plugins(app, synced, admin_reader, orthanc):
    s = study("ACC-1")
    links = viewer_links(admin_reader.get(f"/orthanc/studies/{s.id}").get_data(as_text=True))
    assert links == {"Orthanc Explorer": f"{orthanc.url}/app/explorer.html#study?uuid={s.orthanc_id}"}


def test_viewer_links_are_built_on_the_browser_url(app, synced, admin_reader, orthanc):
    set_server(synced.id, browser_url="https://pacs.clinic.example/orthanc",
               plugins="explorer.js,ohif,stone-webviewer")
    s = study("ACC-1")
    html = admin_reader.get(f"/orthanc/studies/{s.id}").get_data(as_text=True)
    links = viewer_links(html)
    assert links["Orthanc Explorer"] == f"https://pacs.clinic.example/orthanc/app/explorer.html#study?uuid={s.orthanc_id}"
    assert all(href.startswith("https://pacs.clinic.example/orthanc/") for href in links.values())
    assert orthanc.url not in html  # the REST URL stays private when a browser URL is set


def test_viewer_links_follow_the_detected_plugins(app, synced, admin_reader):
    s = study("ACC-3")
    base = "https://pacs.example"
    set_server(synced.id, browser_url=base, plugins="dicom-web,ohif,orthanc-explorer-2,stone-webviewer,web-viewer")
    links = viewer_links(admin_reader.get(f"/orthanc/studies/{s.id}").get_data(as_text=True))
    first_series = min(s.series, key=lambda se: se.number).orthanc_id
    assert links == {
        "Orthanc Explorer": f"{base}/app/explorer.html#study?uuid={s.orthanc_id}",
        "Stone Web Viewer": f"{base}/stone-webviewer/index.html?study={s.study_uid}",
        "OHIF": f"{base}/ohif/viewer?StudyInstanceUIDs={s.study_uid}",
        "Web Viewer": f"{base}/web-viewer/app/viewer.html?series={first_series}",
        "Orthanc Explorer 2": f"{base}/ui/app/#/filtered-studies?StudyInstanceUID={s.study_uid}",
    }
    set_server(synced.id, plugins="worklists,ohif")
    links = viewer_links(admin_reader.get(f"/orthanc/studies/{s.id}").get_data(as_text=True))
    assert set(links) == {"Orthanc Explorer", "OHIF"}


# -- Orthanc patients -----------------------------------------------------------------------------

def patient_row(pid: str) -> OrthancPatient:
    db.session.expire_all()
    return db.session.scalar(select(OrthancPatient).where(OrthancPatient.patient_id == pid))


def test_patients_list_and_search(app, synced, reader):
    html = reader.get("/orthanc/patients").get_data(as_text=True)
    assert all(pid in html for pid in ("PID-001", "PID-002", "PID-003"))
    html = reader.get("/orthanc/patients?q=tanaka").get_data(as_text=True)
    assert "PID-002" in html and "PID-001" not in html
    html = reader.get("/orthanc/patients?q=PID-003").get_data(as_text=True)
    assert "PID-003" in html and "PID-002" not in html


def test_patient_page_lists_its_studies(app, synced, reader):
    html = reader.get(f"/orthanc/patients/{patient_row('PID-001').id}").get_data(as_text=True)
    assert "CR STUDY ACC-1" in html and "CT STUDY ACC-2" in html and "ACC-3" not in html


def test_a_patient_with_the_same_puid_shows_as_linked(app, orthanc_row, upload, create_patient, reader):
    local = create_patient(puid="PID-002", family_name="Tanaka", given_name="Yuki")
    upload(datasets())
    sync.run(orthanc_row.id)
    html = reader.get(f"/orthanc/patients/{patient_row('PID-002').id}").get_data(as_text=True)
    assert local.full_name in html and "same PUID" in html
    assert "linked" in reader.get("/orthanc/studies?q=PID-002").get_data(as_text=True)


@pytest.mark.parametrize("role", ["technologist", "physician"])
def test_staff_link_by_puid_and_unlink_by_hand(app, synced, make_user, login, create_patient, role):
    local = create_patient(puid="LOCAL-9", family_name="Silva", given_name="Luis")
    make_user("staff", role)
    c = login("staff")
    row = patient_row("PID-003")
    page = f"/orthanc/patients/{row.id}"
    r = c.post(page, {"puid": "LOCAL-9"}, token_from=page)
    assert r.status_code == 302
    assert patient_row("PID-003").local_patient_id == local.id and patient_row("PID-003").link_mode == "manual"
    assert "linked by hand" in c.get(page).get_data(as_text=True)

    sync.run(synced.id, mode="full")  # a later sync keeps the manual link
    assert patient_row("PID-003").local_patient_id == local.id

    r = c.post(f"{page}/unlink", token_from=page)
    assert r.status_code == 302
    row = patient_row("PID-003")
    assert row.local_patient_id is None and row.link_mode == "unlinked"
    assert "unlinked by hand" in c.get(page).get_data(as_text=True)


def test_linking_to_an_unknown_puid_says_so(app, synced, make_user, login):
    make_user("tech", "technologist")
    c = login("tech")
    page = f"/orthanc/patients/{patient_row('PID-001').id}"
    r = c.post(page, {"puid": "NOBODY"}, token_from=page)
    assert r.status_code == 400 and "No local patient with this PUID." in r.get_data(as_text=True)
    r = c.post(page, {"puid": ""}, token_from=page)
    assert r.status_code == 400
    assert patient_row("PID-001").local_patient_id is None


def test_radiologist_cannot_link_or_unlink(app, synced, reader, create_patient):
    create_patient(puid="LOCAL-5")
    row = patient_row("PID-001")
    page = f"/orthanc/patients/{row.id}"
    html = reader.get(page).get_data(as_text=True)
    assert ">Link</button>" not in html and ">Unlink</button>" not in html
    assert reader.post(page, {"puid": "LOCAL-5"}, token_from=page).status_code == 403
    assert reader.post(f"{page}/unlink", token_from=page).status_code == 403
    assert patient_row("PID-001").local_patient_id is None


def test_deleted_studies_disappear_from_the_lists_after_reconciliation(app, synced, reader, orthanc):
    gone = study("ACC-4")
    gone_id, gone_patient = gone.id, gone.patient_row_id
    orthanc.delete_study(gone.orthanc_id)
    assert "ACC-4" in listed(reader)  # Orthanc 1.10.1 logs no deletion ...
    summary = sync.run(synced.id, mode="reconcile")  # ... reconciliation finds it
    assert summary.studies_deleted == 1
    assert set(listed(reader)) == {"ACC-1", "ACC-2", "ACC-3"}
    assert reader.get(f"/orthanc/studies/{gone_id}").status_code == 404
    assert "PID-003" not in reader.get("/orthanc/patients").get_data(as_text=True)
    assert reader.get(f"/orthanc/patients/{gone_patient}").status_code == 404
