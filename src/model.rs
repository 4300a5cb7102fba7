//! Small domain types shared by the pipeline stages: ids, statuses, addresses.
//!
//! Ids are newtypes so a ticket number can never be passed where an outbox id is expected.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A ticket's number, as shown to customers in the subject tag.
    TicketId
);
id_type!(
    /// A row of the `messages` table (inbound or outbound).
    MessageRowId
);
id_type!(
    /// A row of the outbox.
    OutboxId
);
id_type!(
    /// A quarantined message, as `deskgate quarantine` numbers it.
    QuarantineId
);

/// Where a ticket stands. Agents' replies and resolution arrive with later features; the
/// store and the CLI already know every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    /// Waiting for an agent.
    Open,
    /// Waiting for the customer.
    Pending,
    Resolved,
    Closed,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 4] = [
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::Resolved,
        TicketStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<TicketStatus> {
        TicketStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a ticket is; set by an agent with `#priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// A stored ticket as the decide step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketState {
    pub id: TicketId,
    pub mailbox: String,
    pub subject: String,
    pub status: TicketStatus,
    pub priority: Priority,
    /// Primary address of the assigned agent.
    pub assigned: Option<String>,
    pub customer: Option<Person>,
    /// The customer and everyone they copied (lower case), who get agents' answers.
    pub customers: Vec<Person>,
    pub created_at: jiff::Timestamp,
    /// The language the customer is written to in (`None` for tickets from before languages
    /// were recorded).
    pub language: Option<crate::language::Lang>,
    /// The `[[mailbox.address]]` the customer wrote to (lower case); `None`: the support
    /// address.
    pub address: Option<String>,
}

/// A person's address as found in a header: the address lower-cased, the display name decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub address: String,
    pub name: Option<String>,
}

impl Person {
    pub fn new(address: &str, name: Option<&str>) -> Person {
        Person {
            // `support@example.com.` (a fully qualified domain) is `support@example.com`.
            address: address.trim().trim_end_matches('.').to_ascii_lowercase(),
            name: name.map(clean_header_text).filter(|n| !n.is_empty()),
        }
    }
}

/// Header text safe to put back into a header: control characters (CR and LF above all,
/// which would let a sender inject headers) become spaces, runs of spaces collapse.
pub fn clean_header_text(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_cannot_carry_line_breaks() {
        assert_eq!(
            clean_header_text("Hello\r\nBcc: victim@example.net\t x"),
            "Hello Bcc: victim@example.net x"
        );
    }

    #[test]
    fn status_round_trips() {
        for status in TicketStatus::ALL {
            assert_eq!(TicketStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TicketStatus::parse("bogus"), None);
    }
}
