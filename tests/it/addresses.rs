//! Several addresses routed to one mailbox, on real Dovecot and Postfix: Postfix delivers
//! billing@ into the support mailbox (an alias), and each address is a desk of its own with
//! its acknowledgement wording, From, team, reply keys and loop protection.

use std::time::Duration;

use crate::daemon::{Imap, Setup, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn one_mailbox_two_addresses_each_with_its_own_desk() {
    let Some(lab) = Lab::start_with(&[("MAILLAB_ALIASES", "billing=support".to_string())]) else {
        return;
    };
    let billing = lab.address("billing");
    let setup = Setup::new(
        &lab,
        Imap::Implicit,
        &format!(
            r#"
[[mailbox.address]]
address = "{billing}"
name = "Example Billing"
team = "billing"
templates_dir = "billing-templates"
"#
        ),
    );
    let templates = setup.dir.path().join("billing-templates");
    std::fs::create_dir(&templates).expect("templates dir");
    for (part, text) in [
        ("subject", "Billing: {{ subject }} {{ tag }}"),
        (
            "txt",
            "Dear customer, the billing team has your invoice question as {{ tag }}; we answer by {{ due }}.",
        ),
        (
            "html",
            "<html lang=\"en\" dir=\"ltr\"><p>The billing team has your invoice question as {{ tag }}; we answer by {{ due }}.</p></html>",
        ),
    ] {
        std::fs::write(templates.join(format!("ack.en.{part}")), text).expect("template");
    }
    let setup = crate::agents::add_agents(setup);
    // Bob reads Greek.
    setup.edit_config(|text| {
        text.replace(
            "address = \"agent2@example.test\"\n",
            "address = \"agent2@example.test\"\nlanguage = \"el\"\n",
        )
    });
    setup.append_config(
        r#"
[[team]]
name = "support"
agents = ["agent1@example.test"]
mailboxes = ["support"]

[[team]]
name = "billing"
agents = ["agent2@example.test"]
mailboxes = []
"#,
    );
    let check = setup.cli(&["check-config"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains(&format!(
            "address Example Billing <{billing}>: team billing, default language en, 3 template(s)"
        )),
        "{stdout}"
    );
    let daemon = setup.start();
    let support = lab.address("support");
    let (mona, nikos) = (lab.address("customer1"), lab.address("customer2"));

    // 1. Mona writes to support@, Nikos to billing@: both land in the support mailbox.
    let to_support = message(
        &format!("Mona Q <{mona}>"),
        &support,
        "Printer on fire",
        "m1@customer1.test",
        "My printer is on fire, please help.\n",
        &[],
    );
    lab.send(&mona, &[&support], &to_support).await;
    let to_billing = message(
        &format!("Nikos P <{nikos}>"),
        &format!("Billing <{billing}>"),
        "Invoice 2026-118 is wrong",
        "n1@customer2.test",
        "The invoice charges us twice for November.\n",
        &[],
    );
    lab.send(&nikos, &[&billing], &to_billing).await;

    let mona_ack = lab.wait_for("customer1", "INBOX", 1, WAIT).await.remove(0);
    let nikos_ack = lab.wait_for("customer2", "INBOX", 1, WAIT).await.remove(0);
    let tickets = setup.json(&["tickets"]);
    let number = |customer: &str| {
        tickets
            .as_array()
            .expect("tickets")
            .iter()
            .find(|t| t["customer"]["address"] == customer)
            .unwrap_or_else(|| panic!("no ticket of {customer}: {tickets:#}"))
            .clone()
    };
    let (mona_ticket, nikos_ticket) = (number(&mona), number(&nikos));
    assert_eq!(
        mona_ticket["address"],
        serde_json::Value::Null,
        "{tickets:#}"
    );
    assert_eq!(nikos_ticket["address"], billing, "{tickets:#}");
    assert_eq!(nikos_ticket["mailbox"], "support", "{tickets:#}");
    let nikos_number = nikos_ticket["id"].as_i64().expect("id");

    let m = parsed(&mona_ack);
    let from = m.from.clone().expect("From");
    assert_eq!(
        (from.address.as_str(), from.name.as_deref()),
        (support.as_str(), Some("Example Support"))
    );
    assert!(m.text.starts_with("Hello Mona Q,"), "{}", m.text);
    let n = parsed(&nikos_ack);
    let from = n.from.clone().expect("From");
    assert_eq!(
        (from.address.as_str(), from.name.as_deref()),
        (billing.as_str(), Some("Example Billing"))
    );
    assert_eq!(
        n.subject,
        format!("Billing: Invoice 2026-118 is wrong [#{nikos_number}]")
    );
    assert!(
        n.text
            .starts_with("Dear customer, the billing team has your invoice question as"),
        "{}",
        n.text
    );
    assert!(
        n.message_id
            .as_deref()
            .is_some_and(|id| id.ends_with("@example.test"))
    );
    assert_eq!(
        header(&nikos_ack, "X-Deskgate-Loop").as_deref(),
        Some(billing.as_str())
    );

    // 2. Each address's team hears of its tickets: agent1 of Mona's, agent2 of Nikos's.
    let agent1 = lab.wait_for("agent1", "INBOX", 1, WAIT).await;
    let agent2 = lab.wait_for("agent2", "INBOX", 1, WAIT).await;
    assert!(
        parsed(&agent1[0]).text.contains("on fire"),
        "{}",
        parsed(&agent1[0]).text
    );
    let notification = agent2.into_iter().next().expect("notification");
    let note = parsed(&notification);
    assert!(note.text.contains("charges us twice"), "{}", note.text);
    // Bob reads Greek: his notification is in Greek, whatever the customer wrote in.
    assert_eq!(
        note.subject,
        format!("[#{nikos_number}] Νέο αίτημα: Invoice 2026-118 is wrong")
    );
    assert!(
        note.text
            .starts_with("##- Γράψτε την απάντησή σας πάνω από αυτή τη γραμμή -##"),
        "{}",
        note.text
    );
    assert!(
        note.text.contains("Γλώσσα πελάτη: Αγγλικά"),
        "{}",
        note.text
    );
    let reply_to = note.reply_to.clone().expect("signed Reply-To").address;
    assert!(
        reply_to.starts_with(&format!("billing+{nikos_number}.")),
        "the reply key is made for the billing address: {reply_to}"
    );

    // 3. Bob answers; Postfix routes billing+<key>@ into the support mailbox like billing@.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let nid = note.message_id.clone().expect("notification Message-ID");
    let answer = message(
        &format!("Bob Agent <{}>", lab.address("agent2")),
        &format!("Example Billing <{reply_to}>"),
        &format!("Re: {}", note.subject),
        "bob1@agent.test",
        &format!(
            "We have refunded the second charge.\n\nΣτις 23/11/2026 10:00, ο/η Example Billing έγραψε:\n{}",
            note.text
                .lines()
                .map(|l| format!("> {l}\n"))
                .collect::<String>()
        ),
        &[("In-Reply-To", &format!("<{nid}>"))],
    );
    lab.submit("agent2", &[&reply_to], &answer).await;
    let inbox = lab.wait_for("customer2", "INBOX", 2, WAIT).await;
    let relayed = inbox
        .iter()
        .find(|m| header(m, "Auto-Submitted").is_none())
        .expect("the relayed answer");
    let r = parsed(relayed);
    let from = r.from.clone().expect("From");
    assert_eq!(
        (from.address.as_str(), from.name.as_deref()),
        (billing.as_str(), Some("Bob Agent via Example Billing"))
    );
    assert_eq!(
        r.reply_to.as_ref().map(|p| p.address.as_str()),
        Some(billing.as_str())
    );
    assert_eq!(r.in_reply_to, vec!["n1@customer2.test"]);
    assert!(
        r.text.starts_with("We have refunded the second charge."),
        "{}",
        r.text
    );
    assert!(!String::from_utf8_lossy(relayed).contains("billing+"));
    for secret in [
        "billing+",
        "Γράψτε την απάντησή",
        "charges us twice",
        "έγραψε",
    ] {
        assert!(
            !r.text.contains(secret),
            "the customer sees {secret:?}:\n{}",
            r.text
        );
    }

    // 4. Nikos answers the acknowledgement: the same ticket, no second acknowledgement.
    let ack_id = n.message_id.clone().expect("ack Message-ID");
    let follow = message(
        &format!("Nikos P <{nikos}>"),
        &billing,
        &format!("Re: {}", n.subject),
        "n2@customer2.test",
        "Thank you, I see the refund.\n",
        &[("In-Reply-To", &format!("<{ack_id}>"))],
    );
    lab.send(&nikos, &[&billing], &follow).await;
    setup
        .wait_json(&["ticket", &nikos_number.to_string()], WAIT, |t| {
            t["transcript"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["message_id"] == "n2@customer2.test"))
        })
        .await;

    // 5. Our own address as a sender (an auto-forward from billing@) is never a ticket.
    let own = message(
        &format!("Example Billing <{billing}>"),
        &support,
        "Fwd: Invoice 2026-118 is wrong",
        "own1@example.test",
        "Forwarded by the old billing mailbox rule.\n",
        &[],
    );
    lab.send(&billing, &[&support], &own).await;
    setup.wait_log("mail loop prevented", 1, WAIT).await;
    assert!(setup.log().contains("own1@example.test"), "{}", setup.log());
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(setup.json(&["tickets"]).as_array().map(Vec::len), Some(2));
    assert_eq!(
        lab.fetch_all("customer2", "INBOX").await.len(),
        2,
        "one ack, one answer"
    );
    assert_eq!(
        lab.fetch_all("agent1", "INBOX").await.len(),
        1,
        "agent1 never hears of billing"
    );
}
