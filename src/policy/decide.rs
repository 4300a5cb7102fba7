//! The pure decide step.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::classify::Class;
use crate::config::Policy;
use crate::model::TicketId;
use crate::thread::Threading;

/// What to do with the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketAction {
    /// Open a new ticket for this message.
    Create,
    /// Add the message to this existing ticket.
    Append(TicketId),
}

/// Which answer an agent owes the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineKind {
    /// The first answer on a new ticket.
    FirstResponse,
    /// An answer to a later customer message on an existing ticket.
    NextResponse,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::FirstResponse => "first-response",
            DeadlineKind::NextResponse => "next-response",
        }
    }
}

/// The outcome of [`decide`]: everything the ingest transaction must write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub ticket: TicketAction,
    /// Send the customer an acknowledgement (only ever for a new ticket).
    pub acknowledge: bool,
    /// A customer message now awaits an agent: answer due by this time.
    pub deadline: Option<(DeadlineKind, Timestamp)>,
    /// The ticket waits for an agent again (a customer wrote).
    pub reopen: bool,
}

/// Decides what an inbound message causes.
pub fn decide(class: &Class, threading: Threading, policy: &Policy, now: Timestamp) -> Decision {
    let ticket = match threading.ticket() {
        Some(id) => TicketAction::Append(id),
        None => TicketAction::Create,
    };
    let from_customer = matches!(class, Class::Customer);
    let deadline = from_customer.then(|| {
        let kind = match ticket {
            TicketAction::Create => DeadlineKind::FirstResponse,
            TicketAction::Append(_) => DeadlineKind::NextResponse,
        };
        (kind, due_at(now, policy.first_response))
    });
    Decision {
        ticket,
        acknowledge: ticket == TicketAction::Create && class.may_acknowledge(),
        deadline,
        reopen: from_customer && ticket != TicketAction::Create,
    }
}

/// `now + wait`, saturating at the end of time rather than failing.
pub fn due_at(now: Timestamp, wait: Duration) -> Timestamp {
    SignedDuration::try_from(wait)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::AutoReason;

    fn policy() -> Policy {
        Policy {
            first_response: Duration::from_secs(24 * 3600),
        }
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn new_customer_message_is_acknowledged_with_a_first_response_deadline() {
        let decision = decide(&Class::Customer, Threading::New, &policy(), now());
        assert_eq!(
            decision,
            Decision {
                ticket: TicketAction::Create,
                acknowledge: true,
                deadline: Some((
                    DeadlineKind::FirstResponse,
                    "2026-11-24T10:00:00Z".parse().unwrap()
                )),
                reopen: false,
            }
        );
    }

    #[test]
    fn a_reply_is_never_acknowledged_again() {
        for threading in [
            Threading::Reference(TicketId(4)),
            Threading::Tag(TicketId(4)),
        ] {
            let decision = decide(&Class::Customer, threading, &policy(), now());
            assert_eq!(decision.ticket, TicketAction::Append(TicketId(4)));
            assert!(!decision.acknowledge);
            assert!(decision.reopen);
            assert_eq!(
                decision.deadline.map(|d| d.0),
                Some(DeadlineKind::NextResponse)
            );
        }
    }

    #[test]
    fn a_guessed_tag_opens_a_new_acknowledged_ticket() {
        let decision = decide(
            &Class::Customer,
            Threading::NewIgnoringTag(TicketId(4)),
            &policy(),
            now(),
        );
        assert_eq!(decision.ticket, TicketAction::Create);
        assert!(decision.acknowledge);
    }

    #[test]
    fn automatic_mail_is_recorded_but_never_answered_nor_timed() {
        for class in [
            Class::Automatic(AutoReason::NullReturnPath),
            Class::NoSender,
        ] {
            let decision = decide(&class, Threading::New, &policy(), now());
            assert_eq!(decision.ticket, TicketAction::Create);
            assert!(!decision.acknowledge);
            assert_eq!(decision.deadline, None);
            assert!(!decision.reopen);
        }
    }

    #[test]
    fn huge_policies_saturate() {
        assert_eq!(due_at(now(), Duration::from_secs(u64::MAX)), Timestamp::MAX);
    }
}
