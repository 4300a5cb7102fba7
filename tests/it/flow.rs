//! The foundation's main path on real Dovecot and Postfix: a customer mail becomes one
//! ticket and one acknowledgement that threads in a mail client; replies join the ticket.

use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Imap, Setup, UNLIMITED_SENDERS, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn customer_mail_gets_one_ticket_and_one_threaded_acknowledgement() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let daemon = setup.start();

    // 1. A customer mail → one ticket, and the acknowledgement arrives in the customer's inbox.
    let (number, ack) = customer_writes_and_gets_one_ticket(&lab, &setup).await;
    let ack_id = assert_the_ack_threads_on_the_mail(&ack, number);
    // Processed mail is flagged \Seen only after the commit.
    let flags = lab.flags("support", "INBOX").await;
    assert!(flags[0].iter().any(|f| f.contains("Seen")), "{flags:?}");

    // 2. The customer replies to the acknowledgement → same ticket, no second acknowledgement.
    customer_adds_to_the_ticket(
        &lab,
        &setup,
        number,
        (
            &format!("Re: Printer on fire [#{number}]"),
            "m2@customer.test",
            "Still smoking.\n",
        ),
        &[
            ("In-Reply-To", &format!("<{ack_id}>")),
            ("References", &format!("<m1@customer.test> <{ack_id}>")),
        ],
        3,
    )
    .await;

    // A stranger who guesses the ticket number gets a ticket of their own (and its ack).
    stranger_guesses_the_ticket_number(&lab, number).await;

    // The real customer writing again with only the tag joins their ticket.
    let ticket = customer_adds_to_the_ticket(
        &lab,
        &setup,
        number,
        (
            &format!("More info [#{number}]"),
            "m4@customer.test",
            "Model X100.\n",
        ),
        &[],
        4,
    )
    .await;
    assert_the_transcript_holds_the_customer_mail(&ticket);
    assert_only_the_stranger_got_a_second_ticket_and_ack(&lab, &setup).await;

    let (status, took) = daemon.stop();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        setup.log()
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM to exit took {took:?}"
    );
}

/// Mona writes to support: one open ticket with a first-response deadline; returns its
/// number and the acknowledgement she received.
async fn customer_writes_and_gets_one_ticket(lab: &Lab, setup: &Setup) -> (i64, Vec<u8>) {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let original = message(
        &format!("Mona Q <{customer}>"),
        &support,
        "Printer on fire",
        "m1@customer.test",
        "It smokes.\n",
        &[],
    );
    lab.send(&customer, &[&support], &original).await;
    let inbox = lab.wait_for("customer1", "INBOX", 1, WAIT).await;
    let tickets = setup.json(&["tickets"]);
    let list = tickets.as_array().expect("list");
    assert_eq!(list.len(), 1, "{tickets:#}");
    let number = list[0]["id"].as_i64().expect("id");
    assert_eq!(list[0]["customer"]["address"], customer);
    assert_eq!(list[0]["status"], "open");
    assert!(
        list[0]["next_due_at"].is_string(),
        "a first-response deadline is stored"
    );
    (number, inbox.into_iter().next().expect("acknowledgement"))
}

/// The acknowledgement of ticket `number` threads on the customer's mail in a mail client,
/// comes from support@, is marked automatic and names the ticket and the deadline; returns
/// its Message-ID.
fn assert_the_ack_threads_on_the_mail(ack: &[u8], number: i64) -> String {
    let ack_fields = parsed(ack);
    assert_eq!(
        ack_fields.subject,
        format!("Re: Printer on fire [#{number}]")
    );
    assert_eq!(ack_fields.in_reply_to, vec!["m1@customer.test"]);
    assert!(
        ack_fields
            .references
            .contains(&"m1@customer.test".to_string())
    );
    let ack_id = ack_fields.message_id.clone().expect("our Message-ID");
    assert!(ack_id.ends_with("@example.test"), "{ack_id}");
    assert_eq!(
        ack_fields.from.as_ref().map(|p| p.address.as_str()),
        Some("support@example.test")
    );
    assert_eq!(
        header(ack, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(
        ack_fields.text.contains(&format!("[#{number}]")),
        "{}",
        ack_fields.text
    );
    assert!(
        ack_fields.text.contains("will answer you by"),
        "{}",
        ack_fields.text
    );
    assert!(String::from_utf8_lossy(ack).contains("multipart/alternative"));
    ack_id
}

/// Mona writes `(subject, message_id, body)` with `headers` to support; waits until ticket
/// `number`'s transcript holds `n_messages`, and returns the ticket.
async fn customer_adds_to_the_ticket(
    lab: &Lab,
    setup: &Setup,
    number: i64,
    (subject, message_id, body): (&str, &str, &str),
    headers: &[(&str, &str)],
    n_messages: usize,
) -> Value {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let mail = message(&customer, &support, subject, message_id, body, headers);
    lab.send(&customer, &[&support], &mail).await;
    setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            t["transcript"]
                .as_array()
                .is_some_and(|m| m.len() == n_messages)
        })
        .await
}

/// customer2 writes with ticket `number`'s tag in the subject and gets an acknowledgement
/// (of a ticket of their own).
async fn stranger_guesses_the_ticket_number(lab: &Lab, number: i64) {
    let (stranger, support) = (lab.address("customer2"), lab.address("support"));
    let guess = message(
        &stranger,
        &support,
        &format!("Re: [#{number}] let me in"),
        "m3@stranger.test",
        "hi\n",
        &[],
    );
    lab.send(&stranger, &[&support], &guess).await;
    lab.wait_for("customer2", "INBOX", 1, WAIT).await;
}

/// The transcript holds Mona's mail, her reply and her tagged mail, in order.
fn assert_the_transcript_holds_the_customer_mail(ticket: &Value) {
    let texts: Vec<&str> = ticket["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or(""))
        .collect();
    assert!(
        texts[0].contains("It smokes.")
            && texts[2].contains("Still smoking.")
            && texts[3].contains("Model X100."),
        "{texts:?}"
    );
}

/// Two tickets (Mona's and the stranger's); after a grace period, Mona has exactly one
/// acknowledgement, and the outbox holds the two acknowledgements, sent.
async fn assert_only_the_stranger_got_a_second_ticket_and_ack(lab: &Lab, setup: &Setup) {
    let tickets = setup.json(&["tickets"]);
    assert_eq!(
        tickets.as_array().unwrap().len(),
        2,
        "only the stranger opened a second ticket: {tickets:#}"
    );
    // Give a (wrong) second acknowledgement every chance to arrive, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lab.fetch_all("customer1", "INBOX").await.len(),
        1,
        "exactly one acknowledgement for customer1"
    );
    let outbox = setup.json(&["outbox"]);
    assert_eq!(outbox.as_array().unwrap().len(), 2, "{outbox:#}");
    assert!(
        outbox
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "sent"),
        "{outbox:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_mail_is_recorded_but_never_answered() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let daemon = setup.start();
    let support = lab.address("support");
    let sender = lab.address("customer3");
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("auto1@x.test", &[("Auto-Submitted", "auto-replied")]),
        ("auto2@x.test", &[("Precedence", "bulk")]),
        ("auto3@x.test", &[("Auto-Submitted", "auto-generated")]),
    ];
    for (id, extra) in cases {
        let raw = message(
            &sender,
            &support,
            "Out of office",
            id,
            "I am away.\n",
            extra,
        );
        lab.send(&sender, &[&support], &raw).await;
    }
    // A bounce-like message with a null envelope sender (Return-Path: <>).
    let bounce = message(
        &lab.address("postmaster"),
        &support,
        "Undelivered Mail",
        "auto4@x.test",
        "failed\n",
        &[],
    );
    lab.send("", &[&support], &bounce).await;
    // The bounce-like message returns nothing we sent: kept without a ticket.
    setup
        .wait_json(&["events", "--kind", "message.received"], WAIT, |e| {
            e.as_array().is_some_and(|l| l.len() == 4)
        })
        .await;
    let tickets = setup.json(&["tickets"]);
    assert_eq!(tickets.as_array().map(Vec::len), Some(3), "{tickets:#}");
    for ticket in tickets.as_array().unwrap() {
        assert!(
            ticket["next_due_at"].is_null(),
            "automatic mail sets no deadline: {ticket:#}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(setup.json(&["outbox"]).as_array().unwrap().is_empty());
    assert!(lab.fetch_all("customer3", "INBOX").await.is_empty());
    assert!(daemon.stop().0.success());
}

/// Mail that lands while the daemon is between its UID SEARCH and IDLE is announced in the
/// response to another command; it must not wait for IDLE's silence timeout (minutes). Only
/// the last message of a burst can be stranded (a later one wakes IDLE), so: short bursts,
/// each followed by silence.
#[tokio::test(flavor = "multi_thread")]
async fn mail_arriving_between_sync_and_idle_is_not_missed() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
    let daemon = setup.start();
    let support = lab.address("support");
    let mut total = 0;
    for round in 0..12 {
        for index in 0..3 {
            let customer = lab.address(&format!("customer{}", index + 1));
            let id = format!("burst{round}.{index}@c.test");
            lab.append(
                "support",
                "INBOX",
                &message(&customer, &support, "Burst", &id, "x\n", &[]),
            )
            .await;
            total += 1;
            tokio::time::sleep(Duration::from_millis((round as u64 * 3) % 20)).await;
        }
        setup
            .wait_json(&["tickets"], Duration::from_secs(8), |t| {
                t.as_array().is_some_and(|l| l.len() == total)
            })
            .await;
    }
    assert!(daemon.stop().0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn several_folders_of_one_account_are_watched() {
    let Some(lab) = Lab::start() else { return };
    let mut imap = lab.imap("support").await;
    imap.create("Urgent").await.expect("CREATE");
    imap.logout().await.expect("LOGOUT");
    let setup = Setup::new(&lab, Imap::Implicit, "folders = [\"INBOX\", \"Urgent\"]");
    let daemon = setup.spawn();
    // Each folder has its own connection and first start.
    setup
        .wait_log("mailbox connected", 2, Duration::from_secs(30))
        .await;
    let support = lab.address("support");
    let inbox = message(
        &lab.address("customer1"),
        &support,
        "Normal",
        "f1@c.test",
        "x\n",
        &[],
    );
    let urgent = message(
        &lab.address("customer2"),
        &support,
        "Urgent!",
        "f2@c.test",
        "x\n",
        &[],
    );
    lab.append("support", "INBOX", &inbox).await;
    lab.append("support", "Urgent", &urgent).await;
    lab.wait_for("customer1", "INBOX", 1, Duration::from_secs(30))
        .await;
    lab.wait_for("customer2", "INBOX", 1, Duration::from_secs(30))
        .await;
    assert!(daemon.stop().0.success());
    let tickets = setup.json(&["tickets"]);
    let mut mailboxes: Vec<&str> = tickets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["mailbox"].as_str().unwrap_or(""))
        .collect();
    mailboxes.sort();
    assert_eq!(mailboxes, ["support/INBOX", "support/Urgent"]);
}
