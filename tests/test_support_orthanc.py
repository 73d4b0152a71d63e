"""The test-support code itself, against a real Orthanc 1.10.1.

Nothing here is skipped: without the ``Orthanc`` binary every test fails
with a message saying to install the Debian package (the test command does).
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from tests.support import dicomgen
from tests.support.orthanc import ORTHANC_BIN, OrthancError, OrthancServer, SilentServer, find_free_port

MWL_FIND = UID("1.2.840.10008.5.1.4.31")


@pytest.fixture
def orthanc(tmp_path):
    if not Path(ORTHANC_BIN).is_file():
        pytest.fail(f"{ORTHANC_BIN} is missing: install Debian's orthanc package "
                    "(apt-get install orthanc); these tests need a real Orthanc")
    with OrthancServer(tmp_path / "orthanc") as server:
        yield server


def _three_instances_two_studies() -> list[Dataset]:
    study_a, study_b = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    return [
        dicomgen.make_instance("P1", "DOE^JANE", study_uid=study_a, accession="ACC-A", instance_number=1),
        dicomgen.make_instance("P1", "DOE^JANE", study_uid=study_a, accession="ACC-A", instance_number=2),
        dicomgen.make_instance("P2", "ROE^RICHARD", study_uid=study_b, accession="ACC-B", modality="CT"),
    ]


def _worklist_file(path: Path, patient_id: str, name: str, charset: str = "ISO_IR 192") -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MWL_FIND
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = charset
    ds.PatientName, ds.PatientID, ds.AccessionNumber = name, patient_id, patient_id
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = "CR", "CR1"
    step.ScheduledProcedureStepStartDate = "20261123"
    ds.ScheduledProcedureStepSequence = [step]
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _worklist_find(server: OrthancServer, calling_aet: str = "CR1") -> list[Dataset] | None:
    """The identifiers a modality receives, or None when Orthanc drops the query."""
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet)
    assert assoc.is_established
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    query.PatientName, query.PatientID = "", ""
    step = Dataset()
    step.Modality = "CR"
    query.ScheduledProcedureStepSequence = [step]
    found, refused = [], False
    for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
        if not status:  # no status at all: Orthanc aborted the association
            refused = True
        elif status.Status in (0xFF00, 0xFF01):
            found.append(identifier)
    if assoc.is_established:
        assoc.release()
    return None if refused else found


def test_uploaded_studies_are_listed_with_credentials_and_refused_without(orthanc):
    answers = [orthanc.upload(ds) for ds in _three_instances_two_studies()]

    assert [a["Status"] for a in answers] == ["Success"] * 3
    studies = requests.get(f"{orthanc.url}/studies", auth=orthanc.auth, timeout=10)
    assert studies.status_code == 200
    assert sorted(studies.json()) == sorted({a["ParentStudy"] for a in answers})
    assert requests.get(f"{orthanc.url}/studies", timeout=10).status_code == 401
    assert requests.get(f"{orthanc.url}/studies", auth=(orthanc.username, "wrong"),
                        timeout=10).status_code == 401


def test_upload_accepts_bytes_paths_and_datasets_and_reports_already_stored(orthanc, tmp_path):
    ds = dicomgen.make_instance("P9", "PATH^TEST")
    dicomgen.write(ds, tmp_path / "one.dcm")

    assert orthanc.upload(tmp_path / "one.dcm")["Status"] == "Success"
    assert orthanc.upload(dicomgen.to_bytes(ds))["Status"] == "AlreadyStored"
    assert orthanc.upload(ds)["Status"] == "AlreadyStored"
    with pytest.raises(OrthancError, match="400"):
        orthanc.upload(b"not dicom at all")


def test_changes_last_grows_with_each_upload(orthanc):
    assert orthanc.changes_last() == 0
    seen = []
    for ds in _three_instances_two_studies():
        orthanc.upload(ds)
        seen.append(orthanc.changes_last())

    assert seen == sorted(seen) and len(set(seen)) == 3 and seen[0] > 0
    changes = orthanc.get("/changes?since=0&limit=1000")
    assert changes["Last"] == seen[-1]
    assert sum(c["ChangeType"] == "NewStudy" for c in changes["Changes"]) == 2


def test_preview_of_generated_instance_is_a_png(orthanc):
    answer = orthanc.upload(dicomgen.make_instance("P1", "DOE^JANE", rows=32, cols=48))

    response = orthanc.session.get(f"{orthanc.url}/instances/{answer['ID']}/preview", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_non_ascii_names_are_stored_intact_in_each_charset(orthanc):
    names = {"ISO_IR 192": "Müller^Jürgen", "ISO_IR 100": "Müller^Jürgen", "GB18030": "王^小明"}
    for n, (charset, name) in enumerate(names.items()):
        orthanc.upload(dicomgen.make_instance(f"CS{n}", name, charset=charset))

    patients = orthanc.get("/patients?expand")
    stored = {p["MainDicomTags"]["PatientID"]: p["MainDicomTags"]["PatientName"] for p in patients}
    assert stored == {"CS0": "Müller^Jürgen", "CS1": "Müller^Jürgen", "CS2": "王^小明"}


def test_data_survives_kill_and_restart_on_the_same_url(orthanc):
    for ds in _three_instances_two_studies():
        orthanc.upload(ds)
    url, last = orthanc.url, orthanc.changes_last()

    orthanc.kill()
    assert not orthanc.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/system", auth=orthanc.auth, timeout=5)
    orthanc.restart()

    assert orthanc.url == url
    assert len(orthanc.get("/studies")) == 2
    assert orthanc.changes_last() == last


def test_wipe_empties_the_database_and_resets_changes_last(orthanc):
    for ds in _three_instances_two_studies():
        orthanc.upload(ds)
    assert orthanc.changes_last() > 0

    orthanc.wipe()

    assert orthanc.get("/studies") == []
    assert orthanc.changes_last() == 0


def test_start_fails_loudly_with_the_log_when_orthanc_cannot_run(tmp_path):
    server = OrthancServer(tmp_path / "bad", extra_config={"StorageDirectory": "/proc/forbidden"},
                           start_timeout=15)
    with pytest.raises(OrthancError, match="did not start") as failure:
        server.start()
    assert "Orthanc" in str(failure.value).split("\n", 1)[1]  # the log tail follows
    assert not server.running


def test_start_picks_new_ports_when_the_chosen_ones_are_taken(tmp_path):
    with SilentServer() as squatter:
        server = OrthancServer(tmp_path / "o")
        server.http_port = squatter.port  # as if another process took it after the choice
        with server:
            assert server.http_port != squatter.port
            assert server.get("/system")["HttpPort"] == server.http_port


def test_fixed_ports_are_used_as_given(tmp_path):
    http_port, dicom_port = find_free_port(), find_free_port()
    with OrthancServer(tmp_path / "o", http_port=http_port, dicom_port=dicom_port, aet="GHTEST") as server:
        system = server.get("/system")
    assert (system["HttpPort"], system["DicomPort"], system["DicomAet"]) == (http_port, dicom_port, "GHTEST")


def test_worklists_plugin_is_listed_only_when_enabled(orthanc, tmp_path):
    assert "worklists" not in orthanc.get("/plugins")
    with OrthancServer(tmp_path / "wl", worklists=True) as with_worklists:
        assert "worklists" in with_worklists.get("/plugins")
        assert with_worklists.worklist_dir.is_dir()


def test_worklist_find_answers_from_the_folder_in_utf8_when_configured(tmp_path):
    with OrthancServer(tmp_path / "wl", worklists=True, default_encoding="Utf8") as server:
        _worklist_file(server.worklist_dir / "A.wl", "PA", "Müller^Jürgen")
        _worklist_file(server.worklist_dir / "B.wl", "PB", "王^小明", charset="GB18030")
        found = _worklist_find(server)
    assert found is not None
    assert {d.PatientID: str(d.PatientName) for d in found} == {"PA": "Müller^Jürgen", "PB": "王^小明"}


def test_worklist_find_is_refused_unless_allowed_or_modality_declared(tmp_path):
    with OrthancServer(tmp_path / "no", worklists=True, always_allow_find_worklist=False) as server:
        _worklist_file(server.worklist_dir / "A.wl", "PA", "DOE^JANE")
        assert _worklist_find(server) is None

    declared = {"cr1": {"AET": "CR1", "Host": "127.0.0.1", "Port": 104, "AllowFindWorklist": True}}
    with OrthancServer(tmp_path / "yes", worklists=True, always_allow_find_worklist=False,
                       dicom_modalities=declared) as server:
        _worklist_file(server.worklist_dir / "A.wl", "PA", "DOE^JANE")
        assert [d.PatientID for d in _worklist_find(server)] == ["PA"]
        assert "cr1" in server.get("/modalities")


def test_silent_server_makes_requests_time_out():
    with SilentServer() as silent, pytest.raises(requests.Timeout):
        requests.get(silent.url, timeout=1)


def test_generated_studies_are_deterministic_per_seed():
    first = [(d.PatientID, d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
             for d in dicomgen.generate_studies(3, 2, series_per_study=2, instances_per_series=2)]
    again = [(d.PatientID, d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
             for d in dicomgen.generate_studies(3, 2, series_per_study=2, instances_per_series=2)]
    other = {d.StudyInstanceUID for d in dicomgen.generate_studies(3, 2, seed=1)}

    assert first == again
    assert len(first) == 24
    assert len({row[1] for row in first}) == 6 and len({row[3] for row in first}) == 24
    assert not other & {row[1] for row in first}


def test_generated_studies_load_into_orthanc_with_matching_counts(orthanc):
    for ds in dicomgen.generate_studies(4, 3, series_per_study=2, rows=16, cols=16):
        orthanc.upload(ds)

    studies = orthanc.get("/studies?expand")
    assert len(orthanc.get("/patients")) == 4
    assert len(studies) == 12
    assert all(len(s["Series"]) == 2 for s in studies)
    assert len({s["MainDicomTags"]["AccessionNumber"] for s in studies}) == 12


def test_generated_file_reads_back_with_explicit_vr_little_endian_meta():
    ds = dicomgen.make_instance("P1", "Müller^Jürgen", accession="A1")
    back = pydicom.dcmread(io.BytesIO(dicomgen.to_bytes(ds)))

    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Müller^Jürgen"
    assert len(back.PixelData) == 64 * 64 * 2
