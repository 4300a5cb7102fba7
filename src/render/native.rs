//! Arabic and Greek mail as a native reader reads it (issue 21): every kind rendered in both
//! languages, through `template preview` and through the renderers, checked for what a
//! machine can see: the tag isolated in Arabic subjects, no stray periods, no English weekday
//! or status words, no zero parts in durations, Arabic counts that agree with their number,
//! plain-text lines that keep their direction, Greek greetings in the vocative.

use jiff::{SignedDuration, Timestamp};

use super::tests::{ack_in, support};
use super::{AlertFor, Templates, alert, preview};
use crate::config::Agent;
use crate::language::Lang;
use crate::model::{Person, Priority, TicketId, TicketState, TicketStatus};
use crate::store::{MessageView, StepView};
use crate::templates::kinds::{self, Audience};
use crate::templates::locale::WEEKDAYS_EN;

const LRI: char = '\u{2066}';
const FSI: char = '\u{2068}';
const PDI: char = '\u{2069}';
const RLM: char = '\u{200F}';

/// English words that must not show in Arabic or Greek mail: weekdays (and their
/// abbreviations), statuses, priorities, scheduler steps, kinds of message. Commands
/// (`#open`), their arguments (`low|normal|high|urgent`) and addresses are single tokens (see
/// [`latin_words`]) and pass.
fn english_words() -> Vec<&'static str> {
    let mut words: Vec<&str> = WEEKDAYS_EN.iter().flat_map(|d| [*d, &d[..3]]).collect();
    words.extend(TicketStatus::ALL.map(TicketStatus::as_str));
    words.extend(Priority::ALL.map(Priority::as_str));
    words.extend(["warning", "escalation", "breach", "reminder", "survey"]);
    words.extend(["acknowledgement", "customer", "automatic", "agent"]);
    words
}

/// The words of `text` in runs of ASCII letters, keeping addresses, commands and option
/// lists (`a@b.c`, `#open`, `low|high`, `&lt;agent&gt;`) whole.
fn latin_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "@.-_|#<>&;".contains(c)))
        .filter(|w| !w.is_empty())
        .collect()
}

/// `html` without its tags (attribute names and styles are no reader's words).
fn html_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// The problems a native reader of `lang` would see in one rendered part; `what` names it.
fn faults(what: &str, text: &str, lang: Lang) -> Vec<String> {
    let mut faults = Vec::new();
    let english = english_words();
    if text.replace("...", "…").contains("..") {
        faults.push(format!("{what}: two periods"));
    }
    for word in latin_words(text) {
        if english.contains(&word) {
            faults.push(format!("{what}: the English word `{word}`"));
        }
    }
    for token in text.split_whitespace() {
        if token.trim_matches(|c: char| !c.is_ascii_digit()) == "0" {
            faults.push(format!("{what}: a zero part `{token}`"));
        }
    }
    for cryptic in [" س ", " د ", "ώρ.", "λεπ.", "ημ."] {
        if text.contains(cryptic) {
            faults.push(format!("{what}: the abbreviation `{cryptic}`"));
        }
    }
    if lang == Lang::Ar && text.contains('←') {
        faults.push(format!(
            "{what}: an arrow that turns around in a bidi layout"
        ));
    }
    faults
}

/// Plain-text lines whose only letters sit inside isolates: clients that set the direction
/// of each paragraph from its first strong letter would lay them out left to right, unless
/// they start with a right-to-left mark.
fn lines_without_direction(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| {
            let mut depth = 0usize;
            let mut outside_letter = false;
            for c in line.chars() {
                match c {
                    LRI | FSI | '\u{2067}' => depth += 1,
                    PDI => depth = depth.saturating_sub(1),
                    c if depth == 0 && c.is_alphabetic() => outside_letter = true,
                    _ => {}
                }
            }
            line.contains([LRI, FSI]) && !outside_letter && !line.starts_with(RLM)
        })
        .collect()
}

#[test]
fn every_kind_reads_natively_in_arabic_and_greek() {
    let templates = Templates::builtin();
    let mut problems = Vec::new();
    for kind in kinds::KINDS {
        for lang in [Lang::Ar, Lang::El] {
            let parts = preview(&templates, &support(), kind, lang).unwrap();
            let what = format!("{}.{lang}", kind.name());
            assert_eq!(parts.lang, lang, "{what} ships in {lang}");
            assert!(parts.subject.contains("[#42]"), "{what}: {}", parts.subject);
            if lang == Lang::Ar {
                assert!(
                    parts.subject.ends_with("\u{200E}[#42]\u{200E}"),
                    "{what}: the tag is isolated: {:?}",
                    parts.subject
                );
                for line in lines_without_direction(&parts.text) {
                    problems.push(format!("{what}.txt: no direction: {line:?}"));
                }
            }
            problems.extend(faults(&format!("{what}.subject"), &parts.subject, lang));
            problems.extend(faults(&format!("{what}.txt"), &parts.text, lang));
            problems.extend(faults(
                &format!("{what}.html"),
                &html_text(&parts.html),
                lang,
            ));
            let greets = kind.audience == Audience::Customer && kind.name() != "reply";
            if lang == Lang::El && greets {
                assert!(
                    parts.text.starts_with("Γεια σας, Ελένη,\n"),
                    "{what}: {}",
                    parts.text
                );
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The checks themselves catch what issue 21 found.
#[test]
fn the_checks_catch_the_old_faults() {
    let old =
        "Ο πελάτης περιμένει 2 ώρ. 0 λεπ.. Tue 2026-11-24 04:00 UTC warning [acknowledgement] open";
    let found = faults("old", old, Lang::El);
    for expected in [
        "two periods",
        "`Tue`",
        "`warning`",
        "`acknowledgement`",
        "`open`",
        "zero part",
        "`ώρ.`",
    ] {
        assert!(
            found.iter().any(|f| f.contains(expected)),
            "{expected}: {found:?}"
        );
    }
    assert!(
        faults(
            "ok",
            "#open #priority low|normal|high|urgent customer@example.net",
            Lang::Ar
        )
        .is_empty()
    );
    let tag_line = format!("    {LRI}[#42]{PDI}");
    assert_eq!(lines_without_direction(&tag_line), vec![tag_line.as_str()]);
    let marked = format!("{RLM}{tag_line}");
    assert!(lines_without_direction(&marked).is_empty());
    assert!(lines_without_direction(&format!("رقم التذكرة {LRI}[#42]{PDI}")).is_empty());
}

fn ticket(lang: Lang) -> TicketState {
    let customer = Person::new("mona@example.net", Some("Mona"));
    TicketState {
        id: TicketId(42),
        mailbox: "support".into(),
        subject: "الطابعة لا تعمل".into(),
        status: TicketStatus::Open,
        priority: Priority::High,
        assigned: None,
        customer: Some(customer.clone()),
        customers: vec![customer],
        created_at: Timestamp::UNIX_EPOCH,
        language: Some(lang),
        address: None,
    }
}

fn message(at: Timestamp, outbound: bool, class: &str, attachments: &[&str]) -> MessageView {
    MessageView {
        outbound,
        internal: false,
        agent: None,
        message_id: None,
        from_address: (!outbound).then(|| "mona@example.net".to_string()),
        from_name: (!outbound).then(|| "Mona".to_string()),
        subject: "الطابعة لا تعمل".into(),
        received_at: at,
        class: class.into(),
        defects: String::new(),
        body_text: "الطابعة لا تعمل".into(),
        attachments: attachments.iter().map(|a| a.to_string()).collect(),
    }
}

/// An escalation rendered for an agent who reads `lang`, `waited` after the customer wrote,
/// `overdue` after the answer was due.
fn escalation(lang: Lang, waited: SignedDuration, overdue: SignedDuration) -> super::Outgoing {
    let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let received_at = now - waited;
    let agent = Agent {
        name: "سمير".into(),
        address: "samir@example.test".into(),
        alternates: Vec::new(),
        language: lang,
    };
    let ticket = ticket(lang);
    let thread = [
        message(received_at, false, "customer", &["photo.jpg", "فاتورة.pdf"]),
        message(received_at, true, "acknowledgement", &[]),
    ];
    let told = [StepView {
        name: "warning".into(),
        at: now - SignedDuration::from_mins(30),
        recipients: vec!["samir@example.test".into()],
        deadline: Some(1),
    }];
    alert(
        &support(),
        &Templates::builtin(),
        None,
        crate::templates::kinds::MailKind::Escalation,
        AlertFor {
            to: "samir@example.test",
            agent: Some(&agent),
            ticket: &ticket,
            received_at,
            due_at: now - overdue,
            level: 1,
            thread: &thread,
            told: &told,
            message_id: None,
        },
        now,
    )
    .unwrap()
}

/// 1 and 2 are the noun alone, 3-10 the plural, 11 and more the singular, in the subject
/// and in the body of real escalations; times, steps, kinds and statuses in the reader's
/// words.
#[test]
fn escalations_count_and_name_things_in_the_readers_language() {
    let hours = SignedDuration::from_hours;
    for (waited, overdue, wait_words, overdue_words) in [
        (hours(1), hours(2), "ساعة", "ساعتان"),
        (hours(3), hours(10), "3 ساعات", "10 ساعات"),
        (hours(11), SignedDuration::from_mins(1), "11 ساعة", "دقيقة"),
        (hours(48), SignedDuration::from_mins(2), "يومان", "دقيقتان"),
    ] {
        let out = escalation(Lang::Ar, waited, overdue);
        assert!(
            out.subject
                .starts_with(&format!("تصعيد 1 (مدة الانتظار: {wait_words}):")),
            "{}",
            out.subject
        );
        assert_states(
            &out.text,
            &[
                &format!("مدة انتظار العميل: {wait_words}."),
                &format!("(التأخير: {overdue_words})."),
            ],
        );
        for wrong in [" 1 ساعة", " 2 ساعات", "ساعتين", " 2 دقائق"] {
            assert!(!out.text.contains(wrong), "{wrong}: {}", out.text);
        }
        assert!(
            faults("escalation", &out.text, Lang::Ar).is_empty(),
            "{}",
            out.text
        );
        assert!(
            lines_without_direction(&out.text).is_empty(),
            "{}",
            out.text
        );
    }
    let arabic = escalation(Lang::Ar, hours(26), hours(2)).text;
    assert_states(
        &arabic,
        &[
            "الحالة: مفتوحة، الأولوية: عالية",
            "الثلاثاء 2026-11-24، 11:30 UTC+2: تنبيه إلى \u{2066}samir@example.test\u{2069}",
            "[رسالة العميل]",
            "[إشعار الاستلام]",
            "Example Support (رسالة آلية)",
            "المرفقات: \u{2068}photo.jpg\u{2069}، \u{2068}فاتورة.pdf\u{2069}",
            "الثلاثاء، 24 نوفمبر 2026، الساعة 10:00 بتوقيت UTC+2",
        ],
    );
    let greek = escalation(Lang::El, hours(26), hours(2)).text;
    assert_states(
        &greek,
        &[
            "Ο πελάτης περιμένει 1 ημέρα και 2 ώρες.",
            "έως την Τρίτη 24 Νοεμβρίου 2026, στις 10:00 (ώρα UTC+2), δηλαδή πριν από 2 ώρες.",
            "Κατάσταση: ανοιχτό, προτεραιότητα: υψηλή",
            "Τρί 2026-11-24 11:30 UTC+2  προειδοποίηση προς samir@example.test",
            "[μήνυμα πελάτη]",
            "[επιβεβαίωση παραλαβής]",
            "Ολόκληρη η συνομιλία (πρώτα τα παλαιότερα μηνύματα):",
        ],
    );
    assert!(faults("escalation", &greek, Lang::El).is_empty(), "{greek}");
}

/// Greek greetings call the customer in the vocative, or by no name when unsure.
#[test]
fn greek_acknowledgements_greet_in_the_vocative() {
    for (name, greeting) in [
        (Some("Γιώργος Παπαδόπουλος"), "Γεια σας, Γιώργο,\n"),
        (Some("Αλέξανδρος"), "Γεια σας, Αλέξανδρε,\n"),
        (Some("Ελένη"), "Γεια σας, Ελένη,\n"),
        (Some("Mona Quinn"), "Γεια σας,\n"),
        (None, "Γεια σας,\n"),
    ] {
        let customer = Person::new("c@example.net", name);
        let out = ack_in(Lang::El, &customer, "Ο εκτυπωτής δεν δουλεύει");
        assert!(out.text.starts_with(greeting), "{name:?}: {}", out.text);
        assert!(
            out.text
                .contains("έως την Τρίτη 24 Νοεμβρίου 2026, στις 12:00 (ώρα UTC+2)."),
            "{}",
            out.text
        );
    }
}

fn assert_states(text: &str, facts: &[&str]) {
    for fact in facts {
        assert!(text.contains(fact), "{fact}: {text}");
    }
}
