"""What the incremental sync costs in Orthanc requests, counted against a real
Orthanc 1.10.1 with a counting wrapper around the client's HTTP session: a
new study costs at most three requests whatever its number of series, and a
Stable* change of a study that did not change costs none beyond its
/changes page. Also: the incremental and the full sync write the same rows.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import OrthancSeries, OrthancServer, OrthancStudy
from ghimaging.orthanc import servers, sync
from ghimaging.orthanc.client import OrthancClient
from tests.support import dicomgen
from tests.support.orthanc import OrthancServer as RealOrthanc


class Counter:
    """A client factory whose clients record every HTTP call they make."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def factory(self, server: OrthancServer) -> OrthancClient:
        client = servers.client_for(server)
        send = client.session.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, urlsplit(url).path))
            return send(method, url, *args, **kwargs)

        client.session.request = counted  # type: ignore[method-assign]
        return client

    def beyond_changes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[1] != "/changes"]


@pytest.fixture
def slow_orthanc(tmp_path):
    """A real Orthanc whose studies become stable 3 s after their last
    instance, so a sync can run before the Stable* changes come."""
    server = RealOrthanc(tmp_path / "orthanc-slow", stable_age=3)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def slow_row(app, slow_orthanc):
    row = servers.add_server(label="Slow", url=slow_orthanc.url, username=slow_orthanc.username,
                             password=slow_orthanc.password)
    db.session.commit()
    assert sync.run(row.id).error == ""  # the full sync of an empty Orthanc; /changes from now on
    return row


def wait_for_stable(orthanc: RealOrthanc, since: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        changes = orthanc.get("/changes", params={"since": since, "limit": 1000})["Changes"]
        if any(c["ChangeType"] == "StableStudy" for c in changes):
            return
        time.sleep(0.2)
    raise AssertionError("Orthanc logged no StableStudy in time")


def study_row() -> OrthancStudy:
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy))
    assert study is not None
    return study


def test_a_new_study_of_50_series_costs_at_most_three_requests(slow_row, slow_orthanc):
    datasets = list(dicomgen.generate_studies(1, 1, 50, 1, seed=3, rows=8, cols=8))
    slow_orthanc.upload_many([dicomgen.to_bytes(ds) for ds in datasets])
    counter = Counter()
    summary = sync.run(slow_row.id, client_factory=counter.factory)
    assert summary.error == "" and summary.mode == "incremental"
    assert len(counter.beyond_changes()) <= 3, counter.beyond_changes()
    assert len(counter.calls) == summary.pages + len(counter.beyond_changes())
    study = study_row()
    assert study.series_count == 50 and study.instance_count == 50


def test_a_stable_change_of_an_unchanged_study_costs_nothing_beyond_its_changes_page(slow_row, slow_orthanc):
    slow_orthanc.upload_many([dicomgen.to_bytes(ds) for ds in dicomgen.generate_studies(1, 1, 3, 2, seed=4,
                                                                                         rows=8, cols=8)])
    first = sync.run(slow_row.id)
    assert first.error == "" and study_row().instance_count == 6 and not study_row().stable
    wait_for_stable(slow_orthanc, first.last_change)
    counter = Counter()
    summary = sync.run(slow_row.id, client_factory=counter.factory)
    assert summary.error == "" and summary.changes >= 4  # StableSeries x3, StableStudy, StablePatient
    assert counter.beyond_changes() == []
    study = study_row()
    assert study.stable and study.series_count == 3 and study.instance_count == 6


def test_an_instance_added_to_a_known_series_is_read_at_its_stable_change(slow_row, slow_orthanc):
    """A NewInstance names no study: its Stable* change must read the study
    again, even though the study was read before."""
    first = dicomgen.make_instance("COST-1", "COST^ONE", rows=8, cols=8)
    slow_orthanc.upload(dicomgen.to_bytes(first))
    assert sync.run(slow_row.id).error == ""
    wait_for_stable(slow_orthanc, 0)
    assert sync.run(slow_row.id).error == ""
    assert study_row().instance_count == 1
    second = dicomgen.make_instance("COST-1", "COST^ONE", study_uid=first.StudyInstanceUID,
                                    series_uid=first.SeriesInstanceUID, instance_number=2, rows=8, cols=8)
    slow_orthanc.upload(dicomgen.to_bytes(second))
    before = sync.run(slow_row.id)  # only a NewInstance so far: nothing names the study
    assert before.error == "" and study_row().instance_count == 1
    wait_for_stable(slow_orthanc, before.last_change)
    counter = Counter()
    assert sync.run(slow_row.id, client_factory=counter.factory).error == ""
    assert 2 <= len(counter.beyond_changes()) <= 3, counter.beyond_changes()
    assert study_row().instance_count == 2


def test_incremental_and_full_sync_write_the_same_rows(slow_row, slow_orthanc):
    long = "X" * 60
    slow_orthanc.upload(dicomgen.to_bytes(dicomgen.make_instance(
        "MAP-1", "MAPPING^ONE", accession="  ACC-9  ", study_description=long, institution=long,
        series_description=long, patient_birth_date="19800101", patient_sex="F", rows=8, cols=8)))
    assert sync.run(slow_row.id).error == ""
    skip = {"id", "seen_generation", "synced_at", "synced_change", "stable", "orthanc_last_update"}

    def rows() -> tuple[dict[str, Any], dict[str, Any]]:
        study = study_row()
        series = db.session.scalar(select(OrthancSeries))
        assert series is not None
        return ({c.name: getattr(study, c.key) for c in OrthancStudy.__table__.columns if c.name not in skip},
                {c.name: getattr(series, c.key) for c in OrthancSeries.__table__.columns if c.name not in skip})

    incremental = rows()
    assert incremental[0]["accession_number"] == "ACC-9" and incremental[0]["description"] == long
    assert incremental[1]["description"] == long and incremental[0]["patient_id"] == "MAP-1"
    assert sync.run(slow_row.id, mode="full").error == ""
    assert rows() == incremental


def test_values_longer_than_their_column_are_cut_to_the_models_length():
    from ghimaging.orthanc import mapping

    data = {"ID": "s1", "MainDicomTags": {"StudyDescription": "D" * 300, "AccessionNumber": " A1 "},
            "PatientMainDicomTags": {"PatientID": "P" * 80, "PatientName": "N" * 300}}
    values = mapping.study_values(data)
    assert values["description"] == "D" * 200 and values["accession_number"] == "A1"
    assert values["patient_id"] == "P" * 64 and values["patient_name"] == "N" * 200
    assert mapping.patient_values(data)["patient_id"] == values["patient_id"]
