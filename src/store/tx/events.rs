//! Events: the append-only history figures and KPIs are counted from.

use crate::store::sql::params;
use jiff::Timestamp;

use super::Tx;
use crate::catalog::EventKind;
use crate::model::{MessageRowId, OutboxId, TicketId};
use crate::store::{StoreError, to_ms};

/// An entry for the append-only events table.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub mailbox: Option<&'a str>,
    pub ticket: Option<TicketId>,
    pub message: Option<MessageRowId>,
    pub outbox: Option<OutboxId>,
    pub detail: String,
    /// The facts KPIs are computed from, as a JSON object (see ARCHITECTURE.md, "Events").
    pub data: Option<serde_json::Value>,
}

impl Event<'_> {
    /// An event of `kind` on nothing in particular, with no detail.
    pub fn new(kind: EventKind) -> Self {
        Event {
            kind,
            mailbox: None,
            ticket: None,
            message: None,
            outbox: None,
            detail: String::new(),
            data: None,
        }
    }
}

impl Tx<'_> {
    pub fn record(&self, event: &Event<'_>, now: Timestamp) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO events (at, kind, mailbox, ticket_id, message_row_id, outbox_id, detail, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                to_ms(now),
                event.kind.as_str(),
                event.mailbox,
                event.ticket.map(|t| t.0),
                event.message.map(|m| m.0),
                event.outbox.map(|o| o.0),
                event.detail,
                event.data.as_ref().map(|d| d.to_string())
            ],
        )?;
        Ok(())
    }
}
