//! The `write` stage: the message row, the ticket created or changed, its participants,
//! deadline, survey score and met deadlines, and the marks on the mail a bounce returns.
//! What each write found (a deadline met, a language changed) is kept in [`Written`] for
//! the events.

use jiff::Timestamp;

use super::gather::{Facts, customer};
use crate::agent::boundary::Boundary;
use crate::agent::reply::CcChange;
use crate::catalog::EventKind;
use crate::config::Deadlines;
use crate::language::{self, Choice};
use crate::model::{MessageRowId, OutboxId, Person, TicketId, TicketStatus};
use crate::policy::{Decision, TicketAction};
use crate::schedule;
use crate::store::{ContactSeen, Met, NewMessage, NewTicket, OutboundSent, StoreError, Tx};
use crate::templates::kinds::MailKind;
use crate::thread::Threading;

/// What the writes did.
#[derive(Debug, Clone)]
pub(super) struct Written {
    /// `None`: kept on no ticket.
    pub ticket: Option<TicketId>,
    pub created: bool,
    pub message: MessageRowId,
    /// The class stored with the message.
    pub role_text: String,
    /// A later customer message changed the ticket's language.
    pub language_changed: bool,
    pub bounce: BounceReport,
    /// A survey answer: whether it was recorded (false: the ticket's score already was).
    pub survey_recorded: Option<bool>,
    /// An agent's answer: the deadlines it met.
    pub met: Option<Met>,
    /// The deadline event a status change caused.
    pub status_event: Option<(EventKind, String)>,
    /// An agent's `#lang` changed the ticket's language.
    pub agent_language_set: bool,
    /// People the message copied who were not added (past `max_cc`).
    pub not_added: Vec<String>,
    /// `policy.max_cc_per_message`.
    pub max_cc: usize,
}

/// What a bounce says failed, and the mail of ours it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct BounceReport {
    /// A delay warning: `address: action status diagnostic` per recipient.
    pub delays: Vec<String>,
    /// `address: status diagnostic` per failed recipient.
    pub failed: Vec<String>,
    /// Each outbound mail returned, with what failed of it.
    pub marks: Vec<(OutboxId, String)>,
    /// It returns mail that told a customer something (its agents hear of it).
    pub to_customer: bool,
}

impl BounceReport {
    /// The outbox row the failure events name.
    pub fn outbox(&self) -> Option<OutboxId> {
        self.marks.first().map(|(outbox, _)| *outbox)
    }
}

/// Writes a message kept on no ticket (a bounce of nothing we sent, or a refused key naming
/// no ticket).
pub(super) fn unfiled(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    decision: &Decision,
    key: &str,
    now: Timestamp,
) -> Result<Written, StoreError> {
    let role_text = role_text(facts, decision);
    let message = insert_message(tx, facts, decision, key, None, &role_text, now)?;
    let bounce = mark_bounced(tx, facts, now)?;
    Ok(Written {
        ticket: None,
        created: false,
        message,
        role_text,
        language_changed: false,
        bounce,
        survey_recorded: None,
        met: None,
        status_event: None,
        agent_language_set: false,
        not_added: Vec::new(),
        max_cc: 0,
    })
}

/// Writes a message on its ticket (created here for [`TicketAction::Create`]) and what the
/// decision changes.
pub(super) struct Filed<'a> {
    pub decision: &'a Decision,
    pub language: Option<&'a Choice>,
    pub boundary: &'a Boundary,
    pub deadlines: &'a Deadlines,
    pub key: &'a str,
    /// `policy.max_cc_per_message`.
    pub max_cc: usize,
}

pub(super) fn filed(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    filed: Filed<'_>,
    now: Timestamp,
) -> Result<Written, StoreError> {
    let decision = filed.decision;
    let (ticket, created) = match decision.ticket {
        TicketAction::Append(id) => (id, false),
        _ => (create_ticket(tx, facts, &filed, now)?, true),
    };
    change_ticket(tx, ticket, decision, now)?;
    let language_changed = match filed.language {
        Some(choice) if !created => {
            let current = facts.ticket.as_ref().and_then(|s| s.language);
            (choice.source.is_evidence() || current.is_none())
                && current != Some(choice.lang)
                && tx.set_ticket_language(ticket, choice.lang, choice.source, now)?
        }
        _ => false,
    };
    let customer = customer(facts, decision);
    if let (Some(person), Some(choice)) = (customer, filed.language) {
        tx.contact_seen(&ContactSeen {
            person,
            language: choice.source.is_evidence().then_some(choice.lang),
            new_ticket: created,
            now,
        })?;
    }
    // A message that joins only by its subject tag names nobody new (its From may be forged),
    // and one message adds at most `max_cc` people besides its sender.
    let mut not_added = Vec::new();
    if customer.is_some() && !matches!(facts.threading, Threading::Tag(_)) {
        let known = facts.ticket.as_ref().map_or(&[][..], |s| &s.customers[..]);
        let people = participants(facts.parsed, filed.boundary);
        let (added, left_out) = cap_participants(people, facts.sender(), known, filed.max_cc);
        not_added = left_out.into_iter().map(|p| p.address.clone()).collect();
        for person in added {
            let role = if Some(person.address.as_str()) == facts.sender() {
                "customer"
            } else {
                "cc"
            };
            tx.add_participant(ticket, person, role)?;
        }
    }
    let role_text = role_text(facts, decision);
    let message = insert_message(
        tx,
        facts,
        decision,
        filed.key,
        Some(ticket),
        &role_text,
        now,
    )?;
    let bounce = mark_bounced(tx, facts, now)?;
    if let Some(deadline) = &decision.deadline {
        tx.insert_deadline(ticket, message, deadline)?;
    }
    let survey_recorded = match decision.survey {
        Some(score) => Some(tx.record_survey(ticket, score, now)?),
        None => None,
    };
    let met = match decision.answered_at {
        Some(at) => Some(tx.answered(ticket, at)?),
        None => None,
    };
    // After the answer: an answer with #resolve meets the deadlines it answers rather than
    // cancelling them.
    let status_event = match decision.status {
        Some(status) => {
            let from = facts
                .ticket
                .as_ref()
                .map_or(TicketStatus::Open, |s| s.status);
            schedule::status_changed(tx, ticket, from, status, filed.deadlines, now)?
        }
        None => None,
    };
    let agent_language_set = match decision.language {
        Some(lang) => tx.set_ticket_language(ticket, lang, language::Source::Agent, now)?,
        None => false,
    };
    Ok(Written {
        ticket: Some(ticket),
        created,
        message,
        role_text,
        language_changed,
        bounce,
        survey_recorded,
        met,
        status_event,
        agent_language_set,
        not_added,
        max_cc: filed.max_cc,
    })
}

fn create_ticket(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    filed: &Filed<'_>,
    now: Timestamp,
) -> Result<TicketId, StoreError> {
    let parsed = facts.parsed;
    let subject = if parsed.subject.is_empty() {
        "(no subject)"
    } else {
        &parsed.subject
    };
    // Nobody inside (an agent, one of our addresses, a key) is ever a ticket's customer (a
    // refused key never opens a ticket).
    let customer = parsed
        .from
        .as_ref()
        .filter(|p| !filed.boundary.is_inside(&p.address));
    tx.create_ticket(&NewTicket {
        mailbox: &facts.source.mailbox,
        subject,
        customer,
        language: filed.language.map(|c| (c.lang, c.source)),
        address: facts.written_to.as_deref(),
        now,
    })
}

/// The decision's status, assignment, priority and Cc changes.
fn change_ticket(
    tx: &Tx<'_>,
    ticket: TicketId,
    decision: &Decision,
    now: Timestamp,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// The class stored with the message.
fn role_text(facts: &Facts<'_>, decision: &Decision) -> String {
    if facts.released {
        format!("released from quarantine; {}", decision.role.as_str())
    } else {
        decision.role.as_str()
    }
}

fn insert_message(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    decision: &Decision,
    key: &str,
    ticket: Option<TicketId>,
    class: &str,
    now: Timestamp,
) -> Result<MessageRowId, StoreError> {
    let parsed = facts.parsed;
    let defects: Vec<&str> = parsed.defects.iter().map(|d| d.as_str()).collect();
    let from_agent = facts
        .author
        .agent()
        .filter(|_| decision.role != crate::policy::Role::Sender(facts.class.clone()));
    let body_text = match ticket {
        Some(_) => facts.text.as_ref().map_or(&parsed.text, |t| &t.body),
        None => &parsed.text,
    };
    tx.insert_message(&NewMessage {
        ticket,
        class,
        defects: &defects.join(" "),
        body_text,
        internal: decision.role.internal(),
        agent: from_agent,
        ..received(facts.source, parsed, facts.raw, key, now)
    })
}

/// The row of an inbound message as it arrived; the caller sets its ticket, class, defects,
/// text and who may see it.
pub(super) fn received<'a>(
    source: &'a super::Source,
    parsed: &'a crate::parse::ParsedMessage,
    raw: &'a [u8],
    key: &'a str,
    now: Timestamp,
) -> NewMessage<'a> {
    NewMessage {
        ticket: None,
        outbound: false,
        dedupe_key: key,
        message_id: parsed.message_id.as_deref(),
        source: Some((&source.mailbox, source.imap)),
        from: parsed.from.as_ref(),
        subject: &parsed.subject,
        sent_date: parsed.date,
        received_at: now,
        in_reply_to: &parsed.in_reply_to,
        references: &parsed.references,
        class: "",
        defects: "",
        body_text: "",
        attachments: &parsed.attachment_names,
        raw,
        internal: false,
        agent: None,
    }
}

/// For a bounce: marks the outbound mail it returns with what failed of it.
fn mark_bounced(
    tx: &Tx<'_>,
    facts: &Facts<'_>,
    now: Timestamp,
) -> Result<BounceReport, StoreError> {
    if !matches!(facts.class, crate::classify::Class::Bounce(_)) {
        return Ok(BounceReport::default());
    }
    let report = bounce_report(facts.parsed, &facts.returned);
    for (outbox, detail) in &report.marks {
        tx.mark_bounced(*outbox, detail, now)?;
    }
    Ok(report)
}

/// What a bounce says failed, given the mail of ours it returns (`ours`). A bounce that names
/// nobody means the recipients of that mail failed; one that only delays fails nothing.
pub(super) fn bounce_report(
    parsed: &crate::parse::ParsedMessage,
    ours: &[OutboundSent],
) -> BounceReport {
    let report = &parsed.report;
    let named_failed: Vec<_> = report.recipients.iter().filter(|r| r.failed()).collect();
    if named_failed.is_empty() && !report.recipients.is_empty() {
        return BounceReport {
            delays: report
                .recipients
                .iter()
                .map(|r| format!("{}: {} {} {}", r.address, r.action, r.status, r.diagnostic))
                .collect(),
            ..BounceReport::default()
        };
    }
    let mut failed: Vec<String> = named_failed
        .iter()
        .map(|r| {
            let text = format!("{} {}", r.status, r.diagnostic);
            format!("{}: {}", r.address, text.trim())
        })
        .collect();
    if failed.is_empty() {
        failed = ours
            .iter()
            .flat_map(|o| o.recipients.iter())
            .map(|address| format!("{address}: (the report names no recipient)"))
            .collect();
    }
    let marks = ours
        .iter()
        .map(|sent| {
            let about: Vec<&str> = failed
                .iter()
                .filter(|f| {
                    sent.recipients
                        .iter()
                        .any(|r| f.starts_with(&format!("{r}:")))
                })
                .map(String::as_str)
                .collect();
            let detail = if about.is_empty() {
                failed.join("; ")
            } else {
                about.join("; ")
            };
            (sent.outbox, detail)
        })
        .collect();
    BounceReport {
        delays: Vec::new(),
        to_customer: ours
            .iter()
            .any(|o| MailKind::from_outbox(&o.kind).is_some_and(MailKind::bounce_tells_agents)),
        failed,
        marks,
    }
}

/// The sender and everyone copied, except anyone inside (our addresses, agents, keys) and
/// addresses mail cannot be sent to (one such Cc would stop every answer on the ticket).
fn participants<'p>(
    parsed: &'p crate::parse::ParsedMessage,
    boundary: &Boundary,
) -> Vec<&'p Person> {
    parsed
        .from
        .iter()
        .chain(parsed.to.iter())
        .chain(parsed.cc.iter())
        .filter(|p| !boundary.is_inside(&p.address))
        .filter(|p| p.address.parse::<lettre::Address>().is_ok())
        .collect()
}

/// Splits a message's `people` into those it adds to the ticket and those it may not: the
/// sender and people already on the ticket always pass; of the others, the first `max`
/// (each address once).
fn cap_participants<'p>(
    people: Vec<&'p Person>,
    sender: Option<&str>,
    known: &[Person],
    max: usize,
) -> (Vec<&'p Person>, Vec<&'p Person>) {
    let mut seen = std::collections::HashSet::new();
    let (mut added, mut left_out) = (Vec::new(), Vec::new());
    let mut new = 0;
    for person in people {
        if !seen.insert(person.address.as_str()) {
            continue;
        }
        let address = Some(person.address.as_str());
        if address == sender || known.iter().any(|k| k.address == person.address) {
            added.push(person);
        } else if new < max {
            new += 1;
            added.push(person);
        } else {
            left_out.push(person);
        }
    }
    (added, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mail copying many people adds its sender, people already on the ticket and the first
    /// `max` others, each once; the rest are left out in order.
    #[test]
    fn one_message_adds_at_most_max_cc_people_besides_its_sender() {
        let person = |a: &str| Person::new(a, None);
        let sender = person("mona@customer.test");
        let known = [person("old@customer.test")];
        let copied: Vec<Person> = (0..5).map(|i| person(&format!("cc{i}@x.test"))).collect();
        let twice = person("cc0@x.test");
        let people: Vec<&Person> = [&sender, &copied[0], &twice, &known[0]]
            .into_iter()
            .chain(&copied[1..])
            .collect();
        let addresses = |list: Vec<&Person>| -> Vec<String> {
            list.into_iter().map(|p| p.address.clone()).collect()
        };
        let (added, left_out) =
            cap_participants(people.clone(), Some("mona@customer.test"), &known, 2);
        assert_eq!(
            addresses(added),
            [
                "mona@customer.test",
                "cc0@x.test",
                "old@customer.test",
                "cc1@x.test"
            ]
        );
        assert_eq!(
            addresses(left_out),
            ["cc2@x.test", "cc3@x.test", "cc4@x.test"]
        );
        let (added, left_out) = cap_participants(people, Some("mona@customer.test"), &known, 10);
        assert_eq!(added.len(), 7);
        assert!(left_out.is_empty());
    }
}
