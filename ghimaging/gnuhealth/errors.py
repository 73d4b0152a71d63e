"""Every way a call to GNU Health can fail, each its own error with a
message a clinic's administrator can act on (never the password), and how
trytond's answers (an HTTP status, an XML-RPC fault) map to them.

All are :class:`~ghimaging.exceptions.UpstreamFailure` (GNU Health failed or
refused; a timeout with ``timeout=True``); ``code`` is a stable word kept on
an outbox item, and ``transient`` tells the outbox whether waiting and
retrying can help.
"""

from __future__ import annotations

import xmlrpc.client
from typing import TYPE_CHECKING, ClassVar

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..exceptions import UpstreamFailure

if TYPE_CHECKING:
    from .client import GnuHealthClient


class GnuHealthError(UpstreamFailure):
    """A call to GNU Health failed; the message is safe to show and log
    (it never contains the password)."""

    code = "error"
    transient: ClassVar[bool] = False
    timed_out: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message, timeout=self.timed_out)


class Unreachable(GnuHealthError):
    code, transient = "unreachable", True


class Timeout(GnuHealthError):
    code, transient, timed_out = "timeout", True, True


class ConnectionLost(GnuHealthError):
    """The call was sent but no answer came back: GNU Health may have done
    it. Whoever retries must look before creating again."""

    code, transient = "connection_lost", True


class WrongPassword(GnuHealthError):
    code = "wrong_password"


class UnknownDatabase(GnuHealthError):
    code = "unknown_database"


class TooManyAttempts(GnuHealthError):
    code, transient = "too_many_attempts", True


class NotAllowed(GnuHealthError):
    code = "not_allowed"


class ModuleMissing(GnuHealthError):
    code = "module_missing"


class NoProfessional(GnuHealthError):
    code = "no_professional"


class RemoteUserError(GnuHealthError):
    """GNU Health refused the data (a UserError: fault code 1)."""

    code = "refused"


class ServerFault(GnuHealthError):
    code, transient = "server_error", True


class BadAnswer(GnuHealthError):
    code = "bad_answer"



class SessionRefused(GnuHealthError):
    """401 on a call: the session expired or the server forgot it."""

    code, transient = "session_refused", True



def http_error(status: int, method: str, client: GnuHealthClient) -> GnuHealthError:
    where = _("GNU Health at %(url)s", url=client.url)
    if method == "common.db.login":
        if status == 401:
            return WrongPassword(_("%(where)s refused the user name or password of '%(user)s'.", where=where,
                                   user=client.user))
        if status == 404:
            return UnknownDatabase(_("%(where)s has no database '%(database)s'.", where=where, database=client.database))
        if status == 429:
            return TooManyAttempts(_("%(where)s refuses logins for a while after too many failed attempts; "
                                     "wait, then check the password.", where=where))
    if status == 401:
        return SessionRefused(_("%(where)s refused the session.", where=where))
    if status == 403:
        return NotAllowed(_("%(where)s does not allow %(method)s over XML-RPC.", where=where, method=method))
    if status == 404:
        return UnknownDatabase(_("%(where)s has no database '%(database)s' (or the address is not trytond's).",
                                 where=where, database=client.database))
    if status == 429:
        return TooManyAttempts(_("%(where)s asks to slow down (429).", where=where))
    if 500 <= status < 600:
        return ServerFault(_("%(where)s answered %(status)s (server error).", where=where, status=status))
    return BadAnswer(_("%(where)s answered HTTP %(status)s to %(method)s.", where=where, status=status,
                             method=method))


def fault_error(fault: xmlrpc.client.Fault, method: str) -> GnuHealthError:
    text = str(fault.faultString or "")
    if fault.faultCode == 1 or text.startswith(("You are not allowed", "SM-")):
        message, _sep, description = text.partition(" - ")
        shown = message.strip().rstrip(".") + (f" ({description.strip()})" if description.strip() else "")
        if "SM-CORE-0007" in text:
            return NoProfessional(_("The GNU Health user is not linked to a health professional (SM-CORE-0007): "
                                    "set it as the Internal User of a professional's party in GNU Health, or "
                                    "choose a default professional here."))
        if message.startswith("You are not allowed") or ("access" in message.lower() and "denied" in message.lower()):
            return NotAllowed(_("GNU Health: %(error)s. Give the user the groups listed in the README.", error=shown))
        return RemoteUserError(_("GNU Health refused %(method)s: %(error)s", method=method, error=shown))
    model = method.split(".")[1:-1]
    if text.strip("'\"") == ".".join(model) and model:
        return ModuleMissing(_("GNU Health has no %(model)s: its module is not activated.", model=".".join(model)))
    return ServerFault(_("GNU Health failed on %(method)s: %(error)s (fault %(code)s; its log has the details).",
                         method=method, error=text[:300] or _("an internal error"), code=fault.faultCode))
