"""Instances are not mirrored; pages fetch them from Orthanc when needed."""

from __future__ import annotations

import logging
import re

from ..models import OrthancSeries, OrthancServer
from .client import OrthancError
from .servers import client_for

log = logging.getLogger(__name__)
_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
LIMIT = 24


def valid_id(orthanc_id: str) -> bool:
    return bool(_ID.match(orthanc_id or ""))


def of_series(server: OrthancServer, series: OrthancSeries, limit: int = LIMIT) -> list[dict]:
    """[{"id", "number"}] sorted by InstanceNumber; [] when Orthanc is away
    (the page still shows the rest)."""
    try:
        with client_for(server, timeout=(3.05, 10)) as client:
            items = client.series_instances(series.orthanc_id)
    except OrthancError as exc:
        log.warning("instances of series %s: %s", series.orthanc_id, exc)
        return []
    out = []
    for it in items if isinstance(items, list) else []:
        tags = it.get("MainDicomTags") or {}
        try:
            number = int(str(tags.get("InstanceNumber", "")).strip() or 0)
        except ValueError:
            number = 0
        out.append({"id": it.get("ID", ""), "number": number})
    out.sort(key=lambda x: x["number"])
    return out[:limit]
