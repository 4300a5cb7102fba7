//! Logging through tracing. `auto`: to the journal with structured fields when systemd
//! connected stderr to it (`JOURNAL_STREAM`), human-readable text otherwise; `text` and
//! `json` on request. The filter comes from `DESKGATE_LOG` (e.g. `deskgate=debug`), default
//! `info`.
//!
//! In the journal every event field is its own journal field, prefixed `DESKGATE_`
//! (`journalctl -u deskgate DESKGATE_TICKET=42`, `DESKGATE_MAILBOX=support`), and the level
//! becomes the syslog PRIORITY (so `journalctl -p warning` works). The prefix keeps our
//! `message_id` away from the journal's own `MESSAGE_ID`.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// The journal under systemd, else text.
    Auto,
    /// Text with timestamps.
    Text,
    /// One JSON object per line.
    Json,
    /// The systemd journal (fails over to text if it cannot be reached).
    Journal,
}

pub fn init(format: LogFormat) {
    let filter =
        || EnvFilter::try_from_env("DESKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let on_terminal = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let journal = match format {
        LogFormat::Journal => true,
        LogFormat::Auto => stderr_is_journal(),
        LogFormat::Text | LogFormat::Json => false,
    };
    if journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some("DESKGATE".into()))
                    .with_syslog_identifier("deskgate".into());
                let result = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                // A subscriber is already installed only in tests; keep that one.
                drop(result);
                return;
            }
            Err(err) => eprintln!("deskgate: cannot reach the journal ({err}); logging to stderr"),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(on_terminal);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        // Under systemd without the journal (e.g. StandardError=file:): its own timestamps
        // are usually added by whatever reads the file, ours are kept.
        _ => builder.try_init(),
    };
    drop(result);
}

/// True when systemd connected our stderr to the journal: `JOURNAL_STREAM` names the
/// device and inode of that stream, and they are stderr's (a child whose stderr was
/// redirected inherits the variable, hence the comparison systemd documents).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
