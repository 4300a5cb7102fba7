//! The scheduler: warnings, breaches and escalations of unanswered customer messages; reminders,
//! auto-resolve, the survey and auto-close of tickets.
//!
//! One task. It sleeps until the earliest `next_step_at` of deadlines and tickets (two index
//! look-ups, never a table scan on a timer), at most [`MAX_SLEEP`] so a wall-clock jump is
//! noticed, or until ingest wakes it. Each batch of due items is one store transaction: the
//! step taken (`steps`, unique per deadline or ticket spell), its events and its outbox rows
//! commit together, so after a crash or restart a step is neither repeated nor skipped. On
//! start every open deadline and follow-up is planned again from the database when the
//! scheduling settings changed meanwhile; otherwise the stored plans hold and only items
//! without a next step are planned. What to do next is [`crate::policy`]'s pure
//! `next_deadline_step` / `next_ticket_step`; this module carries it out.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::agent::boundary::Boundary;
use crate::agent::sign::Signer;
use crate::backoff::Backoff;
use crate::catalog::EventKind;
use crate::config::{Config, Deadlines, Live};
use crate::health::{Reporter, Trouble};
use crate::model::{TicketId, TicketState, TicketStatus};
use crate::policy::{
    DeadlineFacts, DeadlineStep, TicketFacts, TicketStep, next_deadline_step, next_ticket_step,
};
use crate::render::{self, AlertFor, CustomerMail, Outgoing, RenderError};
use crate::send::{self, Audience};
use crate::store::{Event, NewStep, Store, StoreError, Tx, plan_key};
use crate::templates::kinds::MailKind;

/// The scheduler's name in the health registry and the supervisor's log lines.
pub const TASK: &str = "scheduler";
/// The longest sleep: a wall clock set forward is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Items handled per transaction.
const BATCH: u32 = 100;
/// Items planned per transaction at start.
const PLAN_CHUNK: usize = 1000;
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// The longest wait between two tries at planning.
const PLAN_BACKOFF_CAP: Duration = Duration::from_secs(600);

pub struct Scheduler {
    /// Read once per batch.
    pub config: Live,
    pub store: Store,
    pub health: Reporter,
    /// Ingest wakes the scheduler after every commit (a new deadline may be due soon).
    pub wake: Arc<Notify>,
    /// Woken after a batch that queued mail.
    pub outbox_wake: Arc<Notify>,
}

impl Scheduler {
    pub async fn run(self, cancel: CancellationToken) {
        let mut planning = Planning::new();
        let mut parked: Vec<String> = Vec::new();
        loop {
            if planning.due() {
                self.plan(&mut planning, &mut parked).await;
            }
            let now = Timestamp::now();
            let config = self.config.current();
            // One batch: a write transaction rendering at most BATCH mails.
            self.health.beat(Duration::ZERO);
            let batch = self.store.write(move |tx| run_due(tx, &config, now)).await;
            let next = match batch {
                Ok(batch) => {
                    self.health.trouble(Trouble::Database, None);
                    self.parked(&mut parked, batch.parked);
                    if batch.queued {
                        self.outbox_wake.notify_one();
                    }
                    if batch.more {
                        continue;
                    }
                    self.store.read(|tx| tx.next_step_at()).await
                }
                Err(err) => Err(err),
            };
            let sleep = match next {
                Ok(next) => next.map_or(MAX_SLEEP, |at| {
                    at.duration_since(Timestamp::now())
                        .unsigned_abs()
                        .min(MAX_SLEEP)
                        .max(Duration::from_millis(if at > now { 1 } else { 0 }))
                }),
                Err(err) => {
                    error!(error = %err, "scheduler: database error; retrying");
                    self.health
                        .trouble(Trouble::Database, Some(err.to_string()));
                    RETRY_PAUSE
                }
            };
            let sleep = planning.until().map_or(sleep, |until| sleep.min(until));
            self.health.beat(sleep);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Plans every open deadline and follow-up again; a failure is retried with backoff
    /// while due work goes on.
    async fn plan(&self, planning: &mut Planning, parked: &mut Vec<String>) {
        let config = self.config.current();
        // Reading the ids, then one chunk at a time (each a promise of its own).
        self.health.beat(RETRY_PAUSE);
        let progress = || self.health.beat(Duration::ZERO);
        match replan(&self.store, &config, Timestamp::now(), progress).await {
            Ok(plan) => {
                info!(
                    planned = plan.planned,
                    whole = plan.whole,
                    parked = plan.parked.len(),
                    "scheduler: planned {}",
                    if plan.whole {
                        "every open deadline and follow-up (scheduling settings changed)"
                    } else {
                        "the open deadlines and follow-ups without a next step"
                    }
                );
                planning.done();
                parked.clear();
                self.parked(parked, plan.parked);
                self.health.trouble(Trouble::Database, None);
            }
            Err(err) => {
                let delay = planning.failed();
                error!(error = %err, retry_in = ?delay, "scheduler: planning failed; due work goes on, planning is tried again");
                let text = format!(
                    "planning failed (tried again in {}s): {err}",
                    delay.as_secs()
                );
                self.health.trouble(Trouble::Database, Some(text));
            }
        }
    }

    /// Adds items parked by a batch to those reported on `/healthz`.
    fn parked(&self, parked: &mut Vec<String>, new: Vec<String>) {
        if new.is_empty() && !parked.is_empty() {
            return;
        }
        parked.extend(new);
        let text = (!parked.is_empty()).then(|| {
            format!(
                "{} item(s) parked after failing (`deskgate events --kind item.failed`): {}",
                parked.len(),
                parked.join("; ")
            )
        });
        self.health.trouble(Trouble::Parked, text);
    }
}

/// When planning at start is (re)tried: now, then with backoff after each failure.
struct Planning {
    backoff: Backoff,
    /// `None` once planning succeeded.
    next: Option<tokio::time::Instant>,
}

impl Planning {
    fn new() -> Planning {
        Planning {
            backoff: Backoff::new(RETRY_PAUSE, PLAN_BACKOFF_CAP),
            next: Some(tokio::time::Instant::now()),
        }
    }

    fn due(&self) -> bool {
        self.next
            .is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// How long until the next try, if one is pending.
    fn until(&self) -> Option<Duration> {
        self.next
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
    }

    fn done(&mut self) {
        self.next = None;
    }

    fn failed(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.next = Some(tokio::time::Instant::now() + delay);
        delay
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub steps: usize,
    pub queued: bool,
    /// A full batch: more may be due right away.
    pub more: bool,
    /// Items that failed on their own data and were parked (`item.failed`).
    pub parked: Vec<String>,
}

/// What planning at start did.
#[derive(Debug, Default)]
pub struct Plan {
    pub planned: usize,
    /// Every open item was planned (the scheduling settings changed), not only the unplanned.
    pub whole: bool,
    /// Items that failed on their own data and were parked (`item.failed`).
    pub parked: Vec<String>,
}

/// Plans at start (taking whatever is already due), at most [`PLAN_CHUNK`] items per
/// transaction so ingest is never kept waiting long; `progress` is called after each (the
/// daemon's liveness beat). Every open deadline and follow-up is planned again when the
/// scheduling settings changed since the last complete planning (recorded as
/// `schedule.planned`); otherwise the stored `next_step_at` still holds and only the items
/// without one (parked, or past their last step) are planned. Returns how many were planned
/// and which were parked.
pub async fn replan(
    store: &Store,
    config: &Arc<Config>,
    now: Timestamp,
    progress: impl Fn(),
) -> Result<Plan, StoreError> {
    let key = plan_key(&scheduling_settings(config));
    let (deadlines, tickets, whole) = store
        .read({
            let key = key.clone();
            move |tx| {
                let whole = tx.last_plan_key()?.as_deref() != Some(key.as_str());
                let (deadlines, tickets) = tx.schedulable(!whole)?;
                Ok((deadlines, tickets, whole))
            }
        })
        .await?;
    let items: Vec<Item> = items(&deadlines, &tickets).collect();
    let mut plan = Plan {
        planned: items.len(),
        whole,
        parked: Vec::new(),
    };
    for chunk in items.chunks(PLAN_CHUNK) {
        let (config, chunk) = (Arc::clone(config), chunk.to_vec());
        let parked = store
            .write(move |tx| {
                let mut work = Work::new(tx, &config, now);
                chunk.iter().try_for_each(|item| work.item(*item))?;
                Ok(work.parked)
            })
            .await?;
        plan.parked.extend(parked);
        progress();
    }
    if whole {
        let planned = plan.planned;
        store
            .write(move |tx| {
                tx.record(
                    &Event {
                        detail: format!("{planned} open deadlines and follow-ups planned under new scheduling settings"),
                        data: Some(json!({ "config": key, "planned": planned })),
                        ..Event::new(EventKind::SchedulePlanned)
                    },
                    now,
                )
            })
            .await?;
    }
    Ok(plan)
}

/// What stored plans depend on: every mailbox's deadlines and the follow-ups.
fn scheduling_settings(config: &Config) -> String {
    let mailboxes: Vec<_> = config
        .mailboxes
        .iter()
        .map(|m| (&m.name, &m.deadlines))
        .collect();
    format!(
        "{:?}\n{:?}\n{mailboxes:?}",
        config.deadlines, config.followup
    )
}

/// Takes every step due by `now` (up to [`BATCH`] deadlines and tickets).
pub fn run_due(tx: &Tx<'_>, config: &Config, now: Timestamp) -> Result<Batch, StoreError> {
    let deadlines = tx.due_deadlines(now, BATCH)?;
    let tickets = tx.due_tickets(now, BATCH)?;
    let mut work = Work::new(tx, config, now);
    items(&deadlines, &tickets).try_for_each(|item| work.item(item))?;
    Ok(Batch {
        steps: work.steps,
        queued: work.queued,
        more: deadlines.len() == BATCH as usize || tickets.len() == BATCH as usize,
        parked: work.parked,
    })
}

/// What the scheduler plans: a deadline's steps or a ticket's follow-ups.
#[derive(Debug, Clone, Copy)]
enum Item {
    Deadline(i64),
    Ticket(TicketId),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Deadline(id) => write!(f, "deadline {id}"),
            Item::Ticket(id) => write!(f, "ticket {}", id.0),
        }
    }
}

/// Deadlines first, then tickets.
fn items<'a>(deadlines: &'a [i64], tickets: &'a [TicketId]) -> impl Iterator<Item = Item> + 'a {
    let deadlines = deadlines.iter().map(|id| Item::Deadline(*id));
    deadlines.chain(tickets.iter().map(|id| Item::Ticket(*id)))
}

/// A ticket's status changed (by an agent, a customer or the scheduler): its deadlines
/// pause while it waits on the customer (if the policy says so), run again when it is open,
/// and are no longer owed once it is resolved or closed. Returns the event to record.
pub fn status_changed(
    tx: &Tx<'_>,
    ticket: TicketId,
    from: TicketStatus,
    to: TicketStatus,
    deadlines: &Deadlines,
    now: Timestamp,
) -> Result<Option<(EventKind, String)>, StoreError> {
    if from == to {
        return Ok(None);
    }
    Ok(match to {
        TicketStatus::Pending if deadlines.pause_while_pending => {
            let n = tx.pause_deadlines(ticket, now)?;
            (n > 0).then(|| {
                (
                    EventKind::DeadlinePaused,
                    format!("{n} deadline(s) paused while the ticket waits on the customer"),
                )
            })
        }
        TicketStatus::Open => {
            let paused = tx.paused_deadlines(ticket)?;
            for p in &paused {
                // The time left when the clock stopped is left again now.
                let calendar = &deadlines.calendar;
                let due_at = calendar.add(now, calendar.between(p.paused_at, p.due_at));
                let warn_at = p
                    .warn_at
                    .filter(|w| *w > p.paused_at)
                    .map(|w| calendar.add(now, calendar.between(p.paused_at, w)));
                tx.resume_deadline(p.id, due_at, warn_at, now)?;
            }
            (!paused.is_empty()).then(|| {
                (
                    EventKind::DeadlineResumed,
                    format!("{} paused deadline(s) run again", paused.len()),
                )
            })
        }
        TicketStatus::Resolved | TicketStatus::Closed => {
            let n = tx.cancel_deadlines(ticket, now)?;
            (n > 0).then(|| {
                (
                    EventKind::DeadlineCancelled,
                    format!("{n} unanswered message(s) no longer owed an answer: ticket {to}"),
                )
            })
        }
        TicketStatus::Pending => None,
    })
}

/// Steps taken inside one transaction.
struct Work<'a, 't> {
    tx: &'a Tx<'t>,
    config: &'a Config,
    signer: Option<Signer>,
    /// What mail to customers must never carry.
    boundary: Boundary,
    now: Timestamp,
    steps: usize,
    queued: bool,
    /// `item: reason` of each item parked.
    parked: Vec<String>,
}

impl<'a, 't> Work<'a, 't> {
    fn new(tx: &'a Tx<'t>, config: &'a Config, now: Timestamp) -> Work<'a, 't> {
        Work {
            tx,
            config,
            signer: Signer::from_config(config),
            boundary: Boundary::from_config(config),
            now,
            steps: 0,
            queued: false,
            parked: Vec::new(),
        }
    }

    fn deadlines_of(&self, ticket: &TicketState) -> &'a Deadlines {
        self.config
            .mailbox(&ticket.mailbox)
            .map_or(&self.config.deadlines, |m| &m.deadlines)
    }

    /// Works one item under its own savepoint. An item that fails on its own data (a row
    /// that cannot be read, mail that cannot be queued) is parked: nothing it did is kept,
    /// it is not planned again until the next start, an `item.failed` event says why, and
    /// the other items go on. A failure of the database itself (full, read-only, locked)
    /// stops the batch: it is tried again when the database recovers.
    fn item(&mut self, item: Item) -> Result<(), StoreError> {
        let (steps, queued) = (self.steps, self.queued);
        let tx = self.tx;
        let worked = tx.savepoint(|_| match item {
            Item::Deadline(id) => self.deadline(id),
            Item::Ticket(id) => self.ticket(id),
        });
        match worked {
            Ok(()) => Ok(()),
            Err(err) if err.is_transient() => Err(err),
            Err(err) => {
                (self.steps, self.queued) = (steps, queued);
                self.park(item, &err)
            }
        }
    }

    fn park(&mut self, item: Item, err: &StoreError) -> Result<(), StoreError> {
        let ticket = match item {
            Item::Deadline(id) => {
                self.tx.set_deadline_next(id, None)?;
                self.tx.deadline_ticket(id)?
            }
            Item::Ticket(id) => {
                self.tx.set_ticket_next(id, None)?;
                Some(id)
            }
        };
        error!(item = %item, ticket = ticket.map(|t| t.0), error = %err, "scheduler: item failed; parked until the next start, the others go on");
        self.tx.record(
            &Event {
                ticket,
                detail: format!("{item}: {err}"),
                ..Event::new(EventKind::ItemFailed)
            },
            self.now,
        )?;
        self.parked.push(format!("{item}: {err}"));
        Ok(())
    }

    /// Takes every step of deadline `id` that is due, then plans the next one.
    fn deadline(&mut self, id: i64) -> Result<(), StoreError> {
        loop {
            let Some(facts) = self.tx.deadline_facts(id)? else {
                return Ok(());
            };
            let Some(ticket) = self.tx.ticket_state(facts.ticket)? else {
                return self.tx.set_deadline_next(id, None);
            };
            let deadlines = self.deadlines_of(&ticket);
            match next_deadline_step(&facts, deadlines) {
                None => return self.tx.set_deadline_next(id, None),
                Some((_, at)) if at > self.now => {
                    return self.tx.set_deadline_next(id, Some(at));
                }
                Some((step, _)) => {
                    if !self.deadline_step(&facts, &ticket, deadlines, step)? {
                        return self.tx.set_deadline_next(id, None);
                    }
                }
            }
        }
    }

    /// Takes every follow-up of `ticket` that is due, then plans the next one.
    fn ticket(&mut self, id: TicketId) -> Result<(), StoreError> {
        loop {
            let Some(facts) = self.tx.ticket_facts(id)? else {
                return Ok(());
            };
            let Some(ticket) = self.tx.ticket_state(id)? else {
                return Ok(());
            };
            match next_ticket_step(&facts, &self.config.followup) {
                None => return self.tx.set_ticket_next(id, None),
                Some((_, at)) if at > self.now => return self.tx.set_ticket_next(id, Some(at)),
                Some((step, _)) => {
                    if !self.ticket_step(&facts, &ticket, step)? {
                        return self.tx.set_ticket_next(id, None);
                    }
                }
            }
        }
    }

    /// Takes one deadline step; `false` if it had been taken already (then nothing is done).
    fn deadline_step(
        &mut self,
        facts: &DeadlineFacts,
        ticket: &TicketState,
        deadlines: &Deadlines,
        step: DeadlineStep,
    ) -> Result<bool, StoreError> {
        let now = self.now;
        let due = facts.due_at;
        let (recipients, kind, detail, data) = match step {
            DeadlineStep::Warning if now >= due => (
                Vec::new(),
                EventKind::DeadlineWarningSkipped,
                format!("warning not sent: the deadline ({due}) had passed when it came due"),
                None,
            ),
            DeadlineStep::Warning => {
                let to = self.warned(ticket);
                let sent = self.alerts(MailKind::Warning, &to, facts, ticket, 0)?;
                (
                    sent.clone(),
                    EventKind::DeadlineWarned,
                    format!(
                        "answer due {due}: warned {}",
                        if sent.is_empty() {
                            "nobody (no agent for this mailbox)".to_string()
                        } else {
                            sent.join(", ")
                        }
                    ),
                    Some(
                        json!({ "deadline": facts.id, "due_at": due.as_millisecond(), "to": sent }),
                    ),
                )
            }
            DeadlineStep::Breach => {
                warn!(ticket = ticket.id.0, mailbox = %ticket.mailbox, deadline = facts.id, due = %due, "deadline passed without an answer");
                (
                    Vec::new(),
                    EventKind::DeadlineBreached,
                    format!("{} due {due} passed without an answer", facts.kind),
                    Some(json!({
                        "deadline": facts.id,
                        "kind": facts.kind,
                        "received_at": facts.received_at.as_millisecond(),
                        "due_at": due.as_millisecond(),
                    })),
                )
            }
            DeadlineStep::Escalation(level) => {
                let Some(escalation) = deadlines.escalation.get(level - 1) else {
                    return Ok(false);
                };
                let sent =
                    self.alerts(MailKind::Escalation, &escalation.to, facts, ticket, level)?;
                warn!(ticket = ticket.id.0, mailbox = %ticket.mailbox, deadline = facts.id, level, to = %sent.join(", "), "escalated");
                let waited = now.duration_since(facts.received_at);
                (
                    sent.clone(),
                    EventKind::EscalationSent,
                    format!("level {level} to {}", sent.join(", ")),
                    Some(json!({
                        "deadline": facts.id,
                        "level": level,
                        "to": sent,
                        "waited_ms": waited.as_millis(),
                    })),
                )
            }
        };
        let step_taken = NewStep {
            ticket: ticket.id,
            deadline: Some(facts.id),
            name: &step.name(),
            episode: None,
            recipients: &recipients,
            detail: &detail,
        };
        if !self.took(ticket, &step_taken, kind, data)? {
            return Ok(false);
        }
        if step == DeadlineStep::Escalation(1) && deadlines.customer_update {
            self.customer_update(facts, ticket, deadlines)?;
        }
        Ok(true)
    }

    /// An apology and a new realistic time, once per deadline, and not again while an
    /// earlier one is recent (several unanswered messages get one apology).
    fn customer_update(
        &mut self,
        facts: &DeadlineFacts,
        ticket: &TicketState,
        deadlines: &Deadlines,
    ) -> Result<(), StoreError> {
        let recent = self.tx.steps_of(ticket.id)?.iter().any(|s| {
            s.name == "update"
                && deadlines.calendar.between(s.at, self.now) < deadlines.next_response
        });
        if recent {
            return Ok(());
        }
        let due = deadlines.calendar.add(self.now, deadlines.next_response);
        let sent = self.mail_customer(MailKind::Update, ticket, Some(due))?;
        let detail = format!("apology sent with a new time: {due}");
        if self.tx.record_step(
            &NewStep {
                ticket: ticket.id,
                deadline: Some(facts.id),
                name: "update",
                episode: None,
                recipients: &sent,
                detail: &detail,
            },
            self.now,
        )? && !sent.is_empty()
        {
            self.event(
                ticket,
                EventKind::CustomerUpdated,
                detail,
                Some(json!({ "deadline": facts.id, "due_at": due.as_millisecond() })),
            )?;
        }
        Ok(())
    }

    /// Takes one follow-up step; `false` if it had been taken already.
    fn ticket_step(
        &mut self,
        facts: &TicketFacts,
        ticket: &TicketState,
        step: TicketStep,
    ) -> Result<bool, StoreError> {
        let now = self.now;
        let episode = (!step.once_per_ticket()).then_some(facts.status_at);
        let (recipients, kind, detail, data) = match step {
            TicketStep::Reminder(n) => {
                let sent = self.mail_customer(MailKind::Reminder, ticket, None)?;
                (
                    sent,
                    EventKind::TicketReminded,
                    format!("reminder {n} while waiting on the customer"),
                    Some(json!({ "n": n })),
                )
            }
            TicketStep::Survey => {
                let sent = self.mail_customer(MailKind::Survey, ticket, None)?;
                self.tx.survey_sent(ticket.id, now)?;
                (
                    sent,
                    EventKind::SurveySent,
                    "satisfaction survey".to_string(),
                    Some(json!({})),
                )
            }
            TicketStep::Resolve | TicketStep::Close => {
                let to = if step == TicketStep::Resolve {
                    TicketStatus::Resolved
                } else {
                    TicketStatus::Closed
                };
                self.tx.set_ticket_status(ticket.id, to, now)?;
                let deadlines = self.deadlines_of(ticket);
                if let Some((kind, detail)) =
                    status_changed(self.tx, ticket.id, facts.status, to, deadlines, now)?
                {
                    self.event(ticket, kind, detail, None)?;
                }
                let sent = if to == TicketStatus::Closed && self.config.followup.close_notice {
                    self.mail_customer(MailKind::Closed, ticket, None)?
                } else {
                    Vec::new()
                };
                info!(ticket = ticket.id.0, mailbox = %ticket.mailbox, status = %to, "ticket {to} by the follow-up policy");
                (
                    sent,
                    EventKind::TicketStatus,
                    to.as_str().to_string(),
                    Some(
                        json!({ "from": facts.status.as_str(), "to": to.as_str(), "by": "scheduler" }),
                    ),
                )
            }
        };
        let step_taken = NewStep {
            ticket: ticket.id,
            deadline: None,
            name: &step.name(),
            episode,
            recipients: &recipients,
            detail: &detail,
        };
        self.took(ticket, &step_taken, kind, data)
    }

    /// Records a step taken and its event; `false` if the step had been taken already.
    fn took(
        &mut self,
        ticket: &TicketState,
        step: &NewStep<'_>,
        kind: EventKind,
        data: Option<serde_json::Value>,
    ) -> Result<bool, StoreError> {
        if !self.tx.record_step(step, self.now)? {
            return Ok(false);
        }
        self.steps += 1;
        self.event(ticket, kind, step.detail.to_string(), data)?;
        Ok(true)
    }

    /// Whom a warning goes to: the assigned agent, else the mailbox's team.
    fn warned(&self, ticket: &TicketState) -> Vec<String> {
        self.config
            .desk(&ticket.mailbox, ticket.address.as_deref())
            .responsible(ticket.assigned.as_deref())
    }

    /// Queues a `warning` or `escalation` to each of `to`; returns who it was queued for.
    fn alerts(
        &mut self,
        kind: MailKind,
        to: &[String],
        facts: &DeadlineFacts,
        ticket: &TicketState,
        level: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (thread, told) = if kind == MailKind::Escalation {
            let mut thread = self.tx.transcript(ticket.id)?;
            // Our notifications and alerts to agents would only repeat the conversation.
            thread.retain(|m| !(m.outbound && m.internal));
            (thread, self.tx.steps_of(ticket.id)?)
        } else {
            (Vec::new(), Vec::new())
        };
        let message_id = self.tx.message_id_of(facts.message)?;
        let mut sent = Vec::new();
        let desk = self.config.desk(&ticket.mailbox, ticket.address.as_deref());
        let signer = self
            .signer
            .as_ref()
            .map(|s| s.signing_as(&desk.support.address));
        for address in to {
            let agent = self.config.agents.by_address(address);
            let rendered = render::alert(
                &desk.support,
                desk.templates,
                signer.as_ref(),
                kind,
                AlertFor {
                    to: address,
                    agent,
                    ticket,
                    received_at: facts.received_at,
                    due_at: facts.due_at,
                    level,
                    thread: &thread,
                    told: &told,
                    message_id: message_id.as_deref(),
                },
                self.now,
            );
            if self.queue(ticket, kind, Some(address), rendered)? {
                sent.push(address.clone());
            }
        }
        Ok(sent)
    }

    /// Queues `kind` to the ticket's customer; returns the recipients (none if it could not
    /// be rendered or the ticket has no customer address).
    fn mail_customer(
        &mut self,
        kind: MailKind,
        ticket: &TicketState,
        due: Option<jiff::Timestamp>,
    ) -> Result<Vec<String>, StoreError> {
        let Some(customer) = &ticket.customer else {
            return Ok(Vec::new());
        };
        let answers = self.tx.latest_customer_message(ticket.id)?;
        let desk = self.config.desk(&ticket.mailbox, ticket.address.as_deref());
        let rendered = render::to_customer(
            &desk.support,
            desk.templates,
            kind,
            CustomerMail {
                ticket,
                customer,
                answers: answers.as_ref(),
                lang: ticket.language.unwrap_or(desk.language),
            },
            due,
            self.now,
        );
        Ok(if self.queue(ticket, kind, None, rendered)? {
            vec![customer.address.clone()]
        } else {
            Vec::new()
        })
    }

    /// Queues rendered mail; mail to people inside (`agent`: agents, team leads, managers) is
    /// internal, so a reply to it never threads into the ticket as customer mail. A render
    /// failure becomes an event.
    fn queue(
        &mut self,
        ticket: &TicketState,
        kind: MailKind,
        agent: Option<&str>,
        rendered: Result<Outgoing, RenderError>,
    ) -> Result<bool, StoreError> {
        let out = match rendered {
            Ok(out) => out,
            Err(err) => {
                error!(ticket = ticket.id.0, mailbox = %ticket.mailbox, kind = kind.outbox(), error = %err, "scheduler: mail not rendered");
                self.event(
                    ticket,
                    kind.not_sent_event(),
                    format!("{}: {err}", kind.outbox()),
                    None,
                )?;
                return Ok(false);
            }
        };
        let desk = self.config.desk(&ticket.mailbox, ticket.address.as_deref());
        let audience = match agent {
            Some(agent) => Audience::Inside(agent),
            None => Audience::Outside(&self.boundary),
        };
        // Withheld mail is the scheduler's own (no agent acted): the error log and the
        // `outbox.key_withheld` event are all there is to tell.
        let Some(outbox) = send::enqueue(
            self.tx,
            &desk.support,
            Some(ticket.id),
            kind,
            audience,
            &out,
            self.now,
        )?
        .queued() else {
            return Ok(false);
        };
        self.tx.record(
            &Event {
                mailbox: Some(&ticket.mailbox),
                ticket: Some(ticket.id),
                outbox: Some(outbox),
                detail: format!("{} to {}", kind.outbox(), out.recipients.join(", ")),
                ..Event::new(kind.queued_event())
            },
            self.now,
        )?;
        self.queued = true;
        Ok(true)
    }

    fn event(
        &self,
        ticket: &TicketState,
        kind: EventKind,
        detail: String,
        data: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.tx.record(
            &Event {
                mailbox: Some(&ticket.mailbox),
                ticket: Some(ticket.id),
                detail,
                data,
                ..Event::new(kind)
            },
            self.now,
        )
    }
}
