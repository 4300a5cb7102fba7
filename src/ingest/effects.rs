//! Where the stages' events and mail go: [`Effects`] records the events of one inbound
//! message and enqueues its mail inside the ingest transaction.

use jiff::Timestamp;

use super::events::NewEvent;
use crate::agent::boundary::Boundary;
use crate::catalog::EventKind;
use crate::config::{Agent, Config, Support};
use crate::model::{MessageRowId, OutboxId, TicketId};
use crate::render::{Outgoing, RenderError};
use crate::send::{self, Audience, Enqueued};
use crate::store::{Event, StoreError, Tx};
use crate::templates::Templates;
use crate::templates::kinds::MailKind;

/// The configured agents with these primary addresses, in configuration order.
pub(super) fn agents_named<'c>(config: &'c Config, addresses: &[String]) -> Vec<&'c Agent> {
    config
        .agents
        .agents
        .iter()
        .filter(|a| addresses.contains(&a.address))
        .collect()
}

/// Records the events of one inbound message (on its ticket, or on none) and writes its
/// outgoing mail: each rendered message becomes an outbound message row and an outbox row in
/// the ingest transaction, or an event saying why not.
pub(super) struct Effects<'a, 't> {
    pub tx: &'a Tx<'t>,
    pub mailbox: &'a str,
    pub ticket: Option<TicketId>,
    pub message: MessageRowId,
    pub now: Timestamp,
    /// The desk the ticket's mail goes out from.
    pub support: &'a Support,
    pub templates: &'a Templates,
    /// What mail to customers must never carry.
    pub boundary: &'a Boundary,
}

impl<'t> Effects<'_, 't> {
    pub fn tx(&self) -> &Tx<'t> {
        self.tx
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Records an event with the structured facts KPIs are computed from.
    pub fn record_data(
        &self,
        kind: EventKind,
        detail: String,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.record(&NewEvent {
            kind,
            outbox: None,
            detail,
            data: Some(data),
        })
    }

    pub fn record(&self, event: &NewEvent) -> Result<(), StoreError> {
        self.tx.record(
            &Event {
                kind: event.kind,
                mailbox: Some(self.mailbox),
                ticket: self.ticket,
                message: Some(self.message),
                outbox: event.outbox,
                detail: event.detail.clone(),
                data: event.data.clone(),
            },
            self.now,
        )
    }

    /// Queues `rendered`; mail to an `agent` is internal. A render failure is recorded as an
    /// event instead.
    pub fn queue(
        &self,
        kind: MailKind,
        agent: Option<&str>,
        rendered: Result<Outgoing, RenderError>,
    ) -> Result<Option<OutboxId>, StoreError> {
        Ok(self
            .enqueue(kind, agent, rendered, None)?
            .and_then(Enqueued::queued))
    }

    /// [`Effects::queue`], saying whether the mail was withheld (`None`: not rendered), with
    /// `data` on the queued event.
    pub fn enqueue(
        &self,
        kind: MailKind,
        agent: Option<&str>,
        rendered: Result<Outgoing, RenderError>,
        data: Option<serde_json::Value>,
    ) -> Result<Option<Enqueued>, StoreError> {
        let out = match rendered {
            Ok(out) => out,
            Err(err) => {
                self.record(&NewEvent {
                    kind: kind.not_sent_event(),
                    outbox: None,
                    detail: err.to_string(),
                    data: None,
                })?;
                return Ok(None);
            }
        };
        let audience = match agent {
            Some(agent) => Audience::Inside(agent),
            None => Audience::Outside(self.boundary),
        };
        let enqueued = send::enqueue(
            self.tx,
            self.support,
            self.ticket,
            kind,
            audience,
            &out,
            self.now,
        )?;
        if let Enqueued::Queued(outbox) = &enqueued {
            self.record(&NewEvent {
                kind: kind.queued_event(),
                outbox: Some(*outbox),
                detail: format!("to {}", out.recipients.join(", ")),
                data,
            })?;
        }
        Ok(Some(enqueued))
    }
}
