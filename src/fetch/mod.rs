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

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use connect::{Session, connect, timed};

use crate::config::{Config, MailboxConfig};
use crate::ingest::{Outcome, Source, ingest, quarantine_failed, quarantine_oversize};
use crate::store::{Checkpoint, Event, Store, StoreError};

/// RFC 2177 asks clients to re-issue IDLE within 29 minutes; we do it well before.
const IDLE_WALL_CLOCK_CAP: Duration = Duration::from_secs(10 * 60);
/// Re-issue IDLE if the server has said nothing for this long.
const IDLE_SILENCE: Duration = Duration::from_secs(5 * 60);

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
}

/// Watches one mailbox until cancelled.
pub struct MailboxTask {
    pub mailbox: MailboxConfig,
    pub config: Arc<Config>,
    pub store: Store,
    /// Woken after every commit that queued mail; the outbox sender holds the other end.
    pub outbox_wake: Arc<Notify>,
}

/// A message of a batch: its bytes, or only its size when it is over the limit.
enum Fetched {
    Whole(Vec<u8>),
    Oversize(u64),
}

enum Wait {
    /// Something may have changed: sync again.
    Resync,
    Cancelled,
}

impl MailboxTask {
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let name = self.mailbox.name.clone();
        while !cancel.is_cancelled() {
            match self.session(&cancel, &mut backoff).await {
                Ok(()) => break,
                Err(err) => {
                    let delay = backoff.next_delay();
                    warn!(mailbox = %name, error = %err, retry_in = ?delay, "mailbox session failed; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => break,
                    }
                }
            }
        }
        info!(mailbox = %name, "mailbox task stopped");
    }

    /// One connected session: returns `Ok` only when cancelled.
    async fn session(
        &self,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), FetchError> {
        let limit = self.mailbox.timeout;
        let mut session = connect(&self.mailbox, &self.config.tls).await?;
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
        info!(mailbox = %self.mailbox.name, folder = %self.mailbox.folder, uidvalidity, idle, "mailbox connected");
        backoff.reset();
        loop {
            self.sync(&mut session, uidvalidity, can_move, cancel)
                .await?;
            let wait = if cancel.is_cancelled() {
                Wait::Cancelled
            } else if idle {
                let (next, wait) = self.idle(session, cancel).await?;
                session = next;
                wait
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(self.mailbox.poll_interval) => Wait::Resync,
                    _ = cancel.cancelled() => Wait::Cancelled,
                }
            };
            if let Wait::Cancelled = wait {
                let _ = timed(limit, "LOGOUT", session.logout()).await;
                return Ok(());
            }
        }
    }

    /// Fetches and ingests every message above the checkpoint, in UID order.
    async fn sync(
        &self,
        session: &mut Session,
        uidvalidity: u32,
        can_move: bool,
        cancel: &CancellationToken,
    ) -> Result<(), FetchError> {
        let name = self.mailbox.name.clone();
        let limit = self.mailbox.timeout;
        let last_uid = self.last_uid(uidvalidity).await?;
        let found = timed(
            limit,
            "UID SEARCH",
            session.uid_search(format!("UID {}:*", last_uid + 1)),
        )
        .await?;
        // `n:*` always matches the highest UID, even below n (RFC 3501): filter.
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last_uid).collect();
        uids.sort_unstable();
        if uids.is_empty() {
            return Ok(());
        }
        debug!(mailbox = %name, n_new = uids.len(), "new messages");
        for batch in uids.chunks(self.mailbox.batch_size as usize) {
            let mut done = Vec::with_capacity(batch.len());
            let mut quarantined = Vec::new();
            let (normal, oversize) = self.sizes(session, batch).await?;
            // Handled strictly in UID order: the checkpoint must never pass a UID that is
            // not committed yet.
            let mut items: Vec<(u32, Fetched)> = oversize
                .into_iter()
                .map(|(uid, size)| (uid, Fetched::Oversize(size)))
                .collect();
            for (uid, raw) in self.fetch_items(session, &normal, "BODY.PEEK[]").await? {
                items.push((uid, Fetched::Whole(raw)));
            }
            items.sort_unstable_by_key(|(uid, _)| *uid);
            for (uid, item) in items {
                if cancel.is_cancelled() {
                    break;
                }
                let source = Source {
                    mailbox: name.clone(),
                    uidvalidity,
                    uid,
                };
                let raw = match item {
                    Fetched::Whole(raw) => raw,
                    Fetched::Oversize(size) => {
                        let headers = self
                            .fetch_items(session, &[uid], "BODY.PEEK[HEADER]")
                            .await?
                            .into_iter()
                            .next()
                            .map(|(_, h)| h)
                            .unwrap_or_default();
                        let now = Timestamp::now();
                        let id = quarantine_oversize(
                            &self.store,
                            &self.config,
                            source,
                            headers,
                            size,
                            now,
                        )
                        .await?;
                        warn!(mailbox = %name, uid, size, quarantine = id.0, "message larger than policy.max_message_size_mb; quarantined without fetching its body");
                        quarantined.push(uid);
                        continue;
                    }
                };
                match self.ingest_one(source, raw).await? {
                    Outcome::Quarantined { .. } => quarantined.push(uid),
                    Outcome::Stored { queued, .. } if !queued.is_empty() => {
                        self.outbox_wake.notify_one();
                        done.push(uid);
                    }
                    _ => done.push(uid),
                }
            }
            self.settle(session, &done, false, can_move).await?;
            self.settle(session, &quarantined, true, can_move).await?;
            if cancel.is_cancelled() {
                break;
            }
        }
        Ok(())
    }

    /// Ingests one message. A failure that is not the database's (a bug, data the store
    /// refuses) would recur on every retry and block the mailbox, so the message is
    /// quarantined with the error instead and the mailbox keeps flowing.
    async fn ingest_one(&self, source: Source, raw: Vec<u8>) -> Result<Outcome, FetchError> {
        let name = source.mailbox.clone();
        let uid = source.uid;
        let now = Timestamp::now();
        let err = match ingest(&self.store, &self.config, source.clone(), raw.clone(), now).await {
            Ok((outcome, parsed)) => {
                log_outcome(&name, uid, parsed.message_id.as_deref(), &outcome);
                return Ok(outcome);
            }
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => err,
        };
        let reason = format!("storing it failed: {err}");
        let id =
            quarantine_failed(&self.store, &self.config, source, raw, reason.clone(), now).await?;
        warn!(mailbox = %name, uid, quarantine = id.0, error = %err, "message could not be stored; quarantined");
        Ok(Outcome::Quarantined { id, reason })
    }

    /// The highest committed UID for this UIDVALIDITY; a new UIDVALIDITY starts over at 0
    /// (dedupe by Message-ID keeps that from duplicating tickets).
    async fn last_uid(&self, uidvalidity: u32) -> Result<u32, FetchError> {
        let name = self.mailbox.name.clone();
        let checkpoint = self.store.read({
            let name = name.clone();
            move |tx| tx.checkpoint(&name)
        });
        match checkpoint.await? {
            Some(c) if c.uidvalidity == uidvalidity => Ok(c.last_uid),
            None => Ok(0),
            Some(old) => {
                warn!(mailbox = %name, old = old.uidvalidity, new = uidvalidity, "UIDVALIDITY changed; re-reading the folder, duplicates are skipped by Message-ID");
                self.store
                    .write(move |tx| {
                        let now = Timestamp::now();
                        tx.set_checkpoint(
                            &name,
                            Checkpoint {
                                uidvalidity,
                                last_uid: 0,
                            },
                            now,
                        )?;
                        tx.record(
                            &Event {
                                kind: "mailbox.uidvalidity_changed",
                                mailbox: Some(&name),
                                detail: format!("{} -> {uidvalidity}", old.uidvalidity),
                                ..Event::default()
                            },
                            now,
                        )
                    })
                    .await?;
                Ok(0)
            }
        }
    }

    /// Splits `batch` by the server's RFC822.SIZE into messages to fetch and messages over
    /// `policy.max_message_size` (with their size).
    async fn sizes(
        &self,
        session: &mut Session,
        batch: &[u32],
    ) -> Result<(Vec<u32>, Vec<(u32, u64)>), FetchError> {
        let max = self.config.policy.max_message_size;
        let limit = self.mailbox.timeout;
        let mut normal = Vec::with_capacity(batch.len());
        let mut oversize = Vec::new();
        let mut stream = timed(
            limit,
            "UID FETCH RFC822.SIZE",
            session.uid_fetch(uid_set(batch), "(UID RFC822.SIZE)"),
        )
        .await?;
        while let Some(item) = timed(limit, "UID FETCH response", async {
            Ok::<_, FetchError>(stream.next().await)
        })
        .await?
        {
            let fetch = item?;
            let Some(uid) = fetch.uid.filter(|uid| batch.binary_search(uid).is_ok()) else {
                continue;
            };
            match fetch.size.map(u64::from) {
                Some(size) if size > max => oversize.push((uid, size)),
                _ => normal.push(uid),
            }
        }
        normal.sort_unstable();
        oversize.sort_unstable();
        Ok((normal, oversize))
    }

    /// `UID FETCH` of one data item (`BODY.PEEK[]` or `BODY.PEEK[HEADER]`) for `uids`, in
    /// UID order.
    async fn fetch_items(
        &self,
        session: &mut Session,
        uids: &[u32],
        item: &str,
    ) -> Result<Vec<(u32, Vec<u8>)>, FetchError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self.mailbox.timeout;
        let mut stream = timed(
            limit,
            "UID FETCH",
            session.uid_fetch(uid_set(uids), format!("(UID {item})")),
        )
        .await?;
        let headers_only = item.contains("HEADER");
        let mut fetched = Vec::with_capacity(uids.len());
        // The limit applies to each response, so a batch of large messages is not cut off.
        while let Some(response) = timed(limit, "UID FETCH response", async {
            Ok::<_, FetchError>(stream.next().await)
        })
        .await?
        {
            let fetch = response?;
            let data = if headers_only {
                fetch.header()
            } else {
                fetch.body()
            };
            if let (Some(uid), Some(data)) = (fetch.uid, data)
                && uids.binary_search(&uid).is_ok()
            {
                fetched.push((uid, data.to_vec()));
            }
        }
        fetched.sort_unstable_by_key(|(uid, _)| *uid);
        Ok(fetched)
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

fn log_outcome(mailbox: &str, uid: u32, message_id: Option<&str>, outcome: &Outcome) {
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
            ..
        } => {
            let ticket = ticket.map(|t| t.0);
            let on = ticket.map_or("no ticket".to_string(), |t| format!("ticket {t}"));
            info!(
                mailbox, uid, message_id, ticket, created, threading = %threading.describe(),
                class = %role.as_str(), acknowledged = acknowledgement.is_some(), queued = queued.len(),
                withheld = withheld.as_deref().unwrap_or(""),
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

/// Capped exponential backoff with jitter (each delay is 50-100 % of the nominal one).
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let nominal = self
            .first
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(rand::random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4) && delays[3] <= Duration::from_secs(8));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(delays[9] >= Duration::from_secs(30));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }
}
