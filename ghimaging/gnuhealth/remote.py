"""GNU Health's records as ghimaging needs them, read and written through
the client (the facts behind each call are in DESIGN.md section 3).

Each record ghimaging creates there has a lookup here by a key ghimaging
chose (PUID, code, our accession number as the request's order line, the
request of a result, the name of an attachment): ``push`` looks first and
creates only what is not there, so running a push twice, or again after an
answer was lost, creates nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from .client import GnuHealthClient, RemoteUserError

PATIENT = "gnuhealth.patient"
PARTY = "party.party"
PROFESSIONAL = "gnuhealth.healthprofessional"
TEST_TYPE = "gnuhealth.imaging.test.type"
TEST = "gnuhealth.imaging.test"
REQUEST = "gnuhealth.imaging.test.request"
RESULT = "gnuhealth.imaging.test.result"
ATTACHMENT = "ir.attachment"
STUDY = "gnuhealth.imaging_orthanc.study"

_PATIENT_FIELDS = ["puid", "lastname", "dob", "gender", "biological_sex", "party.name", "rec_name"]
_REQUEST_FIELDS = ["state", "patient", "requested_test", "requested_test.code", "requested_test.name",
                   "doctor.rec_name", "date", "urgent", "comment", "request", "request_line",
                   "context.rec_name"]


@dataclass
class RemotePatient:
    id: int
    puid: str
    given_name: str
    family_name: str
    birth_date: date | None
    sex: str  # F, M or O, as ghimaging and DICOM say it

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RemotePatient:
        party = row.get("party.") or {}
        sex = (row.get("biological_sex") or row.get("gender") or "").lower()
        dob = row.get("dob")
        return cls(id=int(row["id"]), puid=str(row.get("puid") or ""), given_name=str(party.get("name") or ""),
                   family_name=str(row.get("lastname") or ""),
                   birth_date=dob if isinstance(dob, date) else None,
                   sex={"f": "F", "m": "M"}.get(sex, "O"))

    @property
    def full_name(self) -> str:
        return f"{self.family_name}, {self.given_name}" if self.given_name else self.family_name

    def identity(self) -> str:
        born = self.birth_date.isoformat() if self.birth_date else _("birth date unknown")
        return f"{self.full_name} ({born})"

    def differs_from(self, family_name: str, given_name: str, birth_date: date | None) -> list[str]:
        """What makes this GNU Health patient another person than the one
        named: family or given name (compared without case and accents),
        birth date (when both are known), in the reader's language. Empty
        when they agree."""
        from ..models.patients import fold

        out = []
        if fold(self.family_name or self.given_name).strip() != fold(family_name).strip():
            out.append(_("family name"))
        if fold(self.given_name).strip() != fold(given_name).strip():
            out.append(_("given name"))
        if self.birth_date and birth_date and self.birth_date != birth_date:
            out.append(_("birth date"))
        return out


def _gender(sex: str) -> str:
    return {"F": "f", "M": "m"}.get(sex, "u")


class Remote:
    """GNU Health seen through one client."""

    def __init__(self, client: GnuHealthClient):
        self.client = client

    # -- patients -----------------------------------------------------------------
    def find_patients(self, query: str, limit: int = 20) -> list[RemotePatient]:
        """By PUID exactly (case-sensitive there), else by name (GNU Health's
        ``ilike``: on SQLite it folds neither accents nor non-ASCII case)."""
        query = query.strip()
        rows = self.client.search_read(PATIENT, [("puid", "=", query)], _PATIENT_FIELDS, limit=limit)
        if not rows:
            rows = self.client.search_read(PATIENT, [("rec_name", "ilike", f"%{query}%")], _PATIENT_FIELDS,
                                           limit=limit, order=[["id", "ASC"]])
        found = [RemotePatient.from_row(r) for r in rows]
        # Names are function fields there: GNU Health cannot order by them.
        return sorted(found, key=lambda p: (p.family_name.casefold(), p.given_name.casefold(), p.id))

    def patient(self, remote_id: int) -> RemotePatient | None:
        rows = self.client.search_read(PATIENT, [("id", "=", remote_id)], _PATIENT_FIELDS, limit=1)
        return RemotePatient.from_row(rows[0]) if rows else None

    def patient_by_puid(self, puid: str) -> int | None:
        ids = self.client.search(PATIENT, [("puid", "=", puid)], limit=1)
        return int(ids[0]) if ids else None

    def create_patient(self, *, puid: str, family_name: str, given_name: str, birth_date: date | None,
                       sex: str) -> int:
        """The party (one per call: GNU Health refuses two), then the patient;
        a party that already has the PUID is reused. When someone else
        creates it between our look-up and our create (another ghimaging
        process, a clerk), GNU Health refuses ours as a duplicate (``ref_uniq``
        "The PUID must be unique", ``name_uniq`` "The Patient already
        exists"): the one it has is looked up again and returned. The caller
        compares its identity (see ``push.ensure_patient``)."""
        parties = self.client.search(PARTY, [("ref", "=", puid)], limit=1)
        if parties:
            party = int(parties[0])
        else:
            values: dict[str, Any] = {"name": given_name or family_name, "lastname": family_name,
                                      "is_person": True, "is_patient": True, "gender": _gender(sex),
                                      "ref": puid, "fed_country": "XXX"}
            if birth_date:
                values["dob"] = birth_date
            try:
                party = int(self.client.create(PARTY, [values])[0])
            except RemoteUserError:
                again = self.client.search(PARTY, [("ref", "=", puid)], limit=1)
                if not again:
                    raise
                party = int(again[0])
        try:
            return int(self.client.create(PATIENT, [{"party": party}])[0])
        except RemoteUserError:
            again = self.client.search(PATIENT, [("party", "=", party)], limit=1)
            if not again:
                raise
            return int(again[0])

    # -- professionals --------------------------------------------------------------
    def professional_of_login(self, login: str) -> int | None:
        ids = self.client.search(PROFESSIONAL, [("party.internal_user.login", "=", login)], limit=1)
        return int(ids[0]) if ids else None

    # -- tests ------------------------------------------------------------------------
    def test_by_code(self, code: str) -> int | None:
        ids = self.client.search(TEST, [("code", "=", code), ("active", "in", [True, False])], limit=1)
        return int(ids[0]) if ids else None

    def tests(self) -> list[dict[str, Any]]:
        return self.client.search_read(TEST, [], ["code", "name", "test_type.code", "active"],
                                       order=[["code", "ASC"]])

    def create_test(self, *, code: str, name: str, type_code: str, type_name: str) -> int:
        """Its type (by code, created when missing) and a service product, then the test."""
        types = self.client.search(TEST_TYPE, [("code", "=", type_code)], limit=1)
        test_type = int(types[0]) if types else int(self.client.create(TEST_TYPE, [{"code": type_code,
                                                                                     "name": type_name}])[0])
        uoms = self.client.search("product.uom", [("symbol", "=", "u")], limit=1)
        if not uoms:
            raise RemoteUserError(_("GNU Health has no unit 'u' for the test's product."))
        template = int(self.client.create("product.template", [{
            "name": name, "type": "service", "default_uom": uoms[0], "products": [("create", [{}])]}])[0])
        products = self.client.search("product.product", [("template", "=", template)], limit=1)
        return int(self.client.create(TEST, [{"code": code, "name": name, "test_type": test_type,
                                              "product": products[0]}])[0])

    # -- requests -----------------------------------------------------------------------
    def request_by_line(self, line: str) -> dict[str, Any] | None:
        rows = self.client.search_read(REQUEST, [("request_line", "=", line)], _REQUEST_FIELDS, limit=1)
        return rows[0] if rows else None

    def request(self, remote_id: int) -> dict[str, Any] | None:
        rows = self.client.search_read(REQUEST, [("id", "=", remote_id)], _REQUEST_FIELDS, limit=1)
        return rows[0] if rows else None

    def requests(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        rows = self.client.search_read(REQUEST, [("id", "in", ids)], ["state"])
        return {int(r["id"]): r for r in rows}

    def requested_requests(self, limit: int = 500) -> list[dict[str, Any]]:
        return self.client.search_read(REQUEST, [("state", "=", "requested")], _REQUEST_FIELDS, limit=limit,
                                       order=[["id", "ASC"]])

    def create_request(self, values: dict[str, Any]) -> int:
        return int(self.client.create(REQUEST, [values])[0])

    def write_request(self, remote_id: int, values: dict[str, Any]) -> None:
        self.client.write(REQUEST, [remote_id], values)

    def mark_requested(self, remote_id: int) -> None:
        self.client.call(f"model.{REQUEST}.requested", [remote_id])

    # -- results --------------------------------------------------------------------------
    def result_of_request(self, request_id: int) -> int | None:
        ids = self.client.search(RESULT, [("request", "=", request_id)], limit=1, order=[["id", "ASC"]])
        return int(ids[0]) if ids else None

    def generate_result(self, request_id: int) -> int:
        """GNU Health's own wizard: creates the result and closes the request.
        It makes a new result on every run: callers look first."""
        answer = self.client.run_wizard("wizard.generate.result", "open_", REQUEST, [request_id])
        made = _result_ids(answer)
        if len(made) == 1:
            return made[0]
        found = self.result_of_request(request_id)
        if found is None:
            raise RemoteUserError(_("GNU Health's result wizard made no result for request %(id)s (it answered "
                                    "%(answer)s).", id=request_id, answer=str(answer)[:200]))
        return found

    def write_result(self, result_id: int, values: dict[str, Any]) -> None:
        self.client.write(RESULT, [result_id], values)

    def attachment_names(self, result_id: int) -> set[str]:
        rows = self.client.search_read(ATTACHMENT, [("resource", "=", f"{RESULT},{result_id}")], ["name"])
        return {str(r["name"]) for r in rows}

    def add_attachments(self, result_id: int, items: list[tuple[str, bytes, str]]) -> None:
        """(name, data, description) each; bytes land in GNU Health's filestore."""
        if items:
            self.client.create(ATTACHMENT, [{"name": name, "data": data, "description": description,
                                             "resource": f"{RESULT},{result_id}"} for name, data, description in items])

    def studies_by_uid(self, uids: list[str], patient_id: str) -> list[dict[str, Any]]:
        """health_orthanc's studies with these UIDs AND this DICOM PatientID
        (its ``patient_id`` field, as the study came from Orthanc): a study
        of another patient that carries the same UID is never returned."""
        if not uids or not patient_id:
            return []
        return self.client.search_read(STUDY, [("study_instance_UID", "in", uids), ("patient_id", "=", patient_id)],
                                       ["study_instance_UID", "imaging_test", "patient_id"])

    def link_studies(self, study_ids: list[int], result_id: int) -> None:
        if study_ids:
            self.client.write(STUDY, study_ids, {"imaging_test": result_id})


def _result_ids(answer: Any) -> list[int]:
    """The ids the wizard's answer opens: ``{"actions": [[{"pyson_domain":
    '[["id", "in", [7]]]', ...}, {}]]}`` (checked on GNU Health 5.0)."""
    import json

    try:
        domain = json.loads(answer["actions"][0][0]["pyson_domain"])
        field, operator, ids = domain[0]
        if field == "id" and operator == "in":
            return [int(i) for i in ids]
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return []


def utc_naive(value: datetime) -> datetime:
    """trytond keeps datetimes as naive UTC, as ghimaging does."""
    return value.replace(microsecond=0)
