//! Which ticket does a message belong to? Pure: the store supplies the candidates.
//!
//! Order of evidence: a Message-ID we know in `In-Reply-To`/`References` (unguessable for our
//! own ids), then a subject tag such as `[#123]`, honoured only when the sender already takes
//! part in that ticket, so nobody joins a stranger's ticket by guessing its number.

use crate::model::TicketId;
use crate::parse::ParsedMessage;

/// What the store found for a message's references and subject tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// The ticket of the newest referenced message we know, if any.
    pub by_reference: Option<TicketId>,
    /// The ticket named by the subject tag, with the addresses taking part in it.
    pub tagged: Option<(TicketId, Vec<String>)>,
}

/// The threading decision and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// An agent's reply whose signed key names this ticket.
    Signed(TicketId),
    /// A refused reply key names this ticket: kept there for agents only (its references and
    /// subject are not used).
    Claimed(TicketId),
    /// A referenced Message-ID belongs to this ticket.
    Reference(TicketId),
    /// The subject tag names this ticket and the sender takes part in it.
    Tag(TicketId),
    /// A tag was present but the sender is not part of that ticket: opened anew.
    NewIgnoringTag(TicketId),
    New,
}

impl Threading {
    /// Why the message landed where it did, for events and logs.
    pub fn describe(self) -> String {
        match self {
            Threading::Signed(id) => format!("ticket {id}, named by the agent's signed reply key"),
            Threading::Claimed(id) => {
                format!("ticket {id}, named by a refused reply key; kept for agents only")
            }
            Threading::Reference(id) => {
                format!("threaded into ticket {id} by In-Reply-To/References")
            }
            Threading::Tag(id) => format!("threaded into ticket {id} by its subject tag"),
            Threading::NewIgnoringTag(id) => {
                format!(
                    "new ticket; the subject names ticket {id} but the sender takes no part in it"
                )
            }
            Threading::New => "new ticket".to_string(),
        }
    }

    pub fn ticket(self) -> Option<TicketId> {
        match self {
            Threading::Signed(id)
            | Threading::Claimed(id)
            | Threading::Reference(id)
            | Threading::Tag(id) => Some(id),
            Threading::NewIgnoringTag(_) | Threading::New => None,
        }
    }
}

/// Finds `[<prefix><digits>]` in a subject, e.g. `[#42]` for prefix `#`; the last tag wins
/// (a forwarded subject may carry an old one first).
pub fn subject_tag(subject: &str, prefix: &str) -> Option<TicketId> {
    let opener = format!("[{prefix}");
    let mut found = None;
    let mut rest = subject;
    while let Some(start) = rest.find(&opener) {
        let after = &rest[start + opener.len()..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() && after[digits.len()..].starts_with(']') {
            found = digits.parse().ok().map(TicketId);
        }
        rest = after;
    }
    found
}

/// The tag deskgate puts in subjects: `[#42]`.
pub fn format_tag(prefix: &str, ticket: TicketId) -> String {
    format!("[{prefix}{ticket}]")
}

/// Decides the thread for a message from `sender` (lower-cased address, if any).
pub fn resolve(sender: Option<&str>, candidates: &Candidates) -> Threading {
    if let Some(ticket) = candidates.by_reference {
        return Threading::Reference(ticket);
    }
    match (&candidates.tagged, sender) {
        (Some((ticket, participants)), Some(sender))
            if participants.iter().any(|p| p == sender) =>
        {
            Threading::Tag(*ticket)
        }
        (Some((ticket, _)), _) => Threading::NewIgnoringTag(*ticket),
        (None, _) => Threading::New,
    }
}

/// Which of a mailbox's further addresses (`extras`, lower case) a new ticket's customer
/// wrote to, as an index into `extras`; `None`: the support address `primary`.
///
/// The envelope headers (`Delivered-To`, `X-Original-To`) come first, but only when they name
/// one of `extras`: behind an alias they usually name the mailbox itself, whatever address
/// the customer used. Then the first of our addresses in `To`, then in `Cc`; the support
/// address wins there when it comes first.
pub fn addressed(parsed: &ParsedMessage, primary: &str, extras: &[String]) -> Option<usize> {
    let extra = |address: &str| extras.iter().position(|e| e == address);
    if let Some(i) = parsed.delivered_to.iter().find_map(|a| extra(a)) {
        return Some(i);
    }
    for header in [&parsed.to, &parsed.cc] {
        for person in header {
            if person.address == primary {
                return None;
            }
            if let Some(i) = extra(&person.address) {
                return Some(i);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_written_to() {
        let extras = [
            "sales@example.test".to_string(),
            "billing@example.test".to_string(),
        ];
        let mail = |headers: &str| {
            crate::parse::parse(format!("From: c@example.net\r\n{headers}\r\n\r\nhi").as_bytes())
        };
        let at = |headers: &str| addressed(&mail(headers), "support@example.test", &extras);
        assert_eq!(at("To: Sales <SALES@example.test>"), Some(0));
        assert_eq!(at("To: support@example.test"), None);
        assert_eq!(
            at("To: someone@example.net"),
            None,
            "Bcc: the support address"
        );
        assert_eq!(
            at("Delivered-To: support@example.test\r\nTo: billing@example.test"),
            Some(1),
            "an alias rewritten to the mailbox: the envelope names the mailbox"
        );
        assert_eq!(
            at("Delivered-To: billing@example.test\r\nTo: sales@example.test"),
            Some(1),
            "the envelope says where it was delivered"
        );
        assert_eq!(
            at("X-Original-To: sales@example.test\r\nTo: list@example.net"),
            Some(0)
        );
        assert_eq!(
            at("To: support@example.test, sales@example.test"),
            None,
            "the first of ours in To"
        );
        assert_eq!(at("To: x@example.net, billing@example.test"), Some(1));
        assert_eq!(
            at("To: x@example.net\r\nCc: support@example.test, sales@example.test"),
            None
        );
        assert_eq!(
            at("To: support@example.test\r\nCc: sales@example.test"),
            None,
            "To before Cc"
        );
        assert_eq!(at("To: x@example.net\r\nCc: sales@example.test"), Some(0));
    }

    #[test]
    fn tags() {
        assert_eq!(subject_tag("Re: printer [#42]", "#"), Some(TicketId(42)));
        assert_eq!(subject_tag("[#7] Fwd: [#42] old", "#"), Some(TicketId(42)));
        assert_eq!(subject_tag("Re: [ACME-9] x", "ACME-"), Some(TicketId(9)));
        assert_eq!(subject_tag("Re: [#42 x", "#"), None);
        assert_eq!(subject_tag("Re: [#] x", "#"), None);
        assert_eq!(subject_tag("Re: #42", "#"), None);
        assert_eq!(subject_tag("[#x][#5]", "#"), Some(TicketId(5)));
        assert_eq!(format_tag("#", TicketId(42)), "[#42]");
    }

    fn tagged(id: i64, who: &[&str]) -> Candidates {
        Candidates {
            by_reference: None,
            tagged: Some((TicketId(id), who.iter().map(|s| s.to_string()).collect())),
        }
    }

    #[test]
    fn references_win() {
        let candidates = Candidates {
            by_reference: Some(TicketId(3)),
            ..tagged(9, &["a@b"])
        };
        assert_eq!(
            resolve(Some("a@b"), &candidates),
            Threading::Reference(TicketId(3))
        );
    }

    #[test]
    fn tag_needs_a_participant() {
        assert_eq!(
            resolve(Some("a@b"), &tagged(9, &["a@b"])),
            Threading::Tag(TicketId(9))
        );
        assert_eq!(
            resolve(Some("stranger@evil"), &tagged(9, &["a@b"])),
            Threading::NewIgnoringTag(TicketId(9))
        );
        assert_eq!(
            resolve(None, &tagged(9, &["a@b"])),
            Threading::NewIgnoringTag(TicketId(9))
        );
        assert_eq!(resolve(Some("a@b"), &Candidates::default()), Threading::New);
    }
}
