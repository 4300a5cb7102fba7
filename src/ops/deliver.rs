//! `deskgate ingest --mailbox NAME < message`: push delivery from the MTA (a Postfix pipe
//! transport, or an alias `|deskgate ingest ...`).
//!
//! The message takes the same path as fetched mail ([`crate::ingest::ingest`]: classify,
//! thread, store, queue the acknowledgement, one transaction), without an IMAP position, so
//! no checkpoint moves. The exit status is the MTA's contract (sysexits.h): 0 once the
//! message is committed, quarantined, or recognised as a duplicate; 75 (`EX_TEMPFAIL`) when
//! nothing was committed and a later attempt may succeed (database busy or locked, disk
//! full, configuration unreadable or invalid), so the MTA keeps the message and retries. A
//! message that can never be stored is quarantined rather than bounced back to the sender.
//! The running daemon notices the commit within [`super::daemon::COMMIT_POLL`] and sends the
//! acknowledgement.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::Timestamp;
use tracing::{error, warn};

use crate::config::Config;
use crate::fetch::log_outcome;
use crate::ingest::{Source, ingest_or_quarantine, quarantine_oversize};
use crate::policy::Arrival;
use crate::store::Store;

/// sysexits.h: "temporary failure; the user is invited to retry".
pub const EX_TEMPFAIL: u8 = 75;

pub fn run(config: &Path, mailbox: &str) -> ExitCode {
    match deliver(config, mailbox, &mut std::io::stdin().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Postfix quotes the command's output in the deferral reason.
            error!(
                mailbox,
                error = format!("{err:#}"),
                "ingest: not stored; the MTA will try again"
            );
            eprintln!("deskgate ingest: {err:#}; not stored, try again later");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

/// Reads one message from `input` and commits it (or quarantines it); an error means
/// nothing was committed.
fn deliver(path: &Path, name: &str, input: &mut impl Read) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    for warning in &config.warnings {
        warn!("{}: {warning}", config.path.display());
    }
    let Some(mailbox) = config.mailbox(name) else {
        let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "{}: no [[mailbox]] named `{name}` (configured: {})",
            path.display(),
            names.join(", ")
        );
    };
    let source = Source {
        mailbox: mailbox.name.clone(),
        imap: None,
        arrival: Arrival::Live,
    };
    let mut raw = Vec::new();
    input
        .read_to_end(&mut raw)
        .context("reading the message from standard input")?;
    if raw.is_empty() {
        bail!("standard input was empty: no message to ingest");
    }
    let store = Store::connect(&config.database).context("opening the database")?;
    let config = std::sync::Arc::new(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let now = Timestamp::now();
        let size = raw.len() as u64;
        if size > config.policy.max_message_size {
            let headers = header_block(&raw).to_vec();
            let id = quarantine_oversize(&store, &config, source, headers, size, now).await?;
            warn!(
                mailbox = name,
                size,
                quarantine = id.0,
                "message larger than policy.max_message_size_mb; quarantined (headers kept)"
            );
            return Ok(());
        }
        let mailbox = source.mailbox.clone();
        let (outcome, message_id) = ingest_or_quarantine(&store, &config, source, raw, now)
            .await
            .context("storing the message")?;
        log_outcome(&mailbox, None, message_id.as_deref(), &outcome);
        Ok(())
    })
}

/// The header block of `raw`, up to and including the blank line.
fn header_block(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2));
    &raw[..end.unwrap_or(raw.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_ends_at_the_blank_line() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n\r\n"
        );
        assert_eq!(header_block(b"A: 1\n\nbody\n\nmore"), b"A: 1\n\n");
        assert_eq!(header_block(b"A: 1"), b"A: 1");
    }
}
