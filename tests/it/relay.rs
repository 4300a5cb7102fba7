//! The relay fails closed, on real Dovecot and Postfix (issue 15, attack 3): an agent's answer
//! reaches the customer without the quoted mail from every client shape, an answer carrying
//! an escalation or an internal note is refused with the agent told why, and `#cc` changes
//! who receives the answers.

use std::time::Duration;

use crate::agents::{answer, customer_writes, thunderbird_reply, with_agents};
use crate::daemon::{header, parsed};
use crate::deadlines::{events, set_deadlines};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

const NOTE: &str = "Fraud team: the IBAN change request on this account looks forged, do not confirm anything to the customer.";

/// A reply from `agent` to `to` on the mail `answered`: `body`, then the client's quote
/// `header`, then the answered text, `> `-quoted or (Outlook) as is.
fn client_reply(
    agent: &str,
    to: &str,
    answered: &[u8],
    body: &str,
    header: &str,
    quoted: bool,
) -> Vec<u8> {
    let n = parsed(answered);
    let nid = n.message_id.clone().expect("Message-ID");
    let text: String = if quoted {
        n.text.lines().map(|l| format!("> {l}\n")).collect()
    } else {
        n.text.clone()
    };
    message(
        &format!("Alice Agent <{agent}>"),
        &format!("Example Support <{to}>"),
        &format!("AW: {}", n.subject),
        &format!("{:x}@agent.test", seed(body)),
        &format!("{body}\n\n{header}\n\n{text}"),
        &[("In-Reply-To", &format!("<{nid}>"))],
    )
}

fn seed(text: &str) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(text)
}

/// The signed Reply-To of a notification.
fn signed_reply_to(notification: &[u8]) -> String {
    parsed(notification)
        .reply_to
        .expect("signed Reply-To")
        .address
}

/// The first of `mails` whose subject starts with `prefix`.
fn with_subject(mails: &[Vec<u8>], prefix: &str) -> Vec<u8> {
    mails
        .iter()
        .find(|m| parsed(m).subject.starts_with(prefix))
        .unwrap_or_else(|| {
            let subjects: Vec<String> = mails.iter().map(|m| parsed(m).subject).collect();
            panic!("no mail with subject {prefix:?} in {subjects:?}")
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_15_attack_3_an_escalation_answered_from_outlook_never_reaches_the_customer() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    set_deadlines(
        &setup,
        r#"first_response = "6s"

[[deadlines.escalation]]
after = "0s"
to = ["agent1@example.test"]"#,
    );
    let daemon = setup.start();
    let agent1 = lab.address("agent1");
    customer_writes(
        &lab,
        (
            "Refunds",
            "iban@customer.test",
            "Please send my refunds to the new IBAN DE89 3704 0044 0532 0130 00.\n",
        ),
        1,
    )
    .await;
    // Bob writes an internal note; the escalation then shows it to Alice (after the warning).
    let bob_notification = lab.wait_for("agent2", "INBOX", 1, WAIT).await.remove(0);
    answer(&lab, "agent2", &bob_notification, &format!("#note\n{NOTE}")).await;
    let inbox = lab.wait_for("agent1", "INBOX", 4, WAIT).await;
    let escalation = with_subject(&inbox, "Escalation 1:");
    let e = parsed(&escalation);
    let reply_to = e.reply_to.clone().expect("signed Reply-To").address;
    assert!(e.text.contains("reply above this line"), "{}", e.text);
    assert!(e.text.contains("IBAN change request"), "{}", e.text);

    // German Outlook: the header block is recognised, only Alice's words are relayed.
    let german = client_reply(
        &agent1,
        &reply_to,
        &escalation,
        "Wir kümmern uns sofort darum und melden uns heute.",
        &format!(
            "________________________________\nVon: Example Support <{reply_to}>\nGesendet: Montag, 7. Dezember 2026 10:00\nAn: Alice Agent <{agent1}>\nBetreff: {}",
            e.subject
        ),
        false,
    );
    lab.submit("agent1", &[&reply_to], &german).await;
    let relayed = lab.wait_for("customer1", "INBOX", 2, WAIT).await.remove(1);
    let text = parsed(&relayed).text;
    assert!(
        text.starts_with("Wir kümmern uns sofort darum und melden uns heute."),
        "{text}"
    );
    let raw = String::from_utf8_lossy(&relayed);
    for secret in [
        "IBAN change",
        "internal",
        "Von:",
        "Escalation",
        "support+",
        "agent1@",
    ] {
        assert!(
            !raw.contains(secret) && !text.contains(secret),
            "the customer sees {secret:?}:\n{text}"
        );
    }

    // An Outlook whose header we do not read (Dutch), the marker line trimmed away by the
    // agent: the whole escalation would go out. Nothing is sent; Alice is told why.
    let trimmed: String = e
        .text
        .lines()
        .filter(|l| !l.contains("##-"))
        .map(|l| format!("{l}\n"))
        .collect();
    let dutch = message(
        &format!("Alice Agent <{agent1}>"),
        &format!("Example Support <{reply_to}>"),
        &format!("RE: {}", e.subject),
        "dutch@agent.test",
        &format!(
            "Dit is geregeld.\n\nVan: Example Support <{reply_to}>\nVerzonden: maandag 7 december 2026 10:00\nAan: Alice Agent <{agent1}>\nOnderwerp: {}\n\n{trimmed}",
            e.subject
        ),
        &[(
            "In-Reply-To",
            &format!("<{}>", e.message_id.clone().expect("id")),
        )],
    );
    lab.submit("agent1", &[&reply_to], &dutch).await;
    let notices = lab.wait_for("agent1", "INBOX", 5, WAIT).await;
    let notice = parsed(&notices[4]).text;
    assert!(notice.contains("NOT sent"), "{notice}");
    assert!(notice.contains("deskgate's mail to agents"), "{notice}");

    // Answering inline under the quoted note: refused, the note named.
    let inline = thunderbird_reply(
        &agent1,
        &reply_to,
        &escalation,
        "> Fraud team: the IBAN change request on this account looks forged\nWe checked the request with you by phone.",
    );
    lab.submit("agent1", &[&reply_to], &inline).await;
    let notices = lab.wait_for("agent1", "INBOX", 6, WAIT).await;
    let notice = parsed(&notices[5]).text;
    assert!(notice.contains("NOT sent"), "{notice}");
    assert!(
        notice.contains("internal note by agent2@example.test"),
        "{notice}"
    );

    // The customer got the acknowledgement and the one clean answer, nothing else.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 2);
    let outbox = setup.json(&["outbox"]);
    let replies = outbox
        .as_array()
        .expect("outbox list")
        .iter()
        .filter(|row| row["kind"] == "reply")
        .count();
    assert_eq!(replies, 1, "{outbox:#}");
    assert_eq!(events(&setup, "relay.refused").len(), 2);
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_shape_relays_only_the_answer() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let agent1 = lab.address("agent1");
    let notification =
        customer_writes(&lab, ("Printer", "shapes@customer.test", "It jams.\n"), 1).await;
    let to = signed_reply_to(&notification);
    // (client, quote header, quoted with `>`, a word of the header that must not be relayed)
    let shapes = [
        (
            "de outlook",
            format!(
                "________________________________\nVon: Example Support <{to}>\nGesendet: Montag, 7. Dezember 2026 10:00\nAn: Alice Agent <{agent1}>\nBetreff: Printer"
            ),
            false,
            "Gesendet",
        ),
        (
            "fr gmail",
            format!("Le lun. 7 déc. 2026 à 10:00, Example Support <{to}> a écrit :"),
            true,
            "a écrit",
        ),
        (
            "es apple",
            format!("El 7 dic 2026, a las 10:00, Example Support <{to}> escribió:"),
            true,
            "escribió",
        ),
        (
            "it thunderbird",
            "Il 07/12/26 10:00, Example Support ha scritto:".to_string(),
            true,
            "ha scritto",
        ),
        (
            "el outlook",
            format!(
                "Από: Example Support <{to}>\nΣτάλθηκε: Δευτέρα, 7 Δεκεμβρίου 2026 10:00 πμ\nΠρος: Alice Agent <{agent1}>\nΘέμα: Printer"
            ),
            false,
            "Στάλθηκε",
        ),
        (
            "ar gmail",
            format!(
                "\u{202b}في الاثنين، 7 ديسمبر 2026 في 10:00 ص تمت كتابة ما يلي بواسطة \u{202a}Example Support\u{202c}\u{200f} <\u{202a}{to}\u{202c}>:\u{202c}"
            ),
            true,
            "بواسطة",
        ),
        (
            "en apple",
            format!("On 7 Dec 2026, at 10:00, Example Support <{to}> wrote:"),
            true,
            "wrote",
        ),
        // Red team: languages whose quote headers we do not parse lose the header above our
        // marker all the same, so the agent's address never precedes the customer.
        (
            "nl outlook",
            format!(
                "Van: Example Support <{to}>\nVerzonden: maandag 7 december 2026 10:00\nAan: Alice Agent <{agent1}>\nOnderwerp: Printer"
            ),
            false,
            "Verzonden",
        ),
        (
            "nl gmail",
            format!("Op ma 7 dec. 2026 om 10:00 schreef Alice Agent <{agent1}>:"),
            true,
            "schreef",
        ),
    ];
    for (i, (shape, quote_header, quoted, word)) in shapes.iter().enumerate() {
        let body = format!("Answer {i} from {shape}: please open tray {i}.");
        let raw = client_reply(&agent1, &to, &notification, &body, quote_header, *quoted);
        lab.submit("agent1", &[&to], &raw).await;
        let inbox = lab.wait_for("customer1", "INBOX", i + 2, WAIT).await;
        let relayed = &inbox[i + 1];
        let text = parsed(relayed).text;
        assert!(text.starts_with(&body), "{shape}: {text}");
        assert!(!text.contains(word), "{shape}: {text}");
        assert!(!text.contains("It jams."), "{shape}: {text}");
        let raw_text = String::from_utf8_lossy(relayed).to_ascii_lowercase();
        for inside in ["agent1@", "support+"] {
            assert!(
                !raw_text.contains(inside),
                "{shape}: {inside} in {raw_text}"
            );
        }
    }
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Red team: a quote header line in a language we do not parse that slips through (one
/// `Van:` line is no header block) fails closed: the address in it refuses the answer, the
/// agent told which. The legitimate flow: an answer naming the public support address is
/// relayed.
#[tokio::test(flavor = "multi_thread")]
async fn an_inside_address_left_in_an_answer_refuses_it() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let (agent1, support) = (lab.address("agent1"), lab.address("support"));
    let notification =
        customer_writes(&lab, ("Printer", "nl@customer.test", "It jams.\n"), 1).await;
    let to = signed_reply_to(&notification);
    // One `Van:` line above the quote is no header block: it slips through, and the address
    // in it refuses the answer.
    let slipped = client_reply(
        &agent1,
        &to,
        &notification,
        "Antwoord 2.",
        &format!("Van: Alice Agent <{agent1}>"),
        false,
    );
    lab.submit("agent1", &[&to], &slipped).await;
    let told = parsed(&lab.wait_for("agent1", "INBOX", 2, WAIT).await[1]).text;
    assert!(
        told.contains("NOT sent") && told.contains(&format!("the address {agent1}")),
        "{told}"
    );

    let public = format!("Write to {support} any time.");
    let raw = client_reply(&agent1, &to, &notification, &public, "", true);
    lab.submit("agent1", &[&to], &raw).await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    assert!(parsed(&inbox[1]).text.starts_with(&public));
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 2);
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// Red team: an agent answers with the notification attached (Outlook's "attach original",
/// a forward as attachment). Its signed Reply-To and internal text never reach the customer:
/// the answer is withheld at the last check and the agent told which attachment.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_with_the_notification_attached_is_withheld_and_the_agent_told() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let agent1 = lab.address("agent1");
    let notification =
        customer_writes(&lab, ("Printer", "attach@customer.test", "It jams.\n"), 1).await;
    let n = parsed(&notification);
    let to = n.reply_to.clone().expect("signed Reply-To").address;
    let nid = n.message_id.clone().expect("Message-ID");
    let mut raw = format!(
        "From: Alice Agent <{agent1}>\r\nTo: <{to}>\r\nSubject: RE: {}\r\nMessage-ID: <attach@agent.test>\r\nIn-Reply-To: <{nid}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the details below.\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"original.eml\"\r\n\r\n",
        n.subject
    )
    .into_bytes();
    raw.extend_from_slice(&notification);
    raw.extend_from_slice(b"\r\n--b--\r\n");
    lab.submit("agent1", &[&to], &raw).await;
    let told = parsed(&lab.wait_for("agent1", "INBOX", 2, WAIT).await[1]).text;
    assert!(
        told.contains("NOT sent") && told.contains("original.eml carries a reply key"),
        "{told}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        lab.fetch_all("customer1", "INBOX").await.len(),
        1,
        "the ack only"
    );

    answer(&lab, "agent1", &notification, "Tray 2 is the culprit.").await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    assert!(parsed(&inbox[1]).text.starts_with("Tray 2 is the culprit."));
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn cc_add_then_remove_changes_who_receives_the_answers() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let accountant = lab.address("customer4");
    let notification = customer_writes(
        &lab,
        ("Invoice", "cc1@customer.test", "The invoice is wrong.\n"),
        1,
    )
    .await;
    let n = parsed(&notification);
    assert!(
        n.text
            .contains(&format!("Your answer goes to: Mona Q <{customer}>")),
        "{}",
        n.text
    );

    // An agent's address is refused: nothing applied or sent, the agent told.
    answer(
        &lab,
        "agent1",
        &notification,
        "#cc add agent2@example.test\nHello",
    )
    .await;
    let notice = parsed(&lab.wait_for("agent1", "INBOX", 2, WAIT).await[1]).text;
    assert!(notice.contains("an agent's address"), "{notice}");

    // #cc add: the answer reaches the accountant too.
    answer(
        &lab,
        "agent1",
        &notification,
        &format!("#cc add {accountant}\nWe copy your accountant on this ticket."),
    )
    .await;
    let relayed = lab.wait_for("customer4", "INBOX", 1, WAIT).await.remove(0);
    let r = parsed(&relayed);
    assert!(r.text.starts_with("We copy your accountant"), "{}", r.text);
    assert!(r.cc.iter().any(|p| p.address == accountant), "{:?}", r.cc);
    lab.wait_for("customer1", "INBOX", 2, WAIT).await;

    // The customer answers; the notification says who will receive the next answer.
    let follow_up = message(
        &customer,
        &support,
        "Re: Invoice",
        "cc2@customer.test",
        "Thanks, waiting.\n",
        &[(
            "In-Reply-To",
            &format!("<{}>", r.message_id.clone().expect("relayed Message-ID")),
        )],
    );
    lab.send(&customer, &[&support], &follow_up).await;
    let inbox = lab.wait_for("agent1", "INBOX", 3, WAIT).await;
    let update = parsed(&inbox[2]);
    assert!(update.text.contains(&accountant), "{}", update.text);

    // #cc remove: the next answer reaches the customer only.
    answer(
        &lab,
        "agent1",
        &inbox[2],
        &format!("#cc remove {accountant}\nThe accountant is no longer copied."),
    )
    .await;
    let inbox = lab.wait_for("customer1", "INBOX", 3, WAIT).await;
    let last = &inbox[2];
    assert!(
        parsed(last).text.starts_with("The accountant is no longer"),
        "{}",
        parsed(last).text
    );
    assert_eq!(header(last, "Cc"), None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lab.fetch_all("customer4", "INBOX").await.len(), 1);
    let (status, _) = daemon.stop();
    assert!(status.success());
}
