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

use crate::agent::{self, Author, sign::Signer};
use crate::classify::{Class, classify};
use crate::config::{Agent, Config};
use crate::language::{self, Choice, Evidence};
use crate::model::{MessageRowId, OutboxId, Person, TicketId};
use crate::parse::{ParsedMessage, parse};
use crate::policy::{Arrival, Inbound, Role, TicketAction, decide};
use crate::render::{
    self, AckFor, NoteFor, NoticeFor, NotificationFor, Outgoing, RenderError, ReplyFor,
};
use crate::store::{
    Checkpoint, ContactSeen, Event, NewMessage, NewOutbox, NewTicket, Store, StoreError, Tx,
    dedupe_key,
};
use crate::thread::{self, Candidates, Threading};

/// Where an inbound message was fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub mailbox: String,
    pub uidvalidity: u32,
    pub uid: u32,
    /// Whether the message was already in the folder at the first start.
    pub arrival: Arrival,
}

/// What ingesting a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        ticket: TicketId,
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
        /// Backlog mail imported without acknowledgement, deadline or notification.
        quiet: bool,
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

    let signer = config.agents.relay.as_ref().map(|relay| {
        Signer::new(
            relay.secret.expose().as_bytes(),
            &config.support.address,
            &relay.separator,
        )
    });
    let mut author = agent::recognise(parsed, &config.agents, signer.as_ref());
    let sender = parsed.from.as_ref().map(|p| p.address.as_str());
    let mut state = None;
    if let Author::Verified { agent, ticket, .. } = &author {
        state = tx.ticket_state(*ticket)?;
        if state.is_none() {
            author = Author::Refused {
                ticket: *ticket,
                tell: Some(agent.clone()),
                reason: format!("ticket {ticket} does not exist"),
                from_agent: true,
            };
        }
    }
    let threading = match (&author, &state) {
        (Author::Verified { ticket, .. }, Some(_)) => Threading::Signed(*ticket),
        _ => {
            let candidates = candidates(tx, parsed, &config.support.tag_prefix)?;
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
    let text = matches!(author, Author::Verified { .. })
        .then(|| agent::reply::read(&parsed.text, &config.agents));
    let recipients: Vec<String> = parsed
        .to
        .iter()
        .chain(&parsed.cc)
        .map(|p| p.address.clone())
        .collect();
    let team_mailbox = state
        .as_ref()
        .map_or(source.mailbox.as_str(), |s| &s.mailbox);
    let decision = decide(
        &Inbound {
            class: &class,
            author: &author,
            threading,
            ticket: state.as_ref(),
            text: text.as_ref(),
            recipients: &recipients,
            sent: parsed.date,
            arrival: source.arrival,
        },
        &config.policy,
        config.agents.team_for(
            config
                .mailbox(team_mailbox)
                .map_or(team_mailbox, |m| &m.account),
        ),
        now,
    );
    // A customer's own message (not an agent's, not automatic mail) tells their language.
    let customer = parsed
        .from
        .as_ref()
        .filter(|_| decision.role == Role::Sender(Class::Customer) && author.agent().is_none());
    let language = match customer {
        Some(person) => {
            let default = config
                .mailbox(team_mailbox)
                .map_or(config.support.language, |m| m.language);
            let evidence = Evidence {
                content_language: parsed.content_language.as_deref(),
                subject: &parsed.subject,
                text: &parsed.text,
            };
            let contact = tx.contact_language(&person.address)?;
            Some(language::choose(&evidence, contact, default))
        }
        None => None,
    };

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
                language: language.as_ref().map(|c| (c.lang, c.source)),
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
    if customer.is_some() {
        for person in participants(parsed, &support_address) {
            let role = if Some(person.address.as_str()) == sender {
                "customer"
            } else {
                "cc"
            };
            tx.add_participant(ticket, person, role)?;
        }
    }
    let role_text = decision.role.as_str();
    let from_agent = author
        .agent()
        .filter(|_| decision.role != Role::Sender(class.clone()));
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
        class: &role_text,
        defects: &defects.join(" "),
        body_text: text.as_ref().map_or(&parsed.text, |t| &t.body),
        raw,
        internal: decision.role.internal(),
        agent: from_agent,
    })?;
    let out = Effects {
        tx,
        config,
        mailbox,
        ticket,
        message,
        now,
    };
    if created {
        out.record("ticket.created", String::new())?;
    }
    if let Some(choice) = language.as_ref().filter(|_| created || language_changed) {
        out.record(
            "ticket.language",
            format!("{}: {}", choice.lang, choice.detail),
        )?;
    }
    out.record(
        "message.received",
        format!("{role_text}; {}{}", threading.describe(), describe(&author)),
    )?;
    if let Some((kind, due_at)) = decision.deadline {
        tx.insert_deadline(ticket, message, kind.as_str(), due_at)?;
    }
    if let Some(at) = decision.answered_at {
        let met = tx.answered(ticket, at)?;
        out.record(
            "agent.answered",
            format!(
                "{} answered at {at} ({}); {met} deadline(s) met",
                author.agent().unwrap_or("?"),
                if decision.relay {
                    "relayed"
                } else {
                    "Reply All, not relayed"
                }
            ),
        )?;
    }
    if let Some(status) = decision.status {
        out.record("ticket.status", status.as_str().to_string())?;
    }
    if let Some(agent) = &decision.assign {
        out.record("ticket.assigned", agent.clone())?;
    }
    if let Some(priority) = decision.priority {
        out.record("ticket.priority", priority.as_str().to_string())?;
    }
    if let Some(lang) = decision.language
        && tx.set_ticket_language(ticket, lang, language::Source::Agent, now)?
    {
        out.record(
            "ticket.language",
            format!("{lang}: set by {}", author.agent().unwrap_or("an agent")),
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
    let Some(state) = tx.ticket_state(ticket)? else {
        return Err(StoreError::Corrupt(format!(
            "ticket {ticket} vanished inside its own transaction"
        )));
    };
    let mut queued = Vec::new();
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
            lang: state.language.unwrap_or(config.support.language),
        };
        let rendered = render::acknowledgement(&config.support, &config.templates, ack, now);
        acknowledgement = out.queue(OutKind::Acknowledgement, None, rendered)?;
        queued.extend(acknowledgement);
    }
    let attachments =
        if decision.notify.is_empty() && !decision.relay && decision.note_to.is_empty() {
            Vec::new()
        } else {
            crate::parse::attachments(raw)
        };
    if let (Some(signer), Some(customer)) = (&signer, &parsed.from)
        && !decision.notify.is_empty()
    {
        let history = tx.earlier_tickets(&customer.address, Some(ticket), 5)?;
        let waiting_since = tx.waiting_since(ticket)?.unwrap_or(now);
        for agent in agents_named(config, &decision.notify) {
            let rendered = render::notification(
                &config.support,
                &config.templates,
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
                    due_at: decision.deadline.map(|(_, due)| due),
                    history: &history,
                    attachments: &attachments,
                },
                now,
            );
            queued.extend(out.queue(OutKind::Notification, Some(&agent.address), rendered)?);
        }
    }
    let author_agent = author.agent().and_then(|a| config.agents.by_address(a));
    if let (Some(signer), Some(agent), Some(text)) = (&signer, author_agent, &text) {
        if decision.relay {
            let answers = tx.latest_customer_message(ticket)?;
            let rendered = render::reply(
                &config.support,
                &config.templates,
                signer,
                ReplyFor {
                    ticket: &state,
                    agent,
                    body: &text.body,
                    answers: answers.as_ref(),
                    attachments: &attachments,
                },
                now,
            );
            queued.extend(out.queue(OutKind::Reply, None, rendered)?);
        }
        for to in agents_named(config, &decision.note_to) {
            let rendered = render::note(
                &config.support,
                &config.templates,
                signer,
                to,
                NoteFor {
                    ticket: &state,
                    author: agent,
                    body: &text.body,
                    attachments: &attachments,
                },
                now,
            );
            queued.extend(out.queue(OutKind::Note, Some(&to.address), rendered)?);
        }
    }
    if let Some((agent, notice)) = &decision.tell
        && let Some(agent) = config.agents.by_address(agent)
    {
        let rendered = render::notice(
            &config.support,
            &config.templates,
            NoticeFor {
                ticket: &state,
                agent,
                notice,
                subject: &parsed.subject,
                message_id: parsed.message_id.as_deref(),
            },
            now,
        );
        queued.extend(out.queue(OutKind::Notice, Some(&agent.address), rendered)?);
    }
    Ok(Outcome::Stored {
        ticket,
        created,
        threading,
        class,
        role: decision.role,
        acknowledgement,
        queued,
        language,
        quiet: decision.quiet,
    })
}

/// Writes outgoing mail of one inbound message: each rendered message becomes an outbound
/// message row and an outbox row in the ingest transaction, or an event saying why not.
struct Effects<'a, 't> {
    tx: &'a Tx<'t>,
    config: &'a Config,
    mailbox: Option<&'a str>,
    ticket: TicketId,
    message: MessageRowId,
    now: Timestamp,
}

impl Effects<'_, '_> {
    fn record(&self, kind: &'static str, detail: String) -> Result<(), StoreError> {
        self.record_outbox(kind, None, detail)
    }

    fn record_outbox(
        &self,
        kind: &'static str,
        outbox: Option<OutboxId>,
        detail: String,
    ) -> Result<(), StoreError> {
        self.tx.record(
            &Event {
                kind,
                mailbox: self.mailbox,
                ticket: Some(self.ticket),
                message: Some(self.message),
                outbox,
                detail,
            },
            self.now,
        )
    }

    /// Queues `rendered`; mail to an `agent` is internal. A render failure is recorded as an
    /// event instead.
    fn queue(
        &self,
        kind: OutKind,
        agent: Option<&str>,
        rendered: Result<Outgoing, RenderError>,
    ) -> Result<Option<OutboxId>, StoreError> {
        let out = match rendered {
            Ok(out) => out,
            Err(err) => {
                self.record(kind.events().1, err.to_string())?;
                return Ok(None);
            }
        };
        let support = Person::new(&out.envelope_from, Some(&self.config.support.name));
        let row = self.tx.insert_message(&NewMessage {
            ticket: self.ticket,
            outbound: true,
            dedupe_key: &dedupe_key(Some(&out.message_id), &out.raw),
            message_id: Some(&out.message_id),
            source: None,
            from: Some(&support),
            subject: &out.subject,
            sent_date: Some(self.now),
            received_at: self.now,
            in_reply_to: &[],
            references: &[],
            class: kind.as_str(),
            defects: "",
            body_text: &out.text,
            raw: &out.raw,
            internal: agent.is_some(),
            agent,
        })?;
        let outbox = self.tx.enqueue(&NewOutbox {
            ticket: self.ticket,
            message: row,
            kind: kind.as_str(),
            envelope_from: &out.envelope_from,
            recipients: &out.recipients,
            now: self.now,
        })?;
        self.record_outbox(
            kind.events().0,
            Some(outbox),
            format!("to {}", out.recipients.join(", ")),
        )?;
        Ok(Some(outbox))
    }
}

/// The kinds of mail an inbound message can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutKind {
    Acknowledgement,
    Notification,
    Reply,
    Note,
    Notice,
}

impl OutKind {
    /// The outbox kind and outbound message class.
    fn as_str(self) -> &'static str {
        match self {
            OutKind::Acknowledgement => "acknowledgement",
            OutKind::Notification => "notification",
            OutKind::Reply => "reply",
            OutKind::Note => "note",
            OutKind::Notice => "notice",
        }
    }

    /// The events recorded when it is queued, and when it could not be rendered.
    fn events(self) -> (&'static str, &'static str) {
        match self {
            OutKind::Acknowledgement => ("ack.queued", "ack.not_sent"),
            OutKind::Notification => ("notification.queued", "notification.not_sent"),
            OutKind::Reply => ("reply.queued", "reply.not_sent"),
            OutKind::Note => ("note.queued", "note.not_sent"),
            OutKind::Notice => ("notice.queued", "notice.not_sent"),
        }
    }
}

/// The configured agents with these primary addresses.
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
