//! Operations on the real binary: the systemd notify and watchdog protocol, reload while
//! mail flows, /healthz and /metrics, push ingest from the MTA, secrets kept out of logs.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon::{Imap, Setup, UNLIMITED_SENDERS};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

/// A unix datagram socket standing in for systemd's NOTIFY_SOCKET; collects every datagram
/// with the time it arrived.
pub struct NotifySocket {
    pub path: std::path::PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    pub fn bind(dir: &std::path::Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, done) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().expect("lock").push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            path,
            received,
            stop,
        }
    }

    fn all(&self) -> Vec<String> {
        let received = self.received.lock().expect("lock");
        received.iter().map(|(_, text)| text.clone()).collect()
    }

    /// When each WATCHDOG=1 ping arrived.
    pub fn pings(&self) -> Vec<Instant> {
        let received = self.received.lock().expect("lock");
        received
            .iter()
            .filter(|(_, text)| text == "WATCHDOG=1\n")
            .map(|(at, _)| *at)
            .collect()
    }

    /// Waits until some datagram after the first `after` satisfies `pred`; returns its index.
    pub fn wait(&self, after: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        let started = Instant::now();
        loop {
            if let Some(i) = self.all().iter().skip(after).position(|m| pred(m)) {
                return after + i;
            }
            assert!(
                started.elapsed() < WAIT,
                "no {what} on NOTIFY_SOCKET within {WAIT:?}; got {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Lab user `from` writes to lab user `to`.
async fn send(lab: &Lab, from: &str, to: &str, subject: &str, id: &str) {
    let (from, to) = (lab.address(from), lab.address(to));
    let raw = message(&from, &to, subject, id, "Hello, it is broken.\n", &[]);
    lab.send(&from, &[&to], &raw).await;
}

const SALES: &str = r#"
[[mailbox]]
name = "sales"
host = "127.0.0.1"
port = PORT
tls = "implicit"
user = "sales@example.test"
password = "sales-pw"
poll_interval = "1s"
timeout = "20s"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn notify_watchdog_and_reload_while_mail_flows() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let notify = NotifySocket::bind(setup.dir.path());
    let socket = notify.path.display().to_string();
    let daemon = setup.spawn_with(&[
        ("DESKGATE_LOG", "deskgate=debug,info"),
        ("NOTIFY_SOCKET", &socket),
        // systemd's WatchdogSec=2s: a ping every second while healthy.
        ("WATCHDOG_USEC", "2000000"),
    ]);

    // READY=1 once the database is open and the tasks run; STATUS= follows the mailbox.
    let ready = notify.wait(0, "READY=1", |m| m.lines().any(|l| l == "READY=1"));
    notify.wait(ready, "STATUS=1 mailbox idle", |m| {
        m.contains("STATUS=1 mailbox idle, outbox 0")
    });
    let first_ping = notify.wait(0, "WATCHDOG=1", |m| m == "WATCHDOG=1\n");
    notify.wait(first_ping + 1, "a second WATCHDOG=1", |m| {
        m == "WATCHDOG=1\n"
    });

    send(
        &lab,
        "customer1",
        "support",
        "Before reload",
        "r1@customer.test",
    )
    .await;
    lab.wait_for("customer1", "INBOX", 1, WAIT).await;

    // A good reload adds the sales mailbox; support keeps its IMAP session.
    let port = lab.imaps_port.to_string();
    setup.append_config(&SALES.replace("PORT", &port));
    let before = notify.all().len();
    daemon.reload();
    let reloading = notify.wait(before, "RELOADING=1", |m| m.contains("RELOADING=1"));
    let datagram = &notify.all()[reloading];
    assert!(
        datagram.contains("MONOTONIC_USEC="),
        "RELOADING=1 carries MONOTONIC_USEC: {datagram:?}"
    );
    notify.wait(reloading + 1, "READY=1 after the reload", |m| {
        m.lines().any(|l| l == "READY=1")
    });
    setup
        .wait_log("mailbox connected mailbox=sales", 1, WAIT)
        .await;
    notify.wait(reloading, "STATUS=2 mailboxes idle", |m| {
        m.contains("STATUS=2 mailboxes idle")
    });
    send(&lab, "customer2", "sales", "To sales", "r2@customer.test").await;
    lab.wait_for("customer2", "INBOX", 1, WAIT).await;

    // A bad reload changes nothing: the log says why, mail keeps flowing on both mailboxes.
    let good = std::fs::read_to_string(&setup.config).expect("read config");
    setup.edit_config(|text| text.replace("poll_interval = \"1s\"", "poll_interval = \"soon\""));
    let before = notify.all().len();
    daemon.reload();
    let reloading = notify.wait(before, "RELOADING=1", |m| m.contains("RELOADING=1"));
    notify.wait(reloading + 1, "READY=1 after the refused reload", |m| {
        m.lines().any(|l| l == "READY=1")
    });
    setup.wait_log("reload refused", 1, WAIT).await;
    assert!(
        setup.log().contains("poll_interval"),
        "the refusal names the problem:\n{}",
        setup.log()
    );
    send(
        &lab,
        "customer3",
        "support",
        "After bad reload",
        "r3@customer.test",
    )
    .await;
    send(
        &lab,
        "customer4",
        "sales",
        "Sales after bad reload",
        "r4@customer.test",
    )
    .await;
    lab.wait_for("customer3", "INBOX", 1, WAIT).await;
    lab.wait_for("customer4", "INBOX", 1, WAIT).await;

    // A changed mailbox is restarted, a removed one stopped; the others stay connected.
    let changed = good.replace(&SALES.replace("PORT", &port), "");
    std::fs::write(&setup.config, changed).expect("write config");
    daemon.reload();
    setup
        .wait_log("stopping: no longer configured task=mailbox sales", 1, WAIT)
        .await;
    setup
        .wait_log("mailbox task stopped mailbox=sales", 1, WAIT)
        .await;
    notify.wait(0, "STATUS=1 mailbox idle after removing sales", |m| {
        m.contains("STATUS=1 mailbox idle")
    });
    let log = setup.log();
    assert_eq!(
        log.matches("mailbox connected mailbox=support").count(),
        1,
        "support was never reconnected by the reloads:\n{log}"
    );
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(4));

    let (status, _) = daemon.stop();
    assert!(status.success());
    assert!(
        notify.all().iter().any(|m| m.contains("STOPPING=1")),
        "{:#?}",
        notify.all()
    );
    // Secrets never reach the log, not even through a reload of the file holding them.
    let log = setup.log();
    for secret in [lab.password("support"), lab.password("sales")] {
        assert!(!log.contains(&secret), "{secret} in the log:\n{log}");
    }
}

/// The value of the sample `name` (with its labels, exactly) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_and_metrics_after_a_known_sequence_of_mails() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let daemon = setup.start();
    let support = lab.address("support");
    // Two customers and one auto-reply: three tickets, two acknowledgements (an automatic
    // reply is never acknowledged).
    send(&lab, "customer1", "support", "One", "k1@customer.test").await;
    send(&lab, "customer2", "support", "Two", "k2@customer.test").await;
    let auto = message(
        &lab.address("customer3"),
        &support,
        "Out of office",
        "k3@customer.test",
        "I am away.\n",
        &[("Auto-Submitted", "auto-replied")],
    );
    lab.send(&lab.address("customer3"), &[&support], &auto)
        .await;
    lab.wait_for("customer1", "INBOX", 1, WAIT).await;
    lab.wait_for("customer2", "INBOX", 1, WAIT).await;
    setup
        .wait_json(&["events"], WAIT, |v| {
            v.as_array().is_some_and(|events| {
                events
                    .iter()
                    .filter(|e| e["kind"] == "message.received")
                    .count()
                    == 3
                    && events.iter().filter(|e| e["kind"] == "outbox.sent").count() == 2
            })
        })
        .await;

    let (code, body) = setup.http_get("/healthz");
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(
        health["mailboxes"]["support"]["connected"], true,
        "{health:#}"
    );
    assert!(
        health["mailboxes"]["support"]["last_success"].is_string(),
        "{health:#}"
    );
    assert_eq!(health["outbox"]["depth"], 0, "{health:#}");
    assert!(
        health["outbox"]["oldest_age_seconds"].is_null(),
        "{health:#}"
    );

    let check = |text: &str| {
        for (name, value) in [
            (
                "deskgate_messages_total{mailbox=\"support\",class=\"customer\"}",
                2.0,
            ),
            (
                "deskgate_messages_total{mailbox=\"support\",class=\"auto-reply\"}",
                1.0,
            ),
            ("deskgate_tickets_opened_total{mailbox=\"support\"}", 3.0),
            ("deskgate_acknowledgements_sent_total", 2.0),
            ("deskgate_send_failures_total{outcome=\"failed\"}", 0.0),
            ("deskgate_outbox_depth", 0.0),
            ("deskgate_ack_latency_seconds_count", 2.0),
            ("deskgate_ack_latency_seconds_bucket{le=\"+Inf\"}", 2.0),
            ("deskgate_deadline_breaches_total", 0.0),
        ] {
            assert_eq!(sample(text, name), Some(value), "{name} in\n{text}");
        }
        assert_eq!(
            sample(text, "deskgate_reconnects_total{mailbox=\"support\"}"),
            Some(0.0),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    };
    let (code, metrics) = setup.http_get("/metrics");
    assert_eq!(code, 200, "{metrics}");
    check(&metrics);
    assert_eq!(
        sample(&metrics, "deskgate_mailbox_connected{mailbox=\"support\"}"),
        Some(1.0)
    );

    // Counters come from the events: a restart changes nothing.
    let (status, _) = daemon.stop();
    assert!(status.success());
    let daemon = setup.start();
    let (_, metrics) = setup.http_get("/metrics");
    check(&metrics);

    // A wrong password, reloaded: the mailbox restarts, cannot log in, /healthz says 503 and why.
    setup.edit_config(|text| {
        text.replace(
            &format!("password = \"{}\"", lab.password("support")),
            "password = \"wrong-password\"",
        )
    });
    daemon.reload();
    setup
        .wait_log(
            "restarting: its settings changed task=mailbox support",
            1,
            WAIT,
        )
        .await;
    let started = Instant::now();
    let body = loop {
        let (code, body) = setup.http_get("/healthz");
        if code == 503 && body.contains("not connected:") {
            break body;
        }
        assert!(
            started.elapsed() < WAIT,
            "no 503 within {WAIT:?}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(
        health["mailboxes"]["support"]["state"], "failing",
        "{health:#}"
    );
    let problem = health["problems"][0].as_str().expect("a problem");
    assert!(
        problem.starts_with("mailbox support: not connected: "),
        "{problem}"
    );
    assert!(!body.contains("wrong-password"), "{body}");
    let (_, metrics) = setup.http_get("/metrics");
    assert_eq!(
        sample(&metrics, "deskgate_mailbox_connected{mailbox=\"support\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert!(!setup.log().contains("wrong-password"), "{}", setup.log());
}

/// `deskgate --config CONFIG ingest` with `stdin`; returns the exit code and stderr.
pub fn ingest(config: &Path, mailbox: &str, stdin: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_deskgate"))
        .arg("--config")
        .arg(config)
        .args(["ingest", "--mailbox", mailbox])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deskgate ingest");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write the message");
    let output = child.wait_with_output().expect("wait");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The exit codes the MTA relies on. No servers needed: nothing connects.
#[test]
fn ingest_exit_codes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("deskgate.toml");
    std::fs::write(
        &config,
        r#"database = "deskgate.db"
[support]
address = "support@example.test"
name = "Support"
[policy]
no_ack_domains = []
[[mailbox]]
name = "support"
host = "127.0.0.1"
port = 1
tls = "plain"
user = "support@example.test"
password_file = "pw"
[smtp]
host = "127.0.0.1"
port = 1
tls = "plain"
[http]
enabled = false
"#,
    )
    .expect("write config");
    std::fs::write(dir.path().join("pw"), "secret\n").expect("write password");
    let setup = Setup {
        config,
        dir,
        http_port: 0,
    };
    let customer = message(
        "Mona <mona@customer.test>",
        "support@example.test",
        "Printer",
        "p1@customer.test",
        "It smokes.\n",
        &[],
    );

    // Committed: 0, a ticket and its queued acknowledgement.
    assert_eq!(ingest(&setup.config, "support", &customer).0, 0);
    let tickets = setup.json(&["tickets"]);
    assert_eq!(tickets.as_array().map(Vec::len), Some(1), "{tickets:#}");
    let outbox = setup.json(&["outbox"]);
    assert_eq!(outbox[0]["kind"], "acknowledgement", "{outbox:#}");
    assert_eq!(outbox[0]["status"], "queued", "{outbox:#}");
    // The same message again (the MTA retried after a lost exit status): 0, nothing new.
    assert_eq!(ingest(&setup.config, "support", &customer).0, 0);
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(1));

    // Not a message at all: quarantined, 0 (bouncing it would help nobody).
    let (code, stderr) = ingest(&setup.config, "support", b"\x00\x01\x02 garbage\x00\n");
    assert_eq!(code, 0, "{stderr}");
    let held = setup.json(&["quarantine", "list"]);
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held:#}");

    // Temporary failures: 75, nothing committed, and the reason on stderr for the MTA's log.
    let (code, stderr) = ingest(&setup.config, "nosuch", &customer);
    assert_eq!(code, 75, "{stderr}");
    assert!(stderr.contains("no [[mailbox]] named `nosuch`"), "{stderr}");

    // The database locked by another writer for longer than the busy timeout.
    let db = rusqlite::Connection::open(setup.database()).expect("open the database");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let other = message(
        "Nils <nils@customer.test>",
        "support@example.test",
        "Scanner",
        "p2@customer.test",
        "Jammed.\n",
        &[],
    );
    let (code, stderr) = ingest(&setup.config, "support", &other);
    assert_eq!(code, 75, "{stderr}");
    assert!(
        stderr.contains("locked") || stderr.contains("busy"),
        "{stderr}"
    );
    db.execute_batch("ROLLBACK").expect("unlock");
    drop(db);
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(1));
    // The retry succeeds.
    assert_eq!(ingest(&setup.config, "support", &other).0, 0);
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(2));

    // An invalid configuration is temporary too: the admin fixes it, the MTA retries.
    setup.edit_config(|text| text.replace("[support]", "[suport]"));
    let (code, stderr) = ingest(&setup.config, "support", &other);
    assert_eq!(code, 75, "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

/// Postfix delivers through a pipe transport to `deskgate ingest`; a temporary failure
/// (exit 75) leaves the message in Postfix's queue, and the retry stores it; the running
/// daemon sends the acknowledgement.
#[tokio::test(flavor = "multi_thread")]
async fn postfix_pipe_transport_delivers_and_retries() {
    let Some(lab) = Lab::start() else { return };
    // The pipe runs as nobody: it needs the binary, the configuration and the database.
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let chmod = |path: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    chmod(setup.dir.path(), 0o777);
    chmod(&setup.config, 0o644);
    chmod(&setup.dir.path().join("smtp-password"), 0o644);
    // A recipient of its own, so support@'s IMAP folder stays empty: only the pipe delivers.
    let argv = format!(
        "{} --config {} --log-format text ingest --mailbox support",
        env!("CARGO_BIN_EXE_deskgate"),
        setup.config.display()
    );
    lab.pipe_transport("support+pipe@example.test", "nobody", &argv);

    // 1. The configuration is broken: deskgate exits 75, Postfix defers and keeps the mail.
    let good = std::fs::read_to_string(&setup.config).expect("read config");
    setup.edit_config(|text| text.replace("[support]", "[suport]"));
    let customer = lab.address("customer1");
    let original = message(
        &customer,
        "support+pipe@example.test",
        "Piped",
        "pipe1@customer.test",
        "Through the MTA.\n",
        &[],
    );
    lab.send(&customer, &["support+pipe@example.test"], &original)
        .await;
    let started = Instant::now();
    while !lab.postfix_log().contains("status=deferred") {
        assert!(
            started.elapsed() < WAIT,
            "Postfix did not defer:\n{}",
            lab.postfix_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = lab.postfix_log();
    assert!(
        log.contains("not stored"),
        "our reason is in Postfix's log:\n{log}"
    );
    assert!(!setup.database().exists() || setup.json(&["tickets"]) == serde_json::json!([]));

    // 2. Fixed: the retry stores it (exit 0, status=sent), and the daemon acknowledges it.
    std::fs::write(&setup.config, good).expect("write config");
    let daemon = setup.start();
    chmod(&setup.database(), 0o666);
    for suffix in ["-wal", "-shm"] {
        let path = setup.dir.path().join(format!("deskgate.db{suffix}"));
        if path.exists() {
            chmod(&path, 0o666);
        }
    }
    lab.flush_queue();
    let started = Instant::now();
    while !lab
        .postfix_log()
        .lines()
        .any(|l| l.contains("relay=deskgate") && l.contains("status=sent"))
    {
        assert!(
            started.elapsed() < WAIT,
            "Postfix did not deliver through the pipe:\n{}",
            lab.postfix_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tickets = setup.json(&["tickets"]);
    assert_eq!(tickets.as_array().map(Vec::len), Some(1), "{tickets:#}");
    assert_eq!(tickets[0]["customer"]["address"], customer.as_str());
    // The daemon notices the other process's commit and sends the acknowledgement.
    let inbox = lab.wait_for("customer1", "INBOX", 1, WAIT).await;
    assert!(
        String::from_utf8_lossy(&inbox[0]).contains("Re: Piped"),
        "{}",
        String::from_utf8_lossy(&inbox[0])
    );
    assert!(
        lab.fetch_all("support", "INBOX").await.is_empty(),
        "the pipe, not the mailbox, delivered it"
    );
    drop(daemon);
}
