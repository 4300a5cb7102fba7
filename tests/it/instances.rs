//! Issue 19: two deskgate instances on one PostgreSQL database and one mailbox, on real
//! Dovecot, Postfix and PostgreSQL. A burst of 1,000 customer messages arrives while both
//! run; nothing is lost or doubled when they share the work, when the mailbox's owner is
//! killed five times, or when PostgreSQL restarts in the middle.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use deskgate::config::Config;
use deskgate::store::Store;

use crate::agents::add_agents;
use crate::daemon::{self, Daemon, INSTANCES, Imap, Setup, UNLIMITED_SENDERS, parsed};
use crate::deadlines::set_deadlines;
use crate::durability::{acknowledgements, burst};
use crate::harness::Lab;
use crate::ops;
use crate::postgres::{self, Postgres};

/// The burst the tests of a shared mailbox inject.
const N: usize = 1000;
/// Messages the race test delivers three ways at once.
const RACES: usize = 40;
/// The issue's bound on a takeover after the owner dies.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(15);
/// Long enough for a 2-core machine to fetch, answer and escalate the whole burst.
const SETTLE: Duration = Duration::from_secs(420);

/// Two setups (instances [`INSTANCES`]) of the support mailbox on the PostgreSQL
/// database `url`, with the two lab agents, one SMTP session each (a kill can catch one
/// send between the server's 250 and the commit), and small batches.
fn pair(lab: &Lab, pg: &Postgres, url: &str, deadlines: &str) -> [Setup; 2] {
    INSTANCES.map(|instance| {
        let setup = add_agents(Setup::new_as(
            lab,
            Imap::Implicit,
            "support",
            UNLIMITED_SENDERS,
            "batch_size = 20",
        ));
        setup.use_postgres(lab, pg, url, instance);
        setup.edit_config(|text| {
            text.replace("timeout = \"10s\"", "timeout = \"10s\"\nconnections = 1")
        });
        set_deadlines(&setup, deadlines);
        setup
    })
}

/// Appends the burst in ten parts, `between` running after each part.
async fn inject(lab: &Lab, raws: &[Vec<u8>], mut between: impl AsyncFnMut(usize)) {
    for (part, chunk) in raws.chunks(N / 10).enumerate() {
        lab.append_many("support", "INBOX", chunk).await;
        between(part).await;
    }
}

fn n_tickets(setup: &Setup) -> usize {
    if !setup.store_ready() {
        return 0;
    }
    setup.json(&["tickets"]).as_array().map_or(0, Vec::len)
}

/// Waits until each of the `n` messages has its ticket and every queued mail is sent.
async fn settle(setup: &Setup, n: usize) {
    setup
        .wait_json(&["tickets"], SETTLE, |t| {
            t.as_array().is_some_and(|l| l.len() >= n)
        })
        .await;
    setup
        .wait_json(&["outbox"], SETTLE, |o| {
            o.as_array()
                .is_some_and(|rows| rows.len() >= n && rows.iter().all(|r| r["status"] != "queued"))
        })
        .await;
}

/// The ticket number in a subject tag `[#N]`.
fn tag(subject: &str) -> Option<u64> {
    let start = subject.find("[#")? + 2;
    let end = subject[start..].find(']')? + start;
    subject[start..end].parse().ok()
}

/// The subjects of the mails in `user`'s inbox, by the ticket their subject tag names.
async fn per_ticket(lab: &Lab, user: &str) -> HashMap<u64, Vec<String>> {
    let mut subjects: HashMap<u64, Vec<String>> = HashMap::new();
    for raw in lab.fetch_all(user, "INBOX").await {
        let mail = parsed(&raw);
        let number = tag(&mail.subject).unwrap_or_else(|| panic!("no tag in {}", mail.subject));
        subjects.entry(number).or_default().push(mail.subject);
    }
    subjects
}

/// Each of tickets 1..=`n` has a mail whose subject starts with `kind` in `user`'s inbox,
/// and no mail came twice (same ticket, same subject: a notification, a warning, an
/// escalation).
async fn assert_once_each(lab: &Lab, user: &str, kind: &str, n: usize) {
    let subjects = per_ticket(lab, user).await;
    let missing = (1..=n as u64)
        .filter(|n| {
            !subjects.get(n).is_some_and(|s| {
                s.iter()
                    .any(|s| s.starts_with(kind) || s.contains(&format!("] {kind}")))
            })
        })
        .count();
    assert_eq!(missing, 0, "{user}: tickets without a mail \"{kind}…\"");
    let doubled: Vec<_> = subjects
        .values()
        .filter(|s| s.iter().collect::<HashSet<_>>().len() != s.len())
        .take(5)
        .collect();
    assert!(doubled.is_empty(), "{user}: a mail came twice: {doubled:?}");
}

/// The common verdict: one ticket per `expected` message, every message acknowledged with one acknowledgement, at
/// most `resends` delivered twice.
async fn assert_once(lab: &Lab, setup: &Setup, expected: &HashMap<String, &str>, resends: usize) {
    let n = expected.len();
    let tickets = setup.json(&["tickets"]);
    assert_eq!(
        tickets.as_array().map_or(0, Vec::len),
        n,
        "one ticket per message"
    );
    let messages: HashSet<u64> = tickets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_u64())
        .collect();
    assert_eq!(messages.len(), n, "distinct ticket numbers");
    let (answered, delivered) = acknowledgements(lab, expected).await;
    assert_eq!(answered.len(), n, "every message acknowledged");
    assert!(
        answered.values().all(|ids| ids.len() == 1),
        "one acknowledgement (Message-ID) per message"
    );
    assert!(
        delivered - n <= resends,
        "{} acknowledgements delivered twice, at most {resends} allowed",
        delivered - n
    );
}

/// How many mails this setup's daemon sent (its log's `outbox: sent` lines).
fn n_sent(setup: &Setup) -> usize {
    setup.log().matches("outbox: sent").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_mailbox_and_nothing_is_doubled() {
    let Some(lab) = Lab::start() else { return };
    let Some(pg) = postgres::shared() else { return };
    let url = pg.fresh_database();
    let setups = pair(
        &lab,
        pg,
        &url,
        r#"first_response = "30s"

[[deadlines.escalation]]
after = "0s"
to = ["lead@example.test"]"#,
    );
    let daemons: Vec<Daemon> = setups.iter().map(Setup::start).collect();
    let (raws, expected) = burst(&lab, N, "burst");
    let begun = Instant::now();
    inject(&lab, &raws, async |_| {
        tokio::time::sleep(Duration::from_millis(300)).await;
    })
    .await;
    settle(&setups[0], N).await;
    let ingested = begun.elapsed();
    // Every ticket escalates once, 30 s after its message: wait until the last has.
    setups[0]
        .wait_json(&["outbox"], SETTLE, |o| {
            o.as_array().is_some_and(|rows| {
                rows.iter().filter(|r| r["kind"] == "escalation").count() >= N
                    && rows.iter().all(|r| r["status"] != "queued")
            })
        })
        .await;
    let listed = setups[1].json(&["instances"]);
    let ids: Vec<&str> = listed["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, ["desk-a", "desk-b"], "both instances listed: {listed}");
    for daemon in daemons {
        assert!(daemon.stop().0.success());
    }

    assert_once(&lab, &setups[0], &expected, 0).await;
    for agent in ["agent1", "agent2"] {
        assert_once_each(&lab, agent, "New ticket", N).await;
    }
    assert_once_each(&lab, "lead", "Escalation", N).await;
    // Both senders took part, and between them sent each mail once: acknowledgement,
    // a notification to each agent, escalation.
    let sent = [n_sent(&setups[0]), n_sent(&setups[1])];
    assert!(
        sent[0] > 0 && sent[1] > 0,
        "both instances sent mail: {sent:?}"
    );
    let rows = setups[0].json(&["outbox"]);
    let n_rows = rows.as_array().map_or(0, Vec::len);
    assert_eq!(
        sent[0] + sent[1],
        n_rows,
        "each outbox row sent once: {sent:?}"
    );
    eprintln!(
        "two instances: {N} messages ticketed and acknowledged {:.1} s after the first arrived; {} mails sent by desk-a, {} by desk-b",
        ingested.as_secs_f64(),
        sent[0],
        sent[1]
    );
}

/// Kills whichever instance owns the mailbox, waits for the other to take it, restarts the
/// killed one; the takeover time.
async fn kill_owner(setups: &[Setup; 2], daemons: &mut [Option<Daemon>; 2]) -> Duration {
    let (index, took) = daemon::kill_owner(setups, daemons, "support", TAKEOVER_LIMIT).await;
    daemons[index] = Some(setups[index].start());
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_killed_five_times_mid_burst_is_replaced_within_15_s() {
    let Some(lab) = Lab::start() else { return };
    let Some(pg) = postgres::shared() else { return };
    let url = pg.fresh_database();
    let setups = pair(&lab, pg, &url, "first_response = \"24h\"");
    let mut daemons = [Some(setups[0].start()), Some(setups[1].start())];
    let (raws, expected) = burst(&lab, N, "burst");
    let mut takeovers = Vec::new();
    inject(&lab, &raws, async |part| {
        // Kill after parts 1, 3, 5, 7, 9, once the owner has started on them.
        if part % 2 == 1 {
            let reached = (part * N / 10).saturating_sub(50);
            let waiting = Instant::now();
            while n_tickets(&setups[0]) < reached && waiting.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            takeovers.push(kill_owner(&setups, &mut daemons).await);
        }
    })
    .await;
    settle(&setups[0], N).await;
    for daemon in daemons.into_iter().flatten() {
        assert!(daemon.stop().0.success());
    }
    assert_eq!(takeovers.len(), 5);
    // One SMTP session per instance: a kill can catch one send between 250 and commit.
    assert_once(&lab, &setups[0], &expected, takeovers.len()).await;
    let mut sorted = takeovers.clone();
    sorted.sort();
    eprintln!(
        "failover after SIGKILL: median {:.1} s, max {:.1} s ({takeovers:?})",
        sorted[2].as_secs_f64(),
        sorted[4].as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_mid_burst_both_reconnect_and_nothing_is_doubled() {
    let Some(lab) = Lab::start() else { return };
    // A server of its own: the restart must not disturb other tests.
    let Some(pg) = Postgres::start() else { return };
    let url = pg.fresh_database();
    let setups = pair(&lab, &pg, &url, "first_response = \"24h\"");
    let daemons = [setups[0].start(), setups[1].start()];
    let (raws, expected) = burst(&lab, N, "burst");
    inject(&lab, &raws, async |part| {
        if part == 4 {
            pg.restart();
        }
    })
    .await;
    settle(&setups[0], N).await;
    for daemon in daemons {
        assert!(daemon.stop().0.success());
    }
    // A commit cut off by the restart may have happened or not: one send per instance may
    // be repeated.
    assert_once(&lab, &setups[0], &expected, 2).await;
}

/// The same message reaching both instances at the same moment, three ways: a push delivery
/// to each (`deskgate ingest`, which no lease guards) and the mailbox's owner fetching it over
/// IMAP. The database's uniqueness makes one ticket of it and one acknowledgement.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_reaching_both_instances_at_once_is_one_ticket() {
    let Some(lab) = Lab::start() else { return };
    let Some(pg) = postgres::shared() else { return };
    let url = pg.fresh_database();
    let setups = pair(&lab, pg, &url, "first_response = \"24h\"");
    let daemons: Vec<Daemon> = setups.iter().map(Setup::start).collect();
    let (raws, expected) = burst(&lab, RACES, "race");
    for raw in &raws {
        let pushes: Vec<_> = setups
            .iter()
            .map(|setup| {
                let (config, raw) = (setup.config.clone(), raw.clone());
                std::thread::spawn(move || ops::ingest(&config, "support", &raw))
            })
            .collect();
        lab.append("support", "INBOX", raw).await;
        for push in pushes {
            let (code, stderr) = push.join().expect("the push delivery's thread");
            assert_eq!(code, 0, "deskgate ingest: {stderr}");
        }
    }
    settle(&setups[0], RACES).await;
    for daemon in daemons {
        assert!(daemon.stop().0.success());
    }
    assert_once(&lab, &setups[0], &expected, 0).await;
    for agent in ["agent1", "agent2"] {
        assert_once_each(&lab, agent, "New ticket", RACES).await;
    }
    // Each of the three deliveries was taken in: one stored, two recognised as duplicates.
    for ticket in 1..=RACES {
        let view = setups[1].json(&["ticket", &ticket.to_string()]);
        let duplicates = view["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "message.duplicate")
            .count();
        assert_eq!(duplicates, 2, "ticket {ticket}: {view:#}");
    }
}

/// A TCP relay to PostgreSQL that can stop carrying bytes while keeping every connection
/// open, as a network partition does (no reset, no FIN: the client hears nothing).
struct Partition {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    async fn to(target: u16) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let (open, _) = tokio::sync::watch::channel(true);
        let carried = open.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let ((client_in, client_out), (server_in, server_out)) =
                    (client.into_split(), server.into_split());
                tokio::spawn(carry(client_in, server_out, carried.subscribe()));
                tokio::spawn(carry(server_in, client_out, carried.subscribe()));
            }
        });
        Partition { port, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn heal(&self) {
        self.open.send_replace(true);
    }
}

/// Copies `from` to `to` while the relay is open; while it is cut, what was read is held.
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if open.wait_for(|open| *open).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Opens a write transaction on `setup`'s store, cuts `partition` while it is open, then
/// lets it run its next statement, which waits for the relay. The thread returns whether
/// that transaction failed (it must: the server ends a session whose transaction waits).
fn hold_write_lock_across(setup: &Setup, partition: &Partition) -> std::thread::JoinHandle<bool> {
    let config = Config::load(&setup.config).expect("the test's config");
    let (entered, in_transaction) = std::sync::mpsc::channel();
    let (go, cut) = std::sync::mpsc::channel::<()>();
    let stuck = std::thread::spawn(move || {
        let store = Store::connect(&config.database).expect("the store through the relay");
        store
            .write_blocking(|tx| {
                let _ = entered.send(());
                let _ = cut.recv();
                tx.instances(0)
            })
            .is_err()
    });
    in_transaction.recv().expect("a write transaction open");
    partition.cut();
    go.send(()).expect("the transaction's thread waits");
    stuck
}

/// The owner cut off from the database by a partition (its connections open and silent):
/// it stops fetching, the other instance takes the mailbox within 15 s and handles the mail
/// that arrives meanwhile; once the partition heals, the first instance stands by and
/// nothing is handled twice.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_cut_off_from_the_database_is_replaced_and_stands_by_after() {
    let Some(lab) = Lab::start() else { return };
    let Some(pg) = postgres::shared() else { return };
    let url = pg.fresh_database();
    let setups = pair(&lab, pg, &url, "first_response = \"24h\"");
    let partition = Partition::to(pg.port).await;
    setups[0].edit_config(|text| {
        text.replace(
            &format!("127.0.0.1:{}/", pg.port),
            &format!("127.0.0.1:{}/", partition.port),
        )
    });
    let (raws, expected) = burst(&lab, 3 * RACES, "partition");
    let a = setups[0].start();
    setups[1]
        .wait_owner("support", INSTANCES[0], TAKEOVER_LIMIT)
        .await;
    let b = setups[1].start();
    lab.append_many("support", "INBOX", &raws[..RACES]).await;
    settle(&setups[1], RACES).await;

    // The cut catches a write transaction of the first instance's side open, as it may
    // catch the owner's batch commit: it holds the write lock every instance takes turns on.
    let stuck = hold_write_lock_across(&setups[0], &partition);
    lab.append_many("support", "INBOX", &raws[RACES..2 * RACES])
        .await;
    let took = setups[1]
        .wait_owner("support", INSTANCES[1], TAKEOVER_LIMIT)
        .await;
    // The cut-off owner gave up fetching on its own, without an answer from the database.
    setups[0]
        .wait_log("did not answer within", 1, Duration::from_secs(5))
        .await;
    settle(&setups[1], 2 * RACES).await;
    partition.heal();
    assert!(
        stuck.join().expect("the cut-off transaction's thread"),
        "the server ended the cut-off transaction's session"
    );
    // The first instance, answering again, finds the lease taken and stands by.
    setups[0].wait_log("standing by", 1, SETTLE).await;
    lab.append_many("support", "INBOX", &raws[2 * RACES..])
        .await;
    settle(&setups[1], 3 * RACES).await;
    assert_eq!(
        setups[1].lease_owner("support").as_deref(),
        Some(INSTANCES[1]),
        "the mailbox stays with the instance that took it over"
    );
    for daemon in [a, b] {
        assert!(daemon.stop().0.success());
    }
    assert_once(&lab, &setups[1], &expected, 0).await;
    for agent in ["agent1", "agent2"] {
        assert_once_each(&lab, agent, "New ticket", 3 * RACES).await;
    }
    eprintln!(
        "partition: the other instance took the mailbox over {:.1} s after the cut",
        took.as_secs_f64()
    );
}
