//! What the deadline scheduler reads and writes: open deadlines, tickets waiting on a
//! follow-up, and the steps already taken (each at most once, by a unique index).

use crate::store::sql::params;
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::{StoreError, Tx, from_ms, to_ms};
use crate::catalog::EventKind;
use crate::model::{MessageRowId, TicketId, TicketStatus};
use crate::policy::{DeadlineFacts, NewDeadline, TicketFacts};

/// A step taken, for "who was told before".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    pub name: String,
    pub at: Timestamp,
    pub recipients: Vec<String>,
    pub deadline: Option<i64>,
}

/// A step the scheduler takes.
#[derive(Debug, Clone, Copy)]
pub struct NewStep<'a> {
    pub ticket: TicketId,
    /// The deadline it belongs to; `None` for a ticket's follow-up.
    pub deadline: Option<i64>,
    pub name: &'a str,
    /// The status spell (`status_at`) a follow-up belongs to; `None` for once per ticket or
    /// deadline.
    pub episode: Option<Timestamp>,
    /// Who was told.
    pub recipients: &'a [String],
    pub detail: &'a str,
}

/// A paused deadline, to be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    pub id: i64,
    pub due_at: Timestamp,
    pub warn_at: Option<Timestamp>,
    pub paused_at: Timestamp,
}

impl Tx<'_> {
    pub fn insert_deadline(
        &self,
        ticket: TicketId,
        message: MessageRowId,
        deadline: &NewDeadline,
    ) -> Result<(), StoreError> {
        let next = deadline.warn_at.unwrap_or(deadline.due_at);
        self.execute(
            "INSERT INTO deadlines (ticket_id, message_row_id, kind, due_at, warn_at, next_step_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ticket.0,
                message.0,
                deadline.kind.as_str(),
                to_ms(deadline.due_at),
                deadline.warn_at.map(to_ms),
                to_ms(next)
            ],
        )?;
        Ok(())
    }

    /// The earliest time the scheduler has anything to do (two index look-ups).
    pub fn next_step_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let at: Option<i64> = self.query_row(
            "SELECT min(at) FROM (
                 SELECT min(next_step_at) AS at FROM deadlines WHERE next_step_at IS NOT NULL
                 UNION ALL
                 SELECT min(next_step_at) FROM tickets WHERE next_step_at IS NOT NULL) AS due",
            [],
            |r| r.get(0),
        )?;
        Ok(at.map(from_ms))
    }

    /// Deadlines with a step due by `now`, earliest first.
    pub fn due_deadlines(&self, now: Timestamp, limit: u32) -> Result<Vec<i64>, StoreError> {
        let statement = self.prepare(
            "SELECT id FROM deadlines WHERE next_step_at IS NOT NULL AND next_step_at <= ?1
             ORDER BY next_step_at LIMIT ?2",
        )?;
        let ids = statement
            .query_map(params![to_ms(now), limit], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Tickets with a follow-up due by `now`, earliest first.
    pub fn due_tickets(&self, now: Timestamp, limit: u32) -> Result<Vec<TicketId>, StoreError> {
        let statement = self.prepare(
            "SELECT id FROM tickets WHERE next_step_at IS NOT NULL AND next_step_at <= ?1
             ORDER BY next_step_at LIMIT ?2",
        )?;
        let ids = statement
            .query_map(params![to_ms(now), limit], |r| Ok(TicketId(r.get(0)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Every deadline and ticket the scheduler may still act on; with `unplanned_only`, only
    /// those without a next step (parked, or past their last one). Planned at start.
    pub fn schedulable(
        &self,
        unplanned_only: bool,
    ) -> Result<(Vec<i64>, Vec<TicketId>), StoreError> {
        let unplanned = if unplanned_only {
            " AND next_step_at IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT id FROM deadlines
             WHERE met_at IS NULL AND cancelled_at IS NULL AND paused_at IS NULL{unplanned}"
        );
        let statement = self.prepare(&sql)?;
        let deadlines = statement
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let sql =
            format!("SELECT id FROM tickets WHERE status IN ('pending', 'resolved'){unplanned}");
        let statement = self.prepare(&sql)?;
        let tickets = statement
            .query_map([], |r| Ok(TicketId(r.get(0)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((deadlines, tickets))
    }

    /// The configuration key of the last complete planning (`schedule.planned`), if any.
    pub fn last_plan_key(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .query_row(
                self.pick(
                    "SELECT json_extract(data, '$.config') FROM events
                     WHERE kind = ?1 ORDER BY at DESC, id DESC LIMIT 1",
                    "SELECT data::jsonb ->> 'config' FROM events
                     WHERE kind = ?1 ORDER BY at DESC, id DESC LIMIT 1",
                ),
                [EventKind::SchedulePlanned.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn deadline_facts(&self, id: i64) -> Result<Option<DeadlineFacts>, StoreError> {
        let row = self.query_row(
                "SELECT d.ticket_id, d.message_row_id, d.kind, m.received_at, d.due_at, d.warn_at,
                        d.met_at IS NOT NULL OR d.cancelled_at IS NOT NULL OR d.paused_at IS NOT NULL
                 FROM deadlines d JOIN messages m ON m.id = d.message_row_id WHERE d.id = ?1",
                [id],
                |r| {
                    Ok(DeadlineFacts {
                        id,
                        ticket: TicketId(r.get(0)?),
                        message: MessageRowId(r.get(1)?),
                        kind: r.get(2)?,
                        received_at: from_ms(r.get(3)?),
                        due_at: from_ms(r.get(4)?),
                        warn_at: r.get::<_, Option<i64>>(5)?.map(from_ms),
                        settled: r.get(6)?,
                        done: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut facts) = row else {
            return Ok(None);
        };
        // By ticket first: the steps_once index leads with ticket_id (deadline_id alone would
        // scan every step ever taken, per deadline).
        let statement =
            self.prepare("SELECT name FROM steps WHERE ticket_id = ?1 AND deadline_id = ?2")?;
        facts.done = statement
            .query_map(params![facts.ticket.0, id], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(facts))
    }

    pub fn ticket_facts(&self, ticket: TicketId) -> Result<Option<TicketFacts>, StoreError> {
        let row = self
            .query_row(
                "SELECT status, coalesce(status_at, updated_at), survey_sent_at IS NOT NULL
                 FROM tickets WHERE id = ?1",
                [ticket.0],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((status, status_at, survey_sent)) = row else {
            return Ok(None);
        };
        let status = TicketStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket {ticket} has status {status}")))?;
        let statement = self.prepare(
            "SELECT name FROM steps WHERE ticket_id = ?1 AND deadline_id IS NULL AND episode = ?2",
        )?;
        let done = statement
            .query_map(params![ticket.0, status_at], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TicketFacts {
            id: ticket,
            status,
            status_at: from_ms(status_at),
            survey_sent,
            done,
        }))
    }

    /// Records a step; `false` if it was already taken (nothing written then).
    pub fn record_step(&self, step: &NewStep<'_>, now: Timestamp) -> Result<bool, StoreError> {
        let n = self.execute(
            "INSERT INTO steps (ticket_id, deadline_id, name, episode, at, recipients, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            params![
                step.ticket.0,
                step.deadline,
                step.name,
                step.episode.map_or(0, to_ms),
                to_ms(now),
                step.recipients.join(" "),
                step.detail
            ],
        )?;
        Ok(n == 1)
    }

    /// Every step taken on `ticket`, in order.
    pub fn steps_of(&self, ticket: TicketId) -> Result<Vec<StepView>, StoreError> {
        let statement = self.prepare(
            "SELECT name, at, recipients, deadline_id FROM steps WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let steps = statement
            .query_map([ticket.0], |r| {
                Ok(StepView {
                    name: r.get(0)?,
                    at: from_ms(r.get(1)?),
                    recipients: r
                        .get::<_, String>(2)?
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                    deadline: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(steps)
    }

    /// The ticket of deadline `id`, read on its own (to name it when its other columns
    /// cannot be read).
    pub fn deadline_ticket(&self, id: i64) -> Result<Option<TicketId>, StoreError> {
        let ticket: Option<i64> = self
            .query_row("SELECT ticket_id FROM deadlines WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(ticket.map(TicketId))
    }

    pub fn set_deadline_next(&self, id: i64, at: Option<Timestamp>) -> Result<(), StoreError> {
        self.execute(
            "UPDATE deadlines SET next_step_at = ?2 WHERE id = ?1",
            params![id, at.map(to_ms)],
        )?;
        Ok(())
    }

    pub fn set_ticket_next(
        &self,
        ticket: TicketId,
        at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE tickets SET next_step_at = ?2 WHERE id = ?1",
            params![ticket.0, at.map(to_ms)],
        )?;
        Ok(())
    }

    /// Stops the clock of `ticket`'s open deadlines (it waits on the customer). Returns how
    /// many were paused.
    pub fn pause_deadlines(&self, ticket: TicketId, now: Timestamp) -> Result<usize, StoreError> {
        self.execute(
            "UPDATE deadlines SET paused_at = ?2, next_step_at = NULL
             WHERE ticket_id = ?1 AND met_at IS NULL AND cancelled_at IS NULL AND paused_at IS NULL",
            params![ticket.0, to_ms(now)],
        )
    }

    pub fn paused_deadlines(&self, ticket: TicketId) -> Result<Vec<Paused>, StoreError> {
        let statement = self.prepare(
            "SELECT id, due_at, warn_at, paused_at FROM deadlines
             WHERE ticket_id = ?1 AND met_at IS NULL AND cancelled_at IS NULL AND paused_at IS NOT NULL",
        )?;
        let rows = statement
            .query_map([ticket.0], |r| {
                Ok(Paused {
                    id: r.get(0)?,
                    due_at: from_ms(r.get(1)?),
                    warn_at: r.get::<_, Option<i64>>(2)?.map(from_ms),
                    paused_at: from_ms(r.get(3)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The clock runs again, with the due and warning times moved by the pause.
    pub fn resume_deadline(
        &self,
        id: i64,
        due_at: Timestamp,
        warn_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE deadlines SET paused_at = NULL, due_at = ?2, warn_at = ?3, next_step_at = ?4
             WHERE id = ?1",
            params![id, to_ms(due_at), warn_at.map(to_ms), to_ms(now)],
        )?;
        Ok(())
    }

    /// The ticket was resolved or closed: what it still owed is no longer owed. Returns how
    /// many deadlines were cancelled.
    pub fn cancel_deadlines(&self, ticket: TicketId, now: Timestamp) -> Result<usize, StoreError> {
        self.execute(
            "UPDATE deadlines SET cancelled_at = ?2, next_step_at = NULL
             WHERE ticket_id = ?1 AND met_at IS NULL AND cancelled_at IS NULL",
            params![ticket.0, to_ms(now)],
        )
    }

    /// The Message-ID of a stored message.
    pub fn message_id_of(&self, message: MessageRowId) -> Result<Option<String>, StoreError> {
        Ok(self
            .query_row(
                "SELECT message_id FROM messages WHERE id = ?1",
                [message.0],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn survey_sent(&self, ticket: TicketId, now: Timestamp) -> Result<(), StoreError> {
        self.execute(
            "UPDATE tickets SET survey_sent_at = ?2 WHERE id = ?1",
            params![ticket.0, to_ms(now)],
        )?;
        Ok(())
    }

    /// Whether `ticket` sent a survey that has no answer yet.
    pub fn survey_awaited(&self, ticket: TicketId) -> Result<bool, StoreError> {
        self.query_row(
            "SELECT survey_sent_at IS NOT NULL AND survey_score IS NULL FROM tickets WHERE id = ?1",
            [ticket.0],
            |r| r.get(0),
        )
    }

    /// Records the customer's score once; `false` if the ticket already has one.
    pub fn record_survey(
        &self,
        ticket: TicketId,
        score: u8,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE tickets SET survey_score = ?2, survey_answered_at = ?3
             WHERE id = ?1 AND survey_score IS NULL",
            params![ticket.0, score, to_ms(now)],
        )?;
        Ok(n == 1)
    }
}

/// A key of `text` (the scheduling settings a plan was made under).
pub fn plan_key(text: &str) -> String {
    use sha2::Digest;
    super::tx::hex(&sha2::Sha256::digest(text.as_bytes()))
}
