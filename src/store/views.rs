//! Read models for the CLI: what `deskgate tickets`, `ticket N` and `outbox` show.

use crate::store::sql::{Row, params};
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::tx::QuarantineStatus;
use super::{StoreError, Tx, from_ms, to_ms};
use crate::catalog::EventKind;
use crate::language::{Lang, Source};
use crate::model::{OutboxId, QuarantineId, TicketId, TicketStatus};

#[derive(Debug, Clone)]
pub struct TicketView {
    pub id: TicketId,
    pub mailbox: String,
    pub subject: String,
    pub customer_address: Option<String>,
    pub customer_name: Option<String>,
    pub status: TicketStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub n_messages: u32,
    /// The earliest answer still owed, if any.
    pub next_due_at: Option<Timestamp>,
    /// Primary address of the assigned agent.
    pub assigned: Option<String>,
    pub priority: String,
    /// When an agent first answered the customer.
    pub first_response_at: Option<Timestamp>,
    /// The language the customer is written to in, and why.
    pub language: Option<(Lang, Source)>,
    /// Opened by backlog mail imported without acknowledgement or deadline at the first start.
    pub imported_quietly: bool,
    /// The `[[mailbox.address]]` its customer wrote to; `None`: the support address.
    pub address: Option<String>,
}

/// A customer we remember.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub address: String,
    pub name: Option<String>,
    pub language: Option<Lang>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub n_tickets: u32,
    pub n_messages: u32,
}

#[derive(Debug, Clone)]
pub struct MessageView {
    pub outbound: bool,
    /// Seen by agents only.
    pub internal: bool,
    /// The agent who wrote it, or to whom it went.
    pub agent: Option<String>,
    pub message_id: Option<String>,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub subject: String,
    pub received_at: Timestamp,
    pub class: String,
    pub defects: String,
    pub body_text: String,
    /// Attachment file names.
    pub attachments: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EventView {
    pub at: Timestamp,
    pub kind: String,
    pub ticket: Option<TicketId>,
    pub detail: String,
}

/// One recorded event with its structured data: what the KPIs are computed from.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub at: Timestamp,
    pub kind: String,
    pub mailbox: Option<String>,
    pub ticket: Option<TicketId>,
    /// The human text; before v6 the only record of some facts (a status change's new status).
    pub detail: String,
    /// The JSON object of `events.data` (v6); `None` for older events and kinds without data.
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct QuarantineView {
    pub id: QuarantineId,
    pub created_at: Timestamp,
    pub mailbox: Option<String>,
    pub uid: Option<u32>,
    pub reason: String,
    pub message_id: Option<String>,
    pub from_address: Option<String>,
    pub subject: String,
    pub size: u64,
    pub complete: bool,
    pub status: QuarantineStatus,
    pub resolved_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct OutboxView {
    pub id: OutboxId,
    pub ticket: Option<TicketId>,
    pub kind: String,
    pub recipients: String,
    pub subject: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// What delivery reports said about it, if any came back.
    pub bounce: Option<String>,
    /// Recipients the SMTP server refused for good, `address: reply` a line.
    pub refused: String,
}

const TICKET_COLUMNS: &str =
    "t.id, t.mailbox, t.subject, t.customer_address, t.customer_name, t.status,
    t.created_at, t.updated_at,
    (SELECT count(*) FROM messages m WHERE m.ticket_id = t.id),
    (SELECT min(due_at) FROM deadlines d
     WHERE d.ticket_id = t.id AND d.met_at IS NULL AND d.cancelled_at IS NULL),
    t.assigned_agent, t.priority, t.first_response_at,
    t.language, t.language_source,
    EXISTS (SELECT 1 FROM events e WHERE e.ticket_id = t.id AND e.kind = 'message.imported_quietly'
            AND e.message_row_id = (SELECT min(m.id) FROM messages m WHERE m.ticket_id = t.id)),
    t.address";

fn ticket_view(r: &Row<'_>) -> Result<TicketView, StoreError> {
    let status: String = r.get(5)?;
    Ok(TicketView {
        id: TicketId(r.get(0)?),
        mailbox: r.get(1)?,
        subject: r.get(2)?,
        customer_address: r.get(3)?,
        customer_name: r.get(4)?,
        status: TicketStatus::parse(&status).unwrap_or(TicketStatus::Open),
        created_at: from_ms(r.get(6)?),
        updated_at: from_ms(r.get(7)?),
        n_messages: r.get(8)?,
        next_due_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
        assigned: r.get(10)?,
        priority: r.get(11)?,
        first_response_at: r.get::<_, Option<i64>>(12)?.map(from_ms),
        language: match (
            r.get::<_, Option<String>>(13)?,
            r.get::<_, Option<String>>(14)?,
        ) {
            (Some(lang), Some(source)) => Lang::parse(&lang).zip(Source::parse(&source)),
            _ => None,
        },
        imported_quietly: r.get(15)?,
        address: r.get(16)?,
    })
}

const QUARANTINE_COLUMNS: &str =
    "id, created_at, mailbox, uid, reason, message_id, from_address, subject, size,
    complete, status, resolved_at";

fn quarantine_view(r: &Row<'_>) -> Result<QuarantineView, StoreError> {
    Ok(QuarantineView {
        id: QuarantineId(r.get(0)?),
        created_at: from_ms(r.get(1)?),
        mailbox: r.get(2)?,
        uid: r.get(3)?,
        reason: r.get(4)?,
        message_id: r.get(5)?,
        from_address: r.get(6)?,
        subject: r.get(7)?,
        size: r.get::<_, i64>(8)?.max(0) as u64,
        complete: r.get(9)?,
        status: QuarantineStatus::parse(&r.get::<_, String>(10)?),
        resolved_at: r.get::<_, Option<i64>>(11)?.map(from_ms),
    })
}

fn event_view(r: &Row<'_>) -> Result<EventView, StoreError> {
    Ok(EventView {
        at: from_ms(r.get(0)?),
        kind: r.get(1)?,
        ticket: r.get::<_, Option<i64>>(2)?.map(TicketId),
        detail: r.get(3)?,
    })
}

impl Tx<'_> {
    /// Tickets, newest first, optionally only those in `status`.
    pub fn tickets(&self, status: Option<TicketStatus>) -> Result<Vec<TicketView>, StoreError> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t WHERE ?1 IS NULL OR t.status = ?1 ORDER BY t.id DESC"
        );
        let statement = self.prepare(&sql)?;
        let rows = statement
            .query_map([status.map(|s| s.as_str())], ticket_view)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn ticket(&self, id: TicketId) -> Result<Option<TicketView>, StoreError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets t WHERE t.id = ?1");
        self.query_row(&sql, [id.0], ticket_view).optional()
    }

    pub fn contact(&self, address: &str) -> Result<Option<ContactView>, StoreError> {
        let row = self
            .query_row(
                "SELECT address, name, language, first_seen, last_seen, n_tickets, n_messages
                 FROM contacts WHERE address = ?1",
                [address.to_ascii_lowercase()],
                |r| {
                    Ok(ContactView {
                        address: r.get(0)?,
                        name: r.get(1)?,
                        language: r
                            .get::<_, Option<String>>(2)?
                            .as_deref()
                            .and_then(Lang::parse),
                        first_seen: from_ms(r.get(3)?),
                        last_seen: from_ms(r.get(4)?),
                        n_tickets: r.get(5)?,
                        n_messages: r.get(6)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// Every message of a ticket in the order it was received or written.
    pub fn transcript(&self, id: TicketId) -> Result<Vec<MessageView>, StoreError> {
        let statement = self.prepare(
            "SELECT direction, message_id, from_address, from_name, subject, received_at, class, defects, body_text,
                    internal, agent, attachments
             FROM messages WHERE ticket_id = ?1 ORDER BY received_at, id",
        )?;
        let rows = statement
            .query_map([id.0], |r| {
                Ok(MessageView {
                    outbound: r.get::<_, String>(0)? == "out",
                    message_id: r.get(1)?,
                    from_address: r.get(2)?,
                    from_name: r.get(3)?,
                    subject: r.get(4)?,
                    received_at: from_ms(r.get(5)?),
                    class: r.get(6)?,
                    defects: r.get(7)?,
                    body_text: r.get(8)?,
                    internal: r.get(9)?,
                    agent: r.get(10)?,
                    attachments: r.get::<_, String>(11)?.lines().map(String::from).collect(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn events_of(&self, id: TicketId) -> Result<Vec<EventView>, StoreError> {
        let statement = self.prepare(
            "SELECT at, kind, ticket_id, detail FROM events WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let rows = statement
            .query_map([id.0], event_view)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The newest `limit` events whose kind starts with `prefix`, newest first.
    pub fn events(&self, prefix: &str, limit: u32) -> Result<Vec<EventView>, StoreError> {
        let statement = self.prepare(
            "SELECT at, kind, ticket_id, detail FROM events WHERE substr(kind, 1, length(?1)) = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = statement
            .query_map(params![prefix, limit], event_view)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every event of one of `kinds` recorded before `until`, in the order recorded: the KPIs
    /// replay them from the first (a backlog at the period's end needs every ticket ever
    /// opened), so events recorded later can never change a figure for a past period.
    pub fn kpi_events(
        &self,
        kinds: &[EventKind],
        until: Timestamp,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let kinds = serde_json::Value::from(names).to_string();
        let statement = self.prepare(self.pick(
            "SELECT at, kind, mailbox, ticket_id, detail, data FROM events
             WHERE at < ?1 AND kind IN (SELECT value FROM json_each(?2))
             ORDER BY at, id",
            "SELECT at, kind, mailbox, ticket_id, detail, data FROM events
             WHERE at < ?1 AND kind IN (SELECT json_array_elements_text(?2::json))
             ORDER BY at, id",
        ))?;
        let mut records = Vec::new();
        statement.for_each(params![to_ms(until), kinds], |r| {
            let kind: String = r.get(1)?;
            let data = match r.get::<_, Option<String>>(5)? {
                None => None,
                Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!("event {kind}: data is not JSON ({e}): {text}"))
                })?),
            };
            records.push(EventRecord {
                at: from_ms(r.get(0)?),
                kind,
                mailbox: r.get(2)?,
                ticket: r.get::<_, Option<i64>>(3)?.map(TicketId),
                detail: r.get(4)?,
                data,
            });
            Ok(())
        })?;
        Ok(records)
    }

    /// Quarantined mail, newest first; with `all`, released and deleted entries too.
    pub fn quarantine_list(&self, all: bool) -> Result<Vec<QuarantineView>, StoreError> {
        let sql = format!(
            "SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE ?1 <> 0 OR status = 'held' ORDER BY id DESC"
        );
        let statement = self.prepare(&sql)?;
        let rows = statement
            .query_map([all], quarantine_view)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One quarantine entry and its stored bytes.
    pub fn quarantine_entry(
        &self,
        id: QuarantineId,
    ) -> Result<Option<(QuarantineView, Vec<u8>)>, StoreError> {
        let sql = format!("SELECT {QUARANTINE_COLUMNS}, raw FROM quarantine WHERE id = ?1");
        self.query_row(&sql, [id.0], |r| Ok((quarantine_view(r)?, r.get(12)?)))
            .optional()
    }

    /// Outbox rows, newest first.
    pub fn outbox(&self) -> Result<Vec<OutboxView>, StoreError> {
        let statement = self.prepare(
            "SELECT o.id, o.ticket_id, o.kind, o.recipients, m.subject, o.status, o.attempts, o.next_attempt_at,
                    o.last_error, o.created_at, o.sent_at, o.bounce, o.refused
             FROM outbox o JOIN messages m ON m.id = o.message_row_id
             ORDER BY o.id DESC",
        )?;
        let rows = statement
            .query_map([], |r| {
                Ok(OutboxView {
                    id: OutboxId(r.get(0)?),
                    ticket: r.get::<_, Option<i64>>(1)?.map(TicketId),
                    kind: r.get(2)?,
                    recipients: r.get(3)?,
                    subject: r.get(4)?,
                    status: r.get(5)?,
                    attempts: r.get(6)?,
                    next_attempt_at: from_ms(r.get(7)?),
                    last_error: r.get(8)?,
                    created_at: from_ms(r.get(9)?),
                    sent_at: r.get::<_, Option<i64>>(10)?.map(from_ms),
                    bounce: r.get(11)?,
                    refused: r.get(12)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
