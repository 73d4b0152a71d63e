#!/usr/bin/env bash
# Run the whole ghimaging test suite, twice: on SQLite, then on a throwaway
# PostgreSQL cluster. Works on a fresh Debian 12 machine: installs missing
# system packages, creates .venv, installs the app with its test extra, and
# builds (once, cached) the GNU Health server the sync tests run against.
#
#   bash deploy/test.sh [PYTEST ARGS...]     (arguments go to both pytest runs)
#
# Environment: PYTHON (interpreter used to create .venv, default python3).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# The first run must be SQLite whatever the caller's environment says.
unset GHIMAGING_TEST_DATABASE_URL

section() { printf '\n==> %s  [%s]\n' "$*" "$(date +%H:%M:%S)"; }
warn() { printf 'test.sh: %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

# ---------------------------------------------------------------- apt helpers
APT_UPDATED=0
apt_wait_for_lock() {
    # apt-get's DPkg::Lock::Timeout covers the dpkg lock; also wait for other
    # apt/dpkg processes (e.g. a background install) before touching the lists.
    local waited=0
    command -v pgrep >/dev/null 2>&1 || return 0
    while pgrep -x 'apt|apt-get|dpkg|unattended-upgr' >/dev/null 2>&1; do
        if (( waited % 30 == 0 )); then
            echo "    waiting for another apt/dpkg process to finish..."
        fi
        if (( waited >= 900 )); then
            warn "apt/dpkg still busy after ${waited}s; trying anyway"
            return 0
        fi
        sleep 5; waited=$((waited + 5))
    done
}

apt_install() {
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        warn "need root or sudo to install: $*"
        exit 1
    fi
    local apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive
               apt-get -q -y -o DPkg::Lock::Timeout=600)
    apt_wait_for_lock
    if [[ $APT_UPDATED -eq 0 ]]; then
        echo "    apt-get update"
        local try
        for try in 1 2 3; do
            if "${apt[@]}" update >/dev/null; then APT_UPDATED=1; break; fi
            warn "apt-get update failed (attempt $try)"
            sleep 10; apt_wait_for_lock
        done
        [[ $APT_UPDATED -eq 1 ]] || { warn "apt-get update failed"; exit 1; }
    fi
    echo "    apt-get install $*"
    "${apt[@]}" install "$@" >/dev/null
}

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /usr/bin/$1 ]]; }

stop_system_orthanc() {
    # Debian's orthanc package starts a system service (user "orthanc") on
    # install; the tests run their own Orthanc instances on free ports.
    id orthanc >/dev/null 2>&1 || return 0
    command -v pgrep >/dev/null 2>&1 || return 0
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        "${SUDO[@]}" systemctl disable --now orthanc >/dev/null 2>&1 || true
    fi
    if pgrep -x -u orthanc Orthanc >/dev/null 2>&1; then
        echo "    stopping the system Orthanc service"
        "${SUDO[@]}" service orthanc stop >/dev/null 2>&1 || true
        sleep 1
        if pgrep -x -u orthanc Orthanc >/dev/null 2>&1; then
            "${SUDO[@]}" pkill -x -u orthanc Orthanc || true
        fi
    fi
}

# ------------------------------------------------------------ system packages
section "System packages"
missing=()
have python3 || missing+=(python3)
have pgrep || missing+=(procps)
have Orthanc || missing+=(orthanc)
# JPEG 2000 and other compressed images: Orthanc answers 415 without it.
[[ -f /usr/share/orthanc/plugins/libOrthancGdcm.so ]] || missing+=(orthanc-gdcm)
{ have findscu && have storescu && have dump2dcm; } || missing+=(dcmtk)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# The report's PDF (WeasyPrint draws with Pango; DejaVu is its font) and
# pdftotext, which the PDF tests read each page with.
have pdftotext || missing+=(poppler-utils)
ldconfig -p | grep -q libpangoft2-1.0.so.0 || missing+=(libpango-1.0-0 libpangoft2-1.0-0)
ldconfig -p | grep -q libharfbuzz-subset.so.0 || missing+=(libharfbuzz-subset0)
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
# A font with Chinese, Japanese and Korean letters, so the screenshots of
# pages with CJK patient names show the names (4 MB; Debian has none by default).
[[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]] || missing+=(fonts-wqy-microhei)
bash deploy/pg-cluster.sh bindir >/dev/null 2>&1 || missing+=(postgresql)
# The installer's tests: a Debian 12 rootfs made by debootstrap (cached
# compressed), and emulated arm64 and armhf ones (qemu-user-static + binfmt_misc).
have debootstrap || missing+=(debootstrap)
have zstd || missing+=(zstd)
[[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
have update-binfmts || missing+=(binfmt-support)
# ... and the amd64 one booted with systemd as PID 1 (tests/test_installer_systemd.py).
have systemd-nspawn || missing+=(systemd-container)
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
else
    echo "    all present"
fi
stop_system_orthanc
echo "    PostgreSQL binaries: $(bash deploy/pg-cluster.sh bindir)"

# ----------------------------------------------------------------- virtualenv
section "Python virtualenv (.venv)"
PYTHON=${PYTHON:-python3}
if ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    rm -rf .venv
    if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        echo "    venv creation failed; installing python3-venv"
        apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
    echo "    created with $(.venv/bin/python --version)"
else
    echo "    reusing $(.venv/bin/python --version)"
fi
echo "    pip install -e '.[test]'"
.venv/bin/python -m pip install -q -e '.[test]'
# Two versions of the two libraries whose minimums are Debian 12's (the
# installer uses python3-cryptography and python3-pil on 32-bit Raspberry Pi
# OS): the SQLite pass runs on the newest, the PostgreSQL pass on exactly
# Debian's, so a change that needs a newer one fails here.
DEBIAN12_PINS=(cryptography==38.0.4 pillow==9.4.0)
use_newest_pins() {
    .venv/bin/python -m pip install -q --upgrade cryptography pillow
}
use_debian12_pins() {
    .venv/bin/python -m pip install -q "${DEBIAN12_PINS[@]}"
}
pin_versions() {
    .venv/bin/python -c 'import importlib.metadata as m; print(", ".join(f"{n} {m.version(n)}" for n in ("cryptography", "pillow")))'
}
use_newest_pins
echo "    $(pin_versions)"

# ------------------------------------------------- GNU Health test server
# A GNU Health 5.0 venv and template databases for the XML-RPC sync tests,
# built once per machine outside the checkout (/var/cache/ghimaging-tests,
# else ~/.cache/ghimaging-tests; GHIMAGING_TEST_GNUHEALTH_CACHE overrides),
# keyed by the package versions; both pytest runs below share it.
section "GNU Health test server"
.venv/bin/python -m tests.support.gnuhealth build </dev/null

# ------------------------------------------------------- axe-core (npm)
# The accessibility rules the browser tests run in each page: one pinned
# version, its registry tarball checked against the pinned sha512, unpacked
# once per machine outside the checkout (${XDG_CACHE_HOME:-~/.cache}/ghimaging/);
# no node or npm needed (tests/support/axe.py). Never served by the app.
section "axe-core for the accessibility tests"
GHIMAGING_TEST_AXE_JS=$(.venv/bin/python -m tests.support.axe fetch </dev/null)
export GHIMAGING_TEST_AXE_JS
echo "    $GHIMAGING_TEST_AXE_JS"

# ---------------------------------------------- Debian rootfs for the installer
# Built once per machine outside the checkout (see tests/support/rootfs.py)
# and unpacked per test: amd64, and arm64 and armhf under qemu (slow only when cold).
section "Debian 12 rootfs for the installer tests"
.venv/bin/python -m tests.support.rootfs build amd64 </dev/null
.venv/bin/python -m tests.support.rootfs build arm64 </dev/null
.venv/bin/python -m tests.support.rootfs build armhf </dev/null

# ------------------------------------------------------------ lint and types
# ruff (lint, import order) on the code and the tests; mypy --strict on the
# package (settings in pyproject.toml). Both fail the run, after the tests.
section "ruff and mypy"
set +e
.venv/bin/python -m ruff check ghimaging tests bench wsgi.py
ruff_rc=$?
.venv/bin/python -m mypy
mypy_rc=$?
set -e

# ------------------------------------------------------------- test: SQLite
section "pytest on SQLite"
set +e
.venv/bin/python -m pytest "$@"
sqlite_rc=$?
set -e

# ---------------------------------------------------------- test: PostgreSQL
section "pytest on PostgreSQL"
PG_DIR=$(mktemp -d /tmp/ghimaging-pg.XXXXXX)
cleanup() {
    bash "$REPO_ROOT/deploy/pg-cluster.sh" stop "$PG_DIR" || true
    # Leave .venv as the SQLite pass had it.
    [[ ${PINNED_DEBIAN12:-0} -eq 0 ]] || use_newest_pins || warn "could not restore the newest cryptography and Pillow"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_rc=0
PINNED_DEBIAN12=1
if ! use_debian12_pins; then
    warn "could not install ${DEBIAN12_PINS[*]}"
    pg_rc=1
fi
echo "    on Debian 12's versions: $(pin_versions)"
if [[ $pg_rc -eq 0 ]] && pg_url=$(bash deploy/pg-cluster.sh start "$PG_DIR"); then
    echo "    cluster: ${pg_url/ghimaging:ghimaging@/ghimaging:***@}"
    set +e
    # The installer's chroot tests install with SQLite whatever the host's
    # database is: the first pass has run them.
    GHIMAGING_TEST_DATABASE_URL=$pg_url .venv/bin/python -m pytest --ignore=tests/test_installer_chroot.py \
        --ignore=tests/test_installer_systemd.py "$@"
    pg_rc=$?
    set -e
elif [[ $pg_rc -eq 0 ]]; then
    warn "could not start the PostgreSQL cluster"
    pg_rc=1
fi

# -------------------------------------------------------------------- summary
section "Summary"
status() { if [[ $1 -eq 0 ]]; then echo "PASS"; else echo "FAIL (exit $1)"; fi; }
echo "SUMMARY: ruff=$(status "$ruff_rc")  mypy=$(status "$mypy_rc")  sqlite=$(status "$sqlite_rc")  postgresql(${DEBIAN12_PINS[*]})=$(status "$pg_rc")"
if [[ $ruff_rc -ne 0 || $mypy_rc -ne 0 || $sqlite_rc -ne 0 || $pg_rc -ne 0 ]]; then
    exit 1
fi
