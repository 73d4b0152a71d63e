"""Mirror an Orthanc into our tables, one step at a time.

The entry points, each callable alone (a test, the CLI, the API, the worker):

- :func:`run` takes the server's lease, runs a step and records the outcome
  (:mod:`.runner`: the only place a sync commits);
- :func:`incremental` follows ``/changes`` page by page (:mod:`.incremental`,
  which also says what a study costs in requests);
- :func:`full` pages ``/studies?expand`` and ``/series?expand`` and
  :func:`reconcile` finds deletions (:mod:`.full`).

Orthanc's JSON becomes row values in one place (:mod:`.mapping`), written
one study at a time (:mod:`.mirror`) or a page at a time (:mod:`.bulk`). The
runner hands the studies each page touched to the matching
(:mod:`.linking`); the sync never learns about requests otherwise.
"""

from __future__ import annotations

from .full import full, reconcile
from .incremental import CHANGES_PAGE, incremental
from .lease import LEASE_SECONDS, LeaseLost, acquire_lease, new_owner, release_lease
from .mirror import auto_link, mark_shared_uids, upsert_study
from .runner import MAX_BACKOFF, backoff_seconds, run
from .summary import Batch, Pace, Summary

__all__ = [
    "CHANGES_PAGE", "LEASE_SECONDS", "MAX_BACKOFF", "Batch", "LeaseLost", "Pace", "Summary",
    "acquire_lease", "auto_link", "backoff_seconds", "full", "incremental", "mark_shared_uids", "new_owner",
    "reconcile", "release_lease", "run", "upsert_study",
]
