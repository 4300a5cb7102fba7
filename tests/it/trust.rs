//! Issue 15, the attacks as an attacker sends them, on real Postfix and Dovecot: a reply key
//! must never reach a customer, a wrong key is final, a subject tag adds nobody, and an agent
//! action needs a key and (with `[trust] authserv_id`) our MTA's Authentication-Results.
//! Next to each, the legitimate flow that must keep working.

use std::time::Duration;

use crate::agents::{agent1_is_told, answer, thunderbird_reply};
use deskgate::config::Config;
use deskgate::model::TicketId;
use deskgate::store::Store;

use crate::daemon::{Imap, Setup, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);
/// Our MTA's authserv-id in the tests that check authentication.
const OURS: &str = "mx.example.test";

/// Alice Agent (agent1, answering also from agent3) and Bob Agent (agent2), a notes address,
/// and with `authserv_id`, `[trust]`.
fn desk(lab: &Lab, authserv_id: Option<&str>) -> Setup {
    let setup = Setup::new(lab, Imap::Implicit, "");
    std::fs::write(
        setup.dir.path().join("relay.key"),
        format!("{}\n", "7a".repeat(32)),
    )
    .expect("write relay key");
    let trust = authserv_id.map_or(String::new(), |id| {
        format!("[trust]\nauthserv_id = \"{id}\"\n")
    });
    setup.append_config(&format!(
        r#"
[relay]
secret_file = "relay.key"
notes_address = "support+notes@example.test"

{trust}
[[agent]]
name = "Alice Agent"
address = "agent1@example.test"
alternates = ["agent3@example.test"]

[[agent]]
name = "Bob Agent"
address = "agent2@example.test"
"#
    ));
    setup
}

/// The customer's "Invoice wrong" ticket; returns its number and agent1's notification.
async fn open_ticket(lab: &Lab, setup: &Setup, cc: Option<&str>) -> (i64, Vec<u8>) {
    let invoice = ("Invoice wrong", "The amount is wrong.\n");
    crate::agents::open_ticket(lab, setup, invoice, cc).await
}

/// The texts of agent1's notices about mail from their address without a reply key.
async fn unsigned_notices(lab: &Lab) -> Vec<String> {
    lab.fetch_all("agent1", "INBOX")
        .await
        .iter()
        .map(|m| parsed(m).text)
        .filter(|t| t.contains("did not carry a ticket's reply key"))
        .collect()
}

/// How many notices were held back by the once-an-hour limit (`notice.limited` events).
fn notices_limited(setup: &Setup) -> usize {
    setup
        .json(&["events", "--kind", "notice.limited", "--limit", "10"])
        .as_array()
        .map_or(0, Vec::len)
}

/// The signed Reply-To and Message-ID of a notification.
fn keys(notification: &[u8]) -> (String, String) {
    let n = parsed(notification);
    (
        n.reply_to.expect("signed Reply-To").address,
        n.message_id.expect("signed Message-ID"),
    )
}

/// The addresses taking part in `ticket`, read from the setup's store (either backend; a
/// blocking thread, as PostgreSQL's client runs its own runtime).
async fn participants(setup: &Setup, ticket: i64) -> Vec<String> {
    let config = Config::load(&setup.config).expect("the test's config");
    tokio::task::spawn_blocking(move || {
        let store = Store::connect_read_only(&config.database).expect("open the store");
        store
            .read_blocking(|tx| tx.participants(TicketId(ticket)))
            .expect("participants")
            .expect("the ticket exists")
    })
    .await
    .expect("read participants")
}

/// The inbound messages of a `ticket N --json`.
fn inbound(ticket: &serde_json::Value) -> Vec<serde_json::Value> {
    ticket["transcript"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|m| m["direction"] == "in")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The kinds of every outbox row.
fn outbox_kinds(setup: &Setup) -> Vec<String> {
    setup
        .json(&["outbox"])
        .as_array()
        .expect("outbox list")
        .iter()
        .filter_map(|r| r["kind"].as_str().map(String::from))
        .collect()
}

/// Asserts that `raw` (mail a customer received) carries no reply key and no inside address.
fn assert_no_key(raw: &[u8], also: &[&str]) {
    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
    for needle in ["support+", "<dg.", " dg.", "agent1@", "agent3@"]
        .iter()
        .chain(also)
    {
        assert!(
            !text.contains(needle),
            "a customer sees {needle:?}:\n{text}"
        );
    }
}

/// Alice answers the notification of ticket `number`: the customer receives the answer
/// (returned) and the ticket has its first response.
async fn answer_counts(lab: &Lab, setup: &Setup, notification: &[u8], number: i64) -> Vec<u8> {
    answer(lab, "agent1", notification, "The invoice is corrected.").await;
    let relayed = lab.wait_for("customer1", "INBOX", 2, WAIT).await.remove(1);
    assert!(
        parsed(&relayed)
            .text
            .starts_with("The invoice is corrected.")
    );
    let ticket = setup.json(&["ticket", &number.to_string()]);
    assert!(!ticket["first_response_at"].is_null(), "{ticket:#}");
    relayed
}

/// Prepends `Authentication-Results` headers, top first, as MTAs add them.
fn with_results(raw: Vec<u8>, results: &[&str]) -> Vec<u8> {
    let mut out: Vec<u8> = results
        .iter()
        .flat_map(|r| format!("Authentication-Results: {r}\r\n").into_bytes())
        .collect();
    out.extend(raw);
    out
}

/// Attack 1: an agent answers a notification from an address deskgate does not know. The
/// answer is refused and kept for agents; neither that address nor the signed reply address
/// becomes a participant, so nothing later sent to the customer carries a key, and the
/// refused mail threads nothing. The legitimate flow: the same agent answering from a
/// configured alternate address is relayed.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_from_an_unknown_address_is_refused_and_no_key_reaches_the_customer() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let cc = lab.address("customer3");
    let (number, notification) = open_ticket(&lab, &setup, Some(&cc)).await;
    let (reply_to, _) = keys(&notification);

    // Alice presses Reply on her phone, whose account (customer5) deskgate does not know.
    let phone = lab.address("customer5");
    let from_phone = thunderbird_reply(&phone, &reply_to, &notification, "Looking into it.");
    lab.submit("customer5", &[&reply_to], &from_phone).await;
    let agent1 = lab.wait_for("agent1", "INBOX", 2, WAIT).await;
    let notice = parsed(&agent1[1]);
    assert!(notice.text.contains("NOT sent"), "{}", notice.text);
    assert!(notice.text.contains(&phone), "{}", notice.text);
    let ticket = setup.json(&["ticket", &number.to_string()]);
    assert!(
        inbound(&ticket)
            .iter()
            .any(|m| m["class"] == "key-refused" && m["internal"] == true),
        "{ticket:#}"
    );
    let people = participants(&setup, number).await;
    assert_eq!(
        people,
        vec![lab.address("customer1"), cc.clone()],
        "neither the phone nor the signed address takes part"
    );

    // Alice answers from agent3, an alternate address of hers: relayed to the customer and
    // the customer's CC, and to nobody else.
    let from_alternate = thunderbird_reply(
        &lab.address("agent3"),
        &reply_to,
        &notification,
        "The corrected invoice is attached.",
    );
    lab.submit("agent3", &[&reply_to], &from_alternate).await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    let relayed = &inbox[1];
    let r = parsed(relayed);
    assert!(
        r.text.starts_with("The corrected invoice is attached."),
        "{}",
        r.text
    );
    assert_eq!(
        r.from.and_then(|f| f.name).as_deref(),
        Some("Alice Agent via Example Support")
    );
    let cc_list: Vec<&str> = r.cc.iter().map(|p| p.address.as_str()).collect();
    assert_eq!(cc_list, vec![cc.as_str()]);
    assert_no_key(relayed, &[&phone]);
    lab.wait_for("customer3", "INBOX", 1, WAIT).await;
    assert_eq!(
        lab.fetch_all("agent2", "INBOX").await.len(),
        1,
        "the team heard only of the customer"
    );

    // The refused mail's Message-ID threads nothing: a stranger quoting it gets a ticket of
    // their own.
    let phone_id = parsed(&from_phone).message_id.expect("Message-ID");
    let stranger = lab.address("customer2");
    let quoting = message(
        &stranger,
        &lab.address("support"),
        "Re: Invoice wrong",
        "s1@customer2.test",
        "What about mine?\n",
        &[("In-Reply-To", &format!("<{phone_id}>"))],
    );
    lab.send(&stranger, &[&lab.address("support")], &quoting)
        .await;
    lab.wait_for("customer2", "INBOX", 1, WAIT).await;
    let tickets = setup.json(&["tickets"]);
    let tickets = tickets.as_array().expect("tickets");
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert!(tickets.iter().any(|t| t["customer"]["address"] == stranger));

    // The phone never heard from deskgate; one answer reached the customer.
    assert!(lab.fetch_all("customer5", "INBOX").await.is_empty());
    let kinds = outbox_kinds(&setup);
    assert_eq!(
        kinds.iter().filter(|k| *k == "reply").count(),
        1,
        "{kinds:?}"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Attack 2: a forged From with an altered reply address, and the valid signed Message-ID of
/// the agent's notification in References to vouch for it. The address decides: refused,
/// nothing relayed, no command obeyed, the agent told.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_reply_address_is_final_whatever_the_references_prove() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let (number, notification) = open_ticket(&lab, &setup, None).await;
    let (reply_to, signed_id) = keys(&notification);
    let (local, domain) = reply_to.split_once('@').expect("address");
    let flipped = if local.ends_with('0') { '1' } else { '0' };
    let altered = format!("{}{flipped}@{domain}", &local[..local.len() - 1]);

    let attacker = lab.address("customer2");
    let forged = message(
        &format!("Alice Agent <{}>", lab.address("agent1")),
        &format!("Example Support <{altered}>"),
        "Re: Invoice wrong",
        "forged2@customer2.test",
        "#assign agent2@example.test\nOur bank account changed: please pay to XX00 1234.\n",
        &[
            ("In-Reply-To", &format!("<{signed_id}>")),
            ("References", &format!("<m1@customer.test> <{signed_id}>")),
        ],
    );
    lab.send(&attacker, &[&altered], &forged).await;
    let agent1 = lab.wait_for("agent1", "INBOX", 2, WAIT).await;
    let notice = parsed(&agent1[1]);
    assert!(notice.text.contains("NOT sent"), "{}", notice.text);
    assert!(
        notice.text.contains("wrong or altered token"),
        "{}",
        notice.text
    );

    let ticket = setup.json(&["ticket", &number.to_string()]);
    assert!(ticket["assigned"].is_null(), "{ticket:#}");
    assert!(ticket["first_response_at"].is_null(), "{ticket:#}");
    let kinds = outbox_kinds(&setup);
    assert!(
        !kinds.iter().any(|k| k == "reply" || k == "note"),
        "{kinds:?}"
    );
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 1);
    assert_eq!(lab.fetch_all("agent2", "INBOX").await.len(), 1);
    assert!(lab.fetch_all("customer2", "INBOX").await.is_empty());
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Attack 4: a forged From of the customer with the ticket's tag in the subject and an
/// intruder in Cc. It joins the ticket by its tag but adds nobody, so the intruder gets no
/// answer. The legitimate flow: the customer answering our mail (References) with a new Cc
/// adds that Cc, who gets the agent's answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_customer_with_the_ticket_tag_adds_nobody() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let (number, notification) = open_ticket(&lab, &setup, None).await;
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let (intruder, colleague) = (lab.address("customer4"), lab.address("customer5"));

    let forged = message(
        &format!("Mona Q <{customer}>"),
        &support,
        &format!("Re: Invoice wrong [#{number}]"),
        "forged4@customer2.test",
        "Please copy my new assistant on everything.\n",
        &[("Cc", &intruder)],
    );
    lab.send(&lab.address("customer2"), &[&support], &forged)
        .await;
    setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            inbound(t).len() >= 2
        })
        .await;
    assert!(!participants(&setup, number).await.contains(&intruder));

    let ack_id = parsed(&lab.fetch_all("customer1", "INBOX").await[0])
        .message_id
        .expect("acknowledgement Message-ID");
    let genuine = message(
        &format!("Mona Q <{customer}>"),
        &support,
        &format!("Re: Invoice wrong [#{number}]"),
        "m2@customer.test",
        "Adding my colleague, who handles invoices.\n",
        &[
            ("Cc", &colleague),
            ("In-Reply-To", &format!("<{ack_id}>")),
            ("References", &format!("<m1@customer.test> <{ack_id}>")),
        ],
    );
    lab.send(&customer, &[&support], &genuine).await;
    setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            inbound(t).len() >= 3
        })
        .await;
    assert!(participants(&setup, number).await.contains(&colleague));

    crate::agents::answer(
        &lab,
        "agent1",
        &notification,
        "A corrected invoice follows.",
    )
    .await;
    lab.wait_for("customer5", "INBOX", 1, WAIT).await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    let r = parsed(&inbox[1]);
    assert!(
        r.text.starts_with("A corrected invoice follows."),
        "{}",
        r.text
    );
    let cc_list: Vec<&str> = r.cc.iter().map(|p| p.address.as_str()).collect();
    assert_eq!(cc_list, vec![colleague.as_str()]);
    assert!(
        lab.fetch_all("customer4", "INBOX").await.is_empty(),
        "the intruder got mail"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Attack 5 with `[trust] authserv_id`: a forged Reply All (no key) stops no clock and
/// assigns nothing; a forged note to the notes address and a forged answer carry a leaked
/// key, but our MTA's Authentication-Results fails them (a spoofed pass of ours below it, or
/// another authserv-id's pass, is ignored). Nothing reaches the customer or the team; Alice
/// is told each time. The legitimate flows: Alice's answer, authenticated, is relayed, and
/// Bob's Reply All with his reply address in Bcc is counted.
#[tokio::test(flavor = "multi_thread")]
async fn forged_agent_mail_needs_a_key_and_our_authentication() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, Some(OURS));
    let daemon = setup.start();
    let (number, notification) = open_ticket(&lab, &setup, None).await;
    let (reply_to, signed_id) = keys(&notification);

    // 1. A Reply All forged from Alice, dated back to the minute the ticket opened.
    forged_reply_all_without_a_key(&lab).await;
    lab.wait_for("agent1", "INBOX", 2, WAIT).await;
    let ticket = setup.json(&["ticket", &number.to_string()]);
    assert!(ticket["first_response_at"].is_null(), "{ticket:#}");
    assert!(ticket["assigned"].is_null(), "{ticket:#}");
    assert!(
        !ticket["next_due_at"].is_null(),
        "the clock runs: {ticket:#}"
    );

    // 2. A note to the notes address with Alice's leaked notification Message-ID; our MTA
    //    says fail on top, the attacker's own "pass" of ours sits below it.
    forged_note_with_a_leaked_message_id(&lab, &signed_id).await;
    agent1_is_told(&lab, 3, "not authenticated").await;

    // 3. An answer with Alice's leaked reply address and another authserv-id's pass only.
    forged_answer_passed_by_another_mta(&lab, &reply_to).await;
    assert_refused_quietly_and_nothing_sent(&lab, &setup, number).await;

    // 4. Alice's own answer: another relay's header on top, ours (pass) below it, and a
    //    stale fail of ours further down: relayed, counted, assigned.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alice_answers_authenticated(&lab, &setup, &reply_to, &notification, number).await;

    // 5. The customer writes again; Bob answers with Reply All on the customer's mail and his
    //    reply address in Bcc (his key stays in the envelope): counted, not relayed again.
    customer_writes_again(&lab, &setup, number).await;
    bob_replies_all_with_his_key_in_bcc(&lab, &setup, number).await;
    let kinds = outbox_kinds(&setup);
    assert_eq!(
        kinds.iter().filter(|k| *k == "reply").count(),
        1,
        "{kinds:?}"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// What our MTA (`OURS`) writes for mail the attacker sends in Alice's name: DMARC and SPF
/// fail.
fn ours_fail() -> String {
    format!(
        "{OURS}; dmarc=fail header.from=example.test; spf=fail smtp.mailfrom=customer2@example.test"
    )
}

/// What our MTA (`OURS`) writes for mail an agent really sends: DKIM and DMARC pass.
fn ours_pass() -> String {
    format!("{OURS}; dkim=pass header.d=example.test; dmarc=pass header.from=example.test")
}

/// The attacker (customer2) sends a Reply All on the customer's mail, forged from Alice,
/// copying support, with our MTA's fail on it.
async fn forged_reply_all_without_a_key(lab: &Lab) {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let reply_all = with_results(
        message(
            &format!("Alice Agent <{}>", lab.address("agent1")),
            &customer,
            "Re: Invoice wrong",
            "forged5a@customer2.test",
            "Sorted, see you.\n",
            &[
                ("Cc", &support),
                ("In-Reply-To", "<m1@customer.test>"),
                ("References", "<m1@customer.test>"),
            ],
        ),
        &[&ours_fail()],
    );
    lab.send(&lab.address("customer2"), &[&support], &reply_all)
        .await;
}

/// The attacker sends a `#note` to the notes address threaded on Alice's notification by its
/// leaked `signed_id`: our fail on top, a spoofed pass of ours below it.
async fn forged_note_with_a_leaked_message_id(lab: &Lab, signed_id: &str) {
    let notes = "support+notes@example.test";
    let note = with_results(
        message(
            &format!("Alice Agent <{}>", lab.address("agent1")),
            notes,
            "Re: Invoice wrong",
            "forged5b@customer2.test",
            "#note\nRefund approved, pay to XX00 1234.\n",
            &[("In-Reply-To", &format!("<{signed_id}>"))],
        ),
        &[
            &ours_fail(),
            &format!("{OURS}; dmarc=pass header.from=example.test"),
        ],
    );
    lab.send(&lab.address("customer2"), &[notes], &note).await;
}

/// The attacker answers to Alice's leaked `reply_to` with only another authserv-id's pass.
async fn forged_answer_passed_by_another_mta(lab: &Lab, reply_to: &str) {
    let answer = with_results(
        message(
            &format!("Alice Agent <{}>", lab.address("agent1")),
            reply_to,
            "Re: Invoice wrong",
            "forged5c@customer2.test",
            "Please pay to XX00 1234 from now on.\n",
            &[],
        ),
        &["mx.attacker.test; dmarc=pass header.from=example.test"],
    );
    lab.send(&lab.address("customer2"), &[reply_to], &answer)
        .await;
}

/// The forged answer is recorded as lacking our Authentication-Results, and Alice is not
/// told again; no forged mail reached the customer, the team or the attacker.
async fn assert_refused_quietly_and_nothing_sent(lab: &Lab, setup: &Setup, number: i64) {
    // Alice heard of a refused mail from her address within the hour: this one is recorded,
    // not noticed again (a forger would fill her inbox).
    let received = setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            t["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["kind"] == "notice.limited"))
        })
        .await;
    assert!(
        received["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| {
                e["kind"] == "message.received"
                    && e["detail"].as_str().is_some_and(|d| {
                        d.contains(&format!("no Authentication-Results from {OURS}"))
                    })
            }),
        "{received:#}"
    );
    assert_eq!(lab.fetch_all("agent1", "INBOX").await.len(), 3);
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 1);
    assert_eq!(lab.fetch_all("agent2", "INBOX").await.len(), 1, "no note");
    assert!(lab.fetch_all("customer2", "INBOX").await.is_empty());
}

/// Alice's own Thunderbird answer, with our pass between another relay's fail and a stale
/// fail of ours, is relayed to the customer, counts as the first response and assigns her.
async fn alice_answers_authenticated(
    lab: &Lab,
    setup: &Setup,
    reply_to: &str,
    notification: &[u8],
    number: i64,
) {
    let genuine = with_results(
        thunderbird_reply(
            &lab.address("agent1"),
            reply_to,
            notification,
            "Fixed, new invoice sent.",
        ),
        &["relay.example.org; dmarc=fail", &ours_pass(), &ours_fail()],
    );
    lab.submit("agent1", &[reply_to], &genuine).await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    assert!(
        parsed(&inbox[1])
            .text
            .starts_with("Fixed, new invoice sent.")
    );
    let ticket = setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            !t["first_response_at"].is_null()
        })
        .await;
    assert_eq!(ticket["assigned"], "agent1@example.test");
}

/// The customer writes again on ticket `number`, which waits for an answer once more.
async fn customer_writes_again(lab: &Lab, setup: &Setup, number: i64) {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let again = message(
        &customer,
        &support,
        &format!("Re: Invoice wrong [#{number}]"),
        "m3@customer.test",
        "And the old one?\n",
        &[("In-Reply-To", "<m1@customer.test>")],
    );
    lab.send(&customer, &[&support], &again).await;
    setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            !t["next_due_at"].is_null()
        })
        .await;
}

/// Bob answers the customer directly with Reply All (copying support), authenticated, and
/// his reply address in Bcc: the answer stops the clock and is recorded as his.
async fn bob_replies_all_with_his_key_in_bcc(lab: &Lab, setup: &Setup, number: i64) {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let bob_notification = lab.wait_for("agent2", "INBOX", 1, WAIT).await.remove(0);
    let (bob_key, _) = keys(&bob_notification);
    let bob = lab.address("agent2");
    let direct = with_results(
        message(
            &format!("Bob Agent <{bob}>"),
            &customer,
            "Re: Invoice wrong",
            "direct@agent2.test",
            "The old one is cancelled.\n",
            &[
                ("Cc", &support),
                ("In-Reply-To", "<m3@customer.test>"),
                ("References", "<m1@customer.test> <m3@customer.test>"),
            ],
        ),
        &[&ours_pass()],
    );
    // One submission per recipient: the lab delivers both in one LMTP transaction, where
    // Dovecot writes no Delivered-To; the customer being on another domain, the support copy
    // travels alone in real life.
    lab.submit("agent2", &[&customer], &direct).await;
    lab.submit("agent2", &[&bob_key], &direct).await;
    let ticket = setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            t["next_due_at"].is_null()
        })
        .await;
    assert!(
        ticket["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "agent.answered"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("agent2@example.test"))),
        "{ticket:#}"
    );
}

/// Red team: a forged key naming a ticket that does not exist opens none (each would be a
/// customer-less ticket: a flood); mail forged from an agent's address tells the agent once
/// an hour, not once per mail. The legitimate flow: the first one is told, the ticket works.
#[tokio::test(flavor = "multi_thread")]
async fn forged_keys_open_no_ticket_and_forged_agent_mail_tells_the_agent_once() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let (number, _) = open_ticket(&lab, &setup, None).await;
    let (attacker, alice) = (lab.address("customer2"), lab.address("agent1"));
    let support = lab.address("support");

    // Three mails to keys of a ticket that does not exist, one From Alice.
    let forged_key = format!("support+999.{}@example.test", "0".repeat(20));
    for (i, from) in [&attacker, &attacker, &alice].iter().enumerate() {
        let raw = message(
            from,
            &forged_key,
            "Re: Ticket",
            &format!("flood{i}@customer2.test"),
            "Pay to XX00 1234.\n",
            &[],
        );
        lab.send(&attacker, &[&forged_key], &raw).await;
    }
    // Three mails forged from Alice without a key, on the customer's ticket.
    for i in 0..3 {
        let raw = message(
            &format!("Alice Agent <{alice}>"),
            &support,
            &format!("Re: Invoice wrong [#{number}]"),
            &format!("unsigned{i}@customer2.test"),
            "Ignore the last mail.\n",
            &[("In-Reply-To", "<m1@customer.test>")],
        );
        lab.send(&attacker, &[&support], &raw).await;
    }
    let received = setup
        .wait_json(
            &["events", "--kind", "message.received", "--limit", "100"],
            WAIT,
            |events| events.as_array().is_some_and(|e| e.len() >= 7),
        )
        .await;
    let refused: Vec<&serde_json::Value> = received
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("key-refused"))
        })
        .collect();
    assert_eq!(refused.len(), 3, "{received:#}");
    assert!(
        refused.iter().all(|e| e["ticket"].is_null()),
        "kept on no ticket: {refused:#?}"
    );
    let tickets = setup.json(&["tickets"]);
    assert_eq!(tickets.as_array().map(Vec::len), Some(1), "{tickets:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Alice: her notification and one notice about the unsigned mail; two more recorded.
    let notices = unsigned_notices(&lab).await;
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices_limited(&setup), 2);
    assert!(lab.fetch_all("customer2", "INBOX").await.is_empty());
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Red team: a customer holding a leaked notification puts its reply address in the Subject
/// of a new ticket, so that every answer would carry it to everyone on the ticket. The
/// enqueue check withholds the acknowledgement and the answer, and tells the agent who
/// answered; the withheld answer counts for nothing (no deadline met, no first response, no
/// assignment, its `#priority` not applied), so the ticket still waits for an answer. The
/// legitimate flow: the other ticket's answer is relayed and counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_in_the_subject_withholds_the_answer_and_tells_the_agent() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let (number, notification) = open_ticket(&lab, &setup, None).await;
    let (reply_to, _) = keys(&notification);
    let (attacker, support) = (lab.address("customer2"), lab.address("support"));
    let planted = message(
        &attacker,
        &support,
        &format!("Refund, write to {reply_to}"),
        "planted@customer2.test",
        "Please refund me.\n",
        &[],
    );
    lab.send(&attacker, &[&support], &planted).await;
    let inbox = lab.wait_for("agent1", "INBOX", 2, WAIT).await;
    let second = parsed(&inbox[1]);
    assert!(second.subject.contains("Refund"), "{}", second.subject);
    answer(
        &lab,
        "agent1",
        &inbox[1],
        "#priority urgent\nWe refund you today.",
    )
    .await;
    let inbox = lab.wait_for("agent1", "INBOX", 3, WAIT).await;
    let told = parsed(&inbox[2]).text;
    assert!(
        told.contains("NOT sent")
            && told.contains("Subject carries a reply key")
            && told.contains("Nothing in your mail was applied"),
        "{told}"
    );
    let planted_ticket = setup.json(&["ticket", "2"]);
    assert!(
        planted_ticket["first_response_at"].is_null()
            && planted_ticket["assigned"].is_null()
            && !planted_ticket["next_due_at"].is_null()
            && planted_ticket["priority"] != "urgent",
        "a withheld answer is no answer: {planted_ticket:#}"
    );
    let met = setup.json(&["events", "--kind", "deadline.met", "--limit", "10"]);
    assert_eq!(met.as_array().map(Vec::len), Some(0), "{met:#}");
    let withheld = setup.json(&["events", "--kind", "outbox.key_withheld", "--limit", "10"]);
    assert_eq!(withheld.as_array().map(Vec::len), Some(2), "{withheld:#}");
    assert!(lab.fetch_all("customer2", "INBOX").await.is_empty());

    let relayed = answer_counts(&lab, &setup, &notification, number).await;
    assert_no_key(&relayed, &[]);
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Red team (ticket flood): mail forged from an agent's address, without a key and threading
/// into no ticket, sent again and again. Each would open a ticket without a customer, outside
/// the per-sender limits (they count customers); it opens none, is kept on no ticket with its
/// events, and Alice is told once an hour. The legitimate flow: the customer's ticket is
/// answered by Alice as usual.
#[tokio::test(flavor = "multi_thread")]
async fn forged_agent_mail_threading_into_no_ticket_opens_none() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let (number, notification) = open_ticket(&lab, &setup, None).await;
    let (attacker, alice) = (lab.address("customer2"), lab.address("agent1"));
    let support = lab.address("support");
    for i in 0..4 {
        let raw = message(
            &format!("Alice Agent <{alice}>"),
            &support,
            "New bank details",
            &format!("agent-flood{i}@customer2.test"),
            "Our IBAN changed: XX00 1234.\n",
            &[],
        );
        lab.send(&attacker, &[&support], &raw).await;
    }
    let received = setup
        .wait_json(
            &["events", "--kind", "message.received", "--limit", "100"],
            WAIT,
            |events| events.as_array().is_some_and(|e| e.len() >= 5),
        )
        .await;
    let forged: Vec<&serde_json::Value> = received
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["ticket"].is_null())
        .collect();
    assert_eq!(forged.len(), 4, "kept on no ticket: {received:#}");
    let tickets = setup.json(&["tickets"]);
    assert_eq!(tickets.as_array().map(Vec::len), Some(1), "{tickets:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let notices = unsigned_notices(&lab).await;
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert!(
        notices[0].contains("It belonged to no ticket and opened none."),
        "{}",
        notices[0]
    );
    assert_eq!(notices_limited(&setup), 3);
    assert!(lab.fetch_all("customer2", "INBOX").await.is_empty());

    answer_counts(&lab, &setup, &notification, number).await;
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Red team (recipient amplification): a customer's mail copies a thousand addresses, so that
/// every answer would go to all of them from the company's address. One mail adds at most
/// `policy.max_cc_per_message` (10) people besides its sender; the agents' notification names
/// the rest for `#cc add`, and a `ticket.cc_capped` event records them. The legitimate flow:
/// the first people the customer copied receive the answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_mail_copying_a_thousand_people_adds_ten() {
    let Some(lab) = Lab::start() else { return };
    let setup = desk(&lab, None);
    let daemon = setup.start();
    let friend = lab.address("customer3");
    let copied: Vec<String> = std::iter::once(friend.clone())
        .chain((0..999).map(|i| format!("victim{i}@elsewhere.test")))
        .collect();
    let (number, notification) = open_ticket(&lab, &setup, Some(&copied.join(",\r\n "))).await;
    let people = participants(&setup, number).await;
    assert_eq!(people.len(), 11, "{people:?}");
    assert!(people.contains(&friend) && people.contains(&lab.address("customer1")));
    assert!(people.contains(&"victim8@elsewhere.test".to_string()));
    let text = parsed(&notification).text;
    assert!(
        text.contains("Not added (too many people copied at once): victim9@elsewhere.test, ")
            && text.contains("victim13@elsewhere.test and 985 more; use #cc add"),
        "{text}"
    );
    let capped = setup.json(&["events", "--kind", "ticket.cc_capped", "--limit", "10"]);
    assert!(
        capped[0]["detail"].as_str().is_some_and(|d| d
            .starts_with("990 not added (policy.max_cc_per_message = 10): victim9@elsewhere.test")),
        "{capped:#}"
    );

    answer(&lab, "agent1", &notification, "The invoice is corrected.").await;
    let inbox = lab.wait_for("customer3", "INBOX", 1, WAIT).await;
    let answer = parsed(&inbox[0]);
    assert!(answer.text.starts_with("The invoice is corrected."));
    assert_eq!(answer.cc.len(), 10, "{:?}", answer.cc);
    let (status, _) = daemon.stop();
    assert!(status.success());
}
