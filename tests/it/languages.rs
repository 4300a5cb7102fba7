//! Every customer in their own language: legacy-charset Arabic and Greek mail through the real
//! servers gets an acknowledgement in the customer's language that decodes to exactly what the
//! templates say; the language choice, contacts and their history through ingest in-process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deskgate::config::Config;
use deskgate::ingest::{Outcome, Source, ingest};
use deskgate::language::{Lang, Source as LangSource};
use deskgate::model::{Person, TicketId, TicketStatus};
use deskgate::render::{self, AckFor, Templates};
use deskgate::store::Store;
use jiff::Timestamp;

use crate::daemon::{Imap, Setup, parsed};
use crate::harness::Lab;

const WAIT: Duration = Duration::from_secs(30);

/// A customer mail whose subject, display name and body are in `charset` (8bit body, subject
/// and name as RFC 2047 Q-encoded words), with optional extra header lines.
fn legacy_mail(
    charset: &str,
    from_name: &str,
    from: &str,
    subject: &str,
    body: &str,
    message_id: &str,
    extra: &str,
) -> Vec<u8> {
    let encoding = encoding_rs::Encoding::for_label(charset.as_bytes()).expect("known charset");
    let encode = |text: &str| {
        let (bytes, _, unmappable) = encoding.encode(text);
        assert!(!unmappable, "{text} is not representable in {charset}");
        bytes.into_owned()
    };
    let word = |text: &str| {
        let q: String = encode(text)
            .iter()
            .map(|&b| match b {
                b' ' => "_".to_string(),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("={b:02X}"),
            })
            .collect();
        format!("=?{charset}?Q?{q}?=")
    };
    let mut raw = format!(
        "From: {} <{from}>\r\nTo: support@example.test\r\nSubject: {}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n{extra}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        word(from_name),
        word(subject)
    )
    .into_bytes();
    raw.extend(encode(&body.replace('\n', "\r\n")));
    raw
}

struct Case {
    user: &'static str,
    charset: &'static str,
    name: &'static str,
    subject: &'static str,
    body: &'static str,
    lang: Lang,
}

const CASES: [Case; 4] = [
    Case {
        user: "customer1",
        charset: "windows-1256",
        name: "أحمد",
        subject: "الطابعة لا تعمل",
        body: "مرحبا، الطابعة في مكتبنا لا تعمل منذ أمس. ماذا نفعل؟\n",
        lang: Lang::Ar,
    },
    Case {
        user: "customer2",
        charset: "iso-8859-6",
        name: "سارة",
        subject: "لا أستطيع تسجيل الدخول",
        body: "السلام عليكم، لا أستطيع الدخول إلى حسابي منذ الصباح. أرجو المساعدة.\n",
        lang: Lang::Ar,
    },
    Case {
        user: "customer3",
        charset: "iso-8859-7",
        name: "Ελένη",
        subject: "Ο εκτυπωτής δεν δουλεύει",
        body: "Γειά σας, ο εκτυπωτής του γραφείου δεν τυπώνει από χθες.\n",
        lang: Lang::El,
    },
    Case {
        user: "customer4",
        charset: "windows-1253",
        name: "Άγγελος",
        subject: "Λάθος χρέωση στον λογαριασμό",
        body: "Καλημέρα σας, χρεωθήκαμε δύο φορές τον Νοέμβριο. Μπορείτε να το διορθώσετε;\n",
        lang: Lang::El,
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn legacy_charset_mail_is_acknowledged_in_the_customers_language() {
    let Some(lab) = Lab::start() else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let config = Config::load(&setup.config).expect("the test's config");
    let daemon = setup.start();
    let support = lab.address("support");
    for (index, case) in CASES.iter().enumerate() {
        let from = lab.address(case.user);
        let raw = legacy_mail(
            case.charset,
            case.name,
            &from,
            case.subject,
            case.body,
            &format!("legacy{index}@customer.test"),
            "",
        );
        lab.send(&from, &[&support], &raw).await;
    }
    for case in &CASES {
        let from = lab.address(case.user);
        let inbox = lab.wait_for(case.user, "INBOX", 1, WAIT).await;
        let ack = parsed(&inbox[0]);
        let tickets = setup.json(&["tickets"]);
        let ticket = tickets
            .as_array()
            .expect("list")
            .iter()
            .find(|t| t["customer"]["address"] == from)
            .unwrap_or_else(|| panic!("no ticket for {from}: {tickets:#}"));
        assert_eq!(ticket["language"], case.lang.code(), "{ticket:#}");
        assert_eq!(ticket["language_source"], "detected", "{ticket:#}");
        assert_eq!(
            ticket["customer"]["name"], case.name,
            "name decoded from {}",
            case.charset
        );
        let number = ticket["id"].as_i64().expect("id");
        let due_at: Timestamp = ticket["next_due_at"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("due time");

        // What the templates say for this ticket, rendered by the library itself.
        let customer = Person::new(&from, Some(case.name));
        let expected = render::acknowledgement(
            &config.support,
            &Templates::builtin(),
            AckFor {
                ticket: TicketId(number),
                customer: &customer,
                subject: case.subject,
                message_id: None,
                references: &[],
                due_at,
                lang: case.lang,
            },
            Timestamp::now(),
        )
        .expect("render");
        assert_eq!(ack.subject, expected.subject, "{}", case.charset);
        assert_eq!(
            ack.text.replace("\r\n", "\n"),
            expected.text,
            "{}: the decoded acknowledgement is the template's text",
            case.charset
        );
        let raw = String::from_utf8_lossy(&inbox[0]);
        assert!(raw.contains("charset=utf-8"), "{raw}");
        let subject_line = raw
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .expect("Subject");
        assert!(
            subject_line.starts_with("Subject: =?utf-8?"),
            "{subject_line}"
        );
        let html = mail_parser::MessageParser::default()
            .parse(&inbox[0])
            .and_then(|m| m.body_html(0).map(|h| h.into_owned()))
            .expect("an HTML part");
        assert_eq!(html.replace("\r\n", "\n"), expected_html(&expected.raw));
        let direction = if case.lang == Lang::Ar { "rtl" } else { "ltr" };
        assert!(
            html.contains(&format!(
                "<html lang=\"{}\" dir=\"{direction}\">",
                case.lang
            )),
            "{html}"
        );
    }

    // The Arabic customer writes again, briefly: no detectable language, so the one they
    // used before. Their history now shows both tickets.
    let from = lab.address("customer1");
    let again = legacy_mail(
        "windows-1256",
        "أحمد",
        &from,
        "123",
        "ok\n",
        "legacy9@customer.test",
        "",
    );
    lab.send(&from, &[&support], &again).await;
    let inbox = lab.wait_for("customer1", "INBOX", 2, WAIT).await;
    let second = parsed(&inbox[1]);
    assert!(
        second.subject.starts_with("رد: 123 \u{200E}[#"),
        "{}",
        second.subject
    );
    let contact = setup.json(&["contact", &from]);
    assert_eq!(contact["language"], "ar", "{contact:#}");
    assert_eq!(contact["tickets"], 2, "{contact:#}");
    assert_eq!(contact["name"], "أحمد", "{contact:#}");
    let history = contact["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{contact:#}");
    assert_eq!(history[0]["subject"], "123", "newest first: {contact:#}");
    assert!(daemon.stop().0.success(), "{}", setup.log());
}

fn expected_html(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(raw)
        .and_then(|m| m.body_html(0).map(|h| h.replace("\r\n", "\n")))
        .expect("an HTML part")
}

const CONFIG: &str = r#"
database = "languages.db"
[support]
address = "support@example.test"
name = "Example Support"
[[mailbox]]
name = "greek-office"
host = "127.0.0.1"
tls = "plain"
user = "support"
password = "x"
language = "el"
[smtp]
host = "127.0.0.1"
tls = "plain"
"#;

/// The order of evidence, contacts and history, and an agent's choice, through ingest.
#[tokio::test(flavor = "multi_thread")]
async fn language_evidence_contacts_and_history_through_ingest() {
    let state = tempfile::tempdir().expect("temp dir");
    let config =
        Arc::new(Config::from_toml(&state.path().join("deskgate.toml"), CONFIG).expect("config"));
    let store = Store::connect(&config.database).expect("store");
    let now = Timestamp::now();
    let mut uid = 0;
    let mut feed = async |raw: Vec<u8>| {
        uid += 1;
        let source = Source {
            mailbox: "greek-office".into(),
            imap: Some((1, uid)),
            arrival: deskgate::policy::Arrival::Live,
        };
        match ingest(&store, &config, source, raw, now)
            .await
            .expect("ingest")
            .0
        {
            Outcome::Stored {
                ticket: Some(ticket),
                language,
                ..
            } => (
                ticket,
                language.expect("a customer's message has a language"),
            ),
            other => panic!("not stored: {other:?}"),
        }
    };
    let arabic = "مرحبا، الطابعة في مكتبنا لا تعمل منذ أمس. ماذا نفعل؟\n";
    let (first, choice) = feed(legacy_mail(
        "windows-1256",
        "أحمد",
        "a@x.test",
        "عطل",
        arabic,
        "l1@x",
        "",
    ))
    .await;
    assert_eq!(
        (choice.lang, choice.source),
        (Lang::Ar, LangSource::Detected)
    );
    // The header beats the text.
    let (_, choice) = feed(legacy_mail(
        "windows-1256",
        "أحمد",
        "a@x.test",
        "عطل",
        arabic,
        "l2@x",
        "Content-Language: en-GB\r\n",
    ))
    .await;
    assert_eq!((choice.lang, choice.source), (Lang::En, LangSource::Header));
    // Nothing to go on: the contact's language (Content-Language is evidence too, so "en").
    let (third, choice) = feed(legacy_mail(
        "utf-8", "Ahmed", "A@X.test", "hi", "ok\n", "l3@x", "",
    ))
    .await;
    assert_eq!(
        (choice.lang, choice.source),
        (Lang::En, LangSource::Contact)
    );
    // A stranger with nothing to go on: the mailbox default.
    let (_, choice) = feed(legacy_mail(
        "utf-8", "B", "b@x.test", "hi", "ok\n", "l4@x", "",
    ))
    .await;
    assert_eq!(
        (choice.lang, choice.source),
        (Lang::El, LangSource::Default)
    );

    // An agent's `#lang el` on the first ticket: the ticket and the contact change, and later
    // evidence does not override the agent on that ticket.
    let changed = store
        .write(move |tx| tx.set_ticket_language(first, Lang::El, LangSource::Agent, now))
        .await
        .expect("set language");
    assert!(changed);
    let reply = legacy_mail(
        "windows-1256",
        "أحمد",
        "a@x.test",
        "رد: عطل",
        arabic,
        "l5@x",
        "In-Reply-To: <l1@x>\r\n",
    );
    let (ticket, _) = feed(reply).await;
    assert_eq!(ticket, first, "the reply threads into the first ticket");
    let (language, contact, history) = store
        .read(move |tx| {
            Ok((
                tx.ticket_language(first)?,
                tx.contact("a@x.test")?,
                tx.earlier_tickets("A@x.test", None, 2)?,
            ))
        })
        .await
        .expect("read");
    assert_eq!(language, Some((Lang::El, LangSource::Agent)));
    let contact = contact.expect("contact");
    assert_eq!(
        contact.name.as_deref(),
        Some("أحمد"),
        "the name as last decoded"
    );
    assert_eq!(contact.language, Some(Lang::Ar), "the latest evidence");
    assert_eq!((contact.n_tickets, contact.n_messages), (3, 4));
    assert_eq!(
        history.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![third, TicketId(third.0 - 1)],
        "newest first, at most the limit"
    );
    assert_eq!(history[0].subject, "hi");
    assert_eq!(history[0].status, TicketStatus::Open.as_str());
}

/// A database from before contacts existed gets them from its tickets.
#[test]
fn upgrading_a_version_1_database_fills_the_contacts() {
    let state = tempfile::tempdir().expect("temp dir");
    let path = state.path().join("old.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(include_str!("../../src/store/schema_v1.sql"))
        .expect("schema v1");
    conn.execute_batch(
        "INSERT INTO tickets (mailbox, subject, customer_address, customer_name, status, created_at, updated_at)
         VALUES ('m', 'one', 'c@x.test', 'C', 'closed', 1000, 2000),
                ('m', 'two', 'c@x.test', NULL, 'open', 3000, 4000);
         PRAGMA user_version = 1;",
    )
    .expect("v1 rows");
    drop(conn);
    // The CLI explains an old database (after waiting a moment for a daemon to upgrade it).
    let err = Store::open_read_only(&path).err().expect("refused");
    assert!(
        err.to_string()
            .contains("has schema version 1, older than this deskgate's (")
            && err
                .to_string()
                .ends_with("); `deskgate run` upgrades it when it starts"),
        "{err}"
    );
    let store = Store::open(Path::new(&path)).expect("migrate");
    let (contact, history) = store
        .read_blocking(|tx| {
            Ok((
                tx.contact("c@x.test")?,
                tx.earlier_tickets("c@x.test", None, 10)?,
            ))
        })
        .expect("read");
    let contact = contact.expect("backfilled contact");
    assert_eq!(contact.name.as_deref(), Some("C"));
    assert_eq!((contact.n_tickets, contact.language), (2, None));
    assert_eq!(contact.first_seen.as_millisecond(), 1000);
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].status, TicketStatus::Closed.as_str());
}
