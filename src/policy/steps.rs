//! What the scheduler does next, and when: pure planning over what the store knows.
//!
//! A deadline goes through a warning (if configured), its breach, then each escalation level
//! in turn; a pending ticket through its reminders and then auto-resolve; a resolved one
//! through the survey and auto-close. Each step is taken once (the store's `steps` table
//! says which were), so planning again at any time, after a restart or a configuration
//! change, never repeats or skips one.

use jiff::Timestamp;

use crate::calendar::plus;
use crate::config::{Deadlines, Followup};
use crate::model::TicketStatus;
use crate::model::{MessageRowId, TicketId};

/// An open deadline as the scheduler plans it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineFacts {
    pub id: i64,
    pub ticket: TicketId,
    pub message: MessageRowId,
    pub kind: String,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    pub warn_at: Option<Timestamp>,
    /// Met, cancelled or paused: nothing to do.
    pub settled: bool,
    /// The names of the steps already taken.
    pub done: Vec<String>,
}

/// A ticket as the follow-up planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    pub id: TicketId,
    pub status: TicketStatus,
    pub status_at: Timestamp,
    pub survey_sent: bool,
    /// Steps taken in the current spell of this status (episode = `status_at`).
    pub done: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineStep {
    /// The assigned agent (or the team) is told the deadline is near.
    Warning,
    /// The deadline passed unanswered: recorded and counted.
    Breach,
    /// Escalation level n (1 = first), to whom the level names.
    Escalation(usize),
}

impl DeadlineStep {
    /// Its name in the `steps` table.
    pub fn name(self) -> String {
        match self {
            DeadlineStep::Warning => "warning".into(),
            DeadlineStep::Breach => "breach".into(),
            DeadlineStep::Escalation(n) => format!("escalation-{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStep {
    /// Reminder n (1 = first) to a customer we wait on.
    Reminder(usize),
    /// Pending too long: resolved.
    Resolve,
    /// The satisfaction survey to the customer of a resolved ticket.
    Survey,
    /// Resolved long enough: closed.
    Close,
}

impl TicketStep {
    pub fn name(self) -> String {
        match self {
            TicketStep::Reminder(n) => format!("reminder-{n}"),
            TicketStep::Resolve => "resolve".into(),
            TicketStep::Survey => "survey".into(),
            TicketStep::Close => "close".into(),
        }
    }

    /// Whether it happens once per ticket rather than once per spell of its status.
    pub fn once_per_ticket(self) -> bool {
        self == TicketStep::Survey
    }
}

/// The next step of a deadline and when it is due; `None` when nothing is left.
pub fn next_deadline_step(
    facts: &DeadlineFacts,
    deadlines: &Deadlines,
) -> Option<(DeadlineStep, Timestamp)> {
    if facts.settled {
        return None;
    }
    let done = |step: DeadlineStep| facts.done.contains(&step.name());
    if let Some(warn_at) = facts.warn_at
        && !done(DeadlineStep::Warning)
    {
        return Some((DeadlineStep::Warning, warn_at));
    }
    if !done(DeadlineStep::Breach) {
        return Some((DeadlineStep::Breach, facts.due_at));
    }
    deadlines
        .escalation
        .iter()
        .enumerate()
        .map(|(i, level)| {
            // Level times count working time after the deadline; a level "at the deadline"
            // is the deadline itself, even when that is the minute the office closes.
            let at = if level.after.is_zero() {
                facts.due_at
            } else {
                deadlines.calendar.add(facts.due_at, level.after)
            };
            (DeadlineStep::Escalation(i + 1), at)
        })
        .find(|(step, _)| !done(*step))
}

/// The next follow-up of a ticket and when it is due; `None` when nothing is left.
pub fn next_ticket_step(
    facts: &TicketFacts,
    followup: &Followup,
) -> Option<(TicketStep, Timestamp)> {
    let done = |step: TicketStep| facts.done.contains(&step.name());
    let since = facts.status_at;
    match facts.status {
        TicketStatus::Pending => {
            let resolve = followup
                .pending_resolve_after
                .map(|after| (TicketStep::Resolve, plus(since, after)));
            let reminders = followup
                .pending_reminders
                .iter()
                .enumerate()
                .map(|(i, after)| (TicketStep::Reminder(i + 1), plus(since, *after)))
                // A reminder due when the ticket resolves itself is never sent.
                .filter(|(_, at)| resolve.is_none_or(|(_, resolve_at)| *at < resolve_at));
            reminders.chain(resolve).find(|(step, _)| !done(*step))
        }
        TicketStatus::Resolved => {
            if followup.survey && !facts.survey_sent {
                return Some((TicketStep::Survey, since));
            }
            followup
                .auto_close_after
                .map(|after| (TicketStep::Close, plus(since, after)))
                .filter(|(step, _)| !done(*step))
        }
        TicketStatus::Open | TicketStatus::Closed => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Escalation;
    use crate::model::{MessageRowId, TicketId};

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn deadline(done: &[&str]) -> DeadlineFacts {
        DeadlineFacts {
            id: 7,
            ticket: TicketId(3),
            message: MessageRowId(9),
            kind: "first-response".into(),
            received_at: at("2026-11-23T10:00:00Z"),
            due_at: at("2026-11-24T10:00:00Z"),
            warn_at: Some(at("2026-11-24T04:00:00Z")),
            settled: false,
            done: done.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn two_levels() -> Deadlines {
        Deadlines {
            escalation: vec![
                Escalation {
                    after: Duration::ZERO,
                    to: vec!["lead@x.test".into()],
                },
                Escalation {
                    after: 4 * HOUR,
                    to: vec!["boss@x.test".into()],
                },
            ],
            ..Deadlines::default()
        }
    }

    #[test]
    fn a_deadline_walks_warning_breach_and_each_level_once() {
        let d = two_levels();
        let mut done: Vec<&str> = Vec::new();
        let mut seen = Vec::new();
        while let Some((step, when)) = next_deadline_step(&deadline(&done), &d) {
            seen.push((step, when));
            let name: &'static str = step.name().leak();
            done.push(name);
        }
        assert_eq!(
            seen,
            vec![
                (DeadlineStep::Warning, at("2026-11-24T04:00:00Z")),
                (DeadlineStep::Breach, at("2026-11-24T10:00:00Z")),
                (DeadlineStep::Escalation(1), at("2026-11-24T10:00:00Z")),
                (DeadlineStep::Escalation(2), at("2026-11-24T14:00:00Z")),
            ]
        );
    }

    #[test]
    fn settled_deadlines_have_nothing_left() {
        let facts = DeadlineFacts {
            settled: true,
            ..deadline(&[])
        };
        assert_eq!(next_deadline_step(&facts, &two_levels()), None);
    }

    fn ticket(status: TicketStatus, survey_sent: bool, done: &[&str]) -> TicketFacts {
        TicketFacts {
            id: TicketId(3),
            status,
            status_at: at("2026-11-23T10:00:00Z"),
            survey_sent,
            done: done.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn pending_tickets_are_reminded_then_resolved() {
        let f = Followup::default(); // reminder after 3 d, resolved after 7 d
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Pending, false, &[]), &f),
            Some((TicketStep::Reminder(1), at("2026-11-26T10:00:00Z")))
        );
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Pending, false, &["reminder-1"]), &f),
            Some((TicketStep::Resolve, at("2026-11-30T10:00:00Z")))
        );
        let late = Followup {
            pending_reminders: vec![8 * 24 * HOUR],
            ..Followup::default()
        };
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Pending, false, &[]), &late),
            Some((TicketStep::Resolve, at("2026-11-30T10:00:00Z"))),
            "no reminder after the ticket resolved itself"
        );
    }

    #[test]
    fn resolved_tickets_get_one_survey_then_close() {
        let f = Followup::default();
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Resolved, false, &[]), &f),
            Some((TicketStep::Survey, at("2026-11-23T10:00:00Z")))
        );
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Resolved, true, &[]), &f),
            Some((TicketStep::Close, at("2026-11-30T10:00:00Z")))
        );
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Resolved, true, &["close"]), &f),
            None
        );
        assert_eq!(
            next_ticket_step(&ticket(TicketStatus::Open, false, &[]), &f),
            None
        );
    }
}
