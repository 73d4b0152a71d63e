"""Files at rest: the instance folder is the application user's alone (0700);
the SQLite database and its -wal/-shm, the secret key, the credentials key,
the first admin's password and report images are 0600, whatever the umask
the process started with; files left readable by an older version are
tightened at start-up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from ghimaging import create_app, crypto
from ghimaging.extensions import db
from ghimaging.imaging import images
from tests.support.factories import png_bytes

UMASKS = [pytest.param(0o022, id="umask-022"), pytest.param(0o000, id="umask-000")]


@pytest.fixture(autouse=True)
def no_settings_from_the_shell(monkeypatch):
    """The app below uses its own SQLite file in its instance folder."""
    for key in list(os.environ):
        if key.startswith("GHIMAGING_") and not key.startswith("GHIMAGING_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture
def umask():
    """``umask(value)`` for the rest of the test; the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): mode(p) for p in sorted(folder.rglob("*"))}


def start(instance: Path, *args: str):
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
    if args:
        result = app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
    return app


@pytest.mark.parametrize("value", UMASKS)
def test_everything_in_a_new_instance_folder_is_private(tmp_path, umask, value):
    umask(value)
    instance = tmp_path / "instance"
    app = start(instance, "init", "--create-admin")
    with app.app_context():
        with db.engine.connect() as conn:  # held open: the -wal and -shm files exist meanwhile
            conn.execute(text("UPDATE settings SET value = value"))
            conn.execute(text("CREATE TABLE IF NOT EXISTS touch (x INTEGER)"))
            conn.commit()
            assert crypto.decrypt(crypto.encrypt("orthanc-password")) == "orthanc-password"
            with app.test_request_context():
                stored = images.store(png_bytes(), "key-image.png")
            found = modes(instance)
        db.engine.dispose()
    image_dir = Path(app.config["RESULT_IMAGE_DIR"]).relative_to(instance)
    expected_files = {"ghimaging.sqlite", "ghimaging.sqlite-wal", "ghimaging.sqlite-shm", "secret_key",
                      "credentials.key", "initial-admin-password", f"{image_dir}/{stored.stored_name}",
                      f"{image_dir}/{images.thumb_name(stored.stored_name)}"}
    assert expected_files <= set(found)
    assert mode(instance) == 0o700
    assert {name: m for name, m in found.items() if name in expected_files} == {n: 0o600 for n in expected_files}
    assert found[str(image_dir)] == 0o700
    # and nothing else in there is open to others
    assert {name: m for name, m in found.items() if m & 0o077 and not name.startswith("worklists")} == {}


@pytest.mark.parametrize("value", UMASKS)
def test_report_images_are_private_in_a_folder_made_elsewhere(tmp_path, umask, value):
    umask(value)
    app = start(tmp_path / "instance")
    app.config["RESULT_IMAGE_DIR"] = str(tmp_path / "shared" / "images")
    with app.test_request_context():
        stored = images.store(png_bytes(), "scan.png")
    folder = tmp_path / "shared" / "images"
    assert mode(folder) == 0o700
    assert mode(folder / stored.stored_name) == 0o600
    assert mode(folder / images.thumb_name(stored.stored_name)) == 0o600


def test_files_left_readable_by_an_older_version_are_tightened_at_start(tmp_path, umask):
    umask(0o022)
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    old = {"secret_key": "k" * 64 + "\n", "credentials.key": "c" * 44 + "\n", "initial-admin-password": "pw\n",
           "ghimaging.sqlite": "", "ghimaging.sqlite-wal": "", "ghimaging.sqlite-shm": ""}
    for name, content in old.items():
        (instance / name).write_text(content)
        os.chmod(instance / name, 0o644)
    app = start(instance)
    assert mode(instance) == 0o700
    assert {name: mode(instance / name) for name in old} == {name: 0o600 for name in old}
    assert app.secret_key == "k" * 64  # tightened, not replaced


def test_a_database_outside_the_instance_folder_is_private_too(tmp_path, umask):
    umask(0o000)
    url = f"sqlite:///{tmp_path / 'data' / 'clinic.sqlite'}"
    (tmp_path / "data").mkdir()
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": url, "TESTING": True})
    with app.app_context():
        with db.engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.commit()
            assert {p.name: mode(p) for p in (tmp_path / "data").iterdir()} == {
                "clinic.sqlite": 0o600, "clinic.sqlite-wal": 0o600, "clinic.sqlite-shm": 0o600}
        db.engine.dispose()


def test_a_shared_sticky_folder_given_as_instance_folder_is_not_closed_to_others(tmp_path, umask):
    """``GHIMAGING_INSTANCE_PATH=/tmp`` by mistake must not make /tmp 0700;
    the files the application writes there are still its own."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    start(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert mode(shared / "secret_key") == 0o600
    assert mode(shared / "ghimaging.sqlite") == 0o600
