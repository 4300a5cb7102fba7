//! The `events_for` stage (pure): the facts, the decision and what the writes did become the
//! events of one inbound message, in the order they are recorded.

use jiff::Timestamp;
use serde_json::json;

use super::gather::Facts;
use super::write::Written;
use crate::agent::Author;
use crate::agent::reply::Command;
use crate::language::{self, Choice};
use crate::model::OutboxId;
use crate::policy::{AgentNotice, Arrival, Decision};

/// One event of the message, on its ticket and message row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NewEvent {
    pub kind: &'static str,
    pub outbox: Option<OutboxId>,
    pub detail: String,
    pub data: Option<serde_json::Value>,
}

impl NewEvent {
    fn new(kind: &'static str, detail: String) -> NewEvent {
        NewEvent {
            kind,
            outbox: None,
            detail,
            data: None,
        }
    }

    fn with(kind: &'static str, detail: String, data: serde_json::Value) -> NewEvent {
        NewEvent {
            data: Some(data),
            ..NewEvent::new(kind, detail)
        }
    }
}

/// The events of a message, given the customer's `language` chosen for it.
pub(super) fn events_for(
    facts: &Facts<'_>,
    decision: &Decision,
    language: Option<&Choice>,
    written: &Written,
    now: Timestamp,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    if written.created {
        events.push(NewEvent::with(
            "ticket.created",
            String::new(),
            json!({
                "language": language.map(|c| c.lang.code()),
                "quiet": decision.quiet,
                "address": facts.written_to,
            }),
        ));
    }
    if let Some(choice) = language.filter(|_| written.created || written.language_changed) {
        events.push(NewEvent::with(
            "ticket.language",
            format!("{}: {}", choice.lang, choice.detail),
            json!({ "language": choice.lang.code(), "source": choice.source.as_str() }),
        ));
    }
    events.push(NewEvent::with(
        "message.received",
        format!(
            "{}; {}{}",
            written.role_text,
            facts.threading.describe(),
            describe(&facts.author)
        ),
        json!({ "class": decision.role.kind() }),
    ));
    if written.ticket.is_none() {
        events.extend(bounce_events(written));
        return events;
    }
    if let Some(limit) = decision.limited {
        events.push(NewEvent::new(
            "sender.limited",
            format!("{}: {}", facts.sender().unwrap_or(""), limit.describe()),
        ));
    }
    if let Some(reason) = &decision.withheld {
        events.push(NewEvent::new("ack.withheld", reason.clone()));
    }
    events.extend(bounce_events(written));
    events.extend(survey_events(decision, written));
    events.extend(answer_events(facts, decision, written));
    events.extend(change_events(facts, decision, written));
    if decision.quiet {
        events.push(quiet_event(facts, now));
    }
    events
}

/// `bounce.delayed` per recipient of a delay warning, else `bounce.received` per failure.
fn bounce_events(written: &Written) -> Vec<NewEvent> {
    let bounce = &written.bounce;
    if !bounce.delays.is_empty() {
        return bounce
            .delays
            .iter()
            .map(|delay| NewEvent::new("bounce.delayed", delay.clone()))
            .collect();
    }
    bounce
        .failed
        .iter()
        .map(|failure| NewEvent {
            outbox: bounce.outbox(),
            ..NewEvent::new("bounce.received", failure.clone())
        })
        .collect()
}

fn survey_events(decision: &Decision, written: &Written) -> Option<NewEvent> {
    let (score, recorded) = (decision.survey?, written.survey_recorded?);
    Some(if recorded {
        NewEvent::with(
            "survey.answered",
            format!("satisfaction {score} of 5"),
            json!({ "score": score }),
        )
    } else {
        NewEvent::new(
            "survey.repeated",
            format!("satisfaction {score} of 5 ignored: the ticket's score is recorded"),
        )
    })
}

/// An agent's answer: `agent.answered`, each deadline it met, and the first response.
fn answer_events(facts: &Facts<'_>, decision: &Decision, written: &Written) -> Vec<NewEvent> {
    let (Some(at), Some(met)) = (decision.answered_at, &written.met) else {
        return Vec::new();
    };
    let agent = facts.author.agent().unwrap_or("?");
    let how = if decision.relay {
        "relayed"
    } else {
        "Reply All, not relayed"
    };
    let mut events = vec![NewEvent::with(
        "agent.answered",
        format!(
            "{agent} answered at {at} ({how}); {} deadline(s) met",
            met.deadlines.len()
        ),
        json!({ "agent": agent, "at": ms(at), "relayed": decision.relay }),
    )];
    for deadline in &met.deadlines {
        events.push(NewEvent::with(
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
        ));
    }
    if let Some(created_at) = met.first_response {
        events.push(NewEvent::with(
            "ticket.first_response",
            format!("{agent} answered first, at {at}"),
            json!({
                "created_at": ms(created_at),
                "at": ms(at),
                "response_ms": ms(at) - ms(created_at),
                "agent": agent,
            }),
        ));
    }
    events
}

/// Status, assignment, priority, Cc and language changes, and an answer not relayed.
fn change_events(facts: &Facts<'_>, decision: &Decision, written: &Written) -> Vec<NewEvent> {
    let mut events = Vec::new();
    if let Some(status) = decision.status {
        if let Some((kind, detail)) = &written.status_event {
            events.push(NewEvent::new(kind, detail.clone()));
        }
        events.push(NewEvent::with(
            "ticket.status",
            status.as_str().to_string(),
            json!({
                "from": facts.ticket.as_ref().map(|s| s.status.as_str()),
                "to": status.as_str(),
                "by": if facts.author.agent().is_some() { "agent" } else { "customer" },
            }),
        ));
    }
    if let Some(agent) = &decision.assign {
        events.push(NewEvent::new("ticket.assigned", agent.clone()));
    }
    if let Some(priority) = decision.priority {
        events.push(NewEvent::new(
            "ticket.priority",
            priority.as_str().to_string(),
        ));
    }
    for change in &decision.cc {
        events.push(NewEvent::new(
            "ticket.cc",
            Command::Cc(change.clone()).describe(),
        ));
    }
    if let Some((agent, AgentNotice::Leak(why))) = &decision.tell {
        events.push(NewEvent::new("relay.refused", format!("{agent}: {why}")));
    }
    if let Some(lang) = decision.language.filter(|_| written.agent_language_set) {
        events.push(NewEvent::with(
            "ticket.language",
            format!(
                "{lang}: set by {}",
                facts.author.agent().unwrap_or("an agent")
            ),
            json!({ "language": lang.code(), "source": language::Source::Agent.as_str() }),
        ));
    }
    events
}

/// Backlog mail imported without acknowledgement or deadline, and why.
fn quiet_event(facts: &Facts<'_>, now: Timestamp) -> NewEvent {
    let (why, at, arrived_at) = match facts.source.arrival {
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
    NewEvent::new(
        "message.imported_quietly",
        format!("backlog ({why} {at}), arrived {arrived}: no acknowledgement, no deadline"),
    )
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

/// Event data carries times as milliseconds since the epoch, as the store does.
fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}
