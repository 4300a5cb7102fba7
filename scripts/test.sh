#!/usr/bin/env bash
# Runs every deskgate test, including those against real Dovecot, Postfix and PostgreSQL.
# Installs what they need first (as root: Debian packages, and Rust if missing).
#   bash scripts/test.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
prepare_machine
cd "$ROOT"
# Real-server tests start one private Postfix + Dovecot each; three at a time fits 2 cores.
DESKGATE_IT=1 cargo test --all-targets -- --test-threads=3
# The modules whose meaning does not depend on the backend again, each daemon's store in a
# fresh database of a private PostgreSQL (tests/it/daemon.rs, DESKGATE_IT_STORE). The others
# test SQLite itself (backup, full disk, file modes) or read its file directly.
DESKGATE_IT=1 DESKGATE_IT_STORE=postgres cargo test --test it -- --test-threads=3 \
    flow:: agents:: deadlines:: hygiene:: relay:: trust:: commands:: cli:: report:: \
    kpi_demo:: html:: addresses:: languages::
