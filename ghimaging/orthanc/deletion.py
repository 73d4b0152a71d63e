"""Deleting studies and series in Orthanc (admin only), recorded in the
audit trail; the mirror rows follow at once. The caller commits; requests
left without images are put back on the worklist in the same transaction
(the worklist file is undone if it does not commit)."""

from __future__ import annotations

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import delete

from ..exceptions import UpstreamFailure
from ..extensions import db
from ..models import LinkEvent, OrthancSeries, OrthancStudy, User
from .client import BadAnswer, NotFound, OrthancError, TimedOut, Unauthorized
from .linking import forget_studies, reoffer
from .mirror import drop_orphan_patients, mark_shared_uids, summarise
from .servers import client_for


class DeleteError(UpstreamFailure):
    """Orthanc did not delete (refused, failed or did not confirm in time);
    nothing was changed here."""


def _refused(exc: OrthancError) -> DeleteError:
    if isinstance(exc, Unauthorized) or (isinstance(exc, BadAnswer) and exc.status in (403, 405)):
        return DeleteError(_("Orthanc refused to delete (it may be read-only, or this user may not delete). "
                             "Nothing was changed."), code="refused")
    if isinstance(exc, TimedOut):  # Orthanc may still finish what it was asked
        return DeleteError(_("Orthanc did not confirm the deletion in time; it may still delete it. "
                             "Sync the server, then look again."), timeout=True)
    return DeleteError(_("Orthanc could not delete: %(error)s. Nothing was changed.", error=exc))


def _record(study: OrthancStudy, user: User | None, note: str) -> None:
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=study.patient_id.strip(" ")[:64], request_id=None,
                             action="delete", method="manual", user_id=user.id if user else None, note=note))


def _drop_study(study: OrthancStudy) -> None:
    """The study's rows go; its requests lose the link (recorded) and go back
    on the worklist when they have no other study."""
    bare = forget_studies([study.id])
    server, uid = study.server, study.study_uid
    db.session.execute(delete(OrthancSeries).where(OrthancSeries.study_id == study.id))
    db.session.delete(study)
    db.session.flush()
    drop_orphan_patients(server)
    mark_shared_uids([uid])  # a partner study under another PatientID is no longer shared
    reoffer(bare)


def delete_study(study: OrthancStudy, user: User | None) -> str:
    what = f"study {study.description or study.study_uid} of {study.patient_name or study.patient_id}"
    gone_already = False
    try:
        with client_for(study.server) as client:
            client.delete(f"/studies/{study.orthanc_id}")
    except NotFound:
        gone_already = True
    except OrthancError as exc:
        raise _refused(exc) from None
    _record(study, user, f"deleted in Orthanc: {what}")
    _drop_study(study)
    study_name = study.description or study.study_uid
    patient = study.patient_name or study.patient_id
    if gone_already:
        return str(_("Deleted study %(study)s of %(patient)s (it was already gone from Orthanc).", study=study_name,
                     patient=patient))
    return str(_("Deleted study %(study)s of %(patient)s.", study=study_name, patient=patient))


def delete_series(series: OrthancSeries, user: User | None) -> str:
    study = series.study
    label = f"{series.number or ''} {series.description or series.modality}".strip()
    what = f"series {label}"  # the audit note stays in the record's language (English)
    try:
        with client_for(study.server) as client:
            client.delete(f"/series/{series.orthanc_id}")
    except NotFound:
        pass
    except OrthancError as exc:
        raise _refused(exc) from None
    _record(study, user, f"deleted in Orthanc: {what} of {study.patient_name or study.patient_id}")
    study.series.remove(series)
    db.session.flush()
    summarise(study)
    if not study.series:  # Orthanc drops a study with its last series; so do we
        _drop_study(study)
        return str(_("Deleted series %(series)s; it was the study's last series, so the study is gone too.",
                     series=label))
    return str(_("Deleted series %(series)s.", series=label))
