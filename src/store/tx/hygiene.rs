//! Hygiene: quarantine and the per-sender limits.

use crate::store::sql::Raw;
use crate::store::sql::params;
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::Tx;
use crate::model::{QuarantineId, TicketId};
use crate::policy::SenderLoad;
use crate::store::{StoreError, to_ms};

/// Mail put aside with the reason.
pub struct NewQuarantine<'a> {
    pub source: Option<(&'a str, Option<(u32, u32)>)>,
    pub reason: &'a str,
    pub dedupe_key: &'a str,
    pub message_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub subject: &'a str,
    /// The message's full size (the server's RFC822.SIZE for oversize mail).
    pub size: u64,
    /// False when `raw` holds only the headers.
    pub complete: bool,
    pub raw: &'a [u8],
    pub now: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineStatus {
    Held,
    Released,
    Deleted,
}

impl QuarantineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineStatus::Held => "held",
            QuarantineStatus::Released => "released",
            QuarantineStatus::Deleted => "deleted",
        }
    }

    pub(in crate::store) fn parse(text: &str) -> QuarantineStatus {
        match text {
            "released" => QuarantineStatus::Released,
            "deleted" => QuarantineStatus::Deleted,
            _ => QuarantineStatus::Held,
        }
    }
}

/// A quarantined message as stored, for release.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub id: QuarantineId,
    pub source: Option<(String, Option<(u32, u32)>)>,
    pub reason: String,
    pub status: QuarantineStatus,
    pub complete: bool,
    pub size: u64,
    pub raw: Vec<u8>,
}

impl Tx<'_> {
    pub fn quarantine(&self, q: &NewQuarantine<'_>) -> Result<QuarantineId, StoreError> {
        let (mailbox, uidvalidity, uid) = match q.source {
            Some((m, at)) => (Some(m), at.map(|a| a.0), at.map(|a| a.1)),
            None => (None, None, None),
        };
        let id: i64 = self.query_row(
            "INSERT INTO quarantine (mailbox, uidvalidity, uid, reason, message_id, from_address, subject,
                                     size, complete, raw, status, created_at, dedupe_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'held', ?11, ?12) RETURNING id",
            params![
                mailbox,
                uidvalidity,
                uid,
                q.reason,
                q.message_id,
                q.from,
                q.subject,
                i64::try_from(q.size).unwrap_or(i64::MAX),
                q.complete,
                Raw(q.raw),
                to_ms(q.now),
                q.dedupe_key
            ],
            |r| r.get(0),
        )?;
        self.fill_raw("quarantine", id, q.raw)?;
        Ok(QuarantineId(id))
    }

    /// The quarantine entry already holding a message with this dedupe key, if any.
    pub fn quarantined_key(&self, dedupe_key: &str) -> Result<Option<QuarantineId>, StoreError> {
        Ok(self
            .query_row(
                "SELECT id FROM quarantine WHERE dedupe_key = ?1 ORDER BY id LIMIT 1",
                [dedupe_key],
                |r| r.get(0),
            )
            .optional()?
            .map(QuarantineId))
    }

    pub fn quarantined(&self, id: QuarantineId) -> Result<Option<Quarantined>, StoreError> {
        let row = self
            .query_row(
                "SELECT mailbox, uidvalidity, uid, reason, status, complete, size, raw
                 FROM quarantine WHERE id = ?1",
                [id.0],
                |r| {
                    let mailbox: Option<String> = r.get(0)?;
                    let uidvalidity: Option<u32> = r.get(1)?;
                    let uid: Option<u32> = r.get(2)?;
                    Ok(Quarantined {
                        id,
                        source: mailbox.map(|m| (m, uidvalidity.zip(uid))),
                        reason: r.get(3)?,
                        status: QuarantineStatus::parse(&r.get::<_, String>(4)?),
                        complete: r.get(5)?,
                        size: r.get::<_, i64>(6)?.max(0) as u64,
                        raw: r.get(7)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// Marks a held entry released or deleted (deleting drops its bytes); false if it was
    /// not held.
    pub fn resolve_quarantine(
        &self,
        id: QuarantineId,
        status: QuarantineStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE quarantine SET status = ?2, resolved_at = ?3,
                    raw = CASE WHEN ?2 = 'deleted' THEN ?4 ELSE raw END
             WHERE id = ?1 AND status = 'held'",
            params![id.0, status.as_str(), to_ms(now), b"".as_slice()],
        )?;
        Ok(n == 1)
    }

    /// What `address` did since `since`: tickets opened and acknowledgements queued to it.
    pub fn sender_load(&self, address: &str, since: Timestamp) -> Result<SenderLoad, StoreError> {
        let (new_tickets, latest_ticket) = self.query_row(
            "SELECT count(*), max(id) FROM tickets WHERE customer_address = ?1 AND created_at >= ?2",
            params![address, to_ms(since)],
            |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        let acknowledgements = self.query_row(
            "SELECT count(*) FROM outbox WHERE recipients = ?1 AND kind = 'acknowledgement' AND created_at >= ?2",
            params![address, to_ms(since)],
            |r| r.get::<_, u32>(0),
        )?;
        Ok(SenderLoad {
            new_tickets,
            acknowledgements,
            latest_ticket: latest_ticket.map(TicketId),
        })
    }

    /// Notices of kind `notice` queued to `agent` since `since` (their `notice.queued` events).
    pub fn notices_since(
        &self,
        agent: &str,
        notice: &str,
        since: Timestamp,
    ) -> Result<u32, StoreError> {
        self.query_row(
            self.pick(
                "SELECT count(*) FROM events WHERE kind = 'notice.queued' AND at >= ?3
                 AND json_extract(data, '$.agent') = ?1 AND json_extract(data, '$.notice') = ?2",
                "SELECT count(*) FROM events WHERE kind = 'notice.queued' AND at >= ?3
                 AND data::jsonb ->> 'agent' = ?1 AND data::jsonb ->> 'notice' = ?2",
            ),
            params![agent, notice, to_ms(since)],
            |r| r.get::<_, u32>(0),
        )
    }
}
