"""GNU Health connection settings and "Test connection". Shared by the
admin page, the CLI and the background loop; the caller commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l

from .. import crypto
from ..exceptions import Invalid
from ..extensions import db
from ..models import GnuHealthConfig
from ..models._time import utcnow
from ..models.gnuhealth import OPTIONAL_MODULES, REQUIRED_MODULE
from .client import GnuHealthClient, GnuHealthError, ModuleMissing, NoProfessional, check_url


class SettingsError(Invalid):
    """Bad input on the settings form or command line; ``field`` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, fields={field: message} if field else None)
        self.field = field


@dataclass
class CheckReport:
    """What "Test connection" found."""

    version: str
    uid: int
    modules: list[str] = field(default_factory=list)  # active ones among REQUIRED + OPTIONAL
    professional_id: int | None = None
    professional_name: str = ""
    uses_default_professional: bool = False

    def lines(self) -> list[str]:
        out = [str(_("GNU Health server: trytond %(version)s", version=self.version))]
        out.append(_("Modules: %(modules)s", modules=", ".join(
            f"{m} {_('active') if m in self.modules else _('not active')}" for m in (REQUIRED_MODULE, *OPTIONAL_MODULES))))
        if self.uses_default_professional:
            out.append(_("The user has no health professional; requests use the default professional "
                         "%(name)s (id %(id)s).", name=self.professional_name, id=self.professional_id))
        else:
            out.append(_("Linked to health professional: %(name)s (id %(id)s)", name=self.professional_name,
                         id=self.professional_id))
        return out


def get_config() -> GnuHealthConfig | None:
    return db.session.get(GnuHealthConfig, 1)


def config_or_new() -> GnuHealthConfig:
    cfg = get_config()
    if cfg is None:
        cfg = GnuHealthConfig(id=1)
        db.session.add(cfg)
    return cfg


def active_config() -> GnuHealthConfig | None:
    """The settings when the sync is switched on and complete, else None."""
    cfg = get_config()
    return cfg if cfg is not None and cfg.enabled and cfg.configured else None


def timeout() -> float:
    return float(current_app.config["GNUHEALTH_TIMEOUT"])


def page_deadline() -> float:
    """Seconds a page (search, Test connection, Sync now, saving the
    settings) waits for GNU Health in all: GNUHEALTH_PAGE_DEADLINE."""
    return float(current_app.config["GNUHEALTH_PAGE_DEADLINE"])


def client_for(cfg: GnuHealthConfig, *, total: float | None = None) -> GnuHealthClient:
    """A client with the saved settings; ``total`` bounds all its calls
    together (pages pass ``page_deadline()``; the background loop none)."""
    return GnuHealthClient(cfg.url, cfg.database, cfg.username, crypto.decrypt(cfg.password_enc), timeout=timeout(),
                           total=total)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a checked URL, default ports filled in: the
    party a stored password was given to."""
    parts = urlsplit(url or "")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


PASSWORD_AGAIN = _l("Enter the password again for the new address: the saved one is only ever sent to the "
                    "server it was given for.")


def check(client: GnuHealthClient, *, default_professional_id: int | None = None) -> CheckReport:
    """Talk to GNU Health for real: version, login, modules, professional.
    Raises the client's error for the first thing that is wrong."""
    version = client.version()
    uid = client.login()
    wanted = [REQUIRED_MODULE, *OPTIONAL_MODULES]
    rows = client.search_read("ir.module", [("name", "in", wanted), ("state", "=", "activated")], ["name"])
    modules = sorted(str(r["name"]) for r in rows)
    if REQUIRED_MODULE not in modules:
        raise ModuleMissing(_("GNU Health at %(url)s does not have %(module)s activated: activate the module "
                              "(%(command)s).", url=client.url, module=REQUIRED_MODULE,
                              command="trytond-admin -u health_imaging --activate-dependencies"))
    report = CheckReport(version=version, uid=uid, modules=modules)
    profs = client.search_read("gnuhealth.healthprofessional", [("party.internal_user", "=", uid)],
                               ["rec_name"], limit=1)
    if profs:
        report.professional_id, report.professional_name = int(profs[0]["id"]), str(profs[0]["rec_name"])
        return report
    if default_professional_id:
        found = client.search_read("gnuhealth.healthprofessional", [("id", "=", default_professional_id)],
                                   ["rec_name"], limit=1)
        if not found:
            raise SettingsError(_("GNU Health has no health professional with id %(id)s.", id=default_professional_id),
                                "default_professional_id")
        report.professional_id, report.professional_name = default_professional_id, str(found[0]["rec_name"])
        report.uses_default_professional = True
        return report
    # Ask GNU Health itself: the default doctor of a new request is the
    # user's professional, and it answers SM-CORE-0007 when there is none.
    client.call("model.gnuhealth.imaging.test.request.default_get", ["doctor"])
    raise NoProfessional(_("The GNU Health user is not linked to a health professional (SM-CORE-0007): set it as "
                           "the Internal User of a professional's party in GNU Health, or choose a default "
                           "professional here."))


def _clean(url: str, database: str, username: str) -> tuple[str, str, str]:
    if len(url or "") > 500:
        raise SettingsError(_("The address is at most %(max)d characters.", max=500), "url")
    try:
        url = check_url(url)
    except ValueError as exc:
        raise SettingsError(str(exc), "url") from None
    database = (database or "").strip()
    if not database or len(database) > 100 or "/" in database or any(ord(c) < 32 for c in database):
        raise SettingsError(_("The database name is required (at most %(max)d characters, no '/').", max=100),
                            "database")
    username = (username or "").strip()
    if not username or len(username) > 200:
        raise SettingsError(_("The user is required (at most %(max)d characters).", max=200), "username")
    return url, database, username


def configure(*, url: str, database: str, username: str, password: str | None, enabled: bool = True,
              default_professional_id: int | None = None, total: float | None = None) -> CheckReport:
    """Check the new settings for real, then put them in the session.
    Nothing changes when the check fails: the error says what is wrong. ``password`` None
    keeps the stored one, but only at the same scheme, host and port: the
    check would otherwise send it to whatever address was typed."""
    url, database, username = _clean(url, database, username)
    if default_professional_id is not None and default_professional_id < 1:
        raise SettingsError(_("The default professional is a GNU Health id (a whole number from 1)."),
                            "default_professional_id")
    cfg = get_config()
    if password is None:
        if cfg is None or not cfg.password_enc:
            raise SettingsError(_("The password is required."), "password")
        if origin(url) != origin(cfg.url):
            raise SettingsError(str(PASSWORD_AGAIN), "password")
        password = crypto.decrypt(cfg.password_enc)
    if not password:
        raise SettingsError(_("The password is required."), "password")
    if len(password) > 500:
        raise SettingsError(_("The password is at most %(max)d characters.", max=500), "password")
    with GnuHealthClient(url, database, username, password, timeout=timeout(), total=total) as client:
        report = check(client, default_professional_id=default_professional_id)
    cfg = config_or_new()
    cfg.url, cfg.database, cfg.username = url, database, username
    cfg.password_enc = crypto.encrypt(password)
    cfg.enabled = bool(enabled)
    cfg.default_professional_id = default_professional_id
    _record(cfg, report, None)
    db.session.flush()
    return report


def set_enabled(enabled: bool) -> None:
    cfg = get_config()
    if cfg is None or not cfg.configured:
        raise SettingsError(_("Configure the GNU Health server first."))
    cfg.enabled = bool(enabled)


def run_check(*, total: float | None = None) -> CheckReport:
    """Check the saved settings and record what was found; a failure is
    recorded too, then raised: the caller commits in either case."""
    cfg = get_config()
    if cfg is None or not cfg.configured:
        raise SettingsError(_("GNU Health is not configured: give its address, database, user and password."))
    try:
        with client_for(cfg, total=total) as client:
            report = check(client, default_professional_id=cfg.default_professional_id)
    except (GnuHealthError, SettingsError, crypto.CredentialError) as exc:
        _record(cfg, None, str(exc))
        raise
    _record(cfg, report, None)
    return report


def _record(cfg: GnuHealthConfig, report: CheckReport | None, error: str | None) -> None:
    cfg.checked_at = utcnow()
    cfg.check_ok = report is not None
    cfg.check_error = error or ""
    if report is not None:
        cfg.version = report.version[:32]
        cfg.modules = ",".join(report.modules)[:300]
        cfg.professional_id = report.professional_id
        cfg.professional_name = report.professional_name[:200]
