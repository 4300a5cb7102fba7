//! Instances sharing one database: who runs, who fetches which mailbox.
//!
//! **Architecture Invariant:** a mailbox has at most one owner whose lease has not expired.
//! Leases are taken, renewed and checked against the database's clock (not each machine's),
//! inside write transactions, which all instances take in turn; the transaction that
//! commits a fetched batch checks its lease first ([`Tx::check_owner`]), so an instance that
//! lost its mailbox (paused, cut off) cannot commit mail the new owner also fetches.

use super::Tx;
use crate::store::StoreError;
use crate::store::sql::params;

/// A running instance, as `deskgate instances` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: i64,
    pub seen_at: i64,
    /// The mailboxes whose lease it holds.
    pub mailboxes: Vec<String>,
}

/// Who holds a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    pub mailbox: String,
    pub instance: String,
    pub since: i64,
    pub expires_at: i64,
}

impl Tx<'_> {
    /// The database's clock, in milliseconds since the epoch: every instance's leases are
    /// measured by it, so clocks that differ between machines do not matter.
    pub fn clock(&self) -> Result<i64, StoreError> {
        self.query_row(
            self.pick(
                "SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)",
                "SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
            ),
            [],
            |r| r.get(0),
        )
    }

    /// Takes or renews `mailbox` for `instance` for `ttl_ms`, unless another instance holds
    /// an unexpired lease; returns who holds it afterwards.
    pub fn lease_mailbox(
        &self,
        mailbox: &str,
        instance: &str,
        ttl_ms: i64,
    ) -> Result<Owner, StoreError> {
        let now = self.clock()?;
        self.execute(
            "INSERT INTO mailbox_owners (mailbox, instance, since, expires_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mailbox) DO UPDATE SET
                 since = CASE WHEN mailbox_owners.instance = excluded.instance
                              THEN mailbox_owners.since ELSE excluded.since END,
                 instance = excluded.instance,
                 expires_at = excluded.expires_at
             WHERE mailbox_owners.instance = excluded.instance
                OR mailbox_owners.expires_at < excluded.since",
            params![mailbox, instance, now, now + ttl_ms],
        )?;
        self.query_row(
            "SELECT mailbox, instance, since, expires_at FROM mailbox_owners WHERE mailbox = ?1",
            [mailbox],
            owner,
        )
    }

    /// Gives `mailbox` up (a clean stop), so another instance takes it at once.
    pub fn release_mailbox(&self, mailbox: &str, instance: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM mailbox_owners WHERE mailbox = ?1 AND instance = ?2",
            params![mailbox, instance],
        )?;
        Ok(())
    }

    /// Fails with [`StoreError::NotOwner`] unless `instance` holds an unexpired lease on
    /// `mailbox`.
    pub fn check_owner(&self, mailbox: &str, instance: &str) -> Result<(), StoreError> {
        let now = self.clock()?;
        let held: i64 = self.query_row(
            "SELECT count(*) FROM mailbox_owners
             WHERE mailbox = ?1 AND instance = ?2 AND expires_at >= ?3",
            params![mailbox, instance, now],
            |r| r.get(0),
        )?;
        if held > 0 {
            Ok(())
        } else {
            Err(StoreError::NotOwner {
                mailbox: mailbox.to_string(),
                instance: instance.to_string(),
            })
        }
    }

    /// Every mailbox lease, expired ones included.
    pub fn owners(&self) -> Result<Vec<Owner>, StoreError> {
        self.prepare(
            "SELECT mailbox, instance, since, expires_at FROM mailbox_owners ORDER BY mailbox",
        )?
        .query_map([], owner)?
        .collect()
    }

    /// Records that `id` runs (first call) or still runs (later ones).
    pub fn instance_seen(
        &self,
        id: &str,
        host: &str,
        pid: u32,
        version: &str,
        started_at: i64,
    ) -> Result<(), StoreError> {
        let now = self.clock()?;
        self.execute(
            "INSERT INTO instances (id, host, pid, version, started_at, seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                 version = excluded.version, started_at = excluded.started_at,
                 seen_at = excluded.seen_at",
            params![id, host, pid, version, started_at, now],
        )?;
        Ok(())
    }

    /// A clean stop: the instance is no longer listed.
    pub fn instance_gone(&self, id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM instances WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Instances seen within `fresh_ms` of the database's clock, with their mailboxes.
    pub fn instances(&self, fresh_ms: i64) -> Result<Vec<InstanceView>, StoreError> {
        let now = self.clock()?;
        let owners = self.owners()?;
        self.prepare(
            "SELECT id, host, pid, version, started_at, seen_at FROM instances
             WHERE seen_at >= ?1 ORDER BY id",
        )?
        .query_map([now - fresh_ms], |r| {
            let id: String = r.get(0)?;
            let mailboxes = owners
                .iter()
                .filter(|o| o.instance == id && o.expires_at >= now)
                .map(|o| o.mailbox.clone())
                .collect();
            Ok(InstanceView {
                host: r.get(1)?,
                pid: r.get(2)?,
                version: r.get(3)?,
                started_at: r.get(4)?,
                seen_at: r.get(5)?,
                mailboxes,
                id,
            })
        })?
        .collect()
    }
}

fn owner(r: &crate::store::sql::Row<'_>) -> Result<Owner, StoreError> {
    Ok(Owner {
        mailbox: r.get(0)?,
        instance: r.get(1)?,
        since: r.get(2)?,
        expires_at: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use crate::model::Person;
    use crate::store::{NewMessage, NewOutbox, Store, StoreError};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("deskgate.db")).expect("store");
        (dir, store)
    }

    #[test]
    fn a_mailbox_has_one_owner_until_its_lease_runs_out() {
        let (_dir, store) = store();
        let lease = |who: &str, ttl: i64| {
            store
                .write_blocking(|tx| tx.lease_mailbox("support", who, ttl))
                .expect("lease")
                .instance
        };
        assert_eq!(lease("desk-a", 60_000), "desk-a");
        assert_eq!(lease("desk-b", 60_000), "desk-a", "held: B stands by");
        assert_eq!(lease("desk-a", 60_000), "desk-a", "the owner renews");
        let fence = |who: &str| store.write_blocking(|tx| tx.check_owner("support", who));
        assert!(fence("desk-a").is_ok());
        assert!(matches!(fence("desk-b"), Err(StoreError::NotOwner { .. })));

        // A renews for 50 ms only, then stops (killed): B takes over once it ran out, and
        // A's late commit is refused.
        assert_eq!(lease("desk-a", 50), "desk-a");
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert_eq!(lease("desk-b", 60_000), "desk-b");
        assert!(matches!(fence("desk-a"), Err(StoreError::NotOwner { .. })));
        assert_eq!(lease("desk-a", 60_000), "desk-b");

        // A clean stop gives it up at once.
        store
            .write_blocking(|tx| tx.release_mailbox("support", "desk-b"))
            .expect("release");
        assert_eq!(lease("desk-a", 60_000), "desk-a");
        let owners = store.read_blocking(|tx| tx.owners()).expect("owners");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].instance, "desk-a");
    }

    #[test]
    fn instances_are_listed_while_they_beat_with_their_mailboxes() {
        let (_dir, store) = store();
        store
            .write_blocking(|tx| {
                tx.instance_seen("desk-a", "host-a", 10, "0.1.0", 1)?;
                tx.instance_seen("desk-b", "host-b", 20, "0.1.0", 2)?;
                tx.lease_mailbox("support", "desk-b", 60_000)?;
                tx.instance_gone("desk-a")
            })
            .expect("write");
        let listed = store
            .read_blocking(|tx| tx.instances(30_000))
            .expect("list");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, "desk-b");
        assert_eq!(listed[0].mailboxes, ["support"]);
    }

    fn queue(store: &Store, n: usize) {
        store
            .write_blocking(|tx| {
                let now = Timestamp::now();
                let from = Person::new("support@example.com", None);
                for i in 0..n {
                    let id = format!("out{i}@example.com");
                    let row = tx.insert_message(&NewMessage {
                        ticket: None,
                        outbound: true,
                        dedupe_key: &format!("mid:{id}"),
                        message_id: Some(&id),
                        source: None,
                        from: Some(&from),
                        subject: "s",
                        sent_date: Some(now),
                        received_at: now,
                        in_reply_to: &[],
                        references: &[],
                        class: "ack",
                        defects: "",
                        body_text: "b",
                        attachments: &[],
                        raw: b"Subject: s\r\n\r\nb\r\n",
                        internal: false,
                        agent: None,
                    })?;
                    tx.enqueue(&NewOutbox {
                        ticket: None,
                        message: row,
                        kind: "ack",
                        envelope_from: "support@example.com",
                        recipients: &["c@example.org".to_string()],
                        now,
                    })?;
                }
                Ok(())
            })
            .expect("queue");
    }

    #[test]
    fn outbox_rows_are_claimed_by_one_instance_until_the_claim_runs_out() {
        let (_dir, store) = store();
        queue(&store, 5);
        let claim = |who: &str, limit: u32, ms: i64| {
            let who = who.to_string();
            store
                .write_blocking(|tx| tx.outbox_claim(Timestamp::now(), limit, &who, ms))
                .expect("claim")
                .into_iter()
                .map(|r| r.id.0)
                .collect::<Vec<_>>()
        };
        let a = claim("desk-a", 3, 60_000);
        let b = claim("desk-b", 10, 60_000);
        assert_eq!(a.len(), 3);
        assert_eq!(b.len(), 2, "B gets only what A did not claim");
        assert!(a.iter().all(|id| !b.contains(id)));
        assert!(claim("desk-b", 10, 60_000).is_empty(), "nothing left");

        // A sends one, then dies: its other claims return after they run out, or at once
        // when A starts again and releases them.
        store
            .write_blocking(|tx| tx.outbox_sent(crate::model::OutboxId(a[0]), Timestamp::now()))
            .expect("sent");
        let released = store
            .write_blocking(|tx| tx.outbox_release("desk-a"))
            .expect("release");
        assert_eq!(released, 2, "the sent row is not claimed any more");
        let again = claim("desk-b", 10, 60_000);
        assert_eq!(again, a[1..].to_vec());

        // A claim that ran out is taken by anyone.
        store
            .write_blocking(|tx| tx.outbox_release("desk-b"))
            .expect("release");
        assert_eq!(claim("desk-a", 10, 30).len(), 4);
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert_eq!(claim("desk-b", 10, 60_000).len(), 4);
    }
}
