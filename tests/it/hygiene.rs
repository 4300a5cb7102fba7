//! Mail hygiene on real Postfix and Dovecot: two helpdesks answering each other, our own
//! mail coming back, a real Postfix bounce of an acknowledgement, a burst from one sender,
//! a 30 MB message and mail that cannot be parsed. Each ends as specified and the mailbox
//! keeps flowing (a later customer still gets an acknowledgement).

use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Imap, Setup, UNIT_MALLOC, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(60);
/// Time given to mail that must NOT arrive (a loop, a reply to a bounce) before counting.
const QUIET: Duration = Duration::from_secs(4);

fn list(value: &Value) -> &Vec<Value> {
    value.as_array().expect("a JSON list")
}

fn events(setup: &Setup, kind: &str) -> Vec<Value> {
    list(&setup.json(&["events", "--kind", kind, "--limit", "10000"])).clone()
}

/// Waits until `user` has `n` acknowledgements; panics with the daemon's log otherwise.
async fn acknowledged(lab: &Lab, setup: &Setup, user: &str, n: usize) -> Vec<Vec<u8>> {
    match lab.try_wait_for(user, "INBOX", n, WAIT).await {
        Ok(messages) => messages,
        Err(err) => panic!(
            "{err}
daemon log:
{}",
            setup.log()
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_helpdesks_answering_each_other_exchange_at_most_one_message_each_way() {
    let Some(lab) = Lab::start() else { return };
    // Both desks are on the lab's one domain; like every lab setup they acknowledge it
    // (no_ack_domains = []), as two companies' desks would each other.
    let a = Setup::new_as(&lab, Imap::Implicit, "support", "", "");
    let b = Setup::new_as(&lab, Imap::Implicit, "sales", "", "");
    let (daemon_a, daemon_b) = (a.start(), b.start());
    let (support, sales) = (lab.address("support"), lab.address("sales"));

    // Someone at desk B writes to desk A: A acknowledges to sales@, B must not answer that.
    let first = message(
        &sales,
        &support,
        "Partnership",
        "loop1@sales.test",
        "Hello A.\n",
        &[],
    );
    lab.send(&sales, &[&support], &first).await;
    let at_b = acknowledged(&lab, &a, "sales", 1).await;
    b.wait_json(&["tickets"], WAIT, |t| list(t).len() == 1)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        lab.fetch_all("sales", "INBOX").await.len(),
        1,
        "A sent one message"
    );
    assert_eq!(
        lab.fetch_all("support", "INBOX").await.len(),
        1,
        "B sent nothing back; log B:\n{}",
        b.log()
    );
    assert_eq!(list(&a.json(&["outbox"])).len(), 1);
    assert!(
        list(&b.json(&["outbox"])).is_empty(),
        "{:#}",
        b.json(&["outbox"])
    );
    let b_tickets = b.json(&["tickets"]);
    assert!(
        list(&b_tickets)[0]["next_due_at"].is_null(),
        "an auto-reply owes no answer"
    );
    let received = events(&b, "message.received");
    assert!(
        received[0]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("auto-reply: Auto-Submitted: auto-replied")),
        "{received:#?}"
    );

    // A's own acknowledgement coming back to A: as sent (same Message-ID) it is known; with
    // a new Message-ID (a forwarder rewrote it) our loop header still gives it away.
    let ours = at_b[0].clone();
    let ack_id = parsed(&ours).message_id.expect("Message-ID");
    lab.append("support", "INBOX", &ours).await;
    let text = String::from_utf8_lossy(&ours).replace(&ack_id, "rewritten@forwarder.test");
    lab.append("support", "INBOX", text.as_bytes()).await;
    a.wait_json(&["events", "--kind", "message.loop_dropped"], WAIT, |e| {
        list(e).len() == 1
    })
    .await;
    assert_eq!(events(&a, "message.own_returned").len(), 1);
    assert!(
        a.log().contains("our own mail came back; dropped"),
        "a log line says so:\n{}",
        a.log()
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        list(&a.json(&["tickets"])).len(),
        1,
        "no ticket from our own mail"
    );
    assert_eq!(
        lab.fetch_all("sales", "INBOX").await.len(),
        1,
        "still one message"
    );
    assert!(daemon_a.stop().0.success());
    assert!(daemon_b.stop().0.success());
}

/// The header block of `raw`.
fn headers_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

/// A delivery report as Postfix writes it (RFC 3464), returning the headers of `original`.
fn postfix_dsn(recipient: &str, original: &[u8]) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.elsewhere.test (Mail Delivery System)\r\n\
         To: support@example.test\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\n\
         Message-Id: <dsn-{recipient}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B.1\"\r\n\r\n\
         --B.1\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\r\n\
         <{recipient}>: host mx.elsewhere.test said: 552 5.2.2 mailbox full\r\n\r\n\
         --B.1\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.elsewhere.test\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n\
         Action: failed\r\nStatus: 5.2.2\r\n\
         Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n\r\n\
         --B.1\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         {}\r\n--B.1--\r\n",
        headers_of(original)
    )
    .into_bytes()
}

/// A qmail bounce: plain text, no report, the original quoted below a line.
fn qmail_bounce(recipient: &str, original: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: MAILER-DAEMON@mx.elsewhere.test\r\nTo: support@example.test\r\n\
         Subject: failure notice\r\nMessage-ID: <qmail-{recipient}>\r\n\r\n\
         Hi. This is the qmail-send program at mx.elsewhere.test.\r\n\
         I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\r\n\
         <{recipient}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n\
         --- Below this line is a copy of the message.\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(original);
    raw
}

#[tokio::test(flavor = "multi_thread")]
async fn bounces_of_acknowledgements_mark_the_recipient_and_tell_the_agents() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    std::fs::write(setup.dir.path().join("relay.key"), "5e".repeat(32) + "\n")
        .expect("write relay key");
    setup.append_config(
        "[relay]\nsecret_file = \"relay.key\"\n\n[[agent]]\nname = \"Carol Agent\"\naddress = \"agent3@example.test\"\n",
    );
    let daemon = setup.start();
    let support = lab.address("support");
    // The lab delivers only to itself, so the remote MTA's reports are written here and
    // arrive through Postfix with the null sender, as real bounces do.
    let mut numbers = Vec::new();
    for (user, bounce) in [
        ("customer5", postfix_dsn as fn(&str, &[u8]) -> Vec<u8>),
        ("customer4", qmail_bounce),
    ] {
        let customer = lab.address(user);
        let first = message(
            &customer,
            &support,
            "Order",
            &format!("o@{user}.test"),
            "?\n",
            &[],
        );
        lab.send(&customer, &[&support], &first).await;
        let ack = acknowledged(&lab, &setup, user, 1).await.remove(0);
        lab.send("", &[&support], &bounce(&customer, &ack)).await;
        let bounces = setup
            .wait_json(&["events", "--kind", "bounce.received"], WAIT, |e| {
                list(e).iter().any(|b| {
                    b["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with(&format!("{customer}: ")))
                })
            })
            .await;
        let tickets = setup.json(&["tickets"]);
        let number = list(&tickets)[0]["id"].as_i64().expect("id");
        numbers.push(number);
        assert_eq!(
            list(&tickets).len(),
            numbers.len(),
            "no ticket for a bounce: {tickets:#}"
        );
        assert_eq!(
            list(&bounces)[0]["ticket"].as_i64(),
            Some(number),
            "{bounces:#}"
        );
        let ticket = setup.json(&["ticket", &number.to_string()]);
        let transcript: Vec<&Value> = list(&ticket["transcript"])
            .iter()
            .filter(|m| m["internal"] == false)
            .collect();
        assert_eq!(
            transcript.len(),
            3,
            "customer mail, acknowledgement, bounce (besides mail to agents)"
        );
        assert!(
            transcript[2]["class"]
                .as_str()
                .is_some_and(|c| c.starts_with("bounce: ")),
            "{ticket:#}"
        );
        assert!(
            ticket["next_due_at"].is_string(),
            "the customer still awaits an answer"
        );
    }
    let details: Vec<String> = events(&setup, "bounce.received")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        details.contains(&"customer5@example.test: 5.2.2 552 5.2.2 mailbox full".to_string()),
        "{details:?}"
    );
    assert!(
        details.contains(&"customer4@example.test: (the report names no recipient)".to_string()),
        "{details:?}"
    );
    tokio::time::sleep(QUIET).await;
    let outbox = setup.json(&["outbox"]);
    let to_customers: Vec<&Value> = list(&outbox)
        .iter()
        .filter(|r| r["kind"] == "acknowledgement")
        .collect();
    assert_eq!(
        to_customers.len(),
        2,
        "nothing answers a bounce: {outbox:#}"
    );
    assert!(
        to_customers.iter().all(|r| r["bounce"].is_string()),
        "both acknowledgements are marked bounced: {outbox:#}"
    );
    assert_eq!(
        list(&outbox).len(),
        6,
        "2 acknowledgements, 2 new-ticket notifications, 2 bounce notices: {outbox:#}"
    );
    // The agent hears of each bounce (beside the notifications of the two new tickets).
    let mail = lab.wait_for("agent3", "INBOX", 4, WAIT).await;
    let subjects: Vec<String> = mail.iter().map(|m| parsed(m).subject).collect();
    let notices: Vec<String> = mail
        .iter()
        .map(|m| parsed(m))
        .filter(|m| m.subject.contains("Not delivered"))
        .map(|m| m.text)
        .collect();
    assert_eq!(notices.len(), 2, "{subjects:?}");
    assert!(
        notices
            .iter()
            .any(|t| t.contains("customer5@example.test: 5.2.2 552 5.2.2 mailbox full")),
        "{notices:?}"
    );
    assert!(daemon.stop().0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_200_from_one_sender_is_limited_and_the_mailbox_keeps_flowing() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let daemon = setup.start();
    let (support, flood) = (lab.address("support"), lab.address("customer1"));
    let t0 = std::time::Instant::now();
    for n in 0..200 {
        let raw = message(
            &flood,
            &support,
            &format!("Question {n}"),
            &format!("burst{n}@c1.test"),
            "x\n",
            &[],
        );
        lab.send(&flood, &[&support], &raw).await;
    }
    let other = lab.address("customer2");
    let after = message(&other, &support, "Unrelated", "after@c2.test", "y\n", &[]);
    lab.send(&other, &[&support], &after).await;
    acknowledged(&lab, &setup, "customer2", 1).await;
    let limited = setup
        .wait_json(
            &["events", "--kind", "sender.limited", "--limit", "1000"],
            WAIT,
            |e| list(e).len() == 195,
        )
        .await;
    eprintln!(
        "burst: 200 mails sent and all handled in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // 1-5: ticket and acknowledgement; 6-10: ticket, no acknowledgement; 11-200: recorded
    // on the sender's latest ticket.
    let tickets = setup.json(&["tickets"]);
    let from_flood: Vec<&Value> = list(&tickets)
        .iter()
        .filter(|t| t["customer"]["address"] == flood.as_str())
        .collect();
    assert_eq!(from_flood.len(), 10, "{tickets:#}");
    let latest = from_flood[0]["id"].as_i64().expect("id");
    assert_eq!(from_flood[0]["messages"].as_i64(), Some(191));
    assert!(
        list(&limited).iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than 10 new tickets"))
            && e["ticket"].as_i64() == Some(latest)),
        "{limited:#}"
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 5);
    assert!(setup.log().contains("per-sender limit reached"));
    assert!(daemon.stop().0.success());
}

/// 60 nested multiparts: beyond what a person sends.
fn deeply_nested(from: &str, to: &str) -> Vec<u8> {
    let mut raw = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: nest\r\nMessage-ID: <nest@c3.test>\r\nMIME-Version: 1.0\r\n"
    );
    for level in 0..60 {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    for level in (0..60).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    raw.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_and_unparseable_mail_is_quarantined_and_the_mailbox_keeps_flowing() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, r#"quarantine_folder = "Junk""#);
    let daemon = setup.start();
    let support = lab.address("support");
    let customer = lab.address("customer3");
    let mut big = message(&customer, &support, "Scan", "big@c3.test", "", &[]);
    let line = "x".repeat(998) + "\r\n";
    while big.len() < 30 * 1024 * 1024 {
        big.extend_from_slice(line.as_bytes());
    }
    let t0 = std::time::Instant::now();
    lab.append("support", "INBOX", &big).await;
    eprintln!(
        "oversize: 30 MB appended in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let t1 = std::time::Instant::now();
    let no_sender =
        b"To: support@example.test\r\nSubject: who am I\r\nMessage-ID: <anon@x.test>\r\n\r\nhello\r\n";
    lab.append("support", "INBOX", no_sender).await;
    lab.append("support", "INBOX", &deeply_nested(&customer, &support))
        .await;
    let later = message(
        &lab.address("customer4"),
        &support,
        "Fine",
        "ok@c4.test",
        "z\n",
        &[],
    );
    lab.send(&lab.address("customer4"), &[&support], &later)
        .await;
    acknowledged(&lab, &setup, "customer4", 1).await;

    let held = setup
        .wait_json(&["quarantine", "list"], WAIT, |q| list(q).len() == 3)
        .await;
    eprintln!(
        "oversize: quarantined (with two more) {:.2} s after the append",
        t1.elapsed().as_secs_f64()
    );
    let entry = |needle: &str| {
        list(&held)
            .iter()
            .find(|q| q["reason"].as_str().is_some_and(|r| r.contains(needle)))
            .unwrap_or_else(|| panic!("no quarantine entry for {needle}: {held:#}"))
            .clone()
    };
    let (oversize, anonymous, nested) = (
        entry("larger than policy.max_message_size_mb"),
        entry("no usable sender"),
        entry("MIME nesting"),
    );
    assert_eq!(oversize["complete"], false);
    assert!(oversize["size"].as_u64().unwrap_or(0) >= 30 * 1024 * 1024);
    lab.wait_for("support", "Junk", 3, WAIT).await;
    assert_eq!(
        lab.fetch_all("support", "INBOX").await.len(),
        1,
        "only the processed customer mail stays in INBOX"
    );
    assert!(
        list(&setup.json(&["tickets"])).len() == 1,
        "quarantined mail opened no ticket"
    );

    let id = |q: &Value| q["id"].as_i64().expect("id").to_string();
    let shown = setup.cli(&["quarantine", "show", &id(&anonymous)]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("Reason:     no usable sender") && shown.contains("hello"),
        "{shown}"
    );

    // Release runs the normal path: a ticket without a customer, nobody to acknowledge.
    let released = setup.cli(&["quarantine", "release", &id(&anonymous)]);
    assert!(released.status.success(), "{released:?}");
    assert!(String::from_utf8_lossy(&released.stdout).contains("stored on ticket"));
    assert_eq!(list(&setup.json(&["tickets"])).len(), 2);
    let again = setup.cli(&["quarantine", "release", &id(&anonymous)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already released"));
    let partial = setup.cli(&["quarantine", "release", &id(&oversize)]);
    assert_eq!(partial.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&partial.stderr).contains("only its headers were kept"));
    let deleted = setup.cli(&["quarantine", "delete", &id(&nested)]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert_eq!(list(&setup.json(&["quarantine", "list"])).len(), 1);
    assert_eq!(list(&setup.json(&["quarantine", "list", "--all"])).len(), 3);
    let missing = setup.cli(&["quarantine", "show", "999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(daemon.stop().0.success());
}

/// A sample of each corpus folder and expected handling (the first file of each pair that
/// IMAP can carry: no NUL bytes, under 200 KB), appended to the support mailbox on the real
/// Dovecot: every one ends as the manifest says. Skipped without ../shared/corpus.
#[tokio::test(flavor = "multi_thread")]
async fn a_sample_of_every_corpus_category_through_the_real_servers() {
    use deskgate::classify::{Class, classify, no_acknowledgement};
    use deskgate::parse::parse;
    let Some(dir) = crate::corpus::corpus_dir() else {
        eprintln!("skipped: ../shared/corpus is not present");
        return;
    };
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let daemon = setup.start();
    let mut seen = std::collections::HashSet::new();
    let mut expected: std::collections::HashMap<&str, usize> = Default::default();
    let mut acks = 0;
    for row in crate::corpus::manifest(&dir) {
        let category = row.path.split('/').next().unwrap_or("").to_string();
        let disagreed = crate::corpus::DISAGREE.iter().any(|(p, ..)| *p == row.path);
        let mut raw = std::fs::read(dir.join(&row.path)).expect("corpus file");
        if disagreed || raw.contains(&0) || raw.len() > 200_000 || raw.is_empty() {
            continue;
        }
        if !seen.insert((category, row.expected.clone())) {
            continue;
        }
        // An IMAP server never delivers an mbox separator line.
        if raw.starts_with(b"From ") && !raw.starts_with(b"From:") {
            let end = raw
                .iter()
                .position(|b| *b == b'\n')
                .map_or(raw.len(), |i| i + 1);
            raw.drain(..end);
        }
        let parsed = parse(&raw);
        let class = classify(&parsed, &["support@example.test".to_string()]);
        let kind = match row.expected.as_str() {
            "ticket" => "customer",
            "autoreply-no-ack" => "auto-reply: ",
            "bounce-no-ack" => "bounce: ",
            "list-no-ack" => "bulk: ",
            _ => "quarantine",
        };
        *expected.entry(kind).or_default() += 1;
        if class == Class::Customer && no_acknowledgement(&parsed, &[]).is_none() {
            acks += 1;
        }
        lab.append("support", "INBOX", &raw).await;
    }
    let n: usize = expected.values().sum();
    assert!(n >= 15, "only {n} samples");
    let n_quarantined = expected.get("quarantine").copied().unwrap_or(0);
    let received = setup
        .wait_json(
            &["events", "--kind", "message.", "--limit", "1000"],
            WAIT,
            |e| {
                let handled = list(e)
                    .iter()
                    .filter(|e| {
                        e["kind"] == "message.received" || e["kind"] == "message.quarantined"
                    })
                    .count();
                handled == n
            },
        )
        .await;
    for (kind, count) in &expected {
        if *kind == "quarantine" {
            continue;
        }
        let got = list(&received)
            .iter()
            .filter(|e| {
                e["kind"] == "message.received"
                    && e["detail"].as_str().is_some_and(|d| d.starts_with(kind))
            })
            .count();
        assert_eq!(got, *count, "{kind}: {received:#}");
    }
    assert_eq!(
        list(&setup.json(&["quarantine", "list"])).len(),
        n_quarantined
    );
    let outbox = setup.json(&["outbox"]);
    assert_eq!(
        list(&outbox).len(),
        acks,
        "acknowledgements only for people: {outbox:#}"
    );
    assert!(list(&outbox).iter().all(|r| r["kind"] == "acknowledgement"));
    eprintln!("corpus through the real servers: {n} samples: {expected:?}, {acks} acknowledged");
    assert!(daemon.stop().0.success());
}

/// One mail without a Message-ID, sent to support@ and CC sales@, both watched: Postfix
/// delivers two copies with different trace headers; they are one ticket and one
/// acknowledgement.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_mail_in_two_mailboxes_without_message_id_is_one_ticket() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    setup.append_config(&format!(
        "[[mailbox]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\n\
         user = \"sales@example.test\"\npassword = \"sales-pw\"\n",
        lab.imaps_port
    ));
    let daemon = setup.start();
    let (support, sales, customer) = (
        lab.address("support"),
        lab.address("sales"),
        lab.address("customer2"),
    );
    let text = format!(
        "From: {customer}\r\nTo: {support}\r\nCc: {sales}\r\nSubject: Quote please\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHow much for 40 chairs?\r\n"
    );
    lab.send(&customer, &[&support, &sales], text.as_bytes())
        .await;
    let duplicate = setup
        .wait_json(&["events", "--kind", "message.duplicate"], WAIT, |e| {
            list(e).len() == 1
        })
        .await;
    assert!(
        list(&duplicate)[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("content:")),
        "{duplicate:#}"
    );
    assert_eq!(list(&setup.json(&["tickets"])).len(), 1);
    acknowledged(&lab, &setup, "customer2", 1).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(lab.fetch_all("customer2", "INBOX").await.len(), 1);
    assert!(daemon.stop().0.success());
}

/// Twelve 10 MB messages waiting at once are fetched a few at a time (a batch holds at most
/// 32 MB of mail), so the daemon's peak memory follows the batch's bytes, not its count:
/// with the allocator set as the systemd unit sets it, 112 MB where one batch of twelve
/// took 173 MB. Every one becomes a ticket.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_of_large_messages_is_fetched_a_few_at_a_time() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let (status, _) = setup.start().stop();
    assert!(status.success());
    let support = lab.address("support");
    let line = "y".repeat(998) + "\r\n";
    for i in 0..12 {
        let customer = lab.address(&format!("customer{}", i % 4 + 1));
        let id = format!("large{i}@c.test");
        let mut raw = message(&customer, &support, &format!("Scan {i}"), &id, "", &[]);
        while raw.len() < 10 * 1024 * 1024 {
            raw.extend_from_slice(line.as_bytes());
        }
        lab.append("support", "INBOX", &raw).await;
    }
    let [arenas, mmap] = UNIT_MALLOC;
    let daemon = setup.start_with(&[("DESKGATE_LOG", "info"), arenas, mmap]);
    setup
        .wait_json(&["tickets"], WAIT, |t| list(t).len() == 12)
        .await;
    let peak_mb = daemon.status_kb("VmHWM") / 1024;
    eprintln!("twelve 10 MB messages: peak RSS {peak_mb} MB");
    assert!(
        peak_mb < 150,
        "peak RSS {peak_mb} MB: the messages were not fetched a few at a time"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
}
