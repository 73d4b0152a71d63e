"""Deadlines for calls made to Orthanc while a person waits.

A read timeout bounds each socket read, not a call: an Orthanc (or anything
on its port) that sends a byte now and then keeps a call going for ever. So
a call made while a person waits also has a **deadline** for the whole call
(connect, headers and body): ``OrthancClient(total_timeout=...)`` per call,
or ``with deadline(seconds):`` for every call made inside, by any client in
this thread. A watchdog thread shuts the connection's socket down when the
deadline passes, which ends a blocked read at once; the call then raises
:class:`~ghimaging.orthanc.errors.TimedOut`. For a streamed answer (ZIP,
PDF) the deadline covers the wait for the headers; its body is bounded by
the read timeout (an idle timeout, see :func:`~ghimaging.orthanc.transport.iter_body`).
Calls without a deadline (the sync thread) behave as before. The parts that
are made of requests' and urllib3's classes live in :mod:`.transport`, which
the client imports when it is first made.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_scope: contextvars.ContextVar[float | None] = contextvars.ContextVar("orthanc_deadline", default=None)


@contextmanager
def deadline(seconds: float | None = None, *, at: float | None = None) -> Iterator[float | None]:
    """Every Orthanc call made inside ends by ``seconds`` from now (or by the
    ``time.monotonic()`` value ``at``), whichever client makes it; nested
    scopes keep the earliest end. Yields that end. Scopes follow the context,
    so a thread started inside does not inherit one: give its client a
    ``total_timeout`` instead."""
    ends = [t for t in (_scope.get(), at, None if seconds is None else time.monotonic() + seconds)
            if t is not None]
    end = min(ends) if ends else None
    token = _scope.set(end)
    try:
        yield end
    finally:
        _scope.reset(token)


def remaining() -> float | None:
    """Seconds left in the current :func:`deadline` scope (None outside one)."""
    end = _scope.get()
    return None if end is None else end - time.monotonic()


class _Guard:
    __slots__ = ("at", "cancelled", "fired", "sock")

    def __init__(self, sock: socket.socket, at: float):
        self.sock, self.at, self.fired, self.cancelled = sock, at, False, False


class _Watchdog:
    """One thread per process that shuts down the sockets of calls whose
    deadline passed (a blocked ``recv`` in another thread then returns at
    once). Started on first use, and again in a forked child, which does not
    inherit the parent's threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, sock: socket.socket, at: float) -> _Guard:
        guard = _Guard(sock, at)
        with self._cond:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._heap = []
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="orthanc-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (at, next(self._seq), guard))
            # Woken only when this deadline comes before the one it sleeps
            # until: a viewer scrolling asks for a frame every few
            # milliseconds, each 5 s ahead of the last, and waking the thread
            # for each one only to sleep again costs a thread switch per frame.
            if self._heap[0][2] is guard:
                self._cond.notify()
        return guard

    def cancel(self, guard: _Guard) -> None:
        """After this returns the guard never fires (it is dropped lazily)."""
        with self._cond:
            guard.cancelled = True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                guard = heapq.heappop(self._heap)[2]
                guard.fired = True
                with contextlib.suppress(OSError):  # already closed
                    guard.sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()
_local = threading.local()  # the deadline of the call this thread is making, and its guards


def call_end() -> float | None:
    """The deadline of the call this thread is making (see :func:`arm`)."""
    end: float | None = getattr(_local, "deadline", None)
    return end


def watch_socket(sock: socket.socket | None) -> None:
    """Put ``sock`` in the watchdog's care until this thread's call ends
    (nothing when the call has no deadline)."""
    at = call_end()
    if at is not None and sock is not None:
        _local.guards.append(_WATCHDOG.watch(sock, at))


# -- one call's deadline, for the client -------------------------------------------

def end_of_call(started: float, total: float | None) -> float | None:
    """When a call started at ``started`` must be over: ``total`` seconds
    after it (None: no limit of its own) or the :func:`deadline` scope's
    end, whichever comes first; None when neither applies."""
    ends = [t for t in (_scope.get(), None if total is None else started + total) if t is not None]
    return min(ends) if ends else None


def arm(end: float | None) -> None:
    """Put the sockets of this thread's next call in the watchdog's care
    until ``end`` (None: not watched)."""
    _local.deadline, _local.guards = end, []


def struck() -> bool:
    """The deadline of this thread's current call has passed (its socket was shut down)."""
    return any(g.fired for g in getattr(_local, "guards", ()))


def disarm() -> bool:
    """Stop watching this thread's call; True when its deadline struck."""
    guards = getattr(_local, "guards", [])
    for guard in guards:
        _WATCHDOG.cancel(guard)
    _local.deadline, _local.guards = None, []
    return any(g.fired for g in guards)
