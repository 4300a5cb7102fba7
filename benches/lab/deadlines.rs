//! Part 6: the deadline engine with a large store, in-process through deskgate's own library
//! (the scheduler's store queries and its `replan` / `run_due` steps; no servers needed).
//!
//! One ticket is ingested for real; the store is then grown to `tickets` copies of it (ticket,
//! customer message, open deadline; the copies' due times one second apart, all in the future)
//! with SQL, which is how a million tickets fit in a benchmark run. Then: the scheduler's "what
//! is due next" query, its start-up planning over every open deadline, and 10,000 deadlines
//! moved into the past at once, worked off by `run_due` until nothing is due.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskgate::config::Config;
use deskgate::ingest::Source;
use deskgate::policy::Arrival;
use deskgate::schedule::{replan, run_due};
use deskgate::store::{Store, Tally};
use jiff::Timestamp;

use crate::Report;

const CONFIG: &str = r#"database = "deadlines.db"

[support]
address = "support@example.test"
name = "Example Support"

[policy]
no_ack_domains = []

[deadlines]
first_response = "24h"
warning = "off"
escalation = [{ after = "0s", to = ["lead@example.test"] }]

[[mailbox]]
name = "support"
host = "127.0.0.1"
tls = "plain"
user = "support@example.test"
password = "unused"

[smtp]
host = "127.0.0.1"
tls = "plain"
"#;

pub async fn run(report: &mut Report, tickets: usize, due: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("deskgate.toml"), CONFIG).expect("write config");
    let config = Arc::new(Config::load(&dir.path().join("deskgate.toml")).expect("config loads"));
    let db = dir.path().join("deadlines.db");
    let store = Store::open(&db).expect("open store");

    let raw = crate::mail::customer_mail("example.test", "support@example.test", "seed", 1);
    let source = Source {
        mailbox: "support".into(),
        imap: Some((1, 1)),
        arrival: Arrival::Live,
    };
    deskgate::ingest::ingest(&store, &config, source, raw, Timestamp::now())
        .await
        .expect("ingest the seed message");
    drop(store);

    let started = Instant::now();
    grow(&db, tickets);
    let grown = started.elapsed();
    let store = Store::open(&db).expect("open store");
    report.add(
        "6",
        format!(
            "store of {tickets} tickets, each with an open deadline (grown with SQL, not counted)"
        ),
        format!("{:.1} s, {:.0} MB", grown.as_secs_f64(), file_mb(&db)),
    );

    // What the scheduler asks after every batch and wake-up.
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let next = store
            .read(|tx| tx.next_step_at())
            .await
            .expect("next_step_at");
        times.push(t.elapsed());
        assert!(next.is_some(), "a deadline is open");
    }
    let (p50, max) = spread(&mut times);
    report.add_target(
        "6",
        format!("next due item among {tickets} open deadlines (`next_step_at`, through the store's blocking pool)"),
        format!("p50 {:.3} ms, max {:.3} ms (200 calls)", ms(p50), ms(max)),
        "≤ 10 ms",
    );

    // A start after the scheduling settings changed (and the first start of this version):
    // every open deadline is planned again.
    let t = Instant::now();
    let plan = replan(&store, &config, Timestamp::now(), || {})
        .await
        .expect("replan");
    assert!(plan.whole, "no plan recorded yet");
    report.add(
        "6",
        format!(
            "scheduler start after a change of the scheduling settings: plan all {} open deadlines and follow-ups again",
            plan.planned
        ),
        format!("{:.2} s", t.elapsed().as_secs_f64()),
    );
    // Every other start: the stored plans hold.
    let t = Instant::now();
    let plan = replan(&store, &config, Timestamp::now(), || {})
        .await
        .expect("replan");
    assert!(!plan.whole, "the settings did not change");
    report.add_target(
        "6",
        format!(
            "scheduler start, settings unchanged, {tickets} open deadlines: ready (stored `next_step_at` kept; {} without one planned)",
            plan.planned
        ),
        format!("{:.2} s", t.elapsed().as_secs_f64()),
        "≤ 5 s",
    );

    // `due` deadlines pass at once (e.g. the office opens after a long weekend).
    let conn = rusqlite::Connection::open(&db).expect("open database");
    let past = Timestamp::now().as_millisecond() - 3_600_000;
    conn.execute(
        "UPDATE deadlines SET due_at = ?1, next_step_at = ?1
         WHERE id IN (SELECT id FROM deadlines ORDER BY id LIMIT ?2)",
        rusqlite::params![past, due as i64],
    )
    .expect("move deadlines into the past");
    let before: i64 = conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .expect("count outbox");
    let t = Instant::now();
    let mut steps = 0;
    loop {
        let config = Arc::clone(&config);
        let batch = store
            .write(move |tx| run_due(tx, &config, Timestamp::now()))
            .await
            .expect("run_due");
        steps += batch.steps;
        if !batch.more && batch.steps == 0 {
            break;
        }
    }
    let took = t.elapsed();
    let (escalations, queued): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM steps WHERE name = 'escalation-1'),
                    (SELECT count(*) FROM outbox) - ?1",
            [before],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count steps");
    assert_eq!(
        escalations as usize, due,
        "every passed deadline is escalated once"
    );
    report.add(
        "6",
        format!("{due} deadlines passed at once among {tickets}: breach + escalation each, mail to the lead queued (`run_due` until nothing is due)"),
        format!(
            "{:.2} s ({:.0} escalations/s; {steps} steps, {queued} mails queued)",
            took.as_secs_f64(),
            due as f64 / took.as_secs_f64()
        ),
    );
    metrics(report, &store, &db, tickets).await;
}

/// `/metrics` with `events` events in the history: the count the daemon makes once at start,
/// then a scrape after 1,000 more events (what `/metrics` reads, through the store's
/// blocking pool; the text encoding is not included).
async fn metrics(report: &mut Report, store: &Store, db: &Path, events: usize) {
    let conn = rusqlite::Connection::open(db).expect("open database");
    let have: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count events");
    let per: i64 = conn
        .query_row("SELECT count(*) FROM events WHERE id <= 5", [], |r| {
            r.get(0)
        })
        .expect("seed events");
    // Copies of the events of the first ingest (received, ticket created, ack queued…).
    let grow = |n: i64| {
        conn.execute(
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
             INSERT INTO events (at, kind, mailbox, ticket_id, outbox_id, detail, data)
             SELECT at + n, kind, mailbox, ticket_id, outbox_id, detail, data
             FROM events, seq WHERE id <= 5 ORDER BY n, id",
            [n],
        )
        .expect("grow events");
    };
    let missing = (events as i64 - have).max(0);
    grow(missing / per.max(1));
    let total: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count events");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let scrape = || {
        let tally = Arc::clone(&tally);
        async move {
            let t = Instant::now();
            store
                .read(move |tx| {
                    let mut tally = tally.lock().expect("tally");
                    tx.figures(&mut tally)
                })
                .await
                .expect("figures");
            t.elapsed()
        }
    };
    let first = scrape().await;
    report.add(
        "6",
        format!("/metrics: counting {total} events once, at start"),
        format!("{:.2} s", first.as_secs_f64()),
    );
    grow(1_000 / per.max(1));
    let mut times = Vec::new();
    for _ in 0..20 {
        times.push(scrape().await);
    }
    let (p50, max) = spread(&mut times);
    report.add_target(
        "6",
        format!("/metrics scrape with {total} events (then 1,000 new), after the count at start"),
        format!("p50 {:.2} ms, max {:.2} ms (20 scrapes)", ms(p50), ms(max)),
        "≤ 50 ms",
    );
}

/// Copies the seed ticket, its customer message and its deadline until there are `tickets`.
fn grow(db: &Path, tickets: usize) {
    let mut conn = rusqlite::Connection::open(db).expect("open database");
    let tx = conn.transaction().expect("BEGIN");
    let copy = |table: &str, replace: &[(&str, &str)], filter: &str| {
        let columns: Vec<String> = {
            let mut stmt = tx
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .expect("table_info");
            stmt.query_map([], |r| r.get(0))
                .expect("columns")
                .collect::<Result<_, _>>()
                .expect("columns")
        };
        let values: Vec<String> = columns
            .iter()
            .map(|c| {
                replace
                    .iter()
                    .find(|(name, _)| name == c)
                    .map_or_else(|| c.clone(), |(_, expr)| (*expr).to_owned())
            })
            .collect();
        let sql = format!(
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {})
             INSERT INTO {table} ({}) SELECT {} FROM {table}, seq WHERE {filter}",
            tickets - 1,
            columns.join(", "),
            values.join(", ")
        );
        tx.execute(&sql, [])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    // ids of the copies: seed id + n * stride, beyond every id the seed transaction made
    copy("tickets", &[("id", "id + n")], "id = 1");
    copy(
        "messages",
        &[
            ("id", "1000 + n"),
            ("ticket_id", "ticket_id + n"),
            ("dedupe_key", "dedupe_key || '#' || n"),
            ("message_id", "message_id || '.' || n"),
            ("uid", "NULL"),
            ("raw", "substr(raw, 1, 400)"),
        ],
        "ticket_id = 1 AND direction = 'in'",
    );
    copy(
        "deadlines",
        &[
            ("id", "NULL"),
            ("ticket_id", "ticket_id + n"),
            ("message_row_id", "1000 + n"),
            ("due_at", "due_at + n * 1000"),
            ("next_step_at", "next_step_at + n * 1000"),
        ],
        "ticket_id = 1",
    );
    tx.commit().expect("COMMIT");
}

fn spread(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn file_mb(path: &Path) -> f64 {
    let wal = path.with_extension("db-wal");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    (size(path) + size(&wal)) as f64 / 1_048_576.0
}
