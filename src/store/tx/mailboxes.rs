//! Where each mailbox's ingest stands (checkpoints, the first start's backlog) and the OAuth
//! grants.

use crate::store::sql::params;
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::Tx;
use crate::store::{StoreError, from_ms, to_ms};

/// Where a mailbox's ingest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uidvalidity: u32,
    /// Every UID up to and including this one has been committed.
    pub last_uid: u32,
}

/// The mail that was already in a folder when deskgate first started on it (or when the
/// server reset UIDVALIDITY): every UID below `uid_next` in `uidvalidity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub uidvalidity: u32,
    pub uid_next: u32,
    /// The first start, or (`reread`) the last sync before a UIDVALIDITY reset.
    pub started_at: Timestamp,
    /// Read again after a UIDVALIDITY reset rather than found at the first start.
    pub reread: bool,
    /// The backlog has been worked through; its summary is in the events.
    pub done: bool,
}

/// How a backlog was imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BacklogSummary {
    /// Stored as ticket messages.
    pub imported: u32,
    /// Of those, imported without acknowledgement or deadline.
    pub quiet: u32,
    /// Left in the folder, untouched, because `initial_import` did not select them.
    pub skipped: u32,
}

impl Tx<'_> {
    pub fn checkpoint(&self, mailbox: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = self
            .query_row(
                "SELECT uidvalidity, last_uid FROM mailbox_state WHERE mailbox = ?1",
                [mailbox],
                |r| {
                    Ok(Checkpoint {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// Records progress. Within one UIDVALIDITY the checkpoint only moves forward.
    pub fn set_checkpoint(
        &self,
        mailbox: &str,
        checkpoint: Checkpoint,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mailbox) DO UPDATE SET
               last_uid = CASE WHEN mailbox_state.uidvalidity = excluded.uidvalidity
                                AND mailbox_state.last_uid > excluded.last_uid
                               THEN mailbox_state.last_uid ELSE excluded.last_uid END,
               uidvalidity = excluded.uidvalidity,
               updated_at = excluded.updated_at",
            params![mailbox, checkpoint.uidvalidity, checkpoint.last_uid, to_ms(now)],
        )?;
        Ok(())
    }

    pub fn backlog(&self, mailbox: &str) -> Result<Option<Backlog>, StoreError> {
        let row = self
            .query_row(
                "SELECT uidvalidity, backlog_uid_next, backlog_started_at, backlog_kind = 'reread',
                        backlog_done_at IS NOT NULL
                 FROM mailbox_state WHERE mailbox = ?1 AND backlog_uid_next IS NOT NULL",
                [mailbox],
                |r| {
                    Ok(Backlog {
                        uidvalidity: r.get(0)?,
                        uid_next: r.get(1)?,
                        started_at: from_ms(r.get(2)?),
                        reread: r.get(3)?,
                        done: r.get(4)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// A first start (or a UIDVALIDITY reset): the checkpoint restarts at 0, and every UID
    /// below `uid_next` is backlog. After a reset the backlog counts as started when the
    /// mailbox last made progress (`updated_at`): mail that arrived later is new to us.
    pub fn begin_backlog(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uid_next: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at, backlog_uid_next,
                                        backlog_started_at, backlog_kind, backlog_skipped, backlog_done_at)
             VALUES (?1, ?2, 0, ?4, ?3, ?4, 'first-start', 0, NULL)
             ON CONFLICT (mailbox) DO UPDATE SET
               uidvalidity = excluded.uidvalidity, last_uid = 0, updated_at = excluded.updated_at,
               backlog_uid_next = excluded.backlog_uid_next,
               backlog_started_at = mailbox_state.updated_at, backlog_kind = 'reread',
               backlog_skipped = 0, backlog_done_at = NULL",
            params![mailbox, uidvalidity, uid_next, to_ms(now)],
        )?;
        Ok(())
    }

    /// Backlog messages `initial_import` leaves alone: the checkpoint passes them and they
    /// are counted, in the same transaction.
    pub fn skip_backlog(
        &self,
        mailbox: &str,
        checkpoint: Checkpoint,
        n_skipped: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.set_checkpoint(mailbox, checkpoint, now)?;
        self.execute(
            "UPDATE mailbox_state SET backlog_skipped = backlog_skipped + ?2 WHERE mailbox = ?1",
            params![mailbox, n_skipped],
        )?;
        Ok(())
    }

    /// Marks the backlog worked through and says how it went.
    pub fn finish_backlog(
        &self,
        mailbox: &str,
        now: Timestamp,
    ) -> Result<BacklogSummary, StoreError> {
        self.execute(
            "UPDATE mailbox_state SET backlog_done_at = ?2 WHERE mailbox = ?1",
            params![mailbox, to_ms(now)],
        )?;
        self.backlog_summary(mailbox)
    }

    pub fn backlog_summary(&self, mailbox: &str) -> Result<BacklogSummary, StoreError> {
        let summary = self
            .query_row(
                "SELECT
                   (SELECT count(*) FROM messages m
                    WHERE m.mailbox = s.mailbox AND m.uidvalidity = s.uidvalidity
                      AND m.uid < s.backlog_uid_next AND m.direction = 'in'),
                   (SELECT count(*) FROM messages m JOIN events e ON e.message_row_id = m.id
                    WHERE m.mailbox = s.mailbox AND m.uidvalidity = s.uidvalidity
                      AND m.uid < s.backlog_uid_next AND e.kind = 'message.imported_quietly'),
                   s.backlog_skipped
                 FROM mailbox_state s WHERE s.mailbox = ?1",
                [mailbox],
                |r| {
                    Ok(BacklogSummary {
                        imported: r.get(0)?,
                        quiet: r.get(1)?,
                        skipped: r.get(2)?,
                    })
                },
            )
            .optional()?;
        Ok(summary.unwrap_or_default())
    }

    pub fn refresh_token(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.query_row(
            "SELECT refresh_token FROM oauth_grants WHERE account = ?1",
            [account],
            |r| r.get(0),
        )
        .optional()
    }

    pub fn set_refresh_token(
        &self,
        account: &str,
        refresh_token: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO oauth_grants (account, refresh_token, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (account) DO UPDATE SET refresh_token = excluded.refresh_token,
                                                 updated_at = excluded.updated_at",
            params![account, refresh_token, to_ms(now)],
        )?;
        Ok(())
    }
}
