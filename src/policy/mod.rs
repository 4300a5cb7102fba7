//! Policy: what happens to an inbound message, and by when an agent must answer.
//!
//! [`decide`] is pure (the clock is a parameter): given what was parsed, classified and
//! threaded, it returns what must be written and sent. The ingest step applies the decision
//! inside one store transaction.

mod decide;

pub use decide::{
    AgentNotice, DeadlineKind, Decision, Inbound, Limit, Role, SenderLoad, TicketAction, decide,
    due_at,
};
