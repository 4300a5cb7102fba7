//! What `/metrics` and `/healthz` read: counts over the event history (so they survive
//! restarts and agree with `deskgate stats`) and the outbox as it is now.

use jiff::Timestamp;
use rusqlite::params;

use super::{StoreError, Tx, from_ms};

/// Totals since the database was created.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// (mailbox, class, n) from `message.received`.
    pub messages: Vec<(String, String, u64)>,
    /// (mailbox, n) from `ticket.created`.
    pub tickets_opened: Vec<(String, u64)>,
    /// Acknowledgements the SMTP server accepted (one latency each).
    pub acknowledgements_sent: u64,
    /// (outcome, n) from `outbox.deferred`, `outbox.failed`, `outbox.refused` and
    /// `smtp.transport_failed`.
    pub send_failures: Vec<(String, u64)>,
    pub deadline_warnings: u64,
    pub deadline_breaches: u64,
    /// (level, n) from `escalation.sent`.
    pub escalations: Vec<(i64, u64)>,
    /// (mailbox, n) from `mailbox.disconnected`.
    pub reconnects: Vec<(String, u64)>,
    /// Milliseconds from an inbound message's commit (`ack.queued`) to the SMTP server's
    /// acceptance of its acknowledgement (`outbox.sent`), one per acknowledgement sent.
    pub ack_latency_ms: Vec<i64>,
    pub outbox: OutboxNow,
}

/// The outbox at this moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxNow {
    pub depth: u64,
    /// When the oldest queued row was queued.
    pub oldest: Option<Timestamp>,
}

impl Tx<'_> {
    pub fn outbox_now(&self) -> Result<OutboxNow, StoreError> {
        let (depth, oldest): (i64, Option<i64>) = self.conn().query_row(
            "SELECT count(*), min(created_at) FROM outbox WHERE status = 'queued'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(OutboxNow {
            depth: depth.max(0) as u64,
            oldest: oldest.map(from_ms),
        })
    }

    /// How many messages quarantine holds and when the latest was put there; `None` when
    /// it holds none.
    pub fn quarantine_held(&self) -> Result<Option<(u64, Timestamp)>, StoreError> {
        let (n, latest): (i64, Option<i64>) = self.conn().query_row(
            "SELECT count(*), max(created_at) FROM quarantine WHERE status = 'held'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(latest.map(|at| (n.max(0) as u64, from_ms(at))))
    }

    /// Changes whenever another connection commits (SQLite's `PRAGMA data_version`): how the
    /// daemon notices mail `deskgate ingest` stored.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    pub fn figures(&self) -> Result<Figures, StoreError> {
        let count = |kind: &str| -> Result<u64, StoreError> {
            let n: i64 = self.conn().query_row(
                "SELECT count(*) FROM events WHERE kind = ?1",
                params![kind],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        };
        let by_mailbox = |kind: &str| -> Result<Vec<(String, u64)>, StoreError> {
            let mut stmt = self.conn().prepare(
                "SELECT coalesce(mailbox, ''), count(*) FROM events WHERE kind = ?1 GROUP BY 1 ORDER BY 1",
            )?;
            let rows = stmt
                .query_map(params![kind], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        };
        let mut stmt = self.conn().prepare(
            "SELECT coalesce(mailbox, ''), coalesce(json_extract(data, '$.class'), 'unknown'), count(*)
             FROM events WHERE kind = 'message.received' GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let messages = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn().prepare(
            "SELECT coalesce(json_extract(data, '$.level'), 0), count(*)
             FROM events WHERE kind = 'escalation.sent' GROUP BY 1 ORDER BY 1",
        )?;
        let escalations = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect::<Result<_, _>>()?;
        // One pass over the two kinds, grouped by outbox row (a join of events with events
        // on outbox_id has no index to use). `ack.queued` exists only for acknowledgements.
        let mut stmt = self.conn().prepare(
            "SELECT min(CASE WHEN kind = 'outbox.sent' THEN at END)
                    - min(CASE WHEN kind = 'ack.queued' THEN at END) AS ms
             FROM events
             WHERE kind IN ('ack.queued', 'outbox.sent') AND outbox_id IS NOT NULL
             GROUP BY outbox_id HAVING ms IS NOT NULL",
        )?;
        let ack_latency_ms: Vec<i64> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Figures {
            messages,
            tickets_opened: by_mailbox("ticket.created")?,
            acknowledgements_sent: ack_latency_ms.len() as u64,
            send_failures: vec![
                ("deferred".into(), count("outbox.deferred")?),
                ("failed".into(), count("outbox.failed")?),
                ("refused".into(), count("outbox.refused")?),
                ("transport".into(), count("smtp.transport_failed")?),
            ],
            deadline_warnings: count("deadline.warned")?,
            deadline_breaches: count("deadline.breached")?,
            escalations,
            reconnects: by_mailbox("mailbox.disconnected")?,
            ack_latency_ms,
            outbox: self.outbox_now()?,
        })
    }
}
