//! `deskgate run`: the supervisor.
//!
//! The long-running tasks (one per mailbox, the outbox sender, the deadline scheduler, the
//! HTTP listener) are described by the configuration as a list of [`Spec`]s: a name, a
//! [`Spec::key`] (the settings that need a restart of that task when they change) and a
//! [`Kind`]. [`Tasks::apply`] makes the running set match a list: tasks whose key changed
//! are stopped and started again, removed ones stopped, new ones started, the rest left
//! alone (their IMAP sessions and SMTP connections stay up). Start and SIGHUP use the same
//! code. Everything else a task needs is read from the configuration in force
//! ([`Live::current`]) per unit of work, so a reload that changes only templates, agents or
//! policy restarts nothing.
//!
//! To add a task: a [`Kind`] variant, a line in [`specs`] and an arm in [`Tasks::spawn`]
//! that builds it from [`Shared`] and its [`Reporter`]; it reports liveness with
//! [`Reporter::beat`].
//!
//! Each task runs under its own child [`CancellationToken`] and one [`TaskTracker`] (the
//! modern form of mini-redis's broadcast + mpsc shutdown); a task that panics is logged and
//! restarted after a pause. SIGTERM or SIGINT cancels the root token: mailbox tasks stop
//! between messages (the transaction in flight commits), the sender between sends; the
//! process exits 0 within [`SHUTDOWN_LIMIT`].
//!
//! systemd (`Type=notify`): READY=1 once the database is open and the tasks started;
//! STATUS= from the health registry whenever it changes; RELOADING=1 with MONOTONIC_USEC,
//! then READY=1, around a reload (what systemd ≥ 253 expects of `Type=notify-reload`, and
//! harmless before); WATCHDOG=1 every half `WatchdogSec=` while no task is past its
//! liveness promise.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::http;
use crate::alerts::{self, Alerter};
use crate::config::{Config, Credential, Database, Live, MailboxConfig, PostgresTarget, TlsTrust};
use crate::fetch::MailboxTask;
use crate::health::{Health, Reporter};
use crate::oauth::{Grant, grant_for};
use crate::schedule::{self, Scheduler};
use crate::send::{self, Sender};
use crate::store::Store;

/// systemd's default `TimeoutStopSec` is 90 s; we promise 10 s and stop waiting at 8.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(8);
const RESTART_PAUSE: Duration = Duration::from_secs(5);
/// The status line is refreshed at least this often (the outbox's age changes silently).
const STATUS_REFRESH: Duration = Duration::from_secs(30);
/// How often the daemon looks for commits by other processes (`deskgate ingest`).
pub const COMMIT_POLL: Duration = Duration::from_secs(2);

pub async fn run(config: Config) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!("{}: {warning}", config.path.display());
    }
    let config = Arc::new(config);
    let store = Store::connect(&config.database).context("opening the database")?;
    let (publish, live) = Live::new(Arc::clone(&config));
    let shared = Shared {
        // The HTTP listener reads on a connection of its own, never waiting for the writer.
        read_store: Store::connect_read_only(&config.database)
            .context("opening the database for reading")?,
        store,
        live,
        health: Arc::new(Health::default()),
        outbox_wake: Arc::new(Notify::new()),
        schedule_wake: Arc::new(Notify::new()),
        instance: config.instance.clone(),
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut tasks = Tasks {
        running: BTreeMap::new(),
        grants: HashMap::new(),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        shared,
    };
    tasks.apply(&config)?;

    let mut signals = Signals::new()?;
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&tasks.shared.health.snapshot().status_line()),
    ]);
    info!(database = %config.database.display(), n_mailboxes = config.mailboxes.len(), "deskgate running");

    let watchdog = sd_notify::watchdog_enabled();
    let mut status = String::new();
    let mut stuck_reported = false;
    let signal_name = loop {
        let ping = watchdog.map_or(Duration::MAX, |period| period / 2);
        tokio::select! {
            name = signals.next() => match name {
                "SIGHUP" => reload(&mut tasks, &publish),
                name => break name,
            },
            _ = tasks.shared.health.changed() => {}
            _ = tokio::time::sleep(STATUS_REFRESH.min(ping)) => {}
        }
        let snapshot = tasks.shared.health.snapshot();
        let line = snapshot.status_line();
        if line != status {
            notify_systemd(&[sd_notify::NotifyState::Status(&line)]);
            status = line;
        }
        if watchdog.is_some() {
            if snapshot.stuck.is_empty() {
                notify_systemd(&[sd_notify::NotifyState::Watchdog]);
                stuck_reported = false;
            } else if !stuck_reported {
                error!(stuck = ?snapshot.stuck, "tasks past their liveness promise: no more watchdog pings, systemd will restart deskgate");
                stuck_reported = true;
            }
        }
    };
    info!(signal = signal_name, "shutting down");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_LIMIT, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            "tasks did not stop within {SHUTDOWN_LIMIT:?}; exiting anyway (committed work is safe)"
        );
    }
    info!("stopped");
    Ok(())
}

/// SIGHUP: reads the configuration file again. An invalid file, or one that moves the
/// database, changes nothing (the running configuration stays, the log says why).
fn reload(tasks: &mut Tasks, publish: &watch::Sender<Arc<Config>>) {
    let reloading = sd_notify::NotifyState::monotonic_usec_now();
    let mut states = vec![sd_notify::NotifyState::Reloading];
    states.extend(reloading.ok());
    notify_systemd(&states);
    let old = publish.borrow().clone();
    let outcome = match Config::load(&old.path) {
        Err(err) => Err(format!("{err}")),
        Ok(new) if new.database != old.database => Err(format!(
            "database changed from {} to {}; that needs a restart",
            old.database.display(),
            new.database.display()
        )),
        Ok(new) if new.instance != old.instance => Err(format!(
            "instance changed from {} to {}; that needs a restart",
            old.instance, new.instance
        )),
        Ok(new) => Ok(Arc::new(new)),
    };
    match outcome {
        Err(why) => {
            error!(path = %old.path.display(), "reload refused; the running configuration stays in force:\n{why}");
        }
        Ok(new) => {
            for warning in &new.warnings {
                warn!("{}: {warning}", new.path.display());
            }
            publish.send_replace(Arc::clone(&new));
            match tasks.apply(&new) {
                Ok(changes) => info!(
                    started = ?changes.started,
                    restarted = ?changes.restarted,
                    stopped = ?changes.stopped,
                    unchanged = changes.unchanged,
                    "configuration reloaded (templates, agents and policy apply from the next message)"
                ),
                Err(err) => error!(
                    error = format!("{err:#}"),
                    "configuration reloaded, but a task could not start"
                ),
            }
        }
    }
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&tasks.shared.health.snapshot().status_line()),
    ]);
}

/// What every task is built from.
#[derive(Clone)]
struct Shared {
    store: Store,
    read_store: Store,
    live: Live,
    health: Arc<Health>,
    /// Ingest and the scheduler wake the sender after a commit that queued mail.
    outbox_wake: Arc<Notify>,
    /// Ingest wakes the scheduler after every commit (a new deadline may be due soon).
    schedule_wake: Arc<Notify>,
    /// `instance`: fixed for the life of the process.
    instance: String,
}

/// One long-running task as the configuration describes it.
struct Spec {
    /// Unique; the health registry and the log use it.
    name: String,
    /// The settings the running task holds on to: a change restarts it.
    key: String,
    kind: Kind,
}

enum Kind {
    Mailbox(Box<MailboxConfig>),
    Sender,
    Scheduler,
    /// Mail to the admin (`[alerts]`; idle without it).
    Alerts,
    Http(std::net::SocketAddr),
    /// Wakes the sender and the scheduler when another process committed.
    CommitWatcher,
}

/// The tasks `config` asks for.
fn specs(config: &Config) -> Vec<Spec> {
    let mut specs: Vec<Spec> = config
        .mailboxes
        .iter()
        .map(|mailbox| Spec {
            name: format!("mailbox {}", mailbox.name),
            key: mailbox_key(mailbox, &config.tls),
            kind: Kind::Mailbox(Box::new(mailbox.clone())),
        })
        .collect();
    let smtp = &config.smtp;
    let mut smtp_key = format!("{:?} {:?}", smtp.server, smtp.timeout);
    if let Some((user, credential)) = &smtp.credentials {
        let _ = write!(smtp_key, " {user} {}", credential_key(credential));
    }
    smtp_key.push_str(&tls_key(&config.tls));
    specs.push(Spec {
        name: send::TASK.into(),
        key: smtp_key,
        kind: Kind::Sender,
    });
    specs.push(Spec {
        name: schedule::TASK.into(),
        key: String::new(),
        kind: Kind::Scheduler,
    });
    specs.push(Spec {
        name: alerts::TASK.into(),
        key: String::new(),
        kind: Kind::Alerts,
    });
    specs.push(Spec {
        name: COMMIT_WATCHER.into(),
        key: String::new(),
        kind: Kind::CommitWatcher,
    });
    if let Some(addr) = config.http.listen {
        specs.push(Spec {
            name: "http".into(),
            key: addr.to_string(),
            kind: Kind::Http(addr),
        });
    }
    specs
}

/// The settings a mailbox session is opened with; language and deadlines are not among
/// them (ingest reads those per message).
fn mailbox_key(m: &MailboxConfig, tls: &TlsTrust) -> String {
    format!(
        "{:?} {} {} {} {:?} {:?} {} {:?} {} {:?} {} {}{}",
        m.server,
        m.account,
        m.user,
        credential_key(&m.credential),
        m.folder,
        (&m.processed_folder, &m.quarantine_folder),
        m.idle,
        m.poll_interval,
        m.batch_size,
        m.timeout,
        m.initial_import,
        m.name,
        tls_key(tls),
    )
}

/// A password as a digest (the key is compared, never logged, but needs no secret); OAuth
/// settings as their description.
fn credential_key(credential: &Credential) -> String {
    match credential {
        Credential::Password(secret) => digest(secret.expose().as_bytes()),
        Credential::OAuth2 { mechanism, grant } => format!("{mechanism:?} {grant:?}"),
    }
}

fn tls_key(tls: &TlsTrust) -> String {
    tls.extra_ca_pem
        .as_deref()
        .map_or_else(String::new, |pem| format!(" ca {}", digest(pem)))
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(16)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

type BoxedTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
/// Builds a task's value from the shared handles and its health reporter, at every
/// (re)start by the supervisor.
type MakeTask = Box<dyn Fn(&Shared, &Reporter, CancellationToken) -> BoxedTask + Send + Sync>;

struct Running {
    key: String,
    cancel: CancellationToken,
    mailbox: Option<String>,
}

/// What [`Tasks::apply`] did.
#[derive(Debug, Default)]
struct Changes {
    started: Vec<String>,
    restarted: Vec<String>,
    stopped: Vec<String>,
    unchanged: usize,
}

struct Tasks {
    running: BTreeMap<String, Running>,
    /// One token source per OAuth login, keyed by account, with the credential it was made
    /// for: the folders of one [[mailbox]] share it, so a rotated refresh token is never
    /// raced by two of them, across reloads too.
    grants: HashMap<String, (String, Option<Arc<Grant>>)>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    shared: Shared,
}

impl Tasks {
    /// Makes the running tasks those `config` asks for.
    fn apply(&mut self, config: &Config) -> anyhow::Result<Changes> {
        let specs = specs(config);
        let mut changes = Changes::default();
        let wanted: BTreeMap<&str, &Spec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let keep = wanted.get(name.as_str()).is_some_and(|s| {
                self.running
                    .get(&name)
                    .is_some_and(|running| running.key == s.key)
            });
            if !keep && let Some(running) = self.running.remove(&name) {
                running.cancel.cancel();
                self.shared.health.forget(&name, running.mailbox.as_deref());
                if !wanted.contains_key(name.as_str()) {
                    info!(task = %name, "stopping: no longer configured");
                    changes.stopped.push(name);
                } else {
                    info!(task = %name, "restarting: its settings changed");
                    changes.restarted.push(name);
                }
            }
        }
        let mut result = Ok(());
        for spec in specs {
            if self.running.contains_key(&spec.name) {
                changes.unchanged += 1;
                continue;
            }
            if !changes.restarted.contains(&spec.name) {
                changes.started.push(spec.name.clone());
            }
            if let Err(err) = self.spawn(spec, config) {
                result = Err(err);
            }
        }
        result.map(|()| changes)
    }

    /// Starts the task `spec` describes under a child token of the daemon's.
    fn spawn(&mut self, spec: Spec, config: &Config) -> anyhow::Result<()> {
        let Spec { name, key, kind } = spec;
        let cancel = self.cancel.child_token();
        let mut mailbox_name = None;
        // Each arm turns the shared handles into the task's value, once per (re)start.
        let make: MakeTask = match kind {
            Kind::Mailbox(mailbox) => {
                let grant = self.grant(&mailbox.account, &mailbox.credential, config)?;
                mailbox_name = Some(mailbox.name.clone());
                Box::new(move |shared, health, cancel| {
                    let task = MailboxTask {
                        mailbox: (*mailbox).clone(),
                        config: shared.live.clone(),
                        store: shared.store.clone(),
                        health: health.clone(),
                        outbox_wake: Arc::clone(&shared.outbox_wake),
                        schedule_wake: Arc::clone(&shared.schedule_wake),
                        grant: grant.clone(),
                        instance: shared.instance.clone(),
                    };
                    Box::pin(task.run(cancel))
                })
            }
            Kind::Sender => {
                let smtp_grant = match &config.smtp.credentials {
                    Some((_, credential)) => {
                        grant_for(credential, Some(&self.shared.store), &config.tls)?
                    }
                    None => None,
                };
                let smtp = Arc::new(
                    send::Smtp::new(&config.smtp, &config.tls, smtp_grant)
                        .context("setting up SMTP")?,
                );
                Box::new(move |shared, health, cancel| {
                    let sender = Sender {
                        config: shared.live.clone(),
                        store: shared.store.clone(),
                        health: health.clone(),
                        smtp: Arc::clone(&smtp),
                        wake: Arc::clone(&shared.outbox_wake),
                        instance: shared.instance.clone(),
                    };
                    Box::pin(sender.run(cancel))
                })
            }
            Kind::Scheduler => Box::new(|shared, health, cancel| {
                let scheduler = Scheduler {
                    config: shared.live.clone(),
                    store: shared.store.clone(),
                    health: health.clone(),
                    wake: Arc::clone(&shared.schedule_wake),
                    outbox_wake: Arc::clone(&shared.outbox_wake),
                };
                Box::pin(scheduler.run(cancel))
            }),
            Kind::Alerts => Box::new(|shared, health, cancel| {
                let alerter = Alerter {
                    config: shared.live.clone(),
                    store: shared.store.clone(),
                    registry: Arc::clone(&shared.health),
                    health: health.clone(),
                    outbox_wake: Arc::clone(&shared.outbox_wake),
                };
                Box::pin(alerter.run(cancel))
            }),
            Kind::CommitWatcher => Box::new(|shared, health, cancel| {
                Box::pin(watch_commits(shared.clone(), health.clone(), cancel))
            }),
            Kind::Http(addr) => {
                let listener = http::bind(addr)
                    .with_context(|| format!("http.listen = \"{addr}\": cannot listen"))?;
                // Not supervised: axum handles a panic in a handler per connection, and
                // the listening socket cannot be bound twice.
                let shared = &self.shared;
                self.tracker.spawn(http::serve(
                    listener,
                    Arc::clone(&shared.health),
                    shared.read_store.clone(),
                    shared.live.clone(),
                    cancel.clone(),
                ));
                self.record(name, key, cancel, None);
                return Ok(());
            }
        };
        let shared = self.shared.clone();
        let health = shared.health.reporter(&name, mailbox_name.as_deref());
        self.tracker
            .spawn(supervise(name.clone(), cancel.clone(), move |cancel| {
                make(&shared, &health, cancel)
            }));
        self.record(name, key, cancel, mailbox_name);
        Ok(())
    }

    fn record(
        &mut self,
        name: String,
        key: String,
        cancel: CancellationToken,
        mailbox: Option<String>,
    ) {
        self.running.insert(
            name,
            Running {
                key,
                cancel,
                mailbox,
            },
        );
    }

    /// The account's token source: the one already made for the same credential, or a new
    /// one.
    fn grant(
        &mut self,
        account: &str,
        credential: &Credential,
        config: &Config,
    ) -> anyhow::Result<Option<Arc<Grant>>> {
        let key = credential_key(credential);
        if let Some((made_for, grant)) = self.grants.get(account)
            && *made_for == key
        {
            return Ok(grant.clone());
        }
        let grant = grant_for(credential, Some(&self.shared.store), &config.tls)?;
        self.grants
            .insert(account.to_string(), (key, grant.clone()));
        Ok(grant)
    }
}

const COMMIT_WATCHER: &str = "commit watcher";

/// How often an instance says in the database that it runs (`deskgate instances`).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Wakes the sender and the scheduler when another process commits (mail from `deskgate
/// ingest`, a CLI release, another instance on PostgreSQL), which otherwise sleep up to a
/// minute; and keeps this instance's row in `instances` fresh.
async fn watch_commits(shared: Shared, health: Reporter, cancel: CancellationToken) {
    let database = shared.live.current().database.clone();
    let watching = async {
        match &database {
            Database::Sqlite(_) => poll_data_version(&shared).await,
            Database::Postgres(target) => listen_for_commits(&shared, target).await,
        }
    };
    tokio::select! {
        () = watching => {}
        () = heartbeat(&shared, &health) => {}
        _ = cancel.cancelled() => {}
    }
    let instance = shared.instance.clone();
    if let Err(err) = shared
        .store
        .write(move |tx| tx.instance_gone(&instance))
        .await
    {
        warn!(error = %err, "cannot take this instance off the list of running ones");
    }
}

/// Records every [`HEARTBEAT`] that this instance runs.
async fn heartbeat(shared: &Shared, health: &Reporter) {
    let started = jiff::Timestamp::now().as_millisecond();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    loop {
        health.beat(HEARTBEAT * 3);
        let (id, host) = (shared.instance.clone(), host.clone());
        let seen = shared
            .store
            .write(move |tx| {
                tx.instance_seen(
                    &id,
                    &host,
                    std::process::id(),
                    env!("CARGO_PKG_VERSION"),
                    started,
                )
            })
            .await;
        if let Err(err) = seen {
            warn!(error = %err, "cannot record that this instance runs");
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// PostgreSQL: a notification for every commit of another instance; reconnects when the
/// listening connection fails.
async fn listen_for_commits(shared: &Shared, target: &PostgresTarget) {
    let wake = || {
        shared.outbox_wake.notify_one();
        shared.schedule_wake.notify_one();
    };
    loop {
        if let Err(err) = crate::store::listen(target, wake).await {
            warn!(error = %err, "listening for other instances' commits failed; reconnecting");
        }
        tokio::time::sleep(COMMIT_POLL).await;
    }
}

/// SQLite: polls the data version on the writer connection, where it changes only when
/// another connection commits. (Not the HTTP listener's connection: a slow scrape must not
/// hold this up.)
async fn poll_data_version(shared: &Shared) {
    let mut seen = None;
    loop {
        match shared.store.read(|tx| tx.data_version()).await {
            Ok(version) => {
                if seen.is_some_and(|seen| seen != version) {
                    shared.outbox_wake.notify_one();
                    shared.schedule_wake.notify_one();
                }
                seen = Some(version);
            }
            Err(err) => warn!(error = %err, "cannot read the database's data version"),
        }
        tokio::time::sleep(COMMIT_POLL).await;
    }
}

/// Runs `make(cancel)` in its own task; restarts it if it panics.
async fn supervise<F, Fut>(name: String, cancel: CancellationToken, make: F)
where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let result = tokio::spawn(make(cancel.clone())).await;
        match result {
            Ok(()) => return,
            Err(err) => {
                error!(task = %name, error = %err, "task crashed; restarting in {RESTART_PAUSE:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RESTART_PAUSE) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!(error = %err, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(std::path::Path::new("/etc/deskgate/deskgate.toml"), text).unwrap()
    }

    const BASE: &str = r#"
[support]
address = "support@example.com"
name = "Support"

[[mailbox]]
name = "support"
host = "imap.example.com"
tls = "implicit"
user = "support@example.com"
password = "one"

[[mailbox]]
name = "sales"
host = "imap.example.com"
tls = "implicit"
user = "sales@example.com"
password = "two"

[smtp]
host = "smtp.example.com"
tls = "implicit"
"#;

    fn keys(config: &Config) -> BTreeMap<String, String> {
        specs(config).into_iter().map(|s| (s.name, s.key)).collect()
    }

    #[test]
    fn only_the_changed_mailbox_gets_a_new_key() {
        let before = keys(&config(BASE));
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            [
                "alerts",
                "commit watcher",
                "http",
                "mailbox sales",
                "mailbox support",
                "outbox sender",
                "scheduler"
            ]
        );
        let after = keys(&config(&BASE.replace("\"two\"", "\"three\"")));
        assert_eq!(before["mailbox support"], after["mailbox support"]);
        assert_ne!(before["mailbox sales"], after["mailbox sales"]);
        assert!(
            !after["mailbox sales"].contains("three"),
            "a key carries no secret"
        );
        assert_eq!(before["outbox sender"], after["outbox sender"]);
        // Policy and language are read per message: no restart.
        let after = keys(&config(&format!(
            "{BASE}\n[policy]\nnew_tickets_per_hour = 3\n"
        )));
        assert_eq!(before, after);
        let after = keys(&config(&BASE.replace(
            "host = \"smtp.example.com\"\ntls = \"implicit\"",
            "host = \"smtp2.example.com\"\ntls = \"implicit\"\n\n[http]\nenabled = false",
        )));
        assert_ne!(before["outbox sender"], after["outbox sender"]);
        assert!(!after.contains_key("http"));
    }
}
