//! `#merge` and `#forward` on real Dovecot and Postfix (issue 20).

use std::time::Duration;

use serde_json::Value;

use crate::agents::{answer, customer_writes, with_agents};
use crate::daemon::{Setup, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);
const SMOKES: &str = "It smokes.\n";

fn ticket(setup: &Setup, id: i64) -> Value {
    setup.json(&["ticket", &id.to_string()])
}

fn texts(ticket: &Value) -> Vec<String> {
    ticket["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_moves_the_ticket_and_later_mail_follows_it() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    customer_writes(&lab, ("Printer on fire", "m1@customer.test", SMOKES), 1).await;
    let second = customer_writes(
        &lab,
        ("Printer still broken", "m2@customer.test", SMOKES),
        2,
    )
    .await;
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(2));

    // An unknown target: nothing applied, agent1 told.
    answer(&lab, "agent1", &second, "#merge 99").await;
    let notice = lab.wait_for("agent1", "INBOX", 3, WAIT).await.remove(2);
    assert!(
        parsed(&notice).text.contains("there is no ticket 99"),
        "{}",
        parsed(&notice).text
    );

    answer(&lab, "agent1", &second, "#merge 1").await;
    let told = lab.wait_for("customer1", "INBOX", 3, WAIT).await.remove(2);
    let told = parsed(&told);
    assert_eq!(told.subject, "Re: Printer still broken [#1]");
    assert!(
        told.text
            .contains("your request [#2] is now handled together with [#1]"),
        "{}",
        told.text
    );
    assert_eq!(told.in_reply_to, vec!["m2@customer.test"]);

    let merged = ticket(&setup, 2);
    assert_eq!(merged["status"], "closed", "{merged:#}");
    let joined = ticket(&setup, 1);
    let customer_mails = joined["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter(|m| m["class"] == "customer")
        .count();
    assert_eq!(
        customer_mails, 2,
        "both customer mails are on ticket 1: {joined:#}"
    );
    assert!(
        joined["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "ticket.joined"),
        "{joined:#}"
    );

    // The customer answers under the old tag: the mail lands in ticket 1, no new ticket.
    let late = message(
        &customer,
        &support,
        "Re: Printer still broken [#2]",
        "m3@customer.test",
        "Any news?\n",
        &[],
    );
    lab.send(&customer, &[&support], &late).await;
    setup
        .wait_json(&["ticket", "1"], WAIT, |t| {
            texts(t).iter().any(|m| m.contains("Any news?"))
        })
        .await;
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(2));

    // The agent answers the old notification: relayed on ticket 1.
    answer(&lab, "agent1", &second, "The technician comes at ten.").await;
    let inbox = lab.wait_for("customer1", "INBOX", 4, WAIT).await;
    let relayed = parsed(&inbox[3]);
    assert_eq!(relayed.subject, "Re: Printer on fire [#1]");
    assert!(
        relayed.text.starts_with("The technician comes at ten."),
        "{}",
        relayed.text
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_goes_to_the_supplier_whose_answer_reaches_only_the_agents() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let supplier = lab.address("customer2");
    let notification =
        customer_writes(&lab, ("Printer on fire", "m1@customer.test", SMOKES), 1).await;
    answer(&lab, "agent1", &notification, "Checking with our supplier.").await;
    lab.wait_for("customer1", "INBOX", 2, WAIT).await;

    answer(
        &lab,
        "agent1",
        &notification,
        &format!("#forward {supplier} Is part X100-7 in stock?\n\nThe customer needs two."),
    )
    .await;
    let forwarded = lab.wait_for("customer2", "INBOX", 1, WAIT).await.remove(0);
    let f = parsed(&forwarded);
    let forwarded_text = f.text.replace("\r\n", "\n");
    assert_eq!(f.subject, "Fwd: Printer on fire [#1]");
    assert!(
        forwarded_text.contains("Is part X100-7 in stock?\n\nThe customer needs two."),
        "{forwarded_text}"
    );
    assert!(
        f.text.contains("It smokes."),
        "the conversation: {}",
        f.text
    );
    let reply_to = f.reply_to.clone().expect("a reply address").address;
    assert!(reply_to.starts_with("support+1."), "{reply_to}");
    let raw = String::from_utf8_lossy(&forwarded);
    assert!(
        forwarded_text.contains(", agent Alice Agent\nChecking with our supplier."),
        "the answer, under the agent's name: {forwarded_text}"
    );
    assert!(
        forwarded_text.contains("Checking with our supplier."),
        "{forwarded_text}"
    );
    assert!(!raw.contains("agent1@"), "no agent address: {raw}");
    assert!(header(&forwarded, "Auto-Submitted").is_none());

    // The supplier answers from their client.
    let fid = f.message_id.clone().expect("Message-ID");
    let quoted: String = f.text.lines().map(|l| format!("> {l}\n")).collect();
    let answer_mail = message(
        &format!("Parts Desk <{supplier}>"),
        &reply_to,
        "Re: Fwd: Printer on fire [#1]",
        "s1@supplier.test",
        &format!("Yes, two in stock, shipping today.\n\nOn Mon, Example Support wrote:\n{quoted}"),
        &[("In-Reply-To", &format!("<{fid}>"))],
    );
    lab.send(&supplier, &[&reply_to], &answer_mail).await;
    let note = lab.wait_for("agent1", "INBOX", 2, WAIT).await.remove(1);
    let note = parsed(&note);
    assert!(
        note.text.contains("Yes, two in stock, shipping today."),
        "{}",
        note.text
    );
    assert!(note.text.contains("Parts Desk"), "{}", note.text);
    assert!(
        !note.text.contains("Is part X100-7"),
        "no quote: {}",
        note.text
    );
    // The ticket is agent1's since their answer: only they hear from the supplier.
    assert_eq!(lab.fetch_all("agent2", "INBOX").await.len(), 1);

    // Someone else using the supplier's reply address: a key that does not fit its sender,
    // kept for the agents as refused, never passed on as the supplier's answer.
    let stranger = lab.address("customer3");
    let forged = message(
        &format!("Parts Desk <{stranger}>"),
        &reply_to,
        "Re: Fwd: Printer on fire [#1]",
        "x1@stranger.test",
        "Cancel the order.\n",
        &[],
    );
    lab.send(&stranger, &[&reply_to], &forged).await;
    let ticket = setup
        .wait_json(&["ticket", "1"], WAIT, |t| {
            texts(t).iter().any(|m| m.contains("Cancel the order."))
        })
        .await;
    let transcript = ticket["transcript"].as_array().expect("transcript");
    let class_of = |words: &str| {
        transcript
            .iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains(words)))
            .map(|m| (m["class"].clone(), m["internal"].clone()))
    };
    assert_eq!(
        class_of("Yes, two in stock"),
        Some((Value::from("third-party"), Value::from(true)))
    );
    assert_eq!(
        class_of("Cancel the order."),
        Some((Value::from("key-refused"), Value::from(true))),
        "{ticket:#}"
    );
    let agent1 = lab.fetch_all("agent1", "INBOX").await;
    assert!(
        !agent1
            .iter()
            .any(|m| parsed(m).text.contains("Cancel the order.")),
        "no note of the stranger's words"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(
        lab.fetch_all("customer1", "INBOX").await.len(),
        2,
        "the customer got the acknowledgement, the answer and nothing of the forward"
    );
}
