//! `#merge` and `#forward` in the store: moving a ticket's rows into another, and the facts
//! later mail is checked against (both kept as events, so no schema change was needed).

use crate::store::sql::params;
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::{StoreError, Tx, to_ms};
use crate::model::TicketId;

/// How many rows a merge moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub messages: usize,
    pub participants: usize,
    pub deadlines: usize,
    pub events: usize,
}

/// Merges are followed at most this far (a ticket merged into one merged later, and so on).
const MAX_HOPS: usize = 20;

impl Tx<'_> {
    /// The ticket `ticket` now continues in, following merges; `None` if it was never merged.
    pub fn merged_into(&self, ticket: TicketId) -> Result<Option<TicketId>, StoreError> {
        let mut at = ticket;
        let mut merged = None;
        for _ in 0..MAX_HOPS {
            let next: Option<i64> = self
                .query_row(
                    self.pick(
                        "SELECT json_extract(data, '$.into') FROM events
                         WHERE ticket_id = ?1 AND kind = 'ticket.merged' ORDER BY id DESC LIMIT 1",
                        "SELECT (data::jsonb ->> 'into')::bigint FROM events
                         WHERE ticket_id = ?1 AND kind = 'ticket.merged' ORDER BY id DESC LIMIT 1",
                    ),
                    [at.0],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            match next {
                Some(next) if next != at.0 => {
                    at = TicketId(next);
                    merged = Some(at);
                }
                _ => break,
            }
        }
        Ok(merged)
    }

    /// Moves `from`'s messages, participants, open deadlines (with their steps), queued mail
    /// and events into `into`, and closes `from`. The caller records `ticket.merged` on
    /// `from` afterwards: that event is what sends later mail for `from` to `into`.
    pub fn merge_tickets(
        &self,
        from: TicketId,
        into: TicketId,
        now: Timestamp,
    ) -> Result<Moved, StoreError> {
        let messages = self.execute(
            "UPDATE messages SET ticket_id = ?2 WHERE ticket_id = ?1",
            params![from.0, into.0],
        )?;
        self.execute(
            "UPDATE outbox SET ticket_id = ?2 WHERE ticket_id = ?1",
            params![from.0, into.0],
        )?;
        let participants = self.execute(
            "INSERT INTO participants (ticket_id, address, name, role)
             SELECT ?2, address, name, role FROM participants WHERE ticket_id = ?1
             ON CONFLICT DO NOTHING",
            params![from.0, into.0],
        )?;
        self.execute("DELETE FROM participants WHERE ticket_id = ?1", [from.0])?;
        self.execute(
            "UPDATE steps SET ticket_id = ?2 WHERE ticket_id = ?1 AND deadline_id IN
               (SELECT id FROM deadlines WHERE ticket_id = ?1 AND met_at IS NULL AND cancelled_at IS NULL)",
            params![from.0, into.0],
        )?;
        let deadlines = self.execute(
            "UPDATE deadlines SET ticket_id = ?2
             WHERE ticket_id = ?1 AND met_at IS NULL AND cancelled_at IS NULL",
            params![from.0, into.0],
        )?;
        let events = self.execute(
            "UPDATE events SET ticket_id = ?2 WHERE ticket_id = ?1",
            params![from.0, into.0],
        )?;
        self.execute(
            "UPDATE tickets SET status = 'closed', status_at = ?2, updated_at = ?2, next_step_at = NULL
             WHERE id = ?1",
            params![from.0, to_ms(now)],
        )?;
        Ok(Moved {
            messages,
            participants,
            deadlines,
            events,
        })
    }

    /// Whether `ticket` was forwarded to `address` (a `ticket.forwarded` event names it).
    pub fn forwarded_to(&self, ticket: TicketId, address: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .query_row(
                self.pick(
                    "SELECT 1 FROM events WHERE ticket_id = ?1 AND kind = 'ticket.forwarded'
                       AND lower(json_extract(data, '$.to')) = lower(?2) LIMIT 1",
                    "SELECT 1 FROM events WHERE ticket_id = ?1 AND kind = 'ticket.forwarded'
                       AND lower(data::jsonb ->> 'to') = lower(?2) LIMIT 1",
                ),
                params![ticket.0, address],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }
}
