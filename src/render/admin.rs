//! Mail to the admin (`[alerts]`): plain words of our own, in English, not a template. The
//! admin is not a customer or an agent; the message is internal and never threads a ticket.

use jiff::Timestamp;

use super::{Envelope, Outgoing, RenderError, RenderedParts, build, mailbox, new_message_id};
use crate::config::Support;
use crate::language::Lang;
use crate::model::Person;

/// An alert (or an all-clear) to `to`, its subject and body as given.
pub fn admin_alert(
    support: &Support,
    to: &[String],
    subject: &str,
    text: &str,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let to = to
        .iter()
        .map(|address| mailbox(&Person::new(address, None)))
        .collect::<Result<Vec<_>, _>>()?;
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let parts = RenderedParts {
        lang: Lang::En,
        subject: format!("[{}] {subject}", support.name),
        text: text.to_string(),
        html: format!("<!DOCTYPE html><html><body><pre>{escaped}</pre></body></html>"),
    };
    let envelope = Envelope {
        from: super::support_mailbox(support, None),
        to,
        cc: Vec::new(),
        reply_to: super::ReplyTo::From,
        message_id: new_message_id(support),
        in_reply_to: None,
        references: Vec::new(),
        auto_submitted: Some("auto-generated"),
        attachments: &[],
    };
    build(support, envelope, parts, now)
}
