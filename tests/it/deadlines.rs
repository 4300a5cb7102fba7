//! Deadlines of seconds on real Dovecot and Postfix: the warning and each escalation level
//! arrive once, with the whole conversation, across a crash; an answer in time prevents
//! escalation; pending tickets get reminders, resolve themselves, ask for a score and close.

use std::time::Duration;

use serde_json::Value;

use crate::agents::{answer, with_agents};
use crate::daemon::{Setup, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

/// Events of `kind` recorded so far.
pub fn events(setup: &Setup, kind: &str) -> Vec<Value> {
    setup
        .json(&["events", "--kind", kind, "--limit", "1000"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

pub fn set_deadlines(setup: &Setup, deadlines: &str) {
    setup.edit_config(|text| {
        text.replace(
            "[deadlines]\nfirst_response = \"24h\"\n",
            &format!("[deadlines]\n{deadlines}\n"),
        )
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn warning_and_each_escalation_level_arrive_once_across_a_crash() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    set_deadlines(
        &setup,
        r#"first_response = "8s"
warning = "4s"
customer_update = true

[[deadlines.escalation]]
after = "0s"
to = ["lead@example.test"]

[[deadlines.escalation]]
after = "6s"
to = ["agent3@example.test"]"#,
    );
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let original = message(
        &format!("Mona Q <{customer}>"),
        &support,
        "Printer on fire",
        "esc1@customer.test",
        "It smokes and the office smells of toner.\n",
        &[],
    );
    lab.send(&customer, &[&support], &original).await;

    // The acknowledgement promises the time the scheduler enforces.
    let ack = lab.wait_for("customer1", "INBOX", 1, WAIT).await.remove(0);
    let ticket = setup
        .wait_json(&["tickets"], WAIT, |t| t[0]["next_due_at"].is_string())
        .await;
    let number = ticket[0]["id"].as_i64().expect("ticket id");
    let due: jiff::Timestamp = ticket[0]["next_due_at"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("due time");
    let promised =
        deskgate::render::format_due(due, &jiff::tz::TimeZone::UTC, deskgate::language::Lang::En);
    assert!(
        parsed(&ack).text.contains(&promised),
        "ack promises {promised}"
    );

    // Nobody is assigned: the team (both agents) is warned 4 s before the deadline, after
    // their notification.
    let agent1 = lab.wait_for("agent1", "INBOX", 2, WAIT).await;
    lab.wait_for("agent2", "INBOX", 2, WAIT).await;
    let warning = parsed(&agent1[1]);
    assert!(warning.subject.starts_with("Due in"), "{}", warning.subject);
    assert!(warning.subject.contains(&format!("[#{number}]")));
    let reply_to = warning.reply_to.clone().expect("signed Reply-To").address;
    assert!(
        reply_to.starts_with(&format!("support+{number}.")),
        "{reply_to}"
    );

    // Level 1 at the deadline, to the team lead, with the whole conversation.
    let lead = lab.wait_for("lead", "INBOX", 1, WAIT).await;
    let escalation = parsed(&lead[0]);
    assert!(
        escalation.subject.starts_with("Escalation 1:"),
        "{}",
        escalation.subject
    );
    for fact in [
        "It smokes and the office smells of toner.",
        "Mona Q <customer1@example.test>",
        "Thank you for writing to Example Support",
        "warning to agent1@example.test",
        "escalation level 1",
    ] {
        assert!(
            escalation.text.contains(fact),
            "{fact:?} in\n{}",
            escalation.text
        );
    }
    assert_eq!(
        header(&lead[0], "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );

    // The customer gets one apology with a new time, in the thread.
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    let update = parsed(&inbox[1]);
    assert_eq!(update.subject, format!("Re: Printer on fire [#{number}]"));
    assert!(update.text.contains("apology"), "{}", update.text);
    assert_eq!(update.in_reply_to, vec!["esc1@customer.test"]);

    // A crash between the levels: nothing is repeated, nothing skipped.
    daemon.kill();
    let daemon = setup.start();
    let manager = lab.wait_for("agent3", "INBOX", 1, WAIT).await;
    let level2 = parsed(&manager[0]);
    assert!(
        level2.subject.starts_with("Escalation 2:"),
        "{}",
        level2.subject
    );
    assert!(
        level2.text.contains("escalation-1 to lead@example.test"),
        "who was told before:\n{}",
        level2.text
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lab.fetch_all("lead", "INBOX").await.len(),
        1,
        "level 1 once"
    );
    assert_eq!(
        lab.fetch_all("agent3", "INBOX").await.len(),
        1,
        "level 2 once"
    );
    assert_eq!(
        lab.fetch_all("agent1", "INBOX").await.len(),
        2,
        "one warning"
    );
    assert_eq!(events(&setup, "deadline.warned").len(), 1);
    assert_eq!(events(&setup, "deadline.breached").len(), 1);
    assert_eq!(events(&setup, "escalation.sent").len(), 2);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_in_time_prevents_escalation_and_the_survey_score_is_recorded() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    set_deadlines(
        &setup,
        r#"first_response = "8s"
warning = "off"

[[deadlines.escalation]]
after = "0s"
to = ["lead@example.test"]"#,
    );
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer2"), lab.address("support"));
    let original = message(
        &format!("Ahmad <{customer}>"),
        &support,
        "الطابعة لا تعمل",
        "esc2@customer.test",
        "مرحبا، الطابعة في المكتب لا تطبع منذ أمس.\n",
        &[],
    );
    lab.send(&customer, &[&support], &original).await;
    let notification = lab.wait_for("agent1", "INBOX", 1, WAIT).await.remove(0);
    answer(
        &lab,
        "agent1",
        &notification,
        "#resolve\nتم إصلاح الطابعة، يرجى المحاولة مرة أخرى.",
    )
    .await;

    // Acknowledgement, the relayed answer, then the survey (resolved), in Arabic.
    let inbox = lab.wait_for("customer2", "INBOX", 3, WAIT).await;
    let survey = inbox
        .iter()
        .map(|m| parsed(m))
        .find(|m| m.subject.starts_with("ما رأيك"))
        .expect("the survey, in the customer's language");
    assert!(survey.text.contains("١ إلى ٥"), "{}", survey.text);

    // The customer answers with an Arabic-Indic four and a word of thanks.
    let sid = survey.message_id.clone().expect("survey Message-ID");
    let score = message(
        &format!("Ahmad <{customer}>"),
        &support,
        &format!("رد: {}", survey.subject),
        "esc2-score@customer.test",
        &format!(
            "٤ شكرا\n\nكتب Example Support:\n> {}",
            survey.text.replace('\n', "\n> ")
        ),
        &[("In-Reply-To", &format!("<{sid}>"))],
    );
    lab.send(&customer, &[&support], &score).await;
    let answered = setup
        .wait_json(
            &["events", "--kind", "survey.", "--limit", "10"],
            WAIT,
            |e| {
                e.as_array()
                    .is_some_and(|e| e.iter().any(|e| e["kind"] == "survey.answered"))
            },
        )
        .await;
    assert!(
        answered.to_string().contains("satisfaction 4 of 5"),
        "{answered:#}"
    );

    // Well past the deadline: nobody was escalated to, the score did not reopen the ticket.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        lab.fetch_all("lead", "INBOX").await.is_empty(),
        "no escalation"
    );
    assert!(events(&setup, "escalation.sent").is_empty());
    assert_eq!(events(&setup, "deadline.met").len(), 1);
    let ticket = setup.json(&["tickets"]);
    assert_eq!(ticket[0]["status"], "resolved", "{ticket:#}");
    assert_eq!(
        lab.fetch_all("customer2", "INBOX").await.len(),
        3,
        "nothing answers a score"
    );
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_tickets_are_reminded_resolved_surveyed_and_closed() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    setup.append_config(
        r#"
[followup]
pending_reminders = ["2s"]
pending_resolve_after = "5s"
auto_close_after = "3s"
"#,
    );
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer3"), lab.address("support"));
    let original = message(
        &format!("Eleni <{customer}>"),
        &support,
        "Scanner",
        "pend1@customer.test",
        "The scanner shows error E42.\n",
        &[],
    );
    lab.send(&customer, &[&support], &original).await;
    let notification = lab.wait_for("agent1", "INBOX", 1, WAIT).await.remove(0);
    answer(
        &lab,
        "agent1",
        &notification,
        "#pending\nWhich model is it? The label is on the back.",
    )
    .await;

    // ack, answer, reminder, survey (auto-resolved), closing notice.
    let inbox = lab.wait_for("customer3", "INBOX", 5, WAIT).await;
    let subjects: Vec<String> = inbox.iter().map(|m| parsed(m).subject).collect();
    assert!(
        subjects[2].starts_with("Waiting for your reply"),
        "{subjects:?}"
    );
    assert!(subjects[3].starts_with("How did we do?"), "{subjects:?}");
    assert!(subjects[4].starts_with("Closed:"), "{subjects:?}");
    let statuses: Vec<String> = events(&setup, "ticket.status")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(statuses.contains(&"resolved".to_string()), "{statuses:?}");
    assert!(statuses.contains(&"closed".to_string()), "{statuses:?}");
    assert_eq!(events(&setup, "ticket.reminded").len(), 1);
    let ticket = setup.json(&["tickets"]);
    assert_eq!(ticket[0]["status"], "closed", "{ticket:#}");

    // The customer writes again: the ticket opens again with a new deadline.
    let again = message(
        &format!("Eleni <{customer}>"),
        &support,
        &format!("Re: {}", subjects[4]),
        "pend2@customer.test",
        "It is the model X100.\n",
        &[("In-Reply-To", "<pend1@customer.test>")],
    );
    lab.send(&customer, &[&support], &again).await;
    setup
        .wait_json(&["tickets"], WAIT, |t| t[0]["status"] == "open")
        .await;
    daemon.stop();
}

/// The scheduler with an injected clock, no servers: business hours across a weekend, each
/// step once however often it runs, a clock set back, and the pause while pending.
mod clock {
    use std::sync::Arc;

    use deskgate::config::Config;
    use deskgate::ingest::{Source, ingest};
    use deskgate::model::{TicketId, TicketStatus};
    use deskgate::policy::Arrival;
    use deskgate::schedule::{replan, run_due, status_changed};
    use deskgate::store::Store;
    use jiff::Timestamp;

    use crate::daemon::store_is_postgres;
    use crate::harness::message;

    const CONFIG: &str = r#"
database = "deskgate.db"
[support]
address = "support@example.test"
name = "Example Support"
timezone = "Europe/Athens"
[policy]
no_ack_domains = []
[deadlines]
first_response = "2h"
warning = "1h"
[deadlines.business_hours]
monday = "09:00-17:00"
tuesday = "09:00-17:00"
wednesday = "09:00-17:00"
thursday = "09:00-17:00"
friday = "09:00-17:00"
[[deadlines.escalation]]
after = "0s"
to = ["lead@example.test"]
[[deadlines.escalation]]
after = "1h"
to = ["boss@example.test"]
[[mailbox]]
name = "support"
host = "127.0.0.1"
tls = "plain"
user = "support"
password = "x"
[smtp]
host = "127.0.0.1"
tls = "plain"
"#;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Runs `work` on a thread of its own: the PostgreSQL client blocks on a runtime of its
    /// own, which must not start on the test's.
    fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| s.spawn(work).join().expect("no panic"))
    }

    struct World {
        dir: tempfile::TempDir,
        /// CONFIG as given to `config`.
        text: String,
        config: Arc<Config>,
        store: Store,
        /// The PostgreSQL database's URL (`DESKGATE_IT_STORE=postgres`), else SQLite.
        postgres: Option<String>,
    }

    impl World {
        /// CONFIG in a fresh directory; its store on a fresh database of the shared
        /// PostgreSQL when this run uses PostgreSQL.
        fn new() -> World {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("deskgate.toml");
            let (text, postgres) = if store_is_postgres() {
                let pg = crate::postgres::shared()
                    .expect("DESKGATE_IT_STORE=postgres needs DESKGATE_IT=1");
                let url = pg.fresh_database();
                std::fs::copy(&pg.password_file, dir.path().join("db-password"))
                    .expect("copy the database password");
                let database = format!(
                    "database = \"{url}?sslmode=require\"\ndatabase_password_file = \"db-password\"\nca_file = \"{}\"",
                    pg.ca_file.display()
                );
                (
                    CONFIG.replace("database = \"deskgate.db\"", &database),
                    Some(url),
                )
            } else {
                (CONFIG.to_string(), None)
            };
            let config = Config::from_toml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            let store = Store::connect(&config.database).expect("store");
            World {
                dir,
                text,
                config: Arc::new(config),
                store,
                postgres,
            }
        }

        /// Runs `sql` (an UPDATE) on the store's database behind deskgate's back.
        fn execute(&self, sql: &str) {
            match &self.postgres {
                None => {
                    rusqlite::Connection::open(
                        self.config.database.sqlite_path().expect("a SQLite store"),
                    )
                    .expect("open")
                    .execute(sql, [])
                    .expect("update");
                }
                Some(url) => off_runtime(|| {
                    postgres_client(url).execute(sql, &[]).expect("update");
                }),
            }
        }

        /// `next_step_at` of the deadline of `ticket`, read behind deskgate's back.
        fn next_step_at(&self, ticket: i64) -> Option<i64> {
            let sql = "SELECT next_step_at FROM deadlines WHERE ticket_id = ";
            match &self.postgres {
                None => rusqlite::Connection::open(
                    self.config.database.sqlite_path().expect("a SQLite store"),
                )
                .expect("open")
                .query_row(&format!("{sql}?1"), [ticket], |r| r.get(0))
                .expect("deadline"),
                Some(url) => off_runtime(|| {
                    postgres_client(url)
                        .query_one(&format!("{sql}$1"), &[&ticket])
                        .expect("deadline")
                        .get(0)
                }),
            }
        }

        /// Steps taken and the next step's time, after running the scheduler at `now`.
        fn run(&self, now: &str) -> (usize, Option<Timestamp>) {
            let config = Arc::clone(&self.config);
            let now = at(now);
            off_runtime(|| {
                self.store
                    .write_blocking(|tx| {
                        let batch = run_due(tx, &config, now)?;
                        Ok((batch.steps, tx.next_step_at()?))
                    })
                    .expect("run")
            })
        }

        /// `from` writes "Printer" / "It smokes." to the support address at `now`.
        async fn ingest(&self, from: &str, message_id: &str, uid: u32, now: &str) {
            let raw = message(
                from,
                "support@example.test",
                "Printer",
                message_id,
                "It smokes.\n",
                &[],
            );
            let source = Source {
                mailbox: "support".into(),
                imap: Some((1, uid)),
                arrival: Arrival::Live,
            };
            ingest(&self.store, &self.config, source, raw, at(now))
                .await
                .expect("ingest");
        }

        fn outbox(&self) -> Vec<(String, String)> {
            off_runtime(|| self.store.read_blocking(|tx| tx.outbox()))
                .expect("outbox")
                .into_iter()
                .map(|o| (o.kind, o.recipients))
                .collect()
        }
    }

    /// A connection to the shared PostgreSQL's database `url`, TLS verified.
    fn postgres_client(url: &str) -> ::postgres::Client {
        let pg = crate::postgres::shared().expect("the shared PostgreSQL");
        let mut config: ::postgres::Config = url.parse().expect("a PostgreSQL URL");
        config.password(pg.password());
        config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                pg.tls_config(),
            ))
            .expect("connect to PostgreSQL")
    }

    #[tokio::test]
    async fn steps_follow_business_hours_once_each_whatever_the_clock_does() {
        let world = World::new();
        // Friday 27 November 2026, 16:30 in Athens (14:30Z): half an hour of Friday left.
        let mona = "Mona <customer1@example.test>";
        world
            .ingest(mona, "clock1@customer.test", 1, "2026-11-27T14:30:00Z")
            .await;
        // Due Monday 10:30 Athens (08:30Z): 0.5 h on Friday + 1.5 h on Monday. Warned
        // after 1 h of working time: Monday 09:30 (07:30Z).
        let ack = &world.outbox()[0];
        assert_eq!(ack.0, "acknowledgement");
        assert_eq!(
            world.run("2026-11-27T15:00:00Z"),
            (0, Some(at("2026-11-30T07:30:00Z")))
        );
        assert_eq!(
            world.run("2026-11-28T12:00:00Z"),
            (0, Some(at("2026-11-30T07:30:00Z"))),
            "the weekend"
        );
        // Monday 09:31: the warning (nobody to warn: no agents) and nothing else.
        assert_eq!(
            world.run("2026-11-30T07:31:00Z"),
            (1, Some(at("2026-11-30T08:30:00Z")))
        );
        assert_eq!(
            world.run("2026-11-30T07:31:00Z"),
            (0, Some(at("2026-11-30T08:30:00Z"))),
            "once"
        );
        // 10:31: the breach and level 1; level 2 one working hour later.
        assert_eq!(
            world.run("2026-11-30T08:31:00Z"),
            (2, Some(at("2026-11-30T09:30:00Z")))
        );
        // The clock is set back to Friday: nothing is undone or repeated.
        assert_eq!(
            world.run("2026-11-27T15:00:00Z"),
            (0, Some(at("2026-11-30T09:30:00Z")))
        );
        assert_eq!(world.run("2026-11-30T09:31:00Z"), (1, None));
        assert_eq!(world.run("2026-12-07T09:31:00Z"), (0, None), "nothing left");
        let sent: Vec<String> = world
            .outbox()
            .into_iter()
            .map(|(k, to)| format!("{k} {to}"))
            .collect();
        assert_eq!(
            sent,
            [
                "escalation boss@example.test",
                "escalation lead@example.test",
                "acknowledgement customer1@example.test",
            ],
            "newest first"
        );
    }

    #[tokio::test]
    async fn the_clock_stops_while_pending_and_runs_on_with_what_was_left() {
        let world = World::new();
        // Monday 10:00 Athens: due 12:00 (10:00Z).
        let mona = "Mona <customer1@example.test>";
        world
            .ingest(mona, "clock2@customer.test", 1, "2026-11-30T08:00:00Z")
            .await;
        let deadlines = Arc::clone(&world.config.deadlines);
        let ticket = TicketId(1);
        off_runtime(|| {
            world.store.write_blocking(|tx| {
                // Pending at 11:00 (one working hour left), open again Tuesday 09:00.
                let paused = at("2026-11-30T09:00:00Z");
                tx.set_ticket_status(ticket, TicketStatus::Pending, paused)?;
                status_changed(
                    tx,
                    ticket,
                    TicketStatus::Open,
                    TicketStatus::Pending,
                    &deadlines,
                    paused,
                )?;
                let resumed = at("2026-12-01T07:00:00Z");
                tx.set_ticket_status(ticket, TicketStatus::Open, resumed)?;
                status_changed(
                    tx,
                    ticket,
                    TicketStatus::Pending,
                    TicketStatus::Open,
                    &deadlines,
                    resumed,
                )?;
                Ok(())
            })
        })
        .expect("pause and resume");
        let due = off_runtime(|| world.store.read_blocking(|tx| tx.ticket(ticket)))
            .expect("ticket")
            .and_then(|t| t.next_due_at);
        assert_eq!(
            due,
            Some(at("2026-12-01T08:00:00Z")),
            "Tuesday 10:00 Athens"
        );
        // Nothing fired while pending, although Monday 12:00 passed.
        assert_eq!(world.run("2026-12-01T06:00:00Z").0, 0);
    }

    /// Issue 17: one unreadable row does not stop the other escalations.
    #[tokio::test]
    async fn a_poison_item_is_parked_and_every_other_escalation_fires_once() {
        if store_is_postgres() {
            eprintln!("skipped on PostgreSQL: its due_at is BIGINT and cannot hold 'not a time'");
            return;
        }
        let world = World::new();
        for n in 1..=3 {
            let (from, id) = (
                format!("customer{n}@example.test"),
                format!("poison{n}@customer.test"),
            );
            world.ingest(&from, &id, n, "2026-11-30T08:00:00Z").await;
        }
        // The second customer's deadline row is made unreadable, as a bad migration or a
        // hand edit would leave it.
        let conn = rusqlite::Connection::open(
            world.config.database.sqlite_path().expect("a SQLite store"),
        )
        .expect("open");
        conn.execute(
            "UPDATE deadlines SET due_at = 'not a time' WHERE ticket_id = 2",
            [],
        )
        .expect("corrupt");
        drop(conn);
        // Tuesday: every step of both good deadlines is due: warning, breach, two levels.
        assert_eq!(world.run("2026-12-01T12:00:00Z").0, 8);
        assert_eq!(world.run("2026-12-01T12:00:00Z").0, 0, "once");
        let escalations: Vec<(String, String)> = world
            .outbox()
            .into_iter()
            .filter(|(kind, _)| kind == "escalation")
            .collect();
        assert_eq!(escalations.len(), 4, "two levels for each good ticket");
        let failed: Vec<_> =
            off_runtime(|| world.store.read_blocking(|tx| tx.events("item.failed", 10)))
                .expect("events");
        assert_eq!(failed.len(), 1, "parked once, not retried: {failed:?}");
        assert_eq!(failed[0].ticket.map(|t| t.0), Some(2));
        assert!(
            failed[0].detail.starts_with("deadline "),
            "{}",
            failed[0].detail
        );
    }

    /// Issue 18: a start under unchanged scheduling settings keeps the stored plans and plans
    /// only what has no next step (a parked item); changed settings plan everything again.
    #[tokio::test]
    async fn start_plans_everything_again_only_when_the_settings_changed() {
        let world = World::new();
        for n in 1..=2 {
            let (from, id) = (
                format!("customer{n}@example.test"),
                format!("plan{n}@customer.test"),
            );
            world.ingest(&from, &id, n, "2026-11-30T08:00:00Z").await;
        }
        let now = at("2026-11-30T08:00:01Z");
        let start = |config: Arc<Config>| {
            let store = world.store.clone();
            async move { replan(&store, &config, now, || {}).await.expect("replan") }
        };
        let next = |ticket: i64| world.next_step_at(ticket);
        let first = start(Arc::clone(&world.config)).await;
        assert!(first.whole, "nothing recorded: every item is planned");
        assert_eq!(first.planned, 2);
        let planned = next(1);
        assert!(planned.is_some());
        // A plan that differs from what the settings give: kept while they are unchanged.
        let set = |sql: &str| world.execute(sql);
        set("UPDATE deadlines SET next_step_at = next_step_at + 1 WHERE ticket_id = 1");
        let again = start(Arc::clone(&world.config)).await;
        assert_eq!((again.whole, again.planned), (false, 0), "the plans hold");
        assert_eq!(next(1), planned.map(|at| at + 1));

        set("UPDATE deadlines SET next_step_at = NULL WHERE ticket_id = 2");
        let parked = start(Arc::clone(&world.config)).await;
        assert_eq!((parked.whole, parked.planned), (false, 1));
        assert!(next(2).is_some(), "the unplanned deadline is planned again");

        let path = world.dir.path().join("deskgate.toml");
        let later = world.text.replace("warning = \"1h\"", "warning = \"30m\"");
        let changed = Config::from_toml(&path, &later).unwrap_or_else(|e| panic!("{e}"));
        let changed = start(Arc::new(changed)).await;
        assert_eq!((changed.whole, changed.planned), (true, 2));
        assert_eq!(next(1), planned, "planned again under the new settings");
    }
}
