//! The outbox: rows queued, due, sent, retried or failed, and outbound mail found again by
//! its Message-ID (bounces).

use crate::store::sql::params;
use jiff::Timestamp;

use super::Tx;
use crate::model::{MessageRowId, OutboxId, TicketId};
use crate::store::{StoreError, from_ms, to_ms};

pub struct NewOutbox<'a> {
    /// `None`: an alert to the admin.
    pub ticket: Option<TicketId>,
    pub message: MessageRowId,
    pub kind: &'a str,
    pub envelope_from: &'a str,
    pub recipients: &'a [String],
    pub now: Timestamp,
}

/// An outbox row ready to send.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub ticket: Option<TicketId>,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// Recipients an earlier attempt delivered to.
    pub delivered: Vec<String>,
    /// Recipients refused for good by an earlier attempt.
    pub refused: Vec<String>,
    pub raw: Vec<u8>,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub kind: String,
    /// Mail to an agent (a notification, an alert): a refusal of it tells nobody by mail.
    pub internal: bool,
}

impl OutboxRow {
    /// The recipients this attempt is for.
    pub fn pending(&self) -> Vec<String> {
        self.recipients
            .iter()
            .filter(|r| {
                let done = |d: &String| d.eq_ignore_ascii_case(r);
                !(self.delivered.iter().any(done) || self.refused.iter().any(done))
            })
            .cloned()
            .collect()
    }
}

/// One of our outbound messages, found by its Message-ID (a bounce returns it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSent {
    pub outbox: OutboxId,
    /// The outbox kind: `acknowledgement`, `reply` (to customers), `notification`, ...
    pub kind: String,
    pub ticket: Option<TicketId>,
    pub message_id: String,
    pub recipients: Vec<String>,
}

impl Tx<'_> {
    pub fn enqueue(&self, outbox: &NewOutbox<'_>) -> Result<OutboxId, StoreError> {
        self.query_row(
            "INSERT INTO outbox (ticket_id, message_row_id, kind, envelope_from, recipients, status,
                                 next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6) RETURNING id",
            params![
                outbox.ticket.map(|t| t.0),
                outbox.message.0,
                outbox.kind,
                outbox.envelope_from,
                outbox.recipients.join(" "),
                to_ms(outbox.now)
            ],
            |r| Ok(OutboxId(r.get(0)?)),
        )
    }

    /// Our outbound mail with one of these Message-IDs, with its outbox row.
    pub fn outbound_by_message_ids(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<OutboundSent>, StoreError> {
        let statement = self.prepare(
            "SELECT o.id, o.ticket_id, o.recipients, o.kind FROM messages m JOIN outbox o ON o.message_row_id = m.id
             WHERE m.message_id = ?1 AND m.direction = 'out'",
        )?;
        let mut found = Vec::new();
        for id in message_ids {
            let rows = statement
                .query_map([id], |r| {
                    Ok(OutboundSent {
                        outbox: OutboxId(r.get(0)?),
                        kind: r.get(3)?,
                        ticket: r.get::<_, Option<i64>>(1)?.map(TicketId),
                        message_id: id.clone(),
                        recipients: r
                            .get::<_, String>(2)?
                            .split_whitespace()
                            .map(String::from)
                            .collect(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            found.extend(rows);
        }
        Ok(found)
    }

    pub fn mark_bounced(
        &self,
        outbox: OutboxId,
        detail: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET bounced_at = ?2,
                    bounce = CASE WHEN bounce IS NULL THEN ?3 ELSE bounce || '; ' || ?3 END
             WHERE id = ?1",
            params![outbox.0, to_ms(now), detail],
        )?;
        Ok(())
    }

    /// Claims up to `limit` queued rows due at `now`, oldest first, for `instance` during
    /// `claim_ms` of the database's clock, and returns them. A row claimed by another
    /// instance is not taken until that claim has run out (its instance died or stalled);
    /// PostgreSQL skips rows another transaction is claiming at this moment.
    pub fn outbox_claim(
        &self,
        now: Timestamp,
        limit: u32,
        instance: &str,
        claim_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let clock = self.clock()?;
        let until = clock + claim_ms;
        let mut claimed: Vec<i64> = self
            .prepare(self.pick(
                "UPDATE outbox SET claimed_by = ?3, claimed_until = ?4
                 WHERE id IN (SELECT id FROM outbox
                              WHERE status = 'queued' AND next_attempt_at <= ?1
                                AND (claimed_until IS NULL OR claimed_until < ?2)
                              ORDER BY next_attempt_at, id LIMIT ?5)
                 RETURNING id",
                "UPDATE outbox SET claimed_by = ?3, claimed_until = ?4
                 WHERE id IN (SELECT id FROM outbox
                              WHERE status = 'queued' AND next_attempt_at <= ?1
                                AND (claimed_until IS NULL OR claimed_until < ?2)
                              ORDER BY next_attempt_at, id LIMIT ?5
                              FOR UPDATE SKIP LOCKED)
                 RETURNING id",
            ))?
            .query_map(params![to_ms(now), clock, instance, until, limit], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?;
        claimed.sort_unstable();
        let statement = self.prepare(
            "SELECT o.id, o.ticket_id, m.message_id, o.envelope_from, o.recipients, m.raw, o.attempts,
                    o.created_at, o.kind, m.internal, o.delivered, o.refused
             FROM outbox o JOIN messages m ON m.id = o.message_row_id
             WHERE o.id = ?1",
        )?;
        let mut rows = Vec::with_capacity(claimed.len());
        for id in claimed {
            rows.extend(statement.query_map([id], |r| {
                let words = |text: String| -> Vec<String> {
                    text.split_whitespace().map(String::from).collect()
                };
                // `address: reply` a line: the address is what comes before the first `: `.
                let refused = r
                    .get::<_, String>(11)?
                    .lines()
                    .filter_map(|line| line.split_once(": ").map(|(a, _)| a.to_string()))
                    .collect();
                Ok(OutboxRow {
                    id: OutboxId(r.get(0)?),
                    ticket: r.get::<_, Option<i64>>(1)?.map(TicketId),
                    message_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    envelope_from: r.get(3)?,
                    recipients: words(r.get(4)?),
                    delivered: words(r.get(10)?),
                    refused,
                    raw: r.get(5)?,
                    attempts: r.get(6)?,
                    created_at: from_ms(r.get(7)?),
                    kind: r.get(8)?,
                    internal: r.get(9)?,
                })
            })?);
        }
        rows.into_iter().collect()
    }

    /// Records what the server said about some of a row's recipients: `accepted` got the
    /// mail, `refused` (`address: reply`) never will.
    pub fn outbox_answered(
        &self,
        id: OutboxId,
        accepted: &[String],
        refused: &[String],
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET delivered = trim(delivered || ' ' || ?2),
                               refused = CASE WHEN ?3 = '' THEN refused
                                              WHEN refused = '' THEN ?3
                                              ELSE refused || ?4 || ?3 END
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, accepted.join(" "), refused.join("\n"), "\n"],
        )?;
        Ok(())
    }

    /// Gives up `instance`'s claims on rows it has not sent (it stops, its transport broke,
    /// or it restarts after a crash), so any instance may send them now.
    pub fn outbox_release(&self, instance: &str) -> Result<usize, StoreError> {
        self.execute(
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
             WHERE claimed_by = ?1 AND status = 'queued'",
            [instance],
        )
    }

    /// When the earliest queued row is due (or its claim runs out), if any.
    pub fn outbox_next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let next: Option<i64> = self.query_row(
            "SELECT min(CASE WHEN claimed_until > next_attempt_at THEN claimed_until
                             ELSE next_attempt_at END)
             FROM outbox WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?;
        Ok(next.map(from_ms))
    }

    /// Marks a row sent. Only a queued row changes; returns false if it was not queued.
    pub fn outbox_sent(&self, id: OutboxId, now: Timestamp) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL,
                               claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, to_ms(now)],
        )?;
        Ok(n == 1)
    }

    pub fn outbox_retry_at(
        &self,
        id: OutboxId,
        next_at: Timestamp,
        error: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3,
                               claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, to_ms(next_at), error],
        )?;
        Ok(())
    }

    pub fn outbox_failed(&self, id: OutboxId, error: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2,
                               claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, error],
        )?;
        Ok(())
    }
}
