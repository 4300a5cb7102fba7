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
if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=ar | grep -q .; then
    need_root
    apt-get install -y --no-install-recommends chromium fonts-noto-core fontconfig
fi

WORK=$(mktemp -d /tmp/dgshot.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# The smallest valid configuration; nothing is contacted, only the templates are used.
cat >"$WORK/deskgate.toml" <<'TOML'
database = "unused.db"
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
cargo run --quiet --manifest-path "$ROOT/Cargo.toml" -- --config "$WORK/deskgate.toml" \
    template preview ack --lang ar --html >"$WORK/ack.ar.html"
# --no-sandbox: Chromium refuses to run as root otherwise; the page is our own file.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=760,320 --screenshot="$ROOT/docs/ack-ar.png" "file://$WORK/ack.ar.html" 2>/dev/null
echo "wrote $ROOT/docs/ack-ar.png"
