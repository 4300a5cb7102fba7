//! Render: outgoing mail as finished RFC 5322 bytes.
//!
//! Everything here is CPU-only. The bytes and the Message-ID are fixed when the outbox row is
//! written, so every retry sends exactly the same message.

mod admin;
mod agent;
mod commands;
mod followup;
pub mod html;
#[cfg(test)]
mod native;

use std::time::SystemTime;

use jiff::Timestamp;
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

pub use crate::templates::kinds;
pub use crate::templates::locale::{format_due, format_duration, format_when};
pub use crate::templates::{Loaded, RenderedParts, TemplateError, Templates, sample_context};
pub use admin::admin_alert;
pub use agent::{
    BounceFor, NoteFor, NoticeFor, NotificationFor, ReplyFor, bounce, note, notice, notification,
    reply,
};
pub use commands::{ForwardFor, forward, merged};
pub use followup::{AlertFor, CustomerMail, alert, to_customer};

use crate::config::Support;
use crate::language::Lang;
use crate::model::{Person, TicketId, clean_header_text};
use crate::parse::{Attachment, LOOP_HEADER};
use crate::templates::kinds::MailKind;
use crate::thread::format_tag;

/// A message ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Our Message-ID, without angle brackets.
    pub message_id: String,
    pub subject: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// The plain-text part, for the ticket transcript.
    pub text: String,
    pub raw: Vec<u8>,
}

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("recipient `{address}` is not an address we can send to: {reason}")]
    BadRecipient { address: String, reason: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("building the message failed: {0}")]
    Build(String),
    #[error(
        "a mail with a reply key must show the reply marker (`{{{{ marker }}}}`) in its text and HTML parts"
    )]
    NoMarker,
}

/// A line holding both ends of the reply marker.
fn has_marker(text: &str) -> bool {
    use crate::templates::{MARKER_END, MARKER_START};
    text.lines()
        .any(|l| l.contains(MARKER_START) && l.contains(MARKER_END))
}

/// The customer message an acknowledgement answers.
#[derive(Debug, Clone, Copy)]
pub struct AckFor<'a> {
    pub ticket: TicketId,
    pub customer: &'a Person,
    pub subject: &'a str,
    pub message_id: Option<&'a str>,
    pub references: &'a [String],
    pub due_at: Timestamp,
    /// The ticket's language.
    pub lang: Lang,
}

/// Renders the acknowledgement of a new ticket.
pub fn acknowledgement(
    support: &Support,
    templates: &Templates,
    ack: AckFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let tag = format_tag(&support.tag_prefix, ack.ticket);
    let context = minijinja::context! {
        ticket => ack.ticket.0,
        tag => tag.clone(),
        subject => echoed(&base_subject(ack.subject, &tag), ECHOED_SUBJECT_CHARS),
        customer_name => echoed(ack.customer.name.as_deref().unwrap_or(""), ECHOED_NAME_CHARS),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
        due => format_due(ack.due_at, &support.timezone, ack.lang),
        due_iso => ack.due_at.to_string(),
    };
    let parts = templates.render_all(MailKind::Ack, ack.lang, &context)?;
    let mut references: Vec<String> = ack.references.to_vec();
    references.extend(ack.message_id.map(String::from));
    build(
        support,
        Envelope {
            from: support_mailbox(support, None),
            to: vec![mailbox(ack.customer)?],
            cc: Vec::new(),
            reply_to: ReplyTo::From,
            message_id: new_message_id(support),
            in_reply_to: ack.message_id,
            references,
            auto_submitted: Some("auto-replied"),
            attachments: &[],
        },
        parts,
        now,
    )
}

/// The subject without reply prefixes and our tag: `Re: Printer [#4]` → `Printer`; the
/// direction marks our Arabic subjects put around the tag go with it.
fn base_subject(subject: &str, tag: &str) -> String {
    let base = strip_reply_prefixes(subject).replace(tag, "");
    match base.trim_matches(|c: char| c.is_whitespace() || matches!(c, '\u{200E}' | '\u{200F}')) {
        "" => "(no subject)".to_string(),
        base => base.to_string(),
    }
}

/// The headers of an outgoing message; the body comes from templates.
struct Envelope<'a> {
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    reply_to: ReplyTo,
    /// Without angle brackets.
    message_id: String,
    in_reply_to: Option<&'a str>,
    references: Vec<String>,
    /// `Auto-Submitted:` value for machine-written mail (RFC 3834); `None` for an agent's words.
    auto_submitted: Option<&'static str>,
    attachments: &'a [Attachment],
}

/// Where answers to a message go.
enum ReplyTo {
    /// To its From (the support address, or the agent a relayed answer names).
    From,
    /// The support address, named plainly.
    Support(Mailbox),
    /// An agent's reply key: the text and HTML parts must carry the reply marker, so that
    /// whatever the agent's client quotes below it is cut ([`crate::agent::reply`]).
    Signed(Mailbox),
}

/// Assembles the finished message: headers, text and HTML alternatives, attachments.
fn build(
    support: &Support,
    envelope: Envelope<'_>,
    parts: RenderedParts,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let recipients: Vec<String> = envelope
        .to
        .iter()
        .chain(&envelope.cc)
        .map(|m| m.email.to_string())
        .collect();
    let mut builder = lettre::Message::builder()
        .from(envelope.from)
        .subject(parts.subject.clone())
        .message_id(Some(format!("<{}>", envelope.message_id)))
        .date(SystemTime::from(now));
    for to in envelope.to {
        builder = builder.to(to);
    }
    for cc in envelope.cc {
        builder = builder.cc(cc);
    }
    match envelope.reply_to {
        ReplyTo::From => {}
        ReplyTo::Support(reply_to) => builder = builder.reply_to(reply_to),
        ReplyTo::Signed(reply_to) => {
            if !has_marker(&parts.text) || !has_marker(&parts.html) {
                return Err(RenderError::NoMarker);
            }
            builder = builder.reply_to(reply_to);
        }
    }
    builder = builder
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            parts.lang.code().to_string(),
        ))
        // On everything we send: mail that comes back with it is ours (a loop).
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(LOOP_HEADER),
            support.address.to_string(),
        ));
    if let Some(value) = envelope.auto_submitted {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                value.to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
                "All".to_string(),
            ));
    }
    if let Some(id) = envelope.in_reply_to {
        builder = builder.in_reply_to(format!("<{id}>"));
    }
    let mut references = envelope.references;
    let mut seen = std::collections::HashSet::new();
    references.retain(|r| seen.insert(r.clone()));
    if !references.is_empty() {
        let joined: Vec<String> = references.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.references(joined.join(" "));
    }
    // Images the HTML shows by `cid:` go beside it (multipart/related), the rest is attached.
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) =
        envelope.attachments.iter().partition(|file| {
            file.content_id
                .as_ref()
                .is_some_and(|id| parts.html.contains(&format!("cid:{id}")))
        });
    let body = if inline.is_empty() {
        MultiPart::alternative_plain_html(parts.text.clone(), parts.html)
    } else {
        let mut related = MultiPart::related().singlepart(SinglePart::html(parts.html));
        for file in inline {
            let id = file.content_id.clone().unwrap_or_default();
            related = related.singlepart(
                lettre::message::Attachment::new_inline_with_name(id, file.name.clone())
                    .body(file.data.clone(), content_type(file)),
            );
        }
        MultiPart::alternative()
            .singlepart(SinglePart::plain(parts.text.clone()))
            .multipart(related)
    };
    let message = if attached.is_empty() {
        builder.multipart(body)
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for file in attached {
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(file.name.clone())
                    .body(file.data.clone(), content_type(file)),
            );
        }
        builder.multipart(mixed)
    }
    .map_err(|err| RenderError::Build(err.to_string()))?;
    Ok(Outgoing {
        message_id: envelope.message_id,
        subject: parts.subject,
        envelope_from: support.address.to_string(),
        recipients,
        text: parts.text,
        raw: message.formatted(),
    })
}

/// The file's declared type, or `application/octet-stream` when it does not parse.
fn content_type(file: &Attachment) -> ContentType {
    ContentType::parse(&file.content_type)
        .or_else(|_| ContentType::parse("application/octet-stream"))
        .unwrap_or(ContentType::TEXT_PLAIN)
}

/// `person` as a recipient, or why it cannot be one.
fn mailbox(person: &Person) -> Result<Mailbox, RenderError> {
    let address: lettre::Address =
        person
            .address
            .parse()
            .map_err(
                |err: lettre::address::AddressError| RenderError::BadRecipient {
                    address: person.address.clone(),
                    reason: err.to_string(),
                },
            )?;
    let name = person.name.as_deref().map(|n| echoed(n, ECHOED_NAME_CHARS));
    Ok(Mailbox::new(name, address))
}

/// At most this many characters of a sender's name are written back to them.
pub const ECHOED_NAME_CHARS: usize = 80;
/// At most this many characters of a sender's subject are written back to them.
pub const ECHOED_SUBJECT_CHARS: usize = 200;

/// A sender's own text as we write it back to them (anyone can forge a From, so this is
/// text an attacker chose, sent under our name): controls and bidi overrides removed,
/// whitespace collapsed, at most `max_chars` characters.
pub fn echoed(text: &str, max_chars: usize) -> String {
    let cleaned = clean_header_text(
        &text
            .chars()
            .filter(|c| !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
            .collect::<String>(),
    );
    if cleaned.chars().count() <= max_chars {
        return cleaned;
    }
    let mut cut: String = cleaned.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

/// The support address, named `Support` or `<via> via Support`.
fn support_mailbox(support: &Support, via: Option<&str>) -> Mailbox {
    let name = match via {
        Some(agent) => format!("{agent} via {}", support.name),
        None => support.name.clone(),
    };
    Mailbox::new(Some(name), support.address.clone())
}

/// `deskgate template preview`: `kind` in `lang` with sample values, as `support` would send it.
pub fn preview(
    templates: &Templates,
    support: &Support,
    kind: &kinds::Kind,
    lang: Lang,
) -> Result<RenderedParts, TemplateError> {
    let lang = templates.language_for(kind.mail, lang);
    let context = minijinja::context! {
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
        tag => format_tag(&support.tag_prefix, TicketId(42)),
        ..sample_context(kind, lang, &support.timezone)
    };
    templates.render_all(kind.mail, lang, &context)
}

/// `<uuid@support-domain>`: unguessable, and recognisably ours when it comes back.
fn new_message_id(support: &Support) -> String {
    format!(
        "{}@{}",
        uuid::Uuid::new_v4().simple(),
        support.address.domain()
    )
}

/// `Re: AW: Fwd: subject` → `subject`. Linear: each step lower-cases only the few characters
/// a prefix can take, never the rest of the subject.
fn strip_reply_prefixes(subject: &str) -> &str {
    let mut rest = subject.trim();
    loop {
        let lower: String = rest.chars().take(6).flat_map(char::to_lowercase).collect();
        let Some(prefix) = [
            "re:",
            "aw:",
            "fwd:",
            "fw:",
            "sv:",
            "vs:",
            "ref:",
            "رد:",
            "απ:",
            "σχετ:",
        ]
        .iter()
        .find(|p| lower.starts_with(*p)) else {
            return rest;
        };
        rest = rest[prefix.len()..].trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    pub(super) fn support() -> Support {
        Support {
            address: "support@example.test".parse().unwrap(),
            name: "Example Support".into(),
            tag_prefix: "#".into(),
            timezone: TimeZone::get("Europe/Athens").unwrap(),
            language: Lang::En,
        }
    }

    fn signer() -> crate::agent::sign::Signer {
        crate::agent::sign::Signer::new(
            b"0123456789abcdef0123456789abcdef",
            &support().address,
            "+",
        )
    }

    /// Ticket 77, "Printer on fire", open, of `customer`, in `lang`.
    fn ticket77(customer: &Person, lang: Lang) -> crate::model::TicketState {
        crate::model::TicketState {
            id: TicketId(77),
            mailbox: "support".into(),
            subject: "Printer on fire".into(),
            status: crate::model::TicketStatus::Open,
            priority: crate::model::Priority::Normal,
            assigned: None,
            customer: Some(customer.clone()),
            customers: vec![customer.clone()],
            created_at: Timestamp::UNIX_EPOCH,
            language: Some(lang),
            address: None,
        }
    }

    pub(super) fn ack_in(lang: Lang, customer: &Person, subject: &str) -> Outgoing {
        acknowledgement(
            &support(),
            &Templates::builtin(),
            AckFor {
                ticket: TicketId(4217),
                customer,
                subject,
                message_id: Some("m1@example.net"),
                references: &[],
                due_at: "2026-11-24T10:00:00Z".parse().unwrap(),
                lang,
            },
            "2026-11-23T10:00:00Z".parse().unwrap(),
        )
        .unwrap()
    }

    /// Every kind in every language states its key facts, in the right direction.
    #[test]
    fn every_kind_in_every_language_states_the_facts() {
        let templates = Templates::builtin();
        for kind in kinds::KINDS {
            for lang in Lang::ALL {
                // What a reader of `lang` gets: agent-facing kinds without templates in
                // `lang` come in English, with English dates (see `agent::reader_language`).
                let shown = templates.language_for(kind.mail, lang);
                let context = sample_context(kind, shown, &TimeZone::UTC);
                let parts = templates.render_all(kind.mail, lang, &context).unwrap();
                let what = format!("{} in {lang}", kind.name());
                assert!(parts.subject.contains("[#42]"), "{what}: {}", parts.subject);
                for body in [&parts.text, &parts.html] {
                    assert!(body.contains("[#42]"), "{what}: {body}");
                    if kind.body_requires.contains(&"due") {
                        let due = format_due(kinds::sample_due_at(), &TimeZone::UTC, shown);
                        assert!(body.contains(&due), "{what} states {due}: {body}");
                    }
                }
                let prefix = format!("{}.{lang}.", kind.name());
                let shipped = kind.shipped.iter().any(|(n, _)| n.starts_with(&prefix));
                assert_eq!(shown == lang, shipped, "{what}");
                assert!(shipped || kind.audience == kinds::Audience::Agent, "{what}");
                assert_eq!(parts.lang, shown, "{what}");
                for body in [&parts.text, &parts.html] {
                    if kind.body_requires.contains(&"marker") {
                        let marker = crate::templates::marker(shown);
                        assert!(body.contains(&marker), "{what} has {marker}: {body}");
                    }
                }
                let dir = if shown.is_rtl() { "rtl" } else { "ltr" };
                assert!(
                    parts
                        .html
                        .contains(&format!("lang=\"{shown}\" dir=\"{dir}\"")),
                    "{what}: {}",
                    parts.html
                );
            }
        }
    }

    /// Subjects and names in Arabic and Greek leave as RFC 2047 encoded words, bodies as
    /// declared UTF-8, and read back as written.
    #[test]
    fn arabic_and_greek_mail_is_encoded_and_decodes_back() {
        for (lang, name, subject, greeting, due) in [
            (
                Lang::Ar,
                "أحمد",
                "الطابعة لا تعمل",
                "مرحبًا \u{2068}أحمد\u{2069}،",
                "الثلاثاء، 24 نوفمبر 2026، الساعة 12:00 بتوقيت UTC+2",
            ),
            (
                Lang::El,
                "Ελένη",
                "Ο εκτυπωτής δεν δουλεύει",
                "Γεια σας, Ελένη,",
                "την Τρίτη 24 Νοεμβρίου 2026, στις 12:00 (ώρα UTC+2)",
            ),
        ] {
            let customer = Person::new("c@example.net", Some(name));
            let out = ack_in(lang, &customer, subject);
            let raw = String::from_utf8(out.raw.clone()).expect("7-bit or UTF-8 bytes");
            let head = &raw[..raw.find("\r\n\r\n").unwrap()];
            assert!(head.is_ascii(), "headers are ASCII: {head}");
            assert!(head.contains("Subject: =?utf-8?b?"), "{head}");
            assert!(raw.contains("charset=utf-8"), "{raw}");
            assert!(
                head.contains(&format!("Content-Language: {lang}\r\n")),
                "{head}"
            );
            let parsed = crate::parse::parse(&out.raw);
            let tag = if lang == Lang::Ar {
                "رد: \u{200E}[#4217]\u{200E}"
            } else {
                "ΑΠ: [#4217]"
            };
            let (prefix, tag) = tag.split_once(' ').unwrap();
            assert_eq!(parsed.subject, format!("{prefix} {subject} {tag}"));
            assert_eq!(parsed.to[0].name.as_deref(), Some(name));
            assert!(parsed.text.starts_with(greeting), "{}", parsed.text);
            assert!(parsed.text.contains(due), "{}", parsed.text);
            assert!(parsed.text.contains("[#4217]"), "{}", parsed.text);
            assert_eq!(
                parsed.text.replace("\r\n", "\n"),
                out.text,
                "the text part decodes to what was rendered"
            );
        }
        let arabic = ack_in(Lang::Ar, &Person::new("c@example.net", None), "x");
        let html = crate::parse::parse(&arabic.raw);
        assert!(
            html.text.starts_with("مرحبًا،"),
            "no name, no gap: {}",
            html.text
        );
        assert!(
            String::from_utf8_lossy(&arabic.raw).contains("<bdi dir=3D\"ltr\">[#4217]</bdi>")
                || mail_parser_html(&arabic.raw).contains("<bdi dir=\"ltr\">[#4217]</bdi>")
        );
    }

    fn mail_parser_html(raw: &[u8]) -> String {
        mail_parser::MessageParser::default()
            .parse(raw)
            .and_then(|m| m.body_html(0).map(|h| h.into_owned()))
            .unwrap_or_default()
    }

    /// An agent's answer on an Arabic ticket reaches the customer framed in Arabic, whatever
    /// language the agent's own words are in.
    #[test]
    fn relayed_answers_are_framed_in_the_tickets_language() {
        let signer = signer();
        let agent = crate::config::Agent {
            name: "Alice Agent".into(),
            address: "alice@example.test".into(),
            alternates: Vec::new(),
            language: Lang::En,
        };
        let customer = Person::new("c@example.net", Some("أحمد"));
        let mut ticket = crate::model::TicketState {
            id: TicketId(77),
            mailbox: "support".into(),
            subject: "الطابعة لا تعمل".into(),
            status: crate::model::TicketStatus::Open,
            priority: crate::model::Priority::Normal,
            assigned: None,
            customer: Some(customer.clone()),
            customers: vec![customer],
            created_at: Timestamp::UNIX_EPOCH,
            language: Some(Lang::Ar),
            address: None,
        };
        let relay = |ticket: &crate::model::TicketState| {
            let out = reply(
                &support(),
                &Templates::builtin(),
                &signer,
                ReplyFor {
                    ticket,
                    agent: &agent,
                    body: "يرجى إطفاء الطابعة.",
                    answers: None,
                    attachments: &[],
                    html: None,
                },
                Timestamp::UNIX_EPOCH,
            )
            .unwrap();
            crate::parse::parse(&out.raw)
        };
        let parsed = relay(&ticket);
        assert_eq!(parsed.subject, "رد: الطابعة لا تعمل \u{200E}[#77]\u{200E}");
        assert!(
            parsed.text.contains("التذكرة \u{2066}[#77]\u{2069}"),
            "{}",
            parsed.text
        );
        ticket.language = None;
        let parsed = relay(&ticket);
        assert_eq!(
            parsed.subject, "Re: الطابعة لا تعمل [#77]",
            "an old ticket without a language: the desk's default"
        );
    }

    /// An attachment bomb and a huge body: the notification carries what fits, lists the
    /// rest, and copies at most the analysed part of the text.
    #[test]
    fn a_notification_lists_what_it_does_not_carry() {
        let signer = signer();
        let alice = crate::agent::fixtures::agents().agents[0].clone();
        let customer = Person::new("mona@example.net", Some("Mona"));
        let ticket = ticket77(&customer, Lang::El);
        let text = "All work and no play. ".repeat(100_000);
        let carried = crate::parse::Carried {
            files: vec![Attachment {
                name: "photo.jpg".into(),
                content_type: "image/jpeg".into(),
                data: vec![1, 2, 3],
                content_id: None,
            }],
            left_out: vec![("video.mp4".into(), 48_200_000)],
            unlisted: 49_000,
        };
        let not_added: Vec<String> = (0..7).map(|i| format!("cc{i}@example.net")).collect();
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let out = notification(
            &support(),
            &Templates::builtin(),
            &signer,
            &alice,
            NotificationFor {
                ticket: &ticket,
                new_ticket: true,
                customer: &customer,
                subject: "Printer on fire",
                text: &text,
                message_id: None,
                waiting_since: now,
                due_at: None,
                history: &[],
                attachments: &carried,
                not_added: &not_added,
                html: None,
            },
            now,
        )
        .unwrap();
        let parsed = crate::parse::parse(&out.raw);
        for fact in [
            "Attachments: photo.jpg",
            "Not attached (too large): video.mp4 (48.2 MB)",
            "49000 further parts of the message are not listed.",
            "The message is longer than shown here; deskgate keeps all of it.",
            "Not added (too many people copied at once): cc0@example.net, cc1@example.net, \
             cc2@example.net, cc3@example.net, cc4@example.net and 2 more; use #cc add",
        ] {
            assert!(parsed.text.contains(fact), "{fact}");
        }
        assert_eq!(parsed.attachment_names, ["photo.jpg"]);
        // Text and HTML each hold at most the analysed 256 KB of the 2.2 MB text.
        assert!(out.raw.len() < 1_000_000, "{} bytes", out.raw.len());
    }

    /// Each agent reads notifications and notes in their own language, and an answer typed
    /// above the localised marker is cut there like the English one.
    #[test]
    fn agents_read_mail_in_their_own_language() {
        let signer = signer();
        let agent = |name: &str, address: &str, language: Lang| crate::config::Agent {
            name: name.into(),
            address: address.into(),
            alternates: Vec::new(),
            language,
        };
        let (samir, eleni, alice) = (
            agent("سمير", "samir@example.test", Lang::Ar),
            agent("Ελένη", "eleni@example.test", Lang::El),
            agent("Alice", "alice@example.test", Lang::En),
        );
        let customer = Person::new("mona@example.net", Some("Mona"));
        let ticket = ticket77(&customer, Lang::El);
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let notify = |to: &crate::config::Agent| {
            let out = notification(
                &support(),
                &Templates::builtin(),
                &signer,
                to,
                NotificationFor {
                    ticket: &ticket,
                    new_ticket: true,
                    customer: &customer,
                    subject: "Printer on fire",
                    text: "It smokes.",
                    message_id: Some("m1@example.net"),
                    waiting_since: "2026-11-23T07:55:00Z".parse().unwrap(),
                    due_at: Some("2026-11-24T10:00:00Z".parse().unwrap()),
                    history: &[],
                    attachments: &crate::parse::Carried::default(),
                    not_added: &[],
                    html: None,
                },
                now,
            )
            .unwrap();
            (crate::parse::parse(&out.raw), out)
        };
        let (arabic, raw) = notify(&samir);
        assert_eq!(arabic.content_language.as_deref(), Some("ar"));
        assert_eq!(
            arabic.subject,
            "تذكرة جديدة: Printer on fire \u{200E}[#77]\u{200E}"
        );
        for fact in [
            "##- يُرجى كتابة ردّك فوق هذا السطر -##",
            "تذكرة جديدة \u{2066}[#77]\u{2069}",
            "مدة انتظار العميل: ساعتان و5 دقائق",
            "الثلاثاء، 24 نوفمبر 2026، الساعة 12:00 بتوقيت UTC+2",
            "لغة العميل: اليونانية",
            "It smokes.",
        ] {
            assert!(arabic.text.contains(fact), "{fact}: {}", arabic.text);
        }
        let html = mail_parser_html(&raw.raw);
        assert!(html.contains("<html lang=\"ar\" dir=\"rtl\">"), "{html}");
        let (greek, _) = notify(&eleni);
        assert_eq!(greek.subject, "[#77] Νέο αίτημα: Printer on fire");
        for fact in [
            "Περιμένει απάντηση: 2 ώρες και 5 λεπτά · προθεσμία: έως την Τρίτη 24 Νοεμβρίου 2026, στις 12:00 (ώρα UTC+2)",
            "Γλώσσα πελάτη: Ελληνικά",
        ] {
            assert!(greek.text.contains(fact), "{fact}: {}", greek.text);
        }
        let (english, _) = notify(&alice);
        assert!(
            english.text.contains("Waiting for an answer: 2 h 5 min"),
            "{}",
            english.text
        );

        // Samir answers above his Arabic marker, quoting the notification below it.
        let quoted: String = arabic.text.lines().map(|l| format!("> {l}\n")).collect();
        let answer = format!("شكرًا، سأتصل بالعميلة.\n\n{quoted}");
        let read = crate::agent::reply::read(&answer, &crate::agent::fixtures::agents(), &[]);
        assert_eq!(read.body, "شكرًا، سأتصل بالعميلة.");

        let note_to = |to: &crate::config::Agent| {
            let out = note(
                &support(),
                &Templates::builtin(),
                &signer,
                to,
                NoteFor {
                    ticket: &ticket,
                    author: &alice,
                    body: "Called her.",
                    attachments: &[],
                },
                now,
            )
            .unwrap();
            crate::parse::parse(&out.raw)
        };
        let greek = note_to(&eleni);
        assert_eq!(greek.subject, "[#77] Σημείωση από Alice: Printer on fire");
        assert!(
            greek.text.contains("Εσωτερική σημείωση στο αίτημα [#77]"),
            "{}",
            greek.text
        );
        let arabic = note_to(&samir);
        assert!(
            arabic.text.contains("ملاحظة داخلية على التذكرة"),
            "{}",
            arabic.text
        );
    }

    /// Warnings and escalations carry an agent's reply key, so they carry the marker too (in
    /// the agent's language): a reply whose quote header is not recognised is still cut there.
    #[test]
    fn every_mail_with_a_reply_key_carries_the_marker() {
        let signer = signer();
        let ticket = ticket77(&Person::new("mona@example.net", Some("Mona")), Lang::En);
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        for lang in Lang::ALL {
            let agent = crate::config::Agent {
                name: "Agent".into(),
                address: "agent1@example.test".into(),
                alternates: Vec::new(),
                language: lang,
            };
            for kind in [MailKind::Warning, MailKind::Escalation] {
                let out = alert(
                    &support(),
                    &Templates::builtin(),
                    Some(&signer),
                    kind,
                    AlertFor {
                        to: &agent.address,
                        agent: Some(&agent),
                        ticket: &ticket,
                        received_at: "2026-11-23T08:00:00Z".parse().unwrap(),
                        due_at: "2026-11-23T09:00:00Z".parse().unwrap(),
                        level: 1,
                        thread: &[],
                        told: &[],
                        message_id: None,
                    },
                    now,
                )
                .unwrap();
                let parsed = crate::parse::parse(&out.raw);
                let reply_to = parsed.reply_to.expect("signed Reply-To").address;
                assert!(reply_to.starts_with("support+77."), "{reply_to}");
                assert!(
                    parsed.text.contains(&crate::templates::marker(lang)),
                    "{kind:?} {lang}: {}",
                    parsed.text
                );
                assert!(mail_parser_html(&out.raw).contains(&crate::templates::marker(lang)));
                // A Dutch Outlook header (not recognised) above the unquoted alert.
                let answer = format!(
                    "We are on it.\n\nVan: Example Support\nVerzonden: maandag\n\n{}",
                    parsed.text
                );
                let read =
                    crate::agent::reply::read(&answer, &crate::agent::fixtures::agents(), &[]);
                assert!(read.body.starts_with("We are on it."), "{}", read.body);
                assert!(
                    !read.body.contains("Printer on fire"),
                    "{kind:?} {lang}: {}",
                    read.body
                );
            }
        }
        // The builder refuses a reply key without the marker, whatever the template says.
        let parts = RenderedParts {
            lang: Lang::En,
            subject: "s".into(),
            text: "no marker".into(),
            html: "<p>no marker</p>".into(),
        };
        let envelope = Envelope {
            from: support_mailbox(&support(), None),
            to: vec![mailbox(&Person::new("agent1@example.test", None)).unwrap()],
            cc: Vec::new(),
            reply_to: ReplyTo::Signed(support_mailbox(&support(), None)),
            message_id: "x@example.test".into(),
            in_reply_to: None,
            references: Vec::new(),
            auto_submitted: None,
            attachments: &[],
        };
        assert!(matches!(
            build(&support(), envelope, parts, now),
            Err(RenderError::NoMarker)
        ));
    }

    #[test]
    fn preview_uses_the_configured_desk() {
        let parts = preview(
            &Templates::builtin(),
            &support(),
            kinds::kind("ack").unwrap(),
            Lang::El,
        )
        .unwrap();
        assert!(parts.text.contains("Example Support"), "{}", parts.text);
        assert!(parts.text.contains("12:00 (ώρα UTC+2)"), "{}", parts.text);
    }

    /// Names and subjects come from inbound mail: whatever they hold, they cannot add a header.
    #[test]
    fn inbound_text_cannot_inject_headers() {
        let raw = b"From: =?utf-8?q?Eve=0D=0ABcc:_victim@example.net?= <eve@example.net>\r\n\
                    Subject: =?utf-8?q?hi=0D=0ABcc:_victim@example.net=0A=0Abody?=\r\n\r\nx";
        let inbound = crate::parse::parse(raw);
        let customer = inbound.from.clone().expect("sender");
        let out = acknowledgement(
            &support(),
            &Templates::builtin(),
            AckFor {
                ticket: TicketId(7),
                customer: &customer,
                subject: &inbound.subject,
                message_id: None,
                references: &[],
                due_at: "2026-11-24T10:00:00Z".parse().unwrap(),
                lang: Lang::En,
            },
            "2026-11-23T10:00:00Z".parse().unwrap(),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out.raw).to_ascii_lowercase();
        let headers = text.split("\r\n\r\n").next().unwrap_or("");
        assert!(!headers.contains("\r\nbcc:"), "{headers}");
        assert_eq!(out.recipients, vec!["eve@example.net"]);
        let back = crate::parse::parse(&out.raw);
        assert!(
            back.subject.contains("Bcc: victim@example.net"),
            "kept as text: {}",
            back.subject
        );
    }

    #[test]
    fn acknowledgement_threads_and_promises() {
        let customer = Person::new("mona@example.net", Some("Mona <Q>"));
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let out = acknowledgement(
            &support(),
            &Templates::builtin(),
            AckFor {
                ticket: TicketId(42),
                customer: &customer,
                subject: "Re: Printer on fire",
                message_id: Some("m1@example.net"),
                references: &["r0@example.net".to_string()],
                due_at: "2026-11-24T10:00:00Z".parse().unwrap(),
                lang: Lang::En,
            },
            now,
        )
        .unwrap();
        let parsed = crate::parse::parse(&out.raw);
        assert_eq!(parsed.subject, "Re: Printer on fire [#42]");
        assert_eq!(parsed.in_reply_to, vec!["m1@example.net"]);
        assert_eq!(parsed.references, vec!["r0@example.net", "m1@example.net"]);
        assert_eq!(parsed.message_id.as_deref(), Some(out.message_id.as_str()));
        assert!(out.message_id.ends_with("@example.test"));
        assert_eq!(parsed.auto_submitted.as_deref(), Some("auto-replied"));
        assert_eq!(parsed.auto_response_suppress.as_deref(), Some("All"));
        assert_eq!(parsed.loop_marks, vec!["support@example.test"]);
        assert_eq!(
            crate::classify::classify(&parsed, &["support@example.test".to_string()]),
            crate::classify::Class::OwnMail(crate::classify::Signal::LoopMark),
            "our own acknowledgement coming back is recognised as ours"
        );
        assert!(parsed.text.contains("ticket [#42]"), "{}", parsed.text);
        assert!(
            parsed
                .text
                .contains("Tuesday 24 November 2026, 12:00 EET (UTC+2)"),
            "{}",
            parsed.text
        );
        assert!(parsed.text.contains("Hello Mona <Q>,"), "{}", parsed.text);
        let html = String::from_utf8_lossy(&out.raw).to_string();
        assert!(html.contains("Mona &lt;Q&gt;"), "HTML part escapes names");
        assert_eq!(out.recipients, vec!["mona@example.net"]);
        assert_eq!(out.envelope_from, "support@example.test");
    }

    #[test]
    fn subject_prefixes_and_old_tags_are_not_repeated() {
        assert_eq!(strip_reply_prefixes("Re: AW: fwd: hello"), "hello");
        assert_eq!(strip_reply_prefixes("رد: مرحبا"), "مرحبا");
        assert_eq!(strip_reply_prefixes("Regarding x"), "Regarding x");
        assert_eq!(strip_reply_prefixes("ΑΠ: ΣΧΕΤ: Γεια"), "Γεια");
        assert_eq!(strip_reply_prefixes("RE:"), "");
        assert_eq!(
            base_subject("رد: الطابعة \u{200E}[#42]\u{200E}", "[#42]"),
            "الطابعة",
            "the marks around an Arabic tag go with it"
        );
        let bomb = format!("{}x", "Re: ".repeat(100_000));
        assert_eq!(strip_reply_prefixes(&bomb), "x");
    }

    #[test]
    fn an_unusable_recipient_is_an_error_not_a_panic() {
        let customer = Person::new("not an address@", None);
        let err = acknowledgement(
            &support(),
            &Templates::builtin(),
            AckFor {
                ticket: TicketId(1),
                customer: &customer,
                subject: "x",
                message_id: None,
                references: &[],
                due_at: Timestamp::UNIX_EPOCH,
                lang: Lang::En,
            },
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(matches!(err, RenderError::BadRecipient { .. }), "{err}");
    }
}
