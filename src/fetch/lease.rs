//! A mailbox's lease: which instance on a shared database fetches it.
//!
//! The owner renews its lease every [`RENEW`]; one that stops renewing (killed, cut off from
//! the database) loses it after [`TTL`], and an instance in standby, asking every [`WAIT`],
//! takes it over: within `TTL + WAIT` (12 s) of the owner's last renewal. The owner stops
//! fetching as soon as it cannot show a renewal younger than `TTL - RENEW`, before anyone can
//! take over; the commit of every batch checks the lease again ([`crate::store::Tx::check_owner`]).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::health::Reporter;
use crate::store::{Owner, Store, StoreError};

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(10);
/// How often the owner renews.
pub const RENEW: Duration = Duration::from_secs(3);
/// How often an instance in standby asks for the lease.
pub const WAIT: Duration = Duration::from_secs(2);

/// Takes (or renews) the lease if nobody else holds it; who holds it afterwards.
pub async fn take(store: &Store, mailbox: &str, instance: &str) -> Result<Owner, StoreError> {
    let (mailbox, instance) = (mailbox.to_string(), instance.to_string());
    let ttl = TTL.as_millis() as i64;
    store
        .write(move |tx| tx.lease_mailbox(&mailbox, &instance, ttl))
        .await
}

/// Renews the lease until `owned` is cancelled; cancels `owned` itself when the lease is
/// lost (another instance holds it) or cannot be renewed in time.
pub async fn keep(
    store: Store,
    mailbox: String,
    instance: String,
    health: Reporter,
    owned: CancellationToken,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = owned.cancelled() => return,
        }
        // A database that stops answering (a partition) must not keep this loop waiting
        // past the point where it has to stop fetching.
        let left = (TTL - RENEW).saturating_sub(renewed.elapsed());
        let taken = tokio::time::timeout(left, take(&store, &mailbox, &instance))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Worker(format!(
                    "the database did not answer within {} s",
                    left.as_secs()
                )))
            });
        match taken {
            Ok(owner) if owner.instance == instance => {
                renewed = Instant::now();
                debug!(mailbox = %mailbox, "lease renewed");
            }
            Ok(owner) => {
                health.owner(&owner.instance);
                owned.cancel();
                return;
            }
            Err(err) => {
                warn!(mailbox = %mailbox, error = %err, "cannot renew the mailbox's lease");
                if renewed.elapsed() >= TTL - RENEW {
                    // Another instance may take the mailbox soon: stop before it can.
                    owned.cancel();
                    return;
                }
            }
        }
    }
}

/// Gives the lease up (a clean stop); a failure only delays the takeover by [`TTL`].
pub async fn release(store: &Store, mailbox: &str, instance: &str) {
    let (name, me) = (mailbox.to_string(), instance.to_string());
    if let Err(err) = store.write(move |tx| tx.release_mailbox(&name, &me)).await {
        warn!(mailbox = %mailbox, error = %err, "cannot give the mailbox's lease up; another instance takes it when it runs out");
    }
}
