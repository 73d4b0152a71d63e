"""ghimaging backup / restore: a backup restored into an empty instance
gives the same rows and files, on SQLite and on PostgreSQL (the suite's
second run), and a bad or foreign backup changes nothing."""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ghimaging import backup, create_app, crypto
from ghimaging.exceptions import Conflict, Invalid
from ghimaging.extensions import db
from ghimaging.models import OrthancServer
from tests.support.factories import png_bytes


def all_rows(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: sorted(map(tuple, conn.execute(t.select()).all()), key=repr)
                    for t in db.metadata.sorted_tables}
    finally:
        engine.dispose()


@pytest.fixture
def clinic(app, make_user, create_request, catalog):
    """A little of everything: users, patients, requests, a result image,
    an Orthanc server whose password is stored encrypted."""
    make_user("boss", "admin")
    make_user("doc", "physician")
    create_request(submit=True)
    create_request()
    folder = Path(app.config["RESULT_IMAGE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "k1.png").write_bytes(png_bytes().getvalue())
    db.session.add(OrthancServer(label="Main", url="http://127.0.0.1:1/", username="orthanc",
                                 password_enc=crypto.encrypt("orthanc-secret")))
    db.session.commit()
    return app


def test_backup_then_restore_into_an_empty_instance_gives_the_same_rows_and_files(clinic, tmp_path, fresh_url):
    app = clinic
    target = tmp_path / "out" / "clinic.tar.gz"
    summary = backup.backup(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert summary.files >= 3 and summary.revision
    with tarfile.open(target) as tar:
        names = tar.getnames()
    assert "files/credentials.key" in names and "files/result_images/k1.png" in names
    before = all_rows(app.config["DATABASE_URL"])
    instance = Path(app.instance_path)

    empty = create_app({"INSTANCE_PATH": str(tmp_path / "second"), "DATABASE_URL": fresh_url, "TESTING": True})
    with empty.app_context():
        restored = backup.restore(target)
        assert restored.database == summary.database
        server = db.session.query(OrthancServer).one()
        assert crypto.decrypt(server.password_enc) == "orthanc-secret"
        db.session.remove()
        db.engine.dispose()
    assert all_rows(fresh_url) == before
    second = tmp_path / "second"
    for rel in ("credentials.key", "secret_key", "result_images/k1.png"):
        assert (second / rel).read_bytes() == (instance / rel).read_bytes(), rel
        assert stat.S_IMODE(os.stat(second / rel).st_mode) == 0o600


def test_restore_refuses_an_instance_that_holds_data(clinic, tmp_path):
    target = tmp_path / "b.tar.gz"
    backup.backup(target)
    with pytest.raises(Conflict, match="already holds data"):
        backup.restore(target)


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("entries, message", [
    ({"manifest.json": b"{}", "../escape": b"x"}, "unexpected entry"),
    ({"manifest.json": b"{}", "files/../../escape": b"x"}, "unexpected entry"),
    ({"/etc/owned": b"x"}, "unexpected entry"),
    ({"manifest.json": b"not json"}, "no readable manifest"),
    ({"manifest.json": b'{"format": "other/9"}'}, "not a backup this version can read"),
])
def test_a_bad_backup_is_refused_before_anything_is_written(app, tmp_path, entries, message):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(_tar(entries))
    with pytest.raises(Invalid, match=message):
        backup.restore(bad, force=True)
    assert not (tmp_path / "escape").exists()


def test_a_file_that_is_not_a_backup_is_refused(app, tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"hello")
    with pytest.raises(Invalid, match="is not a ghimaging backup"):
        backup.restore(junk, force=True)


def test_a_backup_of_the_other_database_kind_is_refused(app, tmp_path):
    kind = db.engine.dialect.name
    other = "postgresql" if kind == "sqlite" else "sqlite"
    foreign = tmp_path / "foreign.tar.gz"
    foreign.write_bytes(_tar({"manifest.json": f'{{"format": "{backup.FORMAT}", "database": "{other}"}}'.encode()}))
    with pytest.raises(Invalid, match=f"holds a {other} database"):
        backup.restore(foreign, force=True)
    assert db.session.scalar(text("SELECT 1")) == 1



def test_a_backup_into_a_folder_it_cannot_write_says_so(app, tmp_path):
    """The installed `ghimaging` command runs as the service user, so `sudo
    ghimaging backup /root/x.tar.gz` meets a folder it may not write (a
    traceback before); here the folder is a file, which the tests can make
    as root."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(Invalid, match=re.escape(f"cannot write into {blocker} ")):
        backup.backup(blocker / "backup.tar.gz")
    # The command says it in one line, with a non-zero exit, not a traceback.
    said = app.test_cli_runner().invoke(args=["backup", str(blocker / "backup.tar.gz")])
    assert said.exit_code == 1
    assert f"Error: The backup cannot write into {blocker} " in said.output
    assert "Traceback" not in said.output

def test_the_cli_backs_up_and_restores_an_installed_instance(tmp_path, fresh_url):
    """As an IT person would: `ghimaging backup` on one instance, `ghimaging
    restore` on a new one, each in its own process with its own settings."""
    import subprocess
    import sys

    from tests.support.factories import PASSWORD

    def cli(instance: Path, url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GHIMAGING_INSTANCE_PATH": str(instance), "GHIMAGING_DATABASE_URL": url}
        return subprocess.run([sys.executable, "-c", "from ghimaging.cli import main; main()", *args], env=env,
                              input=stdin, capture_output=True, text=True, timeout=120, check=False)

    first, second = tmp_path / "first", tmp_path / "second"
    sqlite = fresh_url.startswith("sqlite")
    first_url = f"sqlite:///{tmp_path / 'first.sqlite'}" if sqlite else fresh_url
    second_url = f"sqlite:///{tmp_path / 'second.sqlite'}" if sqlite else fresh_url + "_restored"
    admin = None if sqlite else create_engine(fresh_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{second_url.rsplit("/", 1)[1]}"'))
    try:
        assert cli(first, first_url, "init").returncode == 0
        made = cli(first, first_url, "create-user", "boss", "--role", "admin", "--password-stdin",
                   stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        out = cli(first, first_url, "backup", str(tmp_path / "b.tar.gz"))
        assert out.returncode == 0, out.stderr
        assert "b.tar.gz" in out.stdout and stat.S_IMODE(os.stat(tmp_path / "b.tar.gz").st_mode) == 0o600
        refused = cli(first, first_url, "restore", str(tmp_path / "b.tar.gz"))
        assert refused.returncode == 1 and "already holds data" in refused.stderr
        done = cli(second, second_url, "restore", str(tmp_path / "b.tar.gz"))
        assert done.returncode == 0, done.stderr
        assert all_rows(second_url) == all_rows(first_url)
        assert (second / "secret_key").read_bytes() == (first / "secret_key").read_bytes()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{second_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
            admin.dispose()
