"""Deleting studies and series in Orthanc (admin only), recorded in the
audit trail; the mirror rows follow at once."""

from __future__ import annotations

from sqlalchemy import delete

from ..extensions import db
from ..models import LinkEvent, OrthancSeries, OrthancStudy, User
from .client import BadAnswer, NotFound, OrthancError, TimedOut, Unauthorized
from .matching import forget_studies, reoffer
from .servers import client_for
from .sync import _drop_orphan_patients, mark_shared_uids


class DeleteError(ValueError):
    pass


def _refused(exc: OrthancError) -> DeleteError:
    if isinstance(exc, Unauthorized) or (isinstance(exc, BadAnswer) and (" 403" in str(exc) or " 405" in str(exc))):
        return DeleteError("Orthanc refused to delete (it may be read-only, or this user may not delete). "
                           "Nothing was changed.")
    if isinstance(exc, TimedOut):  # Orthanc may still finish what it was asked
        return DeleteError("Orthanc did not confirm the deletion in time; it may still delete it. "
                           "Sync the server, then look again.")
    return DeleteError(f"Orthanc could not delete: {exc}. Nothing was changed.")


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
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=study.patient_id.strip(" ")[:64], request_id=None,
                             action="delete", method="manual", user_id=user.id if user else None,
                             note=f"deleted in Orthanc: {what}"))
    bare = forget_studies([study.id])
    server = study.server
    db.session.execute(delete(OrthancSeries).where(OrthancSeries.study_id == study.id))
    uid = study.study_uid
    db.session.delete(study)
    db.session.flush()
    _drop_orphan_patients(server)
    mark_shared_uids([uid])  # a partner study under another PatientID is no longer shared
    db.session.commit()
    reoffer(bare)
    return f"Deleted {what}" + (" (it was already gone from Orthanc)." if gone_already else ".")


def delete_series(series: OrthancSeries, user: User | None) -> str:
    study = series.study
    what = f"series {series.number or ''} {series.description or series.modality}".strip()
    try:
        with client_for(study.server) as client:
            client.delete(f"/series/{series.orthanc_id}")
    except NotFound:
        pass
    except OrthancError as exc:
        raise _refused(exc) from None
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=study.patient_id.strip(" ")[:64], request_id=None,
                             action="delete", method="manual", user_id=user.id if user else None,
                             note=f"deleted in Orthanc: {what} of {study.patient_name or study.patient_id}"))
    study.series.remove(series)
    db.session.flush()
    from .sync import _summarise

    _summarise(study)
    db.session.commit()
    if not study.series:  # Orthanc drops a study with its last series; so do we
        bare = forget_studies([study.id])
        server, uid = study.server, study.study_uid
        db.session.delete(study)
        db.session.flush()
        _drop_orphan_patients(server)
        mark_shared_uids([uid])
        db.session.commit()
        reoffer(bare)
        return f"Deleted {what}; it was the study's last series, so the study is gone too."
    return f"Deleted {what}."
