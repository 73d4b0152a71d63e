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
    # One sentence per value that reached the modality different from the
    # database (a name transcoded to '^', an item nobody ordered, ...).
    differences: list[str] = field(default_factory=list)


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
    from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]  # made at import

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


def _pn(value: object) -> str:
    """A PN as compared: NFC, no padding, no empty trailing components."""
    import unicodedata

    text = unicodedata.normalize("NFC", str(value if value is not None else ""))
    return "=".join(group.strip().rstrip("^").strip() for group in text.split("=")).rstrip("=")


def _text(value: object) -> str:
    return str(value if value is not None else "").strip()


def compare(items: list[Dataset]) -> list[str]:
    """Each answer's PatientName, PatientID and AccessionNumber against the
    request whose accession it is: what the modality would show, checked
    against what the register holds."""
    from sqlalchemy import select

    from ..extensions import db
    from ..models import ImagingRequest
    from .values import person_name

    accessions = {_text(i.get("AccessionNumber")) for i in items}
    requests = {r.accession_number: r for r in db.session.scalars(
        select(ImagingRequest).where(ImagingRequest.accession_number.in_(accessions)))} if accessions else {}
    out: list[str] = []
    for item in items:
        acc = _text(item.get("AccessionNumber"))
        name, pid = _pn(item.get("PatientName")), _text(item.get("PatientID"))
        req = requests.get(acc)
        if req is None:
            out.append(f"AccessionNumber \u201c{acc}\u201d (PatientName \u201c{name}\u201d, PatientID "
                       f"\u201c{pid}\u201d): no request in ghimaging has this accession number.")
            continue
        expected = _pn(person_name(req.patient.family_name, req.patient.given_name))
        if name != expected:
            out.append(f"{acc}: PatientName reaches the modality as \u201c{name}\u201d; the register has "
                       f"\u201c{expected}\u201d.")
        if pid != req.patient.puid.strip():
            out.append(f"{acc}: PatientID reaches the modality as \u201c{pid}\u201d; the register has "
                       f"\u201c{req.patient.puid}\u201d.")
        if acc != req.accession_number:
            out.append(f"{acc}: AccessionNumber differs from the request's \u201c{req.accession_number}\u201d.")
    return out


def self_test(server: OrthancServer, worklist_dir: str, calling_aet: str = CALLING_AET) -> FindResult:
    """The worklist as a modality gets it, compared with the database: red
    when Orthanc does not answer, and red when any name, PatientID or
    accession number comes back different from the register."""
    result = _query(server, worklist_dir, calling_aet)
    if not result.ok:
        return result
    _refresh_encoding(server)
    result.differences = compare(result.items)
    if result.differences:
        from ..orthanc.servers import encoding_warnings

        result.ok = False
        result.message = (f"{len(result.items)} worklist item(s) found, but {len(result.differences)} value(s) "
                          "differ from the database: the modality does not see what the register holds.")
        hints = encoding_warnings(server)
        result.hint = " ".join(hints) if hints else (
            "Compare the worklist templates and Orthanc's DefaultEncoding setting with what the register holds.")
    else:
        result.message += " Every PatientName, PatientID and AccessionNumber matches the database."
    return result


def _refresh_encoding(server: OrthancServer) -> None:
    """Orthanc's encoding can change without a restart (PUT
    /tools/default-encoding): read it again, so the hint and the warnings
    speak of the encoding that produced these answers."""
    from .. import crypto
    from ..extensions import db
    from ..orthanc.client import OrthancError
    from ..orthanc.servers import client_for, default_encoding

    try:
        with client_for(server, retries=0, total_timeout=10) as client:  # a person waits
            encoding = default_encoding(client)
    except (OrthancError, crypto.CredentialError, ValueError):
        return
    if encoding and encoding != server.default_encoding:
        server.default_encoding = encoding
        db.session.flush()  # the page that ran the test commits


def _query(server: OrthancServer, worklist_dir: str, calling_aet: str = CALLING_AET) -> FindResult:
    if "worklists" not in server.plugin_set:
        return FindResult(False, message=f"The worklists plugin is not loaded in {server.label}.",
                          hint=f'Add the plugin and "Worklists": {{"Enable": true, "Database": "{worklist_dir}"}} '
                               "to Orthanc's configuration, restart Orthanc, then check the server again.")
    host, port, aet = target_for(server, calling_aet)
    try:
        return find(host, port, aet, query_dataset(), calling_aet)
    except (OSError, RuntimeError, ValueError) as exc:
        return FindResult(False, message=f"The worklist query failed: {exc}")
