//! Messages: the rows of mail in and out, and the keys that make one message one row.

use crate::store::sql::Raw;
use crate::store::sql::params;
use crate::store::tx::Optional;
use jiff::Timestamp;

use super::Tx;
use crate::model::{MessageRowId, Person, TicketId};
use crate::store::{StoreError, to_ms};

/// A message already stored under the same dedupe key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub message: MessageRowId,
    pub ticket: Option<TicketId>,
    pub outbound: bool,
    /// [`content_key`] of the stored message.
    pub content: String,
}

pub struct NewMessage<'a> {
    /// `None` for a bounce of nothing we know.
    pub ticket: Option<TicketId>,
    pub outbound: bool,
    pub dedupe_key: &'a str,
    pub message_id: Option<&'a str>,
    /// The mailbox of inbound mail, with `(uidvalidity, uid)` when it was fetched over IMAP
    /// (not when the MTA delivered it to `deskgate ingest`).
    pub source: Option<(&'a str, Option<(u32, u32)>)>,
    pub from: Option<&'a Person>,
    pub subject: &'a str,
    pub sent_date: Option<Timestamp>,
    pub received_at: Timestamp,
    pub in_reply_to: &'a [String],
    pub references: &'a [String],
    pub class: &'a str,
    pub defects: &'a str,
    pub body_text: &'a str,
    /// Attachment file names.
    pub attachments: &'a [String],
    pub raw: &'a [u8],
    /// Seen by agents only; never a threading key for other senders.
    pub internal: bool,
    /// The agent who wrote it, or to whom it goes.
    pub agent: Option<&'a str>,
}

pub(in crate::store) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What makes two messages with one Message-ID the same message: sender, subject and text
/// (the bytes differ between mailboxes by their trace headers).
pub fn content_key(from: Option<&str>, subject: &str, text: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in [from.unwrap_or(""), subject, text] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hex(&hash.finalize())
}

/// The dedupe key of an inbound message: its Message-ID, or else a stable synthetic one, a
/// hash of its bytes after the trace fields servers put on top, so the same message delivered
/// to two mailboxes (CC to support and sales) has one key.
pub fn dedupe_key(message_id: Option<&str>, raw: &[u8]) -> String {
    use sha2::Digest;
    match message_id {
        Some(id) => format!("mid:{id}"),
        None => format!(
            "content:{}",
            hex(&sha2::Sha256::digest(without_trace_fields(raw)))
        ),
    }
}

/// The key schema versions 1 to 3 gave mail without a Message-ID: a hash of all its bytes.
pub fn legacy_content_key(raw: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex(&sha2::Sha256::digest(raw)))
}

/// Header fields each server on the way adds on top of a message, differing per copy.
const TRACE_FIELDS: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "authentication-results",
    "received-spf",
];

/// `raw` from its first header that is not a trace field (nor an mbox `From ` line).
fn without_trace_fields(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        let name = line.iter().position(|b| *b == b':').map(|colon| {
            String::from_utf8_lossy(&line[..colon])
                .trim()
                .to_ascii_lowercase()
        });
        let trace = name.as_deref().is_some_and(|n| TRACE_FIELDS.contains(&n));
        if !(trace || (continuation && skipping) || line.starts_with(b"From ")) {
            break;
        }
        skipping = trace || (continuation && skipping);
        rest = &rest[end..];
    }
    rest
}

impl Tx<'_> {
    pub fn known_message(&self, dedupe_key: &str) -> Result<Option<Known>, StoreError> {
        let row = self.query_row(
                "SELECT id, ticket_id, direction, from_address, subject, body_text FROM messages WHERE dedupe_key = ?1",
                [dedupe_key],
                |r| {
                    Ok(Known {
                        message: MessageRowId(r.get(0)?),
                        ticket: r.get::<_, Option<i64>>(1)?.map(TicketId),
                        outbound: r.get::<_, String>(2)? == "out",
                        content: content_key(
                            r.get::<_, Option<String>>(3)?.as_deref(),
                            &r.get::<_, String>(4)?,
                            &r.get::<_, String>(5)?,
                        ),
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    pub fn insert_message(&self, message: &NewMessage<'_>) -> Result<MessageRowId, StoreError> {
        use sha2::Digest;
        let sha256 = hex(&sha2::Sha256::digest(message.raw));
        let (mailbox, uidvalidity, uid) = match message.source {
            Some((m, at)) => (Some(m), at.map(|a| a.0), at.map(|a| a.1)),
            None => (None, None, None),
        };
        let id: i64 = self.query_row(
            "INSERT INTO messages (ticket_id, direction, dedupe_key, message_id, mailbox, uidvalidity, uid,
                                   from_address, from_name, subject, sent_date, received_at, in_reply_to,
                                   refs, class, defects, body_text, raw_sha256, raw, internal, agent,
                                   attachments)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                     ?20, ?21, ?22)
             RETURNING id",
            params![
                message.ticket.map(|t| t.0),
                if message.outbound { "out" } else { "in" },
                message.dedupe_key,
                message.message_id,
                mailbox,
                uidvalidity,
                uid,
                message.from.map(|p| p.address.as_str()),
                message.from.and_then(|p| p.name.as_deref()),
                message.subject,
                message.sent_date.map(to_ms),
                to_ms(message.received_at),
                message.in_reply_to.join(" "),
                message.references.join(" "),
                message.class,
                message.defects,
                message.body_text,
                sha256,
                Raw(message.raw),
                message.internal,
                message.agent,
                message.attachments.join("\n"),
            ],
            |r| r.get(0),
        )?;
        self.fill_raw("messages", id, message.raw)?;
        Ok(MessageRowId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_copies_without_message_id_share_a_key() {
        let body = b"From: a@b.test\r\nSubject: hi\r\n\r\nsame\r\n";
        let one = [
            &b"Return-Path: <a@b.test>\r\nDelivered-To: support@x.test\r\nReceived: from a\r\n by b; now\r\n"[..],
            body,
        ]
        .concat();
        let two = [
            &b"Delivered-To: sales@x.test\r\nReceived: from c; later\r\n"[..],
            body,
        ]
        .concat();
        assert_eq!(dedupe_key(None, &one), dedupe_key(None, &two));
        assert_eq!(dedupe_key(None, &one), dedupe_key(None, body));
        let other = b"From: a@b.test\r\nSubject: hi\r\n\r\nother\r\n";
        assert_ne!(dedupe_key(None, body), dedupe_key(None, other));
        assert_eq!(dedupe_key(Some("x@y"), body), "mid:x@y");
    }
}
