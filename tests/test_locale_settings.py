"""The clinic's settings page: time zone, language, date format, paper
size and the logo. Bad input is a form error (400), never a 500; the logo
is decoded before it is kept, stored privately under a random name, and
served only to signed-in people, never to a shared cache."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from ghimaging.extensions import db
from ghimaging.settings import service
from tests.support.factories import png_bytes

URL = "/admin/settings/"
GOOD = {"clinic_name": "Praxis Dr. Weiß", "clinic_address": "Hauptstraße 1", "clinic_phone": "+49 30 1234",
        "report_footer": "", "time_zone": "Europe/Berlin", "language": "de", "date_format": "dd.mm.yyyy",
        "paper_size": "A4"}


@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


def post(admin, **changes):
    data = {**GOOD, **changes}
    return admin.post(URL, data, token_from=URL, content_type="multipart/form-data")


def logo_files(app) -> list[Path]:
    folder = Path(app.instance_path) / service.LOGO_DIR
    return sorted(folder.iterdir()) if folder.exists() else []


def test_settings_are_saved_and_shown_again(app, admin):
    r = post(admin)
    assert r.status_code == 302
    saved = service.clinic_settings()
    assert {k: saved[k] for k in GOOD} == GOOD
    page = admin.get(URL).get_data(as_text=True)
    assert 'value="Europe/Berlin"' in page and 'list="time-zones"' in page
    assert '<option value="America/La_Paz">' in page  # the zones to pick from
    assert "30.11.2026" in page  # the formats are shown as examples


@pytest.mark.parametrize("field, value, message", [
    ("time_zone", "Mars/Olympus_Mons", "Unknown time zone"),
    ("time_zone", "../../etc/passwd", "Unknown time zone"),
    ("time_zone", "", "This field is required"),
    ("language", "fr", "Not a valid choice"),
    ("date_format", "%Y%m%d", "Not a valid choice"),
    ("paper_size", "A3", "Not a valid choice"),
])
def test_a_bad_value_is_a_form_error_and_nothing_is_saved(app, admin, field, value, message):
    r = post(admin, **{field: value})
    assert r.status_code == 400
    assert message in r.get_data(as_text=True)
    assert service.clinic_settings()["clinic_name"] == "Radiology"  # nothing saved


def test_the_service_refuses_a_bad_zone_too(app):
    with pytest.raises(service.SettingsError) as err:
        service.save_clinic_settings({"time_zone": "Europe/Nowhere"})
    assert "time_zone" in err.value.fields


def _truncated_png() -> bytes:
    return png_bytes((300, 300)).getvalue()[:200]


def _gif() -> bytes:
    return png_bytes(fmt="GIF").getvalue()


@pytest.mark.parametrize("data, name, message", [
    (b"not a picture at all", "logo.png", "not a PNG or JPEG picture"),
    (b"%PDF-1.4\n", "logo.jpg", "not a PNG or JPEG picture"),
    (b"GIF89a", "logo.gif", "not a PNG or JPEG picture"),
    (None, "logo.gif", "must be a PNG or JPEG"),
    ("truncated", "logo.png", "not a PNG or JPEG picture"),
    (b"\x89PNG" + b"\0" * (service.LOGO_MAX_BYTES + 10), "big.png", "at most 2 MB"),
])
def test_a_bad_logo_file_is_a_form_error(app, admin, data, name, message):
    if data is None:
        data = _gif()
    elif data == "truncated":
        data = _truncated_png()
    r = post(admin, logo=(io.BytesIO(data), name))
    assert r.status_code == 400, r.status_code
    assert message in r.get_data(as_text=True)
    assert service.logo_path() is None and logo_files(app) == []
    assert service.clinic_settings()["clinic_name"] == "Radiology"


def test_a_logo_is_kept_private_served_to_signed_in_people_replaced_and_removed(app, admin, client, make_user,
                                                                                 login):
    r = post(admin, logo=(png_bytes((120, 40)), "Our Logo.png"))
    assert r.status_code == 302
    first = service.logo_path()
    assert first is not None and first.parent == Path(app.instance_path) / service.LOGO_DIR
    assert "Our" not in first.name and len(first.stem) == 32  # a random name, not the uploaded one
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700

    anonymous = client.get("/clinic/logo")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    make_user("doc", "physician")
    served = login("doc").get("/clinic/logo")
    assert served.status_code == 200 and served.mimetype == "image/png"
    assert served.data == first.read_bytes()
    assert "private" in served.headers["Cache-Control"] and "public" not in served.headers["Cache-Control"]
    assert '<img class="logo-preview"' in admin.get(URL).get_data(as_text=True)

    jpeg = png_bytes((60, 60), fmt="JPEG")
    assert post(admin, logo=(jpeg, "new.jpg")).status_code == 302
    second = service.logo_path()
    assert second is not None and second.suffix == ".jpg" and not first.exists()
    assert logo_files(app) == [second]

    assert admin.post("/admin/settings/logo/remove", {}, token_from=URL).status_code == 302
    db.session.expire_all()
    assert service.logo_path() is None and logo_files(app) == []
    assert login("doc").get("/clinic/logo").status_code == 404


def test_only_admins_open_the_settings(app, make_user, login):
    make_user("doc", "physician")
    assert login("doc").get(URL).status_code == 403
