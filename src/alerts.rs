//! Mail to the admin (`[alerts]`): an admin who only reads mail still learns that the
//! support desk has stopped.
//!
//! One task. Every [`TICK`] it reads the health registry (and the quarantine count) and
//! turns it into [`Condition`]s: a mailbox that cannot log in or sync for longer than
//! `after`, the SMTP transport failing for longer than `after`, a queued message older than
//! `http.outbox_max_age`, a database that cannot be written, scheduler items parked, mail
//! held in quarantine. [`plan`] (pure) says what to send: one alert per condition, again at
//! most every `repeat` while it lasts, and an all-clear when it is gone. Alerts go through
//! the outbox like any mail; every alert is also logged at error level, so a transport
//! that cannot deliver them still leaves the log and `/healthz`.
//!
//! What was sent is kept in memory: after a restart a condition still present is reported
//! again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::catalog::EventKind;
use crate::config::{AlertsConfig, Config, Live};
use crate::health::{Health, Link, Reporter, Snapshot, Trouble};
use crate::render;
use crate::send;
use crate::store::{Event, Store, StoreError};

/// The alerter's name in the health registry and the supervisor's log lines.
pub const TASK: &str = "alerts";
/// How often the conditions are looked at.
const TICK: Duration = Duration::from_secs(5);

/// Something the admin should know of, as seen now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// One alert (and one all-clear) per key.
    pub key: String,
    pub subject: String,
    /// What is wrong and what to do.
    pub text: String,
    pub since: Timestamp,
    /// How long it must last before anyone is told.
    pub grace: Duration,
}

/// An alert sent and not cleared yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub at: Timestamp,
    pub subject: String,
}

/// One mail to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mail {
    Alert(Condition),
    Clear { key: String, subject: String },
}

/// Pure: the mail due at `now` for `conditions`, given what was `sent` (which it updates).
pub fn plan(
    conditions: &[Condition],
    sent: &mut BTreeMap<String, Sent>,
    repeat: Duration,
    now: Timestamp,
) -> Vec<Mail> {
    let mut mail = Vec::new();
    for condition in conditions {
        if now.duration_since(condition.since).unsigned_abs() < condition.grace {
            continue;
        }
        let due = sent
            .get(&condition.key)
            .is_none_or(|s| now.duration_since(s.at).unsigned_abs() >= repeat);
        if due {
            let record = Sent {
                at: now,
                subject: condition.subject.clone(),
            };
            sent.insert(condition.key.clone(), record);
            mail.push(Mail::Alert(condition.clone()));
        }
    }
    let gone: Vec<String> = sent
        .keys()
        .filter(|key| !conditions.iter().any(|c| &c.key == *key))
        .cloned()
        .collect();
    for key in gone {
        if let Some(was) = sent.remove(&key) {
            mail.push(Mail::Clear {
                key,
                subject: was.subject,
            });
        }
    }
    mail
}

/// Pure: what the health registry and the quarantine count say the admin should know.
pub fn conditions(
    snapshot: &Snapshot,
    quarantined: Option<(u64, Timestamp)>,
    alerts: &AlertsConfig,
    outbox_max_age: Duration,
    now: Timestamp,
) -> Vec<Condition> {
    let mut found = Vec::new();
    for (name, mailbox) in &snapshot.mailboxes {
        if let (Link::Failing, Some(since)) = (mailbox.state, mailbox.failing_since) {
            let error = mailbox.last_error.as_deref().unwrap_or("unknown error");
            found.push(Condition {
                key: format!("mailbox {name}"),
                subject: format!("mailbox {name} cannot log in or sync"),
                text: format!(
                    "Mailbox {name} has not been able to log in or sync since {since}.\n\nThe last error: {error}\n\nNew customer mail waits on the server; nothing is lost. {}",
                    login_advice(error)
                ),
                since,
                grace: alerts.after,
            });
        }
    }
    if let Some(oldest) = snapshot.outbox.oldest
        && now.duration_since(oldest).unsigned_abs() > outbox_max_age
    {
        found.push(Condition {
            key: "outbox".into(),
            subject: "outgoing mail is not leaving".into(),
            text: format!(
                "The oldest of {} queued outgoing message(s) was queued at {oldest}, longer ago than http.outbox_max_age ({}s).\n\n`deskgate outbox` lists them with the last error; /healthz says whether the SMTP server is the cause.",
                snapshot.outbox.depth,
                outbox_max_age.as_secs()
            ),
            since: oldest,
            grace: Duration::ZERO,
        });
    }
    for problem in &snapshot.troubles {
        let (key, subject, advice, grace) = match problem.kind {
            Trouble::Smtp => (
                "smtp".to_string(),
                "the SMTP server does not take our mail".to_string(),
                "Acknowledgements and answers wait in the outbox and keep their attempts; they are sent once the server works again. Check the [smtp] settings, the login and the server; `deskgate check-config --connect` tests them.",
                alerts.after,
            ),
            Trouble::Database => (
                "database".to_string(),
                "the database cannot be written".to_string(),
                "Mail stays unseen on the IMAP server and nothing is quarantined; each task resumes by itself once the database can be written again. Free disk space (or make the file writable), then check /healthz.",
                Duration::ZERO,
            ),
            Trouble::Parked => (
                "parked".to_string(),
                "scheduler items parked".to_string(),
                "These deadlines or follow-ups failed on their own data and are not worked until the next start; every other item goes on. `deskgate events item.` shows why.",
                Duration::ZERO,
            ),
        };
        found.push(Condition {
            key,
            subject,
            text: format!("{}\n\n{advice}", problem.line()),
            since: problem.since,
            grace,
        });
    }
    if let Some((n, since)) = quarantined {
        found.push(Condition {
            key: "quarantine".into(),
            subject: format!("{n} message(s) in quarantine"),
            text: format!(
                "{n} message(s) could not be handled and are held in quarantine (the latest at {since}).\n\n`deskgate quarantine list` shows them and why; `deskgate quarantine release ID` handles one normally, `deskgate quarantine delete ID` drops it."
            ),
            since,
            grace: Duration::ZERO,
        });
    }
    // Problems of one kind from several tasks (the database, for every mailbox) are one
    // condition: the first one found speaks for them.
    let mut seen = std::collections::HashSet::new();
    found.retain(|c| seen.insert(c.key.clone()));
    found
}

/// What fixes a login that fails.
fn login_advice(error: &str) -> &'static str {
    if error.contains("deskgate oauth login") {
        "The error says which command signs in again."
    } else if error.contains("login") || error.contains("AUTH") {
        "Check the mailbox's user and password (password_file), then reload (`systemctl reload deskgate`); `deskgate check-config --connect` tests the login."
    } else {
        "Check that the IMAP server is up and reachable; `deskgate check-config --connect` tests the connection."
    }
}

/// The task.
pub struct Alerter {
    /// Read every tick: `[alerts]` and `http.outbox_max_age` follow a reload.
    pub config: Live,
    pub store: Store,
    /// Read only: the registry every task reports to.
    pub registry: Arc<Health>,
    pub health: Reporter,
    /// Woken after an alert is queued.
    pub outbox_wake: Arc<Notify>,
}

impl Alerter {
    pub async fn run(self, cancel: CancellationToken) {
        let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
        loop {
            self.health.beat(TICK);
            let config = self.config.current();
            if let Some(alerts) = &config.alerts {
                self.tick(&config, alerts, &mut sent).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = cancel.cancelled() => break,
            }
        }
        info!("alerts stopped");
    }

    async fn tick(
        &self,
        config: &Arc<Config>,
        alerts: &AlertsConfig,
        sent: &mut BTreeMap<String, Sent>,
    ) {
        let now = Timestamp::now();
        let snapshot = self.registry.snapshot();
        let quarantined = self.store.read(|tx| tx.quarantine_held()).await;
        let quarantined = quarantined.unwrap_or_else(|err| {
            error!(error = %err, "alerts: cannot count the quarantine");
            None
        });
        let found = conditions(
            &snapshot,
            quarantined,
            alerts,
            config.http.outbox_max_age,
            now,
        );
        for mail in plan(&found, sent, alerts.repeat, now) {
            let (subject, text, kind) = match &mail {
                Mail::Alert(c) => {
                    error!(condition = %c.key, since = %c.since, "alert: {}: {}", c.subject, c.text);
                    (c.subject.clone(), c.text.clone(), EventKind::AlertSent)
                }
                Mail::Clear { key, subject } => {
                    info!(condition = %key, "alert cleared: {subject}");
                    (
                        format!("all clear: {subject}"),
                        format!("All clear: {subject} is over (seen at {now})."),
                        EventKind::AlertCleared,
                    )
                }
            };
            match self.queue(config, alerts, subject, text, kind, now).await {
                Ok(()) => self.outbox_wake.notify_one(),
                Err(err) => {
                    error!(error = %err, "alerts: cannot queue the alert mail; the log and /healthz carry it")
                }
            }
        }
    }

    /// Renders the alert and puts it in the outbox with an `alert.sent` or `alert.cleared`
    /// event.
    async fn queue(
        &self,
        config: &Arc<Config>,
        alerts: &AlertsConfig,
        subject: String,
        text: String,
        kind: EventKind,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let out = match render::admin_alert(&config.support, &alerts.to, &subject, &text, now) {
            Ok(out) => out,
            Err(err) => {
                error!(error = %err, "alerts: the alert mail cannot be rendered");
                return Ok(());
            }
        };
        let support = config.support.clone();
        self.store
            .write(move |tx| {
                let outbox = send::enqueue_alert(tx, &support, &out, now)?;
                tx.record(
                    &Event {
                        outbox: Some(outbox),
                        detail: format!("{subject} (to {})", out.recipients.join(", ")),
                        ..Event::new(kind)
                    },
                    now,
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(key: &str, since: Timestamp, grace: u64) -> Condition {
        Condition {
            key: key.into(),
            subject: format!("{key} is down"),
            text: String::new(),
            since,
            grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn one_alert_after_the_grace_again_after_repeat_and_an_all_clear() {
        let t0: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let at = |secs: i64| t0 + jiff::SignedDuration::from_secs(secs);
        let repeat = Duration::from_secs(3600);
        let mut sent = BTreeMap::new();
        let down = [condition("mailbox support", t0, 900)];
        assert!(
            plan(&down, &mut sent, repeat, at(600)).is_empty(),
            "within `after`"
        );
        let first = plan(&down, &mut sent, repeat, at(900));
        assert_eq!(first, vec![Mail::Alert(down[0].clone())]);
        assert!(
            plan(&down, &mut sent, repeat, at(1800)).is_empty(),
            "no repeat before `repeat`"
        );
        assert_eq!(
            plan(&down, &mut sent, repeat, at(4500)).len(),
            1,
            "repeated"
        );
        let cleared = plan(&[], &mut sent, repeat, at(4600));
        assert_eq!(
            cleared,
            vec![Mail::Clear {
                key: "mailbox support".into(),
                subject: "mailbox support is down".into()
            }]
        );
        assert!(
            plan(&[], &mut sent, repeat, at(4700)).is_empty(),
            "cleared once"
        );
    }

    #[test]
    fn a_condition_that_clears_within_its_grace_sends_nothing() {
        let t0: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let mut sent = BTreeMap::new();
        let repeat = Duration::from_secs(3600);
        let blip = [condition("smtp", t0, 900)];
        let soon = t0 + jiff::SignedDuration::from_secs(60);
        assert!(plan(&blip, &mut sent, repeat, soon).is_empty());
        assert!(
            plan(&[], &mut sent, repeat, soon).is_empty(),
            "no all-clear for an alert never sent"
        );
    }

    #[test]
    fn health_becomes_conditions_with_their_grace() {
        let health = Arc::new(Health::default());
        let mailbox = health.reporter("mailbox support", Some("support"));
        mailbox.link(Link::Connecting);
        mailbox.failed("login as support@example.test refused: NO [AUTHENTICATIONFAILED]".into());
        let sender = health.reporter("outbox sender", None);
        sender.trouble(Trouble::Smtp, Some("greeting: 554 go away".into()));
        let other = health.reporter("mailbox sales", Some("sales"));
        other.trouble(Trouble::Database, Some("database or disk is full".into()));
        mailbox.trouble(Trouble::Database, Some("database or disk is full".into()));
        let alerts = AlertsConfig {
            to: vec!["it@example.test".into()],
            after: Duration::from_secs(900),
            repeat: Duration::from_secs(6 * 3600),
        };
        let now = Timestamp::now();
        let held = Some((2, now));
        let found = conditions(
            &health.snapshot(),
            held,
            &alerts,
            Duration::from_secs(900),
            now,
        );
        let keys: Vec<(&str, u64)> = found
            .iter()
            .map(|c| (c.key.as_str(), c.grace.as_secs()))
            .collect();
        assert_eq!(
            keys,
            [
                ("mailbox support", 900),
                ("database", 0),
                ("smtp", 900),
                ("quarantine", 0)
            ]
        );
        assert!(
            found[0].text.contains("check-config --connect"),
            "{}",
            found[0].text
        );
        assert!(found[2].text.contains("smtp: greeting: 554 go away"));
    }
}
