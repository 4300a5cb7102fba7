//! Render: outgoing mail as finished RFC 5322 bytes.
//!
//! Everything here is CPU-only. The bytes and the Message-ID are fixed when the outbox row is
//! written, so every retry sends exactly the same message.

mod agent;
mod templates;

use std::time::SystemTime;

use jiff::Timestamp;
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

pub use agent::{NoteFor, NoticeFor, NotificationFor, ReplyFor, note, notice, notification, reply};
pub use templates::{TemplateError, Templates};

use crate::config::Support;
use crate::model::{Person, TicketId};
use crate::parse::Attachment;
use crate::thread::format_tag;
use templates::RenderedParts;

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
        subject => base_subject(ack.subject, &tag),
        customer_name => ack.customer.name.clone().unwrap_or_default(),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
        due => format_due(ack.due_at, support),
        due_iso => ack.due_at.to_string(),
    };
    let parts = templates.render_all("ack", "en", &context)?;
    let mut references: Vec<String> = ack.references.to_vec();
    references.extend(ack.message_id.map(String::from));
    build(
        support,
        Envelope {
            from: support_mailbox(support, None),
            to: vec![mailbox(ack.customer)?],
            cc: Vec::new(),
            reply_to: None,
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

/// The subject without reply prefixes and our tag: `Re: Printer [#4]` → `Printer`.
fn base_subject(subject: &str, tag: &str) -> String {
    let base = strip_reply_prefixes(subject).replace(tag, "");
    match base.trim() {
        "" => "(no subject)".to_string(),
        base => base.to_string(),
    }
}

/// The headers of an outgoing message; the body comes from templates.
struct Envelope<'a> {
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
    /// Without angle brackets.
    message_id: String,
    in_reply_to: Option<&'a str>,
    references: Vec<String>,
    /// `Auto-Submitted:` value for machine-written mail (RFC 3834); `None` for an agent's words.
    auto_submitted: Option<&'static str>,
    attachments: &'a [Attachment],
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
    if let Some(reply_to) = envelope.reply_to {
        builder = builder.reply_to(reply_to);
    }
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
    let body = MultiPart::alternative_plain_html(parts.text.clone(), parts.html);
    let message = if envelope.attachments.is_empty() {
        builder.multipart(body)
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for file in envelope.attachments {
            let content_type = ContentType::parse(&file.content_type)
                .or_else(|_| ContentType::parse("application/octet-stream"))
                .unwrap_or(ContentType::TEXT_PLAIN);
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(file.name.clone())
                    .body(file.data.clone(), content_type),
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
    Ok(Mailbox::new(person.name.clone(), address))
}

/// The support address, named `Support` or `<via> via Support`.
fn support_mailbox(support: &Support, via: Option<&str>) -> Mailbox {
    let name = match via {
        Some(agent) => format!("{agent} via {}", support.name),
        None => support.name.clone(),
    };
    Mailbox::new(Some(name), support.address.clone())
}

/// `<uuid@support-domain>`: unguessable, and recognisably ours when it comes back.
fn new_message_id(support: &Support) -> String {
    format!(
        "{}@{}",
        uuid::Uuid::new_v4().simple(),
        support.address.domain()
    )
}

/// "Tuesday 24 November 2026, 10:00 UTC" in the support desk's time zone.
pub fn format_due(due_at: Timestamp, support: &Support) -> String {
    due_at
        .to_zoned(support.timezone.clone())
        .strftime("%A %-d %B %Y, %H:%M %Z")
        .to_string()
}

/// `Re: AW: Fwd: subject` → `subject`.
fn strip_reply_prefixes(subject: &str) -> &str {
    let mut rest = subject.trim();
    loop {
        let lower = rest.to_lowercase();
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

    fn support() -> Support {
        Support {
            address: "support@example.test".parse().unwrap(),
            name: "Example Support".into(),
            tag_prefix: "#".into(),
            timezone: TimeZone::get("Europe/Athens").unwrap(),
        }
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
        assert!(parsed.text.contains("ticket [#42]"), "{}", parsed.text);
        assert!(
            parsed.text.contains("Tuesday 24 November 2026, 12:00 EET"),
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
            },
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(matches!(err, RenderError::BadRecipient { .. }), "{err}");
    }
}
