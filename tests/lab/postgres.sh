#!/usr/bin/env bash
# postgres.sh - a private PostgreSQL for deskgate's tests and benchmark, the mail lab's sibling
# (lab.sh): one server on 127.0.0.1:PORT, everything (data, TLS, password, log, socket) in DIR.
#
#   postgres.sh install             apt-get postgresql (only when no initdb is installed; root);
#                                   never creates nor starts the system's cluster
#   postgres.sh start DIR PORT      initdb into DIR/data (first time) and start the server;
#                                   returns once it accepts connections; prints nothing
#   postgres.sh stop DIR            stop at once (-m immediate); quiet if not running
#   postgres.sh restart DIR         stop (-m fast), start again on the same port and data
#   postgres.sh createdb DIR NAME   a new empty database NAME owned by deskgate
#
# What start leaves in DIR:
#   password    the superuser deskgate's password (random, one line, no newline)
#   ca.pem      the server's self-signed certificate (CN and IP SAN 127.0.0.1): the root a
#               client verifies the server with (sslmode=verify-full sslrootcert=DIR/ca.pem)
#   postgres.log  the server's log;  port  the port;  data/  the cluster
#   .s.PGSQL.PORT  the server's UNIX socket (local connections are trusted)
# TCP connections need the password (scram-sha-256); the database "deskgate" exists.
#
# PostgreSQL refuses to run as root: as root, DIR is given to the user nobody and every
# PostgreSQL server program (initdb, pg_ctl, postgres) runs as nobody (setpriv, not runuser:
# runuser opens a PAM session and logs one to the journal on every call). Clients (createdb,
# pg_isready) run as the caller. Other users run everything directly.
# Surprises (Sn), referred to below:
#   (S1) Debian's postinst creates a "main" cluster on the first install of a major version
#        (and a started system would start it on port 5432); a policy-rc.d only stops the
#        start, so install also tells postgresql-common not to create it (createcluster.d).
#   (S2) `openssl req -x509` marks its certificate CA:TRUE (v3_ca of openssl.cnf); rustls
#        (webpki, as in tokio-postgres-rustls) refuses such a certificate as a server's
#        certificate (CaUsedAsEndEntity, lab.sh's G11), while libpq (OpenSSL) accepts it.
#        Our own openssl config makes it CA:FALSE; both accept that self-signed leaf as its
#        own root (the test checks psql and a rustls handshake).
#   (S3) pg_ctl and initdb refuse to run as root, even for `pg_ctl stop`; they also resolve
#        the current directory, which nobody may not be allowed to enter: cd DIR first.
#   (S4) nobody must be able to traverse every parent of DIR (/tmp and /dev/shm are fine).
#   (S5) a UNIX socket path holds at most 107 bytes: DIR/.s.PGSQL.PORT.
#   (S6) right after a stop, `ps -C postgres` may still list the old processes as <defunct>:
#        a container's pid 1 reaps them late (lab.sh's G20). pg_ctl stop waits until the
#        postmaster removed postmaster.pid, which is what counts.
#   (S7) start takes about 1 s, most of it initdb (even with --no-sync); restart ~0.4 s,
#        ~1 s after an immediate stop (crash recovery and its checkpoint).
set -eu # no pipefail, as in lab.sh

PROG=${0##*/}
ADDR=127.0.0.1
SUPERUSER=deskgate
RUN_AS=nobody
: "${PGLAB_START_TIMEOUT:=30}" # seconds to wait until the server accepts connections

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages)"; }

# The bin dir of the highest PostgreSQL version installed, or nothing.
pg_bin() {
    local d
    d=$(for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && echo "$d"
    done | sort -V | tail -n 1)
    echo "$d"
}

# --- install ---------------------------------------------------------------------------------
cmd_install() {
    local packages=(postgresql) dropin=/etc/postgresql-common/createcluster.d/deskgate-lab.conf
    if [ -n "$(pg_bin)" ]; then
        log "PostgreSQL already installed: $(pg_bin)"
        return 0
    fi
    need_root
    command -v openssl >/dev/null 2>&1 || packages+=(openssl)
    log "installing: ${packages[*]}"
    # (S1) Both, removed again afterwards: postgresql-common's createcluster.conf includes
    # createcluster.d/*.conf, and create_main_cluster = false there keeps the postinst from
    # making /var/lib/postgresql/N/main; a policy-rc.d exiting 101 keeps invoke-rc.d from
    # starting the postgresql service. (A container's own policy-rc.d is left alone.)
    mkdir -p "${dropin%/*}"
    echo 'create_main_cluster = false' >"$dropin"
    local cleanup="rm -f '$dropin'; rmdir '${dropin%/*}' 2>/dev/null || true"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        cleanup="$cleanup; rm -f /usr/sbin/policy-rc.d"
    fi
    # shellcheck disable=SC2064 # expand now: the paths are fixed
    trap "$cleanup" EXIT
    apt-get update || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" ||
        die "apt-get install ${packages[*]} failed"
    [ -n "$(pg_bin)" ] || die "no /usr/lib/postgresql/*/bin/initdb after installing postgresql"
}

# --- helpers ---------------------------------------------------------------------------------
resolve_dir() {
    [ -n "${1:-}" ] || usage
    local d
    d=$(realpath -m -- "$1")
    case "$d" in *[!A-Za-z0-9._/+-]*) die "DIR may only contain letters, digits and . _ / + -: $d" ;; esac
    # (S5)
    [ ${#d} -le 80 ] || die "DIR is ${#d} characters long; keep it at most 80 (UNIX socket path): $d"
    DIR=$d
    DATA=$DIR/data
    LOGFILE=$DIR/postgres.log
    BIN=$(pg_bin)
    [ -n "$BIN" ] || die "PostgreSQL is not installed: run '$0 install'"
}

# Runs a PostgreSQL server program (initdb, pg_ctl) as $RUN_AS when we are root (S3).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        (cd "$DIR" && setpriv --reuid="$RUN_AS" --regid="$(id -g "$RUN_AS")" --clear-groups -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

log_tail() {
    [ -f "$LOGFILE" ] && { log "last lines of $LOGFILE:"; tail -n 30 "$LOGFILE" >&2; }
    return 0
}

running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

read_port() {
    PORT=$(cat "$DIR/port" 2>/dev/null) || die "no server in $DIR (not started?)"
}

# (S2) A self-signed certificate for 127.0.0.1 that is its own root, CA:FALSE for rustls.
make_tls() {
    cat >"$DIR/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = leaf
[dn]
CN = $ADDR
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:$ADDR
subjectKeyIdentifier = hash
EOF
    (
        cd "$DIR" && umask 077 &&
            openssl req -config openssl.cnf -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -nodes -keyout server.key -out server.crt -days 3650 2>openssl.log &&
            cp server.crt ca.pem && chmod 644 server.crt ca.pem && rm -f openssl.log
    ) || { cat "$DIR/openssl.log" >&2 2>/dev/null; die "TLS certificate generation failed in $DIR"; }
}

init_cluster() {
    local up
    if [ "$(id -u)" = 0 ]; then
        getent passwd "$RUN_AS" >/dev/null || die "no user $RUN_AS to run PostgreSQL as"
        up=$DIR # (S4)
        while up=$(dirname "$up"); [ "$up" != / ]; do
            [ ! -d "$up" ] || [ "$(( 0$(stat -c %a "$up") & 1 ))" = 1 ] ||
                die "$up is not searchable by $RUN_AS (mode $(stat -c %a "$up")); use a DIR under /tmp"
        done
    fi
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    (umask 077 && openssl rand -hex 24 | tr -d '\n' >"$DIR/password")
    make_tls
    echo "$PORT" >"$DIR/port"
    [ "$(id -u)" != 0 ] || chown -R "$RUN_AS:$(id -g "$RUN_AS")" "$DIR"
    # --no-sync: a throwaway cluster; the server itself runs with fsync=on.
    if ! as_pg "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --pwfile="$DIR/password" -E UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 --no-sync \
        >"$DIR/initdb.log" 2>&1; then
        cat "$DIR/initdb.log" >&2
        die "initdb failed"
    fi
    cat >>"$DATA/postgresql.conf" <<EOF

# --- deskgate test server (tests/lab/postgres.sh) ---
listen_addresses = '$ADDR'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 100
shared_buffers = 32MB
ssl = on
ssl_cert_file = '$DIR/server.crt'
ssl_key_file = '$DIR/server.key'
EOF
}

# Starts the server of an initialized DIR on $PORT and waits until it accepts connections.
launch() {
    local deadline
    deadline=$(( $(date +%s) + PGLAB_START_TIMEOUT ))
    if ! as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -s -w -t "$PGLAB_START_TIMEOUT" start \
        >"$DIR/pg_ctl.log" 2>&1; then
        cat "$DIR/pg_ctl.log" >&2
        log_tail
        as_pg "$BIN/pg_ctl" -D "$DATA" -s -m immediate stop >/dev/null 2>&1 || true
        die "the server in $DIR did not start"
    fi
    # pg_ctl -w waits until the postmaster says it is ready; this checks the TCP listener.
    until "$BIN/pg_isready" -q -h "$ADDR" -p "$PORT" -t 1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log_tail
            as_pg "$BIN/pg_ctl" -D "$DATA" -s -m immediate stop >/dev/null 2>&1 || true
            die "the server in $DIR does not accept connections on $ADDR:$PORT"
        fi
        sleep 0.1
    done
}

# stop -m MODE, quiet if not running
stop_server() {
    running || return 0
    as_pg "$BIN/pg_ctl" -D "$DATA" -s -m "$1" stop >/dev/null 2>&1 || {
        running || return 0
        log_tail
        die "pg_ctl stop -m $1 failed for $DATA"
    }
}

create_database() {
    "$BIN/createdb" -h "$DIR" -p "$PORT" -U "$SUPERUSER" -O "$SUPERUSER" -- "$1" ||
        die "cannot create database $1"
}

# --- commands --------------------------------------------------------------------------------
cmd_start() {
    resolve_dir "${1:-}"
    PORT=${2:-}
    if ! [[ "$PORT" =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1024 ] || [ "$PORT" -gt 65535 ]; then
        die "PORT must be a port number 1024-65535, got '$PORT'"
    fi
    ! running || die "the server in $DIR is running; run '$0 stop $DIR' first"
    local fresh=
    if [ ! -f "$DATA/PG_VERSION" ]; then
        init_cluster
        fresh=1
    elif [ "$(cat "$DIR/port")" != "$PORT" ]; then
        die "$DIR was made for port $(cat "$DIR/port"), not $PORT"
    fi
    launch
    [ -z "$fresh" ] || create_database "$SUPERUSER"
}

cmd_stop() {
    resolve_dir "${1:-}"
    [ -d "$DATA" ] || return 0
    stop_server immediate
}

cmd_restart() {
    resolve_dir "${1:-}"
    read_port
    [ -f "$DATA/PG_VERSION" ] || die "no cluster in $DATA"
    stop_server fast
    launch
}

cmd_createdb() {
    resolve_dir "${1:-}"
    [[ "${2:-}" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "NAME must match [a-z_][a-z0-9_]*, got '${2:-}'"
    read_port
    create_database "$2"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start "${2:-}" "${3:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    restart) cmd_restart "${2:-}" ;;
    createdb) cmd_createdb "${2:-}" "${3:-}" ;;
    *) usage ;;
esac
