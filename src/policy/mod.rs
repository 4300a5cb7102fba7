//! Policy: what happens to an inbound message, and by when an agent must answer.
//!
//! [`decide`] is pure (the clock is a parameter): given what was parsed, classified and
//! threaded, it returns what must be written and sent. The ingest step applies the decision
//! inside one store transaction.

mod backlog;
mod decide;

pub use backlog::{BacklogMessage, import_backlog};
pub use decide::{
    AgentNotice, Arrival, DeadlineKind, Decision, Inbound, Limit, Role, SenderLoad, TicketAction,
    before, decide, due_at,
};
