//! A fetched batch, committed at once: every message is parsed, classified and analysed off
//! the writer thread (in parallel), then the batch goes into ONE write transaction with a
//! savepoint per message. A message whose storing fails rolls back alone and is quarantined
//! alone in the same transaction; an environment failure (disk full, read-only, I/O, locked)
//! rolls the whole batch back and is returned, so the mailbox pauses and nothing is
//! quarantined. The checkpoint moves message by message inside the transaction, so it
//! becomes durable only with the commit.

use std::sync::Arc;

use jiff::Timestamp;

use super::{
    Message, Outcome, Source, advance, analysis, apply_fetched, put_aside, understand, understood,
};
use crate::classify::Class;
use crate::config::Config;
use crate::parse::ParsedMessage;
use crate::store::{Checkpoint, Store, StoreError, Tx};

/// One step of a batch, in UID order.
#[derive(Debug)]
pub enum Item {
    /// A whole message to ingest.
    Message { source: Source, raw: Vec<u8> },
    /// A message over `policy.max_message_size`: only its headers, to quarantine.
    Oversize {
        source: Source,
        headers: Vec<u8>,
        size: u64,
    },
    /// Backlog messages left in the folder (`initial_import`): the checkpoint passes them.
    Left {
        mailbox: String,
        checkpoint: Checkpoint,
        n: u32,
    },
}

/// What became of one message of a batch (`Item::Left` has no entry).
#[derive(Debug)]
pub struct Done {
    pub source: Source,
    pub message_id: Option<String>,
    pub outcome: Outcome,
}

/// An item with everything the writer needs, found before the transaction.
// Held once per item of a batch, beside its raw bytes: a Box would be one more allocation
// per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Ready {
    Message {
        source: Source,
        raw: Vec<u8>,
        parsed: ParsedMessage,
        class: Class,
        analysis: analysis::Analysis,
    },
    Oversize {
        source: Source,
        headers: Vec<u8>,
        parsed: ParsedMessage,
        size: u64,
        reason: String,
    },
    Left {
        mailbox: String,
        checkpoint: Checkpoint,
        n: u32,
    },
}

/// Whose lease a batch is committed under: the transaction checks it first.
#[derive(Debug, Clone)]
pub struct Fence {
    pub mailbox: String,
    pub instance: String,
}

/// A fetched batch, parsed, classified and analysed: what its write transaction takes.
pub struct Prepared(Vec<Ready>);

/// Ingests `items` in one transaction; returns once everything is committed.
pub async fn ingest_batch(
    store: &Store,
    config: &Arc<Config>,
    items: Vec<Item>,
    now: Timestamp,
) -> Result<Vec<Done>, StoreError> {
    let prepared = prepare_batch(config, items).await?;
    commit_batch(store, Arc::clone(config), prepared, None, now).await
}

/// Parses, classifies and analyses `items` on blocking threads, in parallel; fetch does this
/// while the batch before commits.
pub async fn prepare_batch(config: &Arc<Config>, items: Vec<Item>) -> Result<Prepared, StoreError> {
    let config = Arc::clone(config);
    tokio::task::spawn_blocking(move || Prepared(prepare_all(items, &config)))
        .await
        .map_err(|err| StoreError::Worker(err.to_string()))
}

/// Writes a prepared batch in one transaction; returns once everything is committed.
pub async fn commit_batch(
    store: &Store,
    config: Arc<Config>,
    Prepared(prepared): Prepared,
    fence: Option<Fence>,
    now: Timestamp,
) -> Result<Vec<Done>, StoreError> {
    store
        .write(move |tx| {
            if let Some(fence) = &fence {
                tx.check_owner(&fence.mailbox, &fence.instance)?;
            }
            let mut done = Vec::with_capacity(prepared.len());
            for ready in prepared {
                if let Some(one) = write(tx, &config, ready, now)? {
                    done.push(one);
                }
            }
            Ok(done)
        })
        .await
}

/// Prepares `items` on as many threads as the machine has cores (each takes a contiguous run,
/// so the order is kept).
fn prepare_all(items: Vec<Item>, config: &Config) -> Vec<Ready> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || items.len() < 2 {
        return items
            .into_iter()
            .map(|item| prepare(item, config))
            .collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut items = items.into_iter();
    let runs: Vec<Vec<Item>> = std::iter::from_fn(|| {
        let run: Vec<Item> = items.by_ref().take(per_thread).collect();
        (!run.is_empty()).then_some(run)
    })
    .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|run| {
                scope.spawn(move || {
                    run.into_iter()
                        .map(|item| prepare(item, config))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(ready) => ready,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

fn prepare(item: Item, config: &Config) -> Ready {
    match item {
        Item::Message { source, raw } => {
            let (parsed, class, analysis) = understood(&raw, config);
            Ready::Message {
                source,
                raw,
                parsed,
                class,
                analysis,
            }
        }
        Item::Oversize {
            source,
            headers,
            size,
        } => {
            let (parsed, _) = understand(&headers, &config.own_addresses);
            let reason = format!(
                "{size} bytes, larger than policy.max_message_size_mb ({} bytes); only the headers were kept",
                config.policy.max_message_size
            );
            Ready::Oversize {
                source,
                headers,
                parsed,
                size,
                reason,
            }
        }
        Item::Left {
            mailbox,
            checkpoint,
            n,
        } => Ready::Left {
            mailbox,
            checkpoint,
            n,
        },
    }
}

/// Writes one prepared item inside the batch's transaction.
fn write(
    tx: &Tx<'_>,
    config: &Config,
    ready: Ready,
    now: Timestamp,
) -> Result<Option<Done>, StoreError> {
    match ready {
        Ready::Left {
            mailbox,
            checkpoint,
            n,
        } => {
            tx.skip_backlog(&mailbox, checkpoint, n, now)?;
            Ok(None)
        }
        Ready::Oversize {
            source,
            headers,
            parsed,
            size,
            reason,
        } => {
            let id = put_aside(tx, &source, &parsed, &reason, &headers, size, now)?;
            advance(tx, &source, now)?;
            let outcome = Outcome::Quarantined { id, reason };
            Ok(Some(Done {
                source,
                message_id: parsed.message_id,
                outcome,
            }))
        }
        Ready::Message {
            source,
            raw,
            parsed,
            class,
            analysis,
        } => {
            let stored = tx.savepoint(|tx| {
                let message = Message::fetched(&source, &parsed, class, analysis, &raw);
                apply_fetched(tx, config, message, now)
            });
            let outcome = match stored {
                Ok(outcome) => outcome,
                Err(err) if err.is_transient() => return Err(err),
                Err(err) => {
                    let reason = format!("storing it failed: {err}");
                    let size = raw.len() as u64;
                    let id = put_aside(tx, &source, &parsed, &reason, &raw, size, now)?;
                    advance(tx, &source, now)?;
                    tracing::warn!(mailbox = %source.mailbox, uid = source.imap.map(|(_, uid)| uid), message_id = parsed.message_id.as_deref().unwrap_or(""), quarantine = id.0, error = %err, "message could not be stored; quarantined");
                    return Ok(Some(Done {
                        source,
                        message_id: None,
                        outcome: Outcome::Quarantined { id, reason },
                    }));
                }
            };
            Ok(Some(Done {
                source,
                message_id: parsed.message_id,
                outcome,
            }))
        }
    }
}
