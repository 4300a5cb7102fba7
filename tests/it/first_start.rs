//! A safe first start on a mailbox that already holds mail, on real servers.

use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Imap, Setup};
use crate::harness::{Lab, message};

const DAY: Duration = Duration::from_secs(86_400);

fn tickets_by_subject(setup: &Setup) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = setup
        .json(&["tickets"])
        .as_array()
        .expect("ticket list")
        .iter()
        .map(|t| (t["subject"].as_str().unwrap_or("").to_string(), t.clone()))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

#[tokio::test(flavor = "multi_thread")]
async fn backlog_is_imported_per_initial_import_and_only_recent_mail_is_acknowledged() {
    let Some(lab) = Lab::start() else { return };
    // The mailbox as deskgate finds it on its first start.
    mailbox_with_a_backlog(&lab).await;

    let setup = Setup::new(
        &lab,
        Imap::Implicit,
        "initial_import = { unseen_since = \"7d\" }",
    );
    setup.edit_config(|text| {
        text.replace(
            "[policy]\n",
            "[policy]\nacknowledge_backlog_within = \"1h\"\n",
        )
    });
    let daemon = setup.start();
    setup
        .wait_log("initial import done", 1, Duration::from_secs(60))
        .await;
    // Mail after the first start is acknowledged as always.
    customer_writes(&lab, "customer5", "E live").await;
    lab.wait_for("customer5", "INBOX", 1, Duration::from_secs(30))
        .await;
    lab.wait_for("customer4", "INBOX", 1, Duration::from_secs(30))
        .await;

    let quiet = assert_only_recent_mail_is_acknowledged(&lab, &setup).await;
    // Left-out mail is untouched; imported mail is flagged \Seen.
    assert_eq!(
        lab.flags("support", "INBOX").await,
        [
            vec![],
            vec!["\\Seen".to_string()],
            vec!["\\Seen".to_string()],
            vec!["\\Seen".to_string()],
            vec!["\\Seen".to_string()],
        ]
    );
    assert_the_import_is_summarised(&setup, &quiet);
    assert!(daemon.stop().0.success());

    // A restart is not a first start: nothing is imported again, nothing summarised again.
    let daemon = setup.start();
    customer_writes(&lab, "customer3", "F later").await;
    lab.wait_for("customer3", "INBOX", 1, Duration::from_secs(30))
        .await;
    assert!(daemon.stop().0.success());
    assert_eq!(setup.log().matches("initial import done").count(), 1);
    assert_eq!(tickets_by_subject(&setup).len(), 4);
}

/// A mail of `customer` to support with `subject` (its Message-ID made of both).
fn mail(lab: &Lab, customer: &str, subject: &str) -> Vec<u8> {
    message(
        &lab.address(customer),
        &lab.address("support"),
        subject,
        &format!("{customer}.{}@c.test", subject.replace(' ', "-")),
        "Hello, is anyone there?\n",
        &[],
    )
}

/// `customer` sends [`mail`] with `subject` to support through Postfix.
async fn customer_writes(lab: &Lab, customer: &str, subject: &str) {
    lab.send(
        &lab.address(customer),
        &[&lab.address("support")],
        &mail(lab, customer, subject),
    )
    .await;
}

/// Fills the support INBOX: A unread but 10 days old, B read a day ago, C unread from two
/// days ago, D delivered minutes ago.
async fn mailbox_with_a_backlog(lab: &Lab) {
    let inbox = "INBOX";
    lab.append_aged(
        "support",
        inbox,
        None,
        10 * DAY,
        &mail(lab, "customer1", "A too old"),
    )
    .await;
    lab.append_aged(
        "support",
        inbox,
        Some("(\\Seen)"),
        DAY,
        &mail(lab, "customer2", "B read"),
    )
    .await;
    lab.append_aged(
        "support",
        inbox,
        None,
        2 * DAY,
        &mail(lab, "customer3", "C unread"),
    )
    .await;
    customer_writes(lab, "customer4", "D minutes ago").await;
    lab.wait_for("support", inbox, 4, Duration::from_secs(10))
        .await;
}

/// C is imported quietly (no deadline), D and E are tickets with deadlines whose customers
/// alone were acknowledged; A and B are left out. Returns C's ticket.
async fn assert_only_recent_mail_is_acknowledged(lab: &Lab, setup: &Setup) -> Value {
    let tickets = tickets_by_subject(setup);
    let subjects: Vec<&str> = tickets.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, ["C unread", "D minutes ago", "E live"]);
    let quiet = &tickets[0].1;
    assert_eq!(quiet["imported_quietly"], true, "{quiet:#}");
    assert_eq!(
        quiet["next_due_at"],
        Value::Null,
        "no deadline: never escalated"
    );
    for (subject, ticket) in &tickets[1..] {
        assert_eq!(ticket["imported_quietly"], false, "{subject}");
        assert!(ticket["next_due_at"].is_string(), "{subject}: {ticket:#}");
    }
    let outbox = setup.json(&["outbox"]);
    let recipients: Vec<&str> = outbox
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["recipients"][0].as_str().unwrap_or(""))
        .collect();
    assert_eq!(recipients.len(), 2, "{outbox:#}");
    assert!(recipients.contains(&"customer4@example.test"));
    assert!(recipients.contains(&"customer5@example.test"));
    for customer in ["customer1", "customer2", "customer3"] {
        assert!(
            lab.fetch_all(customer, "INBOX").await.is_empty(),
            "{customer} got mail"
        );
    }
    quiet.clone()
}

/// The log sums the import up, `tickets` marks the `quiet` ticket and counts it, and the
/// ticket records why it was imported quietly.
fn assert_the_import_is_summarised(setup: &Setup, quiet: &Value) {
    assert!(
        setup.log().contains(
            "initial import done: 2 backlog messages imported, 1 of them quietly (no acknowledgement, no deadline); 2 left in the folder"
        ),
        "{}",
        setup.log()
    );
    let listing = setup.cli(&["tickets"]);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(text.contains("- (imported quietly)"), "{text}");
    assert!(
        text.contains("1 of these 3 tickets were imported quietly"),
        "{text}"
    );
    let ticket = setup.json(&["ticket", quiet["id"].to_string().as_str()]);
    assert!(
        ticket["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "message.imported_quietly"),
        "{ticket:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_the_backlog_acknowledges_nothing_and_counts_exactly() {
    let Some(lab) = Lab::start() else { return };
    let support = lab.address("support");
    const N: usize = 30;
    for index in 0..N {
        let customer = lab.address(&format!("customer{}", index % 5 + 1));
        let raw = message(
            &customer,
            &support,
            &format!("Old question {index}"),
            &format!("old{index}@c.test"),
            "still waiting\n",
            &[],
        );
        // Two read messages among the unread ones: left in the folder by default.
        let flags = (index % 15 == 7).then_some("(\\Seen)");
        lab.append_aged("support", "INBOX", flags, DAY, &raw).await;
    }
    // Defaults: initial_import = "unseen", nothing from the backlog acknowledged.
    let setup = Setup::new(&lab, Imap::Implicit, "batch_size = 3");
    let daemon = setup.spawn();
    setup
        .wait_json(&["tickets"], Duration::from_secs(60), |t| {
            t.as_array().is_some_and(|l| l.len() >= 5)
        })
        .await;
    daemon.kill();
    let daemon = setup.start();
    setup
        .wait_log("initial import done", 1, Duration::from_secs(60))
        .await;
    assert!(
        setup.log().contains(&format!(
            "initial import done: {} backlog messages imported, {} of them quietly (no acknowledgement, no deadline); 2 left in the folder",
            N - 2,
            N - 2
        )),
        "{}",
        setup.log()
    );
    let tickets = setup.json(&["tickets"]);
    let list = tickets.as_array().unwrap();
    assert_eq!(list.len(), N - 2);
    assert!(list.iter().all(|t| t["imported_quietly"] == true));
    assert_eq!(setup.json(&["outbox"]).as_array().unwrap().len(), 0);

    // Live mail still gets its acknowledgement.
    let raw = message(
        &lab.address("customer1"),
        &support,
        "New question",
        "new@c.test",
        "hi\n",
        &[],
    );
    lab.send(&lab.address("customer1"), &[&support], &raw).await;
    let inbox = lab
        .wait_for("customer1", "INBOX", 1, Duration::from_secs(30))
        .await;
    assert!(daemon.stop().0.success());
    assert_eq!(inbox.len(), 1, "only the live message was acknowledged");
    assert_eq!(setup.json(&["outbox"]).as_array().unwrap().len(), 1);
}
