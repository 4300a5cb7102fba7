//! Logging through tracing: human-readable on a terminal, without timestamps under systemd
//! (the journal adds its own), JSON on request. The filter comes from `DESKGATE_LOG`
//! (e.g. `deskgate=debug`), default `info`.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text; plain lines without timestamps when started by systemd.
    Auto,
    /// Text with timestamps.
    Text,
    /// One JSON object per line.
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("DESKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let under_systemd =
        std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some();
    let on_terminal = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(on_terminal);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if under_systemd => builder.without_time().try_init(),
        LogFormat::Auto | LogFormat::Text => builder.try_init(),
    };
    // A subscriber is already installed only in tests; keep that one.
    drop(result);
}
