//! The statements the daemon runs inside a transaction.

use jiff::Timestamp;
use rusqlite::blob::ZeroBlob;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{StoreError, from_ms, to_ms};
use crate::catalog::EventKind;
use crate::language::{Lang, Source};
use crate::model::{
    MessageRowId, OutboxId, Person, Priority, QuarantineId, TicketId, TicketState, TicketStatus,
};
use crate::policy::SenderLoad;

/// One open transaction. Obtained from [`super::Store::write`] or [`super::Store::read_blocking`].
pub struct Tx<'c> {
    tx: &'c Transaction<'c>,
}

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

/// A message already stored under the same dedupe key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub message: MessageRowId,
    pub ticket: Option<TicketId>,
    pub outbound: bool,
    /// [`content_key`] of the stored message.
    pub content: String,
}

pub struct NewTicket<'a> {
    pub mailbox: &'a str,
    pub subject: &'a str,
    pub customer: Option<&'a Person>,
    /// The language the customer is written to in, and why.
    pub language: Option<(Lang, Source)>,
    /// The `[[mailbox.address]]` the customer wrote to; `None`: the support address.
    pub address: Option<&'a str>,
    pub now: Timestamp,
}

/// A customer message, as it updates the sender's contact.
pub struct ContactSeen<'a> {
    pub person: &'a Person,
    /// The message's language, if there is evidence for it (see [`Source::is_evidence`]).
    pub language: Option<Lang>,
    /// The message opened a new ticket.
    pub new_ticket: bool,
    pub now: Timestamp,
}

pub struct NewMessage<'a> {
    /// `None` for a bounce of nothing we know.
    pub ticket: Option<TicketId>,
    pub outbound: bool,
    pub dedupe_key: &'a str,
    pub message_id: Option<&'a str>,
    /// The mailbox of inbound mail, with `(uidvalidity, uid)` when it was fetched over IMAP
    /// (not when the MTA delivered it to `deskgate ingest`).
    pub source: Option<(&'a str, Option<(u32, u32)>)>,
    pub from: Option<&'a Person>,
    pub subject: &'a str,
    pub sent_date: Option<Timestamp>,
    pub received_at: Timestamp,
    pub in_reply_to: &'a [String],
    pub references: &'a [String],
    pub class: &'a str,
    pub defects: &'a str,
    pub body_text: &'a str,
    /// Attachment file names.
    pub attachments: &'a [String],
    pub raw: &'a [u8],
    /// Seen by agents only; never a threading key for other senders.
    pub internal: bool,
    /// The agent who wrote it, or to whom it goes.
    pub agent: Option<&'a str>,
}

/// A customer's earlier ticket, for the history in agent notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierTicket {
    pub id: TicketId,
    pub subject: String,
    pub status: String,
    pub created_at: Timestamp,
}

/// A ticket's texts for the relay's leak check ([`crate::agent::reply::leak`]).
#[derive(Debug, Clone, Default)]
pub struct TicketTexts {
    /// Its internal notes: (author, written at, text).
    pub notes: Vec<(Option<String>, Timestamp, String)>,
    /// What its customers have seen: their mail and ours to them, newest first (at most
    /// [`PUBLIC_TEXTS`], each cut at 256 K characters).
    pub public: Vec<String>,
}

/// The most messages of a ticket the leak check reads as seen by its customers.
pub const PUBLIC_TEXTS: u32 = 200;

/// The customer message an answer replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub message_id: String,
    pub references: Vec<String>,
}

/// What an agent's answer met: the open deadlines, and the ticket's first response (its
/// creation time) if it had none yet.
#[derive(Debug, Clone)]
pub struct Met {
    pub deadlines: Vec<MetDeadline>,
    pub first_response: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct MetDeadline {
    pub id: i64,
    pub kind: String,
    pub due_at: Timestamp,
    /// When the customer message it was for arrived.
    pub received_at: Timestamp,
}

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

    pub(super) fn parse(text: &str) -> QuarantineStatus {
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

impl<'c> Tx<'c> {
    pub(super) fn new(tx: &'c Transaction<'c>) -> Tx<'c> {
        Tx { tx }
    }

    pub(super) fn conn(&self) -> &Transaction<'c> {
        self.tx
    }

    /// Runs `work` under a savepoint: if it fails, its writes are undone and the rest of the
    /// transaction goes on (one scheduler item that fails does not take its batch with it).
    pub fn savepoint<T>(
        &self,
        work: impl FnOnce(&Tx<'c>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.tx.execute_batch("SAVEPOINT item")?;
        match work(self) {
            Ok(value) => {
                self.tx.execute_batch("RELEASE item")?;
                Ok(value)
            }
            Err(err) => {
                self.tx.execute_batch("ROLLBACK TO item; RELEASE item")?;
                Err(err)
            }
        }
    }

    // === mailbox checkpoints ===

    pub fn checkpoint(&self, mailbox: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = self
            .tx
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
        self.tx.execute(
            "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mailbox) DO UPDATE SET
               last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                               THEN max(last_uid, excluded.last_uid) ELSE excluded.last_uid END,
               uidvalidity = excluded.uidvalidity,
               updated_at = excluded.updated_at",
            params![mailbox, checkpoint.uidvalidity, checkpoint.last_uid, to_ms(now)],
        )?;
        Ok(())
    }

    pub fn backlog(&self, mailbox: &str) -> Result<Option<Backlog>, StoreError> {
        let row = self
            .tx
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
        self.tx.execute(
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
        self.tx.execute(
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
        self.tx.execute(
            "UPDATE mailbox_state SET backlog_done_at = ?2 WHERE mailbox = ?1",
            params![mailbox, to_ms(now)],
        )?;
        self.backlog_summary(mailbox)
    }

    pub fn backlog_summary(&self, mailbox: &str) -> Result<BacklogSummary, StoreError> {
        let summary = self
            .tx
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

    // === OAuth 2.0 grants ===

    pub fn refresh_token(&self, account: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT refresh_token FROM oauth_grants WHERE account = ?1",
                [account],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_refresh_token(
        &self,
        account: &str,
        refresh_token: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO oauth_grants (account, refresh_token, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (account) DO UPDATE SET refresh_token = excluded.refresh_token,
                                                 updated_at = excluded.updated_at",
            params![account, refresh_token, to_ms(now)],
        )?;
        Ok(())
    }

    // === threading look-ups ===

    pub fn known_message(&self, dedupe_key: &str) -> Result<Option<Known>, StoreError> {
        let row = self
            .tx
            .query_row(
                "SELECT id, ticket_id, direction, from_address, subject, body_text FROM messages WHERE dedupe_key = ?1",
                [dedupe_key],
                |r| {
                    Ok(Known {
                        message: MessageRowId(r.get(0)?),
                        ticket: r.get::<_, Option<i64>>(1)?.map(TicketId),
                        outbound: r.get::<_, String>(2)? == "out",
                        content: content_key(
                            r.get::<_, Option<String>>(3)?.as_deref(),
                            &r.get::<_, String>(4)?,
                            &r.get::<_, String>(5)?,
                        ),
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// The ticket of the first of `message_ids` that we know (callers pass newest first).
    pub fn ticket_by_message_ids(
        &self,
        message_ids: &[String],
    ) -> Result<Option<TicketId>, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT ticket_id FROM messages
             WHERE message_id = ?1 AND ticket_id IS NOT NULL AND internal = 0 ORDER BY id LIMIT 1",
        )?;
        for id in message_ids {
            if let Some(ticket) = statement.query_row([id], |r| r.get(0)).optional()? {
                return Ok(Some(TicketId(ticket)));
            }
        }
        Ok(None)
    }

    /// The addresses taking part in `ticket`, or `None` if there is no such ticket.
    pub fn participants(&self, ticket: TicketId) -> Result<Option<Vec<String>>, StoreError> {
        let exists: Option<i64> = self
            .tx
            .query_row("SELECT id FROM tickets WHERE id = ?1", [ticket.0], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut statement = self.tx.prepare_cached(
            "SELECT address FROM participants WHERE ticket_id = ?1 AND role <> 'removed'
             ORDER BY address",
        )?;
        let addresses = statement
            .query_map([ticket.0], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(addresses))
    }

    /// The ticket with its customers, or `None` if there is no such ticket.
    pub fn ticket_state(&self, ticket: TicketId) -> Result<Option<TicketState>, StoreError> {
        let row = self
            .tx
            .query_row(
                "SELECT mailbox, subject, status, priority, assigned_agent, customer_address,
                        customer_name, created_at, language, address
                 FROM tickets WHERE id = ?1",
                [ticket.0],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<String>>(9)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            mailbox,
            subject,
            status,
            priority,
            assigned,
            address,
            name,
            created,
            language,
            written_to,
        )) = row
        else {
            return Ok(None);
        };
        let mut statement = self.tx.prepare_cached(
            "SELECT address, name FROM participants
             WHERE ticket_id = ?1 AND role IN ('customer', 'cc') ORDER BY role DESC, address",
        )?;
        let customers = statement
            .query_map([ticket.0], |r| {
                Ok(Person::new(
                    &r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?.as_deref(),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TicketState {
            id: ticket,
            mailbox,
            subject,
            status: TicketStatus::parse(&status).unwrap_or(TicketStatus::Open),
            priority: Priority::parse(&priority).unwrap_or(Priority::Normal),
            assigned,
            customer: address.map(|a| Person::new(&a, name.as_deref())),
            customers,
            created_at: from_ms(created),
            language: language.as_deref().and_then(Lang::parse),
            address: written_to,
        }))
    }

    /// The latest customer message of `ticket` that has a Message-ID, with its References.
    pub fn latest_customer_message(
        &self,
        ticket: TicketId,
    ) -> Result<Option<Answered>, StoreError> {
        let row = self
            .tx
            .query_row(
                "SELECT message_id, refs FROM messages
                 WHERE ticket_id = ?1 AND direction = 'in' AND class = 'customer'
                   AND internal = 0 AND agent IS NULL AND message_id IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                [ticket.0],
                |r| {
                    Ok(Answered {
                        message_id: r.get(0)?,
                        references: r
                            .get::<_, String>(1)?
                            .split_whitespace()
                            .map(String::from)
                            .collect(),
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// Since when the oldest unanswered customer message of `ticket` has waited.
    pub fn waiting_since(&self, ticket: TicketId) -> Result<Option<Timestamp>, StoreError> {
        let since: Option<i64> = self.tx.query_row(
            "SELECT min(m.received_at) FROM deadlines d JOIN messages m ON m.id = d.message_row_id
             WHERE d.ticket_id = ?1 AND d.met_at IS NULL AND d.cancelled_at IS NULL",
            [ticket.0],
            |r| r.get(0),
        )?;
        Ok(since.map(from_ms))
    }

    /// A contact's tickets (all of them, or all but `except`), newest first, at most `limit`:
    /// the history an agent sees, so nobody asks the customer to repeat themselves.
    pub fn earlier_tickets(
        &self,
        customer: &str,
        except: Option<TicketId>,
        limit: u32,
    ) -> Result<Vec<EarlierTicket>, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT id, subject, status, created_at FROM tickets
             WHERE customer_address = ?1 AND (?2 IS NULL OR id != ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement
            .query_map(
                params![customer.to_ascii_lowercase(), except.map(|t| t.0), limit],
                |r| {
                    Ok(EarlierTicket {
                        id: TicketId(r.get(0)?),
                        subject: r.get(1)?,
                        status: r.get(2)?,
                        created_at: from_ms(r.get(3)?),
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // === writes ===

    /// An agent answered at `at`: every open deadline of `ticket` is met, and the ticket's first
    /// response is recorded if it had none. Returns what was met, for the events.
    pub fn answered(&self, ticket: TicketId, at: Timestamp) -> Result<Met, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "UPDATE deadlines SET met_at = ?2, next_step_at = NULL
             WHERE ticket_id = ?1 AND met_at IS NULL AND cancelled_at IS NULL
             RETURNING id, kind, due_at,
                       (SELECT received_at FROM messages m WHERE m.id = deadlines.message_row_id)",
        )?;
        let deadlines = statement
            .query_map(params![ticket.0, to_ms(at)], |r| {
                Ok(MetDeadline {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    due_at: from_ms(r.get(2)?),
                    received_at: from_ms(r.get(3)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let first_response = self
            .tx
            .query_row(
                "UPDATE tickets SET first_response_at = ?2
                 WHERE id = ?1 AND first_response_at IS NULL RETURNING created_at",
                params![ticket.0, to_ms(at)],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(from_ms);
        Ok(Met {
            deadlines,
            first_response,
        })
    }

    pub fn assign(&self, ticket: TicketId, agent: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE tickets SET assigned_agent = ?2 WHERE id = ?1",
            params![ticket.0, agent],
        )?;
        Ok(())
    }

    pub fn set_priority(&self, ticket: TicketId, priority: Priority) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE tickets SET priority = ?2 WHERE id = ?1",
            params![ticket.0, priority.as_str()],
        )?;
        Ok(())
    }

    pub fn create_ticket(&self, ticket: &NewTicket<'_>) -> Result<TicketId, StoreError> {
        self.tx.execute(
            "INSERT INTO tickets (mailbox, subject, customer_address, customer_name, status, created_at, updated_at, status_at,
                                  language, language_source, address)
             VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?5, ?5, ?6, ?7, ?8)",
            params![
                ticket.mailbox,
                ticket.subject,
                ticket.customer.map(|c| c.address.as_str()),
                ticket.customer.and_then(|c| c.name.as_deref()),
                to_ms(ticket.now),
                ticket.language.map(|(l, _)| l.code()),
                ticket.language.map(|(_, s)| s.as_str()),
                ticket.address,
            ],
        )?;
        Ok(TicketId(self.tx.last_insert_rowid()))
    }

    pub fn set_ticket_status(
        &self,
        ticket: TicketId,
        status: TicketStatus,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            // A new status starts a new spell (status_at), which the scheduler looks at: a
            // pending ticket gets reminders, a resolved one a survey.
            "UPDATE tickets SET updated_at = ?3,
                    status_at = CASE WHEN status = ?2 THEN coalesce(status_at, ?3) ELSE ?3 END,
                    next_step_at = CASE WHEN status = ?2 THEN next_step_at
                                        WHEN ?2 IN ('pending', 'resolved') THEN ?3 END,
                    status = ?2
             WHERE id = ?1",
            params![ticket.0, status.as_str(), to_ms(now)],
        )?;
        Ok(())
    }

    /// Sets the language `ticket`'s customer is written to in. An agent's choice
    /// ([`Source::Agent`]) also becomes the customer's contact language, and is kept when later
    /// customer mail brings other evidence; nothing else replaces it. Returns false if there is
    /// no such ticket or an agent's choice was kept.
    pub fn set_ticket_language(
        &self,
        ticket: TicketId,
        lang: Lang,
        source: Source,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "UPDATE tickets SET language = ?2, language_source = ?3, updated_at = ?4
             WHERE id = ?1 AND (?3 = 'agent' OR language_source IS NOT 'agent')",
            params![ticket.0, lang.code(), source.as_str(), to_ms(now)],
        )?;
        if n == 1 && source == Source::Agent {
            self.tx.execute(
                "UPDATE contacts SET language = ?2
                 WHERE address = (SELECT customer_address FROM tickets WHERE id = ?1)",
                params![ticket.0, lang.code()],
            )?;
        }
        Ok(n == 1)
    }

    /// The language `ticket`'s customer is written to in, and why; `None` for a ticket from
    /// before languages were recorded (or no such ticket).
    pub fn ticket_language(&self, ticket: TicketId) -> Result<Option<(Lang, Source)>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = self
            .tx
            .query_row(
                "SELECT language, language_source FROM tickets WHERE id = ?1",
                [ticket.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(lang, source)| Some((Lang::parse(&lang?)?, Source::parse(&source?)?))))
    }

    /// The language a contact was last written to in with evidence behind it.
    pub fn contact_language(&self, address: &str) -> Result<Option<Lang>, StoreError> {
        let lang: Option<Option<String>> = self
            .tx
            .query_row(
                "SELECT language FROM contacts WHERE address = ?1",
                [address],
                |r| r.get(0),
            )
            .optional()?;
        Ok(lang.flatten().as_deref().and_then(Lang::parse))
    }

    /// Records a customer message on its sender's contact (created on first contact): the
    /// display name as last decoded, the language if there is evidence, the counts, last seen.
    pub fn contact_seen(&self, seen: &ContactSeen<'_>) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO contacts (address, name, language, first_seen, last_seen, n_tickets, n_messages)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, 1)
             ON CONFLICT (address) DO UPDATE SET
               name = coalesce(excluded.name, name),
               language = coalesce(excluded.language, language),
               last_seen = max(last_seen, excluded.last_seen),
               n_tickets = n_tickets + excluded.n_tickets,
               n_messages = n_messages + 1",
            params![
                seen.person.address,
                seen.person.name,
                seen.language.map(Lang::code),
                to_ms(seen.now),
                i64::from(seen.new_ticket),
            ],
        )?;
        Ok(())
    }

    pub fn touch_ticket(&self, ticket: TicketId, now: Timestamp) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE tickets SET updated_at = ?2 WHERE id = ?1",
            params![ticket.0, to_ms(now)],
        )?;
        Ok(())
    }

    pub fn add_participant(
        &self,
        ticket: TicketId,
        person: &Person,
        role: &str,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO participants (ticket_id, address, name, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ticket_id, address) DO UPDATE SET name = coalesce(excluded.name, name)",
            params![ticket.0, person.address, person.name, role],
        )?;
        Ok(())
    }

    /// `#cc add`: `address` receives the ticket's answers from now on (again, if removed).
    pub fn cc_add(&self, ticket: TicketId, address: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO participants (ticket_id, address, name, role) VALUES (?1, ?2, NULL, 'cc')
             ON CONFLICT (ticket_id, address) DO UPDATE SET role = 'cc' WHERE role = 'removed'",
            params![ticket.0, address],
        )?;
        Ok(())
    }

    /// `#cc remove`: `address` no longer receives the ticket's answers, and mail from it no
    /// longer adds it back (the row stays, marked `removed`).
    pub fn cc_remove(&self, ticket: TicketId, address: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE participants SET role = 'removed'
             WHERE ticket_id = ?1 AND address = ?2 AND role = 'cc'",
            params![ticket.0, address],
        )?;
        Ok(())
    }

    /// The internal notes of `ticket` and what its customers have seen.
    pub fn ticket_texts(&self, ticket: TicketId) -> Result<TicketTexts, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT agent, received_at, body_text FROM messages
             WHERE ticket_id = ?1 AND direction = 'in' AND internal = 1 AND class LIKE '%agent-note'
             ORDER BY id",
        )?;
        let notes = statement
            .query_map([ticket.0], |r| {
                Ok((r.get(0)?, from_ms(r.get(1)?), r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut statement = self.tx.prepare_cached(
            "SELECT substr(body_text, 1, 262144) FROM messages WHERE ticket_id = ?1 AND internal = 0
             ORDER BY id DESC LIMIT ?2",
        )?;
        let public = statement
            .query_map(params![ticket.0, PUBLIC_TEXTS], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TicketTexts { notes, public })
    }

    pub fn insert_message(&self, message: &NewMessage<'_>) -> Result<MessageRowId, StoreError> {
        use sha2::Digest;
        let sha256 = hex(&sha2::Sha256::digest(message.raw));
        let (mailbox, uidvalidity, uid) = match message.source {
            Some((m, at)) => (Some(m), at.map(|a| a.0), at.map(|a| a.1)),
            None => (None, None, None),
        };
        self.tx.execute(
            "INSERT INTO messages (ticket_id, direction, dedupe_key, message_id, mailbox, uidvalidity, uid,
                                   from_address, from_name, subject, sent_date, received_at, in_reply_to,
                                   refs, class, defects, body_text, raw_sha256, raw, internal, agent,
                                   attachments)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                     ?20, ?21, ?22)",
            params![
                message.ticket.map(|t| t.0),
                if message.outbound { "out" } else { "in" },
                message.dedupe_key,
                message.message_id,
                mailbox,
                uidvalidity,
                uid,
                message.from.map(|p| p.address.as_str()),
                message.from.and_then(|p| p.name.as_deref()),
                message.subject,
                message.sent_date.map(to_ms),
                to_ms(message.received_at),
                message.in_reply_to.join(" "),
                message.references.join(" "),
                message.class,
                message.defects,
                message.body_text,
                sha256,
                ZeroBlob(message.raw.len() as u64),
                message.internal,
                message.agent,
                message.attachments.join("\n"),
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        self.fill_blob("messages", id, message.raw)?;
        Ok(MessageRowId(id))
    }

    /// Writes `bytes` into the `raw` column of row `id` of `table`, inserted as a zero blob of
    /// their length: SQLite would otherwise copy a bound blob and build the whole row in
    /// memory, three copies of a 25 MB message at once.
    fn fill_blob(&self, table: &str, id: i64, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        let mut blob = self
            .tx
            .blob_open(rusqlite::MAIN_DB, table, "raw", id, false)?;
        blob.write_all(bytes)
            .map_err(|e| StoreError::Corrupt(format!("writing {table} row {id}: {e}")))
    }

    pub fn enqueue(&self, outbox: &NewOutbox<'_>) -> Result<OutboxId, StoreError> {
        self.tx.execute(
            "INSERT INTO outbox (ticket_id, message_row_id, kind, envelope_from, recipients, status,
                                 next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6)",
            params![
                outbox.ticket.map(|t| t.0),
                outbox.message.0,
                outbox.kind,
                outbox.envelope_from,
                outbox.recipients.join(" "),
                to_ms(outbox.now)
            ],
        )?;
        Ok(OutboxId(self.tx.last_insert_rowid()))
    }

    pub fn record(&self, event: &Event<'_>, now: Timestamp) -> Result<(), StoreError> {
        self.tx.execute(
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

    // === hygiene: quarantine, bounces, per-sender limits ===

    pub fn quarantine(&self, q: &NewQuarantine<'_>) -> Result<QuarantineId, StoreError> {
        let (mailbox, uidvalidity, uid) = match q.source {
            Some((m, at)) => (Some(m), at.map(|a| a.0), at.map(|a| a.1)),
            None => (None, None, None),
        };
        self.tx.execute(
            "INSERT INTO quarantine (mailbox, uidvalidity, uid, reason, message_id, from_address, subject,
                                     size, complete, raw, status, created_at, dedupe_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'held', ?11, ?12)",
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
                ZeroBlob(q.raw.len() as u64),
                to_ms(q.now),
                q.dedupe_key
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        self.fill_blob("quarantine", id, q.raw)?;
        Ok(QuarantineId(id))
    }

    /// The quarantine entry already holding a message with this dedupe key, if any.
    pub fn quarantined_key(&self, dedupe_key: &str) -> Result<Option<QuarantineId>, StoreError> {
        Ok(self
            .tx
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
            .tx
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
        let n = self.tx.execute(
            "UPDATE quarantine SET status = ?2, resolved_at = ?3,
                    raw = CASE WHEN ?2 = 'deleted' THEN x'' ELSE raw END
             WHERE id = ?1 AND status = 'held'",
            params![id.0, status.as_str(), to_ms(now)],
        )?;
        Ok(n == 1)
    }

    /// Our outbound mail with one of these Message-IDs, with its outbox row.
    pub fn outbound_by_message_ids(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<OutboundSent>, StoreError> {
        let mut statement = self.tx.prepare_cached(
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
        self.tx.execute(
            "UPDATE outbox SET bounced_at = ?2,
                    bounce = CASE WHEN bounce IS NULL THEN ?3 ELSE bounce || '; ' || ?3 END
             WHERE id = ?1",
            params![outbox.0, to_ms(now), detail],
        )?;
        Ok(())
    }

    /// What `address` did since `since`: tickets opened and acknowledgements queued to it.
    pub fn sender_load(&self, address: &str, since: Timestamp) -> Result<SenderLoad, StoreError> {
        let (new_tickets, latest_ticket) = self.tx.query_row(
            "SELECT count(*), max(id) FROM tickets WHERE customer_address = ?1 AND created_at >= ?2",
            params![address, to_ms(since)],
            |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        let acknowledgements = self.tx.query_row(
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
        Ok(self.tx.query_row(
            "SELECT count(*) FROM events WHERE kind = 'notice.queued' AND at >= ?3
             AND json_extract(data, '$.agent') = ?1 AND json_extract(data, '$.notice') = ?2",
            params![agent, notice, to_ms(since)],
            |r| r.get::<_, u32>(0),
        )?)
    }

    // === outbox ===

    /// Queued rows whose next attempt is due at `now`, oldest first.
    pub fn outbox_due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT o.id, o.ticket_id, m.message_id, o.envelope_from, o.recipients, m.raw, o.attempts,
                    o.created_at, o.kind, m.internal, o.delivered, o.refused
             FROM outbox o JOIN messages m ON m.id = o.message_row_id
             WHERE o.status = 'queued' AND o.next_attempt_at <= ?1
             ORDER BY o.next_attempt_at, o.id LIMIT ?2",
        )?;
        let rows = statement
            .query_map(params![to_ms(now), limit], |r| {
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
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records what the server said about some of a row's recipients: `accepted` got the
    /// mail, `refused` (`address: reply`) never will.
    pub fn outbox_answered(
        &self,
        id: OutboxId,
        accepted: &[String],
        refused: &[String],
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE outbox SET delivered = trim(delivered || ' ' || ?2),
                               refused = CASE WHEN ?3 = '' THEN refused
                                              WHEN refused = '' THEN ?3
                                              ELSE refused || char(10) || ?3 END
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, accepted.join(" "), refused.join("\n")],
        )?;
        Ok(())
    }

    /// When the earliest queued row is due, if any.
    pub fn outbox_next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let next: Option<i64> = self.tx.query_row(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?;
        Ok(next.map(from_ms))
    }

    /// Marks a row sent. Only a queued row changes; returns false if it was not queued.
    pub fn outbox_sent(&self, id: OutboxId, now: Timestamp) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
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
        self.tx.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, to_ms(next_at), error],
        )?;
        Ok(())
    }

    pub fn outbox_failed(&self, id: OutboxId, error: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2
             WHERE id = ?1 AND status = 'queued'",
            params![id.0, error],
        )?;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What makes two messages with one Message-ID the same message: sender, subject and text
/// (the bytes differ between mailboxes by their trace headers).
pub fn content_key(from: Option<&str>, subject: &str, text: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in [from.unwrap_or(""), subject, text] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hex(&hash.finalize())
}

/// The dedupe key of an inbound message: its Message-ID, or else a stable synthetic one, a
/// hash of its bytes after the trace fields servers put on top, so the same message delivered
/// to two mailboxes (CC to support and sales) has one key.
pub fn dedupe_key(message_id: Option<&str>, raw: &[u8]) -> String {
    use sha2::Digest;
    match message_id {
        Some(id) => format!("mid:{id}"),
        None => format!(
            "content:{}",
            hex(&sha2::Sha256::digest(without_trace_fields(raw)))
        ),
    }
}

/// The key schema versions 1 to 3 gave mail without a Message-ID: a hash of all its bytes.
pub fn legacy_content_key(raw: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex(&sha2::Sha256::digest(raw)))
}

/// Header fields each server on the way adds on top of a message, differing per copy.
const TRACE_FIELDS: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "authentication-results",
    "received-spf",
];

/// `raw` from its first header that is not a trace field (nor an mbox `From ` line).
fn without_trace_fields(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        let name = line.iter().position(|b| *b == b':').map(|colon| {
            String::from_utf8_lossy(&line[..colon])
                .trim()
                .to_ascii_lowercase()
        });
        let trace = name.as_deref().is_some_and(|n| TRACE_FIELDS.contains(&n));
        if !(trace || (continuation && skipping) || line.starts_with(b"From ")) {
            break;
        }
        skipping = trace || (continuation && skipping);
        rest = &rest[end..];
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_copies_without_message_id_share_a_key() {
        let body = b"From: a@b.test\r\nSubject: hi\r\n\r\nsame\r\n";
        let one = [
            &b"Return-Path: <a@b.test>\r\nDelivered-To: support@x.test\r\nReceived: from a\r\n by b; now\r\n"[..],
            body,
        ]
        .concat();
        let two = [
            &b"Delivered-To: sales@x.test\r\nReceived: from c; later\r\n"[..],
            body,
        ]
        .concat();
        assert_eq!(dedupe_key(None, &one), dedupe_key(None, &two));
        assert_eq!(dedupe_key(None, &one), dedupe_key(None, body));
        let other = b"From: a@b.test\r\nSubject: hi\r\n\r\nother\r\n";
        assert_ne!(dedupe_key(None, body), dedupe_key(None, other));
        assert_eq!(dedupe_key(Some("x@y"), body), "mid:x@y");
    }
}
