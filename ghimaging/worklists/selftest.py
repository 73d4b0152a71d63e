"""Ask Orthanc for the worklist the way a modality does (MWL C-FIND with
pynetdicom) and explain what went wrong when it does not answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydicom.dataset import Dataset

from ..models import OrthancServer

CALLING_AET = "GHIMAGING"


@dataclass
class FindResult:
    ok: bool
    items: list[Dataset] = field(default_factory=list)
    message: str = ""
    hint: str = ""


def query_dataset(modality: str = "", station: str = "", date: str = "", patient_name: str = "") -> Dataset:
    ds = Dataset()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
               "StudyInstanceUID", "RequestedProcedureDescription", "RequestedProcedureID",
               "ReferringPhysicianName", "SpecificCharacterSet"):
        setattr(ds, kw, "")
    if patient_name:
        ds.PatientName = patient_name
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate = date
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepID = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def find(host: str, port: int, called_aet: str, query: Dataset, calling_aet: str = CALLING_AET,
         timeout: float = 10) -> FindResult:
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        return FindResult(False, message=f"No DICOM association with {called_aet}@{host}:{port}.",
                          hint="Check Orthanc's DICOM port and AET, and that it is running.")
    items: list[Dataset] = []
    final_status = None
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            if status is None or "Status" not in status:
                final_status = None
                break
            final_status = status.Status
            if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                items.append(identifier)
        aborted = assoc.is_aborted
    finally:
        if assoc.is_established:
            assoc.release()
    if final_status is None or aborted:
        return FindResult(False, items, "Orthanc accepted the association, then dropped the worklist query.",
                          "Orthanc 1.10 refuses worklist queries unless \"DicomAlwaysAllowFindWorklist\": true "
                          "is in its configuration, or the calling AET (" + calling_aet + ") is declared in "
                          "\"DicomModalities\" with \"AllowFindWorklist\": true. Also check that the "
                          "worklists plugin is enabled.")
    if final_status == 0xC000 or final_status == 0x0122 or final_status not in (0x0000, 0xFF00, 0xFF01):
        return FindResult(False, items, f"Orthanc answered the worklist query with status 0x{final_status:04X}.",
                          "Is the worklists plugin loaded (\"Worklists\": {\"Enable\": true, \"Database\": ...})?")
    return FindResult(True, items, f"{len(items)} worklist item(s) found.")


def target_for(server: OrthancServer, calling_aet: str = CALLING_AET) -> tuple[str, int, str]:
    host = urlsplit(server.url).hostname or "127.0.0.1"
    return host, server.dicom_port or 4242, server.dicom_aet or "ORTHANC"


def self_test(server: OrthancServer, worklist_dir: str, calling_aet: str = CALLING_AET) -> FindResult:
    if "worklists" not in server.plugin_set:
        return FindResult(False, message=f"The worklists plugin is not loaded in {server.label}.",
                          hint=f'Add the plugin and "Worklists": {{"Enable": true, "Database": "{worklist_dir}"}} '
                               "to Orthanc's configuration, restart Orthanc, then check the server again.")
    host, port, aet = target_for(server, calling_aet)
    try:
        return find(host, port, aet, query_dataset(), calling_aet)
    except (OSError, RuntimeError, ValueError) as exc:
        return FindResult(False, message=f"The worklist query failed: {exc}")
