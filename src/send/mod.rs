//! Send: drains the outbox over SMTP.
//!
//! The sender reads only committed rows. It sleeps until the earliest due row (capped, so a
//! clock jump is noticed) or until ingest wakes it. It sends over `[smtp] connections`
//! sessions at once, each worker taking rows no other worker has. Each send runs inside a tokio timeout
//! (lettre's own timeout covers only the TCP connect). Each recipient's reply is kept apart
//! ([`smtp::Answer`]): accepted recipients get the mail, one refused for good is recorded
//! with the server's reason (and the agents are told), one refused for now is tried again
//! on the retry schedule. A broken transport (connect, greeting, TLS, login, timeout) decides
//! nothing about any row: the sender backs off with jitter, `/healthz` says `smtp: …`. A
//! row's outcome is written in one transaction with its events. A row marked sent is never
//! sent again.
//!
//! **Architecture Invariant:** send never touches IMAP. At-least-once: a crash between the
//! server's 250 and the commit of `sent` sends that row again after restart, with the same
//! bytes and Message-ID, so clients show it once.

mod refused;
mod smtp;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use smtp::{Answer, Broken, Smtp, Transport, transport};

use crate::agent::boundary::Boundary;
use crate::backoff::Backoff;
use crate::catalog::EventKind;
use crate::config::{Config, Live, OutboxConfig, Support};
use crate::health::{Reporter, Trouble};
use crate::model::{OutboxId, Person, TicketId};
use crate::policy::plus;
use crate::render::Outgoing;
use crate::store::{Event, NewMessage, NewOutbox, OutboxRow, Store, StoreError, Tx, dedupe_key};
use crate::templates::kinds::MailKind;

/// The longest the sender sleeps without looking at the outbox again.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The sender's name in the health registry and the supervisor's log lines.
pub const TASK: &str = "outbox sender";
/// How many due rows one pass claims.
const BATCH: u32 = 50;
/// How long a claim keeps other instances off a row (see [`Tx::outbox_claim`]).
const CLAIM: Duration = Duration::from_secs(120);
/// A claimed row is not sent when less than this is left of its claim: another instance
/// could take it meanwhile; the next pass claims it again.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);
/// After shutdown is requested, how long a send in flight may still finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The first and the longest wait after the SMTP transport failed.
const TRANSPORT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// The wait after the store failed.
const STORE_PAUSE: Duration = Duration::from_secs(5);

/// Drains the outbox until cancelled.
pub struct Sender {
    /// Read per row (retry schedule, timeout); SMTP settings live in `smtp`, and a reload
    /// that changes them restarts the sender.
    pub config: Live,
    pub store: Store,
    pub health: Reporter,
    pub smtp: Arc<Smtp>,
    /// Notified by ingest after a commit that queued mail.
    pub wake: Arc<Notify>,
    /// Whose claims this sender's are (`instance`).
    pub instance: String,
}

/// How a pass over the due rows ended.
enum Pass {
    /// Every due row was tried; sleep this long.
    Done(Duration),
    /// The transport failed: no row was decided; back off.
    Broken(Broken),
}

impl Sender {
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(TRANSPORT_BACKOFF.0, TRANSPORT_BACKOFF.1);
        // Claims of this instance's previous life (a crash) would hold its rows back.
        self.release_claims().await;
        while !cancel.is_cancelled() {
            let (pause, wakeable) = match self.pass(&cancel).await {
                Ok(Pass::Done(pause)) => {
                    backoff.reset();
                    (pause, true)
                }
                Ok(Pass::Broken(broken)) => {
                    // Other instances may have a transport that works.
                    self.release_claims().await;
                    let delay = backoff.next_delay();
                    self.transport_failed(&broken, delay).await;
                    // New mail does not shorten the wait: each try would meet the same
                    // broken transport (and perhaps wait out its timeout).
                    (delay, false)
                }
                Err(err) => (self.store_failed(err), true),
            };
            let pause = self.report_depth().await.map_or(pause, |p| p.min(pause));
            self.health.beat(pause);
            let woken = async {
                match wakeable {
                    true => self.wake.notified().await,
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = woken => {}
                _ = cancel.cancelled() => break,
            }
        }
        self.release_claims().await;
        info!("outbox sender stopped");
    }

    /// Gives up this instance's claims on rows it has not sent.
    async fn release_claims(&self) {
        let instance = self.instance.clone();
        match self
            .store
            .write(move |tx| tx.outbox_release(&instance))
            .await
        {
            Ok(0) => {}
            Ok(n) => debug!(rows = n, "outbox claims released"),
            Err(err) => {
                warn!(error = %err, "cannot release outbox claims; they run out by themselves")
            }
        }
    }

    /// Puts the outbox's depth in the health registry (`/healthz` and the alerts read it);
    /// `Some` pause if the store failed.
    async fn report_depth(&self) -> Option<Duration> {
        match self.store.read(|tx| tx.outbox_now()).await {
            Ok(now) => {
                self.health.outbox(now.depth, now.oldest);
                self.health.trouble(Trouble::Database, None);
                if now.depth == 0 {
                    // Nothing waits on the transport any more.
                    self.health.trouble(Trouble::Smtp, None);
                }
                None
            }
            Err(err) => Some(self.store_failed(err)),
        }
    }

    fn store_failed(&self, err: StoreError) -> Duration {
        error!(error = %err, "outbox: cannot read or update the store; retrying in 5s");
        self.health
            .trouble(Trouble::Database, Some(err.to_string()));
        STORE_PAUSE
    }

    /// The SMTP transport failed: every row keeps its attempts; `/healthz` says so, an
    /// `smtp.transport_failed` event counts it (metrics), and the sender waits `delay`.
    async fn transport_failed(&self, broken: &Broken, delay: Duration) {
        warn!(error = %broken, retry_in = ?delay, "outbox: the SMTP transport failed; every queued message waits");
        self.health.trouble(Trouble::Smtp, Some(broken.0.clone()));
        let detail = format!("{broken}; next try in {}s", delay.as_secs());
        let recorded = self
            .store
            .write(move |tx| {
                tx.record(
                    &Event {
                        detail,
                        ..Event::new(EventKind::SmtpTransportFailed)
                    },
                    Timestamp::now(),
                )
            })
            .await;
        if let Err(err) = recorded {
            self.store_failed(err);
        }
    }

    /// Sends every due row over `[smtp] connections` sessions at once, until the transport
    /// fails.
    async fn pass(&self, cancel: &CancellationToken) -> Result<Pass, StoreError> {
        loop {
            let now = Timestamp::now();
            let instance = self.instance.clone();
            let claim_ms = CLAIM.as_millis() as i64;
            let due = self
                .store
                .write(move |tx| tx.outbox_claim(now, BATCH, &instance, claim_ms))
                .await?;
            let claimed = std::time::Instant::now();
            let full = due.len() == BATCH as usize;
            if let Some(broken) = self.send_all(due, claimed, cancel).await? {
                return Ok(Pass::Broken(broken));
            }
            if cancel.is_cancelled() {
                return Ok(Pass::Done(Duration::ZERO));
            }
            if !full {
                break;
            }
        }
        let next = self.store.read(|tx| tx.outbox_next_due()).await?;
        let now = Timestamp::now();
        Ok(Pass::Done(match next {
            Some(at) if at <= now => Duration::ZERO,
            Some(at) => Duration::try_from(at.duration_since(now))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        }))
    }

    /// Sends `rows` with one worker per connection, each taking the next row nobody has
    /// taken and writing its outcome before its next send. After a transport failure no
    /// worker takes another row (those in flight finish); returns the first failure.
    async fn send_all(
        &self,
        rows: Vec<OutboxRow>,
        claimed: std::time::Instant,
        cancel: &CancellationToken,
    ) -> Result<Option<Broken>, StoreError> {
        let connections = self.config.current().smtp.connections.max(1) as usize;
        let rows = std::sync::Mutex::new(rows.into_iter());
        let broken: std::sync::Mutex<Option<Broken>> = std::sync::Mutex::new(None);
        // Set after a transport failure or a store error: no worker takes another row.
        let stop = AtomicBool::new(false);
        let next = || -> Option<OutboxRow> {
            if cancel.is_cancelled()
                || stop.load(Ordering::SeqCst)
                || claimed.elapsed() > CLAIM - CLAIM_MARGIN
            {
                return None;
            }
            rows.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .next()
        };
        let worker = || async {
            while let Some(row) = next() {
                let delivered = self.deliver(row, cancel).await;
                if !matches!(delivered, Ok(None)) {
                    stop.store(true, Ordering::SeqCst);
                }
                if let Some(failure) = delivered? {
                    broken
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert(failure);
                }
            }
            Ok::<(), StoreError>(())
        };
        let workers = (0..connections).map(|_| worker());
        // Every worker runs to its end (no send is cut off); the first store error wins.
        for result in futures_util::future::join_all(workers).await {
            result?;
        }
        Ok(broken
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Sends one row and writes down what each recipient's answer decided; `Some` when the
    /// transport failed instead (nothing is written).
    async fn deliver(
        &self,
        row: OutboxRow,
        cancel: &CancellationToken,
    ) -> Result<Option<Broken>, StoreError> {
        let config = self.config.current();
        // The send, bounded by the SMTP timeout, and the commit of its outcome.
        self.health.beat(config.smtp.timeout * 2);
        let answer = match self.attempt(&row, cancel).await {
            None => {
                warn!(
                    outbox_id = row.id.0,
                    "shutdown during a send; the row stays queued"
                );
                return Ok(None);
            }
            Some(Err(broken)) => return Ok(Some(broken)),
            Some(Ok(answer)) => answer,
        };
        self.health.trouble(Trouble::Smtp, None);
        let now = Timestamp::now();
        let outcome = Arc::new(next_step(answer, &row, &config.outbox, now));
        log_outcome(&row, &outcome);
        let row = Arc::new(row);
        // Until the outcome is written, sending anything would send this row again: a
        // database that cannot be written (full, read-only) pauses the sender here.
        loop {
            let (config, row, outcome) = (config.clone(), row.clone(), outcome.clone());
            let written = self
                .store
                .write(move |tx| record_outcome(tx, &config, &row, &outcome, now))
                .await;
            match written {
                Ok(()) => return Ok(None),
                Err(err) if err.is_transient() && !cancel.is_cancelled() => {
                    let pause = self.store_failed(err);
                    self.health.beat(pause);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One SMTP attempt to the row's pending recipients; `None` if shutdown cut it off.
    async fn attempt(
        &self,
        row: &OutboxRow,
        cancel: &CancellationToken,
    ) -> Option<Result<Answer, Broken>> {
        let limit = self.config.current().smtp.timeout;
        let pending = row.pending();
        let send = tokio::time::timeout(
            limit,
            self.smtp.send(&row.envelope_from, &pending, &row.raw),
        );
        let grace = async {
            cancel.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = send => Some(result.unwrap_or_else(|_| {
                Err(Broken(format!("no answer from the SMTP server within {limit:?}")))
            })),
            _ = grace => None,
        }
    }
}

/// What to write after an attempt the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    answer: Answer,
    step: Step,
}

/// What becomes of the row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Every recipient is done, and at least one got the mail.
    Sent,
    /// Some recipients were refused for now: try them again at `at`.
    Retry { at: Timestamp, reason: String },
    /// Nobody got the mail and nobody will.
    Fail { reason: String },
}

/// Pure: the retry schedule (`retry[min(attempts, len-1)]`) for recipients refused for now,
/// and the give-up rule that turns them into refusals after `give_up_after`.
fn next_step(
    mut answer: Answer,
    row: &OutboxRow,
    outbox: &OutboxConfig,
    now: Timestamp,
) -> Outcome {
    let reason = answer.deferred.join("; ");
    if !answer.deferred.is_empty() {
        if now < plus(row.created_at, outbox.give_up_after) {
            let index = (row.attempts as usize).min(outbox.retry.len().saturating_sub(1));
            let delay = outbox
                .retry
                .get(index)
                .copied()
                .unwrap_or(Duration::from_secs(60));
            let at = plus(now, delay);
            return Outcome {
                answer,
                step: Step::Retry { at, reason },
            };
        }
        let late = std::mem::take(&mut answer.deferred)
            .into_iter()
            .map(|d| format!("{d} (still refused after {:?})", outbox.give_up_after));
        answer.refused.extend(late);
    }
    let step = if answer.accepted.is_empty() && row.delivered.is_empty() {
        Step::Fail {
            reason: answer.refused.join("; "),
        }
    } else {
        Step::Sent
    };
    Outcome { answer, step }
}

fn log_outcome(row: &OutboxRow, outcome: &Outcome) {
    let (id, ticket, message_id) = (row.id.0, row.ticket.map(|t| t.0), &row.message_id);
    for refused in &outcome.answer.refused {
        warn!(
            outbox_id = id,
            ticket, message_id, refused, "outbox: recipient refused"
        );
    }
    match &outcome.step {
        Step::Sent => info!(
            outbox_id = id,
            ticket,
            message_id,
            to = outcome.answer.accepted.join(", "),
            "outbox: sent"
        ),
        Step::Retry { at, reason } => {
            warn!(outbox_id = id, ticket, message_id, reason, retry_at = %at, "outbox: deferred")
        }
        Step::Fail { reason } => error!(
            outbox_id = id,
            ticket, message_id, reason, "outbox: failed permanently"
        ),
    }
}

/// Writes an attempt's outcome in one transaction: each recipient's fate, the row's status,
/// an event per refusal and one for the row, and the notice to the agents when a customer's
/// mail was refused for some of its recipients.
fn record_outcome(
    tx: &Tx<'_>,
    config: &Config,
    row: &OutboxRow,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (answer, id, ticket) = (&outcome.answer, row.id, row.ticket);
    tx.outbox_answered(id, &answer.accepted, &answer.refused)?;
    let event = |kind, detail| {
        tx.record(
            &Event {
                ticket,
                outbox: Some(id),
                detail,
                ..Event::new(kind)
            },
            now,
        )
    };
    for refused in &answer.refused {
        event(EventKind::OutboxRefused, refused.clone())?;
    }
    match &outcome.step {
        Step::Sent => {
            tx.outbox_sent(id, now)?;
            let mut to = row.delivered.clone();
            to.extend(answer.accepted.iter().cloned());
            event(EventKind::OutboxSent, format!("to {}", to.join(", ")))?;
        }
        Step::Retry { at, reason } => {
            tx.outbox_retry_at(id, *at, reason)?;
            event(
                EventKind::OutboxDeferred,
                format!("{reason}; next attempt {at}"),
            )?;
        }
        Step::Fail { reason } => {
            tx.outbox_failed(id, reason)?;
            event(EventKind::OutboxFailed, reason.clone())?;
        }
    }
    if !answer.refused.is_empty() && !row.internal {
        refused::tell_agents(tx, config, row, &answer.refused, now)?;
    }
    Ok(())
}

/// Who a rendered mail is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// An agent or another person inside (team lead, manager): internal mail.
    Inside(&'a str),
    /// A customer or a third party: never sent with a reply key in it.
    Outside(&'a Boundary),
}

/// Puts rendered mail in the outbox, inside the caller's transaction: the outbound message row
/// (so the ticket's transcript and In-Reply-To look-ups find it) and the outbox row the
/// sender delivers. Mail to someone inside is internal: never a threading key for anyone
/// else. Mail to someone outside that carries a reply key is the one choke point where keys
/// would leave the agents: it is not queued ([`Enqueued::Withheld`]), and a
/// `outbox.key_withheld` event and an error say why; the caller tells the agent whose action
/// produced it.
pub fn enqueue(
    tx: &Tx<'_>,
    support: &Support,
    ticket: Option<TicketId>,
    kind: MailKind,
    audience: Audience<'_>,
    out: &Outgoing,
    now: Timestamp,
) -> Result<Enqueued, StoreError> {
    let agent = match audience {
        Audience::Inside(agent) => Some(agent),
        Audience::Outside(boundary) => {
            if let Some(leak) = boundary.leak(&out.raw) {
                error!(ticket = ticket.map(|t| t.0), message_id = %out.message_id, kind = kind.outbox(), "not sent, it would carry a reply key outside: {leak}");
                tx.record(
                    &Event {
                        ticket,
                        detail: format!(
                            "{} to {} not sent: {leak}",
                            kind.outbox(),
                            out.recipients.join(", ")
                        ),
                        ..Event::new(EventKind::OutboxKeyWithheld)
                    },
                    now,
                )?;
                return Ok(Enqueued::Withheld(leak));
            }
            None
        }
    };
    put(tx, support, ticket, kind.outbox(), agent, out, now).map(Enqueued::Queued)
}

/// Puts an alert to the admin (`[alerts]`) in the outbox: on no ticket, internal.
pub fn enqueue_alert(
    tx: &Tx<'_>,
    support: &Support,
    out: &Outgoing,
    now: Timestamp,
) -> Result<OutboxId, StoreError> {
    let to = out.recipients.join(" ");
    put(tx, support, None, "alert", Some(&to), out, now)
}

fn put(
    tx: &Tx<'_>,
    support: &Support,
    ticket: Option<TicketId>,
    class: &str,
    agent: Option<&str>,
    out: &Outgoing,
    now: Timestamp,
) -> Result<OutboxId, StoreError> {
    let from = Person::new(&out.envelope_from, Some(&support.name));
    let row = tx.insert_message(&NewMessage {
        ticket,
        outbound: true,
        dedupe_key: &dedupe_key(Some(&out.message_id), &out.raw),
        message_id: Some(&out.message_id),
        source: None,
        from: Some(&from),
        subject: &out.subject,
        sent_date: Some(now),
        received_at: now,
        in_reply_to: &[],
        references: &[],
        class,
        defects: "",
        body_text: &out.text,
        attachments: &[],
        raw: &out.raw,
        internal: agent.is_some(),
        agent,
    })?;
    tx.enqueue(&NewOutbox {
        ticket,
        message: row,
        kind: class,
        envelope_from: &out.envelope_from,
        recipients: &out.recipients,
        now,
    })
}

/// What [`enqueue`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Queued(OutboxId),
    /// Not queued: it would have carried a reply key outside (where, in a sentence).
    Withheld(String),
}

impl Enqueued {
    pub fn queued(self) -> Option<OutboxId> {
        match self {
            Enqueued::Queued(id) => Some(id),
            Enqueued::Withheld(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OutboxId;

    fn row(attempts: u32) -> OutboxRow {
        OutboxRow {
            id: OutboxId(1),
            ticket: None,
            message_id: "x@y".into(),
            envelope_from: "support@example.test".into(),
            recipients: vec!["a@b.c".into(), "cc@b.c".into()],
            delivered: Vec::new(),
            refused: Vec::new(),
            raw: Vec::new(),
            attempts,
            created_at: "2026-11-23T10:00:00Z".parse().unwrap(),
            kind: "reply".into(),
            internal: false,
        }
    }

    fn outbox() -> OutboxConfig {
        OutboxConfig {
            retry: vec![Duration::from_secs(10), Duration::from_secs(60)],
            give_up_after: Duration::from_secs(3600),
        }
    }

    /// The choke point: mail to someone outside that carries a reply key is not queued, and
    /// the refusal is recorded; the same mail to an agent is.
    #[test]
    fn mail_outside_with_a_reply_key_is_withheld_at_enqueue() {
        use crate::agent::sign::Signer;
        use crate::store::NewTicket;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("boundary.db")).expect("open store");
        let address: lettre::Address = "support@example.test".parse().unwrap();
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef", &address, "+");
        let boundary = Boundary::new(
            Some(signer.clone()),
            vec!["support@example.test".into()],
            "+",
            Vec::new(),
        );
        let support = Support {
            address,
            name: "Example Support".into(),
            tag_prefix: "#".into(),
            timezone: jiff::tz::TimeZone::UTC,
            language: crate::language::Lang::En,
        };
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let key = signer.reply_address(TicketId(1), "agent1@example.test");
        let outgoing = |n: u32, cc: &str| {
            let raw = format!(
                "From: support@example.test\r\nTo: mona@example.net\r\nCc: {cc}\r\nSubject: Re: x\r\nMessage-ID: <o{n}@example.test>\r\n\r\nHello.\r\n"
            );
            Outgoing {
                message_id: format!("o{n}@example.test"),
                subject: "Re: x".into(),
                envelope_from: "support@example.test".into(),
                recipients: vec!["mona@example.net".into(), cc.to_string()],
                text: "Hello.".into(),
                raw: raw.into_bytes(),
            }
        };
        let (leaking, clean) = (outgoing(1, &key), outgoing(2, "boss@example.net"));
        let (withheld, to_agent, sent) = store
            .write_blocking(|tx| {
                let ticket = tx.create_ticket(&NewTicket {
                    mailbox: "support",
                    subject: "x",
                    customer: None,
                    language: None,
                    address: None,
                    now,
                })?;
                let outside = Audience::Outside(&boundary);
                let withheld = enqueue(
                    tx,
                    &support,
                    Some(ticket),
                    MailKind::Reply,
                    outside,
                    &leaking,
                    now,
                )?;
                let inside = Audience::Inside("agent1@example.test");
                let to_agent = enqueue(
                    tx,
                    &support,
                    Some(ticket),
                    MailKind::Note,
                    inside,
                    &leaking,
                    now,
                )?;
                let sent = enqueue(
                    tx,
                    &support,
                    Some(ticket),
                    MailKind::Reply,
                    outside,
                    &clean,
                    now,
                )?;
                Ok((withheld, to_agent, sent))
            })
            .expect("write");
        assert!(
            matches!(&withheld, Enqueued::Withheld(why) if why.contains("Cc names the reply address")),
            "{withheld:?}"
        );
        assert!(matches!(
            (to_agent, sent),
            (Enqueued::Queued(_), Enqueued::Queued(_))
        ));
        let events = store
            .read_blocking(|tx| tx.events(EventKind::OutboxKeyWithheld.as_str(), 10))
            .expect("events");
        assert_eq!(events.len(), 1);
        assert!(
            events[0].detail.contains("Cc names the reply address"),
            "{}",
            events[0].detail
        );
    }

    fn answer(accepted: &[&str], refused: &[&str], deferred: &[&str]) -> Answer {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Answer {
            accepted: strings(accepted),
            refused: strings(refused),
            deferred: strings(deferred),
        }
    }

    #[test]
    fn deferred_recipients_follow_the_retry_schedule_then_are_given_up() {
        let now: Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        let later = answer(&[], &[], &["a@b.c: 451 try later"]);
        let at = |secs| Step::Retry {
            at: plus(now, Duration::from_secs(secs)),
            reason: "a@b.c: 451 try later".into(),
        };
        let step = |attempts, now| next_step(later.clone(), &row(attempts), &outbox(), now).step;
        assert_eq!(step(0, now), at(10));
        assert_eq!(step(1, now), at(60));
        assert_eq!(step(7, now), at(60));
        let late: Timestamp = "2026-11-23T11:00:00Z".parse().unwrap();
        let given_up = next_step(later.clone(), &row(9), &outbox(), late);
        assert!(matches!(given_up.step, Step::Fail { .. }), "{given_up:?}");
        assert!(given_up.answer.deferred.is_empty());
        assert!(given_up.answer.refused[0].starts_with("a@b.c: 451 try later (still refused"));
    }

    #[test]
    fn a_refused_recipient_does_not_cost_the_others_their_mail() {
        let now: Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        let partly = answer(
            &["a@b.c"],
            &["cc@b.c: 550 5.7.1 Recipient address rejected"],
            &[],
        );
        let outcome = next_step(partly, &row(0), &outbox(), now);
        assert_eq!(outcome.step, Step::Sent);
        assert_eq!(outcome.answer.refused.len(), 1);
        let nobody = answer(
            &[],
            &["a@b.c: 550 no such user", "cc@b.c: 550 no such user"],
            &[],
        );
        assert_eq!(
            next_step(nobody, &row(0), &outbox(), now).step,
            Step::Fail {
                reason: "a@b.c: 550 no such user; cc@b.c: 550 no such user".into()
            }
        );
    }

    #[test]
    fn a_retry_is_for_the_recipients_still_pending() {
        let now: Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        let mut retried = row(1);
        retried.recipients.push("third@b.c".into());
        retried.delivered = vec!["A@b.c".into()];
        retried.refused = vec!["third@b.c".into()];
        assert_eq!(retried.pending(), vec!["cc@b.c".to_string()]);
        // The last pending recipient refused: the row is still sent (someone got it).
        let refused = answer(&[], &["cc@b.c: 550 no"], &[]);
        assert_eq!(
            next_step(refused, &retried, &outbox(), now).step,
            Step::Sent
        );
    }
}
