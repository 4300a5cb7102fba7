//! Tickets: threading look-ups, their state, participants and language, and the writes that
//! change them.

use crate::store::sql::params;
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::Tx;
use crate::language::{Lang, Source};
use crate::model::{Person, Priority, TicketId, TicketState, TicketStatus};
use crate::store::{StoreError, from_ms, to_ms};

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

impl Tx<'_> {
    /// The ticket of the first of `message_ids` that we know (callers pass newest first).
    pub fn ticket_by_message_ids(
        &self,
        message_ids: &[String],
    ) -> Result<Option<TicketId>, StoreError> {
        let statement = self.prepare(
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
            .query_row("SELECT id FROM tickets WHERE id = ?1", [ticket.0], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        let statement = self.prepare(
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
        let statement = self.prepare(
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
        let since: Option<i64> = self.query_row(
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
        let statement = self.prepare(
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

    /// An agent answered at `at`: every open deadline of `ticket` is met, and the ticket's first
    /// response is recorded if it had none. Returns what was met, for the events.
    pub fn answered(&self, ticket: TicketId, at: Timestamp) -> Result<Met, StoreError> {
        let statement = self.prepare(
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
        self.execute(
            "UPDATE tickets SET assigned_agent = ?2 WHERE id = ?1",
            params![ticket.0, agent],
        )?;
        Ok(())
    }

    pub fn set_priority(&self, ticket: TicketId, priority: Priority) -> Result<(), StoreError> {
        self.execute(
            "UPDATE tickets SET priority = ?2 WHERE id = ?1",
            params![ticket.0, priority.as_str()],
        )?;
        Ok(())
    }

    pub fn create_ticket(&self, ticket: &NewTicket<'_>) -> Result<TicketId, StoreError> {
        self.query_row(
            "INSERT INTO tickets (mailbox, subject, customer_address, customer_name, status, created_at, updated_at, status_at,
                                  language, language_source, address)
             VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?5, ?5, ?6, ?7, ?8) RETURNING id",
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
            |r| Ok(TicketId(r.get(0)?)),
        )
    }

    pub fn set_ticket_status(
        &self,
        ticket: TicketId,
        status: TicketStatus,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
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
        let n = self.execute(
            "UPDATE tickets SET language = ?2, language_source = ?3, updated_at = ?4
             WHERE id = ?1 AND (?3 = 'agent' OR language_source IS DISTINCT FROM 'agent')",
            params![ticket.0, lang.code(), source.as_str(), to_ms(now)],
        )?;
        if n == 1 && source == Source::Agent {
            self.execute(
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
        self.execute(
            "INSERT INTO contacts (address, name, language, first_seen, last_seen, n_tickets, n_messages)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, 1)
             ON CONFLICT (address) DO UPDATE SET
               name = coalesce(excluded.name, contacts.name),
               language = coalesce(excluded.language, contacts.language),
               last_seen = CASE WHEN contacts.last_seen > excluded.last_seen
                                THEN contacts.last_seen ELSE excluded.last_seen END,
               n_tickets = contacts.n_tickets + excluded.n_tickets,
               n_messages = contacts.n_messages + 1",
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
        self.execute(
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
        self.execute(
            "INSERT INTO participants (ticket_id, address, name, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ticket_id, address) DO UPDATE SET name = coalesce(excluded.name, participants.name)",
            params![ticket.0, person.address, person.name, role],
        )?;
        Ok(())
    }

    /// `#cc add`: `address` receives the ticket's answers from now on (again, if removed).
    pub fn cc_add(&self, ticket: TicketId, address: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO participants (ticket_id, address, name, role) VALUES (?1, ?2, NULL, 'cc')
             ON CONFLICT (ticket_id, address) DO UPDATE SET role = 'cc' WHERE participants.role = 'removed'",
            params![ticket.0, address],
        )?;
        Ok(())
    }

    /// `#cc remove`: `address` no longer receives the ticket's answers, and mail from it no
    /// longer adds it back (the row stays, marked `removed`).
    pub fn cc_remove(&self, ticket: TicketId, address: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE participants SET role = 'removed'
             WHERE ticket_id = ?1 AND address = ?2 AND role = 'cc'",
            params![ticket.0, address],
        )?;
        Ok(())
    }

    /// The internal notes of `ticket` and what its customers have seen.
    pub fn ticket_texts(&self, ticket: TicketId) -> Result<TicketTexts, StoreError> {
        let statement = self.prepare(
            "SELECT agent, received_at, body_text FROM messages
             WHERE ticket_id = ?1 AND direction = 'in' AND internal = 1 AND class LIKE '%agent-note'
             ORDER BY id",
        )?;
        let notes = statement
            .query_map([ticket.0], |r| {
                Ok((r.get(0)?, from_ms(r.get(1)?), r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let statement = self.prepare(
            "SELECT substr(body_text, 1, 262144) FROM messages WHERE ticket_id = ?1 AND internal = 0
             ORDER BY id DESC LIMIT ?2",
        )?;
        let public = statement
            .query_map(params![ticket.0, PUBLIC_TEXTS], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TicketTexts { notes, public })
    }
}
