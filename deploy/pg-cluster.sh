#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite.
#
#   deploy/pg-cluster.sh bindir          print the PostgreSQL server bin dir (exit 1 if none)
#   deploy/pg-cluster.sh start [DIR]     start a cluster under DIR (default: a new mktemp dir);
#                                        prints the SQLAlchemy URL on stdout
#   deploy/pg-cluster.sh stop DIR        stop the cluster and remove DIR
#
# The cluster listens on 127.0.0.1 on a free port (and a unix socket inside DIR),
# with fsync off. It has a role "ghimaging" (password "ghimaging", CREATEDB) owning
# a database "ghimaging_test". initdb refuses to run as root, so when run as root
# the cluster is owned by the "postgres" system user if it exists, else by a
# system user "ghtest" (created on demand).
#
# Example:
#   dir=$(mktemp -d /tmp/ghpg.XXXXXX)
#   export GHIMAGING_TEST_DATABASE_URL=$(deploy/pg-cluster.sh start "$dir")
#   ...; deploy/pg-cluster.sh stop "$dir"
set -euo pipefail

die() { echo "pg-cluster: $*" >&2; exit 1; }

pg_bindir() {
    local d cand
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then
            echo "$d"; return 0
        fi
    fi
    # Newest version first (Debian layout).
    for cand in $(printf '%s\n' /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V -r); do
        d=${cand%/initdb}
        if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
            echo "$d"; return 0
        fi
    done
    cand=$(command -v initdb 2>/dev/null || true)
    if [[ -n $cand ]]; then
        d=$(dirname "$(readlink -f "$cand")")
        if [[ -x $d/pg_ctl ]]; then
            echo "$d"; return 0
        fi
    fi
    return 1
}

# Run a command as the cluster owner ($OWNER); plain exec when we are that user.
as_owner() {
    if [[ $(id -un) == "$OWNER" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$OWNER" -- "$@"
    elif command -v setpriv >/dev/null 2>&1; then
        setpriv --reuid="$OWNER" --regid="$(id -g "$OWNER")" --init-groups -- "$@"
    else
        sudo -n -u "$OWNER" -- "$@"
    fi
}

pick_owner() {
    if [[ $(id -u) -ne 0 ]]; then
        id -un; return
    fi
    if id postgres >/dev/null 2>&1; then
        echo postgres; return
    fi
    if ! id ghtest >/dev/null 2>&1; then
        if command -v useradd >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin ghtest >&2
        else
            adduser --system --no-create-home --group ghtest >&2
        fi
    fi
    echo ghtest
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

cmd_start() {
    local dir=${1:-} bindir port psql try started=0
    bindir=$(pg_bindir) || die "no PostgreSQL server binaries found (install the 'postgresql' package)"
    if [[ -z $dir ]]; then
        dir=$(mktemp -d /tmp/ghpg.XXXXXX)
        echo "pg-cluster: cluster dir $dir (stop with: $0 stop $dir)" >&2
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -e $dir/data ]] && die "$dir/data already exists"
    OWNER=$(pick_owner)
    chmod 0700 "$dir"
    chown "$OWNER:" "$dir" 2>/dev/null || chown "$OWNER" "$dir"
    printf '%s\n' "$OWNER" >"$dir/owner"
    printf '%s\n' "$bindir" >"$dir/bindir"
    as_owner mkdir -p "$dir/sock"

    # Don't leave the postgres processes in a directory they may not be able to read.
    cd "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U "$OWNER" --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

    for try in 1 2 3; do
        port=$(free_port)
        # -l is essential: without it the postmaster inherits our stdout, and
        # callers capturing the URL with $(...) would hang.
        if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            -o "-p $port -k '$dir/sock' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null; then
            started=1; break
        fi
        echo "pg-cluster: start on port $port failed (attempt $try)" >&2
    done
    if [[ $started -ne 1 ]]; then
        tail -n 30 "$dir/postgres.log" >&2 || true
        die "could not start PostgreSQL"
    fi
    printf '%s\n' "$port" >"$dir/port"

    psql=$bindir/psql
    [[ -x $psql ]] || psql=psql
    as_owner "$psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U "$OWNER" -d postgres \
        -c "CREATE ROLE ghimaging LOGIN CREATEDB PASSWORD 'ghimaging'" \
        -c "CREATE DATABASE ghimaging_test OWNER ghimaging" >&2 \
        || die "could not create role/database (log: $dir/postgres.log)"

    echo "postgresql+psycopg://ghimaging:ghimaging@127.0.0.1:$port/ghimaging_test"
}

cmd_stop() {
    local dir=${1:-} bindir
    [[ -n $dir ]] || die "usage: $0 stop DIR"
    [[ -d $dir ]] || return 0
    # Only ever remove a folder this script made.
    [[ -f $dir/owner && -f $dir/bindir ]] || die "$dir is not a cluster folder made by '$0 start'; not removing it"
    if [[ -f $dir/owner && -f $dir/bindir && -d $dir/data ]]; then
        OWNER=$(cat "$dir/owner")
        bindir=$(cat "$dir/bindir")
        if (cd "$dir" && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1); then
            (cd "$dir" && as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null) \
                || echo "pg-cluster: pg_ctl stop failed" >&2
        fi
    fi
    rm -rf -- "$dir"
}

case ${1:-} in
    bindir) pg_bindir || exit 1 ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) echo "usage: $0 {bindir|start [DIR]|stop DIR}" >&2; exit 2 ;;
esac
