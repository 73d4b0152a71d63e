"""What a sync step reports: per page to the runner (:class:`Batch`), and in
the end to the caller (:class:`Summary`).

The steps never commit. After each page they hand a :class:`Batch` to
``pace.checkpoint``: the runner commits it, then matches the studies it
touched and puts back on the worklist the requests it left without images.
Called alone (a test, a bench), a step's default pace only flushes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..extensions import db


@dataclass
class Batch:
    """One page's work: studies created or changed (to match), request ids
    that lost their last study (to offer again), and a full sync's
    generation (match all its studies, set-based)."""

    touched: list[int] = field(default_factory=list)
    reoffer: list[int] = field(default_factory=list)
    generation: int = 0


@dataclass
class Pace:
    """How a step hands its pages over: ``checkpoint(batch)`` after each page
    written, ``keepalive()`` during long reads from Orthanc (renews the lease;
    nothing is written then)."""

    checkpoint: Callable[[Batch], None] = field(default=lambda batch: db.session.flush())
    keepalive: Callable[[], None] = field(default=lambda: None)


@dataclass
class Summary:
    server: str
    mode: str
    requests: int = 0
    changes: int = 0
    pages: int = 0
    studies_updated: int = 0
    studies_deleted: int = 0
    patients_linked: int = 0
    last_change: int = 0
    reset_detected: bool = False
    skipped: str = ""
    error: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if self.skipped:
            return f"{self.server}: skipped ({self.skipped})"
        if self.error:
            return f"{self.server}: {self.mode} sync failed: {self.error}"
        return (f"{self.server}: {self.mode} sync: {self.studies_updated} studies updated, "
                f"{self.studies_deleted} removed, {self.changes} changes, {self.requests} requests, "
                f"index {self.last_change}, {self.seconds:.2f}s"
                + (" (Orthanc database reset detected)" if self.reset_detected else ""))
