"""The OpenAPI 3.1 document of /api/v1, kept next to the routes it describes."""

from __future__ import annotations

from typing import Any

from .. import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Malformed request: not a JSON object, invalid JSON, nested deeper than API_MAX_JSON_DEPTH "
                 "(default 32) levels, NUL or an unpaired surrogate in a text, or a bad query parameter", 401: "Missing or invalid token", 403: "Role not allowed",
            404: "Not found", 409: "Conflict (duplicate, illegal state transition, or a sync already running)",
            422: "Validation failed, or the worklist file cannot be written (error worklist_charset: a value "
                 "the template's character set cannot hold, named in message and characters; "
                 "worklist_template: a broken template); nothing was changed",
            413: "The body is larger than API_MAX_JSON_BYTES (default 1 MiB); nothing was read or changed",
            502: "Orthanc failed; the reason is in the message",
            503: "The worklist folder refused the file; nothing was changed"}
    return {str(c): {"description": text[c], **_json(_ref("Error"))} for c in codes}


def _op(summary: str, ok: str, schema: dict[str, Any] | None, *errors: int, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, code: str = "200") -> dict[str, Any]:
    # 400 everywhere: a query parameter with NUL is refused before any view.
    errors = tuple(sorted({*errors, 400, 413} if body else {*errors, 400}))  # a body can be too deep or large
    op: dict[str, Any] = {"summary": summary, "responses": {code: {"description": ok, **(_json(schema) if schema else {})},
                                                           **_errors(401, *errors)}}
    if body:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    return op


def _q(name: str, typ: str = "string", desc: str = "", **bounds: int) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": typ, **bounds}, "description": desc}


# Ids in URLs stop at 2**31-1 (a bigger one is a 404, see _bounded_int_urls).
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_PAGE = [_q("page", "integer", "1-1000000, default 1", minimum=1, maximum=1_000_000),
         _q("per_page", "integer", "1-200, default 50", minimum=1, maximum=200)]


def _list(item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"items": {"type": "array", "items": _ref(item)},
            "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"}}}


_CREDENTIALS = "sent as HTTP Basic authentication: Latin-1 characters, no control characters (else 422)"

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "message"],
              "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                             "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                             "characters": {"type": "array", "items": {"type": "string"},
                                            "description": "worklist_charset: the characters that do not fit"},
                             "template": {"type": ["string", "null"],
                                          "description": "worklist_charset: the worklist template"}}},
    "PatientIn": {"type": "object", "required": ["family_name", "sex"], "properties": {
        "puid": {"type": "string", "minLength": 1, "maxLength": 64,
                 "description": "required unless the clinic allocates PUIDs (Settings); omit it then"},
        "family_name": {"type": "string", "minLength": 1, "maxLength": 100},
        "given_name": {"type": "string", "maxLength": 100},
        "birth_date": {"type": ["string", "null"], "format": "date"},
        "sex": {"type": "string", "enum": ["F", "M", "O"]}, "phone": {"type": "string"},
        "notes": {"type": "string"},
        "alerts": {"type": "string", "maxLength": 2000,
                   "description": "Alerts and allergies, one per line (shown on the order form and the desk)"},
        "confirm_new": {"type": "boolean", "description": "true: register even when a patient born the same day "
                        "with a similar name exists (else 409 probable_duplicate with candidates)"}}},
    "Patient": {"allOf": [{"type": "object", "properties": {"id": {"type": "integer"}}}, _ref("PatientIn")]},
    "TestIn": {"type": "object", "required": ["code", "name", "modality", "ae_title"], "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 32},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "modality": {"type": "string", "description": "DICOM Modality code, e.g. CR"},
        "ae_title": {"type": "string", "maxLength": 16,
                     "description": "ScheduledStationAETitle of the modality that performs the test (required)"},
        "worklist_template": {"type": "string"},
        "active": {"type": "boolean"}}},
    "Test": {"allOf": [{"type": "object", "properties": {"id": {"type": "integer"}}}, _ref("TestIn")]},
    "RequestIn": {"type": "object", "required": ["patient_id"], "properties": {
        "patient_id": {"type": "integer"}, "test_code": {"type": "string"},
        "test_codes": {"type": "array", "items": {"type": "string"},
                       "description": "Several tests: one request each, one order number"},
        "urgent": {"type": "boolean"}, "comment": {"type": "string"}, "clinical_context": {"type": "string"},
        "scheduled_at": {"type": "string", "description": "YYYY-MM-DDTHH:MM, clinic local time, or with a UTC "
                         "offset (converted to clinic local time); years 1900-2199, else 422 on scheduled_at"},
        "physician": {"type": "string", "description": "username of the requesting physician"},
        "submit": {"type": "boolean", "description": "create as requested instead of draft"},
        "confirm_past": {"type": "boolean", "description": "true: accept a scheduled_at more than an hour in "
                         "the past (else 422 on scheduled_at)"}}},
    "Request": {"type": "object", "properties": {
        "id": {"type": "integer"}, "order_number": {"type": "string"},
        "state": {"type": "string", "enum": ["draft", "requested", "done", "cancelled"]},
        "accession_number": {"type": "string", "maxLength": 16}, "study_instance_uid": {"type": "string"},
        "patient_id": {"type": "integer"}, "patient_puid": {"type": "string"}, "test_code": {"type": "string"},
        "test_name": {"type": "string"}, "modality": {"type": "string"}, "urgent": {"type": "boolean"},
        "clinical_context": {"type": "string"}, "comment": {"type": "string"},
        "progress": {"type": "string", "enum": ["draft", "scheduled", "images", "preliminary", "final", "cancelled"],
                     "description": "what pages show: from the state, the linked studies and the result "
                                    "(a preliminary result leaves the request requested; finalising closes it)"},
        "scheduled_at": {"type": ["string", "null"],
                         "description": "clinic local time with its UTC offset, YYYY-MM-DDTHH:MM+HH:MM"},
        "requesting_physician": {"type": ["string", "null"]},
        "cancel_reason": {"type": ["string", "null"]}, "created_at": {"type": "string"},
        "result_id": {"type": ["integer", "null"]}, "images_available": {"type": "boolean"},
        "gnuhealth": {"type": ["object", "null"], "description": "null when not linked to GNU Health",
                      "properties": {"request_id": {"type": ["integer", "null"]},
                                     "state": {"type": "string", "enum": ["synced", "pending", "failed"]},
                                     "error": {"type": ["string", "null"]}}},
        "studies": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "study_instance_uid": {"type": "string"}, "orthanc_id": {"type": "string"},
            "server": {"type": "string"}, "method": {"type": "string"}, "patient_id": {"type": "string"},
            "patient_name": {"type": "string"}, "patient_name_display": {"type": "string"},
            "other_patient": {"type": "boolean", "description": "linked by hand to this request of another patient"},
            "reason": {"type": ["string", "null"]},
            "identity_warning": {"type": ["string", "null"],
                                 "description": "name or birth date differ from the register, not yet checked"}}}},
        "events": {"type": "array", "items": {"type": "object"}},
        "result": {"type": ["object", "null"]},
        "worklist": _ref("WorklistFile")}},
    "WorklistFile": {"type": "object", "description": "The truth about the request's .wl file", "properties": {
        "state": {"type": "string", "enum": ["written", "missing", "not_offered"]},
        "filename": {"type": "string"},
        "reason": {"type": ["string", "null"], "description": "why it is missing or not offered"},
        "written_at": {"type": ["string", "null"]},
        "charset": {"type": ["string", "null"], "description": "SpecificCharacterSet it was written in"}}},
    "ServerIn": {"type": "object", "required": ["label", "url"], "properties": {
        "label": {"type": "string", "minLength": 1, "maxLength": 64, "description": "unique in any letter case"},
        "url": {"type": "string", "maxLength": 500, "description": "http(s)://host:port of Orthanc's REST API"},
        "browser_url": {"type": "string"},
        "username": {"type": "string", "description": _CREDENTIALS + "; no ':'"},
        "password": {"type": "string", "writeOnly": True, "description": _CREDENTIALS}}},
    "ServerPatch": {"type": "object", "additionalProperties": False, "description":
                    "Any of the fields; absent or null ones stay as they are. The stored password belongs to "
                    "the server's scheme, host and port: a url with another one needs the password again (422 on "
                    "password otherwise), or an empty username for an Orthanc without authentication, which drops "
                    "the stored password. New connection details are checked again in the background: "
                    "validated is false until GET shows the outcome.", "properties": {
        "label": {"type": ["string", "null"]}, "url": {"type": ["string", "null"]},
        "browser_url": {"type": ["string", "null"]}, "username": {"type": ["string", "null"]},
        "password": {"type": ["string", "null"], "writeOnly": True,
                     "description": "absent, null or empty: keep the stored one (same address only)"}}},
    "Server": {"type": "object", "properties": {
        "id": {"type": "integer"}, "label": {"type": "string"}, "url": {"type": "string"},
        "browser_url": {"type": "string"}, "username": {"type": "string"}, "validated": {"type": "boolean"},
        "version": {"type": "string"}, "name": {"type": "string"}, "plugins": {"type": "array", "items": {"type": "string"}},
        "last_sync_at": {"type": ["string", "null"]}, "last_change": {"type": "integer"}, "lag": {"type": "integer"},
        "last_error": {"type": ["string", "null"]}, "study_count": {"type": "integer"},
        "default_encoding": {"type": ["string", "null"],
                             "description": "Orthanc's DefaultEncoding (GET /tools/default-encoding)"},
        "warnings": {"type": "array", "items": {"type": "string"},
                     "description": "What to fix, e.g. an encoding that damages names on their way to the modality"}}},
    "SyncSummary": {"type": "object", "properties": {
        "server": {"type": "string"}, "mode": {"type": "string"}, "requests": {"type": "integer"},
        "changes": {"type": "integer"}, "studies_updated": {"type": "integer"}, "studies_deleted": {"type": "integer"},
        "last_change": {"type": "integer"}, "reset_detected": {"type": "boolean"},
        "skipped": {"type": "string", "description": "why nothing ran (409), e.g. another sync holds the lease"},
        "error": {"type": "string", "description": "what Orthanc did wrong (502)"}, "seconds": {"type": "number"},
        "pages": {"type": "integer"}, "patients_linked": {"type": "integer"},
        "notes": {"type": "array", "items": {"type": "string"}}}},
    "Study": {"type": "object", "properties": {
        "id": {"type": "integer"}, "server": {"type": "string"}, "server_id": {"type": "integer"},
        "orthanc_id": {"type": "string"}, "study_instance_uid": {"type": "string"},
        "accession_number": {"type": "string"}, "patient_id": {"type": "string"}, "patient_name": {"type": "string"},
        "study_date": {"type": "string"}, "study_time": {"type": "string"}, "description": {"type": "string"},
        "modalities": {"type": "array", "items": {"type": "string"}}, "series_count": {"type": "integer"},
        "instance_count": {"type": "integer"}, "stable": {"type": "boolean"},
        "local_patient_id": {"type": ["integer", "null"]}, "series": {"type": "array", "items": {"type": "object"}},
        "patient_name_display": {"type": "string", "description": "The name as pages show it, every PN group"},
        "patient_birth_date": {"type": "string", "description": "DICOM DA, as the images give it"},
        "uid_shared": {"type": "boolean",
                       "description": "Another patient's study has this StudyInstanceUID: never linked automatically"},
        "warnings": {"type": "array", "items": {"type": "string"},
                     "description": "Everything to check before trusting this study's links (one study, link, unlink)"},
        "reasons": {"type": "array", "items": {"type": "string"},
                    "description": "Why the rules did not link it, in sentences (unmatched list)"},
        "suggestions": {"type": "array", "items": {"type": "object", "properties": {
            "request_id": {"type": "integer"}, "accession_number": {"type": "string"},
            "same_patient": {"type": "boolean", "description": "false: linking needs confirm_other_patient and a reason"},
            "reasons": {"type": "array", "items": {"type": "string"}}}}},
        "links": {"type": "array", "items": {"type": "object", "properties": {
            "request_id": {"type": "integer"}, "method": {"type": "string"}, "other_patient": {"type": "boolean"},
            "reason": {"type": ["string", "null"]}, "warning": {"type": ["string", "null"]}}}}}},
    "ResultIn": {"type": "object", "properties": {
        "report": {"type": "string"},
        "date": {"type": "string", "format": "date",
                 "description": "YYYY-MM-DD, years 1900-2199 (else 422 on date); default today"},
        "radiologist": {"type": "string"}, "final": {"type": "boolean"},
        "report_style": {"type": "string", "enum": ["with_images", "without_images", "without_captions"]}}},
}


def _sync_op() -> dict[str, Any]:
    """409 (skipped) and 502 (Orthanc failed) answer the summary too, with
    ``skipped`` or ``error`` saying why."""
    op = _op("Sync now (incremental, or full with ?full=1)", "Summary", _ref("SyncSummary"), 403, 404,
             params=[*_ID, _q("full", desc="1: full sync")])
    op["responses"]["409"] = {"description": "Skipped: another sync holds the lease (see skipped)",
                              **_json(_ref("SyncSummary"))}
    op["responses"]["502"] = {"description": "Orthanc failed; the reason is in error", **_json(_ref("SyncSummary"))}
    return op


def document(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ghimaging API", "version": __version__,
                 "description": "Imaging orders and results. Authenticate with 'Authorization: Bearer <token>'; "
                                "tokens are created with `ghimaging create-token USER` or on the account page."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": SCHEMAS},
        "paths": {
            "/me": {"get": _op("The token's user and roles", "User", {"type": "object", "properties": {
                "id": {"type": "integer"}, "username": {"type": "string"},
                "roles": {"type": "array", "items": {"type": "string"}}}})},
            "/patients": {
                "get": _op("List or search patients", "Patients", _list("Patient"), 400,
                           params=[_q("puid", desc="exact PUID"), _q("q", desc="name, PUID or birth date"), *_PAGE]),
                "post": _op("Register a patient", "Created", _ref("Patient"), 400, 403, 409, 422,
                            body=_ref("PatientIn"), code="201"),
            },
            "/patients/{id}": {"get": _op("One patient", "Patient", _ref("Patient"), 404, params=_ID)},
            "/tests": {
                "get": _op("Active imaging tests", "Tests", _list("Test"), params=[_q("all", desc="1: include inactive")]),
                "post": _op("Add an imaging test (admin)", "Created", _ref("Test"), 400, 403, 409, 422,
                            body=_ref("TestIn"), code="201"),
            },
            "/requests": {
                "get": _op("List requests, urgent first", "Requests", _list("Request"), 400,
                           params=[_q("state", desc="draft|requested|done|cancelled|all"),
                                   _q("patient_id", "integer", minimum=1, maximum=2**31 - 1), _q("q"),
                                   _q("gnuhealth_request_id", "integer", minimum=1, maximum=2**31 - 1,
                                      desc="the request imported from (or sent as) GNU Health's request N"),
                                   *_PAGE]),
                "post": _op("Order one or more tests (draft unless submit)", "Created", _ref("Request"),
                            400, 403, 422, 503, body=_ref("RequestIn"), code="201"),
            },
            "/requests/{id}": {"get": _op("One request with events and result", "Request", _ref("Request"), 404, params=_ID)},
            "/requests/{id}/submit": {"post": _op("draft -> requested, with its worklist file written first",
                                                  "Request", _ref("Request"), 403, 404, 409, 422, 503, params=_ID)},
            "/requests/{id}/cancel": {"post": _op("draft|requested -> cancelled", "Request", _ref("Request"),
                                                  400, 403, 404, 409, 422, params=_ID,
                                                  body={"type": "object", "required": ["reason"],
                                                        "properties": {"reason": {"type": "string", "minLength": 1,
                                                                                  "maxLength": 2000}}})},
            "/orthanc/servers": {
                "get": _op("Configured Orthanc servers (admin)", "Servers", _list("Server"), 403),
                "post": _op("Add a server; it is checked for real first (admin)", "Created", _ref("Server"),
                            400, 403, 409, 422, body=_ref("ServerIn"), code="201"),
            },
            "/orthanc/servers/{id}": {
                "get": _op("One Orthanc server: what its check found and warnings to act on (admin)", "Server",
                           _ref("Server"), 403, 404, params=_ID),
                "patch": _op("Change a server's label, addresses or credentials (admin); a new scheme, host or "
                             "port needs the password again", "Server", _ref("Server"), 403, 404, 409, 422,
                             params=_ID, body=_ref("ServerPatch")),
            },
            "/orthanc/servers/{id}/sync": {"post": _sync_op()},
            "/orthanc/servers/{id}/wake": {"post": _op(
                "Ask for a sync now (Orthanc's push calls this; any account, a role-less one too): recorded and "
                "answered at once without calling Orthanc; the background loop syncs within seconds",
                "Accepted", {"type": "object", "required": ["server_id", "wanted_at"], "properties": {
                    "server_id": {"type": "integer"},
                    "wanted_at": {"type": "integer", "description": "when the sync was asked for, in milliseconds "
                                                                    "since 1970-01-01 UTC"}}},
                403, 404, params=_ID, code="202")},
            "/studies": {"get": _op("Mirrored studies", "Studies", _list("Study"), 400, params=[
                _q("study_instance_uid"), _q("accession_number"), _q("patient_id", desc="DICOM PatientID"),
                _q("server_id", "integer", minimum=1, maximum=2**31 - 1), *_PAGE])},
            "/studies/unmatched": {"get": _op("Studies linked to no request, with likely requests", "Studies",
                                              _list("Study"), 400, params=_PAGE)},
            "/studies/{id}/link": {"post": _op(
                "Link a study to a request by hand. A study of another patient (its PatientID is not the "
                "request patient's PUID) answers 409 unless confirm_other_patient is true and a reason is given",
                "Linked", _ref("Study"), 400, 403, 404, 409, 422, params=_ID, code="201",
                body={"type": "object", "required": ["request_id"], "properties": {
                    "request_id": {"type": "integer"}, "confirm_other_patient": {"type": "boolean"},
                    "reason": {"type": "string", "maxLength": 1000}}})},
            "/studies/{id}/unlink": {"post": _op("Unlink a study from a request", "Unlinked", _ref("Study"),
                                                 400, 403, 404, 409, 422, params=_ID,
                                                 body={"type": "object", "required": ["request_id"],
                                                       "properties": {"request_id": {"type": "integer"}}})},
            "/studies/{id}": {"get": _op("One mirrored study with its series", "Study", _ref("Study"), 404, params=_ID)},
            "/requests/{id}/worklist": {"get": _op(
                "The request's rendered worklist (dump2dcm text)", "Worklist",
                {"type": "object", "properties": {"request_id": {"type": "integer"}, "filename": {"type": "string"},
                 "live": {"type": "boolean"}, "template": {"type": "string"},
                 "charset": {"type": "string", "description": "the SpecificCharacterSet of the file"},
                 "template_charset": {"type": "string"},
                 "fallback": {"type": "boolean", "description": "written in ISO_IR 192 instead of the template's set"},
                 "warnings": {"type": "array", "items": {"type": "string"},
                              "description": "values cut to their VR length, the fallback, a missing station"},
                 "file": _ref("WorklistFile"), "text": {"type": "string"}}}, 404, 422, params=_ID)},
            "/requests/{id}/result": {"post": _op("Write the result; requested -> done", "Created", _ref("Request"),
                                                  400, 403, 404, 409, 422, params=_ID, body=_ref("ResultIn"),
                                                  code="201")},
        },
    }
