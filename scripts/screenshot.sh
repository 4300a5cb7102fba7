#!/usr/bin/env bash
# Renders the Arabic acknowledgement's HTML part with sample data (`deskgate template preview
# ack --lang ar --html`) and photographs it with headless Chromium into docs/ack-ar.png, the
# picture README.md links to. Run it again after changing templates/ack.ar.html.
#   sudo bash scripts/screenshot.sh        (installs chromium and Arabic fonts if missing)
# The test suite does not depend on this script or on Chromium.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
ensure_rust
ensure_chromium

WORK=$(mktemp -d /tmp/dgshot.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# Nothing is contacted, only the templates are used.
offline_config "$WORK/deskgate.toml" unused.db
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" -- --config "$WORK/deskgate.toml" \
    template preview ack --lang ar --html >"$WORK/ack.ar.html"
photograph "$WORK/ack.ar.html" "$ROOT/docs/ack-ar.png" 760,320
