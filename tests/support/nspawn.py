"""The cached Debian 12 rootfs (tests/support/rootfs.py) booted with systemd
as PID 1, by ``systemd-nspawn --boot`` (Debian package systemd-container):
the installer's branch that enables and starts the units, which a chroot
never reaches.

    with Booted.boot("amd64", log=tmp_path / "boot.log") as box:
        box.run(["bash", "/src/deploy/install.sh"])       # as root, clean environment
        box.run(["systemctl", "is-active", "ghimaging.service"])

The container shares this machine's network (no ``--private-network``), so
its services answer on 127.0.0.1 here and apt and pip inside reach what this
machine reaches (the host's CA bundle, resolv.conf and apt sources are
copied in, as for the chroot). Commands enter the running container with
``nsenter`` (no systemd-machined needed) through ``env -i``. The container is
halted (SIGTERM to systemd-nspawn: a clean shutdown) and removed afterwards.

Checked here: a container whose init is not systemd, a kernel that refuses
the namespaces, or a missing systemd-nspawn raise :class:`RootfsError` with
the reason, so the test fails saying why.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.rootfs import CLEAN_PATH, RootfsError, _copy_host_config, _need_root, build, cache_root, tarball


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the processes whose parent is ``pid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out.append((int(p.name), comm))
    return out


class Booted:
    """A rootfs running under systemd-nspawn with systemd as its PID 1."""

    def __init__(self, path: Path, arch: str, proc: subprocess.Popen, leader: int):
        self.path, self.arch, self.proc, self.leader = path, arch, proc, leader

    @classmethod
    @contextlib.contextmanager
    def boot(cls, arch: str, *, log: Path, keep: bool = False, timeout: float = 120) -> Iterator[Booted]:
        _need_root()
        nspawn = shutil.which("systemd-nspawn")
        if nspawn is None:
            raise RootfsError("systemd-nspawn is missing (Debian package systemd-container)")
        tar = tarball(arch)
        if not tar.is_file():
            build(arch, progress=lambda m: print(f"    rootfs: {m}", flush=True))
        base = Path(tempfile.mkdtemp(prefix=f"ghimaging-nspawn-{arch}-"))
        path = base / "root"
        path.mkdir()
        proc = None
        try:
            subprocess.run(["tar", "--numeric-owner", "--xattrs", "-I", "zstd", "-C", str(path), "-xf", str(tar)],
                           check=True, stdin=subprocess.DEVNULL)
            _copy_host_config(path)
            binds = []
            for host, inside in ((cache_root() / f"apt-archives-{arch}", "/var/cache/apt/archives"),
                                 (cache_root() / f"pip-cache-{arch}", "/root/.cache/pip")):
                (host / "partial" if "apt" in inside else host).mkdir(parents=True, exist_ok=True)
                (path / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
                binds.append(f"--bind={host}:{inside}")
            with open(log, "ab") as out:
                proc = subprocess.Popen([nspawn, "-q", "-D", str(path), "--boot", "--register=no", "--keep-unit",
                                         *binds], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            leader = cls._leader(proc, log, timeout)
            box = cls(path, arch, proc, leader)
            box._wait_booted(log, timeout)
            yield box
        finally:
            if proc is not None:
                cls._halt(proc)
            if not keep:
                shutil.rmtree(base, ignore_errors=True)

    @staticmethod
    def _leader(proc: subprocess.Popen, log: Path, timeout: float) -> int:
        """The container's PID 1 as this machine sees it: systemd, a child
        of systemd-nspawn."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if proc.poll() is not None:
                raise RootfsError(f"systemd-nspawn --boot ended (exit {proc.returncode}):\n{_tail(log)}")
            found = [pid for pid, comm in children(proc.pid) if comm == "systemd"]
            if found:
                return found[0]
            time.sleep(0.2)
        raise RootfsError(f"no systemd started inside systemd-nspawn within {timeout:.0f} s:\n{_tail(log)}")

    def _wait_booted(self, log: Path, timeout: float) -> None:
        ends = time.monotonic() + timeout
        while True:  # systemctl fails until systemd has its bus socket
            r = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=timeout)
            state = r.stdout.strip()
            if state or time.monotonic() > ends:
                break
            time.sleep(0.5)
        if state not in ("running", "degraded"):
            raise RootfsError(f"the booted rootfs is {state!r} ({r.stderr.strip()}):\n{_tail(log)}")
        if state == "degraded":  # say which, but go on: the installer's units are what matters
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
            print(f"\n    booted rootfs degraded: {failed.strip()}")

    @staticmethod
    def _halt(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # systemd-nspawn asks the container to power off
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def command(self, cmd: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        clean = {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
        return ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--",
                "env", "-i", *[f"{k}={v}" for k, v in clean.items()], *cmd]

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 1800,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.command(cmd, env), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode:
            raise RootfsError(f"in the booted {self.arch} rootfs, {' '.join(cmd)} failed (exit {proc.returncode}):"
                              f"\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def file(self, path: str) -> Path:
        """The host path of ``path`` inside the container."""
        return self.path / path.lstrip("/")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
