"""GNU Health settings and "Test connection" against a real GNU Health 5.0
(trytond on loopback, see tests/support/gnuhealth.py): each failure has its
own message, nothing is saved that does not work, the password is never
shown."""

from __future__ import annotations

import logging
import os
import signal
import socket

import pytest

from ghimaging.extensions import db
from ghimaging.gnuhealth import client as ghc
from ghimaging.gnuhealth.settings import SettingsError, configure, get_config, run_check
from ghimaging.models import GnuHealthConfig
from tests.support.gnuhealth import NOPROF_PASSWORD, NOPROF_USER


def _configure(gh, **kw):
    values = dict(url=gh.url, database=gh.database, username=gh.user, password=gh.password)
    values.update(kw)
    return configure(**values)


def test_right_settings_report_version_modules_and_professional(app, gnuhealth):
    report = _configure(gnuhealth)
    assert report.version == "7.0.59"
    assert report.modules == ["health_imaging", "health_orthanc"]
    assert report.professional_name == "Radiology, Ghimaging" and report.professional_id
    cfg = get_config()
    assert cfg.check_ok and cfg.enabled and cfg.version == "7.0.59"
    assert cfg.has_module("health_orthanc") and not cfg.has_module("health_imaging_worklist")
    assert gnuhealth.password not in cfg.password_enc and cfg.password_enc
    lines = "\n".join(report.lines())
    assert "health_imaging_worklist not active" in lines and "health_orthanc active" in lines


def test_wrong_password_is_its_own_error_and_nothing_is_saved(app, gnuhealth):
    with pytest.raises(ghc.WrongPassword, match="refused the user name or password of 'ghimaging'") as exc:
        _configure(gnuhealth, password="not-the-password")
    assert "not-the-password" not in str(exc.value)
    assert db.session.get(GnuHealthConfig, 1) is None


def test_unknown_database(app, gnuhealth):
    with pytest.raises(ghc.UnknownDatabase, match="has no database 'nosuchdb'"):
        _configure(gnuhealth, database="nosuchdb")
    assert get_config() is None


@pytest.mark.parametrize("gnuhealth_template", ["bare"])
def test_server_without_health_imaging(app, gnuhealth):
    with pytest.raises(ghc.ModuleMissing, match="does not have health_imaging activated"):
        _configure(gnuhealth)


@pytest.mark.parametrize("gnuhealth_template", ["imaging"])
def test_health_orthanc_is_optional_and_shown_missing(app, gnuhealth):
    report = _configure(gnuhealth)
    assert report.modules == ["health_imaging"]
    assert "health_orthanc not active" in "\n".join(report.lines())


def test_user_without_professional_gets_gnu_healths_own_refusal(app, gnuhealth):
    with pytest.raises(ghc.NoProfessional, match="SM-CORE-0007"):
        _configure(gnuhealth, username=NOPROF_USER, password=NOPROF_PASSWORD)
    assert get_config() is None


def test_user_without_professional_works_with_a_default_professional(app, gnuhealth):
    prof = gnuhealth.admin().search_read("gnuhealth.healthprofessional", [], ["rec_name"])[0]
    report = _configure(gnuhealth, username=NOPROF_USER, password=NOPROF_PASSWORD,
                        default_professional_id=prof["id"])
    assert report.uses_default_professional and report.professional_id == prof["id"]


def test_unreachable_server(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with pytest.raises(ghc.Unreachable, match="refused the connection"):
        configure(url=f"http://127.0.0.1:{port}/", database="health", username="u", password="p")


def test_a_server_that_stops_answering_is_a_timeout(app, gnuhealth):
    app.config["GNUHEALTH_TIMEOUT"] = 1
    os.kill(gnuhealth.proc.pid, signal.SIGSTOP)  # the real trytond, frozen: connects, never answers
    try:
        with pytest.raises(ghc.Timeout, match="did not answer within 1 s"):
            _configure(gnuhealth)
    finally:
        os.kill(gnuhealth.proc.pid, signal.SIGCONT)


def test_calls_use_the_session_and_log_in_again_when_it_is_refused(app, gnuhealth):
    client = ghc.GnuHealthClient(gnuhealth.url, gnuhealth.database, gnuhealth.user, gnuhealth.password)
    client.login(force=True)
    types = client.search("gnuhealth.imaging.test.type", [])
    assert types  # GNU Health ships the DICOM modality types
    calls = client.calls
    # The server forgets the session (expired, or a restore of its database):
    key = client._key
    uid, _ = ghc._sessions[key]
    ghc._sessions[key] = (uid, "0" * 64)
    other = ghc.GnuHealthClient(gnuhealth.url, gnuhealth.database, gnuhealth.user, gnuhealth.password)
    assert other.search("gnuhealth.imaging.test.type", []) == types
    # refused once, one new login, the call again
    assert other.calls == 3 and client.calls == calls
    assert ghc._sessions[key][1] != "0" * 64


def test_saved_settings_are_checked_again_and_failures_recorded(app, gnuhealth_settings):
    gh = gnuhealth_settings
    assert run_check().version == "7.0.59"
    gh.kill()
    with pytest.raises(ghc.Unreachable):
        run_check()
    cfg = get_config()
    assert not cfg.check_ok and "refused the connection" in cfg.check_error


def test_bad_address_is_a_clear_message(app):
    from ghimaging.gnuhealth.settings import SettingsError

    with pytest.raises(SettingsError, match="must start with http"):
        configure(url="gnuhealth:8000", database="health", username="u", password="p")


def test_admin_page_saves_tests_and_never_shows_the_password(app, gnuhealth, make_user, login, caplog):
    caplog.set_level(logging.DEBUG)
    make_user("boss", "admin")
    c = login("boss")
    r = c.post("/admin/gnuhealth/", {"enabled": "y", "url": gnuhealth.url, "database": gnuhealth.database,
                                     "username": gnuhealth.user, "password": gnuhealth.password},
               token_from="/admin/gnuhealth/")
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    page = c.get("/admin/gnuhealth/").get_data(as_text=True)
    assert "trytond 7.0.59" in page and "health_orthanc active" in page and "Radiology, Ghimaging" in page
    assert gnuhealth.password not in page
    r = c.post("/admin/gnuhealth/check", token_from="/admin/gnuhealth/")
    assert r.status_code == 302
    assert "Connection works" in c.get("/admin/gnuhealth/").get_data(as_text=True)
    # A wrong password: refused with its reason, the saved one stays.
    r = c.post("/admin/gnuhealth/", {"enabled": "y", "url": gnuhealth.url, "database": gnuhealth.database,
                                     "username": gnuhealth.user, "password": "Wrong-1"},
               token_from="/admin/gnuhealth/")
    assert r.status_code == 400 and "refused the user name or password" in r.get_data(as_text=True)
    assert run_check().version == "7.0.59"
    assert gnuhealth.password not in caplog.text and "Wrong-1" not in caplog.text


def test_cli_configure_and_check(app, gnuhealth):
    runner = app.test_cli_runner()
    args = ["gnuhealth", "configure", "--url", gnuhealth.url, "--database", gnuhealth.database,
            "--user", gnuhealth.user, "--password-stdin"]
    bad = runner.invoke(args=args, input="wrong\n")
    assert bad.exit_code != 0 and "refused the user name or password" in bad.output
    ok = runner.invoke(args=args, input=gnuhealth.password + "\n")
    assert ok.exit_code == 0, ok.output
    assert "trytond 7.0.59" in ok.output and gnuhealth.password not in ok.output
    check = runner.invoke(args=["gnuhealth", "check"])
    assert check.exit_code == 0 and "Linked to health professional: Radiology, Ghimaging" in check.output
    gnuhealth.kill()
    down = runner.invoke(args=["gnuhealth", "check"])
    assert down.exit_code != 0 and "refused the connection" in down.output


# -- review fixes ------------------------------------------------------------------

def test_a_new_address_needs_the_password_again_page_and_cli(app, gnuhealth_settings, make_user, login):
    """The saved password is only ever sent to the server it was given for:
    leaving it empty while typing another scheme, host or port is refused,
    and nothing reaches the new address (a listener records what arrives)."""
    from tests.support.gnuhealth import Listener

    gh = gnuhealth_settings
    make_user("boss", "admin")
    c = login("boss")
    with Listener() as stranger:
        r = c.post("/admin/gnuhealth/", {"enabled": "y", "url": stranger.url, "database": gh.database,
                                         "username": gh.user, "password": ""}, token_from="/admin/gnuhealth/")
        assert r.status_code == 400 and "Enter the password again for the new address" in r.get_data(as_text=True)
        runner = app.test_cli_runner()
        cli = runner.invoke(args=["gnuhealth", "configure", "--url", stranger.url, "--database", gh.database,
                                  "--user", gh.user, "--password-stdin"], input="\n")
        assert cli.exit_code != 0 and "password is required" in cli.output
        # Another port of the same host is another server too.
        other_port = gh.url.replace(f":{gh.port}/", f":{stranger.port}/")
        with pytest.raises(SettingsError, match="password again"):
            configure(url=other_port, database=gh.database, username=gh.user, password=None)
        assert stranger.bodies == []
    assert get_config().url == gh.url
    # Same address, password left empty: kept and used, as before.
    r = c.post("/admin/gnuhealth/", {"enabled": "y", "url": gh.url, "database": gh.database,
                                     "username": gh.user, "password": ""}, token_from="/admin/gnuhealth/")
    assert r.status_code == 302
    assert run_check().version == "7.0.59"


def _saved_settings_pointing_at(url: str) -> None:
    from ghimaging import crypto

    cfg = get_config() or GnuHealthConfig(id=1)
    cfg.url, cfg.database, cfg.username = url, "health", "ghimaging"
    cfg.password_enc, cfg.enabled = crypto.encrypt("pw-1"), True
    db.session.add(cfg)
    db.session.commit()


def test_pages_answer_within_their_deadline_when_gnuhealth_trickles(app, make_user, login):
    """A server that sends a byte now and then never trips the read timeout;
    the patient search, "Test connection" and "Sync now" still answer within
    the page's deadline, and "Sync now" leaves the outbox to the loop."""
    import time

    from ghimaging.gnuhealth import outbox
    from tests.support.gnuhealth import Listener

    app.config["GNUHEALTH_PAGE_DEADLINE"] = 1.5
    make_user("boss", "admin")
    make_user("tech", "technologist")
    with Listener(trickle=True, every=0.2, for_seconds=30) as slow:
        _saved_settings_pointing_at(slow.url)
        boss = login("boss")
        started = time.monotonic()
        r = boss.post("/admin/gnuhealth/check", token_from="/admin/gnuhealth/")
        assert r.status_code == 302 and time.monotonic() - started < 6
        page = boss.get("/admin/gnuhealth/").get_data(as_text=True)
        assert "did not finish within 1.5 s" in page
        outbox.wake.clear()
        started = time.monotonic()
        r = boss.post("/admin/gnuhealth/sync", token_from="/admin/gnuhealth/")
        assert r.status_code == 302 and time.monotonic() - started < 6
        assert outbox.wake.is_set()  # the background loop sends the outbox
        assert "did not finish within 1.5 s" in boss.get("/admin/gnuhealth/").get_data(as_text=True)
        tech = login("tech")
        started = time.monotonic()
        r = tech.get("/gnuhealth/patients?q=anyone")
        assert r.status_code == 200 and time.monotonic() - started < 6
        assert "did not finish within 1.5 s" in r.get_data(as_text=True)
        assert len(slow.bodies) >= 3


def test_a_gnuhealth_test_id_too_big_for_a_database_is_refused(app, gnuhealth_settings, catalog, make_user, login):
    make_user("boss", "admin")
    c = login("boss")
    test_id = catalog["chest"].id
    for bad in (str(10**30), "-5", "x"):
        r = c.post("/admin/gnuhealth/tests", {"test_id": str(test_id), "remote_id": bad},
                   token_from="/admin/gnuhealth/tests")
        assert r.status_code == 302, bad
        assert "must be a whole number" in c.get("/admin/gnuhealth/tests").get_data(as_text=True)
    r = c.post("/admin/gnuhealth/tests", {"test_id": str(10**30), "remote_id": "1"},
               token_from="/admin/gnuhealth/tests")
    assert r.status_code == 404
