//! Issue 17: the failure of one thing (a recipient, the SMTP transport, the disk, a server)
//! never stops the rest, and nothing is lost or doubled. Real Postfix and Dovecot, plus a
//! small fake SMTP greeter in front of Postfix for the smarthost that answers 554.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::agents::{answer, with_agents};
use crate::daemon::{Imap, Setup, UNLIMITED_SENDERS, parsed};
use crate::durability::CUSTOMERS;
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(60);

/// `/healthz`'s problems.
fn problems(setup: &Setup) -> Vec<String> {
    let (_, body) = setup.http_get("/healthz");
    let health: Value = serde_json::from_str(&body).expect("healthz JSON");
    health["problems"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `/healthz` until one problem contains `needle`; returns it.
async fn wait_problem(setup: &Setup, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(found) = problems(setup).into_iter().find(|p| p.contains(needle)) {
            return found;
        }
        assert!(
            started.elapsed() < limit,
            "no problem with {needle:?} on /healthz within {limit:?}: {:?}\nlog:\n{}",
            problems(setup),
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until every outbox row is sent and there are `n`; returns the rows.
async fn wait_all_sent(setup: &Setup, n: usize, limit: Duration) -> Value {
    setup
        .wait_json(&["outbox"], limit, |o| {
            o.as_array()
                .is_some_and(|rows| rows.len() == n && rows.iter().all(|r| r["status"] == "sent"))
        })
        .await
}

/// Each customer's inbox holds exactly one acknowledgement per message they wrote, counted by
/// Message-ID: when Dovecot or Postfix is stopped mid-delivery, Postfix may hand the lab's
/// LMTP one message twice (its at-least-once delivery, not ours), and the copy carries the same
/// Message-ID, which the customer's client shows once. deskgate sending twice would mint a
/// second acknowledgement with its own Message-ID, which this counts.
async fn one_acknowledgement_each(lab: &Lab, per_customer: &[(&str, usize)]) {
    for (customer, n) in per_customer {
        lab.wait_for(customer, "INBOX", *n, WAIT).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let inbox = lab.fetch_all(customer, "INBOX").await;
        let mut ids: Vec<String> = inbox
            .iter()
            .map(|raw| parsed(raw).message_id.unwrap_or_default())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            *n,
            "{customer}: one acknowledgement per message ({} copies in the inbox)",
            inbox.len()
        );
    }
}

/// `n` customer messages (round robin over the lab's customers), as (customer, raw).
fn burst(lab: &Lab, tag: &str, n: usize) -> Vec<(&'static str, Vec<u8>)> {
    let support = lab.address("support");
    (0..n)
        .map(|index| {
            let customer = CUSTOMERS[index % CUSTOMERS.len()];
            let raw = message(
                &lab.address(customer),
                &support,
                &format!("{tag} {index}"),
                &format!("{tag}{index}@customer.test"),
                "help\n",
                &[],
            );
            (customer, raw)
        })
        .collect()
}

fn per_customer(n: usize) -> Vec<(&'static str, usize)> {
    CUSTOMERS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                *c,
                n / CUSTOMERS.len() + usize::from(i < n % CUSTOMERS.len()),
            )
        })
        .filter(|(_, k)| *k > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_cc_still_lets_the_customer_have_the_answer_and_the_agent_is_told() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    // The lab's Postfix refuses unknown users at RCPT: 550 5.1.1.
    let ghost = "ghost@example.test";
    let original = message(
        &format!("Mona Q <{customer}>"),
        &support,
        "Printer on fire",
        "refused1@customer.test",
        "It smokes.\n",
        &[("Cc", ghost)],
    );
    lab.send(&customer, &[&support], &original).await;
    let notification = lab.wait_for("agent1", "INBOX", 1, WAIT).await.remove(0);
    lab.wait_for("customer1", "INBOX", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    answer(&lab, "agent1", &notification, "Please unplug it.").await;

    // The customer gets the answer although the Cc was refused.
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    assert!(
        inbox
            .iter()
            .any(|m| parsed(m).text.starts_with("Please unplug it.")),
        "the relayed answer reached the customer"
    );
    let outbox = setup
        .wait_json(&["outbox"], WAIT, |o| {
            o.as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["kind"] == "reply" && r["status"] == "sent")
            })
        })
        .await;
    let reply = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "reply")
        .unwrap()
        .clone();
    let refused = reply["refused"][0].as_str().unwrap_or("");
    assert!(
        refused.starts_with(&format!("{ghost}: ")) && refused.contains("550"),
        "the refusal is shown with the server's reason: {reply:#}"
    );
    assert_eq!(reply["attempts"], 1, "not retried: {reply:#}");

    // The agent who answered is told who did not get it and why.
    let agent_inbox = lab.wait_for("agent1", "INBOX", 2, WAIT).await;
    let notice = agent_inbox
        .iter()
        .map(|m| parsed(m))
        .find(|m| m.text.contains(ghost) && m.text.contains("550"))
        .unwrap_or_else(|| panic!("no notice naming {ghost} in agent1's inbox"));
    assert!(notice.text.contains("550"), "{}", notice.text);
    let ticket = setup.json(&["ticket", "1"]);
    let refusal = ticket["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "outbox.refused")
        .unwrap_or_else(|| panic!("no outbox.refused event: {ticket:#}"));
    assert!(refusal["detail"].as_str().unwrap_or("").contains(ghost));
    assert!(daemon.stop().0.success());
}

/// A smarthost in front of the lab's submission port: while `refusing`, it greets with 554
/// and hangs up; otherwise it passes the connection through to Postfix.
struct Greeter {
    port: u16,
    refusing: Arc<AtomicBool>,
}

impl Greeter {
    async fn start(upstream: u16) -> Greeter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind greeter");
        let port = listener.local_addr().expect("greeter address").port();
        let refusing = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&refusing);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(Greeter::serve(
                    client,
                    upstream,
                    flag.load(Ordering::SeqCst),
                ));
            }
        });
        Greeter { port, refusing }
    }

    async fn serve(mut client: TcpStream, upstream: u16, refusing: bool) {
        if refusing {
            let _ = client
                .write_all(b"554 5.3.2 smarthost not accepting mail right now\r\n")
                .await;
            let _ = client.shutdown().await;
            return;
        }
        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_smarthost_answering_554_at_the_greeting_fails_no_row_and_delivers_once_after() {
    let Some(lab) = Lab::start() else { return };
    let greeter = Greeter::start(lab.submission_port).await;
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let submission = format!("port = {}\ntls = \"starttls\"", lab.submission_port);
    setup.edit_config(|text| {
        text.replace(
            &submission,
            &format!("port = {}\ntls = \"starttls\"", greeter.port),
        )
    });
    let daemon = setup.start();
    const N: usize = 6;
    for (customer, raw) in burst(&lab, "greeting", N) {
        lab.send(&lab.address(customer), &[&lab.address("support")], &raw)
            .await;
    }
    let problem = wait_problem(&setup, "smtp: ", WAIT).await;
    assert!(problem.contains("554"), "{problem}");
    // Several passes meet the 554 (backoff 1 s, 2 s, 4 s…): still no row is decided.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let outbox = setup.json(&["outbox"]);
    let rows = outbox.as_array().unwrap();
    assert_eq!(rows.len(), N, "{outbox:#}");
    for row in rows {
        assert_eq!(row["status"], "queued", "{row:#}");
        assert_eq!(
            row["attempts"], 0,
            "a broken transport costs no attempt: {row:#}"
        );
    }
    let (_, metrics) = setup.http_get("/metrics");
    let transport = metrics
        .lines()
        .find(|l| l.starts_with("deskgate_send_failures_total{outcome=\"transport\"}"))
        .unwrap_or_else(|| panic!("no transport failures in /metrics:\n{metrics}"));
    assert!(!transport.ends_with(" 0"), "{transport}");

    greeter.refusing.store(false, Ordering::SeqCst);
    wait_all_sent(&setup, N, Duration::from_secs(90)).await;
    one_acknowledgement_each(&lab, &per_customer(N)).await;
    assert!(
        !problems(&setup).iter().any(|p| p.starts_with("smtp: ")),
        "the smtp problem clears after a delivery"
    );
    assert!(daemon.stop().0.success());
}

/// Mounts a tmpfs of `size` at a fresh directory; `None` (and why) if mounting fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    /// Fills the file system with one file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_pauses_ingest_and_every_message_becomes_one_ticket_after() {
    let Some(lab) = Lab::start() else { return };
    let Some(disk) = Tmpfs::mount("8m") else {
        panic!("mount -t tmpfs failed: this test needs root");
    };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let database = disk.dir.path().join("deskgate.db");
    setup.edit_config(|text| {
        text.replace(
            "database = \"deskgate.db\"",
            &format!("database = \"{}\"", database.display()),
        )
    });
    // So the helpers that look for the database in the setup's directory find it.
    std::os::unix::fs::symlink(&database, setup.database()).expect("symlink the database");
    let daemon = setup.start();
    let support = lab.address("support");
    // A first message while there is room.
    let mails = burst(&lab, "full", 21);
    lab.send(&lab.address(mails[0].0), &[&support], &mails[0].1)
        .await;
    lab.wait_for(mails[0].0, "INBOX", 1, WAIT).await;

    let filler = disk.fill();
    for (customer, raw) in &mails[1..] {
        lab.send(&lab.address(customer), &[&support], raw).await;
    }
    let problem = wait_problem(&setup, "database: ", WAIT).await;
    assert!(problem.contains("full"), "{problem}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quarantined = setup.json(&["quarantine", "list"]);
    assert_eq!(
        quarantined.as_array().map(Vec::len),
        Some(0),
        "nothing quarantined: {quarantined:#}"
    );

    std::fs::remove_file(filler).expect("free the disk");
    setup
        .wait_json(&["tickets"], Duration::from_secs(90), |t| {
            t.as_array().is_some_and(|l| l.len() >= mails.len())
        })
        .await;
    wait_all_sent(&setup, mails.len(), Duration::from_secs(90)).await;
    assert_eq!(
        setup.json(&["tickets"]).as_array().map(Vec::len),
        Some(mails.len()),
        "one ticket per message"
    );
    one_acknowledgement_each(&lab, &per_customer(mails.len())).await;
    assert_eq!(
        setup.json(&["quarantine", "list"]).as_array().map(Vec::len),
        Some(0)
    );
    assert!(daemon.stop().0.success());
}

/// Stops the lab's Dovecot and every process of it (as `systemctl restart dovecot` does:
/// `doveadm stop` alone leaves the IMAP sessions running), then starts it again.
async fn restart_dovecot(lab: &Lab) {
    let config = lab.dir.join("dovecot/etc/dovecot.conf");
    let text = std::fs::read_to_string(&config).expect("read dovecot.conf");
    let instance = text
        .lines()
        .find_map(|l| l.strip_prefix("instance_name = "))
        .expect("instance_name in the lab's dovecot.conf")
        .trim()
        .to_string();
    let status = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(&config)
        .arg("stop")
        .status()
        .expect("doveadm stop");
    assert!(status.success(), "doveadm stop");
    // Only this lab's processes: Dovecot titles them `dovecot-<instance>/<service>`.
    let title = format!("dovecot-{instance}/");
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.starts_with(title.as_bytes()) {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", lab.imaps_port))
        .await
        .is_ok()
    {
        assert!(started.elapsed() < WAIT, "Dovecot did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = std::process::Command::new("dovecot")
        .arg("-c")
        .arg(&config)
        .status()
        .expect("start dovecot");
    assert!(status.success(), "dovecot did not start");
    while TcpStream::connect(("127.0.0.1", lab.imaps_port))
        .await
        .is_err()
    {
        assert!(started.elapsed() < WAIT, "Dovecot did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The support mailbox's state on `/healthz`.
fn mailbox_state(setup: &Setup) -> String {
    let (_, body) = setup.http_get("/healthz");
    let health: Value = serde_json::from_str(&body).expect("healthz JSON");
    health["mailboxes"]["support"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_restarted_mid_idle_is_rejoined_within_30s_and_nothing_is_lost_or_doubled() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let daemon = setup.start();
    let support = lab.address("support");
    let mails = burst(&lab, "idle", 10);
    for (customer, raw) in &mails[..5] {
        lab.send(&lab.address(customer), &[&support], raw).await;
    }
    wait_all_sent(&setup, 5, WAIT).await;
    let started = Instant::now();
    while mailbox_state(&setup) != "idle" {
        assert!(started.elapsed() < WAIT, "never idle: {}", setup.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    restart_dovecot(&lab).await;
    let restarted = Instant::now();
    // Mail keeps arriving: Postfix delivers into the restarted Dovecot.
    for (customer, raw) in &mails[5..] {
        lab.send(&lab.address(customer), &[&support], raw).await;
    }
    wait_all_sent(&setup, mails.len(), WAIT).await;
    let rejoined = restarted.elapsed();
    eprintln!("dovecot restart: all mail acknowledged {rejoined:?} after Dovecot was back");
    assert!(rejoined < Duration::from_secs(30), "{rejoined:?}");
    let log = setup.log();
    assert!(
        log.contains("mailbox session failed; reconnecting"),
        "{log}"
    );
    assert_eq!(
        setup.json(&["tickets"]).as_array().map(Vec::len),
        Some(mails.len())
    );
    one_acknowledgement_each(&lab, &per_customer(mails.len())).await;
    assert!(daemon.stop().0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_mailbox_password_is_one_alert_mail_then_an_all_clear_after_the_reload() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let password = lab.password("support");
    setup.edit_config(|text| {
        text.replacen(
            &format!("password = \"{password}\""),
            "password = \"wrong-pw\"",
            1,
        )
    });
    setup.append_config(
        r#"
[alerts]
to = ["postmaster@example.test"]
after = "3s"
repeat = "1h"
"#,
    );
    let daemon = setup.spawn();
    let started = Instant::now();
    let alert = lab.wait_for("postmaster", "INBOX", 1, WAIT).await.remove(0);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before `after`"
    );
    let alert = parsed(&alert);
    assert!(
        alert
            .subject
            .contains("mailbox support cannot log in or sync"),
        "{}",
        alert.subject
    );
    assert!(
        alert.text.contains("check-config --connect"),
        "{}",
        alert.text
    );
    // The mailbox keeps failing: no second mail before `repeat`.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(lab.fetch_all("postmaster", "INBOX").await.len(), 1);

    setup.edit_config(|text| {
        text.replacen(
            "password = \"wrong-pw\"",
            &format!("password = \"{password}\""),
            1,
        )
    });
    daemon.reload();
    let inbox = lab.wait_for("postmaster", "INBOX", 2, WAIT).await;
    let clear = inbox
        .iter()
        .map(|m| parsed(m))
        .find(|m| m.subject.contains("all clear"))
        .expect("an all-clear mail");
    assert!(
        clear.subject.contains("mailbox support"),
        "{}",
        clear.subject
    );
    for raw in &inbox {
        let text = String::from_utf8_lossy(raw);
        assert!(
            !text.contains(&password) && !text.contains("wrong-pw"),
            "{text}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lab.fetch_all("postmaster", "INBOX").await.len(), 2);
    assert!(daemon.stop().0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_the_daemon_works_is_a_consistent_database() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let daemon = setup.start();
    let mails = burst(&lab, "backup", 40);
    let raws: Vec<Vec<u8>> = mails.iter().map(|(_, raw)| raw.clone()).collect();
    lab.append_many("support", "INBOX", &raws).await;
    // Copies taken while the daemon ingests and sends.
    let mut copies = Vec::new();
    for n in 0..3 {
        let file = setup.dir.path().join(format!("copy{n}.db"));
        let output = setup.cli(&["backup", file.to_str().expect("utf-8 path")]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        copies.push(file);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_all_sent(&setup, mails.len(), WAIT).await;
    assert!(daemon.stop().0.success());
    for file in &copies {
        // Each copy is one committed state: every ticket has its acknowledgement queued.
        let conn = rusqlite::Connection::open(file).expect("open the copy");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        let (tickets, acks): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM outbox WHERE kind = 'acknowledgement')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count");
        assert_eq!(tickets, acks, "{}", file.display());
    }
    let again = setup.cli(&["backup", copies[0].to_str().expect("utf-8 path")]);
    assert!(
        !again.status.success(),
        "an existing file is not overwritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_scheduler_item_is_parked_and_every_other_escalation_fires_once() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    setup.edit_config(|text| {
        text.replace(
            "[deadlines]\nfirst_response = \"24h\"\n",
            "[deadlines]\nfirst_response = \"8s\"\n\n[[deadlines.escalation]]\nafter = \"0s\"\nto = [\"lead@example.test\"]\n",
        )
    });
    let daemon = setup.start();
    let mails = burst(&lab, "poison", 3);
    for (customer, raw) in &mails {
        lab.send(&lab.address(customer), &[&lab.address("support")], raw)
            .await;
    }
    setup
        .wait_json(&["tickets"], WAIT, |t| {
            t.as_array().is_some_and(|l| l.len() == 3)
        })
        .await;
    // The second ticket's deadline row is made unreadable while the daemon runs, as a bad
    // hand edit would leave it.
    let conn = rusqlite::Connection::open(setup.database()).expect("open");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let n = conn
        .execute(
            "UPDATE deadlines SET due_at = 'not a time' WHERE ticket_id = 2",
            [],
        )
        .expect("corrupt");
    assert_eq!(n, 1);
    drop(conn);

    let escalations = lab.wait_for("lead", "INBOX", 2, WAIT).await;
    let problem = wait_problem(&setup, "parked", WAIT).await;
    assert!(problem.contains("deadline"), "{problem}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        lab.fetch_all("lead", "INBOX").await.len(),
        2,
        "each good ticket escalated once"
    );
    let subjects: Vec<String> = escalations.iter().map(|m| parsed(m).subject).collect();
    assert!(
        subjects.iter().all(|s| !s.contains("[#2]")),
        "the poison ticket is not escalated: {subjects:?}"
    );
    let failed = setup.json(&["events", "--kind", "item.failed"]);
    let failed = failed.as_array().expect("events");
    assert_eq!(failed.len(), 1, "parked once: {failed:?}");
    assert_eq!(failed[0]["ticket"], 2);
    assert!(daemon.stop().0.success());
}
