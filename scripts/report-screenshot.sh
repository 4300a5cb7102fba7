#!/usr/bin/env bash
# Renders `deskgate report --html` for a month of a support desk's events (English, Arabic and
# Greek tickets, recorded through the real store by examples/report_demo.rs, the data the
# integration test holds the report against `stats --json` with) and photographs it with
# headless Chromium into docs/report.png, the picture README.md links to.
#   sudo bash scripts/report-screenshot.sh   (installs chromium if missing)
# The test suite does not depend on this script or on Chromium.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
ensure_rust
if ! command -v chromium >/dev/null 2>&1; then
    need_root
    apt-get install -y --no-install-recommends chromium fonts-noto-core fontconfig
fi

WORK=$(mktemp -d /tmp/dgreport.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/deskgate.toml" <<'TOML'
database = "demo.db"
[support]
address = "support@example.com"
name = "Example Support"
timezone = "Europe/Athens"
[[mailbox]]
name = "support"
host = "127.0.0.1"
tls = "plain"
user = "support"
password = "unused"
[smtp]
host = "127.0.0.1"
tls = "plain"
TOML
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" --example report_demo -- \
    "$WORK/demo.db" 2026-10-26T00:00:00Z 28 2026-11-23T12:00:00Z
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" -- --config "$WORK/deskgate.toml" \
    report --html "$WORK/report.html" --since 2026-10-26 --until 2026-11-23
# --no-sandbox: Chromium refuses to run as root otherwise; the page is our own file.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=1280,1640 --screenshot="$ROOT/docs/report.png" "file://$WORK/report.html" 2>/dev/null
echo "wrote $ROOT/docs/report.png"
