"""Ask Orthanc for the worklist the way a modality does (MWL C-FIND with
pynetdicom) and explain what went wrong when it does not answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
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
        target = f"{called_aet}@{host}:{port}"  # formatted outside the gettext call: pybabel skips f-strings there
        return FindResult(False, message=_("No DICOM association with %(target)s.", target=target),
                          hint=_("Check Orthanc's DICOM port and AET, and that it is running."))
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
        return FindResult(False, items, _("Orthanc accepted the association, then dropped the worklist query."),
                          _("Orthanc 1.10 refuses worklist queries unless %(always)s is in its configuration, or "
                            "the calling AET (%(aet)s) is declared in %(modalities)s with %(allow)s. Also check "
                            "that the worklists plugin is enabled.", always='"DicomAlwaysAllowFindWorklist": true',
                            aet=calling_aet, modalities='"DicomModalities"', allow='"AllowFindWorklist": true'))
    if final_status == 0xC000 or final_status == 0x0122 or final_status not in (0x0000, 0xFF00, 0xFF01):
        shown = f"0x{final_status:04X}"
        return FindResult(False, items, _("Orthanc answered the worklist query with status %(status)s.",
                                          status=shown),
                          _("Is the worklists plugin loaded (%(config)s)?",
                            config='"Worklists": {"Enable": true, "Database": ...}'))
    return FindResult(True, items, _("%(count)s worklist item(s) found.", count=len(items)))


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
            out.append(_("AccessionNumber “%(acc)s” (PatientName “%(name)s”, PatientID “%(pid)s”): no "
                         "request in ghimaging has this accession number.", acc=acc, name=name, pid=pid))
            continue
        expected = _pn(person_name(req.patient.family_name, req.patient.given_name))
        if name != expected:
            out.append(_("%(acc)s: PatientName reaches the modality as \u201c%(got)s\u201d; the register has "
                         "\u201c%(expected)s\u201d.", acc=acc, got=name, expected=expected))
        if pid != req.patient.puid.strip():
            out.append(_("%(acc)s: PatientID reaches the modality as \u201c%(got)s\u201d; the register has "
                         "\u201c%(expected)s\u201d.", acc=acc, got=pid, expected=req.patient.puid))
        if acc != req.accession_number:
            out.append(_("%(acc)s: AccessionNumber differs from the request's \u201c%(expected)s\u201d.", acc=acc,
                         expected=req.accession_number))
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
        result.message = _("%(count)s worklist item(s) found, but %(differ)s value(s) differ from the database: the "
                           "modality does not see what the register holds.", count=len(result.items),
                           differ=len(result.differences))
        hints = encoding_warnings(server)
        result.hint = " ".join(hints) if hints else (
            _("Compare the worklist templates and Orthanc's DefaultEncoding setting with what the register holds."))
    else:
        result.message = _("%(count)s worklist item(s) found. Every PatientName, PatientID and AccessionNumber "
                           "matches the database.", count=len(result.items))
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
        return FindResult(False, message=_("The worklists plugin is not loaded in %(server)s.", server=server.label),
                          hint=_("Add the plugin and %(config)s to Orthanc's configuration, restart Orthanc, then "
                                 "check the server again.",
                                 config='"Worklists": {"Enable": true, "Database": "' + worklist_dir + '"}'))
    host, port, aet = target_for(server, calling_aet)
    try:
        return find(host, port, aet, query_dataset(), calling_aet)
    except (OSError, RuntimeError, ValueError) as exc:
        return FindResult(False, message=_("The worklist query failed: %(error)s", error=exc))
