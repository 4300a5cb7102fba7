//! Fetch: one [`MailboxTask`] per configured mailbox.
//!
//! The task owns its IMAP session (as a mini-redis `Handler` owns its connection). It syncs
//! by UID (`UID SEARCH UID n:*`, then `UID FETCH … BODY.PEEK[]` in batches), hands each
//! message to [`crate::ingest`], and only after the commit flags it `\Seen` or moves it.
//! Between syncs it waits in IDLE (re-issued on a wall-clock cap, because server keepalives
//! reset async-imap's own timeout) or sleeps for the poll interval. Any error drops the
//! session and reconnects with capped, jittered exponential backoff; the task never gives up.
//!
//! **Architecture Invariant:** fetch never sends mail, and no UID is used without its
//! UIDVALIDITY. Cancellation is honoured only between messages and while waiting, so a
//! commit is never cut off halfway.

mod connect;
mod lease;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use connect::{Login, Opened, Session, connect, open, timed};

use async_imap::types::{Fetch, Flag};

use crate::backoff::Backoff;
use crate::catalog::EventKind;
use crate::config::{InitialImport, Live, MailboxConfig};
use crate::health::{Link, Reporter, Trouble};
use crate::ingest::batch::{Done, Fence, Item, commit_batch, prepare_batch};
use crate::ingest::{Outcome, Source};
use crate::oauth::{Grant, OAuthError};
use crate::policy::{Arrival, BacklogMessage, import_backlog};
use crate::store::{Backlog, Checkpoint, Event, Store, StoreError};

/// RFC 2177 asks clients to re-issue IDLE within 29 minutes; we do it well before.
const IDLE_WALL_CLOCK_CAP: Duration = Duration::from_secs(10 * 60);
/// Re-issue IDLE if the server has said nothing for this long.
const IDLE_SILENCE: Duration = Duration::from_secs(5 * 60);
/// The longest wait before trying again after the database failed (full, read-only).
const DATABASE_RETRY_CAP: Duration = Duration::from_secs(30);
/// Backlog messages whose flags and arrival times are read per `UID FETCH`.
const BACKLOG_METADATA_BATCH: usize = 500;
/// The most bytes of mail (by RFC822.SIZE) one batch fetches, beside `batch_size`; a message
/// larger than this goes alone. One batch commits while the next is fetched, so about twice
/// this is held at once whatever `batch_size` says (50 messages at the size limit would be
/// 1.25 GB).
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Why a mailbox session ended. Every variant leads to a reconnect after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("login as {user} refused: {reason}")]
    Login { user: String, reason: String },
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("IMAP protocol: {0}")]
    Protocol(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    OAuth(#[from] OAuthError),
}

impl FetchError {
    /// True when reconnecting cannot help until an admin acts (a revoked OAuth grant).
    pub fn needs_admin(&self) -> bool {
        matches!(self, FetchError::OAuth(err) if err.needs_admin())
    }
}

/// Watches one mailbox until cancelled.
pub struct MailboxTask {
    /// The connection settings this task was started with; a reload that changes them
    /// restarts the task.
    pub mailbox: MailboxConfig,
    /// Everything else (policy, templates, agents) is read from the configuration in force
    /// for each message.
    pub config: Live,
    pub store: Store,
    /// This task's entries in the health registry.
    pub health: Reporter,
    /// Woken after every commit that queued mail; the outbox sender holds the other end.
    pub outbox_wake: Arc<Notify>,
    /// Woken after every stored message: it may have started, met or paused a deadline.
    pub schedule_wake: Arc<Notify>,
    /// Access tokens, when the mailbox logs in with OAuth 2.0.
    pub grant: Option<Arc<Grant>>,
    /// This instance's name: the mailbox is fetched only while it holds its lease.
    pub instance: String,
}

/// Why a session ended without an error.
enum Ended {
    Cancelled,
    /// The access token the session logged in with is due for renewal: log in again.
    TokenRenewal,
}

/// What a sync does with one UID.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Fetch and ingest; `backlog` is set if the message is backlog.
    Import { uid: u32, backlog: Option<Backlog> },
    /// Backlog that `initial_import` leaves in the folder.
    Skip(u32),
}

impl Step {
    fn uid(&self) -> u32 {
        match *self {
            Step::Import { uid, .. } | Step::Skip(uid) => uid,
        }
    }
}

/// How many of `steps` one batch takes: all, unless the messages to fetch (`sizes`: UID and
/// RFC822.SIZE, sorted by UID) come to more than `budget` bytes; then those before the one
/// that would pass it, and at least the first message.
fn fitting(steps: &[Step], sizes: &[(u32, u64)], budget: u64) -> usize {
    let mut total = 0u64;
    let mut fetched = 0usize;
    for (taken, step) in steps.iter().enumerate() {
        let Step::Import { uid, .. } = *step else {
            continue;
        };
        let Ok(at) = sizes.binary_search_by_key(&uid, |(u, _)| *u) else {
            continue;
        };
        total = total.saturating_add(sizes[at].1);
        if total > budget && fetched > 0 {
            return taken;
        }
        fetched += 1;
    }
    steps.len()
}

/// A batch's write transaction, running while the next batch is fetched.
type Committing = tokio::task::JoinHandle<Result<Vec<Done>, StoreError>>;

/// Backlog messages `initial_import` leaves in the folder, gathered until the next message
/// to ingest: the checkpoint passes them in the same transaction.
#[derive(Default)]
struct Left {
    n: u32,
    last_uid: u32,
}

impl Left {
    fn pass(&mut self, uid: u32) {
        self.n = self.n.saturating_add(1);
        self.last_uid = uid;
    }

    fn take(&mut self, mailbox: &str, uidvalidity: u32) -> Option<Item> {
        let Left { n, last_uid } = std::mem::take(self);
        debug!(
            mailbox,
            n, last_uid, "backlog messages left in the folder (initial_import)"
        );
        (n > 0).then(|| Item::Left {
            mailbox: mailbox.to_string(),
            checkpoint: Checkpoint {
                uidvalidity,
                last_uid,
            },
            n,
        })
    }
}

/// How a message came to be fetched.
fn arrival(backlog: Option<Backlog>, arrived_at: Option<Timestamp>) -> Arrival {
    match backlog {
        None => Arrival::Live,
        Some(b) if b.reread => Arrival::Reread {
            arrived_at,
            last_sync: b.started_at,
        },
        Some(b) => Arrival::Backlog {
            arrived_at,
            first_start: b.started_at,
        },
    }
}

enum Wait {
    /// Something may have changed: sync again.
    Resync,
    Cancelled,
    TokenRenewal,
}

impl MailboxTask {
    /// Fetches the mailbox while this instance holds its lease (see [`crate::store::Owner`]),
    /// waits in standby while another does, until cancelled; a clean stop gives the lease
    /// up so another instance takes over at once.
    pub async fn run(self, cancel: CancellationToken) {
        let name = self.mailbox.name.clone();
        self.health.link(Link::Connecting);
        while self.wait_for_lease(&cancel).await {
            let owned = cancel.child_token();
            let keeper = tokio::spawn(lease::keep(
                self.store.clone(),
                name.clone(),
                self.instance.clone(),
                self.health.clone(),
                owned.clone(),
            ));
            self.fetch_while_owned(&owned).await;
            owned.cancel();
            let _ = keeper.await;
            if !cancel.is_cancelled() {
                warn!(mailbox = %name, instance = %self.instance, "lease lost: another instance fetches this mailbox now");
                self.health.link(Link::Standby);
            }
        }
        lease::release(&self.store, &name, &self.instance).await;
        info!(mailbox = %name, "mailbox task stopped");
    }

    /// Waits until this instance holds the mailbox's lease (true) or is cancelled (false).
    async fn wait_for_lease(&self, cancel: &CancellationToken) -> bool {
        let mut announced = None;
        while !cancel.is_cancelled() {
            self.beat(lease::WAIT * 4);
            match lease::take(&self.store, &self.mailbox.name, &self.instance).await {
                Ok(owner) if owner.instance == self.instance => {
                    self.health.owner(&owner.instance);
                    info!(mailbox = %self.mailbox.name, instance = %self.instance, "lease taken: this instance fetches the mailbox");
                    return true;
                }
                Ok(owner) => {
                    if announced.as_ref() != Some(&owner.instance) {
                        info!(mailbox = %self.mailbox.name, owner = %owner.instance, "another instance fetches this mailbox; standing by");
                        self.health.link(Link::Standby);
                        self.health.owner(&owner.instance);
                        announced = Some(owner.instance);
                    }
                }
                Err(err) => {
                    warn!(mailbox = %self.mailbox.name, error = %err, "cannot take the mailbox's lease; trying again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(lease::WAIT) => {}
                _ = cancel.cancelled() => {}
            }
        }
        false
    }

    /// The sessions of one lease: until `cancel` (shutdown, or the lease lost).
    async fn fetch_while_owned(&self, cancel: &CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let name = self.mailbox.name.clone();
        let mut reported: Option<String> = None;
        self.health.link(Link::Connecting);
        let cancel = cancel.clone();
        while !cancel.is_cancelled() {
            // Connecting, logging in, SELECT and CAPABILITY: each inside the timeout.
            self.beat(self.mailbox.timeout * 6);
            match self.session(&cancel, &mut backoff, &mut reported).await {
                Ok(Ended::Cancelled) => break,
                Ok(Ended::TokenRenewal) => {
                    info!(mailbox = %name, "access token due for renewal; logging in again");
                }
                // Stopped by a reload while failing: the registry has forgotten this
                // mailbox (or a new task owns its entry), so report nothing more.
                Err(_) if cancel.is_cancelled() => break,
                Err(err) => {
                    let database = matches!(&err, FetchError::Store(e) if e.is_transient());
                    let delay = match database {
                        // The IMAP server is fine: try again soon after the disk is freed.
                        true => backoff.next_delay().min(DATABASE_RETRY_CAP),
                        false => backoff.next_delay(),
                    };
                    self.beat(delay);
                    if self.health.failed(err.to_string()) {
                        // A live session was lost (not a failed attempt to connect): this
                        // is what the reconnect metric counts.
                        self.record_health(EventKind::MailboxDisconnected, err.to_string())
                            .await;
                    }
                    if database {
                        // Disk full, read-only, I/O, locked: nothing is quarantined, the
                        // message stays unseen on the server until the database takes it.
                        error!(mailbox = %name, error = %err, retry_in = ?delay, "the database cannot take mail; it stays on the server, unseen, until it can");
                        self.health
                            .trouble(Trouble::Database, Some(err.to_string()));
                    } else if err.needs_admin() {
                        error!(mailbox = %name, error = %err, retry_in = ?delay, "mailbox cannot log in until an admin acts; other mailboxes are not affected");
                        self.report_login_failure(&err, &mut reported).await;
                    } else {
                        warn!(mailbox = %name, error = %err, retry_in = ?delay, "mailbox session failed; reconnecting");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => break,
                    }
                }
            }
        }
    }

    /// Liveness: this task reports again within `within` (see [`Reporter::beat`]).
    fn beat(&self, within: Duration) {
        self.health.beat(within);
    }

    /// Records a login failure that needs an admin as a `mailbox.login_failed` event (the
    /// mailbox's health), once per distinct error rather than at every retry.
    async fn report_login_failure(&self, err: &FetchError, reported: &mut Option<String>) {
        let detail = err.to_string();
        if reported.as_deref() == Some(detail.as_str()) {
            return;
        }
        *reported = Some(detail.clone());
        self.record_health(EventKind::MailboxLoginFailed, detail)
            .await;
    }

    /// A mailbox event outside any message (its health); a failure to record it is logged.
    async fn record_health(&self, kind: EventKind, detail: String) {
        let name = self.mailbox.name.clone();
        let written = self
            .store
            .write(move |tx| {
                tx.record(
                    &Event {
                        mailbox: Some(&name),
                        detail,
                        ..Event::new(kind)
                    },
                    Timestamp::now(),
                )
            })
            .await;
        if let Err(err) = written {
            warn!(mailbox = %self.mailbox.name, error = %err, kind = kind.as_str(), "cannot record a mailbox event");
        }
    }

    /// One connected session: returns when cancelled, or when its access token is due for
    /// renewal.
    async fn session(
        &self,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
        reported: &mut Option<String>,
    ) -> Result<Ended, FetchError> {
        let limit = self.mailbox.timeout;
        let Opened {
            mut session,
            renew_at,
        } = open(
            &self.mailbox,
            &self.config.current().tls,
            self.grant.as_deref(),
        )
        .await?;
        let selected = timed(limit, "SELECT", session.select(&self.mailbox.folder)).await?;
        let uidvalidity = selected.uid_validity.ok_or_else(|| {
            FetchError::Protocol(format!(
                "SELECT {} returned no UIDVALIDITY",
                self.mailbox.folder
            ))
        })?;
        let capabilities = timed(limit, "CAPABILITY", session.capabilities()).await?;
        let idle = self.mailbox.idle && capabilities.has_str("IDLE");
        let can_move = capabilities.has_str("MOVE");
        self.begin_backlog_if_new(&mut session, uidvalidity, selected.uid_next)
            .await?;
        info!(mailbox = %self.mailbox.name, folder = %self.mailbox.folder, uidvalidity, idle, "mailbox connected");
        backoff.reset();
        if let Some(failure) = reported.take() {
            // Recorded before the log line, so whoever reads the log finds the event committed.
            self.record_health(
                EventKind::MailboxLoginRecovered,
                format!("after: {failure}"),
            )
            .await;
            info!(mailbox = %self.mailbox.name, "mailbox logs in again after a login failure");
        }
        // A session logged in with an access token ends when the token is due for renewal
        // (at least a second later, so a provider's zero lifetime cannot spin).
        let renewal = async {
            match renew_at.map(|at| at.duration_since(Timestamp::now())) {
                Some(left) => {
                    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                    tokio::time::sleep(left.max(Duration::from_secs(1))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(renewal);
        loop {
            self.health.link(Link::Syncing);
            self.beat(limit * 2);
            self.sync(&mut session, uidvalidity, can_move, cancel)
                .await?;
            self.health.synced();
            self.health.trouble(Trouble::Database, None);
            let wait = if cancel.is_cancelled() {
                Wait::Cancelled
            } else if idle {
                self.health.link(Link::Idle);
                // IDLE, its DONE, and a second IDLE start if news came in between.
                self.beat(IDLE_WALL_CLOCK_CAP + limit * 3);
                let (next, wait) = self.idle(session, cancel, renewal.as_mut()).await?;
                session = next;
                wait
            } else {
                self.health.link(Link::Polling);
                self.beat(self.mailbox.poll_interval);
                tokio::select! {
                    _ = tokio::time::sleep(self.mailbox.poll_interval) => Wait::Resync,
                    _ = cancel.cancelled() => Wait::Cancelled,
                    _ = renewal.as_mut() => Wait::TokenRenewal,
                }
            };
            let ended = match wait {
                Wait::Resync => continue,
                Wait::Cancelled => Ended::Cancelled,
                Wait::TokenRenewal => Ended::TokenRenewal,
            };
            let _ = timed(limit, "LOGOUT", session.logout()).await;
            return Ok(ended);
        }
    }

    /// On the first start against the folder (no checkpoint), and when the server has reset
    /// UIDVALIDITY, everything now in the folder is backlog: it is imported per
    /// `initial_import`, and quietly unless it arrived after the start (after a reset: after
    /// the last sync). Committed before anything is fetched, so a restart mid-import
    /// continues with the same boundary.
    async fn begin_backlog_if_new(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        uid_next: Option<u32>,
    ) -> Result<(), FetchError> {
        let name = self.mailbox.name.clone();
        let checkpoint = self.store.read({
            let name = name.clone();
            move |tx| tx.checkpoint(&name)
        });
        let old = match checkpoint.await? {
            Some(c) if c.uidvalidity == uidvalidity => return Ok(()),
            Some(old) => Some(old.uidvalidity),
            None => None,
        };
        let uid_next = match uid_next {
            Some(n) => n,
            // RFC 3501 requires UIDNEXT in SELECT's answer; a server without it gets the
            // highest UID in the folder plus one.
            None => {
                let all = timed(
                    self.mailbox.timeout,
                    "UID SEARCH",
                    session.uid_search("ALL"),
                )
                .await?;
                all.into_iter().max().map_or(1, |uid| uid.saturating_add(1))
            }
        };
        let rule = self.mailbox.initial_import;
        let (kind, detail) = match old {
            None => (
                EventKind::MailboxFirstStart,
                format!(
                    "UIDs below {uid_next} (uidvalidity {uidvalidity}) are backlog; initial_import = {rule}"
                ),
            ),
            Some(old) => (
                EventKind::MailboxUidvalidityChanged,
                format!(
                    "{old} -> {uidvalidity}; the folder is read again as backlog (UIDs below {uid_next}, initial_import = {rule}): messages already stored are skipped by Message-ID, mail that arrived before the last sync is imported quietly"
                ),
            ),
        };
        match old {
            None => {
                info!(mailbox = %name, uidvalidity, uid_next, initial_import = %rule, "first start on this folder: mail already in it is backlog, imported quietly")
            }
            Some(old) => {
                warn!(mailbox = %name, old, new = uidvalidity, uid_next, "UIDVALIDITY changed; re-reading the folder as backlog: duplicates are skipped by Message-ID, mail older than the last sync is imported quietly")
            }
        }
        self.store
            .write(move |tx| {
                let now = Timestamp::now();
                tx.begin_backlog(&name, uidvalidity, uid_next, now)?;
                tx.record(
                    &Event {
                        mailbox: Some(&name),
                        detail,
                        ..Event::new(kind)
                    },
                    now,
                )
            })
            .await?;
        Ok(())
    }

    /// Fetches and ingests every message above the checkpoint, in UID order: the backlog
    /// first (per `initial_import`), then live mail.
    async fn sync(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        can_move: bool,
        cancel: &CancellationToken,
    ) -> Result<(), FetchError> {
        let name = self.mailbox.name.clone();
        let limit = self.mailbox.timeout;
        let (checkpoint, backlog) = self
            .store
            .read({
                let name = name.clone();
                move |tx| Ok((tx.checkpoint(&name)?, tx.backlog(&name)?))
            })
            .await?;
        let last_uid = match checkpoint {
            Some(c) if c.uidvalidity == uidvalidity => c.last_uid,
            _ => {
                return Err(FetchError::Protocol(format!(
                    "UIDVALIDITY of {} changed during the session",
                    self.mailbox.folder
                )));
            }
        };
        let backlog = backlog.filter(|b| !b.done && b.uidvalidity == uidvalidity);
        let found = timed(
            limit,
            "UID SEARCH",
            session.uid_search(format!("UID {}:*", last_uid + 1)),
        )
        .await?;
        // `n:*` always matches the highest UID, even below n (RFC 3501): filter.
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last_uid).collect();
        uids.sort_unstable();
        let live_from = backlog.map_or(0, |b| uids.partition_point(|uid| *uid < b.uid_next));
        if let Some(backlog) = backlog {
            let steps = self
                .plan_backlog(session, &uids[..live_from], backlog)
                .await?;
            self.process(session, &steps, uidvalidity, can_move, cancel)
                .await?;
            if cancel.is_cancelled() {
                return Ok(());
            }
            self.finish_backlog().await?;
        }
        if live_from < uids.len() {
            debug!(mailbox = %name, n_new = uids.len() - live_from, "new messages");
        }
        let live: Vec<Step> = uids[live_from..]
            .iter()
            .map(|&uid| Step::Import { uid, backlog: None })
            .collect();
        self.process(session, &live, uidvalidity, can_move, cancel)
            .await
    }

    /// Which backlog messages `initial_import` takes; reads flags and arrival times first
    /// when the rule needs them.
    async fn plan_backlog(
        &self,
        session: &mut Session,
        uids: &[u32],
        backlog: Backlog,
    ) -> Result<Vec<Step>, FetchError> {
        let rule = self.mailbox.initial_import;
        let import = |uid| Step::Import {
            uid,
            backlog: Some(backlog),
        };
        match rule {
            InitialImport::All => return Ok(uids.iter().copied().map(import).collect()),
            InitialImport::Nothing => return Ok(uids.iter().copied().map(Step::Skip).collect()),
            InitialImport::Unseen | InitialImport::Since(_) | InitialImport::UnseenSince(_) => {}
        }
        let mut steps = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(BACKLOG_METADATA_BATCH) {
            let fetched = self
                .fetch_items(session, chunk, "(UID FLAGS INTERNALDATE)")
                .await?;
            for fetch in fetched {
                let Some(uid) = fetch.uid else { continue };
                let message = BacklogMessage {
                    seen: fetch.flags().any(|f| matches!(f, Flag::Seen)),
                    arrived_at: internal_date(&fetch),
                };
                steps.push(if import_backlog(rule, message, backlog.started_at) {
                    import(uid)
                } else {
                    Step::Skip(uid)
                });
            }
        }
        steps.sort_unstable_by_key(Step::uid);
        debug!(mailbox = %self.mailbox.name, n_backlog = uids.len(), n_import = steps.iter().filter(|s| matches!(s, Step::Import { .. })).count(), "backlog planned");
        Ok(steps)
    }

    /// Ingests the messages of `steps` in batches, one transaction each, passing skipped ones
    /// with the checkpoint; the next batch is fetched while the current one commits, and each
    /// batch is flagged or moved (one command per outcome) after its commit.
    async fn process(
        &self,
        session: &mut Session,
        steps: &[Step],
        uidvalidity: u32,
        can_move: bool,
        cancel: &CancellationToken,
    ) -> Result<(), FetchError> {
        let mut committing: Option<Committing> = None;
        let mut rest = steps;
        while !rest.is_empty() {
            if cancel.is_cancelled() {
                break;
            }
            self.beat(self.mailbox.timeout * 4);
            let batch = &rest[..rest.len().min(self.mailbox.batch_size as usize)];
            let config = self.config.current();
            let gathered = async {
                let (items, taken) = self.gather(session, batch, uidvalidity).await?;
                Ok::<_, FetchError>((prepare_batch(&config, items).await?, taken))
            };
            let prepared = match gathered.await {
                Ok((prepared, taken)) => {
                    rest = &rest[taken..];
                    prepared
                }
                Err(err) => {
                    // The batch before is committed (or not) whatever happens here.
                    if let Some(previous) = committing.take() {
                        self.committed(previous).await?;
                    }
                    return Err(err);
                }
            };
            if let Some(previous) = committing.take() {
                let (done, quarantined) = self.committed(previous).await?;
                self.settle(session, &done, false, can_move).await?;
                self.settle(session, &quarantined, true, can_move).await?;
            }
            let store = self.store.clone();
            let fence = Fence {
                mailbox: self.mailbox.name.clone(),
                instance: self.instance.clone(),
            };
            committing = Some(tokio::spawn(async move {
                commit_batch(&store, config, prepared, Some(fence), Timestamp::now()).await
            }));
        }
        if let Some(previous) = committing.take() {
            let (done, quarantined) = self.committed(previous).await?;
            self.settle(session, &done, false, can_move).await?;
            self.settle(session, &quarantined, true, can_move).await?;
        }
        Ok(())
    }

    /// Fetches one batch: sizes, the bodies, the headers of oversize mail; in UID order, with
    /// the backlog left in the folder between them. Takes the steps of `batch` that fit in
    /// `BATCH_BYTES` and says how many.
    async fn gather(
        &self,
        session: &mut Session,
        batch: &[Step],
        uidvalidity: u32,
    ) -> Result<(Vec<Item>, usize), FetchError> {
        let name = &self.mailbox.name;
        let wanted: Vec<u32> = batch
            .iter()
            .filter_map(|step| match step {
                Step::Import { uid, .. } => Some(*uid),
                Step::Skip(_) => None,
            })
            .collect();
        let (mut normal, oversize) = if wanted.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.sizes(session, &wanted).await?
        };
        let batch = &batch[..fitting(batch, &normal, BATCH_BYTES)];
        let last = batch.last().map_or(0, Step::uid);
        normal.retain(|(uid, _)| *uid <= last);
        let normal: Vec<u32> = normal.into_iter().map(|(uid, _)| uid).collect();
        let mut fetched = Vec::with_capacity(normal.len());
        if !normal.is_empty() {
            for fetch in self
                .fetch_items(session, &normal, "(UID INTERNALDATE BODY.PEEK[])")
                .await?
            {
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                    fetched.push((uid, internal_date(&fetch), body.to_vec()));
                }
            }
            fetched.sort_unstable_by_key(|(uid, _, _)| *uid);
        }
        let mut items = Vec::with_capacity(batch.len());
        let mut left = Left::default();
        for step in batch {
            let (uid, backlog) = match *step {
                Step::Skip(uid) => {
                    left.pass(uid);
                    continue;
                }
                Step::Import { uid, backlog } => (uid, backlog),
            };
            let oversized = oversize
                .iter()
                .find(|(u, _)| *u == uid)
                .map(|(_, size)| *size);
            // Gone between SEARCH and FETCH (expunged): nothing to store.
            let index = fetched.binary_search_by_key(&uid, |(u, _, _)| *u).ok();
            if oversized.is_none() && index.is_none() {
                continue;
            }
            items.extend(left.take(name, uidvalidity));
            let source = Source {
                mailbox: name.clone(),
                imap: Some((uidvalidity, uid)),
                arrival: arrival(backlog, index.and_then(|i| fetched[i].1)),
            };
            let (Some(index), None) = (index, oversized) else {
                let size = oversized.unwrap_or_default();
                let headers = self
                    .fetch_items(session, &[uid], "(UID BODY.PEEK[HEADER])")
                    .await?
                    .first()
                    .and_then(|f| f.header().map(<[u8]>::to_vec))
                    .unwrap_or_default();
                warn!(mailbox = %name, uid, size, "message larger than policy.max_message_size_mb; quarantining it without fetching its body");
                items.push(Item::Oversize {
                    source,
                    headers,
                    size,
                });
                continue;
            };
            let raw = std::mem::take(&mut fetched[index].2);
            items.push(Item::Message { source, raw });
        }
        items.extend(left.take(name, uidvalidity));
        Ok((items, batch.len()))
    }

    /// Waits for a batch's commit, logs each message and wakes the outbox and the scheduler;
    /// returns the UIDs stored (or skipped as duplicates) and the UIDs quarantined.
    async fn committed(&self, batch: Committing) -> Result<(Vec<u32>, Vec<u32>), FetchError> {
        let done = batch
            .await
            .map_err(|err| StoreError::Worker(err.to_string()))??;
        let mut stored = Vec::with_capacity(done.len());
        let mut quarantined = Vec::new();
        let (mut queued_any, mut stored_any) = (false, false);
        for Done {
            source,
            message_id,
            outcome,
        } in &done
        {
            let uid = source.imap.map(|(_, uid)| uid);
            log_outcome(&source.mailbox, uid, message_id.as_deref(), outcome);
            let Some(uid) = uid else { continue };
            match outcome {
                Outcome::Quarantined { .. } => quarantined.push(uid),
                Outcome::Stored { queued, .. } => {
                    queued_any |= !queued.is_empty();
                    stored_any = true;
                    stored.push(uid);
                }
                _ => stored.push(uid),
            }
        }
        if queued_any {
            self.outbox_wake.notify_one();
        }
        if stored_any {
            self.schedule_wake.notify_one();
        }
        Ok((stored, quarantined))
    }

    /// The backlog is worked through: records and logs how it was imported.
    async fn finish_backlog(&self) -> Result<(), FetchError> {
        let name = self.mailbox.name.clone();
        let rule = self.mailbox.initial_import;
        let summary = self
            .store
            .write(move |tx| {
                let now = Timestamp::now();
                let summary = tx.finish_backlog(&name, now)?;
                tx.record(
                    &Event {
                        mailbox: Some(&name),
                        detail: format!(
                            "{} imported, {} of them quietly (no acknowledgement, no deadline); {} left in the folder (initial_import = {rule})",
                            summary.imported, summary.quiet, summary.skipped
                        ),
                        ..Event::new(EventKind::MailboxInitialImportDone)
                    },
                    now,
                )?;
                Ok(summary)
            })
            .await?;
        info!(
            mailbox = %self.mailbox.name, imported = summary.imported, quiet = summary.quiet,
            skipped = summary.skipped, initial_import = %rule,
            "initial import done: {} backlog messages imported, {} of them quietly (no acknowledgement, no deadline); {} left in the folder",
            summary.imported, summary.quiet, summary.skipped
        );
        Ok(())
    }

    /// `UID FETCH` of `uids` with `query`; the time limit applies to each response, so a
    /// batch of large messages is not cut off.
    async fn fetch_items(
        &self,
        session: &mut Session,
        uids: &[u32],
        query: &str,
    ) -> Result<Vec<Fetch>, FetchError> {
        let limit = self.mailbox.timeout;
        let mut stream = timed(limit, "UID FETCH", session.uid_fetch(uid_set(uids), query)).await?;
        let mut fetched = Vec::with_capacity(uids.len());
        while let Some(item) = timed(limit, "UID FETCH response", async {
            Ok::<_, FetchError>(stream.next().await)
        })
        .await?
        {
            let fetch = item?;
            // Unsolicited FETCH responses (flag changes by others) carry other UIDs.
            if fetch
                .uid
                .is_some_and(|uid| uids.binary_search(&uid).is_ok())
            {
                fetched.push(fetch);
            }
        }
        Ok(fetched)
    }

    /// Splits `uids` by the server's RFC822.SIZE into messages to fetch and messages over
    /// `policy.max_message_size`, each with its size (0 where the server gave none).
    async fn sizes(
        &self,
        session: &mut Session,
        uids: &[u32],
    ) -> Result<(Vec<(u32, u64)>, Vec<(u32, u64)>), FetchError> {
        let max = self.config.current().policy.max_message_size;
        let mut normal = Vec::with_capacity(uids.len());
        let mut oversize = Vec::new();
        for fetch in self.fetch_items(session, uids, "(UID RFC822.SIZE)").await? {
            let Some(uid) = fetch.uid else { continue };
            match fetch.size.map(u64::from) {
                Some(size) if size > max => oversize.push((uid, size)),
                size => normal.push((uid, size.unwrap_or_default())),
            }
        }
        normal.sort_unstable();
        oversize.sort_unstable();
        Ok((normal, oversize))
    }

    /// After the commit: processed mail is moved to `processed_folder` or flagged `\Seen`;
    /// quarantined mail is moved to `quarantine_folder` or flagged `\Seen \Flagged`.
    async fn settle(
        &self,
        session: &mut Session,
        uids: &[u32],
        quarantined: bool,
        can_move: bool,
    ) -> Result<(), FetchError> {
        if uids.is_empty() {
            return Ok(());
        }
        let limit = self.mailbox.timeout;
        let set = uid_set(uids);
        let (folder, flags) = if quarantined {
            (
                &self.mailbox.quarantine_folder,
                "+FLAGS.SILENT (\\Seen \\Flagged)",
            )
        } else {
            (&self.mailbox.processed_folder, "+FLAGS.SILENT (\\Seen)")
        };
        match folder {
            Some(folder) if can_move => {
                timed(limit, "UID MOVE", session.uid_mv(&set, folder)).await?;
            }
            Some(folder) => {
                timed(limit, "UID COPY", session.uid_copy(&set, folder)).await?;
                drain(
                    limit,
                    "UID STORE",
                    session.uid_store(&set, "+FLAGS.SILENT (\\Seen \\Deleted)"),
                )
                .await?;
                drain(limit, "UID EXPUNGE", session.uid_expunge(&set)).await?;
            }
            None => drain(limit, "UID STORE", session.uid_store(&set, flags)).await?,
        }
        Ok(())
    }

    /// Waits in IDLE until the server reports something, the wall-clock cap passes, or
    /// shutdown; always ends IDLE with DONE and returns the session.
    async fn idle(
        &self,
        session: Session,
        cancel: &CancellationToken,
        renewal: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(Session, Wait), FetchError> {
        let limit = self.mailbox.timeout;
        // Mail that arrived after our UID SEARCH is announced by an untagged EXISTS in the
        // response to some other command (UID STORE, or IDLE's own start). async-imap puts
        // those in this channel, and IDLE would wait for news that already came: look here
        // before and right after entering IDLE.
        let news = session.unsolicited_responses.clone();
        let heard = || {
            let mut any = false;
            while news.try_recv().is_ok() {
                any = true;
            }
            any
        };
        if heard() {
            return Ok((session, Wait::Resync));
        }
        let mut handle = session.idle();
        timed(limit, "IDLE", handle.init()).await?;
        let wait = if heard() {
            Wait::Resync
        } else {
            let (response, _stop) = handle.wait_with_timeout(IDLE_SILENCE);
            tokio::select! {
                result = response => { result?; Wait::Resync }
                _ = tokio::time::sleep(IDLE_WALL_CLOCK_CAP) => Wait::Resync,
                _ = cancel.cancelled() => Wait::Cancelled,
                _ = renewal => Wait::TokenRenewal,
            }
        };
        let session = timed(limit, "IDLE DONE", handle.done()).await?;
        Ok((session, wait))
    }
}

/// Consumes a response stream to its end, with a timeout on the whole.
async fn drain<S, T>(
    limit: Duration,
    what: &'static str,
    stream: impl Future<Output = async_imap::error::Result<S>>,
) -> Result<(), FetchError>
where
    S: futures_util::Stream<Item = async_imap::error::Result<T>>,
{
    timed(limit, what, async {
        let stream = stream.await?;
        futures_util::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok::<(), FetchError>(())
    })
    .await
}

/// The server's INTERNALDATE (when the message reached the folder).
fn internal_date(fetch: &Fetch) -> Option<Timestamp> {
    let at = fetch.internal_date()?;
    Timestamp::from_second(at.timestamp()).ok()
}

/// One log line per ingested message (the daemon's and `deskgate ingest`'s).
pub fn log_outcome(mailbox: &str, uid: Option<u32>, message_id: Option<&str>, outcome: &Outcome) {
    let message_id = message_id.unwrap_or("");
    match outcome {
        Outcome::Stored {
            ticket,
            created,
            threading,
            role,
            acknowledgement,
            queued,
            language,
            withheld,
            limited,
            bounced,
            quiet,
            ..
        } => {
            let ticket = ticket.map(|t| t.0);
            let on = ticket.map_or("no ticket".to_string(), |t| format!("ticket {t}"));
            info!(
                mailbox, uid, message_id, ticket, created, threading = %threading.describe(),
                class = %role.as_str(), acknowledged = acknowledgement.is_some(), queued = queued.len(),
                withheld = withheld.as_deref().unwrap_or(""), quiet,
                language = language.as_ref().map(|c| c.lang.code()),
                language_source = language.as_ref().map(|c| c.source.as_str()),
                "message stored on {on}"
            );
            if let Some(limit) = limited {
                warn!(mailbox, uid, message_id, ticket, limit = %limit.describe(), "per-sender limit reached on {on}; not acknowledged");
            }
            for failure in bounced {
                warn!(mailbox, uid, message_id, ticket, failure = %failure, "bounce on {on}: a message we sent was not delivered");
            }
        }
        Outcome::Duplicate { ticket, ours } => info!(
            mailbox,
            uid,
            message_id,
            ticket = ticket.map(|t| t.0),
            ours,
            "message already stored; skipped"
        ),
        Outcome::Dropped { class } => warn!(
            mailbox,
            uid,
            message_id,
            class = %class.as_str(),
            "our own mail came back; dropped (mail loop prevented)"
        ),
        Outcome::Quarantined { id, reason } => warn!(
            mailbox,
            uid,
            message_id,
            quarantine = id.0,
            reason = %reason,
            "message quarantined as {id}"
        ),
    }
}

/// `1,2,3,7` → `1:3,7`.
fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < uids.len() {
        let start = uids[index];
        let mut end = start;
        while index + 1 < uids.len() && uids[index + 1] == end + 1 {
            index += 1;
            end = uids[index];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_fits_in_its_bytes() {
        let import = |uid| Step::Import { uid, backlog: None };
        let steps = [
            import(1),
            Step::Skip(2),
            import(3),
            import(4),
            Step::Skip(5),
        ];
        let check = |sizes: &[(u32, u64)], budget, expect| {
            assert_eq!(
                fitting(&steps, sizes, budget),
                expect,
                "{sizes:?} in {budget}"
            );
        };
        // Everything fits: the whole batch, skipped steps included.
        check(&[(1, 10), (3, 10), (4, 10)], 30, 5);
        // The third message would pass the budget: the batch ends before it.
        check(&[(1, 10), (3, 10), (4, 11)], 30, 3);
        check(&[(1, 10), (3, 25), (4, 1)], 30, 2);
        // A message larger than the budget goes alone (with the skipped step after it).
        check(&[(1, 100), (3, 1), (4, 1)], 30, 2);
        // Gone from the server (no size): nothing to fetch, nothing counted.
        check(&[(1, 30)], 30, 5);
        check(&[], 0, 5);
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }
}
