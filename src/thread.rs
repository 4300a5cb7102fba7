//! Which ticket does a message belong to? Pure: the store supplies the candidates.
//!
//! Order of evidence: a Message-ID we know in `In-Reply-To`/`References` (unguessable for our
//! own ids), then a subject tag such as `[#123]`, honoured only when the sender already takes
//! part in that ticket, so nobody joins a stranger's ticket by guessing its number.

use crate::model::TicketId;

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
            Threading::Signed(id) | Threading::Reference(id) | Threading::Tag(id) => Some(id),
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

#[cfg(test)]
mod tests {
    use super::*;

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
