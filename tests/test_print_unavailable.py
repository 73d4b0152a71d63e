"""A server without WeasyPrint (the optional extra ``pdf``), or with it but
without the system libraries it loads, answers the PDF link with a page
that says so and points to Print (503), never a 500; the print page itself
keeps working.

The app runs in a subprocess on the test's database, with ``weasyprint``
made unimportable before the app is created: really absent
(``sys.modules['weasyprint'] = None``), or a module that fails the way
WeasyPrint does when cffi cannot dlopen Pango (an OSError; the real
libraries cannot be taken away from this machine on demand)."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from tests.support.factories import PASSWORD

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import json, sys
mode, instance, database_url, result_id = sys.argv[1:5]
if mode == "absent":
    sys.modules["weasyprint"] = None  # import weasyprint -> ImportError
else:
    sys.path.insert(0, sys.argv[5])  # a weasyprint whose import raises OSError
from ghimaging import create_app
from tests.support.web import CsrfClient

app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": database_url, "TESTING": True})
c = CsrfClient(app.test_client())
r = c.client.post("/login", data={"username": "rad", "password": sys.argv[6], "csrf_token": c.token("/login")})
assert r.status_code == 302, r.status_code
out = {}
for name, path in (("pdf", f"/results/{result_id}/report.pdf"), ("print", f"/results/{result_id}/print")):
    r = c.client.get(path)
    out[name] = {"status": r.status_code, "type": r.mimetype, "body": r.get_data(as_text=True),
                 "cache": r.headers.get("Cache-Control", "")}
print(json.dumps(out))
"""

#: What cffi says when Pango is missing (WeasyPrint's text/ffi.py dlopens it at import).
BROKEN = """raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file: "
              "No such file or directory")
"""


@pytest.fixture
def result_id(app, make_user, create_request):
    rad = make_user("rad", "radiologist", full_name="Dr Rita Rad")
    req = create_request(submit=True)
    result = workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2),
                                    report="Lungs clear.")
    db.session.commit()
    return result.id


@pytest.mark.parametrize("mode", ["absent", "libraries_missing"])
def test_pdf_link_says_pdf_is_not_installed_instead_of_a_500(app, result_id, tmp_path, mode):
    fake = tmp_path / "fake"
    (fake / "weasyprint").mkdir(parents=True)
    (fake / "weasyprint" / "__init__.py").write_text(BROKEN)
    db.session.remove()
    proc = subprocess.run([sys.executable, "-c", SERVER, mode, app.instance_path,
                           app.config["SQLALCHEMY_DATABASE_URI"], str(result_id), str(fake), PASSWORD],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    pdf = out["pdf"]
    assert pdf["status"] == 503, pdf
    assert pdf["type"] == "text/html"
    text = html.unescape(pdf["body"])
    assert "PDF rendering is not installed on this server; use Print and your browser's Save as PDF" in text, \
        text[-2000:]
    assert f'href="/results/{result_id}/print"' in pdf["body"]
    assert "no-store" in pdf["cache"]
    # WeasyPrint's failure is logged for the administrator, on stderr (the journal).
    assert "WeasyPrint cannot be loaded" in proc.stderr
    expected = "ModuleNotFoundError" if mode == "absent" else "cannot load library 'libpango-1.0-0'"
    assert expected in proc.stderr
    # Print keeps working: the browser's Save as PDF is the way.
    assert out["print"]["status"] == 200 and "Download PDF" in out["print"]["body"]
