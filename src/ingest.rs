//! One inbound message, from raw bytes to committed facts.
//!
//! parse → classify → (store look-ups) → thread → decide → render → write, all of the writes
//! in ONE store transaction (fetched mail: one per batch, a savepoint per message, [`batch`]):
//! the message row, the ticket created or updated, its participants and deadline, the
//! acknowledgement (rendered bytes and Message-ID fixed now) with its outbox row, bounce
//! marks, the events, and the mailbox checkpoint. Side effects that depend on these facts
//! (IMAP flags and moves, SMTP) happen only after the commit.
//!
//! Idempotent: a message whose Message-ID (or, lacking one, whose bytes) is already stored
//! only advances the checkpoint. Mail that cannot be handled is quarantined in the same
//! transaction instead of stored ([`Outcome::Quarantined`]); [`batch`] quarantines a message
//! whose storing fails, [`quarantine_oversize`] puts aside mail that never got this far, and
//! [`release`] sends a quarantined message down the normal path.

use std::sync::Arc;

use jiff::Timestamp;

use crate::agent::boundary::Boundary;
use crate::agent::reply::leak::Leak;
use crate::agent::sign::Signer;
use crate::catalog::EventKind;
use crate::classify::{Class, classify};
use crate::config::{Config, Desk};
use crate::language::Choice;
use crate::model::{OutboxId, QuarantineId, TicketId};
use crate::parse::{ParsedMessage, drop_misleading_names, parse};
use crate::policy::{AgentNotice, Arrival, Decision, Limit, Role, TicketAction, decide};
use crate::render::{Outgoing, RenderError};
use crate::store::{
    Checkpoint, Event, NewQuarantine, QuarantineStatus, Store, StoreError, Tx, dedupe_key,
};
use crate::thread::Threading;
use effects::Effects;
use events::events_for;
use gather::Facts;
use mail::{
    LIMIT_WINDOW, MailFacts, Queued, Sending, mail_for, prerender_reply, send_planned, tell_agent,
};
use screen::Deduped;
use write::{Filed, Written};

pub mod analysis;
pub mod batch;
mod commands;
mod effects;
mod events;
mod gather;
mod mail;
mod screen;
mod write;
pub use analysis::Analysis;

/// Where an inbound message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub mailbox: String,
    /// `(uidvalidity, uid)` of mail fetched over IMAP; `None` for mail the MTA handed to
    /// `deskgate ingest` (no checkpoint to move).
    pub imap: Option<(u32, u32)>,
    /// Whether the message was already in the folder at the first start.
    pub arrival: Arrival,
}

/// What ingesting a message did.
// One value per message, returned once: the size of `Stored` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        /// `None` for a bounce of nothing we sent.
        ticket: Option<TicketId>,
        created: bool,
        threading: Threading,
        class: Class,
        /// What the message turned out to be once its author was known.
        role: Role,
        /// The acknowledgement queued for this message, if any.
        acknowledgement: Option<OutboxId>,
        /// Every outbox row this message queued (acknowledgement included).
        queued: Vec<OutboxId>,
        /// The language chosen for a customer's message (and their ticket).
        language: Option<Choice>,
        /// A new customer ticket left unacknowledged, and why.
        withheld: Option<String>,
        /// A per-sender limit this message went past.
        limited: Option<Limit>,
        /// For a bounce: what it says failed (`address: status`), one entry per recipient.
        bounced: Vec<String>,
        /// Backlog mail imported without acknowledgement, deadline or notification.
        quiet: bool,
    },
    /// Already stored (same Message-ID, or same bytes): nothing new was written.
    Duplicate {
        ticket: Option<TicketId>,
        ours: bool,
    },
    /// Our own mail came back (our loop header, or sent from the support address): dropped.
    Dropped { class: Class },
    /// Put aside with the reason; nothing else was written.
    Quarantined { id: QuarantineId, reason: String },
}

/// Ingests `raw` fetched from `source`; returns once everything is committed.
pub async fn ingest(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Vec<u8>,
    now: Timestamp,
) -> Result<(Outcome, ParsedMessage), StoreError> {
    // Text analysis happens here, outside the single writer's transaction.
    let (parsed, class, analysis) = understood(&raw, config);
    let config = Arc::clone(config);
    store
        .write(move |tx| {
            let message = Message::fetched(&source, &parsed, class, analysis, &raw);
            let outcome = apply_fetched(tx, &config, message, now)?;
            Ok((outcome, parsed))
        })
        .await
}

/// [`ingest`], and when that fails for a reason other than the database (so trying again
/// would fail again), quarantines it with the error: one bad message never blocks a
/// mailbox. A batch of one ([`batch::ingest_batch`]). Returns the outcome and the message's
/// Message-ID.
pub async fn ingest_or_quarantine(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Vec<u8>,
    now: Timestamp,
) -> Result<(Outcome, Option<String>), StoreError> {
    let item = batch::Item::Message { source, raw };
    let done = only(batch::ingest_batch(store, config, vec![item], now).await?)?;
    Ok((done.outcome, done.message_id))
}

/// Quarantines a message larger than `policy.max_message_size` by its headers alone (its
/// body was never fetched), and advances the checkpoint past it.
pub async fn quarantine_oversize(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    headers: Vec<u8>,
    size: u64,
    now: Timestamp,
) -> Result<QuarantineId, StoreError> {
    let item = batch::Item::Oversize {
        source,
        headers,
        size,
    };
    match only(batch::ingest_batch(store, config, vec![item], now).await?)?.outcome {
        Outcome::Quarantined { id, .. } => Ok(id),
        other => Err(StoreError::Corrupt(format!(
            "an oversize message was not quarantined: {other:?}"
        ))),
    }
}

/// The one result of a batch of one message.
fn only(done: Vec<batch::Done>) -> Result<batch::Done, StoreError> {
    let n = done.len();
    done.into_iter()
        .next()
        .filter(|_| n == 1)
        .ok_or_else(|| StoreError::Corrupt(format!("a batch of one message gave {n} results")))
}

/// Why a quarantined message cannot be released.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no quarantined message {0}")]
    NotFound(QuarantineId),
    #[error("quarantined message {id} was already {status}")]
    NotHeld {
        id: QuarantineId,
        status: &'static str,
    },
    #[error(
        "quarantined message {id} was {size} bytes and only its headers were kept; raise policy.max_message_size_mb and move it back into the watched folder on the server instead"
    )]
    Incomplete { id: QuarantineId, size: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends a quarantined message down the normal path (a ticket, an acknowledgement when its
/// sender is a customer) and marks the entry released, in one transaction. The mailbox
/// checkpoint is not touched.
pub async fn release(
    store: &Store,
    config: &Arc<Config>,
    id: QuarantineId,
    now: Timestamp,
) -> Result<Outcome, ReleaseError> {
    let held = store
        .read(move |tx| tx.quarantined(id))
        .await?
        .ok_or(ReleaseError::NotFound(id))?;
    if held.status != QuarantineStatus::Held {
        return Err(ReleaseError::NotHeld {
            id,
            status: held.status.as_str(),
        });
    }
    if !held.complete {
        return Err(ReleaseError::Incomplete {
            id,
            size: held.size,
        });
    }
    let (parsed, class, analysis) = understood(&held.raw, config);
    let config = Arc::clone(config);
    let outcome = store
        .write(move |tx| {
            if !tx.resolve_quarantine(id, QuarantineStatus::Released, now)? {
                return Err(StoreError::Corrupt(format!(
                    "quarantined message {id} changed while it was being released"
                )));
            }
            let Some((mailbox, imap)) = held.source else {
                return Err(StoreError::Corrupt(format!(
                    "quarantined message {id} does not say which mailbox it came from"
                )));
            };
            // An admin released it: handled as mail that just arrived.
            let source = Source {
                mailbox,
                imap,
                arrival: Arrival::Live,
            };
            let message = Message {
                source: &source,
                parsed: &parsed,
                class,
                analysis,
                raw: &held.raw,
                released: true,
            };
            let outcome = apply(tx, &config, message, now)?;
            tx.record(
                &Event {
                    mailbox: Some(&source.mailbox),
                    ticket: match &outcome {
                        Outcome::Stored { ticket, .. } | Outcome::Duplicate { ticket, .. } => {
                            *ticket
                        }
                        _ => None,
                    },
                    detail: format!("quarantined message {id} ({})", held.reason),
                    ..Event::new(EventKind::QuarantineReleased)
                },
                now,
            )?;
            Ok(outcome)
        })
        .await?;
    Ok(outcome)
}

/// Moves the mailbox's checkpoint past `source` (IMAP mail only).
fn advance(tx: &Tx<'_>, source: &Source, now: Timestamp) -> Result<(), StoreError> {
    match source.imap {
        Some((uidvalidity, uid)) => tx.set_checkpoint(
            &source.mailbox,
            Checkpoint {
                uidvalidity,
                last_uid: uid,
            },
            now,
        ),
        None => Ok(()),
    }
}

fn understand(raw: &[u8], ours: &[String]) -> (ParsedMessage, Class) {
    let mut parsed = parse(raw);
    drop_misleading_names(&mut parsed);
    let class = classify(&parsed, ours);
    (parsed, class)
}

/// [`understand`] and the analysis of the text: all that needs no database, done before the
/// write transaction.
fn understood(raw: &[u8], config: &Config) -> (ParsedMessage, Class, Analysis) {
    let (parsed, class) = understand(raw, &config.own_addresses);
    let analysis = analysis::analyse(raw, &parsed, &class, config);
    (parsed, class, analysis)
}

/// Applies a fetched message and moves its mailbox's checkpoint past it.
fn apply_fetched(
    tx: &Tx<'_>,
    config: &Config,
    message: Message<'_>,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let source = message.source;
    let outcome = apply(tx, config, message, now)?;
    advance(tx, source, now)?;
    Ok(outcome)
}

/// One message on its way into the store.
struct Message<'a> {
    source: &'a Source,
    parsed: &'a ParsedMessage,
    class: Class,
    /// What the text says, found before the transaction.
    analysis: Analysis,
    raw: &'a [u8],
    /// An admin released it from quarantine: no more quarantining or dropping.
    released: bool,
}

impl<'a> Message<'a> {
    /// A message as fetched (or piped in), not released from quarantine.
    fn fetched(
        source: &'a Source,
        parsed: &'a ParsedMessage,
        class: Class,
        analysis: Analysis,
        raw: &'a [u8],
    ) -> Message<'a> {
        Message {
            source,
            parsed,
            class,
            analysis,
            raw,
            released: false,
        }
    }
}

/// Quarantines `raw`: the whole message when it is `size` bytes long, else its headers.
fn put_aside(
    tx: &Tx<'_>,
    source: &Source,
    parsed: &ParsedMessage,
    reason: &str,
    raw: &[u8],
    size: u64,
    now: Timestamp,
) -> Result<QuarantineId, StoreError> {
    let id = tx.quarantine(&NewQuarantine {
        source: Some((source.mailbox.as_str(), source.imap)),
        reason,
        dedupe_key: &dedupe_key(parsed.message_id.as_deref(), raw),
        message_id: parsed.message_id.as_deref(),
        from: parsed.from.as_ref().map(|p| p.address.as_str()),
        subject: &parsed.subject,
        size,
        complete: raw.len() as u64 == size,
        raw,
        now,
    })?;
    tx.record(
        &Event {
            mailbox: Some(&source.mailbox),
            detail: format!("quarantined message {id}: {reason}"),
            ..Event::new(EventKind::MessageQuarantined)
        },
        now,
    )?;
    Ok(id)
}

/// One message through the stages: dedupe → screen (and a forwarded ticket's third-party
/// answer) → gather → decide → write → events_for → mail_for → render and enqueue, all inside
/// the caller's transaction.
fn apply(
    tx: &Tx<'_>,
    config: &Config,
    message: Message<'_>,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let key = match screen::dedupe(tx, &message, now)? {
        Deduped::Known { ticket, ours } => return Ok(Outcome::Duplicate { ticket, ours }),
        Deduped::New(key) => key,
    };
    if let Some(outcome) = screen::screen(tx, &message, &key, now)? {
        return Ok(outcome);
    }
    if let Some(outcome) = commands::forwarded_answer(tx, config, &message, now)? {
        return Ok(outcome);
    }
    let boundary = Boundary::from_config(config);
    let (facts, desk, deadlines) = gather::gather(tx, config, message, &boundary, now)?;
    let mut decision = decide(&facts.inbound(), &config.policy, deadlines, desk.team, now);
    // Reply keys in mail about this ticket are made for the address it is on.
    let signer = Signer::from_config(config).map(|s| s.signing_as(&desk.support.address));
    let mut reply = prerender_reply(tx, config, &desk, &facts, &decision, signer.as_ref(), now)?;
    // An answer the last check would withhold is a leak: nothing applied, no deadline met, so
    // a ticket never looks answered when the customer got nothing.
    if let Some(why) = reply
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .and_then(|out| boundary.leak(&out.raw))
    {
        let outgoing = Leak::Outgoing(why);
        let mut inbound = facts.inbound();
        inbound.leak = Some(&outgoing);
        decision = decide(&inbound, &config.policy, deadlines, desk.team, now);
        reply = None;
    }
    if decision.ticket == TicketAction::Unfiled {
        let written = write::unfiled(tx, &facts, &decision, &key, now)?;
        let effects = effects(tx, &facts, &written, &desk, &boundary, now);
        for event in events_for(&facts, &decision, None, &written, now) {
            effects.record(&event)?;
        }
        // Forged agent mail on no ticket: the agent still hears of it (rate-limited).
        let told = match &decision.tell {
            Some(tell) => tell_agent(&effects, config, None, tell, facts.parsed)?,
            None => None,
        };
        let queued = Queued {
            acknowledgement: None,
            all: told.into_iter().collect(),
        };
        return Ok(stored(facts, decision, written, None, queued));
    }
    let language = gather::language(tx, &facts, &decision, desk.language)?;
    let filed = Filed {
        decision: &decision,
        language: language.as_ref(),
        boundary: &boundary,
        deadlines,
        key: &key,
        max_cc: config.policy.max_cc_per_message,
    };
    let written = write::filed(tx, &facts, filed, now)?;
    let effects = effects(tx, &facts, &written, &desk, &boundary, now);
    for event in events_for(&facts, &decision, language.as_ref(), &written, now) {
        effects.record(&event)?;
    }
    log_refusals(&facts, &decision, &written);
    let queued = mail(config, &desk, &facts, &decision, &written, &effects, reply)?;
    Ok(stored(facts, decision, written, language, queued))
}

/// The log lines of what ingest refused: an answer not relayed or withheld, people not added.
fn log_refusals(facts: &Facts<'_>, decision: &Decision, written: &Written) {
    let (mailbox, ticket) = (&facts.source.mailbox, written.ticket.map(|t| t.0));
    let message_id = facts.parsed.message_id.as_deref().unwrap_or("");
    match &decision.tell {
        Some((agent, AgentNotice::Leak(why))) => {
            tracing::warn!(
                mailbox,
                ticket,
                message_id,
                "answer from {agent} not relayed: {why}"
            );
        }
        Some((agent, AgentNotice::Withheld(why))) if facts.ticket.is_some() => {
            tracing::error!(
                mailbox,
                ticket,
                message_id,
                "answer from {agent} not sent, it would carry a reply key outside: {why}"
            );
        }
        _ => {}
    }
    if !written.not_added.is_empty() {
        tracing::warn!(
            mailbox,
            ticket,
            message_id,
            not_added = written.not_added.len(),
            "message copies too many people; the rest are not added to the ticket"
        );
    }
}

fn effects<'a, 't>(
    tx: &'a Tx<'t>,
    facts: &'a Facts<'_>,
    written: &Written,
    desk: &'a Desk<'_>,
    boundary: &'a Boundary,
    now: Timestamp,
) -> Effects<'a, 't> {
    Effects {
        tx,
        mailbox: &facts.source.mailbox,
        ticket: written.ticket,
        message: written.message,
        now,
        support: &desk.support,
        templates: desk.templates,
        boundary,
    }
}

/// Plans, renders and enqueues the mail of a message on its ticket, from the ticket as it
/// now stands.
fn mail(
    config: &Config,
    desk: &Desk<'_>,
    facts: &Facts<'_>,
    decision: &Decision,
    written: &Written,
    effects: &Effects<'_, '_>,
    reply: Option<Result<Outgoing, RenderError>>,
) -> Result<Queued, StoreError> {
    let Some(ticket) = written.ticket else {
        return Ok(Queued::default());
    };
    let Some(mut state) = effects.tx.ticket_state(ticket)? else {
        return Err(StoreError::Corrupt(format!(
            "ticket {ticket} vanished inside its own transaction"
        )));
    };
    // Participants recorded before keys were kept inside are not copied either.
    state
        .customers
        .retain(|p| !effects.boundary.is_inside(&p.address));
    // Reply keys in mail about this ticket are made for the address it is on.
    let signer = Signer::from_config(config).map(|s| s.signing_as(&desk.support.address));
    let agent = facts
        .author
        .agent()
        .and_then(|a| config.agents.by_address(a))
        .is_some();
    let bounce = &written.bounce;
    let plans = mail_for(
        decision,
        MailFacts {
            sender: facts.parsed.from.is_some(),
            signer: signer.is_some(),
            agent,
            agent_text: agent && facts.text.is_some(),
            bounce_failed: bounce.to_customer && !bounce.failed.is_empty(),
        },
    );
    let sending = Sending {
        config,
        desk,
        facts,
        decision,
        state: &state,
        new_ticket: written.created,
        failed: &bounce.failed,
        not_added: &written.not_added,
        signer,
    };
    send_planned(effects, &sending, &plans, reply)
}

fn stored(
    facts: Facts<'_>,
    decision: Decision,
    written: Written,
    language: Option<Choice>,
    queued: Queued,
) -> Outcome {
    Outcome::Stored {
        ticket: written.ticket,
        created: written.created,
        threading: facts.threading,
        class: facts.class,
        role: decision.role,
        acknowledgement: queued.acknowledgement,
        queued: queued.all,
        language,
        withheld: decision.withheld,
        limited: decision.limited,
        bounced: written.bounce.failed,
        quiet: decision.quiet,
    }
}
