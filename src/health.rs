//! The daemon's health registry: what every long-running task last reported.
//!
//! Tasks write, the ops side reads: `/healthz`, the systemd `STATUS=` line and the watchdog.
//! Two questions are kept apart on purpose:
//!
//! - **Liveness** ([`Reporter::beat`]): each task promises to report again within a bound it
//!   knows (its next sleep, or an IMAP command's timeout, plus [`SLACK`]). A task past its
//!   promise is stuck (a deadlock, an await without a timeout); the watchdog then stops
//!   pinging and systemd restarts the daemon.
//! - **Health** ([`Snapshot::problems`]): a mailbox that cannot connect or an outbox that no
//!   longer drains. That is the admin's business (`/healthz` says 503 and why); a restart
//!   would not fix a server that is down, so it never stops the watchdog.
//!
//! A plain std mutex: it is held only to copy a few fields, never across `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::Notify;

/// Added to every liveness promise: scheduling delays on a busy machine, a slow disk.
pub const SLACK: Duration = Duration::from_secs(60);

/// What a mailbox task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Started, not logged in yet.
    Connecting,
    /// Fetching and ingesting.
    Syncing,
    /// Waiting in IDLE.
    Idle,
    /// Waiting for the next poll.
    Polling,
    /// The last session attempt failed; waiting to reconnect.
    Failing,
    /// Another instance on the same database fetches it; this one takes over if it stops.
    Standby,
}

impl Link {
    fn connected(self) -> bool {
        matches!(self, Link::Syncing | Link::Idle | Link::Polling)
    }

    fn as_str(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Syncing => "syncing",
            Link::Idle => "idle",
            Link::Polling => "polling",
            Link::Failing => "failing",
            Link::Standby => "standby",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxHealth {
    pub state: Link,
    pub connected: bool,
    /// The end of the last successful sync (a fetch, or a wake from IDLE that was synced).
    pub last_success: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    /// Since when it has been failing without a session in between.
    pub failing_since: Option<Timestamp>,
    /// The instance that fetches it (this one or another), as the database last said.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxHealth {
    /// Queued rows (due or waiting for a retry).
    pub depth: u64,
    /// When the oldest queued row was queued.
    pub oldest: Option<Timestamp>,
}

/// A failure of something a task depends on, which the task waits out (it retries by
/// itself) but the admin should know of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trouble {
    /// The SMTP transport: connect, greeting, TLS, login, timeout.
    Smtp,
    /// The database: full, read-only, an I/O error, locked past its timeout.
    Database,
    /// Scheduler items parked after failing on their own data.
    Parked,
}

/// One trouble as reported: since when, and the latest word on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub task: String,
    pub kind: Trouble,
    pub since: Timestamp,
    pub text: String,
}

impl Problem {
    /// The `/healthz` line: `smtp: …`, `mailbox support: database: …`.
    pub fn line(&self) -> String {
        match self.kind {
            Trouble::Smtp => format!("smtp: {}", self.text),
            Trouble::Database => format!("{}: database: {}", self.task, self.text),
            Trouble::Parked => format!("{}: {}", self.task, self.text),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Task name -> the [`Reporter`] that may write its entries. A task stopped by a reload
    /// may still report once before it sees its cancellation; its reporter is no longer the
    /// owner then, so it cannot leave a stale promise (which would stop the watchdog) or a
    /// stale mailbox (which would make `/healthz` 503) behind.
    owners: BTreeMap<String, u64>,
    last_owner: u64,
    /// Task name -> the instant it promised to report again by.
    beats: BTreeMap<String, Instant>,
    mailboxes: BTreeMap<String, MailboxHealth>,
    outbox: OutboxHealth,
    /// (task, kind) -> the trouble it reported and has not cleared.
    troubles: BTreeMap<(String, Trouble), Problem>,
}

/// Shared by every task of one daemon (an `Arc<Health>`).
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
    /// Notified whenever something the status line shows changed.
    changed: Notify,
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing here can panic while the lock is held; recover the data if it ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one handle through which the task `task` (watching `mailbox`, if any) reports,
    /// from now on; an earlier reporter of the same name is disowned.
    pub fn reporter(self: &Arc<Self>, task: &str, mailbox: Option<&str>) -> Reporter {
        let mut state = self.lock();
        state.last_owner += 1;
        let owner = state.last_owner;
        state.owners.insert(task.to_string(), owner);
        Reporter {
            health: Arc::clone(self),
            task: task.to_string(),
            mailbox: mailbox.map(str::to_string),
            owner,
        }
    }

    /// A task that was stopped on purpose (a mailbox removed by a reload) is no longer
    /// expected to report; its mailbox entry goes too, and its reporter is disowned.
    pub fn forget(&self, task: &str, mailbox: Option<&str>) {
        let mut state = self.lock();
        state.owners.remove(task);
        state.beats.remove(task);
        state.troubles.retain(|(owner, _), _| owner != task);
        if let Some(name) = mailbox {
            state.mailboxes.remove(name);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Waits until the status line may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        let now = Instant::now();
        Snapshot {
            mailboxes: state.mailboxes.clone(),
            outbox: state.outbox.clone(),
            troubles: state.troubles.values().cloned().collect(),
            stuck: state
                .beats
                .iter()
                .filter(|(_, due)| **due < now)
                .map(|(task, due)| (task.clone(), now - *due))
                .collect(),
        }
    }
}

/// What a task reports through; cheap to clone (a supervised task restarted after a panic
/// keeps its reporter).
#[derive(Debug, Clone)]
pub struct Reporter {
    health: Arc<Health>,
    task: String,
    mailbox: Option<String>,
    owner: u64,
}

impl Reporter {
    /// Runs `update` on the state if this reporter still owns its task; true if the status
    /// line may have changed.
    fn update(&self, update: impl FnOnce(&mut State, &str) -> bool) {
        let mut state = self.health.lock();
        if state.owners.get(&self.task) != Some(&self.owner) {
            return;
        }
        let mailbox = self.mailbox.as_deref().unwrap_or(&self.task);
        let changed = update(&mut state, mailbox);
        drop(state);
        if changed {
            self.health.changed.notify_one();
        }
    }

    /// Liveness: the task reports again within `within` (plus [`SLACK`]).
    pub fn beat(&self, within: Duration) {
        let due = Instant::now() + within + SLACK;
        self.update(|state, _| {
            state.beats.insert(self.task.clone(), due);
            false
        });
    }

    /// The mailbox's state changed.
    pub fn link(&self, link: Link) {
        self.update(|state, name| {
            let entry = state
                .mailboxes
                .entry(name.to_string())
                .or_insert_with(|| MailboxHealth {
                    state: link,
                    connected: false,
                    last_success: None,
                    last_error: None,
                    last_error_at: None,
                    failing_since: None,
                    owner: None,
                });
            let changed = entry.state != link;
            entry.state = link;
            entry.connected = link.connected();
            if entry.connected {
                entry.failing_since = None;
            }
            changed
        });
    }

    /// Which instance fetches the mailbox, as its lease says.
    pub fn owner(&self, owner: &str) {
        self.update(|state, name| match state.mailboxes.get_mut(name) {
            Some(entry) if entry.owner.as_deref() != Some(owner) => {
                entry.owner = Some(owner.to_string());
                true
            }
            _ => false,
        });
    }

    /// A sync of the mailbox finished without error.
    pub fn synced(&self) {
        self.update(|state, name| {
            if let Some(entry) = state.mailboxes.get_mut(name) {
                entry.last_success = Some(Timestamp::now());
            }
            false
        });
    }

    /// A session of the mailbox failed; it is [`Link::Failing`] until it connects again.
    /// True if it was connected (a session was lost, rather than an attempt failing).
    pub fn failed(&self, error: String) -> bool {
        let mut was_connected = false;
        self.update(|state, name| {
            let Some(entry) = state.mailboxes.get_mut(name) else {
                return false;
            };
            was_connected = entry.connected;
            let changed = entry.state != Link::Failing;
            entry.state = Link::Failing;
            entry.connected = false;
            entry.last_error = Some(error);
            entry.last_error_at = Some(Timestamp::now());
            entry.failing_since.get_or_insert(Timestamp::now());
            changed
        });
        was_connected
    }

    /// The outbox as the sender found it after a pass.
    pub fn outbox(&self, depth: u64, oldest: Option<Timestamp>) {
        self.update(|state, _| {
            let changed = state.outbox.depth != depth;
            state.outbox = OutboxHealth { depth, oldest };
            changed
        });
    }

    /// Reports `kind` of trouble with its latest word (`Some`), or that it is over (`None`).
    /// The time it started is kept while it goes on.
    pub fn trouble(&self, kind: Trouble, text: Option<String>) {
        self.update(|state, _| {
            let key = (self.task.clone(), kind);
            let Some(text) = text else {
                return state.troubles.remove(&key).is_some();
            };
            match state.troubles.get_mut(&key) {
                Some(problem) => {
                    problem.text = text;
                    false
                }
                None => {
                    let problem = Problem {
                        task: self.task.clone(),
                        kind,
                        since: Timestamp::now(),
                        text,
                    };
                    state.troubles.insert(key, problem);
                    true
                }
            }
        });
    }
}

/// A copy of the registry at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mailboxes: BTreeMap<String, MailboxHealth>,
    pub outbox: OutboxHealth,
    /// What tasks are waiting out (SMTP down, database full, items parked).
    pub troubles: Vec<Problem>,
    /// Tasks past their liveness promise, and by how much.
    pub stuck: Vec<(String, Duration)>,
}

impl Snapshot {
    /// Why the daemon is not healthy (empty: healthy). `outbox_max_age`: a queued row older
    /// than this means mail is not leaving.
    pub fn problems(&self, now: Timestamp, outbox_max_age: Duration) -> Vec<String> {
        let mut problems: Vec<String> = self
            .stuck
            .iter()
            .map(|(task, late)| format!("{task}: no sign of life for {late:.0?} past its promise"))
            .collect();
        for (name, mailbox) in &self.mailboxes {
            match mailbox.state {
                Link::Failing => problems.push(format!(
                    "mailbox {name}: not connected: {}",
                    mailbox.last_error.as_deref().unwrap_or("unknown error")
                )),
                Link::Connecting => problems.push(format!("mailbox {name}: not connected yet")),
                _ => {}
            }
        }
        if let Some(oldest) = self.outbox.oldest {
            let age = now.duration_since(oldest).unsigned_abs();
            if age > outbox_max_age {
                problems.push(format!(
                    "outbox: the oldest of {} queued message(s) has waited {}s (limit {}s)",
                    self.outbox.depth,
                    age.as_secs(),
                    outbox_max_age.as_secs()
                ));
            }
        }
        problems.extend(self.troubles.iter().map(Problem::line));
        problems
    }

    /// systemd's `STATUS=` line, e.g. "3 mailboxes idle, outbox 0".
    pub fn status_line(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for mailbox in self.mailboxes.values() {
            *counts.entry(mailbox.state.as_str()).or_default() += 1;
        }
        let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut parts: Vec<String> = Vec::new();
        for (i, (state, n)) in counts.iter().enumerate() {
            parts.push(match (i, n) {
                (0, 1) => format!("1 mailbox {state}"),
                (0, n) => format!("{n} mailboxes {state}"),
                (_, n) => format!("{n} {state}"),
            });
        }
        if parts.is_empty() {
            parts.push("no mailboxes".into());
        }
        parts.push(format!("outbox {}", self.outbox.depth));
        if !self.stuck.is_empty() {
            let names: Vec<&str> = self.stuck.iter().map(|(t, _)| t.as_str()).collect();
            parts.push(format!("stuck: {}", names.join(", ")));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_counts_mailboxes_by_state() {
        let health = Arc::new(Health::default());
        let reporters: Vec<Reporter> = ["a", "b", "c"]
            .iter()
            .map(|name| health.reporter(&format!("mailbox {name}"), Some(name)))
            .collect();
        reporters.iter().for_each(|r| r.link(Link::Idle));
        let sender = health.reporter("outbox sender", None);
        assert_eq!(
            health.snapshot().status_line(),
            "3 mailboxes idle, outbox 0"
        );
        assert!(reporters[1].failed("login refused".into()));
        assert!(!reporters[1].failed("login refused".into()));
        sender.outbox(2, Some(Timestamp::now()));
        assert_eq!(
            health.snapshot().status_line(),
            "2 mailboxes idle, 1 failing, outbox 2"
        );
        health.forget("mailbox c", Some("c"));
        health.forget("mailbox a", Some("a"));
        assert_eq!(
            health.snapshot().status_line(),
            "1 mailbox failing, outbox 2"
        );
    }

    #[test]
    fn a_stopped_task_cannot_report_after_it_was_forgotten_or_replaced() {
        let health = Arc::new(Health::default());
        let old = health.reporter("mailbox sales", Some("sales"));
        old.link(Link::Idle);
        old.beat(Duration::from_secs(1));
        health.forget("mailbox sales", Some("sales"));
        // One last report from the task before it notices its cancellation.
        old.link(Link::Syncing);
        old.beat(Duration::ZERO);
        let snapshot = health.snapshot();
        assert!(snapshot.mailboxes.is_empty());
        assert!(!health.lock().beats.contains_key("mailbox sales"));
        // Restarted with new settings: the new task owns the entry, the old one is ignored.
        let old = health.reporter("mailbox support", Some("support"));
        let new = health.reporter("mailbox support", Some("support"));
        new.link(Link::Idle);
        assert!(!old.failed("connection reset".into()));
        assert_eq!(health.snapshot().mailboxes["support"].state, Link::Idle);
    }

    #[test]
    fn problems_name_the_mailbox_and_the_stuck_outbox() {
        let health = Arc::new(Health::default());
        let mailbox = health.reporter("mailbox support", Some("support"));
        let sender = health.reporter("outbox sender", None);
        mailbox.link(Link::Idle);
        let now = Timestamp::now();
        assert!(health.snapshot().problems(now, SLACK).is_empty());
        mailbox.failed("network: connection refused".into());
        sender.outbox(3, Some(now - jiff::SignedDuration::from_secs(3600)));
        sender.trouble(Trouble::Smtp, Some("greeting: 554 go away".into()));
        sender.trouble(Trouble::Smtp, Some("greeting: 554 still".into()));
        mailbox.trouble(Trouble::Database, Some("database or disk is full".into()));
        let problems = health.snapshot().problems(now, Duration::from_secs(900));
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("support: not connected: network: connection refused"));
        assert!(problems[1].contains("3 queued message(s) has waited 3600s (limit 900s)"));
        assert!(problems.contains(&"smtp: greeting: 554 still".to_string()));
        assert!(
            problems.contains(&"mailbox support: database: database or disk is full".to_string())
        );
        sender.trouble(Trouble::Smtp, None);
        mailbox.trouble(Trouble::Database, None);
        assert_eq!(
            health
                .snapshot()
                .problems(now, Duration::from_secs(900))
                .len(),
            2
        );
    }

    #[test]
    fn a_task_past_its_promise_is_stuck() {
        let health = Arc::new(Health::default());
        health
            .reporter("outbox sender", None)
            .beat(Duration::from_secs(1));
        assert!(health.snapshot().stuck.is_empty());
        // A promise already in the past.
        health
            .lock()
            .beats
            .insert("scheduler".into(), Instant::now() - Duration::from_secs(5));
        let snapshot = health.snapshot();
        assert_eq!(snapshot.stuck.len(), 1);
        assert_eq!(snapshot.stuck[0].0, "scheduler");
        assert!(snapshot.status_line().ends_with("stuck: scheduler"));
    }
}
