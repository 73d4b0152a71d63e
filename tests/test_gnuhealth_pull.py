"""Pulling from a real GNU Health 5.0: patients found by PUID or name and
imported into the register (and updated by a later pull), GNU Health's
requested imaging requests imported and offered to the modality (a real
Orthanc's worklist, queried by pynetdicom), problems reported, never
dropped."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.gnuhealth import pull, status, worker
from ghimaging.gnuhealth.settings import client_for, get_config
from ghimaging.models import GnuHealthLink, ImagingRequest, OutboxItem, Patient
from tests.support.gnuhealth import Rpc
from tests.support.orthanc import OrthancServer
from tests.test_worklist_mwl import c_find, query


def gh_patient(admin: Rpc, puid: str, given: str, family: str, dob=date(1975, 6, 7), gender="f") -> int:
    party = admin.create("party.party", {"name": given, "lastname": family, "is_person": True, "is_patient": True,
                                         "gender": gender, "dob": Rpc.date(dob), "ref": puid, "fed_country": "XXX"})
    return admin.create("gnuhealth.patient", {"party": party})


def gh_test(admin: Rpc, code: str, name: str, type_code: str = "CR") -> int:
    types = admin("model.gnuhealth.imaging.test.type.search", [("code", "=", type_code)], 0, 1, None)
    uom = admin("model.product.uom.search", [("symbol", "=", "u")], 0, 1, None)[0]
    tmpl = admin.create("product.template", {"name": name, "type": "service", "default_uom": uom,
                                             "products": [("create", [{}])]})
    product = admin("model.product.product.search", [("template", "=", tmpl)], 0, 1, None)[0]
    return admin.create("gnuhealth.imaging.test", {"code": code, "name": name, "test_type": types[0],
                                                   "product": product})


def gh_request(admin: Rpc, patient: int, test: int, *, urgent=False, comment="", requested=True) -> int:
    doctor = admin("model.gnuhealth.healthprofessional.search", [], 0, 1, None)[0]
    req = admin.create("gnuhealth.imaging.test.request", {
        "patient": patient, "requested_test": test, "doctor": doctor, "date": datetime(2026, 3, 4, 9, 30),
        "urgent": urgent, "comment": comment})
    if requested:
        admin("model.gnuhealth.imaging.test.request.requested", [req])
    return req


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


def _staff(make_user, login):
    make_user("tech", "technologist")
    return login("tech")


def test_patient_found_by_puid_imported_and_updated_by_a_later_pull(app, gnuhealth_settings, make_user, login):
    admin = gnuhealth_settings.admin()
    remote_id = gh_patient(admin, "GH-0451-77", "Élodie", "Lefèvre", dob=date(1988, 12, 1), gender="f")
    c = _staff(make_user, login)
    page = c.get("/gnuhealth/patients?q=GH-0451-77").get_data(as_text=True)
    assert "Lefèvre, Élodie" in page and f'data-gnuhealth-patient="{remote_id}"' in page and "Import" in page
    r = c.post("/gnuhealth/patients/import", {"remote_id": str(remote_id), "q": "GH-0451-77"},
               token_from="/gnuhealth/patients?q=GH-0451-77")
    assert r.status_code == 302
    patient = db.session.scalar(select(Patient).where(Patient.puid == "GH-0451-77"))
    assert (patient.family_name, patient.given_name, patient.birth_date, patient.sex) == \
        ("Lefèvre", "Élodie", date(1988, 12, 1), "F")
    assert r.headers["Location"].endswith(f"/patients/{patient.id}")
    # The local copy says where it came from, on its page too; the register offers the search.
    assert status.patient_link(patient.id).origin == "pulled"
    assert "Imported from GNU Health (patient id" in c.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "Find in GNU Health" in c.get("/patients/").get_data(as_text=True)
    # A later pull brings GNU Health's changes.
    party = admin.search_read("gnuhealth.patient", [("id", "=", remote_id)], ["party"])[0]["party"]
    admin("model.party.party.write", [party], {"lastname": "Lefèvre-Martin", "dob": Rpc.date(date(1988, 12, 2))})
    with client_for(get_config()) as client:
        again = pull.import_patient(client, remote_id)
    assert again.id == patient.id
    db.session.refresh(patient)
    assert (patient.family_name, patient.birth_date) == ("Lefèvre-Martin", date(1988, 12, 2))
    assert db.session.scalar(select(db.func.count()).select_from(Patient)) == 1


def test_patient_found_by_name(app, gnuhealth_settings, make_user, login):
    admin = gnuhealth_settings.admin()
    gh_patient(admin, "GH-1000-01", "Ana", "Silvestre")
    gh_patient(admin, "GH-1000-02", "Rui", "Silvestre", gender="m")
    gh_patient(admin, "GH-1000-03", "Ana", "Other")
    c = _staff(make_user, login)
    page = c.get("/gnuhealth/patients?q=Silvestre").get_data(as_text=True)
    assert "Silvestre, Ana" in page and "Silvestre, Rui" in page and "Other, Ana" not in page
    with client_for(get_config()) as client:
        found = pull.search_patients(client, "silvestre")
    assert sorted((p.puid, p.sex) for p, _ in found) == [("GH-1000-01", "F"), ("GH-1000-02", "M")]


def test_search_says_when_gnuhealth_is_down(app, gnuhealth_settings, make_user, login):
    gnuhealth_settings.kill()
    c = _staff(make_user, login)
    r = c.get("/gnuhealth/patients?q=anyone")
    assert r.status_code == 200 and "refused the connection" in r.get_data(as_text=True)


def test_requested_request_imported_and_found_by_a_modality(app, gnuhealth_settings, catalog, tmp_path, api):
    admin = gnuhealth_settings.admin()
    patient = gh_patient(admin, "GH-2000-01", "Maria", "Gonçalves")
    test = gh_test(admin, "XR-CHEST", "Chest X-ray PA")
    draft = gh_request(admin, patient, test, requested=False)
    remote = gh_request(admin, patient, test, urgent=True, comment="Cough for 3 weeks")
    orthanc = OrthancServer(tmp_path / "orthanc", worklist_dir=tmp_path / "worklists", worklists=True)
    orthanc.start()
    try:
        with client_for(get_config()) as client:
            summary = worker.pull_requests(client)
        assert summary.seen == 1 and len(summary.imported) == 1 and not summary.problems
        req = status.find_by_remote_request(remote)
        assert req is not None and status.find_by_remote_request(draft) is None
        assert req.state == "requested" and req.urgent and req.test.code == "XR-CHEST"
        assert req.patient.puid == "GH-2000-01" and "Cough for 3 weeks" in req.comment
        assert re.fullmatch(r"GH\d+", req.accession_number) and req.study_instance_uid.startswith("2.25.")
        assert status.request_json(req) == {"request_id": remote, "state": "synced", "error": None}
        assert db.session.scalars(select(ImagingRequest).where(status.request_filter(remote))).all() == [req]
        assert db.session.scalars(select(ImagingRequest).where(status.request_filter(draft))).all() == []
        # The API finds it by GNU Health's id and says so in its JSON.
        client = api("physician")
        found = client.get(f"/api/v1/requests?gnuhealth_request_id={remote}").json["items"]
        assert [r["id"] for r in found] == [req.id]
        assert found[0]["gnuhealth"] == {"request_id": remote, "state": "synced", "error": None}
        assert client.get(f"/api/v1/requests?gnuhealth_request_id={draft}").json["items"] == []
        assert client.get("/api/v1/requests?gnuhealth_request_id=x").status_code == 400
        assert client.get(f"/api/v1/requests/{req.id}").json["gnuhealth"]["request_id"] == remote
        # Nothing goes back for GNU Health's own request.
        assert db.session.scalar(select(db.func.count()).select_from(OutboxItem)) == 0
        items = c_find(orthanc, query(accession=req.accession_number))
        assert [str(i.PatientID) for i in items] == ["GH-2000-01"]
        assert str(items[0].PatientName).startswith("Gon")
        # A second pull imports nothing twice.
        with client_for(get_config()) as client:
            again = worker.pull_requests(client)
        assert again.imported == [] and db.session.scalar(select(db.func.count()).select_from(ImagingRequest)) == 1
    finally:
        orthanc.kill()


def test_unknown_test_is_reported_then_imported_once_it_exists(app, gnuhealth_settings, catalog):
    admin = gnuhealth_settings.admin()
    patient = gh_patient(admin, "GH-3000-01", "Joao", "Pires", gender="m")
    test = gh_test(admin, "CT-HEAD", "CT head", type_code="CT")
    remote = gh_request(admin, patient, test)
    with client_for(get_config()) as client:
        summary = worker.pull_requests(client)
    assert summary.imported == [] and "GNU Health test CT-HEAD (CT head) has no ghimaging test" in summary.problems[0]
    problem = db.session.scalar(select(GnuHealthLink).where(GnuHealthLink.kind == "request",
                                                         GnuHealthLink.remote_id == remote))
    assert problem.local_id is None and "CT-HEAD" in problem.problem
    from ghimaging.catalog.service import modality_by_code, save_test

    save_test(None, code="CT-HEAD", name="CT head", modality=modality_by_code("CT"), ae_title="CT1")
    with client_for(get_config()) as client:
        summary = worker.pull_requests(client)
    assert len(summary.imported) == 1 and not summary.problems
    assert status.find_by_remote_request(remote).test.code == "CT-HEAD"
    assert status.import_problems() == []


def test_request_deleted_in_gnuhealth_is_reported_not_cancelled(app, gnuhealth_settings, catalog):
    admin = gnuhealth_settings.admin()
    patient = gh_patient(admin, "GH-4000-01", "Ines", "Costa")
    test = gh_test(admin, "XR-CHEST", "Chest X-ray PA")
    remote = gh_request(admin, patient, test)
    with client_for(get_config()) as client:
        worker.pull_requests(client)
    req = status.find_by_remote_request(remote)
    admin("model.gnuhealth.imaging.test.request.delete", [remote])
    with client_for(get_config()) as client:
        summary = worker.pull_requests(client)
    db.session.refresh(req)
    assert req.state == "requested"  # never cancelled behind anyone's back
    assert any(req.accession_number in p and "Deleted in GNU Health" in p for p in summary.problems)
    assert "Deleted in GNU Health" in status.request_json(req)["error"]


def test_cli_sync_pulls_and_fails_when_gnuhealth_is_down(app, gnuhealth_settings, catalog):
    admin = gnuhealth_settings.admin()
    patient = gh_patient(admin, "GH-5000-01", "Luis", "Mota", gender="m")
    gh_request(admin, patient, gh_test(admin, "XR-CHEST", "Chest X-ray PA"))
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["gnuhealth", "sync"])
    assert ok.exit_code == 0, ok.output
    assert "pull: 1 requested in GNU Health, 1 imported" in ok.output and "outbox:" in ok.output
    gnuhealth_settings.kill()
    down = runner.invoke(args=["gnuhealth", "sync"])
    assert down.exit_code != 0 and "GNU Health could not be reached" in down.output


# -- review fixes ------------------------------------------------------------------

def test_same_puid_other_person_is_refused_never_overwritten(app, gnuhealth_settings, create_patient, make_user,
                                                            login):
    """Local PUID X is Alice; GNU Health's PUID X is Bob: importing Bob
    refuses with both identities, and Alice stays Alice (and unlinked)."""
    admin = gnuhealth_settings.admin()
    alice = create_patient(puid="GH-6000-01", family_name="Andrade", given_name="Alice",
                           birth_date=date(1970, 1, 2), sex="F")
    bob = gh_patient(admin, "GH-6000-01", "Bob", "Barros", dob=date(1980, 3, 4), gender="m")
    with client_for(get_config()) as client, pytest.raises(pull.ImportProblem) as exc:
        pull.import_patient(client, bob)
    text = str(exc.value)
    assert "Barros, Bob (1980-03-04)" in text and "Andrade, Alice (1970-01-02)" in text
    db.session.refresh(alice)
    assert (alice.family_name, alice.given_name, alice.birth_date, alice.sex) == \
        ("Andrade", "Alice", date(1970, 1, 2), "F")
    assert status.patient_link(alice.id) is None
    # From the page: Alice is not offered as Bob's local copy; importing
    # gives a message, not a 500, and Alice stays unchanged.
    c = _staff(make_user, login)
    page = c.get("/gnuhealth/patients?q=GH-6000-01").get_data(as_text=True)
    assert "Barros, Bob" in page and "Andrade, Alice" not in page and "Update from GNU Health" not in page
    r = c.post("/gnuhealth/patients/import", {"remote_id": str(bob), "q": "GH-6000-01"},
               token_from="/gnuhealth/patients?q=GH-6000-01")
    assert r.status_code == 302
    assert "Barros, Bob" in c.get(r.headers["Location"]).get_data(as_text=True)
    db.session.refresh(alice)
    assert alice.given_name == "Alice"
    # The same person written without accents or in other case is the same person.
    carla = create_patient(puid="GH-6000-02", family_name="Gonçalves", given_name="Carla",
                           birth_date=date(1990, 5, 6), sex="F")
    theirs = gh_patient(admin, "GH-6000-02", "CARLA", "Goncalves", dob=date(1990, 5, 6))
    with client_for(get_config()) as client:
        assert pull.import_patient(client, theirs).id == carla.id
    assert status.patient_link(carla.id).remote_id == theirs


def test_a_patient_id_too_big_for_xmlrpc_is_refused(app, gnuhealth_settings, make_user, login):
    c = _staff(make_user, login)
    for bad in (str(10**30), "-1", "x"):
        r = c.post("/gnuhealth/patients/import", {"remote_id": bad}, token_from="/gnuhealth/patients")
        assert r.status_code == 302, bad
        assert "whole number" in c.get(r.headers["Location"]).get_data(as_text=True)


def test_own_request_whose_push_answer_was_lost_is_relinked_not_imported(app, gnuhealth, create_patient,
                                                                         create_request):
    """GNU Health made our request and moved it to requested, but the answer
    was lost: the next pull links it to our request and imports nothing."""
    from ghimaging.gnuhealth.settings import configure
    from ghimaging.models._time import utcnow
    from tests.support.gnuhealth import DropProxy

    proxy = DropProxy(gnuhealth.port)
    try:
        configure(url=proxy.url, database=gnuhealth.database, username=gnuhealth.user,
                  password=gnuhealth.password)
        req = create_request(create_patient(puid="GHI-6100-0001"), submit=True)
        proxy.drop_next(b"<methodName>model.gnuhealth.imaging.test.request.requested</methodName>")
        drained = worker.drain()
        assert drained.retrying == 1 and proxy.dropped
        there = gnuhealth.admin().search_read("gnuhealth.imaging.test.request",
                                              [("request_line", "=", req.accession_number)], ["state"])
        assert [r["state"] for r in there] == ["requested"]
        with client_for(get_config()) as client:
            summary = worker.pull_requests(client)
        assert summary.seen == 1 and summary.imported == [] and not summary.problems
        assert db.session.scalar(select(db.func.count()).select_from(ImagingRequest)) == 1
        assert status.find_by_remote_request(there[0]["id"]).id == req.id
        assert status.of_request(req).origin == "pushed"
        # The retry then finishes the push against the same request there.
        db.session.execute(OutboxItem.__table__.update().values(next_try_at=utcnow()))
        db.session.commit()
        assert worker.drain().sent == 1
        assert len(gnuhealth.admin().search_read("gnuhealth.imaging.test.request", [], ["id"])) == 1
    finally:
        proxy.close()
