//! `deskgate migrate-store`: a desk moves from SQLite to PostgreSQL without re-acknowledging
//! anyone; a target with rows, a SQLite target and a missing source are refused.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agents::{answer, with_agents};
use crate::cli::{VALID, deskgate};
use crate::daemon::{Setup, parsed};
use crate::deadlines::set_deadlines;
use crate::harness::{Lab, message};
use crate::postgres::{self, Postgres};

const WAIT: Duration = Duration::from_secs(30);

/// The lab users whose mail the test counts before and after the move.
const MAILBOXES: [&str; 8] = [
    "customer1",
    "customer2",
    "customer3",
    "customer4",
    "agent1",
    "agent2",
    "agent3",
    "lead",
];

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// `database = URL?sslmode=require` with the server's password file, and a `ca_file` that
/// trusts `extra_ca` (the lab's CA) and the server's certificate.
fn postgres_database(pg: &Postgres, url: &str, dir: &Path, extra_ca: Option<&Path>) -> String {
    let cas = dir.join("cas.pem");
    let mut pem = std::fs::read(&pg.ca_file).expect("read PostgreSQL CA");
    if let Some(extra) = extra_ca {
        pem.extend(std::fs::read(extra).expect("read CA"));
    }
    std::fs::write(&cas, pem).expect("write CA file");
    format!(
        "database = \"{url}?sslmode=require\"\ndatabase_password_file = \"{}\"\nca_file = \"{}\"\n",
        pg.password_file.display(),
        cas.display()
    )
}

/// Polls agent1's INBOX for the first mail about `subject` (the notification) that carries a
/// signed Reply-To.
async fn notification(lab: &Lab, subject: &str) -> Vec<u8> {
    let started = Instant::now();
    loop {
        let found = lab
            .fetch_all("agent1", "INBOX")
            .await
            .into_iter()
            .find(|m| {
                let p = parsed(m);
                p.subject.contains(subject) && p.reply_to.is_some()
            });
        if let Some(found) = found {
            return found;
        }
        assert!(
            started.elapsed() < WAIT,
            "no notification about {subject:?} for agent1"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn counts(lab: &Lab) -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    for user in MAILBOXES {
        out.push((user, lab.fetch_all(user, "INBOX").await.len()));
    }
    out
}

/// What the CLI shows of the store, to compare before and after the move.
fn views(setup: &Setup) -> Vec<(String, Value)> {
    let mut views = Vec::new();
    let mut take = |args: &[&str]| {
        views.push((args.join(" "), setup.json(args)));
    };
    take(&["tickets"]);
    take(&["outbox"]);
    take(&["events", "--limit", "100000"]);
    take(&["quarantine", "list", "--all"]);
    for customer in ["customer1", "customer2", "customer3", "customer4"] {
        take(&["contact", &format!("{customer}@example.test")]);
    }
    let tickets = setup.json(&["tickets"]);
    for ticket in tickets.as_array().expect("tickets") {
        let id = ticket["id"].as_i64().expect("ticket id").to_string();
        views.push((format!("ticket {id}"), setup.json(&["ticket", &id])));
    }
    views
}

/// A desk with a ticket in each state on SQLite (an escalated deadline, agents' answers, a
/// quarantined message) moves to PostgreSQL; the CLI shows the same; the daemon on
/// PostgreSQL sends nothing again and numbers a new ticket after the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_desk_moves_to_postgres_and_nobody_hears_twice() {
    let Some(lab) = Lab::start() else { return };
    let Some(pg) = postgres::shared() else { return };
    let t0 = Instant::now();
    let setup = with_agents(&lab);
    set_deadlines(
        &setup,
        r#"first_response = "6s"
warning = "off"

[[deadlines.escalation]]
after = "0s"
to = ["lead@example.test"]"#,
    );
    let daemon = setup.start();
    let support = lab.address("support");
    let write = |n: u32, subject: &str, body: &str| {
        let customer = lab.address(&format!("customer{n}"));
        let mail = message(
            &format!("Customer {n} <{customer}>"),
            &support,
            subject,
            &format!("mig{n}@customer.test"),
            body,
            &[],
        );
        (customer, mail)
    };

    // Open, escalated: nobody answers within 6 s.
    let (c1, m1) = write(1, "Printer on fire", "It smokes.\n");
    lab.send(&c1, &[&support], &m1).await;
    // Pending, resolved and closed by agents' answers.
    let answers = [
        (2, "Laptop will not boot", "#pending\nWhich model is it?"),
        (3, "Password reset", "#resolve\nDone, try again."),
        (4, "Cancel my order", "#close\nCancelled."),
    ];
    for (n, subject, _) in answers {
        let (c, m) = write(n, subject, "Please help.\n");
        lab.send(&c, &[&support], &m).await;
    }
    for (_, subject, body) in answers {
        let notified = notification(&lab, subject).await;
        answer(&lab, "agent1", &notified, body).await;
    }
    // Quarantined: no usable sender.
    lab.append(
        "support",
        "INBOX",
        b"To: support@example.test\r\nSubject: who am I\r\nMessage-ID: <anon@mig.test>\r\n\r\nhello\r\n",
    )
    .await;

    lab.wait_for("lead", "INBOX", 1, WAIT).await;
    let statuses = |t: &Value| -> Vec<String> {
        let mut s: Vec<String> = t
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["status"].as_str().unwrap_or("").to_string())
            .collect();
        s.sort();
        s
    };
    setup
        .wait_json(&["tickets"], WAIT, |t| {
            statuses(t) == ["closed", "open", "pending", "resolved"]
        })
        .await;
    setup
        .wait_json(&["quarantine", "list"], WAIT, |q| {
            q.as_array().is_some_and(|q| q.len() == 1)
        })
        .await;
    // Quiet: every mail sent, and nothing more queued for a while (the survey included).
    let mut last = Value::Null;
    let quiet_since = Instant::now();
    loop {
        let outbox = setup.json(&["outbox"]);
        let all_sent = outbox
            .as_array()
            .is_some_and(|o| o.iter().all(|r| r["status"] == "sent"));
        if !all_sent || outbox != last {
            last = outbox;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(quiet_since.elapsed() < WAIT * 2, "never quiet: {last:#}");
            continue;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        if setup.json(&["outbox"]) == last {
            break;
        }
    }
    let (status, _) = daemon.stop();
    assert!(status.success(), "{status}");
    let content_time = t0.elapsed();
    let before = views(&setup);
    let mail_before = counts(&lab).await;
    let max_ticket = setup.json(&["tickets"])[0]["id"]
        .as_i64()
        .expect("ticket id");

    // The move: the configuration now names PostgreSQL.
    let url = pg.fresh_database();
    let database = postgres_database(pg, &url, setup.dir.path(), Some(&lab.ca_file));
    let sqlite = setup.database();
    setup.edit_config(|text| {
        let text = text.replace("database = \"deskgate.db\"\n", "");
        let ca_line = text
            .lines()
            .find(|l| l.starts_with("ca_file = "))
            .expect("ca_file line")
            .to_string();
        text.replace(&format!("{ca_line}\n"), &database)
    });
    let started = Instant::now();
    let moved = setup.cli(&["migrate-store", "--from", sqlite.to_str().expect("utf-8")]);
    let move_time = started.elapsed();
    assert!(moved.status.success(), "{}", stderr(&moved));
    let report = stdout(&moved);
    eprintln!(
        "migrate-store ({:.2} s; content built in {:.1} s):\n{report}",
        move_time.as_secs_f64(),
        content_time.as_secs_f64()
    );
    for table in [
        "tickets",
        "messages",
        "outbox",
        "deadlines",
        "steps",
        "quarantine",
    ] {
        assert!(
            report.lines().any(|l| l.contains(table)),
            "{table} in the report:\n{report}"
        );
    }
    let after = views(&setup);
    for ((what, was), (_, now)) in before.iter().zip(&after) {
        assert_eq!(was, now, "`deskgate {what}` differs after the move");
    }
    assert_eq!(before.len(), after.len());

    // The daemon on PostgreSQL: nothing acknowledged, escalated or surveyed again.
    let daemon = setup.start();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        counts(&lab).await,
        mail_before,
        "no mail sent again after the move; log:\n{}",
        setup.log()
    );
    assert_eq!(
        setup.json(&["outbox"]),
        before[1].1,
        "nothing queued after the move"
    );

    // A new customer mail: a new ticket numbered after the migrated ones, acknowledged.
    let (c5, m5) = write(5, "New on PostgreSQL", "Hello again.\n");
    lab.send(&c5, &[&support], &m5).await;
    let ack = match lab.try_wait_for("customer5", "INBOX", 1, WAIT).await {
        Ok(mut inbox) => inbox.remove(0),
        Err(e) => {
            let log = setup.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let server = std::fs::read_to_string(pg.dir.join("postgres.log")).unwrap_or_default();
            // Each distinct error once, without its time and process.
            let mut errors: Vec<&str> = Vec::new();
            for line in server.lines() {
                let Some(at) = line.find("ERROR:") else {
                    continue;
                };
                if !errors.contains(&&line[at..]) {
                    errors.push(&line[at..]);
                }
            }
            panic!(
                "no acknowledgement from the daemon on PostgreSQL: {e}\ndaemon log (tail):\n{}\nPostgreSQL's errors:\n{}",
                tail.join("\n"),
                errors.join("\n")
            );
        }
    };
    let tickets = setup
        .wait_json(&["tickets"], WAIT, |t| {
            t.as_array().is_some_and(|t| t.len() == 5)
        })
        .await;
    let new = tickets[0]["id"].as_i64().expect("ticket id");
    assert!(new > max_ticket, "new ticket {new} after {max_ticket}");
    assert!(
        parsed(&ack).subject.contains(&format!("[#{new}]")),
        "{}",
        parsed(&ack).subject
    );
    let (status, _) = daemon.stop();
    assert!(status.success(), "{status}");
}

/// A SQLite store with `events` events (and, with `broken`, a ticket whose `created_at` is
/// text, which no PostgreSQL BIGINT takes, after a mailbox checkpoint).
fn sqlite_store(path: &Path, events: usize, broken: bool) {
    use deskgate::store::{Event, Store};
    let store = Store::open(path).expect("create store");
    store
        .write_blocking(|tx| {
            for n in 0..events {
                tx.record(
                    &Event {
                        detail: format!("event {n}"),
                        ..Event::new(deskgate::catalog::EventKind::SmtpTransportFailed)
                    },
                    jiff::Timestamp::now(),
                )?;
            }
            Ok(())
        })
        .expect("events");
    drop(store);
    if broken {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.execute_batch(
            "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at)
                 VALUES ('support', 1, 5, 0);
             INSERT INTO tickets (mailbox, subject, status, created_at, updated_at)
                 VALUES ('support', 'x', 'open', 'yesterday', 0);",
        )
        .expect("break the store");
    }
}

fn event_details(config: &Path) -> Vec<String> {
    let out = deskgate(config, &["events", "--limit", "1000", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A target with rows is refused and left as it was; a copy that fails half-way leaves the
/// target empty.
#[test]
fn a_target_with_rows_is_refused_and_a_failed_copy_leaves_none() {
    let Some(pg) = postgres::shared() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("deskgate.toml");
    let database = postgres_database(pg, &pg.fresh_database(), dir.path(), None);
    std::fs::write(
        &config,
        VALID.replace("database = \"state/deskgate.db\"\n", &database),
    )
    .expect("config");
    let (first, second, broken) = (
        dir.path().join("first.db"),
        dir.path().join("second.db"),
        dir.path().join("broken.db"),
    );
    sqlite_store(&first, 2, false);
    sqlite_store(&second, 3, false);
    sqlite_store(&broken, 1, true);
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();

    let copied = deskgate(&config, &["migrate-store", "--from", &path(&first)]);
    assert!(copied.status.success(), "{}", stderr(&copied));
    assert!(
        stdout(&copied)
            .lines()
            .any(|l| l.contains("events") && l.contains(" 2 rows")),
        "{}",
        stdout(&copied)
    );
    let was = event_details(&config);
    assert_eq!(was.len(), 2);

    let refused = deskgate(&config, &["migrate-store", "--from", &path(&second)]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    let why = stderr(&refused);
    assert!(
        why.contains("is not empty (events: 2 rows)") && why.contains("copied nothing"),
        "{why}"
    );
    assert_eq!(event_details(&config), was, "the target is unchanged");

    // A value PostgreSQL refuses, after rows of other tables: nothing stays behind.
    let fresh = postgres_database(pg, &pg.fresh_database(), dir.path(), None);
    std::fs::write(
        &config,
        VALID.replace("database = \"state/deskgate.db\"\n", &fresh),
    )
    .expect("config");
    let failed = deskgate(&config, &["migrate-store", "--from", &path(&broken)]);
    assert_eq!(failed.status.code(), Some(2));
    let why = stderr(&failed);
    assert!(
        why.contains("tickets row 1: column created_at holds text"),
        "{why}"
    );
    assert!(event_details(&config).is_empty());
    let copied = deskgate(&config, &["migrate-store", "--from", &path(&first)]);
    assert!(
        copied.status.success(),
        "the failed copy left rows behind: {}",
        stderr(&copied)
    );
}

/// A SQLite target, a URL that is not PostgreSQL and a missing source are refused with what
/// to do; no server needed.
#[test]
fn a_sqlite_target_and_a_missing_source_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("deskgate.toml");
    std::fs::write(&config, VALID).expect("config");
    let source = dir.path().join("old.db");
    sqlite_store(&source, 1, false);
    let source = source.to_str().expect("utf-8");

    let out = deskgate(&config, &["migrate-store", "--from", source]);
    assert_eq!(out.status.code(), Some(2));
    let why = stderr(&out);
    assert!(
        why.contains("is SQLite, and migrate-store copies into PostgreSQL")
            && why.contains("--to postgres://"),
        "{why}"
    );

    let out = deskgate(
        &config,
        &["migrate-store", "--from", source, "--to", "other.db"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "deskgate: --to other.db: not a PostgreSQL URL; migrate-store copies into PostgreSQL (postgres://USER@HOST[:PORT]/DB)"
    );

    let missing = dir.path().join("missing.db");
    let out = deskgate(
        &config,
        &[
            "migrate-store",
            "--from",
            missing.to_str().expect("utf-8"),
            "--to",
            "postgres://deskgate@127.0.0.1:1/desk",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let why = stderr(&out);
    assert!(
        why.starts_with(&format!(
            "deskgate: --from {}: no such file",
            missing.display()
        )),
        "{why}"
    );
    assert!(!missing.exists(), "nothing created");
}
