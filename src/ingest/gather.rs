//! The `gather` stage: every read the decision needs, looked up once into [`Facts`].

use jiff::Timestamp;

use super::{LIMIT_WINDOW, Message, Source};
use crate::agent::Author;
use crate::agent::boundary::Boundary;
use crate::agent::reply::leak::{Guard, Leak, Note};
use crate::agent::reply::{AgentText, Command};
use crate::classify::{Class, NoAck, no_acknowledgement};
use crate::config::{Config, Deadlines, Desk};
use crate::language::{self, Choice, Evidence, Lang};
use crate::model::{TicketId, TicketState};
use crate::parse::{Carried, ParsedMessage};
use crate::policy::{Decision, Inbound, Role, SenderLoad};
use crate::render::html::Html;
use crate::store::{OutboundSent, StoreError, Tx};
use crate::templates::Templates;
use crate::thread::{self, Candidates, Threading};

/// One inbound message with everything the store knew about it before it was written.
#[derive(Debug)]
pub(super) struct Facts<'a> {
    pub source: &'a Source,
    pub parsed: &'a ParsedMessage,
    pub raw: &'a [u8],
    /// An admin released it from quarantine.
    pub released: bool,
    pub class: Class,
    /// Who wrote it; a verified key naming a ticket that does not exist is refused here.
    pub author: Author,
    pub threading: Threading,
    /// The ticket it threads into (or that its key names), as it stood before.
    pub ticket: Option<TicketState>,
    /// What a verified agent wrote.
    pub text: Option<AgentText>,
    /// Everyone in To and Cc.
    pub recipients: Vec<String>,
    /// Which of our addresses the ticket is on: its own, or for a new one, the one written to.
    pub written_to: Option<String>,
    pub load: SenderLoad,
    pub no_ack: Option<NoAck>,
    /// The score it gives, when its ticket awaits a survey answer.
    pub survey_score: Option<u8>,
    /// What a verified answer carries that must not reach the customer.
    pub leak: Option<Leak>,
    /// The language of a customer's own words (from the analysis).
    pub detected: Option<(Lang, String)>,
    /// The attachments mail passed on carries.
    pub attachments: Carried,
    /// The sender's HTML (an agent's answer as they wrote it, or a customer's message).
    pub html: Option<Html>,
    /// For a bounce: our mail it returns.
    pub returned: Vec<OutboundSent>,
}

impl Facts<'_> {
    pub fn sender(&self) -> Option<&str> {
        self.parsed.from.as_ref().map(|p| p.address.as_str())
    }

    /// The mailbox whose team and policy the ticket follows.
    pub fn team_mailbox(&self) -> &str {
        self.ticket
            .as_ref()
            .map_or(self.source.mailbox.as_str(), |s| &s.mailbox)
    }

    /// What an answer to the customer would relay: a verified agent's text that is no note.
    pub fn relayable(&self) -> Option<&AgentText> {
        match (&self.author, &self.text) {
            (
                Author::Verified {
                    to_notes: false, ..
                },
                Some(text),
            ) if !text.note && !text.body.is_empty() => Some(text),
            _ => None,
        }
    }

    /// The agent's HTML answer, when they wrote one (relayed with its text alternative).
    pub fn answer_html(&self) -> Option<&Html> {
        self.relayable().and(self.html.as_ref())
    }

    /// The words relayed: the text of the agent's HTML answer, else their text.
    pub fn answer_body(&self) -> Option<&str> {
        let text = self.relayable()?;
        Some(self.answer_html().map_or(&text.body, |h| &h.text))
    }

    pub fn inbound(&self) -> Inbound<'_> {
        Inbound {
            class: &self.class,
            author: &self.author,
            threading: self.threading,
            ticket: self.ticket.as_ref(),
            text: self.text.as_ref(),
            recipients: &self.recipients,
            sent: self.parsed.date,
            no_ack: self.no_ack.as_ref(),
            load: self.load,
            arrival: self.source.arrival,
            survey_score: self.survey_score,
            leak: self.leak.as_ref(),
        }
    }
}

/// Looks up the ticket, the sender's load, the survey and the leak check; returns the facts,
/// the desk the ticket's mail goes out from, and the mailbox's deadlines.
pub(super) fn gather<'a>(
    tx: &Tx<'_>,
    config: &'a Config,
    message: Message<'a>,
    boundary: &Boundary,
    now: Timestamp,
) -> Result<(Facts<'a>, Desk<'a>, &'a Deadlines), StoreError> {
    let Message {
        source,
        parsed,
        class,
        analysis,
        raw,
        released,
    } = message;
    let (author, threading, ticket) = resolve(tx, config, parsed, &class, analysis.author)?;
    if let Author::Refused { ticket, reason, .. } = &author {
        tracing::warn!(
            mailbox = source.mailbox,
            message_id = parsed.message_id.as_deref().unwrap_or(""),
            ticket = ticket.0,
            "reply key refused, treated as ordinary mail: {reason}"
        );
    }
    let mut text = analysis
        .agent_text
        .filter(|_| matches!(author, Author::Verified { .. }));
    if let (Some(text), Threading::Signed(ticket)) = (text.as_mut(), threading) {
        check_merges(tx, ticket, text)?;
    }
    let recipients = parsed
        .to
        .iter()
        .chain(&parsed.cc)
        .map(|p| p.address.clone())
        .collect();
    let written_to = match &ticket {
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
    let mut facts = Facts {
        source,
        parsed,
        raw,
        released,
        class,
        author,
        threading,
        ticket,
        text,
        recipients,
        written_to,
        load: SenderLoad::default(),
        no_ack: no_acknowledgement(parsed, &config.policy.no_ack_domains),
        survey_score: None,
        leak: None,
        detected: analysis.detected,
        attachments: analysis.attachments,
        html: analysis.html,
        returned: Vec::new(),
    };
    let desk = config.desk(facts.team_mailbox(), facts.written_to.as_deref());
    let deadlines = config
        .mailbox(facts.team_mailbox())
        .map_or(&config.deadlines, |m| &m.deadlines);
    if let Some(address) = facts.sender() {
        facts.load = tx.sender_load(address, now - LIMIT_WINDOW)?;
    }
    facts.survey_score = match &facts.ticket {
        Some(ticket) if facts.class.is_customer() && tx.survey_awaited(ticket.id)? => {
            analysis.survey_score
        }
        _ => None,
    };
    facts.leak = leak(tx, &facts, boundary, desk.templates)?;
    if matches!(facts.class, Class::Bounce(_)) {
        facts.returned = tx.outbound_by_message_ids(&returned_ids(parsed))?;
    }
    Ok((facts, desk, deadlines))
}

/// Checks what only the store knows: `#merge N` names another ticket that exists and was not
/// merged itself. A failed check becomes an error for the agent, so nothing of the mail is
/// applied. (`#forward`'s address was checked when the text was read.)
fn check_merges(tx: &Tx<'_>, ticket: TicketId, text: &mut AgentText) -> Result<(), StoreError> {
    let merges: Vec<TicketId> = text
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Merge(into) => Some(*into),
            _ => None,
        })
        .collect();
    for into in merges {
        if into == ticket {
            text.errors
                .push(format!("`#merge {into}`: that is this ticket"));
        } else if tx.ticket_state(into)?.is_none() {
            text.errors
                .push(format!("`#merge {into}`: there is no ticket {into}"));
        } else if let Some(later) = tx.merged_into(into)? {
            text.errors.push(format!(
                "`#merge {into}`: ticket {into} was merged into {later}; merge into {later}"
            ));
        }
    }
    Ok(())
}

/// Who wrote it, how it threads and the ticket it threads into. A verified key naming a
/// ticket that does not exist is refused; a refused key threads only by the ticket it claims.
fn resolve(
    tx: &Tx<'_>,
    config: &Config,
    parsed: &ParsedMessage,
    class: &Class,
    mut author: Author,
) -> Result<(Author, Threading, Option<TicketState>), StoreError> {
    if let Author::Verified { ticket, .. } = &mut author
        && let Some(into) = tx.merged_into(*ticket)?
    {
        // A key for a merged ticket answers the ticket it joined.
        *ticket = into;
    }
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
            let candidates = candidates(tx, parsed, class, &config.support.tag_prefix)?;
            let sender = parsed.from.as_ref().map(|p| p.address.as_str());
            let threading = thread::resolve(sender, &candidates);
            state = match threading.ticket() {
                Some(id) => tx.ticket_state(id)?,
                None => None,
            };
            threading
        }
    };
    Ok((author, threading, state))
}

/// What a verified answer to the customer carries that must not reach them: the wording of
/// our mail to agents, the ticket's internal notes, or an address only people inside see.
fn leak(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    boundary: &Boundary,
    templates: &Templates,
) -> Result<Option<Leak>, StoreError> {
    // The leak check reads exactly what would be relayed.
    match (facts.answer_body(), &facts.ticket) {
        (Some(body), Some(ticket)) => Ok(relay_leak(tx, ticket.id, body, templates)?
            .or_else(|| boundary.inside_address_in(body).map(Leak::Address))),
        _ => Ok(None),
    }
}

/// What an agent's answer on `ticket` carries that must not reach its customers: the
/// wording of our mail to agents, or the ticket's internal notes.
fn relay_leak(
    tx: &Tx<'_>,
    ticket: TicketId,
    body: &str,
    templates: &Templates,
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
        Some(id) => {
            // Mail under a merged ticket's tag goes to the ticket it joined.
            let id = tx.merged_into(id)?.unwrap_or(id);
            tx.participants(id)?.map(|who| (id, who))
        }
        None => None,
    };
    Ok(Candidates {
        by_reference,
        tagged,
    })
}

/// The Message-IDs of the mail a bounce returns.
fn returned_ids(parsed: &ParsedMessage) -> Vec<String> {
    let mut ids = parsed.report.original_ids.clone();
    ids.extend(parsed.in_reply_to.iter().cloned());
    ids.extend(parsed.references.iter().cloned());
    ids
}

/// The language of a customer's own message (not an agent's, not automatic mail), chosen
/// from its evidence, the contact's last language and the desk's default.
pub(super) fn language(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    decision: &Decision,
    default: Lang,
) -> Result<Option<Choice>, StoreError> {
    let Some(person) = customer(facts, decision) else {
        return Ok(None);
    };
    let evidence = Evidence {
        content_language: facts.parsed.content_language.as_deref(),
        detected: facts.detected.clone(),
    };
    let contact = tx.contact_language(&person.address)?;
    Ok(Some(language::choose(&evidence, contact, default)))
}

/// The sender, when the message is a customer's own (not an agent's, not automatic mail).
pub(super) fn customer<'p>(
    facts: &Facts<'p>,
    decision: &Decision,
) -> Option<&'p crate::model::Person> {
    facts.parsed.from.as_ref().filter(|_| {
        decision.role == Role::Sender(Class::Customer) && facts.author.agent().is_none()
    })
}
