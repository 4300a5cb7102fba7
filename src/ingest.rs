//! One inbound message, from raw bytes to committed facts.
//!
//! parse → classify → (store look-ups) → thread → decide → render → write, all of the writes
//! in ONE store transaction: the message row, the ticket created or updated, its
//! participants and deadline, the acknowledgement (rendered bytes and Message-ID fixed now)
//! with its outbox row, the events, and the mailbox checkpoint. Side effects that depend on
//! these facts (IMAP flags, SMTP) happen only after [`ingest`] returns.
//!
//! Idempotent: a message whose Message-ID (or, lacking one, whose bytes) is already stored
//! only advances the checkpoint.

use std::sync::Arc;

use jiff::Timestamp;

use crate::classify::{Class, classify};
use crate::config::Config;
use crate::model::{OutboxId, Person, TicketId, TicketStatus};
use crate::parse::{ParsedMessage, parse};
use crate::policy::{TicketAction, decide};
use crate::render::{self, AckFor};
use crate::store::{
    Checkpoint, Event, NewMessage, NewOutbox, NewTicket, Store, StoreError, Tx, dedupe_key,
};
use crate::thread::{self, Candidates, Threading};

/// Where an inbound message was fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub mailbox: String,
    pub uidvalidity: u32,
    pub uid: u32,
}

/// What ingesting a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        ticket: TicketId,
        created: bool,
        threading: Threading,
        class: Class,
        /// The acknowledgement queued for this message, if any.
        acknowledgement: Option<OutboxId>,
    },
    /// Already stored (same Message-ID, or same bytes): nothing new was written.
    Duplicate {
        ticket: Option<TicketId>,
        ours: bool,
    },
}

/// Ingests `raw` fetched from `source`; returns once everything is committed.
pub async fn ingest(
    store: &Store,
    config: &Arc<Config>,
    source: Source,
    raw: Vec<u8>,
    now: Timestamp,
) -> Result<(Outcome, ParsedMessage), StoreError> {
    let parsed = parse(&raw);
    let config = Arc::clone(config);
    let for_tx = parsed.clone();
    let outcome = store
        .write(move |tx| {
            let outcome = apply(tx, &config, &source, &for_tx, &raw, now)?;
            tx.set_checkpoint(
                &source.mailbox,
                Checkpoint {
                    uidvalidity: source.uidvalidity,
                    last_uid: source.uid,
                },
                now,
            )?;
            Ok(outcome)
        })
        .await?;
    Ok((outcome, parsed))
}

fn apply(
    tx: &Tx<'_>,
    config: &Config,
    source: &Source,
    parsed: &ParsedMessage,
    raw: &[u8],
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let support_address = config.support.address.to_string().to_ascii_lowercase();
    let class = classify(parsed, &support_address);
    let mailbox = Some(source.mailbox.as_str());
    let key = dedupe_key(parsed.message_id.as_deref(), raw);
    if let Some(known) = tx.known_message(&key)? {
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
                detail: format!(
                    "uid {} (uidvalidity {}) repeats {key}",
                    source.uid, source.uidvalidity
                ),
                ..Event::default()
            },
            now,
        )?;
        return Ok(Outcome::Duplicate {
            ticket: known.ticket,
            ours: known.outbound,
        });
    }

    let sender = parsed.from.as_ref().map(|p| p.address.as_str());
    let candidates = candidates(tx, parsed, &config.support.tag_prefix)?;
    let threading = thread::resolve(sender, &candidates);
    let decision = decide(&class, threading, &config.policy, now);

    let (ticket, created) = match decision.ticket {
        TicketAction::Append(id) => (id, false),
        TicketAction::Create => {
            let subject = if parsed.subject.is_empty() {
                "(no subject)"
            } else {
                &parsed.subject
            };
            let customer = parsed.from.as_ref().filter(|_| class != Class::NoSender);
            let id = tx.create_ticket(&NewTicket {
                mailbox: &source.mailbox,
                subject,
                customer,
                now,
            })?;
            (id, true)
        }
    };
    if decision.reopen {
        tx.set_ticket_status(ticket, TicketStatus::Open, now)?;
    } else {
        tx.touch_ticket(ticket, now)?;
    }
    if class == Class::Customer {
        for person in participants(parsed, &support_address) {
            let role = if Some(person.address.as_str()) == sender {
                "customer"
            } else {
                "cc"
            };
            tx.add_participant(ticket, person, role)?;
        }
    }
    let class_text = class.as_str();
    let defects: Vec<&str> = parsed.defects.iter().map(|d| d.as_str()).collect();
    let message = tx.insert_message(&NewMessage {
        ticket,
        outbound: false,
        dedupe_key: &key,
        message_id: parsed.message_id.as_deref(),
        source: Some((&source.mailbox, source.uidvalidity, source.uid)),
        from: parsed.from.as_ref(),
        subject: &parsed.subject,
        sent_date: parsed.date,
        received_at: now,
        in_reply_to: &parsed.in_reply_to,
        references: &parsed.references,
        class: &class_text,
        defects: &defects.join(" "),
        body_text: &parsed.text,
        raw,
    })?;
    let event = |kind: &'static str, detail: String| Event {
        kind,
        mailbox,
        ticket: Some(ticket),
        message: Some(message),
        detail,
        ..Event::default()
    };
    if created {
        tx.record(&event("ticket.created", String::new()), now)?;
    }
    tx.record(
        &event(
            "message.received",
            format!("{class_text}; {}", threading.describe()),
        ),
        now,
    )?;
    if let Some((kind, due_at)) = decision.deadline {
        tx.insert_deadline(ticket, message, kind.as_str(), due_at)?;
    }

    let mut acknowledgement = None;
    if decision.acknowledge
        && let (Some(customer), Some((_, due_at))) = (&parsed.from, decision.deadline)
    {
        let ack = AckFor {
            ticket,
            customer,
            subject: &parsed.subject,
            message_id: parsed.message_id.as_deref(),
            references: &parsed.references,
            due_at,
        };
        match render::acknowledgement(&config.support, &config.templates, ack, now) {
            Ok(out) => {
                let support = Person::new(&out.envelope_from, Some(&config.support.name));
                let out_row = tx.insert_message(&NewMessage {
                    ticket,
                    outbound: true,
                    dedupe_key: &dedupe_key(Some(&out.message_id), &out.raw),
                    message_id: Some(&out.message_id),
                    source: None,
                    from: Some(&support),
                    subject: &out.subject,
                    sent_date: Some(now),
                    received_at: now,
                    in_reply_to: parsed.message_id.as_slice(),
                    references: &[],
                    class: "acknowledgement",
                    defects: "",
                    body_text: &out.text,
                    raw: &out.raw,
                })?;
                let outbox = tx.enqueue(&NewOutbox {
                    ticket,
                    message: out_row,
                    kind: "acknowledgement",
                    envelope_from: &out.envelope_from,
                    recipients: &out.recipients,
                    now,
                })?;
                tx.record(
                    &Event {
                        outbox: Some(outbox),
                        ..event("ack.queued", format!("to {}", out.recipients.join(", ")))
                    },
                    now,
                )?;
                acknowledgement = Some(outbox);
            }
            Err(err) => tx.record(&event("ack.not_sent", err.to_string()), now)?,
        }
    }
    Ok(Outcome::Stored {
        ticket,
        created,
        threading,
        class,
        acknowledgement,
    })
}

/// Looks up what threading needs: tickets of referenced messages (newest reference first)
/// and the ticket named by a subject tag with its participants.
fn candidates(
    tx: &Tx<'_>,
    parsed: &ParsedMessage,
    tag_prefix: &str,
) -> Result<Candidates, StoreError> {
    let mut referenced: Vec<String> = parsed.in_reply_to.clone();
    referenced.extend(parsed.references.iter().rev().cloned());
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

/// The sender and everyone copied, except the support address itself (lower case).
fn participants<'p>(parsed: &'p ParsedMessage, support_address: &str) -> Vec<&'p Person> {
    parsed
        .from
        .iter()
        .chain(parsed.to.iter())
        .chain(parsed.cc.iter())
        .filter(|p| p.address != support_address)
        .collect()
}
