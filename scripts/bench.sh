#!/usr/bin/env bash
# deskgate benchmark: starts the project's mail lab (private Postfix + Dovecot on 127.0.0.1,
# state on tmpfs in /dev/shm), builds deskgate in release mode and measures, in one run: the
# IMAP ceilings, deskgate's ingest against them, delivery → acknowledgement latency, the
# outbox against Postfix's own accept rate, memory, start/stop times, and hostile mail
# (`--only hostile`: worst time and peak RSS per kind), and the same ingest and outbox on a
# private PostgreSQL with one and two instances, with the failover time after SIGKILL
# (`--only postgres`, `--only failover`). Prints a Markdown
# table and writes it to target/bench/report.md (README's "Performance" section is that file).
#   bash scripts/bench.sh                 # N = 1,000 and 10,000; about 20 minutes
#   bash scripts/bench.sh --smoke         # N = 50, a few seconds per part: does it work?
#   bash scripts/bench.sh --n 1000 --trickle 20 --load 5
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
prepare_machine
command -v smtp-source >/dev/null || { echo "error: smtp-source (package postfix) is missing" >&2; exit 2; }
# tmpfs for the lab's mail stores and queue, and for deskgate's database
PARENT=/dev/shm
[ -d "$PARENT" ] && [ -w "$PARENT" ] || PARENT=/tmp
export DESKGATE_IT=1 DESKGATE_LAB_PARENT=$PARENT TMPDIR=$PARENT
cd "$ROOT"
exec cargo bench --quiet --bench lab -- "$@"
