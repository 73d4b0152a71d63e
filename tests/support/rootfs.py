"""A Debian 12 (bookworm) root file system to run the installer in as root.

``debootstrap`` makes it once per machine and architecture (a few minutes
natively, about ten emulated); it is kept OUTSIDE the checkout as a
tarball named after what goes into it:

    <cache root>/rootfs-<arch>-<key>.tar.zst
    <cache root>/apt-archives-<arch>/     .deb files the tests' apt-get downloaded
    <cache root>/pip-cache/               pip's cache, shared by the installs

The cache root is ``$GHIMAGING_TEST_ROOTFS_CACHE``, else
``/var/cache/ghimaging-tests`` (the tests need root anyway). Each test
unpacks the tarball into a temporary folder and enters it:

    with Rootfs.unpacked("amd64") as root:       # removed afterwards
        root.run(["bash", "/src/deploy/install.sh"])   # clean environment, as root
        proc = root.popen(["/usr/sbin/Orthanc", ...], user="orthanc")

Entering means: /proc, /sys, /dev and /dev/pts mounted (always unmounted
afterwards, even on failure, and any process still running inside ended
first); the host's CA bundle and local CA certificates, /etc/resolv.conf,
the host's Debian apt sources and its pip configuration copied in, so apt
and pip inside reach what this machine reaches. Commands run through
``env -i PATH=... HOME=... LANG=C.UTF-8 chroot``: nothing of the caller's
environment leaks in.

arm64 (and armhf) run emulated: qemu-user-static and binfmt_misc
(``mount -t binfmt_misc`` when needed, then ``update-binfmts --enable``, or
the interpreter registered by hand). When that cannot be set up,
:class:`RootfsError` says why: the tests fail, they do not skip.

``python -m tests.support.rootfs build [amd64|arm64|armhf]`` builds the
cache (the test command can run it before pytest).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SUITE = "bookworm"
VARIANT = "minbase"
# What a freshly installed Debian 12 / Raspberry Pi OS Lite has that the
# installer may take for granted: an init system, sudo, Python 3. The
# installer apt-installs everything else (Orthanc, python3-venv, ...).
INCLUDE = ["ca-certificates", "systemd", "systemd-sysv", "sudo", "procps", "python3", "iproute2"]
FORMAT_VERSION = 1  # bump when the way the tarball is made changes

QEMU = {"arm64": "aarch64", "armhf": "arm", "armel": "arm"}
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RootfsError(RuntimeError):
    """The rootfs cannot be built or entered; the message says why."""


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def cache_root() -> Path:
    env = os.environ.get("GHIMAGING_TEST_ROOTFS_CACHE")
    root = Path(env) if env else Path("/var/cache/ghimaging-tests")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_key(arch: str) -> str:
    spec = {"suite": SUITE, "variant": VARIANT, "include": sorted(INCLUDE), "arch": arch,
            "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def tarball(arch: str) -> Path:
    return cache_root() / f"rootfs-{arch}-{cache_key(arch)}.tar.zst"


def is_built(arch: str) -> bool:
    return tarball(arch).is_file()


# -- host facts ------------------------------------------------------------------

def _need_root() -> None:
    if os.geteuid() != 0:
        raise RootfsError("building or entering a rootfs needs root (debootstrap, chroot, mount)")


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=600"]
    up = subprocess.run([*apt, "update"], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if up.returncode:
        raise RootfsError(f"apt-get update failed: {up.stderr.strip()[-800:]}")
    got = subprocess.run([*apt, "install", *packages], env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if got.returncode:
        raise RootfsError(f"apt-get install {' '.join(packages)} failed: {got.stderr.strip()[-800:]}")


def ensure_tools(arch: str) -> None:
    """debootstrap (and for a foreign arch qemu-user-static, binfmt-support),
    installed with apt-get when missing."""
    _need_root()
    missing = []
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        missing.append("debootstrap")
    if not shutil.which("zstd"):
        missing.append("zstd")
    if arch in QEMU:
        if not Path(f"/usr/bin/qemu-{QEMU[arch]}-static").exists():
            missing.append("qemu-user-static")
        if not shutil.which("update-binfmts") and not Path("/usr/sbin/update-binfmts").exists():
            missing.append("binfmt-support")
    if missing:
        _apt_install(*missing)


def mirror() -> str:
    """The host's Debian mirror, as its apt sources say (deb822 or one-line)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        block_uris: list[str] = []
        suites: list[str] = []
        for line in [*path.read_text().splitlines(), ""]:
            line = line.strip()
            if not line:
                if any(s == SUITE for s in suites):
                    candidates += block_uris
                block_uris, suites = [], []
            elif line.startswith("URIs:"):
                block_uris = line.split(":", 1)[1].split()
            elif line.startswith("Suites:"):
                suites = line.split(":", 1)[1].split()
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                parts = line.split("#", 1)[0].split()
                parts = [p for p in parts if not p.startswith("[")]
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    candidates.append(parts[1])
    for uri in candidates:
        if "security" not in uri:
            return uri
    return "http://deb.debian.org/debian"


# -- binfmt_misc for emulated architectures -----------------------------------

BINFMT = Path("/proc/sys/fs/binfmt_misc")


def ensure_binfmt(arch: str) -> None:
    """Make the kernel run ``arch`` binaries through qemu-user-static, or say
    why it cannot."""
    if arch not in QEMU:
        return
    name = f"qemu-{QEMU[arch]}"
    if not (BINFMT / "register").exists():
        r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                           capture_output=True, text=True)
        if r.returncode or not (BINFMT / "register").exists():
            raise RootfsError(f"binfmt_misc is not mounted and `mount -t binfmt_misc` failed "
                              f"({r.stderr.strip() or r.returncode}): this kernel or container cannot run "
                              f"{arch} binaries under qemu-user-static")
    entry = BINFMT / name
    if entry.exists() and entry.read_text().startswith("enabled"):
        return
    r = subprocess.run(["update-binfmts", "--enable", name], capture_output=True, text=True)
    if entry.exists() and entry.read_text().startswith("enabled"):
        return
    # By hand, from qemu-user-static's own description of the format.
    desc = Path(f"/usr/share/binfmts/{name}")
    if not desc.is_file():
        raise RootfsError(f"update-binfmts --enable {name} failed ({r.stderr.strip()}) and {desc} is missing")
    fields = dict(line.split(None, 1) for line in desc.read_text().splitlines() if " " in line.strip())
    interp = fields.get("interpreter", f"/usr/libexec/qemu-binfmt/{QEMU[arch]}-binfmt-P").strip()
    flags = "F" + ("C" if fields.get("credentials", "").strip() == "yes" else "")
    flags += "P" if fields.get("preserve", "").strip() == "yes" else ""
    reg = f":{name}:M:{fields.get('offset', '0').strip()}:{fields['magic'].strip()}:{fields['mask'].strip()}:{interp}:{flags}"
    try:
        (BINFMT / "register").write_text(reg)
    except OSError as exc:
        raise RootfsError(f"cannot register {name} with binfmt_misc by hand ({exc}); "
                          f"update-binfmts said: {r.stderr.strip()}") from None
    if not (entry.exists() and entry.read_text().startswith("enabled")):
        raise RootfsError(f"{name} registered but not enabled in {BINFMT}")


# -- build ------------------------------------------------------------------------

def _run_logged(cmd: Sequence[str], log: Path, timeout: float = 3600, env: dict | None = None) -> None:
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, env=env)
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RootfsError(f"{cmd[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")


def build(arch: str | None = None, progress=print) -> Path:
    """Build the cached tarball for ``arch`` (idempotent, locked)."""
    arch = arch or host_arch()
    _need_root()
    out = tarball(arch)
    root = cache_root()
    with open(root / f"rootfs-{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        ensure_tools(arch)
        foreign = arch != host_arch()
        if foreign:
            ensure_binfmt(arch)
        work = Path(tempfile.mkdtemp(prefix=f"rootfs-{arch}-", dir=root))
        log = root / f"rootfs-{arch}-{cache_key(arch)}.log"
        log.write_text("")
        target = work / "root"
        env = {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        try:
            cmd = ["debootstrap", f"--arch={arch}", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}"]
            progress(f"debootstrap {arch} {SUITE} from {mirror()} (log {log})")
            if foreign:
                _run_logged([*cmd, "--foreign", SUITE, str(target), mirror()], log, env=env)
                qemu = f"/usr/bin/qemu-{QEMU[arch]}-static"
                shutil.copy2(qemu, target / qemu.lstrip("/"))  # for kernels without the F flag
                progress("debootstrap second stage (emulated)")
                _run_logged(["chroot", str(target), "/debootstrap/debootstrap", "--second-stage"], log, env=env)
            else:
                _run_logged([*cmd, SUITE, str(target), mirror()], log, env=env)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for f in (target / junk).glob("*"):
                    if f.is_file():
                        f.unlink()
            progress(f"packing {out.name}")
            partial = out.with_suffix(".partial")
            _run_logged(["tar", "--numeric-owner", "--xattrs", "-I", "zstd -T2 -3", "-C", str(target),
                         "-cf", str(partial), "."], log)
            partial.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return out


# -- enter ---------------------------------------------------------------------------

def _copy_host_config(target: Path) -> None:
    """What lets apt and pip inside reach what this machine reaches."""
    def put(src: Path, dst_rel: str) -> None:
        dst = target / dst_rel.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)

    put(Path("/etc/ssl/certs/ca-certificates.crt"), "/etc/ssl/certs/ca-certificates.crt")
    # Local CAs too, so an update-ca-certificates run inside keeps them.
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        put(crt, f"/usr/local/share/ca-certificates/{crt.name}")
    resolv = Path("/etc/resolv.conf").resolve()
    if resolv.is_file():
        put(resolv, "/etc/resolv.conf")
    # Debian's own sources, as the host has them (its mirror, snapshot, ...).
    debian_sources = [p for p in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
                      if p.is_file() and p.suffix in (".list", ".sources") and "debian" in p.read_text()]
    if debian_sources:
        (target / "etc/apt/sources.list").write_text("")
        for p in debian_sources:
            put(p, str(p))
    for conf in Path("/etc/apt/apt.conf.d").glob("*"):
        if conf.is_file() and "Acquire::" in conf.read_text(errors="replace"):
            put(conf, str(conf))
    for pip in (Path("/etc/pip.conf"), Path("/etc/xdg/pip")):
        if pip.exists():
            put(pip, str(pip))


class Rootfs:
    """An unpacked rootfs; ``run``/``popen`` execute inside it as root (or
    ``user=``) with a clean environment."""

    def __init__(self, path: Path, arch: str):
        self.path = path
        self.arch = arch
        self._mounts: list[Path] = []
        self._procs: list[subprocess.Popen] = []

    # context: unpack, mount, copy config; always unmount and remove
    @classmethod
    @contextlib.contextmanager
    def unpacked(cls, arch: str | None = None, *, keep: bool = False) -> Iterator[Rootfs]:
        arch = arch or host_arch()
        _need_root()
        tar = tarball(arch)
        if not tar.is_file():
            build(arch, progress=lambda m: print(f"    rootfs: {m}", flush=True))
        if arch != host_arch():
            ensure_binfmt(arch)
        base = Path(tempfile.mkdtemp(prefix=f"ghimaging-rootfs-{arch}-"))
        root = cls(base / "root", arch)
        root.path.mkdir()
        try:
            t0 = time.monotonic()
            subprocess.run(["tar", "--numeric-owner", "--xattrs", "-I", "zstd", "-C", str(root.path),
                            "-xf", str(tar)], check=True, stdin=subprocess.DEVNULL)
            root.unpack_seconds = time.monotonic() - t0
            _copy_host_config(root.path)
            root._mount_all()
            yield root
        finally:
            root.close()
            # Only once nothing is mounted inside: never follow a bind mount.
            if not keep and not root._mounted_under():
                shutil.rmtree(base, ignore_errors=True)

    unpack_seconds: float = 0.0

    def _mount(self, args: list[str], where: str) -> None:
        dst = self.path / where.lstrip("/")
        dst.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(dst)], check=True, capture_output=True)
        self._mounts.append(dst)

    def _mount_all(self) -> None:
        self._mount(["-t", "proc", "proc"], "/proc")
        self._mount(["-t", "sysfs", "sysfs"], "/sys")
        self._mount(["--bind", "/dev"], "/dev")
        self._mount(["--bind", "/dev/pts"], "/dev/pts")
        self._mount(["-t", "tmpfs", "-o", "mode=1777", "tmpfs"], "/dev/shm")
        self._mount(["-t", "tmpfs", "-o", "mode=755", "tmpfs"], "/run")
        # Downloads kept between runs (the same .deb and wheel files every time).
        archives = cache_root() / f"apt-archives-{self.arch}"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", str(archives)], "/var/cache/apt/archives")
        pipcache = cache_root() / f"pip-cache-{self.arch}"
        pipcache.mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", str(pipcache)], "/root/.cache/pip")

    def _mounted_under(self) -> list[str]:
        prefix = str(self.path.resolve()) + "/"
        out = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            mnt = line.split()[1].replace("\\040", " ")
            if mnt.startswith(prefix):
                out.append(mnt)
        return out

    def processes(self) -> list[int]:
        """Processes whose root is this rootfs (started inside it)."""
        mine = str(self.path.resolve())
        pids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if os.readlink(p / "root") == mine:
                        pids.append(int(p.name))
                except OSError:
                    continue
        return pids

    def _end_processes(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            ends = time.monotonic() + wait
            while time.monotonic() < ends and self.processes():
                time.sleep(0.2)

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        self._end_processes()
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.wait(5)
        for mnt in sorted(self._mounted_under(), key=len, reverse=True):
            r = subprocess.run(["umount", mnt], capture_output=True)
            if r.returncode:
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        self._mounts.clear()

    # -- running things inside -------------------------------------------------------

    def home_of(self, user: str) -> str:
        for line in self.file("/etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == user and len(parts) > 5:
                return parts[5]
        return "/"

    def command(self, cmd: Sequence[str], *, user: str | None = None, group: str | None = None,
                env: dict[str, str] | None = None, cwd: str = "/") -> list[str]:
        """``cmd`` inside, through ``env -i`` (nothing of this process's
        environment), as root or as ``user`` (its groups, or ``group``)."""
        clean = {"PATH": CLEAN_PATH, "HOME": self.home_of(user or "root"), "LANG": "C.UTF-8", **(env or {})}
        inner = list(cmd)
        if user and user != "root":
            inner = ["setpriv", f"--reuid={user}", f"--regid={group or user}", "--init-groups", "--", *inner]
        if cwd != "/":
            inner = ["sh", "-c", 'cd "$0" && exec "$@"', cwd, *inner]
        return ["env", "-i", *[f"{k}={v}" for k, v in clean.items()], "chroot", str(self.path), *inner]

    def run(self, cmd: Sequence[str], *, user: str | None = None, env: dict[str, str] | None = None,
            check: bool = True, timeout: float = 1800, input: str | None = None,
            cwd: str = "/") -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.command(cmd, user=user, env=env, cwd=cwd), capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode:
            raise RootfsError(f"in the {self.arch} rootfs, {' '.join(cmd)} failed (exit {proc.returncode}):\n"
                              f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def popen(self, cmd: Sequence[str], *, user: str | None = None, group: str | None = None,
              env: dict[str, str] | None = None, log: Path | None = None, cwd: str = "/") -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(self.command(cmd, user=user, group=group, env=env, cwd=cwd), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc

    def file(self, path: str) -> Path:
        """The host path of ``path`` inside the rootfs."""
        return self.path / path.lstrip("/")


def _main(argv: list[str]) -> int:
    if not argv or argv[0] != "build" or len(argv) > 2:
        print("usage: python -m tests.support.rootfs build [amd64|arm64|armhf]", file=sys.stderr)
        return 2
    arch = argv[1] if len(argv) > 1 else host_arch()
    if is_built(arch):
        print(f"    Debian {SUITE} {arch} rootfs: cached {tarball(arch)}")
        return 0
    t0 = time.monotonic()
    try:
        out = build(arch, progress=lambda m: print(f"    {m}", flush=True))
    except RootfsError as exc:
        print(f"Debian {SUITE} {arch} rootfs could not be built: {exc}", file=sys.stderr)
        return 1
    print(f"    Debian {SUITE} {arch} rootfs built in {time.monotonic() - t0:.0f} s: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
