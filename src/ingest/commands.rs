//! What `#merge` and `#forward` do inside the ingest transaction, and the answers of third
//! parties a ticket was forwarded to.

use jiff::Timestamp;
use serde_json::json;

use super::effects::{Effects, agents_named};
use super::{Message, Outcome, Source};
use crate::agent::sign::Signer;
use crate::catalog::EventKind;
use crate::config::{Agent, Config};
use crate::model::{TicketId, TicketState};
use crate::parse::{Attachment, ParsedMessage};
use crate::policy::Role;
use crate::render::{self, CustomerMail, ForwardFor, NoteFor};
use crate::store::{Event, NewMessage, StoreError, Tx, dedupe_key};
use crate::templates::kinds::MailKind;
use crate::thread::Threading;

/// `#forward`: the conversation (the customer's mail and the answers) goes to the third
/// party with a reply address signed for them; recorded as `ticket.forwarded`, which their
/// answers are checked against.
pub(super) fn forward(
    out: &Effects<'_, '_>,
    signer: &Signer,
    ticket: &TicketState,
    (agent, agents): (&Agent, &crate::config::Agents),
    (to, text): (&str, &str),
) -> Result<Option<crate::model::OutboxId>, StoreError> {
    let mut thread = out.tx.transcript(ticket.id)?;
    // The customer's mail and the agents' answers (as they wrote them); no notes, no
    // notifications, no acknowledgements.
    thread.retain(|m| (!m.outbound && !m.internal) || m.class == Role::AgentReply.kind());
    // The third party reads agents' names, as the customer does, not their addresses.
    for message in &mut thread {
        if let Some(known) = message.agent.as_deref().and_then(|a| agents.by_address(a)) {
            message.agent = Some(known.name.clone());
        }
    }
    let rendered = render::forward(
        out.support,
        out.templates,
        signer,
        ForwardFor {
            ticket: ticket.id,
            subject: &ticket.subject,
            agent,
            to,
            text,
            thread: &thread,
        },
        out.now,
    );
    // Internal: the customer never sees it, and it is the forwarding agent's mail; its reply
    // key is the third party's own, which is why it may carry one.
    let queued = out.queue(MailKind::Forward, Some(&agent.address), rendered)?;
    out.record_data(
        EventKind::TicketForwarded,
        format!("to {to} by {}", agent.address),
        json!({ "to": to, "by": agent.address }),
    )?;
    Ok(queued)
}

/// `#merge N`: the customer is told (in the ticket's language, under N's tag), then the
/// ticket's rows move into N and it is closed; `ticket.merged` on it sends later mail to N.
pub(super) fn merge(
    out: &Effects<'_, '_>,
    ticket: &TicketState,
    into: TicketId,
    language: crate::language::Lang,
) -> Result<Option<crate::model::OutboxId>, StoreError> {
    let tx = out.tx;
    let mut queued = None;
    if let Some(customer) = &ticket.customer {
        let answers = tx.latest_customer_message(ticket.id)?;
        let rendered = render::merged(
            out.support,
            out.templates,
            CustomerMail {
                ticket,
                customer,
                answers: answers.as_ref(),
                lang: ticket.language.unwrap_or(language),
            },
            into,
            out.now,
        );
        queued = out.queue(MailKind::Merged, None, rendered)?;
    }
    let moved = tx.merge_tickets(ticket.id, into, out.now)?;
    let detail = format!(
        "into {into}: {} message(s), {} participant(s), {} open deadline(s), {} event(s) moved",
        moved.messages, moved.participants, moved.deadlines, moved.events
    );
    // Recorded after the move, so it stays on the merged ticket.
    out.record_data(EventKind::TicketMerged, detail, json!({ "into": into.0 }))?;
    tx.record(
        &Event {
            kind: EventKind::TicketJoined,
            mailbox: Some(out.mailbox),
            ticket: Some(into),
            message: Some(out.message),
            outbox: None,
            detail: format!("ticket {} joined", ticket.id),
            data: Some(json!({ "from": ticket.id.0 })),
        },
        out.now,
    )?;
    tracing::info!(
        ticket = ticket.id.0,
        into = into.0,
        mailbox = out.mailbox,
        "ticket merged"
    );
    Ok(queued)
}

/// The answer of a third party a ticket was forwarded to, handled on its own path; `None`
/// for every other message.
pub(super) fn forwarded_answer(
    tx: &Tx<'_>,
    config: &Config,
    message: &Message<'_>,
    now: Timestamp,
) -> Result<Option<Outcome>, StoreError> {
    let (Some(third), Some(signer)) = (&message.analysis.third_party, Signer::from_config(config))
    else {
        return Ok(None);
    };
    let ticket = tx.merged_into(third.ticket)?.unwrap_or(third.ticket);
    if !tx.forwarded_to(ticket, &third.from)? {
        return Ok(None);
    }
    let files = &message.analysis.attachments.files;
    let arrived = (message.source, message.parsed, message.raw);
    third_party_answer(tx, config, arrived, (ticket, third, files), &signer, now).map(Some)
}

/// A third party's answer on a ticket forwarded to them: stored as an internal message and
/// passed to the ticket's agents (the assigned one, else the team, else every agent) as a
/// note; never to the customer, no deadline, no acknowledgement.
fn third_party_answer(
    tx: &Tx<'_>,
    config: &Config,
    (source, parsed, raw): (&Source, &ParsedMessage, &[u8]),
    (ticket, third, attachments): (TicketId, &super::analysis::ThirdParty, &[Attachment]),
    signer: &Signer,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let Some(state) = tx.ticket_state(ticket)? else {
        return Err(StoreError::Corrupt(format!(
            "ticket {ticket} was forwarded but does not exist"
        )));
    };
    let desk = config.desk(&state.mailbox, state.address.as_deref());
    let (from, body) = (third.from.as_str(), &third.words);
    let key = dedupe_key(parsed.message_id.as_deref(), raw);
    let row = tx.insert_message(&NewMessage {
        ticket: Some(ticket),
        class: Role::ThirdParty.kind(),
        body_text: body,
        internal: true,
        ..super::write::received(source, parsed, raw, &key, now)
    })?;
    tx.touch_ticket(ticket, now)?;
    let boundary = crate::agent::boundary::Boundary::from_config(config);
    let out = Effects {
        tx,
        mailbox: &source.mailbox,
        ticket: Some(ticket),
        message: row,
        now,
        support: &desk.support,
        templates: desk.templates,
        boundary: &boundary,
    };
    out.record_data(
        EventKind::MessageReceived,
        format!("third-party; answer of {from}, to whom the ticket was forwarded"),
        json!({ "class": Role::ThirdParty.kind() }),
    )?;
    let name = parsed
        .from
        .as_ref()
        .and_then(|p| p.name.clone())
        .map_or(from.to_string(), |name| format!("{name} <{from}>"));
    let author = Agent {
        name: format!("{name} (forwarded)"),
        address: from.to_string(),
        alternates: Vec::new(),
        language: desk.language,
    };
    let signer = signer.signing_as(&desk.support.address);
    let mut queued = Vec::new();
    for to in readers(config, &state, desk.team) {
        let rendered = render::note(
            &desk.support,
            desk.templates,
            &signer,
            to,
            NoteFor {
                ticket: &state,
                author: &author,
                body,
                attachments,
            },
            now,
        );
        queued.extend(out.queue(MailKind::Note, Some(&to.address), rendered)?);
    }
    Ok(Outcome::Stored {
        ticket: Some(ticket),
        created: false,
        threading: Threading::Signed(ticket),
        class: crate::classify::Class::Customer,
        role: Role::ThirdParty,
        acknowledgement: None,
        queued,
        language: None,
        withheld: None,
        limited: None,
        bounced: Vec::new(),
        quiet: false,
    })
}

/// Who reads a third party's answer: the assigned agent, else the ticket's team, else every
/// agent.
fn readers<'c>(
    config: &'c Config,
    ticket: &TicketState,
    team: Option<&crate::config::Team>,
) -> Vec<&'c Agent> {
    let named = match (&ticket.assigned, team) {
        (Some(agent), _) => vec![agent.clone()],
        (None, Some(team)) => team.members.clone(),
        (None, None) => Vec::new(),
    };
    let agents = agents_named(config, &named);
    if agents.is_empty() {
        config.agents.agents.iter().collect()
    } else {
        agents
    }
}
