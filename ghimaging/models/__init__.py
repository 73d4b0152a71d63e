"""Typed SQLAlchemy 2.0 models, one module per area."""

from .users import ApiToken, LoginThrottle, Role, User, UserRole, UserSession
from .catalog import ImagingTest, ModalityType
from .patients import Patient, Sex
from .imaging import (
    Counter,
    ImagingRequest,
    RequestEvent,
    RequestState,
    ReportStyle,
    Result,
    ResultAddendum,
    ResultImage,
)
from .settings import Setting
from .orthanc import OrthancPatient, OrthancSeries, OrthancServer, OrthancStudy
from .worklists import WorklistFile, WorklistTemplate
from .links import LinkEvent, StudyLink
from .gnuhealth import GnuHealthConfig, GnuHealthLink, LinkKind, OutboxItem, OutboxKind, OutboxState

__all__ = [
    "ApiToken", "LoginThrottle", "Role", "User", "UserRole", "UserSession",
    "ImagingTest", "ModalityType", "Patient", "Sex",
    "Counter", "ImagingRequest", "RequestEvent", "RequestState", "ReportStyle",
    "Result", "ResultAddendum", "ResultImage", "Setting",
    "OrthancPatient", "OrthancSeries", "OrthancServer", "OrthancStudy", "WorklistFile", "WorklistTemplate", "LinkEvent", "StudyLink",
    "GnuHealthConfig", "GnuHealthLink", "LinkKind", "OutboxItem", "OutboxKind", "OutboxState",
]
