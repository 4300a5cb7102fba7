//! `deskgate run`: the supervisor.
//!
//! One task per mailbox plus the outbox sender and the deadline scheduler, all under one [`CancellationToken`] and one
//! [`TaskTracker`] (the modern form of mini-redis's broadcast + mpsc shutdown). A task that
//! panics is logged and restarted after a pause. SIGTERM or SIGINT cancels the token: mailbox
//! tasks stop between messages (the transaction in flight commits), the sender between sends;
//! the process exits 0 within [`SHUTDOWN_LIMIT`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::fetch::MailboxTask;
use crate::oauth::{Grant, grant_for};
use crate::schedule::Scheduler;
use crate::send::{self, Sender};
use crate::store::Store;

/// systemd's default `TimeoutStopSec` is 90 s; we promise 10 s and stop waiting at 8.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(8);
const RESTART_PAUSE: Duration = Duration::from_secs(5);

pub async fn run(config: Config) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!("{}: {warning}", config.path.display());
    }
    let config = Arc::new(config);
    let store = Store::open(&config.database).context("opening the database")?;
    let smtp_grant = match &config.smtp.credentials {
        Some((_, credential)) => grant_for(credential, Some(&store), &config.tls)?,
        None => None,
    };
    let smtp = Arc::new(
        send::Smtp::new(&config.smtp, &config.tls, smtp_grant).context("setting up SMTP")?,
    );
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let wake = Arc::new(Notify::new());
    let schedule_wake = Arc::new(Notify::new());

    // One token source per login: the folders of one [[mailbox]] share it, so a rotated
    // refresh token is never raced by two of them.
    let mut grants: HashMap<String, Option<Arc<Grant>>> = HashMap::new();
    for mailbox in &config.mailboxes {
        let grant = match grants.get(&mailbox.account) {
            Some(grant) => grant.clone(),
            None => {
                let grant = grant_for(&mailbox.credential, Some(&store), &config.tls)?;
                grants.insert(mailbox.account.clone(), grant.clone());
                grant
            }
        };
        let (config, store, wake, schedule_wake, mailbox) = (
            Arc::clone(&config),
            store.clone(),
            Arc::clone(&wake),
            Arc::clone(&schedule_wake),
            mailbox.clone(),
        );
        let name = format!("mailbox {}", mailbox.name);
        tracker.spawn(supervise(name, cancel.clone(), move |cancel| {
            let task = MailboxTask {
                mailbox: mailbox.clone(),
                config: Arc::clone(&config),
                store: store.clone(),
                outbox_wake: Arc::clone(&wake),
                schedule_wake: Arc::clone(&schedule_wake),
                grant: grant.clone(),
            };
            task.run(cancel)
        }));
    }
    {
        let (config, store, wake) = (Arc::clone(&config), store.clone(), Arc::clone(&wake));
        let smtp = Arc::clone(&smtp);
        tracker.spawn(supervise(
            "outbox sender".into(),
            cancel.clone(),
            move |cancel| {
                let sender = Sender {
                    config: Arc::clone(&config),
                    store: store.clone(),
                    smtp: Arc::clone(&smtp),
                    wake: Arc::clone(&wake),
                };
                sender.run(cancel)
            },
        ));
    }
    {
        let (config, store, wake) = (Arc::clone(&config), store.clone(), Arc::clone(&wake));
        tracker.spawn(supervise(
            "scheduler".into(),
            cancel.clone(),
            move |cancel| {
                let scheduler = Scheduler {
                    config: Arc::clone(&config),
                    store: store.clone(),
                    wake: Arc::clone(&schedule_wake),
                    outbox_wake: Arc::clone(&wake),
                };
                scheduler.run(cancel)
            },
        ));
    }
    tracker.close();

    let status = format!("watching {} mailbox(es)", config.mailboxes.len());
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    info!(database = %config.database.display(), n_mailboxes = config.mailboxes.len(), "deskgate running");

    let signal_name = wait_for_shutdown_signal().await?;
    info!(signal = signal_name, "shutting down");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
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

async fn wait_for_shutdown_signal() -> anyhow::Result<&'static str> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!(error = %err, "cannot notify systemd");
    }
}
