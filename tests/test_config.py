"""Settings: where they come from, how strictly they are read, and the
instance folder (database, secret key) they point at."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ghimaging import create_app
from ghimaging.config import ConfigError
from ghimaging.extensions import db


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No GHIMAGING_* setting leaks in from the shell running the suite, and
    nothing is written into the checkout or the current directory."""
    for key in list(os.environ):
        if key.startswith("GHIMAGING_") and not key.startswith("GHIMAGING_TEST_"):
            monkeypatch.delenv(key)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def instance(tmp_path, monkeypatch):
    path = tmp_path / "instance"
    path.mkdir()
    monkeypatch.setenv("GHIMAGING_INSTANCE_PATH", str(path))
    return path


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


# -- configuration order ------------------------------------------------------

def test_settings_come_from_defaults_then_instance_config_then_environment_then_test_config(instance, monkeypatch):
    (instance / "config.py").write_text(
        "ITEMS_PER_PAGE = 30\n"
        "ACCESSION_PREFIX = 'INST'\n"
        "ORDER_PREFIX = 'IO'\n"
        "LOGIN_MAX_FAILURES = 9\n"
    )
    monkeypatch.setenv("GHIMAGING_ACCESSION_PREFIX", "ENV")
    monkeypatch.setenv("GHIMAGING_ORDER_PREFIX", "EO")
    monkeypatch.setenv("GHIMAGING_LOGIN_MAX_FAILURES", "7")

    app = create_app({"ORDER_PREFIX": "TC", "SECRET_KEY": "x" * 32})

    assert app.config["LOGIN_LOCKOUT_SECONDS"] == 300  # built-in default
    assert app.config["ITEMS_PER_PAGE"] == 30  # instance/config.py over the default
    assert app.config["ACCESSION_PREFIX"] == "ENV"  # environment over instance/config.py
    assert app.config["LOGIN_MAX_FAILURES"] == 7
    assert app.config["ORDER_PREFIX"] == "TC"  # test config over everything


def test_instance_config_applies_without_environment(instance):
    (instance / "config.py").write_text("ITEMS_PER_PAGE = 12\nCLINIC_EXTRA = 'kept'\n")
    app = create_app({"SECRET_KEY": "x" * 32})
    assert app.config["ITEMS_PER_PAGE"] == 12
    assert app.config["CLINIC_EXTRA"] == "kept"


def test_environment_values_are_parsed_to_the_type_of_the_default(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_ITEMS_PER_PAGE", "40")
    monkeypatch.setenv("GHIMAGING_SESSION_COOKIE_SECURE", "yes")
    monkeypatch.setenv("GHIMAGING_PERMANENT_SESSION_LIFETIME", "3600")
    monkeypatch.setenv("GHIMAGING_ORG_ROOT", "1.2.826.0.1.3680043.10.1234")
    app = create_app({"SECRET_KEY": "x" * 32})
    assert app.config["ITEMS_PER_PAGE"] == 40
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=1)
    assert app.config["ORG_ROOT"] == "1.2.826.0.1.3680043.10.1234"


def test_database_url_from_the_environment_replaces_the_instance_sqlite(instance, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    monkeypatch.setenv("GHIMAGING_DATABASE_URL", url)
    app = create_app({"SECRET_KEY": "x" * 32})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url


# -- strict parsing -------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("ITEMS_PER_PAGE", "ten"),
    ("ITEMS_PER_PAGE", "2.5"),
    ("LOGIN_MAX_FAILURES", ""),
    ("SESSION_COOKIE_SECURE", "maybe"),
    ("PERMANENT_SESSION_LIFETIME", "12h"),
])
def test_a_badly_typed_environment_value_stops_startup_naming_the_variable(instance, monkeypatch, name, value):
    monkeypatch.setenv(f"GHIMAGING_{name}", value)
    with pytest.raises(ConfigError, match=f"GHIMAGING_{name}"):
        create_app({"SECRET_KEY": "x" * 32})


def test_an_unknown_ghimaging_variable_stops_startup(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_FOO", "1")
    with pytest.raises(ConfigError, match="GHIMAGING_FOO"):
        create_app({"SECRET_KEY": "x" * 32})


def test_a_misspelt_setting_is_refused_rather_than_ignored(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_ITEMS_PERPAGE", "10")
    with pytest.raises(ConfigError, match="GHIMAGING_ITEMS_PERPAGE"):
        create_app({"SECRET_KEY": "x" * 32})


def test_variables_of_the_test_suite_are_not_settings(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_TEST_SOMETHING", "whatever")
    app = create_app({"SECRET_KEY": "x" * 32})
    assert "TEST_SOMETHING" not in app.config


def test_a_list_setting_from_the_environment_is_never_a_bare_string(instance, monkeypatch):
    """Flask iterates SECRET_KEY_FALLBACKS: kept as the string 'old-key', every
    single character would become a key that signs valid session cookies."""
    monkeypatch.setenv("GHIMAGING_SECRET_KEY_FALLBACKS", "old-secret-key")
    try:
        app = create_app({"SECRET_KEY": "x" * 32})
    except ConfigError as exc:
        assert "GHIMAGING_SECRET_KEY_FALLBACKS" in str(exc)
    else:
        fallbacks = app.config["SECRET_KEY_FALLBACKS"]
        assert not isinstance(fallbacks, str)
        assert "old-secret-key" in list(fallbacks)


@pytest.mark.parametrize("variable", ["GHIMAGING_SESSION_COOKIE_SECURE", "GHIMAGING_REMEMBER_COOKIE_SECURE"])
def test_either_secure_setting_makes_both_cookies_secure(instance, monkeypatch, variable):
    """A remember-me cookie sent over plain HTTP is a sign-in for days."""
    monkeypatch.setenv(variable, "true")
    app = create_app({"SECRET_KEY": "x" * 32})
    assert (app.config["SESSION_COOKIE_SECURE"], app.config["REMEMBER_COOKIE_SECURE"]) == (True, True)


def test_cookies_are_not_secure_unless_asked(instance):
    app = create_app({"SECRET_KEY": "x" * 32})
    assert (app.config["SESSION_COOKIE_SECURE"], app.config["REMEMBER_COOKIE_SECURE"]) == (False, False)


def test_a_secure_setting_that_is_not_a_boolean_is_refused(instance):
    """``SESSION_COOKIE_SECURE = "false"`` in instance/config.py is a true
    string: refused rather than read as yes."""
    (instance / "config.py").write_text('SESSION_COOKIE_SECURE = "false"\n')
    with pytest.raises(ConfigError, match="SESSION_COOKIE_SECURE"):
        create_app({"SECRET_KEY": "x" * 32})


@pytest.mark.parametrize("name", ["LOGIN_MAX_FAILURES", "LOGIN_LOCKOUT_SECONDS"])
def test_sign_in_throttling_settings_below_one_are_refused(instance, monkeypatch, name):
    monkeypatch.setenv(f"GHIMAGING_{name}", "0")
    with pytest.raises(ConfigError, match=name):
        create_app({"SECRET_KEY": "x" * 32})


@pytest.mark.parametrize("name", ["ORTHANC_TIMEOUT", "ORTHANC_PAGE_DEADLINE", "ORTHANC_PREVIEW_DEADLINE",
                                  "ORTHANC_DOWNLOAD_IDLE_TIMEOUT", "UPLOAD_ORTHANC_TIMEOUT", "UPLOAD_DEADLINE",
                                  "GNUHEALTH_TIMEOUT", "GNUHEALTH_PAGE_DEADLINE"])
def test_timeouts_must_be_positive(instance, monkeypatch, name):
    monkeypatch.setenv(f"GHIMAGING_{name}", "0")
    with pytest.raises(ConfigError, match=name):
        create_app({"SECRET_KEY": "x" * 32})


def test_upload_deadlines_come_from_the_environment(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_UPLOAD_ORTHANC_TIMEOUT", "12")
    monkeypatch.setenv("GHIMAGING_UPLOAD_DEADLINE", "120")
    app = create_app({"SECRET_KEY": "x" * 32})
    assert (app.config["UPLOAD_ORTHANC_TIMEOUT"], app.config["UPLOAD_DEADLINE"]) == (12, 120)


def test_items_per_page_below_one_is_refused(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_ITEMS_PER_PAGE", "0")
    with pytest.raises(ConfigError, match="ITEMS_PER_PAGE"):
        create_app({"SECRET_KEY": "x" * 32})


# -- accession prefix and organisation root -----------------------------------

@pytest.mark.parametrize("prefix", [
    "TOOLONGPF",  # 9 characters: leaves too little of the 16 for the number
    "G H",
    "GH/",
    "GH\\",
    " GH",
    "GH^",
    pytest.param("ÄB", id="non-ascii"),  # AccessionNumber is SH: the default character repertoire
])
def test_an_unusable_accession_prefix_is_refused(instance, prefix):
    with pytest.raises(ConfigError, match="ACCESSION_PREFIX"):
        create_app({"SECRET_KEY": "x" * 32, "ACCESSION_PREFIX": prefix})


def test_an_unusable_accession_prefix_from_the_environment_is_refused(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_ACCESSION_PREFIX", "WAY-TOO-LONG")
    with pytest.raises(ConfigError, match="ACCESSION_PREFIX"):
        create_app({"SECRET_KEY": "x" * 32})


@pytest.mark.parametrize("prefix", ["", "GH", "RAD-1", "X_Y", "ABCDEFGH"])
def test_usable_accession_prefixes_are_accepted(instance, prefix):
    app = create_app({"SECRET_KEY": "x" * 32, "ACCESSION_PREFIX": prefix})
    assert app.config["ACCESSION_PREFIX"] == prefix


@pytest.mark.parametrize("root", [
    "1.2.03",  # a component may not start with 0
    "1..2",
    "1.2.",
    ".1.2",
    "1.2.a",
    "1.2 .3",
    "1.2.840.10008." + "1" * 30,  # over 40 characters: no room left for the suffix
    pytest.param("1.2.²", id="unicode-digit"),  # a UID has only the digits 0-9
])
def test_an_invalid_organisation_root_is_refused(instance, root):
    with pytest.raises(ConfigError, match="ORG_ROOT"):
        create_app({"SECRET_KEY": "x" * 32, "ORG_ROOT": root})


def test_an_invalid_organisation_root_from_the_environment_is_refused(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_ORG_ROOT", "1.2.x")
    with pytest.raises(ConfigError, match="ORG_ROOT"):
        create_app({"SECRET_KEY": "x" * 32})


@pytest.mark.parametrize("root", ["", "1.2.826.0.1.3680043.10.1234", "2.25", "1.0.3"])
def test_valid_organisation_roots_are_accepted(instance, root):
    app = create_app({"SECRET_KEY": "x" * 32, "ORG_ROOT": root})
    assert app.config["ORG_ROOT"] == root


# -- the instance folder ---------------------------------------------------------

def test_relative_instance_path_is_refused(monkeypatch):
    monkeypatch.setenv("GHIMAGING_INSTANCE_PATH", "relative/instance")
    with pytest.raises(ConfigError, match="GHIMAGING_INSTANCE_PATH"):
        create_app()


def test_absolute_instance_path_holds_the_database_and_the_secret_key(tmp_path, monkeypatch, clean_env):
    target = tmp_path / "moved" / "instance"  # does not exist yet
    monkeypatch.setenv("GHIMAGING_INSTANCE_PATH", str(target))

    app = create_app()
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    _dispose(app)

    assert app.instance_path == str(target)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{target / 'ghimaging.sqlite'}"
    assert (target / "ghimaging.sqlite").stat().st_size > 0
    key_file = target / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == app.secret_key
    assert len(app.secret_key) >= 32
    assert not (clean_env / "instance").exists()  # nothing in the working directory


def test_the_generated_secret_key_is_reused_on_the_next_start(instance):
    first = create_app()
    content = (instance / "secret_key").read_text()
    second = create_app()
    assert second.secret_key == first.secret_key
    assert (instance / "secret_key").read_text() == content
    assert stat.S_IMODE((instance / "secret_key").stat().st_mode) == 0o600


def test_an_empty_secret_key_file_is_replaced(instance):
    (instance / "secret_key").write_text("\n")
    app = create_app()
    assert app.secret_key
    assert (instance / "secret_key").read_text().strip() == app.secret_key


def test_a_configured_secret_key_writes_no_key_file(instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_SECRET_KEY", "k" * 40)
    app = create_app()
    assert app.secret_key == "k" * 40
    assert not (instance / "secret_key").exists()


# -- SQLite connection ---------------------------------------------------------------

@pytest.fixture
def sqlite_app(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "inst"), "SECRET_KEY": "x" * 32,
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'pragmas.sqlite'}"})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_sqlite_connections_enforce_foreign_keys(sqlite_app):
    assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
    db.session.execute(text("CREATE TABLE child (id INTEGER PRIMARY KEY, "
                            "parent_id INTEGER NOT NULL REFERENCES parent(id))"))
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(text("INSERT INTO child (parent_id) VALUES (42)"))
        db.session.commit()
    db.session.rollback()


def test_sqlite_connections_use_wal_and_a_busy_timeout(sqlite_app):
    assert db.session.execute(text("PRAGMA journal_mode")).scalar().lower() == "wal"
    assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 10_000


def test_sqlite_busy_timeout_follows_the_setting(tmp_path, instance, monkeypatch):
    monkeypatch.setenv("GHIMAGING_SQLITE_BUSY_TIMEOUT_MS", "2500")
    app = create_app({"SECRET_KEY": "x" * 32, "DATABASE_URL": f"sqlite:///{tmp_path / 'busy.sqlite'}"})
    with app.app_context():
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 2500
        db.session.remove()
        db.engine.dispose()
