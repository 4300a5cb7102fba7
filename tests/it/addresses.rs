//! Several addresses routed to one mailbox, on real Dovecot and Postfix: Postfix delivers
//! billing@ into the support mailbox (an alias), and each address is a desk of its own with
//! its acknowledgement wording, From, team, reply keys and loop protection.

use std::time::Duration;

use deskgate::parse::ParsedMessage;

use crate::daemon::{Imap, Setup, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn one_mailbox_two_addresses_each_with_its_own_desk() {
    let Some(lab) = Lab::start_with(&[("MAILLAB_ALIASES", "billing=support".to_string())]) else {
        return;
    };
    let billing = lab.address("billing");
    let setup = billing_desk(&lab, &billing);
    assert_check_config_lists_the_billing_address(&setup, &billing);
    let daemon = setup.start();

    // 1. Mona writes to support@, Nikos to billing@: both land in the support mailbox.
    let (mona_ack, nikos_ack) = mona_and_nikos_write(&lab, &billing).await;
    let nikos_number = assert_each_ticket_has_its_address(&lab, &setup, &billing);
    let nikos_ack =
        assert_each_ack_speaks_for_its_address(&lab, &billing, nikos_number, &mona_ack, &nikos_ack);

    // 2. Each address's team hears of its tickets: agent1 of Mona's, agent2 of Nikos's.
    let note = each_team_hears_of_its_ticket(&lab, nikos_number).await;
    let reply_to = note.reply_to.clone().expect("signed Reply-To").address;
    assert!(
        reply_to.starts_with(&format!("billing+{nikos_number}.")),
        "the reply key is made for the billing address: {reply_to}"
    );

    // 3. Bob answers; Postfix routes billing+<key>@ into the support mailbox like billing@.
    bob_answers_through_the_billing_key(&lab, &billing, &note, &reply_to).await;

    // 4. Nikos answers the acknowledgement: the same ticket, no second acknowledgement.
    nikos_answers_the_acknowledgement(&lab, &setup, &billing, &nikos_ack, nikos_number).await;

    // 5. Our own address as a sender (an auto-forward from billing@) is never a ticket.
    our_own_address_is_a_loop(&lab, &setup, &billing).await;
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_nothing_more_was_sent(&lab, &setup).await;
}

/// The standard desk plus billing@ as a second address of the support mailbox, with its own
/// acknowledgement templates and team (Bob, who reads Greek); Alice is the support team.
fn billing_desk(lab: &Lab, billing: &str) -> Setup {
    let setup = Setup::new(
        lab,
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
    write_billing_templates(&setup.dir.path().join("billing-templates"));
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
    setup
}

/// The billing address's own English acknowledgement (subject, text, HTML) in `templates`.
fn write_billing_templates(templates: &std::path::Path) {
    std::fs::create_dir(templates).expect("templates dir");
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
}

/// `check-config` accepts the desk and describes the billing address with its team,
/// language and templates.
fn assert_check_config_lists_the_billing_address(setup: &Setup, billing: &str) {
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
}

/// Mona writes to support@ and Nikos to billing@; returns their acknowledgements (raw).
async fn mona_and_nikos_write(lab: &Lab, billing: &str) -> (Vec<u8>, Vec<u8>) {
    let support = lab.address("support");
    let (mona, nikos) = (lab.address("customer1"), lab.address("customer2"));
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
    lab.send(&nikos, &[billing], &to_billing).await;

    let mona_ack = lab.wait_for("customer1", "INBOX", 1, WAIT).await.remove(0);
    let nikos_ack = lab.wait_for("customer2", "INBOX", 1, WAIT).await.remove(0);
    (mona_ack, nikos_ack)
}

/// Mona's ticket has no address of its own, Nikos's has billing@ in the support mailbox;
/// returns Nikos's ticket number.
fn assert_each_ticket_has_its_address(lab: &Lab, setup: &Setup, billing: &str) -> i64 {
    let (mona, nikos) = (lab.address("customer1"), lab.address("customer2"));
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
    nikos_ticket["id"].as_i64().expect("id")
}

/// Mona's acknowledgement comes from support@ in the standard wording, Nikos's from
/// billing@ in the billing wording and loop header; returns Nikos's, parsed.
fn assert_each_ack_speaks_for_its_address(
    lab: &Lab,
    billing: &str,
    nikos_number: i64,
    mona_ack: &[u8],
    nikos_ack: &[u8],
) -> ParsedMessage {
    let support = lab.address("support");
    let m = parsed(mona_ack);
    assert_from(&m, &support, "Example Support");
    assert!(m.text.starts_with("Hello Mona Q,"), "{}", m.text);
    let n = parsed(nikos_ack);
    assert_from(&n, billing, "Example Billing");
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
        header(nikos_ack, "X-Deskgate-Loop").as_deref(),
        Some(billing)
    );
    n
}

/// Asserts that `m` is from `address` under the display name `name`.
fn assert_from(m: &ParsedMessage, address: &str, name: &str) {
    let from = m.from.clone().expect("From");
    assert_eq!(
        (from.address.as_str(), from.name.as_deref()),
        (address, Some(name))
    );
}

/// Agent1 is told of Mona's ticket, agent2 (Bob) of Nikos's, in Greek; returns Bob's
/// notification, parsed.
async fn each_team_hears_of_its_ticket(lab: &Lab, nikos_number: i64) -> ParsedMessage {
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
    note
}

/// Bob answers his notification (quoting it, in Greek) to its billing+ reply key; Nikos
/// receives the answer from billing@, threaded, without the key, the quote or the notice.
async fn bob_answers_through_the_billing_key(
    lab: &Lab,
    billing: &str,
    note: &ParsedMessage,
    reply_to: &str,
) {
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
    lab.submit("agent2", &[reply_to], &answer).await;
    let inbox = lab.wait_for("customer2", "INBOX", 2, WAIT).await;
    let relayed = inbox
        .iter()
        .find(|m| header(m, "Auto-Submitted").is_none())
        .expect("the relayed answer");
    let r = parsed(relayed);
    assert_from(&r, billing, "Bob Agent via Example Billing");
    assert_eq!(
        r.reply_to.as_ref().map(|p| p.address.as_str()),
        Some(billing)
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
}

/// Nikos replies to his acknowledgement at billing@; the reply joins his ticket.
async fn nikos_answers_the_acknowledgement(
    lab: &Lab,
    setup: &Setup,
    billing: &str,
    nikos_ack: &ParsedMessage,
    nikos_number: i64,
) {
    let nikos = lab.address("customer2");
    let ack_id = nikos_ack.message_id.clone().expect("ack Message-ID");
    let follow = message(
        &format!("Nikos P <{nikos}>"),
        billing,
        &format!("Re: {}", nikos_ack.subject),
        "n2@customer2.test",
        "Thank you, I see the refund.\n",
        &[("In-Reply-To", &format!("<{ack_id}>"))],
    );
    lab.send(&nikos, &[billing], &follow).await;
    setup
        .wait_json(&["ticket", &nikos_number.to_string()], WAIT, |t| {
            t["transcript"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["message_id"] == "n2@customer2.test"))
        })
        .await;
}

/// Mail from billing@ itself (an old auto-forward rule) is logged as a prevented loop.
async fn our_own_address_is_a_loop(lab: &Lab, setup: &Setup, billing: &str) {
    let support = lab.address("support");
    let own = message(
        &format!("Example Billing <{billing}>"),
        &support,
        "Fwd: Invoice 2026-118 is wrong",
        "own1@example.test",
        "Forwarded by the old billing mailbox rule.\n",
        &[],
    );
    lab.send(billing, &[&support], &own).await;
    setup.wait_log("mail loop prevented", 1, WAIT).await;
    assert!(setup.log().contains("own1@example.test"), "{}", setup.log());
}

/// Two tickets in all; Nikos got one acknowledgement and one answer, and agent1 nothing of
/// billing.
async fn assert_nothing_more_was_sent(lab: &Lab, setup: &Setup) {
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
