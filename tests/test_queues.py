"""The start page's queues per role, through the test client: which requests
each section lists, in which order, as the requests move (submit, the study
arriving in a real Orthanc and synced, a preliminary result, the final one,
cancel); the counts in the navigation; and the state people see on every
page that shows one (imaging/progress.py)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from ghimaging import clock
from ghimaging.extensions import db
from ghimaging.imaging import progress, queues, workflow
from ghimaging.models import ImagingRequest, User
from ghimaging.orthanc import sync
from tests.support import dicomgen


@pytest.fixture
def staff(make_user):
    return {"doc": make_user("doc", "physician", full_name="Gregory House"),
            "doc2": make_user("doc2", "physician", full_name="Lisa Cuddy"),
            "tech": make_user("tech", "technologist", full_name="Tina Tech"),
            "rad": make_user("rad", "radiologist", full_name="Rita Rad"),
            "rad2": make_user("rad2", "radiologist", full_name="Ralf Rad"),
            "all": make_user("allrounder", "physician", "technologist", "radiologist", full_name="Alex All")}


def section(body: str, sid: str) -> str:
    """The HTML of the card (or group) with id ``sid``, or "" if absent."""
    if f'id="{sid}"' not in body:
        return ""
    return body.split(f'id="{sid}"', 1)[1].split("</section>", 1)[0]


def rows(body: str, sid: str) -> list[str]:
    return re.findall(r'data-request="([^"]+)"', section(body, sid))


def statuses(body: str, sid: str) -> dict[str, str]:
    """Accession -> what the technologist's row says (and its detail)."""
    out = {}
    for acc, tr in re.findall(r'<tr[^>]*data-request="([^"]+)">(.*?)</tr>', section(body, sid), re.S):
        status = re.search(r'data-progress="([^"]+)"', tr)
        detail = re.search(r'<small class="muted">([^<]*)</small>\s*</td>\s*<td class="open-cell"', tr)
        out[acc] = status.group(1) + (f" ({detail.group(1).split(' · ')[0]})" if detail else "")
    return out


def nav(body: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for key, inner in re.findall(r'data-queue="([^"]+)">(.*?)</a>', body, re.S):
        n = re.search(r'class="navcount"[^>]*>(\d+)<', inner)
        out[key] = int(n.group(1)) if n else None
    return out


def start(client) -> str:
    r = client.get("/")
    assert r.status_code == 200
    return r.get_data(as_text=True)


def arrives(orthanc, row, req: ImagingRequest, instances: int = 2) -> None:
    """The modality sends ``instances`` images of the request's study to the
    real Orthanc; the sync mirrors them and links the study to the request."""
    series = generate_uid()
    for n in range(1, instances + 1):
        orthanc.upload(dicomgen.make_instance(req.patient.puid, "Family^Given", study_uid=req.study_instance_uid,
                                              series_uid=series, accession=req.accession_number,
                                              instance_number=n))
    summary = sync.run(row.id)
    assert summary.error == "", summary.error
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).images_available


def _report(req, rad, *, final=False):
    result = workflow.create_result(req, rad, radiologist=rad, result_date=date.today(), report="No fracture.",
                                    final=final)
    db.session.commit()
    return result


def test_queues_follow_the_requests_through_their_day(app, staff, login, create_request, create_patient,
                                                      catalog, orthanc, orthanc_row):
    day = queues.Day.of()
    at = lambda hours: day.start + timedelta(hours=hours)  # noqa: E731 - today's wall clock
    doc = staff["doc"]

    def order(test="chest", **kw):
        kw.setdefault("submit", True)
        return create_request(create_patient(), catalog[test], user=doc, physician=doc, **kw)

    a = order(scheduled_at=at(9))
    b = order(scheduled_at=at(10), urgent=True)
    c = order("abd", scheduled_at=at(8))
    d = order(scheduled_at=at(-15))  # yesterday 09:00
    e = order()  # no time given
    f = order(scheduled_at=at(11), submit=False)  # a draft
    old = order(scheduled_at=at(-39))  # the day before yesterday: neither today nor yesterday
    other = create_request(create_patient(), catalog["chest"], user=staff["doc2"], physician=staff["doc2"],
                           submit=True, scheduled_at=at(12))
    acc = {k: v.accession_number for k, v in dict(a=a, b=b, c=c, d=d, e=e, f=f, old=old, other=other).items()}
    tech, rad, rad2, phys = (login(u) for u in ("tech", "rad", "rad2", "doc"))

    # Ordered: the technologist's day per station, urgent first then by time, each once.
    body = start(tech)
    assert rows(body, "station-XRAY1") == [acc["b"], acc["a"], acc["other"]]
    assert rows(body, "station-US1") == [acc["c"]]
    assert rows(body, "yesterday") == [acc["d"]]
    assert rows(body, "unscheduled") == [acc["e"]]
    assert set(statuses(body, "today").values()) == {"scheduled"}
    assert acc["f"] not in body and acc["old"] not in body
    assert f'href="/upload/?request_id={a.id}"' in body and f'href="/requests/{a.id}"' in body
    assert nav(body) == {"today": 4}
    assert section(body, "reporting") == "" and section(body, "my-orders") == ""
    assert rows(start(rad), "to-report") == []
    assert rows(start(phys), "waiting") == [acc[k] for k in ("b", "a", "c", "d", "e", "f", "old")]

    # The images of a, then of the urgent b, arrive in Orthanc.
    arrives(orthanc, orthanc_row, a, instances=2)
    body = start(tech)
    assert statuses(body, "station-XRAY1")[acc["a"]] == "images (2 images)"
    assert 'href="/orthanc/studies/' in section(body, "station-XRAY1")
    assert rows(start(rad), "to-report") == [acc["a"]]
    arrives(orthanc, orthanc_row, b, instances=1)
    body = start(rad)
    assert rows(body, "to-report") == [acc["b"], acc["a"]]  # urgent first, then oldest
    assert nav(body) == {"to_report": 2}
    assert nav(start(tech)) == {"today": 2}  # c and other still wait

    # Rita writes a preliminary result for a: it leaves "to report", the request stays open.
    _report(a, staff["rad"])
    assert db.session.get(ImagingRequest, a.id).state == "requested"
    body = start(rad)
    assert rows(body, "to-report") == [acc["b"]]
    assert rows(body, "preliminary-mine") == [acc["a"]] and rows(body, "preliminary-others") == []
    body = start(rad2)
    assert rows(body, "preliminary-mine") == [] and rows(body, "preliminary-others") == [acc["a"]]
    assert statuses(start(tech), "station-XRAY1")[acc["a"]] == "preliminary (2 images)"
    assert 'data-progress="preliminary"' in section(start(phys), "waiting")
    assert rows(start(phys), "new-results") == []  # a preliminary result is not ready yet

    # She finalises it: the request is done, finalised today, ready for its physician.
    workflow.finalise_result(db.session.get(ImagingRequest, a.id).result, staff["rad"])
    db.session.commit()
    body = start(rad)
    assert rows(body, "preliminary-mine") == [] and rows(body, "finalised-today") == [acc["a"]]
    assert nav(phys.get("/requests").get_data(as_text=True))["results"] == 1  # any page's navigation
    body = start(phys)
    assert rows(body, "new-results") == [acc["a"]] and acc["a"] not in rows(body, "waiting")
    body = start(phys)  # seen: the next visit has nothing new
    assert rows(body, "new-results") == [] and nav(body) == {"results": None}
    assert db.session.get(User, doc.id).queue_seen_at is not None

    # Cancelled exams leave the technologist's lists.
    workflow.cancel(c, doc, "Patient left")
    workflow.cancel(d, doc, "Done elsewhere")
    db.session.commit()
    body = start(tech)
    assert section(body, "station-US1") == "" and section(body, "yesterday") == ""
    assert rows(body, "station-XRAY1") == [acc["b"], acc["a"], acc["other"]]
    assert statuses(body, "station-XRAY1") == {acc["b"]: "images (1 image)", acc["a"]: "final (2 images)",
                                               acc["other"]: "scheduled"}


def test_a_user_with_several_roles_sees_each_section(staff, login, create_request, catalog):
    body = start(login("allrounder"))
    for sid in ("today", "reporting", "to-report", "preliminary-mine", "finalised-today", "my-orders",
                "new-results", "waiting"):
        assert section(body, sid) != "" or f'id="{sid}"' in body, sid
    assert set(nav(body)) == {"today", "to_report", "results"}


def test_an_admin_without_a_queue_role_keeps_the_overview(make_user, login, create_request):
    make_user("boss", "admin")
    req = create_request(submit=True, urgent=True)
    body = start(login("boss"))
    assert nav(body) == {} and 'id="today"' not in body
    assert req.accession_number in body and 'data-progress="scheduled"' in body


@pytest.fixture
def every_state(staff, create_request, create_patient, catalog, orthanc, orthanc_row):
    doc, rad = staff["doc"], staff["rad"]

    def order(**kw):
        return create_request(create_patient(), catalog["chest"], user=doc, physician=doc, **kw)

    out = {"draft": order(), "scheduled": order(submit=True), "images": order(submit=True),
           "preliminary": order(submit=True), "final": order(submit=True), "cancelled": order(submit=True)}
    for key in ("images", "preliminary", "final"):
        arrives(orthanc, orthanc_row, out[key], instances=1)
    _report(out["preliminary"], rad)
    _report(out["final"], rad, final=True)
    workflow.cancel(out["cancelled"], doc, "Ordered twice")
    db.session.commit()
    return out


def test_every_page_that_shows_a_state_shows_the_state_people_see(login, every_state):
    client = login("doc")
    listed = client.get("/requests?state=all").get_data(as_text=True)
    for expected, req in every_state.items():
        db.session.refresh(req)
        assert progress.of(req).value == expected
        row = re.search(rf'<tr[^>]*>\s*<td><a href="/requests/{req.id}">.*?</tr>', listed, re.S)
        assert row and f'data-progress="{expected}"' in row.group(0), expected
        page = client.get(f"/requests/{req.id}").get_data(as_text=True)
        assert re.search(rf'<h1>.*data-progress="{expected}"', page), expected
        patient_page = client.get(f"/patients/{req.patient_id}").get_data(as_text=True)
        row = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*?/requests/{req.id}".*?</tr>', patient_page, re.S)
        assert row and f'data-progress="{expected}"' in row.group(0), ("patient page", expected)
        if req.result is not None:
            result_page = client.get(f"/results/{req.result.id}").get_data(as_text=True)
            assert re.search(rf'<h1>.*data-progress="{expected}"', result_page), ("result page", expected)
    # The technical states stay behind the words: no "Done"/"Requested" badge on the lists.
    assert "state-done" not in listed and "state-requested" not in listed
    states = {"final": "done", "preliminary": "requested", "images": "requested", "scheduled": "requested"}
    assert {k: every_state[k].state for k in states} == states


def test_the_technologists_rows_and_the_desks_priors_show_the_state_from_progress(
        staff, login, create_request, create_patient, catalog, orthanc, orthanc_row):
    """One patient's exams today in every state the technologist meets,
    among them a request closed without a result (in GNU Health): each row
    and each prior on the desk shows progress.of's badge and nothing else
    (no "Reported" beside a preliminary report, no "Waiting" for a closed
    exam)."""
    day = queues.Day.of()
    doc, rad = staff["doc"], staff["rad"]
    patient = create_patient()

    def order(hours, **kw):
        return create_request(patient, catalog["chest"], user=doc, physician=doc, submit=True,
                              scheduled_at=day.start + timedelta(hours=hours), **kw)

    reqs = {"scheduled": order(8), "images": order(9), "preliminary": order(10), "final": order(11),
            "closed": order(12)}
    for key in ("images", "preliminary", "final"):
        arrives(orthanc, orthanc_row, reqs[key], instances=1)
    _report(reqs["preliminary"], rad)
    _report(reqs["final"], rad, final=True)
    reqs["closed"].state = "done"  # closed in GNU Health: no images, no result here
    db.session.commit()
    expected = {k: progress.of(db.session.get(ImagingRequest, r.id)).value for k, r in reqs.items()}
    assert expected == {"scheduled": "scheduled", "images": "images", "preliminary": "preliminary",
                        "final": "final", "closed": "final"}

    body = start(login("tech"))
    shown = statuses(body, "station-XRAY1")
    assert {k: shown[r.accession_number].split(" ")[0] for k, r in reqs.items()} == expected
    table = section(body, "station-XRAY1")
    assert ">Reported<" not in table and ">Waiting<" not in table
    assert shown[reqs["images"].accession_number] == "images (1 image)", "the image count stays beside the badge"

    desk_for = order(13)
    desk = login("rad").get(f"/requests/{desk_for.id}/result").get_data(as_text=True)
    priors = desk[desk.index("Prior studies and reports"):]
    priors = priors[:priors.index("</section>")]
    for key, req in reqs.items():
        db.session.refresh(req)
        href = f"/results/{req.result.id}" if req.result else f"/requests/{req.id}"
        item = re.search(rf'<li><a href="{href}">.*?</li>', priors, re.S)
        assert item and f'data-progress="{expected[key]}"' in item.group(0), key
        assert len(re.findall("data-progress", item.group(0))) == 1, key


def test_the_sql_twin_of_the_displayed_state_agrees(every_state):
    for p in progress.Progress:
        ids = set(db.session.scalars(select(ImagingRequest.id).where(progress.condition(p))))
        assert ids == {every_state[p.value].id}, p


def test_the_clinic_day_is_the_clinics_not_the_servers():
    """Late evening in UTC is already tomorrow in Auckland: the clinic's day
    and its bounds as stored (UTC) instants follow the zone, DST included."""
    from zoneinfo import ZoneInfo

    now = datetime(2026, 11, 30, 22, 30)  # UTC
    utc = queues.Day.of(now, UTC)
    assert (utc.date, utc.start, utc.end) == (date(2026, 11, 30), datetime(2026, 11, 30), datetime(2026, 12, 1))
    nz = queues.Day.of(now, ZoneInfo("Pacific/Auckland"))  # UTC+13 in summer
    assert nz.date == date(2026, 12, 1)
    assert (nz.start, nz.end) == (datetime(2026, 11, 30, 11, 0), datetime(2026, 12, 1, 11, 0))
    assert queues.Day.of(now, timezone(timedelta(hours=-5))).date == date(2026, 11, 30)
    # The night the clocks go back in Berlin the day lasts 25 hours.
    berlin = queues.Day.of(datetime(2026, 10, 26, 12, 0), ZoneInfo("Europe/Berlin")).before()
    assert berlin.date == date(2026, 10, 25) and berlin.end - berlin.start == timedelta(hours=25)


def test_the_queues_take_the_clinics_time_zone(app):
    from zoneinfo import ZoneInfo

    from ghimaging.settings.service import save_clinic_settings

    assert clock.zone() == ZoneInfo("UTC")
    save_clinic_settings({"time_zone": "America/La_Paz"})
    db.session.commit()
    assert clock.zone() == ZoneInfo("America/La_Paz")
