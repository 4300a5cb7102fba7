//! TLS modes, SMTP outages and connection checks against the real servers.

use std::time::{Duration, Instant};

use crate::daemon::{Imap, Setup, UNLIMITED_SENDERS};
use crate::harness::{Lab, message};

#[tokio::test(flavor = "multi_thread")]
async fn imap_over_starttls_and_plain_loopback() {
    let Some(lab) = Lab::start() else { return };
    let support = lab.address("support");
    for (index, mode) in [Imap::Starttls, Imap::Plain].into_iter().enumerate() {
        let setup = Setup::new(&lab, mode, "");
        let check = setup.cli(&["check-config", "--connect"]);
        let report = String::from_utf8_lossy(&check.stdout).to_string();
        assert!(
            check.status.success(),
            "{mode:?}: {report}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(report.contains("imap support: ok"), "{report}");
        assert!(report.contains(": ok"), "{report}");
        if let Imap::Plain = mode {
            assert!(
                report.contains("warning: mailbox `support`: tls = \"plain\""),
                "{report}"
            );
        }
        let daemon = setup.start();
        let customer = lab.address(&format!("customer{}", index + 1));
        let raw = message(
            &customer,
            &support,
            &format!("Over {mode:?}"),
            &format!("tls{index}@c.test"),
            "x\n",
            &[],
        );
        lab.send(&customer, &[&support], &raw).await;
        lab.wait_for(
            &format!("customer{}", index + 1),
            "INBOX",
            1,
            Duration::from_secs(30),
        )
        .await;
        assert!(daemon.stop().0.success());
    }
}

/// Acknowledgements over SMTPS (implicit TLS, AUTH) and plain SMTP (a local relay, no
/// login); the sender keeps one connection for all of them.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_over_implicit_tls_and_plain_on_one_kept_connection() {
    let Some(lab) = Lab::start() else { return };
    let support = lab.address("support");
    let modes = [
        ("implicit", lab.submissions_port, "submissions"),
        ("plain", lab.smtp_port, "smtpd"),
    ];
    for (index, (tls, port, service)) in modes.into_iter().enumerate() {
        let setup = Setup::new(&lab, Imap::Implicit, "");
        setup.edit_config(|text| {
            let text = text.replace(
                &format!("port = {}\ntls = \"starttls\"", lab.submission_port),
                &format!("port = {port}\ntls = \"{tls}\""),
            );
            if tls == "plain" {
                text.replace(
                    &format!("user = \"{support}\"\npassword_file"),
                    "# password_file",
                )
            } else {
                text
            }
        });
        let daemon = setup.start();
        let customer = format!("customer{}", index + 1);
        let before = connects(&lab, service);
        for n in 0..3 {
            let raw = message(
                &lab.address(&customer),
                &support,
                &format!("Question {n} over SMTP {tls}"),
                &format!("smtp-{tls}-{n}@c.test"),
                "x\n",
                &[],
            );
            lab.send(&lab.address(&customer), &[&support], &raw).await;
        }
        lab.wait_for(&customer, "INBOX", 3, Duration::from_secs(30))
            .await;
        assert!(daemon.stop().0.success(), "{}", setup.log());
        // the customer's own three mails came in over plain SMTP too
        let extra = if tls == "plain" { 3 } else { 0 };
        assert_eq!(
            connects(&lab, service) - before,
            1 + extra,
            "one connection for three acknowledgements over {tls}"
        );
    }
}

/// Connections Postfix's `service` (smtpd, submissions) has accepted so far.
fn connects(lab: &Lab, service: &str) -> usize {
    let log = std::fs::read_to_string(lab.dir.join("log/postfix.log")).unwrap_or_default();
    let needle = if service == "smtpd" {
        "dglab-postfix/smtpd[".to_string()
    } else {
        format!("dglab-postfix/{service}/smtpd[")
    };
    log.lines()
        .filter(|l| l.contains(&needle) && l.contains(": connect from "))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_connect_says_what_failed() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    // A wrong IMAP password and an untrusted CA for SMTP.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replacen("password = \"support-pw\"", "password = \"wrong\"", 1);
    let text = text.replace(&format!("ca_file = \"{}\"", lab.ca_file.display()), "");
    std::fs::write(&setup.config, text).unwrap();
    let check = setup.cli(&["check-config", "--connect"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(
        report.contains("imap support: FAILED: TLS: invalid peer certificate: UnknownIssuer"),
        "{report}"
    );
    assert!(
        report.contains(&format!("smtp 127.0.0.1:{}: FAILED:", lab.submission_port)),
        "{report}"
    );

    let setup = Setup::new(&lab, Imap::Implicit, "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "password = \"support-pw\"",
        "password = \"wrong\"",
        1,
    );
    std::fs::write(&setup.config, text).unwrap();
    let check = setup.cli(&["check-config", "--connect"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains("imap support: FAILED: login as support@example.test refused"),
        "{report}"
    );
    assert!(
        report.contains(&format!("smtp 127.0.0.1:{}: ok", lab.submission_port)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_connect_lists_folders_and_what_needs_attention() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "processed_folder = \"Processed\"");
    let check = setup.cli(&["check-config", "--connect"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(
        report.contains(
            "imap support: FAILED: processed_folder Processed does not exist on the server; create it or unset processed_folder"
        ),
        "{report}"
    );
    assert!(
        report.contains("warning: mailbox support: folder INBOX is empty"),
        "{report}"
    );

    let mut imap = lab.imap("support").await;
    imap.create("Processed").await.expect("CREATE");
    imap.logout().await.expect("LOGOUT");
    let raw = message(
        &lab.address("customer1"),
        &lab.address("support"),
        "Hi",
        "cc1@c.test",
        "x\n",
        &[],
    );
    lab.append("support", "INBOX", &raw).await;
    lab.append("support", "Processed", &raw).await;
    lab.append("support", "Processed", &raw).await;
    let check = setup.cli(&["check-config", "--connect"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{report}");
    for line in [
        "  imap support: ok (1 messages in INBOX)\n",
        "    INBOX: 1 messages, 1 unseen  <- folder\n",
        "    Processed: 2 messages, 2 unseen  <- processed_folder\n",
        "    Sent: 0 messages, 0 unseen\n",
    ] {
        assert!(report.contains(line), "{line:?} in\n{report}");
    }
    assert!(!report.contains("warning: mailbox"), "{report}");
}

/// How long Postfix stays down in the outage test: `DESKGATE_SMTP_OUTAGE_SECS`, 120 by
/// default (the two minutes); shorter for a quick run.
fn outage() -> Duration {
    let secs = std::env::var("DESKGATE_SMTP_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_outage_during_a_burst_delays_acknowledgements_but_loses_none() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let support = lab.address("support");
    let daemon = setup.start();
    const N: usize = 30;
    let outage = outage();
    let down = Instant::now();
    lab.stop_postfix();
    // Postfix is down, so customer mail is put straight into the mailbox, spread over the
    // outage.
    for index in 0..N {
        let customer = lab.address(&format!("customer{}", index % 5 + 1));
        let raw = message(
            &customer,
            &support,
            "While SMTP is down",
            &format!("down{index}@c.test"),
            "x\n",
            &[],
        );
        lab.append("support", "INBOX", &raw).await;
        tokio::time::sleep(outage / (2 * N as u32)).await;
    }
    // The acknowledgements wait; the transport's failure costs no row an attempt, and
    // /healthz says what is wrong.
    let outbox = setup
        .wait_json(&["outbox"], Duration::from_secs(30), |o| {
            o.as_array().is_some_and(|rows| rows.len() == N)
        })
        .await;
    for row in outbox.as_array().unwrap() {
        assert_eq!(row["status"], "queued", "{row:#}");
        assert_eq!(row["attempts"], 0, "{row:#}");
    }
    let (status, health) = setup.http_get("/healthz");
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("smtp: connecting to 127.0.0.1"), "{health}");
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    lab.start_postfix();
    let back = Instant::now();
    setup
        .wait_json(&["outbox"], Duration::from_secs(120), |o| {
            o.as_array()
                .is_some_and(|rows| rows.iter().all(|r| r["status"] == "sent"))
        })
        .await;
    eprintln!(
        "smtp outage of {outage:?}: {N} acknowledgements delivered {:?} after Postfix was back",
        back.elapsed()
    );
    for index in 0..5 {
        let customer = format!("customer{}", index + 1);
        lab.wait_for(&customer, "INBOX", N / 5, Duration::from_secs(30))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for index in 0..5 {
        assert_eq!(
            lab.fetch_all(&format!("customer{}", index + 1), "INBOX")
                .await
                .len(),
            N / 5,
            "delivered exactly once"
        );
    }
    assert!(daemon.stop().0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_smtp_refusal_marks_the_row_failed_with_the_reason() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let daemon = setup.start();
    // The lab's Postfix refuses unknown local users at RCPT with 550 5.1.1.
    let ghost = "ghost@example.test";
    let raw = message(
        ghost,
        &lab.address("support"),
        "Hello from nowhere",
        "ghost1@c.test",
        "x\n",
        &[],
    );
    lab.append("support", "INBOX", &raw).await;
    let outbox = setup
        .wait_json(&["outbox"], Duration::from_secs(30), |o| {
            o.as_array()
                .is_some_and(|rows| rows.len() == 1 && rows[0]["status"] == "failed")
        })
        .await;
    let row = &outbox[0];
    assert_eq!(
        row["attempts"], 1,
        "a permanent failure is not retried: {row:#}"
    );
    let reason = row["last_error"].as_str().unwrap_or("");
    assert!(
        reason.contains("550") || reason.contains("5.1.1"),
        "the server's reason is kept: {reason}"
    );
    let ticket = setup.json(&["ticket", "1"]);
    let kinds: Vec<&str> = ticket["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"outbox.failed"), "{kinds:?}");
    assert!(daemon.stop().0.success());
}
