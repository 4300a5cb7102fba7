//! One inbound message, from raw bytes to committed facts.
//!
//! parse → classify → (store look-ups) → thread → decide → render → write, all of the writes
//! in ONE store transaction: the message row, the ticket created or updated, its
//! participants and deadline, the acknowledgement (rendered bytes and Message-ID fixed now)
//! with its outbox row, bounce marks, the events, and the mailbox checkpoint. Side effects
//! that depend on these facts (IMAP flags and moves, SMTP) happen only after [`ingest`]
//! returns.
//!
//! Idempotent: a message whose Message-ID (or, lacking one, whose bytes) is already stored
//! only advances the checkpoint. Mail that cannot be handled is quarantined in the same
//! transaction instead of stored ([`Outcome::Quarantined`]); [`quarantine_failed`] and
//! [`quarantine_oversize`] put aside mail that never got this far, and [`release`] sends a
//! quarantined message down the normal path.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::agent::reply::leak::{Guard, Leak, Note};
use crate::agent::reply::{CcChange, Command};
use crate::agent::{Author, boundary::Boundary, sign::Signer};
use crate::classify::{Class, classify, no_acknowledgement};
use crate::config::{Agent, Config, Support};
use crate::language::{self, Choice, Evidence};
use crate::model::{MessageRowId, OutboxId, Person, QuarantineId, TicketId, TicketStatus};
use crate::parse::{ParsedMessage, drop_misleading_names, parse};
use crate::policy::{AgentNotice, Arrival, Inbound, Limit, Role, SenderLoad, TicketAction, decide};
use crate::render::{
    self, AckFor, BounceFor, NoteFor, NoticeFor, NotificationFor, Outgoing, RenderError, ReplyFor,
};
use crate::schedule;
use crate::send::{self, Audience, Enqueued};
use crate::store::{
    Checkpoint, ContactSeen, Event, NewMessage, NewQuarantine, NewTicket, QuarantineStatus, Store,
    StoreError, Tx, content_key, dedupe_key, legacy_content_key,
};
use crate::templates::kinds::MailKind;
use crate::thread::{self, Candidates, Threading};

pub mod analysis;
pub use analysis::Analysis;

/// The window of the per-sender limits.
const LIMIT_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// Notices per agent and kind in [`LIMIT_WINDOW`] about mail that proved nothing (unsigned or
/// refused: anyone can send it).
const UNPROVED_NOTICES_PER_HOUR: u32 = 1;

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
    ingest_shared(store, config, source, Arc::new(raw), now).await
}

/// [`ingest`], and when that fails for a reason other than the database (so trying again
/// would fail again), [`quarantine_failed`] with the error: one bad message never blocks a
/// mailbox. Returns the outcome and the message's Message-ID.
pub async fn ingest_or_quarantine(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Vec<u8>,
    now: Timestamp,
) -> Result<(Outcome, Option<String>), StoreError> {
    // Shared with the transaction rather than cloned: the bytes are needed again only when
    // storing fails, and by then the transaction has let go of them.
    let raw = Arc::new(raw);
    let err = match ingest_shared(store, config, source.clone(), Arc::clone(&raw), now).await {
        Ok((outcome, parsed)) => return Ok((outcome, parsed.message_id)),
        Err(err) if err.is_transient() => return Err(err),
        Err(err) => err,
    };
    let raw = Arc::try_unwrap(raw).unwrap_or_else(|shared| shared.as_ref().clone());
    let reason = format!("storing it failed: {err}");
    let mailbox = source.mailbox.clone();
    let uid = source.imap.map(|(_, uid)| uid);
    let id = quarantine_failed(store, config, source, raw, reason.clone(), now).await?;
    tracing::warn!(mailbox, uid, quarantine = id.0, error = %err, "message could not be stored; quarantined");
    Ok((Outcome::Quarantined { id, reason }, None))
}

async fn ingest_shared(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Arc<Vec<u8>>,
    now: Timestamp,
) -> Result<(Outcome, ParsedMessage), StoreError> {
    let (parsed, class) = understand(&raw, &config.own_addresses);
    // Text analysis happens here, outside the single writer's transaction.
    let analysis = analysis::analyse(&raw, &parsed, &class, config);
    let config = Arc::clone(config);
    store
        .write(move |tx| {
            let message = Message {
                source: &source,
                parsed: &parsed,
                class,
                analysis,
                raw: &raw,
                released: false,
            };
            let outcome = apply(tx, &config, message, now)?;
            advance(tx, &source, now)?;
            Ok((outcome, parsed))
        })
        .await
}

/// Quarantines a fetched message whose ingest failed for a reason other than the database
/// (so trying again would fail again), and advances the checkpoint past it.
pub async fn quarantine_failed(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Vec<u8>,
    reason: String,
    now: Timestamp,
) -> Result<QuarantineId, StoreError> {
    let size = raw.len() as u64;
    quarantine_fetched(store, config, source, raw, size, reason, now).await
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
    let reason = format!(
        "{size} bytes, larger than policy.max_message_size_mb ({} bytes); only the headers were kept",
        config.policy.max_message_size
    );
    quarantine_fetched(store, config, source, headers, size, reason, now).await
}

/// Puts `raw` (the whole message when it is `size` bytes long, else its headers) aside and
/// advances the checkpoint past it, in one transaction.
async fn quarantine_fetched(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Vec<u8>,
    size: u64,
    reason: String,
    now: Timestamp,
) -> Result<QuarantineId, StoreError> {
    let (parsed, _) = understand(&raw, &config.own_addresses);
    store
        .write(move |tx| {
            let id = put_aside(tx, &source, &parsed, &reason, &raw, size, now)?;
            advance(tx, &source, now)?;
            Ok(id)
        })
        .await
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
    let (parsed, class) = understand(&held.raw, &config.own_addresses);
    let analysis = analysis::analyse(&held.raw, &parsed, &class, config);
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
                    kind: "quarantine.released",
                    mailbox: Some(&source.mailbox),
                    ticket: match &outcome {
                        Outcome::Stored { ticket, .. } | Outcome::Duplicate { ticket, .. } => {
                            *ticket
                        }
                        _ => None,
                    },
                    detail: format!("quarantined message {id} ({})", held.reason),
                    ..Event::default()
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
            kind: "message.quarantined",
            mailbox: Some(&source.mailbox),
            detail: format!("quarantined message {id}: {reason}"),
            ..Event::default()
        },
        now,
    )?;
    Ok(id)
}

fn apply(
    tx: &Tx<'_>,
    config: &Config,
    message: Message<'_>,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let Message {
        source,
        parsed,
        class,
        analysis,
        raw,
        released,
    } = message;
    let mailbox = Some(source.mailbox.as_str());
    let mut key = dedupe_key(parsed.message_id.as_deref(), raw);
    let content = content_key(
        parsed.from.as_ref().map(|p| p.address.as_str()),
        &parsed.subject,
        &parsed.text,
    );
    let mut known = tx.known_message(&key)?;
    if known.is_none() && parsed.message_id.is_none() {
        known = tx.known_message(&legacy_content_key(raw))?;
    }
    if let Some(earlier) = known
        .as_ref()
        .filter(|k| !k.outbound && k.content != content)
    {
        // A different message reusing a Message-ID (broken mailers, forgeries): kept as a
        // message of its own, never merged into the earlier one's ticket nor dropped.
        tx.record(
            &Event {
                kind: "message.reused_message_id",
                mailbox,
                ticket: earlier.ticket,
                message: Some(earlier.message),
                detail: format!("another message arrived under {key}"),
                ..Event::default()
            },
            now,
        )?;
        key = format!("{key}#{content}");
        known = tx.known_message(&key)?;
    }
    if let Some(known) = known {
        tx.record(
            &Event {
                kind: if known.outbound {
                    "message.own_returned"
                } else {
                    "message.duplicate"
                },
                mailbox,
                ticket: known.ticket,
                message: Some(known.message),
                detail: match source.imap {
                    Some((uidvalidity, uid)) => {
                        format!("uid {uid} (uidvalidity {uidvalidity}) repeats {key}")
                    }
                    None => format!("delivered by the MTA; repeats {key}"),
                },
                ..Event::default()
            },
            now,
        )?;
        return Ok(Outcome::Duplicate {
            ticket: known.ticket,
            ours: known.outbound,
        });
    }
    if !released {
        match &class {
            Class::OwnMail(signal) => {
                tx.record(
                    &Event {
                        kind: "message.loop_dropped",
                        mailbox,
                        detail: format!(
                            "{} (Message-ID {})",
                            signal.describe(),
                            parsed.message_id.as_deref().unwrap_or("none")
                        ),
                        ..Event::default()
                    },
                    now,
                )?;
                return Ok(Outcome::Dropped { class });
            }
            Class::Quarantine(reason) => {
                if let Some(earlier) = tx.quarantined_key(&key)? {
                    tx.record(
                        &Event {
                            kind: "message.duplicate",
                            mailbox,
                            detail: format!("repeats quarantined message {earlier}"),
                            ..Event::default()
                        },
                        now,
                    )?;
                    return Ok(Outcome::Duplicate {
                        ticket: None,
                        ours: false,
                    });
                }
                let id = put_aside(tx, source, parsed, reason, raw, raw.len() as u64, now)?;
                return Ok(Outcome::Quarantined {
                    id,
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
    }

    let signer = Signer::from_config(config);
    let boundary = Boundary::from_config(config);
    let sender = parsed.from.as_ref().map(|p| p.address.as_str());
    let mut author = analysis.author;
    let mut state = None;
    if let Author::Verified { agent, ticket, .. } = &author {
        state = tx.ticket_state(*ticket)?;
        if state.is_none() {
            author = Author::Refused {
                ticket: *ticket,
                tell: Some(agent.clone()),
                reason: format!("ticket {ticket} does not exist"),
            };
        }
    }
    let threading = match (&author, &state) {
        (Author::Verified { ticket, .. }, Some(_)) => Threading::Signed(*ticket),
        (Author::Refused { ticket, .. }, _) => {
            state = tx.ticket_state(*ticket)?;
            match state {
                Some(_) => Threading::Claimed(*ticket),
                None => Threading::New,
            }
        }
        _ => {
            let candidates = candidates(tx, parsed, &class, &config.support.tag_prefix)?;
            let threading = thread::resolve(sender, &candidates);
            state = match threading.ticket() {
                Some(id) => tx.ticket_state(id)?,
                None => None,
            };
            threading
        }
    };
    if let Author::Refused { ticket, reason, .. } = &author {
        tracing::warn!(
            mailbox = source.mailbox,
            message_id = parsed.message_id.as_deref().unwrap_or(""),
            ticket = ticket.0,
            "reply key refused, treated as ordinary mail: {reason}"
        );
    }
    let text = analysis
        .agent_text
        .filter(|_| matches!(author, Author::Verified { .. }));
    let recipients: Vec<String> = parsed
        .to
        .iter()
        .chain(&parsed.cc)
        .map(|p| p.address.clone())
        .collect();
    let team_mailbox = state
        .as_ref()
        .map_or(source.mailbox.as_str(), |s| &s.mailbox);
    // Which of our addresses the ticket is on: its own, or for a new one, the one written to.
    let written_to = match &state {
        Some(ticket) => ticket.address.clone(),
        None => config.mailbox(&source.mailbox).and_then(|m| {
            let extras: Vec<String> = m
                .addresses
                .iter()
                .map(|a| a.address.to_string().to_ascii_lowercase())
                .collect();
            thread::addressed(parsed, &config.own_addresses[0], &extras).map(|i| extras[i].clone())
        }),
    };
    let desk = config.desk(team_mailbox, written_to.as_deref());
    let load = match sender {
        Some(address) => tx.sender_load(address, now - LIMIT_WINDOW)?,
        None => SenderLoad::default(),
    };
    let no_ack = no_acknowledgement(parsed, &config.policy.no_ack_domains);
    let deadlines = config
        .mailbox(team_mailbox)
        .map_or(&config.deadlines, |m| &m.deadlines);
    let survey_score = match &state {
        Some(ticket) if class.is_customer() && tx.survey_awaited(ticket.id)? => {
            analysis.survey_score
        }
        _ => None,
    };
    let leak = match (&author, &text, &state) {
        (
            Author::Verified {
                to_notes: false, ..
            },
            Some(text),
            Some(ticket),
        ) if !text.note && !text.body.is_empty() => {
            relay_leak(tx, ticket.id, &text.body, desk.templates)?
                .or_else(|| boundary.inside_address_in(&text.body).map(Leak::Address))
        }
        _ => None,
    };
    let decision = decide(
        &Inbound {
            class: &class,
            author: &author,
            threading,
            ticket: state.as_ref(),
            text: text.as_ref(),
            recipients: &recipients,
            sent: parsed.date,
            no_ack: no_ack.as_ref(),
            load,
            arrival: source.arrival,
            survey_score,
            leak: leak.as_ref(),
        },
        &config.policy,
        deadlines,
        desk.team,
        now,
    );
    // A customer's own message (not an agent's, not automatic mail) tells their language.
    let customer = parsed
        .from
        .as_ref()
        .filter(|_| decision.role == Role::Sender(Class::Customer) && author.agent().is_none());
    let language = match customer {
        Some(person) => {
            let default = desk.language;
            let evidence = Evidence {
                content_language: parsed.content_language.as_deref(),
                detected: analysis.detected.clone(),
            };
            let contact = tx.contact_language(&person.address)?;
            Some(language::choose(&evidence, contact, default))
        }
        None => None,
    };

    let defects: Vec<&str> = parsed.defects.iter().map(|d| d.as_str()).collect();
    let from_agent = author
        .agent()
        .filter(|_| decision.role != Role::Sender(class.clone()));
    let class_text = |role: &Role| {
        if released {
            format!("released from quarantine; {}", role.as_str())
        } else {
            role.as_str()
        }
    };
    let new_message = |ticket: Option<TicketId>,
                       class: &str,
                       body_text: &str|
     -> Result<MessageRowId, StoreError> {
        tx.insert_message(&NewMessage {
            ticket,
            outbound: false,
            dedupe_key: &key,
            message_id: parsed.message_id.as_deref(),
            source: Some((&source.mailbox, source.imap)),
            from: parsed.from.as_ref(),
            subject: &parsed.subject,
            sent_date: parsed.date,
            received_at: now,
            in_reply_to: &parsed.in_reply_to,
            references: &parsed.references,
            class,
            defects: &defects.join(" "),
            body_text,
            attachments: &parsed.attachment_names,
            raw,
            internal: decision.role.internal(),
            agent: from_agent,
        })
    };
    let (ticket, created) = match decision.ticket {
        TicketAction::Unfiled => {
            // A bounce of nothing we sent, or a refused key naming no ticket: kept and
            // reported, on no ticket.
            let role_text = class_text(&decision.role);
            let message = new_message(None, &role_text, &parsed.text)?;
            let events = Events {
                tx,
                mailbox,
                ticket: None,
                message,
                now,
            };
            events.record_data(
                "message.received",
                None,
                format!("{role_text}; {}{}", threading.describe(), describe(&author)),
                Some(json!({ "class": decision.role.kind() })),
            )?;
            let bounced = if matches!(class, Class::Bounce(_)) {
                record_bounce(tx, parsed, &events, now)?.failed
            } else {
                Vec::new()
            };
            return Ok(Outcome::Stored {
                ticket: None,
                created: false,
                threading,
                class,
                role: decision.role,
                acknowledgement: None,
                queued: Vec::new(),
                language: None,
                withheld: None,
                limited: None,
                bounced,
                quiet: false,
            });
        }
        TicketAction::Append(id) => (id, false),
        TicketAction::Create => {
            let subject = if parsed.subject.is_empty() {
                "(no subject)"
            } else {
                &parsed.subject
            };
            // Nobody inside (an agent, one of our addresses, a key) is ever a ticket's
            // customer (a refused key never opens a ticket).
            let customer = parsed
                .from
                .as_ref()
                .filter(|p| !boundary.is_inside(&p.address));
            let id = tx.create_ticket(&NewTicket {
                mailbox: &source.mailbox,
                subject,
                customer,
                language: language.as_ref().map(|c| (c.lang, c.source)),
                address: written_to.as_deref(),
                now,
            })?;
            (id, true)
        }
    };
    match decision.status {
        Some(status) => tx.set_ticket_status(ticket, status, now)?,
        None => tx.touch_ticket(ticket, now)?,
    }
    if let Some(agent) = &decision.assign {
        tx.assign(ticket, agent)?;
    }
    if let Some(priority) = decision.priority {
        tx.set_priority(ticket, priority)?;
    }
    for change in &decision.cc {
        match change {
            CcChange::Add(address) => tx.cc_add(ticket, address)?,
            CcChange::Remove(address) => tx.cc_remove(ticket, address)?,
        }
    }
    // A later message changes the ticket's language only with evidence (never an agent's).
    let language_changed = match &language {
        Some(choice) if !created => {
            let current = state.as_ref().and_then(|s| s.language);
            (choice.source.is_evidence() || current.is_none())
                && current != Some(choice.lang)
                && tx.set_ticket_language(ticket, choice.lang, choice.source, now)?
        }
        _ => false,
    };
    if let (Some(person), Some(choice)) = (customer, &language) {
        tx.contact_seen(&ContactSeen {
            person,
            language: choice.source.is_evidence().then_some(choice.lang),
            new_ticket: created,
            now,
        })?;
    }
    // A message that joins only by its subject tag names nobody new (its From may be forged).
    if customer.is_some() && !matches!(threading, Threading::Tag(_)) {
        for person in participants(parsed, &boundary) {
            let role = if Some(person.address.as_str()) == sender {
                "customer"
            } else {
                "cc"
            };
            tx.add_participant(ticket, person, role)?;
        }
    }
    let role_text = class_text(&decision.role);
    let message = new_message(
        Some(ticket),
        &role_text,
        text.as_ref().map_or(&parsed.text, |t| &t.body),
    )?;
    let out = Effects {
        events: Events {
            tx,
            mailbox,
            ticket: Some(ticket),
            message,
            now,
        },
        support: &desk.support,
        ticket,
        boundary: &boundary,
    };
    if created {
        out.record_data(
            "ticket.created",
            String::new(),
            json!({
                "language": language.as_ref().map(|c| c.lang.code()),
                "quiet": decision.quiet,
                "address": written_to,
            }),
        )?;
    }
    if let Some(choice) = language.as_ref().filter(|_| created || language_changed) {
        out.record_data(
            "ticket.language",
            format!("{}: {}", choice.lang, choice.detail),
            json!({ "language": choice.lang.code(), "source": choice.source.as_str() }),
        )?;
    }
    out.record_data(
        "message.received",
        format!("{role_text}; {}{}", threading.describe(), describe(&author)),
        json!({ "class": decision.role.kind() }),
    )?;
    if let Some(limit) = decision.limited {
        out.record(
            "sender.limited",
            format!("{}: {}", sender.unwrap_or(""), limit.describe()),
        )?;
    }
    if let Some(reason) = &decision.withheld {
        out.record("ack.withheld", reason.clone())?;
    }
    let bounced = if matches!(class, Class::Bounce(_)) {
        record_bounce(tx, parsed, &out.events, now)?
    } else {
        Bounced {
            failed: Vec::new(),
            to_customer: false,
        }
    };
    if let Some(deadline) = &decision.deadline {
        tx.insert_deadline(ticket, message, deadline)?;
    }
    if let Some(score) = decision.survey {
        if tx.record_survey(ticket, score, now)? {
            out.record_data(
                "survey.answered",
                format!("satisfaction {score} of 5"),
                json!({ "score": score }),
            )?;
        } else {
            out.record(
                "survey.repeated",
                format!("satisfaction {score} of 5 ignored: the ticket's score is recorded"),
            )?;
        }
    }
    if let Some(at) = decision.answered_at {
        let met = tx.answered(ticket, at)?;
        let agent = author.agent().unwrap_or("?");
        out.record_data(
            "agent.answered",
            format!(
                "{agent} answered at {at} ({}); {} deadline(s) met",
                if decision.relay {
                    "relayed"
                } else {
                    "Reply All, not relayed"
                },
                met.deadlines.len()
            ),
            json!({ "agent": agent, "at": ms(at), "relayed": decision.relay }),
        )?;
        for deadline in &met.deadlines {
            out.record_data(
                "deadline.met",
                format!(
                    "{} deadline {} due {} met at {at}",
                    deadline.kind, deadline.id, deadline.due_at
                ),
                json!({
                    "deadline": deadline.id,
                    "kind": deadline.kind,
                    "received_at": ms(deadline.received_at),
                    "due_at": ms(deadline.due_at),
                    "met_at": ms(at),
                    "within": at <= deadline.due_at,
                }),
            )?;
        }
        if let Some(created_at) = met.first_response {
            out.record_data(
                "ticket.first_response",
                format!("{agent} answered first, at {at}"),
                json!({
                    "created_at": ms(created_at),
                    "at": ms(at),
                    "response_ms": ms(at) - ms(created_at),
                    "agent": agent,
                }),
            )?;
        }
    }
    // After the answer: an answer with #resolve meets the deadlines it answers rather than
    // cancelling them.
    if let Some(status) = decision.status {
        let from = state.as_ref().map_or(TicketStatus::Open, |s| s.status);
        if let Some((kind, detail)) =
            schedule::status_changed(tx, ticket, from, status, deadlines, now)?
        {
            out.record(kind, detail)?;
        }
        out.record_data(
            "ticket.status",
            status.as_str().to_string(),
            json!({
                "from": state.as_ref().map(|s| s.status.as_str()),
                "to": status.as_str(),
                "by": if author.agent().is_some() { "agent" } else { "customer" },
            }),
        )?;
    }
    if let Some(agent) = &decision.assign {
        out.record("ticket.assigned", agent.clone())?;
    }
    if let Some(priority) = decision.priority {
        out.record("ticket.priority", priority.as_str().to_string())?;
    }
    for change in &decision.cc {
        out.record("ticket.cc", Command::Cc(change.clone()).describe())?;
    }
    if let Some((agent, AgentNotice::Leak(why))) = &decision.tell {
        tracing::warn!(
            mailbox = source.mailbox,
            ticket = ticket.0,
            message_id = parsed.message_id.as_deref().unwrap_or(""),
            "answer from {agent} not relayed: {why}"
        );
        out.record("relay.refused", format!("{agent}: {why}"))?;
    }
    if let Some(lang) = decision.language
        && tx.set_ticket_language(ticket, lang, language::Source::Agent, now)?
    {
        out.record_data(
            "ticket.language",
            format!("{lang}: set by {}", author.agent().unwrap_or("an agent")),
            json!({ "language": lang.code(), "source": language::Source::Agent.as_str() }),
        )?;
    }
    if decision.quiet {
        let (why, at, arrived_at) = match source.arrival {
            Arrival::Backlog {
                arrived_at,
                first_start,
            } => ("in the folder at the first start", first_start, arrived_at),
            Arrival::Reread {
                arrived_at,
                last_sync,
            } => (
                "read again after a UIDVALIDITY reset; last sync",
                last_sync,
                arrived_at,
            ),
            Arrival::Live => ("live", now, None),
        };
        let arrived = arrived_at.map_or("at an unknown time".to_string(), |at| format!("{at}"));
        out.record(
            "message.imported_quietly",
            format!("backlog ({why} {at}), arrived {arrived}: no acknowledgement, no deadline"),
        )?;
    }

    // Everything below renders mail from the ticket as it now stands.
    let Some(mut state) = tx.ticket_state(ticket)? else {
        return Err(StoreError::Corrupt(format!(
            "ticket {ticket} vanished inside its own transaction"
        )));
    };
    // Participants recorded before keys were kept inside are not copied either.
    state.customers.retain(|p| !boundary.is_inside(&p.address));
    // Reply keys in mail about this ticket are made for the address it is on.
    let signer = signer.map(|s| s.signing_as(&desk.support.address));
    let mut queued = Vec::new();
    let mut acknowledgement = None;
    if decision.acknowledge
        && let (Some(customer), Some(deadline)) = (&parsed.from, decision.deadline)
    {
        let ack = AckFor {
            ticket,
            customer,
            subject: &parsed.subject,
            message_id: parsed.message_id.as_deref(),
            references: &parsed.references,
            due_at: deadline.due_at,
            lang: state.language.unwrap_or(desk.language),
        };
        let rendered = render::acknowledgement(&desk.support, desk.templates, ack, now);
        acknowledgement = out.queue(MailKind::Ack, None, rendered)?;
        queued.extend(acknowledgement);
    }
    let attachments = &analysis.attachments;
    if let (Some(signer), Some(customer)) = (&signer, &parsed.from)
        && !decision.notify.is_empty()
    {
        let history = tx.earlier_tickets(&customer.address, Some(ticket), 5)?;
        let waiting_since = tx.waiting_since(ticket)?.unwrap_or(now);
        for agent in agents_named(config, &decision.notify) {
            let rendered = render::notification(
                &desk.support,
                desk.templates,
                signer,
                agent,
                NotificationFor {
                    ticket: &state,
                    new_ticket: created,
                    customer,
                    subject: &parsed.subject,
                    text: &parsed.text,
                    message_id: parsed.message_id.as_deref(),
                    waiting_since,
                    due_at: decision.deadline.map(|d| d.due_at),
                    history: &history,
                    attachments,
                },
                now,
            );
            queued.extend(out.queue(MailKind::Notification, Some(&agent.address), rendered)?);
        }
    }
    let author_agent = author.agent().and_then(|a| config.agents.by_address(a));
    let mut tell = decision.tell.clone();
    if let (Some(signer), Some(agent), Some(text)) = (&signer, author_agent, &text) {
        if decision.relay {
            let answers = tx.latest_customer_message(ticket)?;
            let rendered = render::reply(
                &desk.support,
                desk.templates,
                signer,
                ReplyFor {
                    ticket: &state,
                    agent,
                    body: &text.body,
                    answers: answers.as_ref(),
                    attachments: &attachments.files,
                },
                now,
            );
            match out.enqueue(MailKind::Reply, None, rendered, None)? {
                Some(Enqueued::Queued(outbox)) => queued.push(outbox),
                // Stopped at the last check: the agent who answered hears of it.
                Some(Enqueued::Withheld(why)) => {
                    tell = Some((agent.address.clone(), AgentNotice::Withheld(why)));
                }
                None => {}
            }
        }
        for to in agents_named(config, &decision.note_to) {
            let rendered = render::note(
                &desk.support,
                desk.templates,
                signer,
                to,
                NoteFor {
                    ticket: &state,
                    author: agent,
                    body: &text.body,
                    attachments: &attachments.files,
                },
                now,
            );
            queued.extend(out.queue(MailKind::Note, Some(&to.address), rendered)?);
        }
    }
    if bounced.to_customer && !bounced.failed.is_empty() {
        for agent in agents_named(config, &decision.bounce_to) {
            let rendered = render::bounce(
                &desk.support,
                desk.templates,
                BounceFor {
                    ticket: &state,
                    agent,
                    failed: &bounced.failed,
                    message_id: parsed.message_id.as_deref(),
                },
                now,
            );
            queued.extend(out.queue(MailKind::Bounce, Some(&agent.address), rendered)?);
        }
    }
    if let Some((agent, notice)) = &tell
        && let Some(agent) = config.agents.by_address(agent)
        && !notice_limited(&out, agent, notice)?
    {
        let rendered = render::notice(
            &desk.support,
            desk.templates,
            NoticeFor {
                ticket: &state,
                agent,
                notice,
                subject: &parsed.subject,
                message_id: parsed.message_id.as_deref(),
            },
            now,
        );
        let data = json!({ "agent": agent.address, "notice": notice.kind() });
        let enqueued = out.enqueue(MailKind::Notice, Some(&agent.address), rendered, Some(data))?;
        queued.extend(enqueued.and_then(Enqueued::queued));
    }
    Ok(Outcome::Stored {
        ticket: Some(ticket),
        created,
        threading,
        class,
        role: decision.role,
        acknowledgement,
        queued,
        language,
        withheld: decision.withheld,
        limited: decision.limited,
        bounced: bounced.failed,
        quiet: decision.quiet,
    })
}

/// A notice about mail that proved nothing, when `agent` had one of its kind within the hour:
/// recorded as a `notice.limited` event instead, so a forger cannot fill the agent's inbox.
fn notice_limited(
    out: &Effects<'_, '_>,
    agent: &Agent,
    notice: &AgentNotice,
) -> Result<bool, StoreError> {
    if !notice.unproved() {
        return Ok(false);
    }
    let since = out.events.now - LIMIT_WINDOW;
    let sent = out
        .events
        .tx
        .notices_since(&agent.address, notice.kind(), since)?;
    if sent < UNPROVED_NOTICES_PER_HOUR {
        return Ok(false);
    }
    out.record_data(
        "notice.limited",
        format!(
            "{} notice to {} not sent: one went out within the hour",
            notice.kind(),
            agent.address
        ),
        json!({ "agent": agent.address, "notice": notice.kind() }),
    )?;
    Ok(true)
}

/// The events of one inbound message, on its ticket (or on none, for an unfiled bounce).
struct Events<'a, 't> {
    tx: &'a Tx<'t>,
    mailbox: Option<&'a str>,
    ticket: Option<TicketId>,
    message: MessageRowId,
    now: Timestamp,
}

impl Events<'_, '_> {
    fn record(
        &self,
        kind: &'static str,
        outbox: Option<OutboxId>,
        detail: String,
    ) -> Result<(), StoreError> {
        self.record_data(kind, outbox, detail, None)
    }

    /// An event with the structured facts KPIs are computed from.
    fn record_data(
        &self,
        kind: &'static str,
        outbox: Option<OutboxId>,
        detail: String,
        data: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.tx.record(
            &Event {
                kind,
                mailbox: self.mailbox,
                ticket: self.ticket,
                message: Some(self.message),
                outbox,
                detail,
                data,
            },
            self.now,
        )
    }
}

/// Writes outgoing mail of one inbound message: each rendered message becomes an outbound
/// message row and an outbox row in the ingest transaction, or an event saying why not.
struct Effects<'a, 't> {
    events: Events<'a, 't>,
    /// The desk the ticket's mail goes out from.
    support: &'a Support,
    ticket: TicketId,
    /// What mail to customers must never carry.
    boundary: &'a Boundary,
}

impl Effects<'_, '_> {
    fn record(&self, kind: &'static str, detail: String) -> Result<(), StoreError> {
        self.events.record(kind, None, detail)
    }

    fn record_data(
        &self,
        kind: &'static str,
        detail: String,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.events.record_data(kind, None, detail, Some(data))
    }

    /// Queues `rendered`; mail to an `agent` is internal. A render failure is recorded as an
    /// event instead.
    fn queue(
        &self,
        kind: MailKind,
        agent: Option<&str>,
        rendered: Result<Outgoing, RenderError>,
    ) -> Result<Option<OutboxId>, StoreError> {
        Ok(self
            .enqueue(kind, agent, rendered, None)?
            .and_then(Enqueued::queued))
    }

    /// [`Effects::queue`], saying whether the mail was withheld (`None`: not rendered), with
    /// `data` on the queued event.
    fn enqueue(
        &self,
        kind: MailKind,
        agent: Option<&str>,
        rendered: Result<Outgoing, RenderError>,
        data: Option<serde_json::Value>,
    ) -> Result<Option<Enqueued>, StoreError> {
        let out = match rendered {
            Ok(out) => out,
            Err(err) => {
                self.record(kind.not_sent_event(), err.to_string())?;
                return Ok(None);
            }
        };
        let audience = match agent {
            Some(agent) => Audience::Inside(agent),
            None => Audience::Outside(self.boundary),
        };
        let enqueued = send::enqueue(
            self.events.tx,
            self.support,
            self.ticket,
            kind,
            audience,
            &out,
            self.events.now,
        )?;
        if let Enqueued::Queued(outbox) = &enqueued {
            self.events.record_data(
                kind.queued_event(),
                Some(*outbox),
                format!("to {}", out.recipients.join(", ")),
                data,
            )?;
        }
        Ok(Some(enqueued))
    }
}

/// The configured agents with these primary addresses.
/// What an agent's answer on `ticket` carries that must not reach its customers: the
/// wording of our mail to agents, or the ticket's internal notes.
fn relay_leak(
    tx: &Tx<'_>,
    ticket: TicketId,
    body: &str,
    templates: &render::Templates,
) -> Result<Option<Leak>, StoreError> {
    let texts = tx.ticket_texts(ticket)?;
    let labels: Vec<String> = texts
        .notes
        .iter()
        .map(|(agent, at, _)| {
            format!(
                "note by {} of {}",
                agent.as_deref().unwrap_or("an agent"),
                at.strftime("%Y-%m-%d %H:%M UTC")
            )
        })
        .collect();
    let notes: Vec<Note<'_>> = texts
        .notes
        .iter()
        .zip(&labels)
        .map(|((_, _, text), label)| Note { label, text })
        .collect();
    let public: Vec<&str> = texts.public.iter().map(String::as_str).collect();
    Ok(Guard::new(templates.boilerplate(), &notes, &public).check(body))
}

fn agents_named<'c>(config: &'c Config, addresses: &[String]) -> Vec<&'c Agent> {
    config
        .agents
        .agents
        .iter()
        .filter(|a| addresses.contains(&a.address))
        .collect()
}

/// `; from agent x` / `; refused: why`, appended to the received event.
fn describe(author: &Author) -> String {
    match author {
        Author::Other => String::new(),
        Author::Verified { agent, via, .. } => format!("; from agent {agent} (key in {via:?})"),
        Author::Unsigned { agent } => format!("; from agent {agent} without a reply key"),
        Author::Refused { reason, .. } => format!("; reply key refused: {reason}"),
    }
}

/// What a bounce said failed.
struct Bounced {
    /// `address: status diagnostic` per failed recipient.
    failed: Vec<String>,
    /// It returns mail we sent a customer (not an agent's notification, whose bounce must
    /// not cause another notification).
    to_customer: bool,
}

/// Marks the outbound mail a bounce returns and records a `bounce.received` event per failed
/// recipient, or `bounce.delayed` for a delay warning.
fn record_bounce(
    tx: &Tx<'_>,
    parsed: &ParsedMessage,
    events: &Events<'_, '_>,
    now: Timestamp,
) -> Result<Bounced, StoreError> {
    let report = &parsed.report;
    let mut ids = report.original_ids.clone();
    ids.extend(parsed.in_reply_to.iter().cloned());
    ids.extend(parsed.references.iter().cloned());
    let ours = tx.outbound_by_message_ids(&ids)?;
    let named_failed: Vec<_> = report.recipients.iter().filter(|r| r.failed()).collect();
    let only_delays = named_failed.is_empty() && !report.recipients.is_empty();
    if only_delays {
        for r in &report.recipients {
            events.record(
                "bounce.delayed",
                None,
                format!("{}: {} {} {}", r.address, r.action, r.status, r.diagnostic),
            )?;
        }
        return Ok(Bounced {
            failed: Vec::new(),
            to_customer: false,
        });
    }
    let mut failed: Vec<String> = named_failed
        .iter()
        .map(|r| {
            let text = format!("{} {}", r.status, r.diagnostic);
            format!("{}: {}", r.address, text.trim())
        })
        .collect();
    if failed.is_empty() {
        // A bounce that names nobody: the recipients of the mail it returns failed.
        failed = ours
            .iter()
            .flat_map(|o| o.recipients.iter())
            .map(|address| format!("{address}: (the report names no recipient)"))
            .collect();
    }
    for sent in &ours {
        let about: Vec<&String> = failed
            .iter()
            .filter(|f| {
                sent.recipients
                    .iter()
                    .any(|r| f.starts_with(&format!("{r}:")))
            })
            .collect();
        let detail = if about.is_empty() {
            failed.join("; ")
        } else {
            about
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        tx.mark_bounced(sent.outbox, &detail, now)?;
    }
    let outbox = ours.first().map(|o| o.outbox);
    for failure in &failed {
        events.record("bounce.received", outbox, failure.clone())?;
    }
    Ok(Bounced {
        to_customer: ours
            .iter()
            .any(|o| MailKind::from_outbox(&o.kind).is_some_and(MailKind::bounce_tells_agents)),
        failed,
    })
}

/// Looks up what threading needs: tickets of referenced messages (newest reference first)
/// and the ticket named by a subject tag with its participants. Bounces and auto-replies
/// are also followed through the Message-IDs of the mail they return.
fn candidates(
    tx: &Tx<'_>,
    parsed: &ParsedMessage,
    class: &Class,
    tag_prefix: &str,
) -> Result<Candidates, StoreError> {
    let mut referenced: Vec<String> = parsed.in_reply_to.clone();
    referenced.extend(parsed.references.iter().rev().cloned());
    if matches!(class, Class::Bounce(_) | Class::AutoReply(_)) {
        referenced.extend(parsed.report.original_ids.iter().cloned());
    }
    let by_reference = tx.ticket_by_message_ids(&referenced)?;
    let tagged = match thread::subject_tag(&parsed.subject, tag_prefix) {
        Some(id) => tx.participants(id)?.map(|who| (id, who)),
        None => None,
    };
    Ok(Candidates {
        by_reference,
        tagged,
    })
}

/// The sender and everyone copied, except anyone inside (our addresses, agents, keys) and
/// addresses mail cannot be sent to (one such Cc would stop every answer on the ticket).
fn participants<'p>(parsed: &'p ParsedMessage, boundary: &Boundary) -> Vec<&'p Person> {
    parsed
        .from
        .iter()
        .chain(parsed.to.iter())
        .chain(parsed.cc.iter())
        .filter(|p| !boundary.is_inside(&p.address))
        .filter(|p| p.address.parse::<lettre::Address>().is_ok())
        .collect()
}

/// Event data carries times as milliseconds since the epoch, as the store does.
fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}
