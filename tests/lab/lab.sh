#!/usr/bin/env bash
# lab.sh - deskgate's mail lab for real-server integration tests:
# a private Postfix (SMTP) -> LMTP -> Dovecot (IMAP) on 127.0.0.1, everything under one DIR.
#
#   lab.sh install              apt-get postfix dovecot-imapd dovecot-lmtpd openssl (idempotent,
#                               root; "apt-get update" only when something is missing)
#   lab.sh start DIR            write configs + TLS (CA + leaf) into DIR, start Dovecot and
#                               Postfix, wait until they greet, print KEY=VALUE lines on stdout
#   lab.sh stop DIR             stop every process of the lab (including strays)
#   lab.sh postfix-stop DIR     stop only the lab's Postfix ("the SMTP server is down")
#   lab.sh postfix-start DIR    start it again; returns once the SMTP port greets with 220
#   lab.sh status DIR           exit 0 = all up, 1 = partly up (or strays), 3 = down
#   lab.sh env DIR              print the KEY=VALUE lines of a started lab again
#
# Domain example.test; users support sales customer1..customer5 agent1..agent3 lead postmaster
# (login = full address, password = "<localpart>-pw"); any other recipient: 550 at RCPT.
# Nothing reads or writes /etc/postfix, /etc/dovecot or a system service; labs with distinct
# DIRs and ports run side by side. Needs root (Postfix's master must start as root).
#
# Learned from the team's mail-lab notes (shared/lab/NOTES.md and its maillab.sh); "(Gn)"
# below refers to gotcha n there.
#
# Environment (defaults in brackets):
#   MAILLAB_IMAP_PORT [10143]   MAILLAB_IMAPS_PORT [10993]   MAILLAB_SMTP_PORT [10025]
#   MAILLAB_SUBMISSION_PORT [10587]   MAILLAB_SUBMISSIONS_PORT [10465]
#   MAILLAB_VMAIL_USER [maillab]  system account owning the mail stores (created if missing)
#   MAILLAB_START_TIMEOUT [15]    seconds to wait for the servers to greet
#   MAILLAB_STOP_TIMEOUT [10]     seconds to wait before SIGKILL (0 = SIGKILL at once)
#   MAILLAB_OAUTH2_INTROSPECTION_URL [unset]  when set, Dovecot (IMAP, and the submission
#                                 AUTH Postfix delegates to it) also accepts XOAUTH2 and
#                                 OAUTHBEARER, checking each token by POSTing token=... to this
#                                 URL (RFC 7662 style: {"active": true, "username": "..."})
#   MAILLAB_ALIASES [unset]       space-separated ALIAS=USER pairs (local parts): Postfix
#                                 rewrites mail to ALIAS@domain to USER@domain (virtual_alias_maps),
#                                 as a company routes sales@ and support@ into one mailbox
set -eu # no pipefail: "tr | grep -q" and vanishing /proc files make pipelines "fail" (G22)

PROG=${0##*/}
PACKAGES=(postfix dovecot-imapd dovecot-lmtpd openssl)
PF_MASTER=/usr/lib/postfix/sbin/master
DOVECOT=/usr/sbin/dovecot
ADDR=127.0.0.1
DOMAIN=example.test
USERS="support sales customer1 customer2 customer3 customer4 customer5 agent1 agent2 agent3 lead postmaster"

: "${MAILLAB_IMAP_PORT:=10143}"
: "${MAILLAB_IMAPS_PORT:=10993}"
: "${MAILLAB_SMTP_PORT:=10025}"
: "${MAILLAB_SUBMISSION_PORT:=10587}"
: "${MAILLAB_SUBMISSIONS_PORT:=10465}"
: "${MAILLAB_VMAIL_USER:=maillab}"
: "${MAILLAB_START_TIMEOUT:=15}"
: "${MAILLAB_STOP_TIMEOUT:=10}"
: "${MAILLAB_OAUTH2_INTROSPECTION_URL:=}"
: "${MAILLAB_ALIASES:=}"
PORT_VARS="MAILLAB_IMAP_PORT MAILLAB_IMAPS_PORT MAILLAB_SMTP_PORT MAILLAB_SUBMISSION_PORT MAILLAB_SUBMISSIONS_PORT"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (Postfix's master needs it)"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- install ---------------------------------------------------------------------------------
ensure_vmail_user() {
    getent passwd "$MAILLAB_VMAIL_USER" >/dev/null && return 0
    log "creating system user $MAILLAB_VMAIL_USER (owner of lab mail stores)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$MAILLAB_VMAIL_USER"
}

cmd_install() {
    need_root
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        # (G21) "No configuration": the package must not write /etc/postfix/main.cf, and a
        # temporary policy-rc.d (exit 101) keeps the postinst scripts from starting the
        # system-wide postfix/dovecot services on ports 25/143/993.
        echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt-get update || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" ||
            die "apt-get install ${missing[*]} failed"
    else
        log "packages already installed: ${PACKAGES[*]}"
    fi
    ensure_vmail_user
}

# --- helpers ---------------------------------------------------------------------------------
resolve_dir() {
    [ -n "${1:-}" ] || usage
    local d
    d=$(realpath -m -- "$1")
    case "$d" in *[!A-Za-z0-9._/+-]*) die "DIR may only contain letters, digits and . _ / + -: $d" ;; esac
    # (G10) sun_path holds 107 bytes; the longest socket is DIR/dovecot/run/token-login/imap-urlauth.
    [ ${#d} -le 64 ] || die "DIR is ${#d} characters long; keep it at most 64 (UNIX socket paths): $d"
    DIR=$d
    PF_ETC=$DIR/postfix/etc
    PF_SPOOL=$DIR/postfix/spool
    PF_DATA=$DIR/postfix/data
    PF_PIDFILE=$PF_SPOOL/pid/master.pid
    DC_ETC=$DIR/dovecot/etc
    DC_RUN=$DIR/dovecot/run
    DC_STATE=$DIR/dovecot/state
    DC_PIDFILE=$DC_RUN/master.pid
    TLS=$DIR/tls
    MAILSTORE=$DIR/mail
    LOGS=$DIR/log
    ENVFILE=$DIR/lab.env
    # (G7) unique per DIR; Dovecot titles its processes "dovecot-<instance_name>/<service>"
    DC_INSTANCE=dglab-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)
}

# ports of a started lab come from its env file (postfix-start, status)
load_env_ports() {
    [ -f "$ENVFILE" ] || die "no lab in $DIR (not started?)"
    local line
    while IFS= read -r line; do
        case "$line" in MAILLAB_*_PORT=*) printf -v "${line%%=*}" '%s' "${line#*=}" ;; esac
    done <"$ENVFILE"
}

# true if ADDR:PORT answers with a greeting starting with $2; then says $3 so the server logs
# a clean disconnect
port_greets() {
    local line
    line=$( (exec 3<>"/dev/tcp/$ADDR/$1" && IFS= read -r -t 2 l <&3 && printf '%s\r\n' "$3" >&3 &&
        printf '%s' "$l") 2>/dev/null) || true
    [[ "$line" == "$2"* ]]
}

# true if something accepts connections on ADDR:PORT
port_open() { (exec 3<>"/dev/tcp/$ADDR/$1") 2>/dev/null; }

# true if a TCP socket listens on ADDR:PORT (from /proc, so no connection is logged)
port_listening() {
    awk -v want="$(printf '0100007F:%04X' "$1")" -v any="$(printf '00000000:%04X' "$1")" \
        '$4 == "0A" && ($2 == want || $2 == any) { found = 1 } END { exit !found }' /proc/net/tcp
}

# (G20) alive = exists and is not a zombie (pid 1 of a container may reap late)
pid_alive() {
    local stat
    [ -n "${1:-}" ] && { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

read_pid() { [ -s "$1" ] && awk 'NR==1 { print $1 + 0; exit }' "$1" 2>/dev/null || true; }

# pid of this lab's Postfix master, or nothing (checks the pid really is our master)
postfix_pid() {
    local pid
    pid=$(read_pid "$PF_PIDFILE")
    pid_alive "$pid" || return 0
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$PF_MASTER" ] || return 0
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "MAIL_CONFIG=$PF_ETC" || return 0
    echo "$pid"
}

# pid of this lab's Dovecot master, or nothing
dovecot_pid() {
    local pid
    pid=$(read_pid "$DC_PIDFILE")
    pid_alive "$pid" || return 0
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$DOVECOT" ] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-c $DC_ETC/dovecot.conf" || return 0
    echo "$pid"
}

# all live processes in the session led by $1 (both masters call setsid())
session_pids() {
    # /proc/PID/stat: "pid (comm) state ppid pgrp session ..."; comm may contain spaces
    cat /proc/[0-9]*/stat 2>/dev/null |
        awk -v sid="$1" '{ pid = $1; sub(/^.*\) /, ""); if ($4 == sid && $1 != "Z") print pid }'
}

# (G19) every live process of this lab found by what it carries, also orphans of a dead
# master: Postfix ones have MAIL_CONFIG=<lab config> in their environment, Dovecot ones are
# titled "dovecot-<instance>/..." or have the lab config on their command line.
# $1 = postfix | all
lab_procs() {
    local f p files
    files=$(grep -lsxz -e "MAIL_CONFIG=${PF_ETC//./[.]}" /proc/[0-9]*/environ 2>/dev/null || true)
    if [ "$1" = all ]; then
        files="$files $(grep -lsz -e "^dovecot-$DC_INSTANCE/" -e "^${DC_ETC//./[.]}/dovecot[.]conf\$" \
            /proc/[0-9]*/cmdline 2>/dev/null || true)"
    fi
    for f in $files; do
        p=${f#/proc/}; p=${p%%/*}
        [ "$p" != "$$" ] && pid_alive "$p" && echo "$p"
    done | sort -un
}

user_password() { echo "$1-pw"; }

# --- configuration ---------------------------------------------------------------------------
make_tls() {
    local san="subjectAltName = DNS:localhost,DNS:mail.$DOMAIN,IP:$ADDR"
    # reused across restarts of the same DIR (clients may have loaded ca.pem already)
    [ -s "$TLS/cert.pem" ] && [ -s "$TLS/key.pem" ] && [ -s "$TLS/ca.pem" ] && return 0
    mkdir -p "$TLS"
    cat >"$TLS/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = deskgate lab test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
$san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    # (G11) a CA plus a leaf signed by it: rustls/webpki refuses a self-signed CA:TRUE
    # certificate as server certificate (CaUsedAsEndEntity). EC P-256: milliseconds to make.
    (
        cd "$TLS" && umask 077 &&
            openssl req -config openssl.cnf -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -nodes -keyout ca.key -out ca.pem -days 3650 -extensions v3_ca 2>/dev/null &&
            openssl req -config openssl.cnf -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -nodes -keyout key.pem -out server.csr -subj /CN=localhost 2>/dev/null &&
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
                -days 3650 -extfile openssl.cnf -extensions v3_server -out cert.pem 2>/dev/null &&
            rm -f server.csr && chmod 644 ca.pem cert.pem
    ) || die "TLS certificate generation failed in $TLS"
}

write_postfix_config() {
    local u
    mkdir -p "$PF_ETC"
    for u in $USERS; do echo "$u@$DOMAIN OK"; done >"$PF_ETC/vmailbox"
    for pair in $MAILLAB_ALIASES; do
        echo "${pair%%=*}@$DOMAIN ${pair#*=}@$DOMAIN"
    done >"$PF_ETC/valias"

    cat >"$PF_ETC/main.cf" <<EOF
# Generated by lab.sh on every start.
compatibility_level = 3.6
queue_directory = $PF_SPOOL
data_directory = $PF_DATA
mail_owner = postfix
setgid_group = postdrop
syslog_name = dglab-postfix
# (G3) no syslog in containers: log through postlogd to a file (prefix must be allowed)
maillog_file = $LOGS/postfix.log
maillog_file_prefixes = $LOGS

# (G4)
myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = \$mydomain
inet_interfaces = $ADDR
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# (G5) the domain is a virtual mailbox domain only; never in mydestination
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled in the mail lab
alias_maps =
alias_database =
relay_domains =
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$PF_ETC/vmailbox
virtual_alias_maps = texthash:$PF_ETC/valias
virtual_transport = lmtp:unix:$DC_RUN/lmtp
recipient_delimiter = +
# nothing ever leaves this machine
default_transport = error:5.7.1 the mail lab delivers only to $DOMAIN
relay_transport = \$default_transport

smtpd_banner = \$myhostname ESMTP dglab
# (G15) deliver what the client sent: no added Date/Message-ID, no address rewriting
local_header_rewrite_clients =
message_size_limit = 52428800
biff = no
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# (G16) no throttling, fast retry after a failed delivery (default 300 s)
smtpd_error_sleep_time = 0s
in_flow_delay = 0s
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
delay_warning_time = 0h
enable_long_queue_ids = yes

smtpd_tls_security_level = may
smtpd_tls_chain_files = $TLS/key.pem, $TLS/cert.pem
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
# (G6) SASL through Dovecot's socket (absolute path: no chroot)
smtpd_sasl_type = dovecot
smtpd_sasl_path = $DC_RUN/auth-postfix
smtpd_sasl_auth_enable = no
smtpd_tls_auth_only = yes
smtpd_sasl_authenticated_header = yes
smtp_tls_security_level = none
lmtp_tls_security_level = none
EOF

    local sub="  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
    cat >"$PF_ETC/master.cf" <<EOF
# Generated by lab.sh. (G2) chroot "n" everywhere: in a chroot the LMTP client cannot reach
# Dovecot's socket by its absolute path.
# service type  private unpriv  chroot  wakeup  maxproc command + args
$ADDR:$MAILLAB_SMTP_PORT inet n - n - - smtpd
$ADDR:$MAILLAB_SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=dglab-postfix/submission
  -o smtpd_tls_security_level=encrypt
$sub
$ADDR:$MAILLAB_SUBMISSIONS_PORT inet n - n - - smtpd
  -o syslog_name=dglab-postfix/submissions
  -o smtpd_tls_wrappermode=yes
$sub
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    chmod 644 "$PF_ETC"/*
    # (G1) "postfix start" re-reads main.cf every 300 ms until its mtime is ~2 s old:
    # backdate the generated files so start (and a later postfix-start) does not wait.
    touch -d "@$(( $(date +%s) - 60 ))" "$PF_ETC"/*
}

write_dovecot_config() {
    local u uid gid
    uid=$(id -u "$MAILLAB_VMAIL_USER")
    gid=$(id -g "$MAILLAB_VMAIL_USER")
    mkdir -p "$DC_ETC"
    for u in $USERS; do
        printf '%s@%s:{PLAIN}%s::::::\n' "$u" "$DOMAIN" "$(user_password "$u")"
    done >"$DC_ETC/passwd"
    # (G8) read by the auth process, which runs as dovecot
    chown root:dovecot "$DC_ETC/passwd"
    chmod 640 "$DC_ETC/passwd"

    # OAuth 2.0: every token is checked by the test's token server (no tokeninfo_url, so
    # Dovecot always introspects; the username it returns must be the login name).
    local oauth_mechanisms="" oauth_passdb=""
    if [ -n "$MAILLAB_OAUTH2_INTROSPECTION_URL" ]; then
        cat >"$DC_ETC/oauth2.conf.ext" <<EOF
introspection_url = $MAILLAB_OAUTH2_INTROSPECTION_URL
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF
        chown root:dovecot "$DC_ETC/oauth2.conf.ext"
        chmod 640 "$DC_ETC/oauth2.conf.ext"
        oauth_mechanisms=" xoauth2 oauthbearer"
        oauth_passdb="
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DC_ETC/oauth2.conf.ext
}"
    fi

    cat >"$DC_ETC/dovecot.conf" <<EOF
# Generated by lab.sh on every start. Self-contained: no /etc/dovecot includes (G7).
instance_name = $DC_INSTANCE
base_dir = $DC_RUN
state_dir = $DC_STATE
log_path = $LOGS/dovecot.log
info_log_path = $LOGS/dovecot.log
protocols = imap lmtp
listen = $ADDR
hostname = mail.$DOMAIN
verbose_proctitle = yes

# (G11) without ssl_cert Dovecot starts but every TLS connection fails
ssl = yes
ssl_cert = <$TLS/cert.pem
ssl_key = <$TLS/key.pem
ssl_min_protocol = TLSv1.2

# test lab: plaintext LOGIN allowed, also without TLS
disable_plaintext_auth = no
auth_mechanisms = plain login$oauth_mechanisms
# (G12) default 2 s per failed login
auth_failure_delay = 0
passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u $DC_ETC/passwd
}$oauth_passdb
userdb {
  driver = passwd-file
  args = username_format=%u $DC_ETC/passwd
  default_fields = uid=$uid gid=$gid home=$MAILSTORE/%d/%n
}
# (G8) the mail owner is a system account, below the default first_valid_uid = 500
first_valid_uid = $uid
first_valid_gid = $gid
mail_location = maildir:~/Maildir
# (G14) tests open many sessions per user from 127.0.0.1 (default 10)
mail_max_userip_connections = 200
# (G5) support+tag@ lands in support's INBOX; Delivered-To keeps the tag
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no

namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}

service imap-login {
  inet_listener imap {
    address = $ADDR
    port = $MAILLAB_IMAP_PORT
  }
  inet_listener imaps {
    address = $ADDR
    port = $MAILLAB_IMAPS_PORT
    ssl = yes
  }
}
# (G6) Postfix's lmtp client and smtpd run as user postfix
service lmtp {
  unix_listener lmtp {
    user = postfix
    group = postfix
    mode = 0600
  }
}
service auth {
  unix_listener auth-postfix {
    user = postfix
    group = postfix
    mode = 0600
  }
}
# (G12) no auth penalty (2, 4, 8, 15 s per failure from one IP; every client is 127.0.0.1)
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
EOF
    chmod 644 "$DC_ETC/dovecot.conf"
}

write_env() {
    local u v
    {
        echo "MAILLAB_DIR=$DIR"
        echo "MAILLAB_HOST=$ADDR"
        echo "MAILLAB_DOMAIN=$DOMAIN"
        for v in $PORT_VARS; do echo "$v=${!v}"; done
        echo "MAILLAB_CA_FILE=$TLS/ca.pem"
        echo "MAILLAB_USERS='$USERS'"
        for u in $USERS; do
            v=${u^^}
            echo "MAILLAB_USER_$v=$u@$DOMAIN"
            echo "MAILLAB_PASS_$v=$(user_password "$u")"
        done
    } >"$ENVFILE.tmp"
    chmod 644 "$ENVFILE.tmp" # dummy credentials; readable by non-root test processes
    mv "$ENVFILE.tmp" "$ENVFILE"
}

# --- start -----------------------------------------------------------------------------------
# "postfix start" = post-install create-missing (queue dirs and owners) + checks + "master -w"
# (G17). (G18) daemons keep the stdio they are started with: never leave a pipe there.
start_postfix() {
    if ! /usr/sbin/postfix -c "$PF_ETC" start </dev/null >"$LOGS/postfix-start.log" 2>&1; then
        cat "$LOGS/postfix-start.log" >&2
        tail -n 20 "$LOGS/postfix.log" >&2 2>/dev/null || true
        return 1
    fi
}

# wait until each "PORT:GREETING:BYE" greets; then check the TLS-only ports listen
wait_ports() {
    local deadline=$(( $(date +%s) + MAILLAB_START_TIMEOUT )) p port rest
    for p in "$@"; do
        port=${p%%:*}; rest=${p#*:}
        until port_greets "$port" "${rest%%:*}" "${rest#*:}"; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                log "port $port did not greet within ${MAILLAB_START_TIMEOUT}s"
                return 1
            fi
            sleep 0.02
        done
    done
}

check_listening() {
    local port
    for port in "$@"; do
        port_listening "$port" || { log "port $port is not listening"; return 1; }
    done
}

cmd_start() {
    need_root
    resolve_dir "${1:-}"
    local t0 v up
    t0=$(now_ms)
    [ -x "$PF_MASTER" ] && [ -x "$DOVECOT" ] || die "packages missing: run '$0 install'"
    for v in $PORT_VARS; do
        [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1024 ] && [ "${!v}" -le 65535 ] ||
            die "$v must be a port number 1024-65535, got '${!v}'"
    done
    [ "$(for v in $PORT_VARS; do echo "${!v}"; done | sort -u | wc -l)" = 5 ] ||
        die "the five MAILLAB_*_PORT values must differ"
    if [ -n "$(postfix_pid)" ] || [ -n "$(dovecot_pid)" ] || [ -n "$(lab_procs all)" ]; then
        die "lab processes of $DIR are running; run '$0 stop $DIR' first"
    fi
    # (G9) postfix, dovecot, dovenull and the vmail user must traverse DIR and its parents
    up=$DIR
    while up=$(dirname "$up"); [ "$up" != / ]; do
        [ ! -d "$up" ] || [ "$(( 0$(stat -c %a "$up") & 1 ))" = 1 ] ||
            die "$up is not searchable by other users (mode $(stat -c %a "$up")); use a DIR under /tmp"
    done
    for v in $PORT_VARS; do
        ! port_open "${!v}" || die "$v: $ADDR:${!v} is already in use"
    done
    ensure_vmail_user

    mkdir -p "$DIR"
    chmod a+x "$DIR" # mktemp -d makes 0700 (G9)
    mkdir -p "$PF_DATA" "$PF_SPOOL" "$DC_RUN" "$DC_STATE" "$MAILSTORE" "$LOGS"
    chown root:root "$DIR/postfix" "$PF_SPOOL"
    chown postfix:postfix "$PF_DATA"
    chown "$MAILLAB_VMAIL_USER:$MAILLAB_VMAIL_USER" "$MAILSTORE"
    chmod 700 "$MAILSTORE"
    rm -f "$PF_PIDFILE" "$DC_PIDFILE"

    make_tls
    write_postfix_config
    write_dovecot_config

    # Dovecot first: Postfix delivers into its LMTP socket.
    if ! "$DOVECOT" -c "$DC_ETC/dovecot.conf" </dev/null >"$LOGS/dovecot-start.log" 2>&1; then
        cat "$LOGS/dovecot-start.log" >&2
        tail -n 20 "$LOGS/dovecot.log" >&2 2>/dev/null || true
        stop_lab all || true
        die "dovecot failed to start; see $LOGS/dovecot.log"
    fi
    start_postfix || { stop_lab all || true; die "postfix failed to start; see $LOGS/postfix.log"; }
    if ! wait_ports "$MAILLAB_IMAP_PORT:* OK:a LOGOUT" "$MAILLAB_SMTP_PORT:220:QUIT" ||
        ! check_listening "$MAILLAB_IMAPS_PORT" "$MAILLAB_SUBMISSION_PORT" "$MAILLAB_SUBMISSIONS_PORT"; then
        stop_lab all || true
        die "start failed; logs are in $LOGS"
    fi
    write_env
    log "lab up in $(( $(now_ms) - t0 )) ms: postfix pid $(postfix_pid), dovecot pid $(dovecot_pid)"
    cat "$ENVFILE"
}

# --- stop ------------------------------------------------------------------------------------
# $1 = all | postfix. SIGTERM to the master(s), which pass it on (Postfix to its process group,
# Dovecot to its services; Dovecot's master alone takes ~1.2 s), SIGTERM to orphans of a dead
# master, wait; after MAILLAB_STOP_TIMEOUT s SIGKILL whatever is left, including anything forked
# meanwhile. MAILLAB_STOP_TIMEOUT=0: SIGKILL at once (the queue and Maildirs stay consistent).
# Only processes identified as this lab's are ever signalled (G19).
stop_lab() {
    local what=$1 masters pids p q left i steps orphans
    masters=$(postfix_pid)
    [ "$what" = all ] && masters="$masters $(dovecot_pid)"
    pids=$( { for p in $masters; do session_pids "$p"; done; lab_procs "$what"; } | sort -un)
    if [ -z "$pids" ]; then
        log "$what: not running"
        rm -f "$PF_PIDFILE"; [ "$what" = all ] && rm -f "$DC_PIDFILE"
        return 0
    fi
    orphans=
    for p in $pids; do
        case " $masters " in *" $p "*) continue ;; esac
        q=$(awk '{ sub(/^.*\) /, ""); print $4 }' "/proc/$p/stat" 2>/dev/null) || continue
        case " $masters " in *" $q "*) ;; *) orphans="$orphans $p" ;; esac
    done
    steps=$(( MAILLAB_STOP_TIMEOUT * 20 ))
    if [ "$steps" -gt 0 ]; then
        [ -n "$orphans" ] && log "stray lab processes (their master is gone):$orphans"
        # shellcheck disable=SC2086
        kill -TERM $masters $orphans 2>/dev/null || true
    fi
    for (( i = 1; i <= steps; i++ )); do
        left=
        for p in $pids; do pid_alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        pids=$left
        sleep 0.05
    done
    left=$( { for p in $pids; do pid_alive "$p" && echo "$p"; done; lab_procs "$what"; } | sort -un)
    if [ -n "$left" ]; then
        [ "$steps" -gt 0 ] && log "forcing (SIGKILL):" $left
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        for (( i = 0; i < 40; i++ )); do
            q=; for p in $left; do pid_alive "$p" && q=1; done
            [ -z "$q" ] && break
            sleep 0.05
        done
    fi
    rm -f "$PF_PIDFILE"; [ "$what" = all ] && rm -f "$DC_PIDFILE"
    log "$what: stopped"
}

cmd_stop() {
    need_root
    resolve_dir "${1:-}"
    local t0; t0=$(now_ms)
    stop_lab all
    log "stop took $(( $(now_ms) - t0 )) ms"
}

cmd_postfix_stop() {
    need_root
    resolve_dir "${1:-}"
    load_env_ports
    local t0; t0=$(now_ms)
    stop_lab postfix
    # smtpd children may still hold the listeners for a moment
    local i
    for (( i = 0; i < 100; i++ )); do
        port_listening "$MAILLAB_SMTP_PORT" || break
        sleep 0.02
    done
    log "postfix-stop took $(( $(now_ms) - t0 )) ms"
}

cmd_postfix_start() {
    need_root
    resolve_dir "${1:-}"
    load_env_ports
    local t0; t0=$(now_ms)
    [ -f "$PF_ETC/main.cf" ] || die "no Postfix configuration in $DIR (run '$0 start $DIR')"
    [ -z "$(postfix_pid)" ] || die "the lab's Postfix is already running (pid $(postfix_pid))"
    [ -z "$(lab_procs postfix)" ] || die "stray Postfix processes of $DIR; run '$0 postfix-stop $DIR'"
    [ -n "$(dovecot_pid)" ] || log "warning: the lab's Dovecot is not running; mail will stay queued"
    touch -d "@$(( $(date +%s) - 60 ))" "$PF_ETC"/* # (G1), in case someone edited main.cf
    rm -f "$PF_PIDFILE"
    start_postfix || { stop_lab postfix || true; die "postfix failed to start; see $LOGS/postfix.log"; }
    if ! wait_ports "$MAILLAB_SMTP_PORT:220:QUIT" ||
        ! check_listening "$MAILLAB_SUBMISSION_PORT" "$MAILLAB_SUBMISSIONS_PORT"; then
        stop_lab postfix || true
        die "postfix did not come up; logs are in $LOGS"
    fi
    log "postfix up in $(( $(now_ms) - t0 )) ms (pid $(postfix_pid))"
}

# --- status / env ----------------------------------------------------------------------------
cmd_status() {
    resolve_dir "${1:-}"
    local pf dc up=0 p v s stray
    pf=$(postfix_pid); dc=$(dovecot_pid)
    if [ -n "$pf" ]; then echo "postfix: running, pid $pf, $(session_pids "$pf" | wc -l) processes"; up=$((up + 1))
    else echo "postfix: stopped"; fi
    if [ -n "$dc" ]; then echo "dovecot: running, pid $dc, $(session_pids "$dc" | wc -l) processes"; up=$((up + 1))
    else echo "dovecot: stopped"; fi
    if [ -f "$ENVFILE" ] && [ "$up" -gt 0 ]; then
        load_env_ports
        for p in IMAP IMAPS SMTP SUBMISSION SUBMISSIONS; do
            v=MAILLAB_${p}_PORT
            if port_listening "${!v}"; then s=listening; else s=closed; fi
            echo "port ${!v} (${p,,}): $s"
        done
    fi
    stray=$(lab_procs all | wc -l)
    if [ "$up" -eq 0 ] && [ "$stray" -gt 0 ]; then
        echo "stray lab processes without their master: $stray (run '$0 stop $DIR')"
        return 1
    fi
    case $up in 2) return 0 ;; 1) return 1 ;; *) return 3 ;; esac
}

cmd_env() {
    resolve_dir "${1:-}"
    [ -f "$ENVFILE" ] || die "no lab settings in $DIR (not started?)"
    cat "$ENVFILE"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    postfix-stop) cmd_postfix_stop "${2:-}" ;;
    postfix-start) cmd_postfix_start "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    env) cmd_env "${2:-}" ;;
    *) usage ;;
esac
