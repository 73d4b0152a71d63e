"""Orthanc server configuration: the admin pages, ``/api/v1/orthanc/servers``,
"Sync now" and ``ghimaging sync``, against a real Orthanc 1.10.1 and against
things that are not one (a refused port, a silent port, a web server)."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import OrthancServer, OrthancStudy
from ghimaging.orthanc import servers, sync
from ghimaging.ui import local_time
from tests.support import dicomgen
from tests.support.orthanc import OrthancServer as RealOrthanc
from tests.support.orthanc import SilentServer, find_free_port

ROLES_NOT_ADMIN = ("physician", "technologist", "radiologist")


@pytest.fixture
def app_config():
    return {"ORTHANC_TIMEOUT": 1}  # the silent port gives up after one second


def gen(n_patients, seed=0):
    return list(dicomgen.generate_studies(n_patients, 1, seed=seed, rows=16, cols=16))


def server_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(OrthancServer))


def fresh(server_id: int) -> OrthancServer:
    db.session.rollback()  # end our transaction: see what other threads committed
    return db.session.get(OrthancServer, server_id)


def wait_for(server_id: int, done, what: str) -> OrthancServer:
    """Poll the database until the background re-check has recorded its outcome."""
    for _ in range(400):
        server = fresh(server_id)
        if done(server):
            return server
        time.sleep(0.05)
    pytest.fail(f"the background re-check never {what}: {server.validated=} {server.last_error=!r}")


def errors(html: str) -> list[str]:
    return re.findall(r'<p class="error">([^<]*)</p>', html)


@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


@pytest.fixture
def bare_row(app):
    """A server row that no test talks to (for role checks)."""
    row = OrthancServer(label="Spare", url="http://127.0.0.1:9", needs_full_sync=True)
    db.session.add(row)
    db.session.commit()
    return row


class _NotOrthanc(BaseHTTPRequestHandler):
    mode = "html"

    def do_GET(self):
        if self.mode == "404":
            body, status, ctype = b"<h1>Not Found</h1>", 404, "text/html"
        elif self.mode == "json":
            body, status, ctype = b'{"status": "ok", "uptime": 12}', 200, "application/json"
        else:
            body, status, ctype = b"<html><body>Router admin</body></html>", 200, "text/html"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def not_orthanc():
    """``not_orthanc(mode)``: the URL of a small web server that is not Orthanc:
    ``html`` answers 200 HTML everywhere, ``404`` answers 404, ``json`` answers
    JSON without Orthanc's fields."""
    started = []

    def make(mode: str) -> str:
        handler = type("Handler", (_NotOrthanc,), {"mode": mode})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_port}"

    yield make
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


# -- adding a server ------------------------------------------------------------------

def test_admin_adds_a_server_and_sees_version_name_and_detected_plugins(app, admin, tmp_path):
    with RealOrthanc(tmp_path / "wl", worklists=True) as orthanc:
        r = admin.post("/orthanc/servers/new", {"label": "X-ray room", "url": orthanc.url + "/",
                                                "username": orthanc.username, "password": orthanc.password},
                       token_from="/orthanc/servers/new")
        assert r.status_code == 302, errors(r.get_data(as_text=True))
        row = db.session.scalar(select(OrthancServer))
        assert r.headers["Location"].endswith(f"/orthanc/servers/{row.id}")
        assert row.url == orthanc.url and row.validated and row.version == "1.10.1"
        assert row.orthanc_name == "ghimaging-test" and "worklists" in row.plugin_set
        assert row.needs_full_sync

        page = admin.get(f"/orthanc/servers/{row.id}").get_data(as_text=True)
        assert "Validated" in page and "1.10.1" in page and "ghimaging-test" in page
        assert '<span class="badge">worklists</span>' in page
        listing = admin.get("/orthanc/servers").get_data(as_text=True)
        assert "X-ray room" in listing and "1.10.1" in listing and '<span class="badge">worklists</span>' in listing


def test_detected_plugins_leave_out_orthancs_explorer_js_entry(app, admin, orthanc_row, orthanc):
    """Orthanc 1.10.1 lists 'explorer.js' in GET /plugins (the scripts plugins add to
    Orthanc Explorer); it is not a plugin and must not be shown as one."""
    assert "explorer.js" in orthanc.get("/plugins")  # what Orthanc answers
    assert "explorer.js" not in fresh(orthanc_row.id).plugin_set
    assert "explorer.js" not in admin.get(f"/orthanc/servers/{orthanc_row.id}").get_data(as_text=True)


def test_api_adds_a_server_and_answers_what_it_found(app, api, orthanc):
    r = api("admin").post("/api/v1/orthanc/servers", json={
        "label": "Main", "url": orthanc.url, "username": orthanc.username, "password": orthanc.password,
        "browser_url": "https://pacs.clinic.example/orthanc"})
    assert r.status_code == 201, r.json
    out = r.json
    assert out["validated"] is True and out["version"] == "1.10.1" and out["name"] == "ghimaging-test"
    assert out["browser_url"] == "https://pacs.clinic.example/orthanc" and out["study_count"] == 0
    assert "worklists" not in out["plugins"]
    assert server_count() == 1


def test_the_check_reads_the_default_encoding_and_the_api_answers_one_server(app, api, admin, orthanc_row, orthanc):
    """Orthanc transcodes every answer to its DefaultEncoding (Debian's is
    Latin1): the check reads it, and the server's own page and API warn."""
    assert orthanc.session.get(orthanc.url + "/tools/default-encoding").text == "Latin1"
    assert fresh(orthanc_row.id).default_encoding == "Latin1"
    r = api("admin").get(f"/api/v1/orthanc/servers/{orthanc_row.id}")
    assert r.status_code == 200
    body = r.json
    assert body["id"] == orthanc_row.id and body["label"] == "Main" and body["default_encoding"] == "Latin1"
    assert body["warnings"] and all("encoding" in w and '"DefaultEncoding": "Utf8"' in w for w in body["warnings"])
    page = admin.get(f"/orthanc/servers/{orthanc_row.id}").get_data(as_text=True)
    assert "<code>Latin1</code>" in page and "encoding-warning" in page
    assert api("admin").get("/api/v1/orthanc/servers/999999").status_code == 404
    for role in ROLES_NOT_ADMIN:
        assert api(role).get(f"/api/v1/orthanc/servers/{orthanc_row.id}").status_code == 403


def test_a_changed_encoding_is_seen_by_the_next_check_and_the_warning_goes(app, api, orthanc_row, orthanc):
    r = orthanc.session.put(orthanc.url + "/tools/default-encoding", data="Utf8", timeout=10)
    assert r.status_code == 200
    assert servers.recheck(fresh(orthanc_row.id))
    db.session.commit()
    row = fresh(orthanc_row.id)
    assert row.default_encoding == "Utf8" and servers.encoding_warnings(row) == []
    assert api("admin").get(f"/api/v1/orthanc/servers/{orthanc_row.id}").json["warnings"] == []


def _failing_target(case: str, request, not_orthanc) -> tuple[dict, str]:
    """The form/JSON fields for one kind of failure, and what the message must say."""
    if case == "malformed":
        return {"url": "orthanc.local:8042"}, "Give the full address"
    if case == "credentials in url":
        return {"url": "http://user:pw@127.0.0.1:8042"}, "not in the address"
    if case == "refused":
        return {"url": f"http://127.0.0.1:{find_free_port()}"}, "connection refused"
    if case == "timeout":
        silent = SilentServer()
        request.addfinalizer(silent.close)
        return {"url": silent.url}, "did not answer in time"
    if case == "wrong credentials":
        orthanc = request.getfixturevalue("orthanc")
        return {"url": orthanc.url, "username": orthanc.username, "password": "not-the-password"}, \
            "refused the username or password"
    if case == "html page":
        return {"url": not_orthanc("html")}, "is this an Orthanc server"
    if case == "404 on /system":
        return {"url": not_orthanc("404")}, "not an Orthanc server"
    if case == "json without Version":
        return {"url": not_orthanc("json")}, "not an Orthanc server"
    raise AssertionError(case)


FAILURES = ["malformed", "credentials in url", "refused", "timeout", "wrong credentials", "html page",
            "404 on /system", "json without Version"]


@pytest.mark.parametrize("case", FAILURES)
def test_a_server_that_fails_the_check_is_not_saved_and_the_page_says_why(app, admin, request, not_orthanc, case):
    fields, expected = _failing_target(case, request, not_orthanc)
    r = admin.post("/orthanc/servers/new", {"label": "Broken", **fields}, token_from="/orthanc/servers/new")
    assert r.status_code == 400
    messages = errors(r.get_data(as_text=True))
    assert any(expected in m for m in messages), messages
    assert server_count() == 0


@pytest.mark.parametrize("case", FAILURES)
def test_a_server_that_fails_the_check_answers_422_with_the_reason(app, api, request, not_orthanc, case):
    fields, expected = _failing_target(case, request, not_orthanc)
    r = api("admin").post("/api/v1/orthanc/servers", json={"label": "Broken", **fields})
    assert r.status_code == 422, r.json
    assert expected in r.json["message"] + " " + " ".join((r.json.get("fields") or {}).values())
    assert server_count() == 0


def test_an_impossible_port_is_reported_as_a_bad_address(app, admin, api):
    """Port 99999 or 'abc' is a typing mistake; requests calls it 'InvalidURL', which tells
    the admin nothing about what to fix."""
    for url in ("http://127.0.0.1:99999", "http://127.0.0.1:abc"):
        r = admin.post("/orthanc/servers/new", {"label": "Typo", "url": url}, token_from="/orthanc/servers/new")
        assert r.status_code == 400
        messages = errors(r.get_data(as_text=True))
        assert any("port" in m.lower() for m in messages), messages
        r = api("admin").post("/api/v1/orthanc/servers", json={"label": "Typo", "url": url})
        assert r.status_code == 422 and "port" in str(r.json).lower(), r.json
    assert server_count() == 0


def test_a_duplicate_label_is_refused_with_409_in_any_letter_case(app, api, admin, orthanc_row, orthanc):
    payload = {"label": "main", "url": orthanc.url, "username": orthanc.username, "password": orthanc.password}
    r = api("admin").post("/api/v1/orthanc/servers", json=payload)
    assert r.status_code == 409 and "already exists" in r.json["message"]
    r = admin.post("/orthanc/servers/new", payload, token_from="/orthanc/servers/new")
    assert r.status_code == 400 and any("already exists" in m for m in errors(r.get_data(as_text=True)))
    assert server_count() == 1


def test_api_refuses_a_body_that_is_not_a_json_object_or_lacks_fields(app, api):
    client = api("admin")
    assert client.post("/api/v1/orthanc/servers", data="label=x",
                       content_type="application/x-www-form-urlencoded").status_code == 400
    assert client.post("/api/v1/orthanc/servers", json=["Main"]).status_code == 400
    r = client.post("/api/v1/orthanc/servers", json={"url": "http://127.0.0.1:8042"})
    assert r.status_code == 422 and "label" in r.json["fields"]
    r = client.post("/api/v1/orthanc/servers", json={"label": "X", "url": 8042})
    assert r.status_code == 422 and "url" in r.json["fields"]
    assert server_count() == 0


# -- editing ------------------------------------------------------------------------

def edit(admin, server_id: int, **fields):
    row = fresh(server_id)
    data = {"label": row.label, "url": row.url, "browser_url": row.browser_url, "username": row.username,
            "password": ""}
    data.update(fields)
    return admin.post(f"/orthanc/servers/{server_id}", data, token_from=f"/orthanc/servers/{server_id}")


def test_editing_credentials_or_url_rechecks_in_the_background(app, admin, orthanc_row, orthanc):
    sid = orthanc_row.id
    r = edit(admin, sid, password="not-the-password")
    assert r.status_code == 302
    server = wait_for(sid, lambda s: not s.last_error.startswith("Connection details changed"), "finished")
    assert not server.validated and "username or password" in server.last_error

    assert edit(admin, sid, password=orthanc.password).status_code == 302
    server = wait_for(sid, lambda s: s.validated, "validated the right password")
    assert server.last_error == "" and server.version == "1.10.1"

    r = edit(admin, sid, url=f"http://127.0.0.1:{find_free_port()}", password=orthanc.password)
    assert r.status_code == 302
    server = wait_for(sid, lambda s: "connection refused" in s.last_error, "reported the refused port")
    assert not server.validated
    page = admin.get(f"/orthanc/servers/{sid}").get_data(as_text=True)
    assert "Not validated" in page and "connection refused" in page


def test_the_edit_page_returns_before_the_recheck_ends(app, admin, orthanc_row):
    """The re-check of a silent port takes the whole read timeout; the page must not wait for it."""
    app.config["ORTHANC_TIMEOUT"] = 3
    with SilentServer() as silent:
        r = edit(admin, orthanc_row.id, url=silent.url, password="pw")
        assert r.status_code == 302
        server = fresh(orthanc_row.id)
        assert server.url == silent.url and not server.validated
        assert server.last_error.startswith("Connection details changed")
        assert "background" in admin.get(r.headers["Location"]).get_data(as_text=True)
        server = wait_for(orthanc_row.id, lambda s: "did not answer in time" in s.last_error, "timed out")
    assert not server.validated


def test_editing_only_the_label_does_not_recheck(app, admin, orthanc_row):
    r = edit(admin, orthanc_row.id, label="Renamed", browser_url="https://pacs.example/o")
    assert r.status_code == 302
    server = fresh(orthanc_row.id)
    assert server.label == "Renamed" and server.browser_url == "https://pacs.example/o"
    assert server.validated and server.last_error == ""


def test_edit_with_a_bad_url_or_taken_label_saves_nothing(app, admin, orthanc_row, orthanc):
    other = OrthancServer(label="Other", url="http://127.0.0.1:9")
    db.session.add(other)
    db.session.commit()
    r = edit(admin, orthanc_row.id, url="orthanc:8042")
    assert r.status_code == 400 and any("full address" in m for m in errors(r.get_data(as_text=True)))
    r = edit(admin, orthanc_row.id, label="other")
    assert r.status_code == 400 and any("already exists" in m for m in errors(r.get_data(as_text=True)))
    server = fresh(orthanc_row.id)
    assert server.label == "Main" and server.url == orthanc.url and server.validated


# -- secrets --------------------------------------------------------------------------

def test_the_password_is_stored_encrypted_and_never_shown_back(app, admin, api, orthanc):
    from ghimaging import crypto

    secret = orthanc.password
    r = admin.post("/orthanc/servers/new", {"label": "Main", "url": orthanc.url, "username": orthanc.username,
                                            "password": secret}, token_from="/orthanc/servers/new")
    assert r.status_code == 302
    sid = db.session.scalar(select(OrthancServer.id))
    raw = db.session.execute(db.text("SELECT password_enc FROM orthanc_servers WHERE id = :i"), {"i": sid}).scalar()
    assert secret not in raw and crypto.decrypt(raw) == secret

    edit_page = admin.get(f"/orthanc/servers/{sid}").get_data(as_text=True)
    assert secret not in edit_page
    assert re.search(r'<input[^>]*name="password"[^>]*>', edit_page)
    assert not re.search(r'<input[^>]*name="password"[^>]*value="[^"]+"', edit_page)
    assert secret not in admin.get("/orthanc/servers").get_data(as_text=True)
    listing = api("admin").get("/api/v1/orthanc/servers")
    assert listing.status_code == 200 and secret not in listing.get_data(as_text=True)
    assert not any("password" in key for key in listing.json["items"][0])

    # a form sent back with an error does not echo what was typed either
    db.session.add(OrthancServer(label="Other", url="http://127.0.0.1:9"))
    db.session.commit()
    r = edit(admin, sid, label="Other", password="typed-Secret-42")
    assert r.status_code == 400 and "typed-Secret-42" not in r.get_data(as_text=True)
    assert crypto.decrypt(fresh(sid).password_enc) == secret


# -- a new address needs the password again (issue 9, finding 15) ------------------------

class Listener:
    """A tiny HTTP server in a thread playing "the new host": it records the
    Authorization header of every request that reaches it and answers 404."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("Authorization")))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def passwords(self) -> list[str]:
        """The Basic passwords received (an empty string for a request without one)."""
        import base64

        out = []
        for _, header in self.seen:
            scheme, _, value = (header or "").partition(" ")
            out.append(base64.b64decode(value).decode().partition(":")[2] if scheme == "Basic" else "")
        return out

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def rechecks_done() -> None:
    """Wait for the background re-checks this test started (each bounded by
    ORTHANC_TIMEOUT, 1 s here, so 30 s is ample)."""
    for t in threading.enumerate():
        if t.name.startswith("orthanc-recheck-"):
            t.join(30)
            assert not t.is_alive(), "a background re-check did not end"


def test_a_new_address_without_the_password_is_refused_and_the_stored_one_goes_nowhere(
        app, admin, orthanc_row, orthanc, listener):
    sid = orthanc_row.id
    r = edit(admin, sid, url=listener.url)
    assert r.status_code == 400
    assert "Enter the password again for the new address." in errors(r.get_data(as_text=True))
    rechecks_done()
    assert listener.seen == []  # before the fix: GET /system with the stored password, as Basic auth
    server = fresh(sid)
    assert server.url == orthanc.url and server.validated
    from ghimaging import crypto

    assert crypto.decrypt(server.password_enc) == orthanc.password


def test_a_new_address_with_the_password_gets_only_the_new_password(app, admin, orthanc_row, orthanc, listener):
    r = edit(admin, orthanc_row.id, url=listener.url, password="for-the-new-host")
    assert r.status_code == 302
    server = wait_for(orthanc_row.id, lambda s: not s.last_error.startswith("Connection details changed"),
                      "finished")
    rechecks_done()
    assert not server.validated and "not an Orthanc server" in server.last_error
    assert listener.seen and set(listener.passwords()) == {"for-the-new-host"}
    assert orthanc.password not in listener.passwords()


def test_an_empty_username_at_a_new_address_drops_the_stored_password(app, admin, orthanc_row, orthanc, listener):
    """An Orthanc without authentication: nothing is sent as Basic auth."""
    r = edit(admin, orthanc_row.id, url=listener.url, username="")
    assert r.status_code == 302
    wait_for(orthanc_row.id, lambda s: not s.last_error.startswith("Connection details changed"), "finished")
    rechecks_done()
    assert listener.seen and all(header is None for _, header in listener.seen)
    assert fresh(orthanc_row.id).password_enc == ""


@pytest.mark.parametrize("new_url,moved", [
    ("http://localhost:8042", True),            # another host
    ("http://127.0.0.1:8043", True),            # another port
    ("https://127.0.0.1:8042", True),           # another scheme
    ("http://127.0.0.2:8042", True),
    ("http://127.0.0.1:8042/", False),          # the same address, written differently
    ("HTTP://127.0.0.1:8042", False),
    ("http://127.0.0.1:8042/orthanc", False),   # another path on the same server
])
def test_only_a_new_scheme_host_or_port_needs_the_password(app, new_url, moved):
    from ghimaging import crypto

    row = OrthancServer(label="Main", url="http://127.0.0.1:8042", username="orthanc",
                        password_enc=crypto.encrypt("stored-pw"), validated=True)
    db.session.add(row)
    db.session.commit()
    kw = {"label": "Main", "url": new_url, "username": "orthanc", "browser_url": ""}
    if moved:
        with pytest.raises(servers.ServerError) as exc:
            servers.update_server(row, **kw)
        assert (exc.value.field, str(exc.value)) == ("password", servers.PASSWORD_AGAIN)
        assert fresh(row.id).url == "http://127.0.0.1:8042"
        assert servers.update_server(fresh(row.id), **kw, password="new-pw")
        db.session.commit()
        assert crypto.decrypt(fresh(row.id).password_enc) == "new-pw"
    else:
        servers.update_server(row, **kw)
        db.session.commit()
        assert crypto.decrypt(fresh(row.id).password_enc) == "stored-pw"


def test_default_ports_are_the_same_address(app):
    assert servers.origin("http://pacs") == servers.origin("http://PACS:80/orthanc") == ("http", "pacs", 80)
    assert servers.origin("https://pacs") == ("https", "pacs", 443)
    assert servers.origin("http://[::1]:8042") == ("http", "::1", 8042)


def test_a_server_without_a_stored_password_moves_freely(app, bare_row, listener):
    assert servers.update_server(bare_row, label="Spare", url=listener.url, username="someone", browser_url="")
    db.session.commit()
    assert fresh(bare_row.id).url == listener.url


# -- PATCH /api/v1/orthanc/servers/<id> -------------------------------------------------

def patch(client, server_id, payload=None, **kw):
    return client.client.patch(f"/api/v1/orthanc/servers/{server_id}", json=payload, headers=client.headers, **kw)


def test_patch_the_label_only_changes_it_and_keeps_the_check(app, api, orthanc_row, orthanc):
    r = patch(api("admin"), orthanc_row.id, {"label": "X-ray room", "browser_url": "https://pacs.example/o"})
    assert r.status_code == 200, r.json
    assert (r.json["label"], r.json["browser_url"], r.json["url"], r.json["validated"]) == (
        "X-ray room", "https://pacs.example/o", orthanc.url, True)
    assert "password" not in r.json
    server = fresh(orthanc_row.id)
    assert server.label == "X-ray room" and server.validated and server.last_error == ""


def test_patch_a_new_host_without_a_password_is_422_and_sends_nothing(app, api, orthanc_row, orthanc, listener):
    client = api("admin")
    for payload in ({"url": listener.url}, {"url": listener.url, "password": ""},
                    {"url": listener.url, "password": None}, {"url": listener.url, "username": "other"}):
        r = patch(client, orthanc_row.id, payload)
        assert r.status_code == 422, (payload, r.json)
        assert r.json["error"] == "validation" and r.json["fields"] == {"password": servers.PASSWORD_AGAIN}
    rechecks_done()
    assert listener.seen == []
    server = fresh(orthanc_row.id)
    assert server.url == orthanc.url and server.validated and server.username == orthanc.username


def test_patch_a_new_host_with_a_password_rechecks_there_with_it(app, api, orthanc_row, listener):
    r = patch(api("admin"), orthanc_row.id, {"url": listener.url, "password": "for-the-new-host"})
    assert r.status_code == 200, r.json
    assert r.json["url"] == listener.url and r.json["validated"] is False
    assert r.json["last_error"].startswith("Connection details changed")
    server = wait_for(orthanc_row.id, lambda s: not s.last_error.startswith("Connection details changed"),
                      "finished")
    rechecks_done()
    assert "not an Orthanc server" in server.last_error
    assert listener.seen and set(listener.passwords()) == {"for-the-new-host"}


def test_patch_the_password_at_the_same_address_is_checked_again(app, api, orthanc_row, orthanc):
    client = api("admin")
    r = patch(client, orthanc_row.id, {"password": "wrong-one"})
    assert r.status_code == 200 and r.json["validated"] is False
    server = wait_for(orthanc_row.id, lambda s: not s.last_error.startswith("Connection details changed"),
                      "finished")
    assert "username or password" in server.last_error
    assert patch(client, orthanc_row.id, {"password": orthanc.password}).status_code == 200
    assert wait_for(orthanc_row.id, lambda s: s.validated, "validated the right password").last_error == ""
    rechecks_done()


@pytest.mark.parametrize("payload,status,field", [
    ({"colour": "red"}, 422, "colour"),
    ({"label": 5}, 422, "label"),
    ({"label": ""}, 422, "label"),
    ({"label": "x" * 65}, 422, "label"),
    ({"url": "orthanc:8042"}, 422, "url"),
    ({"url": "http://127.0.0.1:99999", "password": "x"}, 422, "url"),
    ({"url": ["http://127.0.0.1:9"]}, 422, "url"),
    ({"browser_url": "ftp://pacs"}, 422, "browser_url"),
    ({"username": "u" * 201}, 422, "username"),
    ({"password": 1234}, 422, "password"),
    ({"label": "other"}, 409, None),
])
def test_patch_refuses_bad_fields_and_changes_nothing(app, api, bare_row, payload, status, field):
    db.session.add(OrthancServer(label="Other", url="http://127.0.0.1:10"))
    db.session.commit()
    r = patch(api("admin"), bare_row.id, payload)
    assert r.status_code == status, r.json
    if field:
        assert r.json["error"] == "validation" and field in r.json["fields"]
    else:
        assert r.json["error"] == "conflict" and "already exists" in r.json["message"]
    server = fresh(bare_row.id)
    assert (server.label, server.url, server.username, server.browser_url) == ("Spare", "http://127.0.0.1:9", "", "")


@pytest.mark.parametrize("field,value,message", [
    ("password", "pass—word", "Latin-1"),
    ("username", "радио", "Latin-1"),
    ("password", "pass\nword", "control characters"),
    ("username", "orthanc:admin", "cannot contain"),
])
def test_credentials_basic_auth_cannot_carry_are_a_field_error(app, admin, api, orthanc, field, value, message):
    """HTTP Basic authentication travels as Latin-1, user and password split
    at ':': such a value made every call fail inside the HTTP library (the
    add page answered 500, the background re-check died)."""
    data = {"label": "Main", "url": orthanc.url, "username": orthanc.username, "password": orthanc.password,
            field: value}
    r = admin.post("/orthanc/servers/new", data, token_from="/orthanc/servers/new")
    assert r.status_code == 400 and any(message in m for m in errors(r.get_data(as_text=True)))
    r = api("admin").post("/api/v1/orthanc/servers", json=data)
    assert r.status_code == 422 and message in r.json["fields"][field], r.json
    assert server_count() == 0


def test_a_stored_password_basic_auth_cannot_carry_fails_the_recheck_with_a_message(app, orthanc_row):
    """A password saved before the rule: the re-check says what to do instead of dying."""
    from ghimaging import crypto

    orthanc_row.password_enc = crypto.encrypt("pass—word")
    db.session.commit()
    assert servers.recheck(orthanc_row) is False
    db.session.commit()
    server = fresh(orthanc_row.id)
    assert not server.validated and "enter them again" in server.last_error


def test_patch_refuses_a_password_basic_auth_cannot_carry(app, api, orthanc_row, orthanc):
    r = patch(api("admin"), orthanc_row.id, {"password": "☃"})
    assert r.status_code == 422 and "Latin-1" in r.json["fields"]["password"]
    assert fresh(orthanc_row.id).validated


@pytest.mark.parametrize("taken,label", [("Sala Ä", "Sala Ä"), ("Sala Ä", "SALA ä"), ("Raum Ö", "raum ö")])
def test_a_label_taken_in_any_letter_case_is_refused_beyond_ascii(app, admin, api, bare_row, taken, label):
    """SQLite's lower() folds only ASCII: 'Sala Ä' twice passed the check and
    hit the unique index (a 500, found by the fuzz test)."""
    db.session.add(OrthancServer(label=taken, url="http://127.0.0.1:10"))
    db.session.commit()
    r = edit(admin, bare_row.id, label=label)
    assert r.status_code == 400 and any("already exists" in m for m in errors(r.get_data(as_text=True)))
    r = patch(api("admin"), bare_row.id, {"label": label})
    assert r.status_code == 409 and "already exists" in r.json["message"], r.json
    assert fresh(bare_row.id).label == "Spare"


def test_patch_needs_a_json_object_an_existing_server_and_an_admin(app, api, bare_row):
    admin_client = api("admin")
    assert patch(admin_client, bare_row.id, ["Main"]).status_code == 400
    assert patch(admin_client, bare_row.id, data="label=x",
                 content_type="application/x-www-form-urlencoded").status_code == 400
    assert patch(admin_client, 987654, {"label": "X"}).status_code == 404
    for role in ROLES_NOT_ADMIN:
        assert patch(api(role), bare_row.id, {"label": "Hacked"}).status_code == 403
    assert patch(admin_client, bare_row.id, {}).status_code == 200
    assert fresh(bare_row.id).label == "Spare"


# -- what the list and the page show -----------------------------------------------------

def test_list_and_page_show_status_sync_index_lag_and_study_count(app, admin, orthanc_row, upload):
    upload(gen(2))
    assert sync.run(orthanc_row.id).error == ""
    upload(gen(1, seed=3))
    assert servers.recheck(fresh(orthanc_row.id))  # reads Orthanc's index: we are behind now
    db.session.commit()
    server = fresh(orthanc_row.id)
    assert server.lag > 0

    listing = admin.get("/orthanc/servers").get_data(as_text=True)
    row = listing[listing.index(">Main</a>"):]
    row = row[:row.index("</tr>")]
    assert "Validated" in row and "1.10.1" in row and "ghimaging-test" in row
    assert "<td>2</td>" in row  # studies mirrored
    assert local_time(server.last_sync_at) in row
    assert f"{server.last_change} <span" in row and f"lag {server.lag}" in row

    page = admin.get(f"/orthanc/servers/{server.id}").get_data(as_text=True)
    assert "Validated" in page and "1.10.1" in page
    assert f"{server.last_change} of {server.orthanc_last}" in page and f"lag {server.lag}" in page
    assert "<dt>Studies</dt><dd>2</dd>" in page and "Studies (2)" in page
    assert local_time(server.last_sync_at) in page


def test_list_and_page_show_the_last_error(app, admin, orthanc_row, orthanc):
    orthanc.kill()
    assert sync.run(orthanc_row.id).error
    listing = admin.get("/orthanc/servers").get_data(as_text=True)
    assert "Last error:" in listing and "connection refused" in listing and ">Error</span>" in listing
    page = admin.get(f"/orthanc/servers/{orthanc_row.id}").get_data(as_text=True)
    assert "Last error" in page and "connection refused" in page and "next attempt" in page


# -- who may do what ---------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES_NOT_ADMIN)
def test_non_admins_get_403_on_server_pages_and_api(app, make_user, login, api, bare_row, role):
    make_user("someone", role)
    c = login("someone")
    for path in ("/orthanc/servers", "/orthanc/servers/new", f"/orthanc/servers/{bare_row.id}"):
        assert c.get(path).status_code == 403, path
    assert c.post("/orthanc/servers/new", {"label": "X", "url": "http://127.0.0.1:9"}).status_code == 403
    assert c.post(f"/orthanc/servers/{bare_row.id}", {"label": "Hacked", "url": "http://127.0.0.1:1"}).status_code == 403
    assert c.post(f"/orthanc/servers/{bare_row.id}/delete").status_code == 403
    client = api(role)
    assert client.get("/api/v1/orthanc/servers").status_code == 403
    assert client.post("/api/v1/orthanc/servers", json={"label": "X", "url": "http://127.0.0.1:9"}).status_code == 403
    server = fresh(bare_row.id)
    assert server.label == "Spare" and server_count() == 1


def test_anonymous_is_sent_to_login_from_server_pages(app, client, bare_row):
    for path in ("/orthanc/servers", f"/orthanc/servers/{bare_row.id}"):
        r = client.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert client.post(f"/orthanc/servers/{bare_row.id}/sync").status_code in (302, 400)
    assert client.get("/api/v1/orthanc/servers").status_code == 401


def test_admin_removes_a_server_and_its_rows_but_not_the_images(app, admin, orthanc_row, orthanc, upload):
    upload(gen(2))
    sync.run(orthanc_row.id)
    r = admin.post(f"/orthanc/servers/{orthanc_row.id}/delete", token_from=f"/orthanc/servers/{orthanc_row.id}")
    assert r.status_code == 302
    assert server_count() == 0
    assert db.session.scalar(select(func.count()).select_from(OrthancStudy)) == 0
    assert len(orthanc.get("/studies")) == 2


# -- sync now ---------------------------------------------------------------------------------

def test_admin_presses_sync_now_and_full_sync_and_sees_the_summary(app, admin, orthanc_row, upload):
    upload(gen(2))
    page = f"/orthanc/servers/{orthanc_row.id}"
    r = admin.post(f"{page}/sync", token_from=page, follow_redirects=True)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "Main: full sync: 2 studies updated" in html
    upload(gen(1, seed=4))
    html = admin.post(f"{page}/sync", token_from=page, follow_redirects=True).get_data(as_text=True)
    assert "Main: incremental sync: 1 studies updated" in html
    html = admin.post(f"{page}/sync", {"full": "1"}, token_from=page, follow_redirects=True).get_data(as_text=True)
    assert "Main: full sync: 3 studies updated" in html
    assert "<dt>Studies</dt><dd>3</dd>" in html


def test_sync_now_against_a_dead_orthanc_shows_the_failure(app, admin, orthanc_row, orthanc):
    orthanc.kill()
    page = f"/orthanc/servers/{orthanc_row.id}"
    r = admin.post(f"{page}/sync", token_from=page, follow_redirects=True)
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "flash-error" in html and "sync failed" in html and "connection refused" in html


def test_technologist_presses_sync_now_and_sees_the_summary(app, make_user, login, orthanc_row, upload):
    """The route lets technologists sync, so the answer must be a page they may see."""
    upload(gen(1))
    make_user("tech", "technologist")
    c = login("tech")
    r = c.post(f"/orthanc/servers/{orthanc_row.id}/sync", follow_redirects=True)
    assert r.status_code == 200, r.status_code
    assert "Main: full sync: 1 studies updated" in r.get_data(as_text=True)


def test_technologist_sync_now_from_the_studies_page_comes_back_to_it(app, make_user, login, orthanc_row, upload):
    upload(gen(1))
    make_user("tech", "technologist")
    c = login("tech")
    back = f"/orthanc/studies?server={orthanc_row.id}"
    r = c.post(f"/orthanc/servers/{orthanc_row.id}/sync", {"back": back})
    assert r.status_code == 302 and r.headers["Location"].endswith(back)
    html = c.get(back).get_data(as_text=True)
    assert "Main: full sync: 1 studies updated" in html and "<code>A0-00000-00</code>" in html
    # an outside address is not followed
    r = c.post(f"/orthanc/servers/{orthanc_row.id}/sync", {"back": "https://evil.example/orthanc/"})
    assert "evil.example" not in r.headers["Location"]


@pytest.mark.parametrize("role", ["physician", "radiologist"])
def test_physicians_and_radiologists_cannot_sync(app, make_user, login, bare_row, role):
    make_user("someone", role)
    assert login("someone").post(f"/orthanc/servers/{bare_row.id}/sync").status_code == 403
    assert fresh(bare_row.id).last_sync_at is None


def test_sync_now_without_a_csrf_token_is_refused(app, admin, bare_row):
    r = admin.client.post(f"/orthanc/servers/{bare_row.id}/sync")
    assert r.status_code == 400
    assert fresh(bare_row.id).last_sync_at is None


# -- ghimaging sync ---------------------------------------------------------------------------

def test_cli_sync_prints_a_summary_per_server(app, orthanc_row, upload):
    upload(gen(2))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sync", "--server", "main"])
    assert result.exit_code == 0, result.output
    assert "Main: full sync: 2 studies updated" in result.output
    upload(gen(1, seed=2))
    result = runner.invoke(args=["sync", "--server", "Main"])
    assert result.exit_code == 0 and "Main: incremental sync: 1 studies updated" in result.output
    result = runner.invoke(args=["sync", "--server", "Main", "--full"])
    assert result.exit_code == 0 and "Main: full sync: 3 studies updated" in result.output
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(OrthancStudy)) == 3


def test_cli_sync_exits_non_zero_when_a_server_fails(app, orthanc_row, orthanc, upload):
    upload(gen(1))
    db.session.add(OrthancServer(label="Dead", url=f"http://127.0.0.1:{find_free_port()}", needs_full_sync=True))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["sync"])
    assert result.exit_code != 0
    assert "Dead: auto sync failed" in result.output and "connection refused" in result.output
    assert "Main: full sync: 1 studies updated" in result.output  # the other server still ran
    assert "1 server(s) failed" in result.output

    orthanc.kill()
    result = app.test_cli_runner().invoke(args=["sync", "--server", "Main"])
    assert result.exit_code != 0 and "sync failed" in result.output


def test_cli_sync_of_an_unknown_label_fails(app, bare_row):
    result = app.test_cli_runner().invoke(args=["sync", "--server", "Nowhere"])
    assert result.exit_code != 0 and "No Orthanc server labelled 'Nowhere'" in result.output
