//! A customer's mail the SMTP server refused for some recipients: the agents who answer for
//! the ticket are told who did not get it and why, in the same transaction that records it.

use jiff::Timestamp;
use tracing::error;

use crate::catalog::EventKind;
use crate::config::Config;
use crate::render::{self, BounceFor};
use crate::store::{Event, OutboxRow, StoreError, Tx};
use crate::templates::kinds::MailKind;

/// Queues a `bounce` notice (the template a returned delivery report uses) to the ticket's
/// assigned agent, else its desk's team, listing `refused` (`address: reply`).
pub fn tell_agents(
    tx: &Tx<'_>,
    config: &Config,
    row: &OutboxRow,
    refused: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(ticket) = row.ticket else {
        return Ok(());
    };
    let Some(state) = tx.ticket_state(ticket)? else {
        return Ok(());
    };
    let desk = config.desk(&state.mailbox, state.address.as_deref());
    for address in desk.responsible(state.assigned.as_deref()) {
        let Some(agent) = config.agents.by_address(&address) else {
            continue;
        };
        let notice = BounceFor {
            ticket: &state,
            agent,
            failed: refused,
            message_id: Some(&row.message_id),
        };
        let out = match render::bounce(&desk.support, desk.templates, notice, now) {
            Ok(out) => out,
            Err(err) => {
                error!(ticket = ticket.0, mailbox = %state.mailbox, outbox_id = row.id.0, error = %err, "outbox: refusal notice not rendered");
                continue;
            }
        };
        let outbox = super::enqueue(
            tx,
            &desk.support,
            Some(ticket),
            MailKind::Bounce,
            super::Audience::Inside(&agent.address),
            &out,
            now,
        )?;
        // Mail to an agent is never withheld.
        let Some(outbox) = outbox.queued() else {
            continue;
        };
        tx.record(
            &Event {
                mailbox: Some(&state.mailbox),
                ticket: Some(ticket),
                outbox: Some(outbox),
                detail: format!(
                    "bounce to {}: refused {}",
                    agent.address,
                    refused.join("; ")
                ),
                ..Event::new(EventKind::OutboxQueued)
            },
            now,
        )?;
    }
    Ok(())
}
