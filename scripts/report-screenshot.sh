#!/usr/bin/env bash
# Renders `deskgate report --html` for a month of a support desk's events (English, Arabic and
# Greek tickets, recorded through the real store by examples/report_demo.rs, the data the
# integration test holds the report against `stats --json` with) and photographs it with
# headless Chromium into docs/report.png, the picture README.md links to.
#   sudo bash scripts/report-screenshot.sh   (installs chromium and fonts if missing)
# The test suite does not depend on this script or on Chromium.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
ensure_rust
ensure_chromium

WORK=$(mktemp -d /tmp/dgreport.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
offline_config "$WORK/deskgate.toml" demo.db
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" --example report_demo -- \
    "$WORK/demo.db" 2026-10-26T00:00:00Z 28 2026-11-23T12:00:00Z
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" -- --config "$WORK/deskgate.toml" \
    report --html "$WORK/report.html" --since 2026-10-26 --until 2026-11-23
photograph "$WORK/report.html" "$ROOT/docs/report.png" 1280,1640
