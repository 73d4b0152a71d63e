#!/usr/bin/env bash
# Install ghimaging beside Orthanc on Debian 12 or Raspberry Pi OS (bookworm;
# amd64, arm64, armhf), from this checkout, with nothing to answer:
#
#   sudo bash deploy/install.sh            install, or upgrade (re-run: data,
#                                          passwords and settings are kept)
#   sudo bash deploy/install.sh --uninstall         remove the service, the command and
#                                          the program; keep data and settings
#   sudo bash deploy/install.sh --uninstall --purge  also remove data, settings, users
#
# Options (remembered in /etc/ghimaging/install.conf for the next run):
#   --lan                 Orthanc's HTTP (REST, Orthanc Explorer) reachable from other
#                         hosts (default: this machine only; DICOM is always open)
#   --no-lan              back to this machine only
#   --app-host ADDR       address the web app binds (default 0.0.0.0: the LAN)
#   --app-port N          web app port (default 8000)
#   --http-port N         Orthanc HTTP port (default 8042)
#   --dicom-port N        Orthanc DICOM port (default 4242)
#   --threads N           web app threads (default 4)
#
# What it does: apt-get installs Orthanc with its plugins (gdcm, dicomweb,
# webviewer) and python3-venv; configures Orthanc (authentication with a
# generated password, DefaultEncoding Utf8, the worklist plugin on
# /var/lib/ghimaging/worklists, DicomAlwaysAllowFindWorklist, StableAge 3,
# a Lua callback that wakes ghimaging's sync for each new study); creates the
# system user "ghimaging"; installs the app into /opt/ghimaging/venv (wheels
# only, no compiler; on 32-bit ARM Debian's python3-cryptography,
# python3-pil, python3-cffi and python3-brotli, for which PyPI has no wheels
# there) with WeasyPrint for the PDF report (and the Pango, HarfBuzz and
# DejaVu font packages it loads); settings in
# /etc/ghimaging/ghimaging.env; data in /var/lib/ghimaging/instance (0700);
# initialises the database; creates the first admin with a one-time password
# that must be changed at the first sign-in; registers the local Orthanc
# (`ghimaging orthanc add`: the same server when its port changes) and the
# role-less account whose token Orthanc's push holds; installs the systemd
# units ghimaging.service (one gunicorn gthread worker, the background work
# inside it) and ghimaging-worker.service (not enabled), and the `ghimaging`
# command.
# Where systemd is not running (a container, a chroot) it installs the units
# and prints how to start the two services.
set -euo pipefail
umask 022
shopt -u patsub_replacement 2>/dev/null || true  # bash 5.2: '&' literal in \${x//a/b}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$SRC/deploy/install

SERVICE_USER=ghimaging
WL_GROUP=ghimaging-worklists
DATA=/var/lib/ghimaging
INSTANCE=$DATA/instance
WORKLISTS=$DATA/worklists
ETC=/etc/ghimaging
ENV_FILE=$ETC/ghimaging.env
STATE=$ETC/install.conf
ORTHANC_PASSWORD_FILE=$ETC/orthanc-password
OLD_PUSH_TOKEN_FILE=$ETC/orthanc-push-token  # earlier installers kept the token here too
ORTHANC_USER_NAME=ghimaging
OPT=/opt/ghimaging
VENV=$OPT/venv
WRAPPER=/usr/local/bin/ghimaging
UNIT=/etc/systemd/system/ghimaging.service
WORKER_UNIT=/etc/systemd/system/ghimaging-worker.service
LUA=/etc/orthanc/ghimaging-push.lua

# Defaults, then what the last run remembered, then this run's options.
LAN=0 APP_HOST=0.0.0.0 APP_PORT=8000 HTTP_PORT=8042 DICOM_PORT=4242 THREADS=8
if [[ -f $STATE ]]; then
    while IFS='=' read -r key value; do
        case $key in
            LAN|APP_HOST|APP_PORT|HTTP_PORT|DICOM_PORT|THREADS) printf -v "$key" '%s' "$value" ;;
        esac
    done <"$STATE"
fi
PREV_HTTP_PORT=$HTTP_PORT  # Orthanc's port as the last run registered it
UNINSTALL=0 PURGE=0
usage() { sed -n '2,/^# What it does/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --lan) LAN=1 ;;
        --no-lan) LAN=0 ;;
        --app-host) APP_HOST=$2; shift ;;
        --app-port) APP_PORT=$2; shift ;;
        --http-port) HTTP_PORT=$2; shift ;;
        --dicom-port) DICOM_PORT=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in "$APP_PORT" "$HTTP_PORT" "$DICOM_PORT" "$THREADS"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "install.sh: not a number: $n" >&2; exit 2; }
done

section() { printf '\n==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run it as root: sudo bash $0"
systemd_running() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

# The ghimaging command of the installed instance, as the service user with
# the installed settings and nothing else of this shell's environment.
as_app() {
    local vars=(PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=$DATA) line
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        vars+=("$line")
    done <"$ENV_FILE"
    (cd / && env -i "${vars[@]}" setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups -- "$@")
}

fill() {  # fill TEMPLATE DEST MODE OWNER:GROUP KEY=VALUE...
    local template=$1 dest=$2 mode=$3 owner=$4; shift 4
    local text; text=$(<"$template")
    local kv
    for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
    local tmp; tmp=$(mktemp "$dest.XXXXXX")
    printf '%s\n' "$text" >"$tmp"
    chown "$owner" "$tmp"; chmod "$mode" "$tmp"
    mv -f "$tmp" "$dest"
}

# ------------------------------------------------------------------ uninstall
if [[ $UNINSTALL -eq 1 ]]; then
    section "Removing ghimaging's service, command and program"
    if systemd_running; then
        systemctl disable --now ghimaging.service >/dev/null 2>&1 || true
    elif command -v systemctl >/dev/null 2>&1; then
        systemctl disable ghimaging.service >/dev/null 2>&1 || true
    fi
    if systemd_running; then systemctl disable --now ghimaging-worker.service >/dev/null 2>&1 || true; fi
    rm -f "$UNIT" "$WORKER_UNIT" "$WRAPPER" "$LUA"
    if [[ -f /etc/orthanc/orthanc.json ]]; then
        python3 "$HERE/configure_orthanc.py" --dir /etc/orthanc --remove-lua
    fi
    rm -rf "$OPT"
    if systemd_running; then
        systemctl daemon-reload
        systemctl try-restart orthanc.service || true
    fi
    if [[ $PURGE -eq 1 ]]; then
        section "Purging ghimaging's data, settings and users"
        rm -rf "$DATA" "$ETC"
        if id "$SERVICE_USER" >/dev/null 2>&1; then userdel "$SERVICE_USER" || true; fi
        if getent group "$WL_GROUP" >/dev/null; then groupdel "$WL_GROUP" || true; fi
        echo "Removed. Orthanc, its images and its configuration stay (apt-get purge orthanc removes them)."
    else
        echo "Removed. Kept: data in $DATA, settings in $ETC (--purge removes them), Orthanc and its images."
    fi
    exit 0
fi

# ---------------------------------------------------------------- packages
. /etc/os-release 2>/dev/null || true
[[ ${VERSION_CODENAME:-} == bookworm ]] || echo "install.sh: made for Debian 12 (bookworm); this is ${PRETTY_NAME:-unknown}" >&2
ARCH=$(dpkg --print-architecture)
section "System packages ($ARCH)"
PACKAGES=(orthanc orthanc-gdcm orthanc-dicomweb orthanc-webviewer python3 python3-venv ca-certificates)
# The PDF report (WeasyPrint): it dlopens gobject, pango, pangoft2, harfbuzz,
# harfbuzz-subset and fontconfig (the first two pull in glib, harfbuzz and
# fontconfig), and needs one font family.
PACKAGES+=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)
SYSTEM_SITE=()
DEBIAN_PY=0
if [[ $ARCH == armhf || $ARCH == armel ]]; then
    # 32-bit ARM (Raspberry Pi OS 32-bit): PyPI has no armv7l wheels for
    # Pillow and cffi (cryptography's and WeasyPrint's), nor for brotli, and
    # the target has no compiler. Debian's own builds (cryptography 38,
    # Pillow 9.4, cffi 1.15, brotli 1.0), seen from the venv; every other
    # dependency has an armv7l or pure-Python wheel.
    PACKAGES+=(python3-cryptography python3-pil python3-cffi python3-brotli)
    SYSTEM_SITE=(--system-site-packages)
    DEBIAN_PY=1
fi
export DEBIAN_FRONTEND=noninteractive
POLICY_ADDED=0
if ! systemd_running && [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # No init system to start services under: keep the packages' scripts from
    # starting Orthanc with Debian's defaults here.
    printf '#!/bin/sh\n# ghimaging install.sh: no services started (systemd is not running)\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_ADDED=1
fi
TEMP_ORTHANC_PID=
cleanup() {
    [[ $POLICY_ADDED -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ -n $TEMP_ORTHANC_PID ]]; then kill "$TEMP_ORTHANC_PID" 2>/dev/null || true; wait "$TEMP_ORTHANC_PID" 2>/dev/null || true; fi
    [[ -n ${WHEELS:-} ]] && rm -rf "$WHEELS"
    return 0
}
trap cleanup EXIT
APT=(apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
for try in 1 2 3; do  # a mirror in the middle of a sync fails for a minute
    "${APT[@]}" update >/dev/null && break
    if [[ $try -eq 3 ]]; then
        # One index out of date (seen: a proxy's stale bookworm-security armhf
        # list) need not stop the install: apt-get install says if a package
        # is really missing. Say it loudly, though.
        echo "install.sh: WARNING: apt-get update failed 3 times (errors above); going on with the package" \
             "lists apt has. Run 'apt-get update && apt-get upgrade' once the mirror answers." >&2
        break
    fi
    echo "    apt-get update failed (attempt $try); trying again in 15 s"
    sleep 15
done
"${APT[@]}" install --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "    $(dpkg-query -W -f='${Package} ${Version}, ' "${PACKAGES[@]:0:4}" | sed 's/, $//')"

# ------------------------------------------------------------ users, folders
section "User $SERVICE_USER and folders"
getent group "$WL_GROUP" >/dev/null || groupadd --system "$WL_GROUP"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin \
        --comment "ghimaging radiology front end" "$SERVICE_USER"
fi
# Orthanc reads the worklist files ghimaging writes: one group, files 0644 in
# a setgid folder 2750 inside a folder the group may only traverse.
usermod -a -G "$WL_GROUP" orthanc
install -d -o "$SERVICE_USER" -g "$WL_GROUP" -m 0710 "$DATA"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$INSTANCE"
install -d -o "$SERVICE_USER" -g "$WL_GROUP" -m 2750 "$WORKLISTS"
install -d -o root -g "$SERVICE_USER" -m 0750 "$ETC"
echo "    $DATA (instance 0700, worklists 2750 $SERVICE_USER:$WL_GROUP; orthanc in $WL_GROUP)"

# ----------------------------------------------------------------- settings
if [[ ! -f $ENV_FILE ]]; then
    cat >"$ENV_FILE" <<EOF
# ghimaging settings: GHIMAGING_<NAME>=value, one a line (see the README,
# "Configuration"). Read by ghimaging.service and the ghimaging command.
# Kept when deploy/install.sh runs again (an upgrade).
GHIMAGING_INSTANCE_PATH=$INSTANCE
GHIMAGING_WORKLIST_DIR=$WORKLISTS
EOF
fi
grep -q '^GHIMAGING_INSTANCE_PATH=' "$ENV_FILE" || echo "GHIMAGING_INSTANCE_PATH=$INSTANCE" >>"$ENV_FILE"
grep -q '^GHIMAGING_WORKLIST_DIR=' "$ENV_FILE" || echo "GHIMAGING_WORKLIST_DIR=$WORKLISTS" >>"$ENV_FILE"
chown root:"$SERVICE_USER" "$ENV_FILE"; chmod 0640 "$ENV_FILE"
printf 'LAN=%s\nAPP_HOST=%s\nAPP_PORT=%s\nHTTP_PORT=%s\nDICOM_PORT=%s\nTHREADS=%s\n' \
    "$LAN" "$APP_HOST" "$APP_PORT" "$HTTP_PORT" "$DICOM_PORT" "$THREADS" >"$STATE"
chmod 0644 "$STATE"
if [[ ! -s $ORTHANC_PASSWORD_FILE ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$ORTHANC_PASSWORD_FILE")
fi
chown root:root "$ORTHANC_PASSWORD_FILE"; chmod 0600 "$ORTHANC_PASSWORD_FILE"

# ------------------------------------------------------------------- Orthanc
section "Orthanc configuration (/etc/orthanc)"
configure_orthanc() {
    local lua=()
    [[ -f $LUA ]] && lua=(--lua "$LUA")
    local lan=(); [[ $LAN -eq 1 ]] && lan=(--lan)
    python3 "$HERE/configure_orthanc.py" --dir /etc/orthanc --http-port "$HTTP_PORT" --dicom-port "$DICOM_PORT" \
        "${lan[@]}" --user "$ORTHANC_USER_NAME" --password-file "$ORTHANC_PASSWORD_FILE" \
        --worklists "$WORKLISTS" "${lua[@]}" --stable-age 3
}
configure_orthanc
echo "    HTTP :$HTTP_PORT ($([[ $LAN -eq 1 ]] && echo LAN || echo this machine only)), DICOM :$DICOM_PORT," \
     "authentication on (user $ORTHANC_USER_NAME), DefaultEncoding Utf8, worklists in $WORKLISTS"

orthanc_answers() {
    python3 - "$HTTP_PORT" "$ORTHANC_USER_NAME" "$ORTHANC_PASSWORD_FILE" <<'EOF'
import base64, sys, urllib.request
port, user, pwfile = sys.argv[1:]
pw = open(pwfile).read().strip()
req = urllib.request.Request(f"http://127.0.0.1:{port}/system",
                             headers={"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()})
try:
    urllib.request.urlopen(req, timeout=3).read()
except Exception:
    sys.exit(1)
EOF
}
wait_for_orthanc() {
    local i
    for ((i = 0; i < ${1:-120}; i++)); do
        orthanc_answers && return 0
        if [[ -n $TEMP_ORTHANC_PID ]] && ! kill -0 "$TEMP_ORTHANC_PID" 2>/dev/null; then break; fi
        sleep 1
    done
    tail -n 20 /var/log/orthanc/Orthanc.log 2>/dev/null || true
    die "Orthanc does not answer on http://127.0.0.1:$HTTP_PORT/system with the configured password"
}
ORTHANC_EXEC=(/usr/sbin/Orthanc --logdir=/var/log/orthanc /etc/orthanc)
start_orthanc() {  # (re)start Orthanc with the current configuration
    if systemd_running; then
        systemctl enable orthanc.service >/dev/null 2>&1 || true
        systemctl restart orthanc.service
    elif [[ -n $TEMP_ORTHANC_PID ]]; then
        kill "$TEMP_ORTHANC_PID"; wait "$TEMP_ORTHANC_PID" 2>/dev/null || true
        TEMP_ORTHANC_PID=
        start_orthanc
        return
    elif orthanc_answers; then
        echo "    an Orthanc already answers on port $HTTP_PORT: using it (restart it to apply this configuration)"
    else
        # No init system: a temporary Orthanc for the steps below, stopped at the end.
        install -d -o orthanc -g orthanc /var/log/orthanc
        (cd / && exec setpriv --reuid=orthanc --regid=orthanc --init-groups -- "${ORTHANC_EXEC[@]}" \
            >/dev/null 2>&1 </dev/null) &
        TEMP_ORTHANC_PID=$!
    fi
    wait_for_orthanc 120
}
start_orthanc

# ---------------------------------------------------------------- the app
section "ghimaging into $VENV"
install -d -m 0755 "$OPT"
rm -rf "$OPT/lib"  # earlier installers' setup script: `ghimaging orthanc` does its job
venv_ok() {  # a working venv, with Debian's packages in sight when they are needed
    "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 || return 1
    [[ $DEBIAN_PY -eq 0 ]] || grep -q '^include-system-site-packages = true' "$VENV/pyvenv.cfg"
}
if ! venv_ok; then
    rm -rf "$VENV"
    python3 -m venv "${SYSTEM_SITE[@]}" "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
WHEELS=$(mktemp -d)
"$VENV/bin/pip" wheel -q --no-deps --only-binary=:all: -w "$WHEELS" "$SRC"
WHEEL=("$WHEELS"/ghimaging-*.whl)
# PostgreSQL's driver where it has a wheel (psycopg-binary: amd64, arm64), so
# that GHIMAGING_DATABASE_URL may name a PostgreSQL database later.
# WeasyPrint for the PDF report (the extra "pdf") where all its wheels exist.
EXTRAS=; [[ $DEBIAN_PY -eq 0 ]] && EXTRAS="[postgresql,pdf]"
"$VENV/bin/pip" install -q --only-binary=:all: "${WHEEL[0]}$EXTRAS"
if [[ $DEBIAN_PY -eq 1 ]]; then
    # WeasyPrint on 32-bit ARM, without its dependency resolution: it asks
    # for fonttools[woff], whose zopfli has no armv7l wheel and no Debian
    # package (and would need a compiler). WOFF fonts are for web pages; the
    # report uses the system's fonts, so fonttools without the extra does.
    # Its other dependencies are pure Python, or Debian's (python3-cffi,
    # python3-pil, python3-brotli above). Versions tested together; pip
    # leaves them alone when a re-run finds them installed.
    "$VENV/bin/pip" install -q --no-deps --only-binary=:all: \
        weasyprint==70.0 fonttools==4.68.0 pydyf==0.13.0 tinycss2==1.5.1 cssselect2==0.10.1 \
        tinyhtml5==2.1.0 pyphen==0.18.1 webencodings==0.6.1
fi
# Same version number as the one installed: force the new code in.
"$VENV/bin/pip" install -q --no-deps --force-reinstall "${WHEEL[0]}"
echo "    $("$VENV/bin/python" -c 'import importlib.metadata as m; print("ghimaging", m.version("ghimaging"))')" \
     "from $SRC (wheels only: no compiler needed)"
if [[ $DEBIAN_PY -eq 0 ]]; then
    echo "    database: SQLite in $INSTANCE (psycopg installed: GHIMAGING_DATABASE_URL in $ENV_FILE" \
         "may name a PostgreSQL database instead; see the README)"
else
    echo "    from Debian: $("$VENV/bin/python" -c 'import importlib.metadata as m
print(", ".join(f"{n} {m.version(n)}" for n in ("cryptography", "Pillow")))')"
    echo "    database: SQLite in $INSTANCE only (psycopg-binary has no wheel for $ARCH and there is no" \
         "compiler, so the PostgreSQL driver is not installed)"
fi

# A PDF really rendered, as the service will (libraries, fonts, cffi): said
# either way; without it the report prints from the browser only.
if pdf_out=$(as_app "$VENV/bin/python" -c '
import importlib.metadata as m, weasyprint
assert weasyprint.HTML(string="<p>Report</p>").write_pdf().startswith(b"%PDF")
print("WeasyPrint", m.version("weasyprint"))' 2>&1); then
    echo "    PDF reports: $(tail -n 1 <<<"$pdf_out") renders"
else
    echo "install.sh: WARNING: PDF reports will not render (Print and the browser's Save as PDF still work):" >&2
    tail -n 5 <<<"$pdf_out" >&2
fi

fill "$HERE/ghimaging.in" "$WRAPPER" 0755 root:root "SERVICE_USER=$SERVICE_USER"

section "Database"
FIRST_ADMIN_PASSWORD=
ADMIN_FILE=$INSTANCE/initial-admin-password
had_admin_file=0; [[ -e $ADMIN_FILE ]] && had_admin_file=1
init_out=$(as_app "$VENV/bin/ghimaging" init --create-admin)
printf '%s\n' "$init_out" | grep -v -i 'password' | sed '/^[[:space:]]*$/d; s/^/    /' || true
if [[ $had_admin_file -eq 0 && -s $ADMIN_FILE ]]; then  # init made the first admin just now
    FIRST_ADMIN_PASSWORD=$(head -n 1 "$ADMIN_FILE")
fi

section "Local Orthanc in ghimaging; the push from Orthanc"
app_orthanc() { as_app "$VENV/bin/ghimaging" orthanc "$@"; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"; }
ORTHANC_URL=http://127.0.0.1:$HTTP_PORT
REPLACE=()  # Orthanc moved to another port: the same server, at its new address
[[ $PREV_HTTP_PORT != "$HTTP_PORT" ]] && REPLACE=(--replace-url "http://127.0.0.1:$PREV_HTTP_PORT")
added=$(app_orthanc add --url "$ORTHANC_URL" --user "$ORTHANC_USER_NAME" --password-stdin "${REPLACE[@]}" \
        --json <"$ORTHANC_PASSWORD_FILE" | tail -n 1)
SERVER_ID=$(json_field server_id "$added")
# A new push token each run (the account's earlier one stops working): only
# the Lua script below holds it.
TOKEN=$(json_field token "$(app_orthanc push-token --json | tail -n 1)")
rm -f "$OLD_PUSH_TOKEN_FILE"
case $APP_HOST in 0.0.0.0|::|127.0.0.1|'') PUSH_HOST=127.0.0.1 ;; *) PUSH_HOST=$APP_HOST ;; esac
WAKE_URL="http://$PUSH_HOST:$APP_PORT/api/v1/orthanc/servers/$SERVER_ID/wake"
fill "$HERE/ghimaging-push.lua.in" "$LUA" 0640 root:orthanc "WAKE_URL=$WAKE_URL" "TOKEN=$TOKEN"
configure_orthanc
echo "    Orthanc server #$SERVER_ID at $ORTHANC_URL ($(json_field action "$added"));" \
     "OnStableStudy -> POST $WAKE_URL (role-less user orthanc-push)"

# ------------------------------------------------------------------ services
section "Services"
fill "$HERE/ghimaging.service.in" "$UNIT" 0644 root:root \
    "APP_HOST=$APP_HOST" "APP_PORT=$APP_PORT" "THREADS=$THREADS"
if as_app "$VENV/bin/ghimaging" worker --help >/dev/null 2>&1; then
    # For several app hosts: the background work alone (not enabled here).
    fill "$HERE/ghimaging-worker.service.in" "$WORKER_UNIT" 0644 root:root
fi
if [[ -n $TEMP_ORTHANC_PID ]]; then
    kill "$TEMP_ORTHANC_PID"; wait "$TEMP_ORTHANC_PID" 2>/dev/null || true
    TEMP_ORTHANC_PID=
fi
STARTED=0
if systemd_running; then
    systemctl daemon-reload
    systemctl enable orthanc.service ghimaging.service >/dev/null 2>&1
    systemctl restart orthanc.service
    wait_for_orthanc 120
    systemctl restart ghimaging.service
    STARTED=1
    echo "    orthanc.service and ghimaging.service enabled and (re)started"
    if [[ -f $WORKER_UNIT ]]; then
        systemctl try-restart ghimaging-worker.service || true  # only if someone enabled it
    fi
else
    if command -v systemctl >/dev/null 2>&1; then
        systemctl enable orthanc.service ghimaging.service >/dev/null 2>&1 || true
    fi
    echo "    units installed: $UNIT (and Debian's orthanc.service)"
    [[ -f $WORKER_UNIT ]] && echo "    also $WORKER_UNIT (not enabled: see inside for several app hosts)"
fi

# ------------------------------------------------------------------- summary
case $APP_HOST in
    0.0.0.0|::) SHOWN_HOST=$(hostname -I 2>/dev/null | awk '{print $1}'); SHOWN_HOST=${SHOWN_HOST:-$(hostname)} ;;
    *) SHOWN_HOST=$APP_HOST ;;
esac
section "Done"
echo "    ghimaging:  http://$SHOWN_HOST:$APP_PORT/"
if [[ -n $FIRST_ADMIN_PASSWORD ]]; then
    echo "    sign in as: admin   one-time password: $FIRST_ADMIN_PASSWORD"
    echo "                It must be changed at the first sign-in (ghimaging asks for a new one at once)."
    echo "                Until then it is also in $INSTANCE/initial-admin-password: delete that file afterwards."
else
    echo "    users, passwords and data: unchanged (an upgrade)"
fi
echo "    Orthanc:    http://127.0.0.1:$HTTP_PORT/ (user $ORTHANC_USER_NAME, password in $ORTHANC_PASSWORD_FILE);" \
     "DICOM: AET ORTHANC, port $DICOM_PORT"
echo "    command:    sudo ghimaging --help   (create-user, create-token, sync, ...)"
if [[ $STARTED -eq 0 ]]; then
    echo
    echo "    systemd is not running here: start the two services by hand, e.g."
    echo "      setpriv --reuid=orthanc --regid=orthanc --init-groups ${ORTHANC_EXEC[*]} &"
    echo "      env \$(grep -v '^#' $ENV_FILE | xargs) setpriv --reuid=$SERVICE_USER --regid=$SERVICE_USER --init-groups \\"
    echo "          $(sed -n 's/^ExecStart=//p' "$UNIT") &"
fi
