"""Typed SQLAlchemy 2.0 models, one module per area."""

from .catalog import ImagingTest, ModalityType
from .gnuhealth import GnuHealthConfig, GnuHealthLink, LinkKind, OutboxItem, OutboxKind, OutboxState
from .imaging import (
    Counter,
    ImagingRequest,
    ReportStyle,
    RequestEvent,
    RequestState,
    Result,
    ResultAddendum,
    ResultImage,
)
from .links import LinkEvent, StudyLink
from .orthanc import OrthancPatient, OrthancSeries, OrthancServer, OrthancStudy
from .patients import Patient, Sex
from .reporting import ReportDraft, ReportTemplate
from .settings import Setting
from .users import ApiToken, LoginThrottle, Role, User, UserRole, UserSession
from .worklists import WorklistFile, WorklistTemplate

__all__ = [
    "ApiToken",
    "Counter",
    "GnuHealthConfig",
    "GnuHealthLink",
    "ImagingRequest",
    "ImagingTest",
    "LinkEvent",
    "LinkKind",
    "LoginThrottle",
    "ModalityType",
    "OrthancPatient",
    "OrthancSeries",
    "OrthancServer",
    "OrthancStudy",
    "OutboxItem",
    "OutboxKind",
    "OutboxState",
    "Patient",
    "ReportDraft",
    "ReportStyle",
    "ReportTemplate",
    "RequestEvent",
    "RequestState",
    "Result",
    "ResultAddendum",
    "ResultImage",
    "Role",
    "Setting",
    "Sex",
    "StudyLink",
    "User",
    "UserRole",
    "UserSession",
    "WorklistFile",
    "WorklistTemplate",
]
