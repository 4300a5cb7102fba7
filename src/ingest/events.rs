//! The `events_for` stage (pure): the facts, the decision and what the writes did become the
//! events of one inbound message, in the order they are recorded.

use jiff::Timestamp;
use serde_json::json;

use super::gather::Facts;
use super::write::Written;
use crate::agent::Author;
use crate::agent::reply::Command;
use crate::catalog::EventKind;
use crate::language::{self, Choice};
use crate::model::OutboxId;
use crate::policy::{AgentNotice, Arrival, Decision};

/// One event of the message, on its ticket and message row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NewEvent {
    pub kind: EventKind,
    pub outbox: Option<OutboxId>,
    pub detail: String,
    pub data: Option<serde_json::Value>,
}

impl NewEvent {
    fn new(kind: EventKind, detail: String) -> NewEvent {
        NewEvent {
            kind,
            outbox: None,
            detail,
            data: None,
        }
    }

    fn with(kind: EventKind, detail: String, data: serde_json::Value) -> NewEvent {
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
            EventKind::TicketCreated,
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
            EventKind::TicketLanguage,
            format!("{}: {}", choice.lang, choice.detail),
            json!({ "language": choice.lang.code(), "source": choice.source.as_str() }),
        ));
    }
    events.push(NewEvent::with(
        EventKind::MessageReceived,
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
            EventKind::SenderLimited,
            format!("{}: {}", facts.sender().unwrap_or(""), limit.describe()),
        ));
    }
    if let Some(reason) = &decision.withheld {
        events.push(NewEvent::new(EventKind::AckWithheld, reason.clone()));
    }
    if !written.not_added.is_empty() {
        let (n, max) = (written.not_added.len(), written.max_cc);
        events.push(NewEvent::with(
            EventKind::TicketCcCapped,
            format!(
                "{n} not added (policy.max_cc_per_message = {max}): {}",
                shortened(&written.not_added, CAPPED_LISTED)
            ),
            json!({ "not_added": n, "max": max }),
        ));
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
            .map(|delay| NewEvent::new(EventKind::BounceDelayed, delay.clone()))
            .collect();
    }
    bounce
        .failed
        .iter()
        .map(|failure| NewEvent {
            outbox: bounce.outbox(),
            ..NewEvent::new(EventKind::BounceReceived, failure.clone())
        })
        .collect()
}

fn survey_events(decision: &Decision, written: &Written) -> Option<NewEvent> {
    let (score, recorded) = (decision.survey?, written.survey_recorded?);
    Some(if recorded {
        NewEvent::with(
            EventKind::SurveyAnswered,
            format!("satisfaction {score} of 5"),
            json!({ "score": score }),
        )
    } else {
        NewEvent::new(
            EventKind::SurveyRepeated,
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
        EventKind::AgentAnswered,
        format!(
            "{agent} answered at {at} ({how}); {} deadline(s) met",
            met.deadlines.len()
        ),
        json!({ "agent": agent, "at": ms(at), "relayed": decision.relay }),
    )];
    for deadline in &met.deadlines {
        events.push(NewEvent::with(
            EventKind::DeadlineMet,
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
            EventKind::TicketFirstResponse,
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
            events.push(NewEvent::new(*kind, detail.clone()));
        }
        events.push(NewEvent::with(
            EventKind::TicketStatus,
            status.as_str().to_string(),
            json!({
                "from": facts.ticket.as_ref().map(|s| s.status.as_str()),
                "to": status.as_str(),
                "by": if facts.author.agent().is_some() { "agent" } else { "customer" },
            }),
        ));
    }
    if let Some(agent) = &decision.assign {
        events.push(NewEvent::new(EventKind::TicketAssigned, agent.clone()));
    }
    if let Some(priority) = decision.priority {
        events.push(NewEvent::new(
            EventKind::TicketPriority,
            priority.as_str().to_string(),
        ));
    }
    for change in &decision.cc {
        events.push(NewEvent::new(
            EventKind::TicketCc,
            Command::Cc(change.clone()).describe(),
        ));
    }
    if let Some((agent, AgentNotice::Leak(why))) = &decision.tell {
        events.push(NewEvent::new(
            EventKind::RelayRefused,
            format!("{agent}: {why}"),
        ));
    }
    if let (Some((_, AgentNotice::Withheld(why))), Some(ticket)) = (&decision.tell, &facts.ticket) {
        let to: Vec<&str> = ticket
            .customers
            .iter()
            .map(|p| p.address.as_str())
            .collect();
        events.push(NewEvent::new(
            EventKind::OutboxKeyWithheld,
            format!("reply to {} not sent: {why}", to.join(", ")),
        ));
    }
    if let Some(lang) = decision.language.filter(|_| written.agent_language_set) {
        events.push(NewEvent::with(
            EventKind::TicketLanguage,
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
        EventKind::MessageImportedQuietly,
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

/// Addresses a `ticket.cc_capped` event names (the rest are counted).
const CAPPED_LISTED: usize = 20;

/// The first `listed` of `addresses`, and how many more.
fn shortened(addresses: &[String], listed: usize) -> String {
    let shown = addresses[..addresses.len().min(listed)].join(", ");
    match addresses.len().saturating_sub(listed) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Event data carries times as milliseconds since the epoch, as the store does.
fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Class;
    use crate::ingest::Source;
    use crate::ingest::write::BounceReport;
    use crate::language::{Lang, Source as LangSource};
    use crate::model::{MessageRowId, Priority, TicketId};
    use crate::parse::{ParsedMessage, parse};
    use crate::policy::{Role, SenderLoad, TicketAction};
    use crate::store::{Met, MetDeadline};
    use crate::thread::Threading;

    const NOW: Timestamp = Timestamp::UNIX_EPOCH;

    fn facts<'a>(source: &'a Source, parsed: &'a ParsedMessage, author: Author) -> Facts<'a> {
        Facts {
            source,
            parsed,
            raw: b"",
            released: false,
            class: Class::Customer,
            author,
            threading: Threading::New,
            ticket: None,
            text: None,
            recipients: Vec::new(),
            written_to: None,
            load: SenderLoad::default(),
            no_ack: None,
            survey_score: None,
            leak: None,
            detected: None,
            attachments: Default::default(),
            html: None,
            returned: Vec::new(),
        }
    }

    fn written(ticket: Option<TicketId>) -> Written {
        Written {
            ticket,
            created: false,
            message: MessageRowId(7),
            role_text: "customer".into(),
            language_changed: false,
            bounce: BounceReport::default(),
            survey_recorded: None,
            met: None,
            status_event: None,
            agent_language_set: false,
            not_added: Vec::new(),
            max_cc: 10,
        }
    }

    /// The kinds of events `events_for` gives after `change` adjusts the author, the decision
    /// and what the writes did, for a customer message filed on ticket 1.
    fn check(
        author: Author,
        change: impl FnOnce(&mut Decision, &mut Written),
        language: Option<&Choice>,
        expect: &[EventKind],
    ) -> Vec<NewEvent> {
        let source = Source {
            mailbox: "support".into(),
            imap: None,
            arrival: Arrival::Live,
        };
        let parsed = parse(b"From: c@example.net\r\nSubject: x\r\n\r\nhello\r\n");
        let facts = facts(&source, &parsed, author);
        let mut decision = Decision::new(TicketAction::Create, Role::Sender(Class::Customer));
        let mut written = written(Some(TicketId(1)));
        change(&mut decision, &mut written);
        let events = events_for(&facts, &decision, language, &written, NOW);
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, expect);
        events
    }

    fn agent() -> Author {
        Author::Unsigned {
            agent: "a@example.com".into(),
        }
    }

    #[test]
    fn a_new_ticket_records_its_creation_language_and_message() {
        let choice = Choice {
            lang: Lang::Ar,
            source: LangSource::Header,
            detail: "Content-Language".into(),
        };
        let created = |_: &mut Decision, w: &mut Written| w.created = true;
        check(
            Author::Other,
            created,
            Some(&choice),
            &[
                EventKind::TicketCreated,
                EventKind::TicketLanguage,
                EventKind::MessageReceived,
            ],
        );
        // A later message changes the language only when the write did.
        check(
            Author::Other,
            |_, _| {},
            Some(&choice),
            &[EventKind::MessageReceived],
        );
        let changed = |_: &mut Decision, w: &mut Written| w.language_changed = true;
        check(
            Author::Other,
            changed,
            Some(&choice),
            &[EventKind::TicketLanguage, EventKind::MessageReceived],
        );
    }

    #[test]
    fn limits_withheld_acknowledgements_and_surveys() {
        let limited = |d: &mut Decision, _: &mut Written| {
            d.limited = Some(crate::policy::Limit::NewTickets(20));
            d.withheld = Some("limit".into());
        };
        check(
            Author::Other,
            limited,
            None,
            &[
                EventKind::MessageReceived,
                EventKind::SenderLimited,
                EventKind::AckWithheld,
            ],
        );
        let answered = |d: &mut Decision, w: &mut Written| {
            d.survey = Some(5);
            w.survey_recorded = Some(true);
        };
        check(
            Author::Other,
            answered,
            None,
            &[EventKind::MessageReceived, EventKind::SurveyAnswered],
        );
        let repeated = |d: &mut Decision, w: &mut Written| {
            d.survey = Some(5);
            w.survey_recorded = Some(false);
        };
        check(
            Author::Other,
            repeated,
            None,
            &[EventKind::MessageReceived, EventKind::SurveyRepeated],
        );
    }

    #[test]
    fn an_agent_answer_records_the_deadlines_it_met() {
        let answered = |d: &mut Decision, w: &mut Written| {
            d.answered_at = Some(NOW);
            d.relay = true;
            d.status = Some(crate::model::TicketStatus::Pending);
            d.priority = Some(Priority::High);
            w.met = Some(Met {
                deadlines: vec![MetDeadline {
                    id: 3,
                    kind: "first-response".into(),
                    due_at: NOW,
                    received_at: NOW,
                }],
                first_response: Some(NOW),
            });
            w.status_event = Some((EventKind::DeadlinePaused, "paused".into()));
        };
        let events = check(
            agent(),
            answered,
            None,
            &[
                EventKind::MessageReceived,
                EventKind::AgentAnswered,
                EventKind::DeadlineMet,
                EventKind::TicketFirstResponse,
                EventKind::DeadlinePaused,
                EventKind::TicketStatus,
                EventKind::TicketPriority,
            ],
        );
        let data = events[2].data.as_ref().map(|d| d["within"].clone());
        assert_eq!(data, Some(serde_json::Value::Bool(true)));
        assert_eq!(
            events[5].data.as_ref().map(|d| d["by"].clone()),
            Some("agent".into())
        );
    }

    #[test]
    fn bounces_record_each_failure_or_each_delay() {
        let failed = |_: &mut Decision, w: &mut Written| {
            w.bounce.failed = vec!["c@x: 5.1.1".into(), "d@x: 5.1.1".into()];
            w.bounce.marks = vec![(OutboxId(9), "c@x: 5.1.1".into())];
        };
        let events = check(
            Author::Other,
            failed,
            None,
            &[
                EventKind::MessageReceived,
                EventKind::BounceReceived,
                EventKind::BounceReceived,
            ],
        );
        assert!(events[1..].iter().all(|e| e.outbox == Some(OutboxId(9))));
        let delayed = |_: &mut Decision, w: &mut Written| {
            w.bounce.delays = vec!["c@x: delayed 4.4.1".into()];
        };
        check(
            Author::Other,
            delayed,
            None,
            &[EventKind::MessageReceived, EventKind::BounceDelayed],
        );
        // Unfiled: only the message and what the bounce said.
        let unfiled = |d: &mut Decision, w: &mut Written| {
            d.ticket = TicketAction::Unfiled;
            d.withheld = Some("not recorded on no ticket".into());
            w.ticket = None;
            w.bounce.failed = vec!["c@x: 5.1.1".into()];
        };
        check(
            Author::Other,
            unfiled,
            None,
            &[EventKind::MessageReceived, EventKind::BounceReceived],
        );
    }

    #[test]
    fn quiet_backlog_mail_says_why() {
        let quiet = |d: &mut Decision, _: &mut Written| d.quiet = true;
        let events = check(
            Author::Other,
            quiet,
            None,
            &[
                EventKind::MessageReceived,
                EventKind::MessageImportedQuietly,
            ],
        );
        assert!(
            events[1].detail.starts_with("backlog (live "),
            "{}",
            events[1].detail
        );
    }

    #[test]
    fn shortened_lists_the_first_and_counts_the_rest() {
        let list: Vec<String> = (0..4).map(|i| format!("a{i}@x.test")).collect();
        assert_eq!(shortened(&list, 2), "a0@x.test, a1@x.test and 2 more");
        assert_eq!(
            shortened(&list, 4),
            "a0@x.test, a1@x.test, a2@x.test, a3@x.test"
        );
    }

    #[test]
    fn people_left_out_and_a_withheld_answer_are_recorded() {
        let capped = |_: &mut Decision, w: &mut Written| {
            w.not_added = vec!["a@x".into(), "b@x".into()];
        };
        let events = check(
            Author::Other,
            capped,
            None,
            &[EventKind::MessageReceived, EventKind::TicketCcCapped],
        );
        assert_eq!(
            events[1].detail,
            "2 not added (policy.max_cc_per_message = 10): a@x, b@x"
        );
        // Withheld needs the ticket it was on; on none nothing is recorded here.
        let withheld = |d: &mut Decision, _: &mut Written| {
            d.tell = Some(("a@x".into(), AgentNotice::Withheld("key".into())));
        };
        check(agent(), withheld, None, &[EventKind::MessageReceived]);
    }
}
