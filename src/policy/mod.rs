//! Policy: what happens to an inbound message, and by when an agent must answer.
//!
//! [`decide`] is pure (the clock is a parameter): given what was parsed, classified and
//! threaded, it returns what must be written and sent. The ingest step applies the decision
//! inside one store transaction.

mod backlog;
mod decide;
mod steps;
mod survey;

pub use crate::calendar::{BusinessHours, Calendar, Opening, plus};
pub use backlog::{BacklogMessage, import_backlog};
pub use decide::{
    AgentNotice, Arrival, DeadlineKind, Decision, Inbound, Limit, NewDeadline, Role, SenderLoad,
    TicketAction, before, decide, new_deadline,
};
pub use steps::{
    DeadlineFacts, DeadlineStep, TicketFacts, TicketStep, next_deadline_step, next_ticket_step,
};
pub use survey::score as survey_score;
