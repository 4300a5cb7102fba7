# Shared by the scripts: install what deskgate's demo and tests need on Debian.
# Sourced, not run.

# The mail servers (Postfix, Dovecot) and OpenSSL, through the project's lab script.
install_mail_servers() {
    bash "$ROOT/tests/lab/lab.sh" install
}

# PostgreSQL for the tests' private servers (never the system's cluster), through its lab script.
install_postgres() {
    bash "$ROOT/tests/lab/postgres.sh" install
}

# A Rust toolchain of at least 1.95 (edition 2024 and the crates in Cargo.lock need it).
# Debian's own cargo is older, so rustup is used where no recent cargo is found.
ensure_rust() {
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if command -v cargo >/dev/null 2>&1; then
        local minor
        minor=$(cargo --version | sed -n 's/^cargo 1\.\([0-9]*\).*/\1/p')
        if [ -n "$minor" ] && [ "$minor" -ge 95 ]; then
            return 0
        fi
        echo "cargo $(cargo --version) is older than 1.95; installing a current toolchain with rustup" >&2
    fi
    command -v curl >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends curl ca-certificates; }
    command -v cc >/dev/null 2>&1 || apt-get install -y --no-install-recommends build-essential
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy ||
        { echo "error: could not install Rust; install rustup (https://rustup.rs) and run this again" >&2; exit 2; }
    export PATH="$HOME/.cargo/bin:$PATH"
}

need_root() {
    [ "$(id -u)" = 0 ] || { echo "error: run as root (the mail servers of the lab must start as root): sudo $0" >&2; exit 2; }
}

# systemd-analyze (the unit's security rating and verify) and dpkg-deb (the package test).
install_ops_tools() {
    if command -v systemd-analyze >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
        return 0
    fi
    apt-get update && apt-get install -y --no-install-recommends systemd dpkg
}

# Everything the demo and the tests need on this machine.
prepare_machine() {
    need_root
    install_mail_servers
    install_postgres
    install_ops_tools
    ensure_rust
}

# Headless Chromium (and fonts for Arabic and Greek) for the pictures in docs/.
ensure_chromium() {
    if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=ar | grep -q .; then
        need_root
        apt-get install -y --no-install-recommends chromium fonts-noto-core fontconfig
    fi
}

# The smallest valid configuration, for commands that contact no server (template preview,
# report): offline_config FILE DATABASE.
offline_config() {
    cat >"$1" <<TOML
database = "$2"
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
}

# Photographs a local HTML file: photograph PAGE PNG WIDTH,HEIGHT.
photograph() {
    # --no-sandbox: Chromium refuses to run as root otherwise; the page is our own file.
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
        --window-size="$3" --screenshot="$2" "file://$1" 2>/dev/null
    echo "wrote $2"
}
