#!/usr/bin/env bash
# Builds the Debian package: dpkg-deb around a staged tree, no cargo-deb to install.
#   bash scripts/deb.sh                      # cargo build --release, then target/debian/*.deb
#   bash scripts/deb.sh --binary PATH --out DIR --fast   # package an existing binary, gzip -1
#                                            (the tests package the 200 MB debug binary)
# Contents: /usr/bin/deskgate, the systemd unit, /etc/deskgate/deskgate.toml (a conffile:
# the example configuration, to be edited), the man page and bash/zsh/fish completions
# generated from the CLI by the binary itself (`deskgate generate ...`). The service is
# not enabled or started by the package: edit the configuration first (README).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BINARY=
OUT="$ROOT/target/debian"
COMPRESS="-Zxz"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BINARY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --fast) COMPRESS="-Zgzip -z1"; shift ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--fast]" >&2; exit 2 ;;
    esac
done
if [ -z "$BINARY" ]; then
    (cd "$ROOT" && cargo build --release --locked)
    BINARY="$ROOT/target/release/deskgate"
fi
[ -x "$BINARY" ] || { echo "error: $BINARY is not an executable" >&2; exit 2; }

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/deskgate_${VERSION}_${ARCH}"

install -D -m 0755 "$BINARY" "$PKG/usr/bin/deskgate"
install -D -m 0644 "$ROOT/systemd/deskgate.service" "$PKG/lib/systemd/system/deskgate.service"
install -D -m 0644 "$ROOT/config.example.toml" "$PKG/etc/deskgate/deskgate.toml"
install -d -m 0755 "$PKG/usr/share/man/man1" "$PKG/usr/share/bash-completion/completions" \
    "$PKG/usr/share/zsh/vendor-completions" "$PKG/usr/share/fish/vendor_completions.d" \
    "$PKG/usr/share/doc/deskgate"
"$BINARY" generate man | gzip -9n >"$PKG/usr/share/man/man1/deskgate.1.gz"
"$BINARY" generate bash >"$PKG/usr/share/bash-completion/completions/deskgate"
"$BINARY" generate zsh >"$PKG/usr/share/zsh/vendor-completions/_deskgate"
"$BINARY" generate fish >"$PKG/usr/share/fish/vendor_completions.d/deskgate.fish"
gzip -9n <"$ROOT/README.md" >"$PKG/usr/share/doc/deskgate/README.md.gz"
cat >"$PKG/usr/share/doc/deskgate/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: deskgate
License: MIT or Apache-2.0
EOF
find "$PKG/usr/share" -type f -exec chmod 0644 {} +

mkdir -p "$PKG/DEBIAN"
echo /etc/deskgate/deskgate.toml >"$PKG/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
cat >"$PKG/DEBIAN/control" <<EOF
Package: deskgate
Version: $VERSION
Architecture: $ARCH
Maintainer: deskgate developers <deskgate@localhost>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), libgcc-s1
Section: mail
Priority: optional
Homepage: https://example.invalid/deskgate
Description: email-support gateway: IMAP mailboxes in, tickets in SQLite
 deskgate watches IMAP support mailboxes, turns every customer email into a
 ticket in SQLite, acknowledges it over SMTP with the ticket number and a
 realistic promise, relays agents' answers and escalates what waits too long.
 Runs as a hardened systemd service (Type=notify, watchdog, reload).
EOF
# The unit changed: tell systemd (not inside a chroot or a dpkg --root install).
for script in postinst postrm; do
    cat >"$PKG/DEBIAN/$script" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
    chmod 0755 "$PKG/DEBIAN/$script"
done

mkdir -p "$OUT"
# shellcheck disable=SC2086 # two words on purpose
dpkg-deb $COMPRESS --root-owner-group --build "$PKG" "$OUT" >&2
echo "$OUT/deskgate_${VERSION}_${ARCH}.deb"
