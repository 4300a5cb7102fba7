#!/usr/bin/env bash
# Relays an agent's Outlook HTML answer (bold text, a numbered list, a pasted screenshot, a link,
# the quoted notification below) through deskgate's HTML relay (examples/html_answer.rs) and
# photographs the customer's view with headless Chromium into docs/html-answer.png, the picture
# README.md links to. The pasted screenshot is docs/ack-ar.png.
#   sudo bash scripts/answer-screenshot.sh   (installs chromium and fonts if missing)
# The test suite does not depend on this script or on Chromium.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
ensure_rust
ensure_chromium

WORK=$(mktemp -d /tmp/dganswer.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" --example html_answer -- \
    "$ROOT/docs/ack-ar.png" "$WORK/answer.html"
photograph "$WORK/answer.html" "$ROOT/docs/html-answer.png" 800,780
