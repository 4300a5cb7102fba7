//! Agents answer from their own mail client, on real Dovecot and Postfix: notification with a
//! signed Reply-To, relay to the customer without the quote, notes, commands, forgeries.

use std::time::Duration;

use deskgate::parse::ParsedMessage;

use crate::daemon::{Imap, Setup, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

pub fn with_agents(lab: &Lab) -> Setup {
    add_agents(Setup::new(lab, Imap::Implicit, ""))
}

/// A [relay] (its key in `relay.key`, see [`write_relay_key`]) and two agents: Alice Agent
/// (agent1) and Bob Agent (agent2).
pub const AGENTS: &str = r#"
[relay]
secret_file = "relay.key"

[[agent]]
name = "Alice Agent"
address = "agent1@example.test"

[[agent]]
name = "Bob Agent"
address = "agent2@example.test"
"#;

/// Writes the relay key [`AGENTS`] names into `dir`.
pub fn write_relay_key(dir: &std::path::Path) {
    deskgate::files::write_private(
        &dir.join("relay.key"),
        format!("{}\n", "5e".repeat(32)).as_bytes(),
    )
    .expect("write relay key");
}

/// Adds [`AGENTS`] to `setup`.
pub fn add_agents(setup: Setup) -> Setup {
    write_relay_key(setup.dir.path());
    setup.append_config(AGENTS);
    setup
}

/// Thunderbird's reply: text above, "On … wrote:" and the quoted notification below.
pub fn thunderbird_reply(agent: &str, to: &str, notification: &[u8], body: &str) -> Vec<u8> {
    let n = parsed(notification);
    let nid = n.message_id.clone().expect("notification Message-ID");
    let quoted: String = n.text.lines().map(|l| format!("> {l}\n")).collect();
    let references = n
        .references
        .iter()
        .chain(std::iter::once(&nid))
        .map(|r| format!("<{r}>"))
        .collect::<Vec<_>>()
        .join(" ");
    message(
        &format!("Alice Agent <{agent}>"),
        &format!("Example Support <{to}>"),
        &format!("Re: {}", n.subject),
        &format!("{}@agent.test", uuid_like(body)),
        &format!("{body}\n\nOn 23/11/2026 10:00, Example Support wrote:\n{quoted}"),
        &[
            ("In-Reply-To", &format!("<{nid}>")),
            ("References", &references),
            ("User-Agent", "Mozilla Thunderbird"),
        ],
    )
}

/// The lab user `agent` presses Reply in Thunderbird on `notification` (or a warning, or
/// anything with their signed Reply-To) and sends `body` over submission.
pub async fn answer(lab: &Lab, agent: &str, notification: &[u8], body: &str) {
    let reply_to = parsed(notification)
        .reply_to
        .expect("signed Reply-To")
        .address;
    let raw = thunderbird_reply(&lab.address(agent), &reply_to, notification, body);
    lab.submit(agent, &[&reply_to], &raw).await;
}

/// `customer1` (Mona Q) writes `body` to support for the `n`th time; returns agent1's
/// notification (their `n`th mail), once the acknowledgement (Mona's `n`th) is in.
pub async fn customer_writes(
    lab: &Lab,
    (subject, message_id, body): (&str, &str, &str),
    n: usize,
) -> Vec<u8> {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let mail = message(
        &format!("Mona Q <{customer}>"),
        &support,
        subject,
        message_id,
        body,
        &[],
    );
    lab.send(&customer, &[&support], &mail).await;
    lab.wait_for("customer1", "INBOX", n, WAIT).await;
    lab.wait_for("agent1", "INBOX", n, WAIT).await.remove(n - 1)
}

/// Outlook's reply: text above a rule and a From:/Sent:/To:/Subject: block, unquoted.
fn outlook_reply(agent: &str, to: &str, notification: &[u8], body: &str) -> Vec<u8> {
    let n = parsed(notification);
    let nid = n.message_id.clone().expect("notification Message-ID");
    message(
        &format!("Alice Agent <{agent}>"),
        &format!("Example Support <{to}>"),
        &format!("RE: {}", n.subject),
        &format!("{}@agent.test", uuid_like(body)),
        &format!(
            "{body}\n\n________________________________\nFrom: Example Support <{to}>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Alice Agent <{agent}>\nSubject: {}\n\n{}",
            n.subject, n.text
        ),
        &[
            ("In-Reply-To", &format!("<{nid}>")),
            ("Thread-Topic", &n.subject),
            ("X-Mailer", "Microsoft Outlook 16.0"),
        ],
    )
}

/// `raw` (a single text/plain part) turned into multipart/mixed with a small file `name`.
fn with_attachment(raw: Vec<u8>, name: &str) -> Vec<u8> {
    let text = String::from_utf8(raw).expect("utf-8 test message");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body");
    let head: String = head
        .lines()
        .filter(|l| !l.starts_with("Content-Type") && !l.starts_with("Content-Transfer-Encoding"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    format!(
        "{head}Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn uuid_like(seed: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    format!("{:016x}", RandomState::new().hash_one(seed))
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_reply_reaches_the_customer_threaded_without_quote_or_token() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();

    // 1. A customer mail → acknowledgement to the customer, a notification to each agent.
    let cc = lab.address("customer3");
    let (number, notification) =
        open_ticket(&lab, &setup, ("Printer on fire", "It smokes.\n"), Some(&cc)).await;
    let reply_to = assert_notification_is_signed_and_quotes_the_mail(&notification, number);

    // 2. Agent1 presses Reply in Thunderbird and sends over submission.
    tokio::time::sleep(Duration::from_millis(1100)).await; // Date (whole seconds) after the ticket
    let (answer, relayed) = alice_answers_in_thunderbird(&lab, &reply_to, &notification).await;
    assert_relayed_answer_is_clean(&lab, &relayed, number).await;
    assert_first_response_is_the_answer(&setup, number, &answer);

    // 3. An internal note from Outlook reaches agent2 only.
    note_from_outlook_reaches_agent2(&lab, &reply_to, &notification).await;

    // 4. A forged From with a wrong token: nothing relayed, agent1 told.
    forgery_with_a_wrong_token(&lab, &reply_to).await;
    agent1_is_told(&lab, 2, "NOT sent").await;

    // 5. An unknown command: nothing applied, nothing sent, agent1 told what is wrong.
    let agent1 = lab.address("agent1");
    let bad = thunderbird_reply(&agent1, &reply_to, &notification, "#frobnicate\nHello");
    lab.submit("agent1", &[&reply_to], &bad).await;
    agent1_is_told(&lab, 3, "unknown command #frobnicate").await;

    // 6. #close closes.
    let close = thunderbird_reply(&agent1, &reply_to, &notification, "#close");
    lab.submit("agent1", &[&reply_to], &close).await;
    setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            t["status"] == "closed"
        })
        .await;

    // 7. The customer answers the relayed mail: the ticket reopens and only the assigned
    //    agent (agent1) hears of it.
    customer_answers_the_relayed_mail(&lab, &setup, number, &relayed).await;

    // Nothing but the acknowledgement and the one answer ever reached the customer.
    assert_one_reply_only(&lab, &setup).await;
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Mona (customer1) opens a ticket with `(subject, body)`, copying `cc` if given; once both
/// agents and Mona have their mail, returns the ticket number and agent1's notification.
pub async fn open_ticket(
    lab: &Lab,
    setup: &Setup,
    (subject, body): (&str, &str),
    cc: Option<&str>,
) -> (i64, Vec<u8>) {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let headers: Vec<(&str, &str)> = cc.map(|cc| ("Cc", cc)).into_iter().collect();
    let original = message(
        &format!("Mona Q <{customer}>"),
        &support,
        subject,
        "m1@customer.test",
        body,
        &headers,
    );
    lab.send(&customer, &[&support], &original).await;
    let notification = lab.wait_for("agent1", "INBOX", 1, WAIT).await.remove(0);
    lab.wait_for("agent2", "INBOX", 1, WAIT).await;
    lab.wait_for("customer1", "INBOX", 1, WAIT).await;
    let number = setup.json(&["tickets"])[0]["id"]
        .as_i64()
        .expect("ticket id");
    (number, notification)
}

/// The notification of ticket `number` has a signed Reply-To and Message-ID, threads on the
/// customer's mail, is marked automatic and carries the mail and the reply line; returns
/// the signed Reply-To.
fn assert_notification_is_signed_and_quotes_the_mail(notification: &[u8], number: i64) -> String {
    let n = parsed(notification);
    let reply_to = n.reply_to.clone().expect("signed Reply-To").address;
    assert!(
        reply_to.starts_with(&format!("support+{number}.")) && reply_to.ends_with("@example.test"),
        "{reply_to}"
    );
    assert!(
        n.message_id
            .as_deref()
            .unwrap_or("")
            .starts_with(&format!("dg.{number}.")),
        "{:?}",
        n.message_id
    );
    assert_eq!(n.in_reply_to, vec!["m1@customer.test"]);
    assert_eq!(
        header(notification, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(n.text.contains("It smokes."), "{}", n.text);
    assert!(n.text.contains("reply above this line"), "{}", n.text);
    assert!(n.text.contains(&format!("[#{number}]")), "{}", n.text);
    assert!(n.text.contains("first ticket"), "{}", n.text);
    reply_to
}

/// Alice answers the notification from Thunderbird; returns her answer and the relayed mail
/// the customer received (besides the acknowledgement).
async fn alice_answers_in_thunderbird(
    lab: &Lab,
    reply_to: &str,
    notification: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let answer = thunderbird_reply(
        &lab.address("agent1"),
        reply_to,
        notification,
        "Please switch it off and unplug it.",
    );
    let submitted = std::time::Instant::now();
    lab.submit("agent1", &[reply_to], &answer).await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    eprintln!(
        "agent reply submitted → relayed answer in the customer's inbox: {:?}",
        submitted.elapsed()
    );
    let relayed = inbox
        .into_iter()
        .find(|m| header(m, "Auto-Submitted").is_none())
        .expect("a relayed answer besides the acknowledgement");
    (answer, relayed)
}

/// The relayed answer comes from support@ in Alice's name, threads on the customer's mail,
/// keeps the customer's CC (who receives it) and shows no address, key or quote of ours.
async fn assert_relayed_answer_is_clean(lab: &Lab, relayed: &[u8], number: i64) {
    let cc = lab.address("customer3");
    let r = parsed(relayed);
    assert_eq!(r.subject, format!("Re: Printer on fire [#{number}]"));
    let from = r.from.clone().expect("From");
    assert_eq!(from.address, "support@example.test");
    assert_eq!(
        from.name.as_deref(),
        Some("Alice Agent via Example Support")
    );
    assert_eq!(r.in_reply_to, vec!["m1@customer.test"]);
    assert!(r.references.contains(&"m1@customer.test".to_string()));
    assert!(
        r.text.starts_with("Please switch it off and unplug it."),
        "{}",
        r.text
    );
    let raw = String::from_utf8_lossy(relayed);
    for secret in [
        "agent1@",
        "support+",
        "reply above this line",
        "wrote:",
        "It smokes",
    ] {
        assert!(
            !raw.contains(secret),
            "the customer sees {secret:?}:\n{raw}"
        );
    }
    assert!(
        r.cc.iter().any(|p| p.address == cc),
        "the customer's CC is kept"
    );
    lab.wait_for("customer3", "INBOX", 1, WAIT).await;
}

/// The first response is the agent's reply time; the agent now owns the ticket.
fn assert_first_response_is_the_answer(setup: &Setup, number: i64, answer: &[u8]) {
    let ticket = setup.json(&["ticket", &number.to_string()]);
    let sent: jiff::Timestamp = parsed(answer).date.expect("Date");
    let first: jiff::Timestamp = ticket["first_response_at"]
        .as_str()
        .expect("first_response_at")
        .parse()
        .expect("timestamp");
    assert_eq!(first, sent, "{ticket:#}");
    assert_eq!(ticket["assigned"], "agent1@example.test");
    assert!(ticket["next_due_at"].is_null(), "deadline met: {ticket:#}");
}

/// Alice's `#note` from Outlook reaches agent2 as an internal note, without the quoted
/// Outlook header block.
async fn note_from_outlook_reaches_agent2(lab: &Lab, reply_to: &str, notification: &[u8]) {
    let note = outlook_reply(
        &lab.address("agent1"),
        reply_to,
        notification,
        "#note\nCustomer is a VIP, handle with care.",
    );
    lab.submit("agent1", &[reply_to], &note).await;
    let agent2 = lab.wait_for("agent2", "INBOX", 2, WAIT).await;
    let note_text = agent2
        .iter()
        .map(|m| parsed(m).text)
        .find(|t| t.contains("Internal note"));
    let note_text = note_text.expect("the note reached agent2");
    assert!(note_text.contains("Customer is a VIP"), "{note_text}");
    assert!(!note_text.contains("Sent: Monday"), "{note_text}");
}

/// customer2 sends mail forged from Alice to `reply_to` with its last character altered.
async fn forgery_with_a_wrong_token(lab: &Lab, reply_to: &str) {
    let (local, domain) = reply_to.rsplit_once('@').expect("reply address");
    let altered = if local.ends_with('0') { '1' } else { '0' };
    let forged_to = format!("{}{altered}@{domain}", &local[..local.len() - 1]);
    let forged = message(
        &format!("Alice Agent <{}>", lab.address("agent1")),
        &forged_to,
        "Re: Printer on fire",
        "forged@customer2.test",
        "Your refund of 5000 EUR is approved.\n",
        &[],
    );
    lab.send(&lab.address("customer2"), &[&forged_to], &forged)
        .await;
}

/// Waits for agent1's `n`th mail and asserts that its text says `what`; returns it, parsed.
pub async fn agent1_is_told(lab: &Lab, n: usize, what: &str) -> ParsedMessage {
    let agent1_inbox = lab.wait_for("agent1", "INBOX", n, WAIT).await;
    let notice = parsed(&agent1_inbox[n - 1]);
    assert!(notice.text.contains(what), "{}", notice.text);
    notice
}

/// Mona answers the relayed mail of the closed ticket `number`: it reopens and agent1, its
/// owner, hears of it; agent2 does not.
async fn customer_answers_the_relayed_mail(lab: &Lab, setup: &Setup, number: i64, relayed: &[u8]) {
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let agent2_before = lab.fetch_all("agent2", "INBOX").await.len();
    let relayed_id = parsed(relayed).message_id.expect("relayed Message-ID");
    let follow_up = message(
        &customer,
        &support,
        &format!("Re: Printer on fire [#{number}]"),
        "m1b@customer.test",
        "It is off now. Thanks!\n",
        &[("In-Reply-To", &format!("<{relayed_id}>"))],
    );
    lab.send(&customer, &[&support], &follow_up).await;
    let update = agent1_is_told(lab, 4, "It is off now.").await;
    assert!(
        update.subject.contains("Customer wrote"),
        "{}",
        update.subject
    );
    let ticket = setup.json(&["ticket", &number.to_string()]);
    assert_eq!(ticket["status"], "open", "{ticket:#}");
    assert_eq!(lab.fetch_all("agent2", "INBOX").await.len(), agent2_before);
}

/// The outbox holds one reply, and Mona's inbox the acknowledgement and that reply only.
async fn assert_one_reply_only(lab: &Lab, setup: &Setup) {
    let outbox = setup.json(&["outbox"]);
    let replies = outbox
        .as_array()
        .expect("outbox list")
        .iter()
        .filter(|row| row["kind"] == "reply")
        .count();
    assert_eq!(replies, 1, "{outbox:#}");
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_all_is_counted_and_a_lost_plus_part_still_relays() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let agent2 = lab.address("agent2");
    let original = message(
        &customer,
        &support,
        "Login broken",
        "m2@customer.test",
        "Cannot log in.\n",
        &[],
    );
    lab.send(&customer, &[&support], &original).await;
    let notification = lab.wait_for("agent1", "INBOX", 1, WAIT).await.remove(0);
    lab.wait_for("customer1", "INBOX", 1, WAIT).await;
    let number = setup.json(&["tickets"])[0]["id"]
        .as_i64()
        .expect("ticket id");

    // Agent2 answers the customer directly, copying support (Reply All on the original),
    // with his reply address in Bcc: the key proves it is his, and the customer never sees
    // it. (Without it, the Reply All would act as nobody: tests/it/trust.rs.)
    let bob_notification = lab.wait_for("agent2", "INBOX", 1, WAIT).await.remove(0);
    let bob_key = parsed(&bob_notification)
        .reply_to
        .expect("signed Reply-To")
        .address;
    let direct = message(
        &format!("Bob Agent <{agent2}>"),
        &customer,
        "Re: Login broken",
        "direct@agent2.test",
        "Try resetting your password.\n",
        &[
            ("Cc", &support),
            ("In-Reply-To", "<m2@customer.test>"),
            ("References", "<m2@customer.test>"),
        ],
    );
    // Apart, as across domains: one LMTP delivery to two lab users carries no Delivered-To.
    lab.submit("agent2", &[&customer], &direct).await;
    lab.submit("agent2", &[&bob_key], &direct).await;
    let ticket = setup
        .wait_json(&["ticket", &number.to_string()], WAIT, |t| {
            !t["first_response_at"].is_null()
        })
        .await;
    assert_eq!(ticket["assigned"], "agent2@example.test");
    let events = ticket["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["kind"] == "agent.answered"
            && e["detail"].as_str().unwrap_or("").contains("not relayed")),
        "{ticket:#}"
    );

    // Agent1's client dropped the plus part: the signed Message-ID in In-Reply-To still
    // proves the reply, and it is relayed, in the language agent1 chose with #lang.
    let answer = thunderbird_reply(
        &lab.address("agent1"),
        &support,
        &notification,
        "#lang el\nFixed on our side.",
    );
    let answer = with_attachment(answer, "howto.pdf");
    lab.submit("agent1", &[&support], &answer).await;
    let inbox = lab.wait_for("customer1", "INBOX", 3, WAIT).await;
    let relayed: Vec<_> = inbox
        .iter()
        .map(|m| parsed(m))
        .filter(|m| m.text.starts_with("Fixed on our side."))
        .collect();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].in_reply_to, vec!["m2@customer.test"]);
    assert_eq!(
        relayed[0].attachment_names.len(),
        1,
        "the agent's file is carried"
    );
    assert!(relayed[0].text.contains("αίτημα"), "{}", relayed[0].text);
    let ticket = setup.json(&["ticket", &number.to_string()]);
    assert_eq!(ticket["language"], "el", "{ticket:#}");
    assert!(
        inbox
            .iter()
            .any(|m| String::from_utf8_lossy(m).contains("howto.pdf"))
    );
    // The customer has: acknowledgement, agent2's direct answer, agent1's relayed answer.
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 3);
    let outbox = setup.json(&["outbox"]);
    let kinds: Vec<&str> = outbox
        .as_array()
        .expect("outbox")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "reply").count(),
        1,
        "{kinds:?}"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
}
