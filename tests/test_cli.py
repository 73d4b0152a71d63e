"""The ``ghimaging`` command: in process through Flask's CLI runner, and as
the installed console script in a subprocess against the suite's database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ghimaging.auth.service import change_own_password
from ghimaging.extensions import db
from ghimaging.models import ModalityType, Role, User
from tests.support.factories import PASSWORD

SEEDED = {"CR", "CT", "DX", "MG", "MR", "NM", "PT", "RF", "US", "XA"}
BIN = Path(sys.executable).parent


def modality_codes() -> list[str]:
    db.session.expire_all()
    return sorted(db.session.scalars(select(ModalityType.code)))


def user_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(User))


def me(app, token: str):
    return app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


# -- in process -------------------------------------------------------------------

@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def create_user(runner, username: str, *roles: str, password: str = PASSWORD):
    args = ["create-user", username, "--password-stdin"]
    for r in roles:
        args += ["--role", r]
    return runner.invoke(args=args, input=password + "\n")


def test_init_seeds_ten_modality_types_and_can_run_again(runner):
    first = runner.invoke(args=["init"])
    assert first.exit_code == 0, first.output
    assert "10 modality type(s) added" in first.output
    second = runner.invoke(args=["init"])
    assert second.exit_code == 0, second.output
    assert "0 modality type(s) added" in second.output
    assert modality_codes() == sorted(SEEDED)


def test_init_keeps_a_renamed_modality_type(runner):
    assert runner.invoke(args=["init"]).exit_code == 0
    cr = db.session.scalar(select(ModalityType).where(ModalityType.code == "CR"))
    cr.name = "Radiography room 2"
    db.session.commit()
    assert runner.invoke(args=["init"]).exit_code == 0
    db.session.expire_all()
    assert db.session.scalar(select(ModalityType.name).where(ModalityType.code == "CR")) == "Radiography room 2"
    assert modality_codes() == sorted(SEEDED)


def test_create_user_reads_the_password_from_stdin_and_takes_several_roles(runner, login):
    result = create_user(runner, "alice", "physician", "radiologist")
    assert result.exit_code == 0, result.output
    assert "alice" in result.output
    user = db.session.scalar(select(User).where(User.username == "alice"))
    assert user.roles == {Role.PHYSICIAN, Role.RADIOLOGIST}
    assert user.password_hash != PASSWORD
    # The password was typed by whoever ran the command: alice chooses her own first.
    assert login("alice").get("/requests/new").location == "/account/password?next=/requests/new"


def test_create_user_asks_twice_when_the_password_is_not_piped(runner):
    result = runner.invoke(args=["create-user", "bob", "--role", "technologist"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User).where(User.username == "bob")).check_password(PASSWORD)


@pytest.mark.parametrize("name", ["alice", "ALICE", " alice"])
def test_create_user_refuses_a_duplicate_username(runner, name):
    assert create_user(runner, "alice", "admin").exit_code == 0
    result = create_user(runner, name, "physician")
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    assert user_count() == 1


@pytest.mark.parametrize("password, message", [
    ("short1!", "at least 8 characters"),
    ("", "at least 8 characters"),
    ("aaaaaaaa", "too simple"),
    ("abababab", "too simple"),
])
def test_create_user_refuses_a_weak_password_with_a_clear_message(runner, password, message):
    result = create_user(runner, "carol", "physician", password=password)
    assert result.exit_code != 0
    assert message in result.output
    assert "Error:" in result.output
    assert user_count() == 0


def test_create_user_refuses_an_unknown_role(runner):
    result = create_user(runner, "dave", "janitor")
    assert result.exit_code == 2
    assert "janitor" in result.output
    assert user_count() == 0


def test_create_user_needs_a_role(runner):
    result = runner.invoke(args=["create-user", "erin", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 2
    assert "--role" in result.output
    assert user_count() == 0


def test_create_user_refuses_a_username_with_spaces(runner):
    result = create_user(runner, "frank smith", "physician")
    assert result.exit_code != 0
    assert "without spaces" in result.output
    assert user_count() == 0


def test_create_token_prints_a_bearer_token_for_the_api(app, runner, make_user):
    make_user("gina", "physician", "technologist")
    result = runner.invoke(args=["create-token", "gina", "--name", "script"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert len(token.split()) == 1
    r = me(app, token)
    assert r.status_code == 200
    assert r.get_json()["username"] == "gina"
    assert r.get_json()["roles"] == ["physician", "technologist"]


def test_each_create_token_gives_a_new_working_token(app, runner, make_user):
    make_user("hugo", "radiologist")
    tokens = [runner.invoke(args=["create-token", "hugo"]).output.strip() for _ in range(2)]
    assert tokens[0] != tokens[1]
    assert [me(app, t).status_code for t in tokens] == [200, 200]


def test_create_token_for_an_unknown_user_fails(runner):
    result = runner.invoke(args=["create-token", "nobody"])
    assert result.exit_code != 0
    assert "No active user 'nobody'" in result.output


def test_create_token_for_a_disabled_user_fails(runner, make_user):
    user = make_user("ivan", "physician")
    user.active = False
    db.session.commit()
    result = runner.invoke(args=["create-token", "ivan"])
    assert result.exit_code != 0
    assert "No active user" in result.output


def test_a_made_up_token_is_refused(app):
    assert me(app, "ghi_not-a-token").status_code == 401


# -- the console script -----------------------------------------------------------------

@pytest.fixture
def script(app, database_url, tmp_path):
    """Run ``ghimaging`` (or another console script) as a clinic would, on the
    suite's database, from a directory outside the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHIMAGING_", "FLASK_"))}
    env["GHIMAGING_INSTANCE_PATH"] = str(tmp_path / "instance")
    env["GHIMAGING_DATABASE_URL"] = database_url
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(*args: str, program: str = "ghimaging", stdin: str | None = None, **extra_env: str):
        return subprocess.run([str(BIN / program), *args], input=stdin, capture_output=True, text=True,
                              env={**env, **extra_env}, cwd=cwd, timeout=120)

    return run


def test_console_script_init_is_idempotent(script):
    for expected in ("10 modality type(s) added", "0 modality type(s) added"):
        r = script("init")
        assert r.returncode == 0, r.stderr
        assert expected in r.stdout
    assert modality_codes() == sorted(SEEDED)


def test_console_script_creates_users_and_tokens(app, script):
    r = script("create-user", "june", "--role", "physician", "--role", "radiologist", "--password-stdin",
               stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    db.session.expire_all()
    assert db.session.scalar(select(User).where(User.username == "june")).roles == {Role.PHYSICIAN, Role.RADIOLOGIST}

    dup = script("create-user", "June", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert dup.returncode != 0
    assert "already exists" in dup.stderr
    assert "Traceback" not in dup.stderr

    tok = script("create-token", "june")
    assert tok.returncode == 0, tok.stderr
    # June's token works once she has chosen her own password.
    assert me(app, tok.stdout.strip()).get_json()["error"] == "password_change_required"
    june = db.session.scalar(select(User).where(User.username == "june"))
    change_own_password(june, PASSWORD, "June-chose-this-1")
    db.session.commit()
    assert me(app, tok.stdout.strip()).get_json()["username"] == "june"
    assert user_count() == 1


def test_console_script_errors_are_one_clear_line(script):
    weak = script("create-user", "kim", "--role", "admin", "--password-stdin", stdin="abc\n")
    assert weak.returncode != 0
    assert "Password must be at least 8 characters" in weak.stderr
    assert "Traceback" not in weak.stderr

    unknown = script("create-token", "nobody")
    assert unknown.returncode != 0
    assert "No active user 'nobody'" in unknown.stderr
    assert unknown.stdout == ""
    assert user_count() == 0


def test_console_script_reports_a_bad_setting_without_a_traceback(script):
    r = script("init", GHIMAGING_ITEMS_PER_PAGE="ten")
    assert r.returncode != 0
    assert "GHIMAGING_ITEMS_PER_PAGE" in r.stderr
    assert "Traceback" not in r.stderr


def test_flask_app_ghimaging_routes_lists_the_application(script):
    r = script("--app", "ghimaging", "routes", program="flask")
    assert r.returncode == 0, r.stderr
    for rule in ("/login", "/requests/new", "/patients/lookup", "/api/v1/me", "/api/v1/openapi.json"):
        assert rule in r.stdout


def test_flask_app_ghimaging_has_the_ghimaging_commands(app):
    """``flask --app ghimaging`` shows the commands of ``app.cli``."""
    assert {"init", "create-user", "create-token", "serve"} <= set(app.cli.commands)


# -- serving ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["serve", "wsgi"])
def test_both_ways_of_serving_use_threaded_workers(app, database_url, tmp_path, command):
    """``ghimaging serve`` and ``gunicorn -c python:ghimaging.gunicorn_conf
    wsgi:app`` (the README's two ways) both run gunicorn's gthread workers
    (a slow request holds one thread, not a process; see
    tests/test_orthanc_deadlines.py) and answer."""
    import re
    import signal
    import socket
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHIMAGING_", "FLASK_"))}
    env.update(GHIMAGING_INSTANCE_PATH=str(tmp_path / "instance"), GHIMAGING_DATABASE_URL=database_url,
               GHIMAGING_ORTHANC_SYNC_INTERVAL="0", GHIMAGING_ORTHANC_RECONCILE_INTERVAL="0")
    root = Path(__file__).resolve().parent.parent
    # Both from this checkout's package (the console script would import the installed one).
    args = ([sys.executable, "-c", "from ghimaging.cli import main; main()", "serve", "--port", str(port)]
            if command == "serve" else
            [sys.executable, "-m", "gunicorn", "-c", "python:ghimaging.gunicorn_conf", "-b", f"127.0.0.1:{port}",
             "wsgi:app"])
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        started = time.monotonic()
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() - started < 60, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    text = log_path.read_text()
    assert "Using worker: gthread" in text
    # One worker by default: the installer's unit (a whole process per worker costs memory on a Pi).
    assert len(set(re.findall(r"Booting worker with pid: (\d+)", text))) == 1
    assert "Control socket" not in text
