//! Raw RFC 5322 bytes → [`ParsedMessage`]. Never fails.
//!
//! **Architecture Invariant:** parsing is best-effort and total: whatever the bytes, the result
//! is a message plus a list of [`Defect`]s. The raw bytes are always stored next to it, so a
//! better parser can re-derive these fields later.

use jiff::Timestamp;
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

use crate::model::{Person, clean_header_text};

/// The fields of an inbound message that deskgate acts on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedMessage {
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Decoded subject, safe to reuse in a header.
    pub subject: String,
    pub from: Option<Person>,
    pub reply_to: Option<Person>,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    /// `Delivered-To:` and `X-Original-To:` values (lower case): the envelope recipients.
    pub delivered_to: Vec<String>,
    pub date: Option<Timestamp>,
    /// The first text body, or the first HTML body converted to text.
    pub text: String,
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    /// `Return-Path: <>`: the envelope sender was null (bounces, many auto-replies).
    pub null_return_path: bool,
    pub list_id: Option<String>,
    /// `Content-Language` of the message, or else of its first text part (`el`, `ar-SA, en`).
    pub content_language: Option<String>,
    pub n_attachments: usize,
    pub defects: Vec<Defect>,
}

/// Something wrong with a message that did not stop it from being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The bytes are not a message at all (empty input).
    Unparseable,
    NoMessageId,
    NoFrom,
    NoDate,
    /// Text was replaced by U+FFFD: an unknown charset or undeclared 8-bit data.
    UndecodableText,
}

impl Defect {
    pub fn as_str(self) -> &'static str {
        match self {
            Defect::Unparseable => "unparseable",
            Defect::NoMessageId => "no-message-id",
            Defect::NoFrom => "no-from",
            Defect::NoDate => "no-date",
            Defect::UndecodableText => "undecodable-text",
        }
    }
}

/// Parses `raw`. Never panics, never fails.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let Some(message) = MessageParser::default().parse(skip_preamble(raw)) else {
        return ParsedMessage {
            defects: vec![
                Defect::Unparseable,
                Defect::NoMessageId,
                Defect::NoFrom,
                Defect::NoDate,
            ],
            ..ParsedMessage::default()
        };
    };
    let mut parsed = ParsedMessage {
        message_id: message
            .message_id()
            .map(normalize_id)
            .filter(|id| !id.is_empty()),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        subject: clean_header_text(message.subject().unwrap_or("")),
        from: message.from().and_then(first_person),
        reply_to: message.reply_to().and_then(first_person),
        to: message.to().map(all_people).unwrap_or_default(),
        cc: message.cc().map(all_people).unwrap_or_default(),
        delivered_to: ["Delivered-To", "X-Original-To"]
            .iter()
            .flat_map(|name| message.header_values(*name))
            .filter_map(|v| v.as_text())
            .map(|v| normalize_id(v).to_ascii_lowercase())
            .collect(),
        date: message
            .date()
            .and_then(|d| Timestamp::from_second(d.to_timestamp()).ok()),
        text: message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        auto_submitted: raw_header(&message, "Auto-Submitted"),
        precedence: raw_header(&message, "Precedence"),
        null_return_path: raw_header(&message, "Return-Path").is_some_and(|v| {
            v.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace())
                .is_empty()
        }),
        list_id: raw_header(&message, "List-Id"),
        content_language: raw_header(&message, "Content-Language").or_else(|| {
            let part = message.text_body.first().and_then(|&i| message.part(i))?;
            part.headers
                .iter()
                .find(|h| h.name.as_str().eq_ignore_ascii_case("Content-Language"))
                .and_then(|h| h.value.as_text())
                .map(clean_header_text)
                .filter(|v| !v.is_empty())
        }),
        n_attachments: message.attachment_count(),
        defects: Vec::new(),
    };
    if parsed.message_id.is_none() {
        parsed.defects.push(Defect::NoMessageId);
    }
    if parsed.from.is_none() {
        parsed.defects.push(Defect::NoFrom);
    }
    if parsed.date.is_none() {
        parsed.defects.push(Defect::NoDate);
    }
    if parsed.subject.contains('\u{FFFD}') || parsed.text.contains('\u{FFFD}') {
        parsed.defects.push(Defect::UndecodableText);
    }
    parsed
}

/// A file attached to a message, carried along when deskgate passes the message on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Decoded file name; `attachment-N` when the sender gave none.
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The attachments of `raw`, decoded (re-parses: only needed when mail is passed on).
pub fn attachments(raw: &[u8]) -> Vec<Attachment> {
    let Some(message) = MessageParser::default().parse(skip_preamble(raw)) else {
        return Vec::new();
    };
    message
        .attachments()
        .enumerate()
        .map(|(i, part)| {
            let content_type = part.content_type().map_or_else(
                || "application/octet-stream".to_string(),
                |ct| match ct.subtype() {
                    Some(sub) => format!("{}/{sub}", ct.ctype()),
                    None => ct.ctype().to_string(),
                },
            );
            Attachment {
                name: part
                    .attachment_name()
                    .map(clean_header_text)
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("attachment-{}", i + 1)),
                content_type,
                data: part.contents().to_vec(),
            }
        })
        .collect()
}

/// Skips what some stores put before the headers and mail-parser would read as the end of
/// them: an mbox `From ` separator line and lines of nothing but spaces or tabs. (An empty
/// first line is left alone: it really means "no headers".)
fn skip_preamble(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    if rest.starts_with(b"From ") {
        rest = after_line(rest);
    }
    loop {
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        let blank = !line.is_empty() && line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r'));
        if !blank || line == b"\r" {
            return rest;
        }
        rest = after_line(rest);
    }
}

fn after_line(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => &bytes[end + 1..],
        None => &[],
    }
}

/// `<abc@host>` and ` abc@host ` both become `abc@host`.
pub fn normalize_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .map(|ids| {
            ids.iter()
                .map(|id| normalize_id(id))
                .filter(|id| !id.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn raw_header(message: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    message
        .header_raw(name)
        .map(clean_header_text)
        .filter(|v| !v.is_empty())
}

fn all_people(address: &Address<'_>) -> Vec<Person> {
    address
        .iter()
        .filter_map(|addr| {
            let email = addr.address.as_deref()?.trim();
            if !email.contains(char::is_whitespace) {
                return email
                    .contains('@')
                    .then(|| Person::new(email, addr.name.as_deref()));
            }
            // `From: Big Bug bb@bug.com` (no angle brackets): the word with the @ is the
            // address, the words before it the name.
            let words: Vec<&str> = email.split_whitespace().collect();
            let at = words.iter().rposition(|w| w.contains('@'))?;
            let name = words[..at].join(" ");
            let name = addr
                .name
                .as_deref()
                .or((!name.is_empty()).then_some(name.as_str()));
            Some(Person::new(
                words[at].trim_matches(|c| c == '<' || c == '>'),
                name,
            ))
        })
        .collect()
}

fn first_person(address: &Address<'_>) -> Option<Person> {
    all_people(address).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_message() {
        let parsed = parse(
            b"From: \"Mona Q\" <Mona@Example.NET>\r\nTo: support@example.test\r\n\
              Subject: Printer\r\n =?utf-8?q?_on_fire?=\r\nMessage-ID: <m1@example.net>\r\n\
              In-Reply-To: <a@x>\r\nReferences: <r1@x> <a@x>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
              \r\nIt smokes.\r\n",
        );
        assert_eq!(parsed.message_id.as_deref(), Some("m1@example.net"));
        assert_eq!(parsed.in_reply_to, vec!["a@x"]);
        assert_eq!(parsed.references, vec!["r1@x", "a@x"]);
        assert_eq!(parsed.subject, "Printer on fire");
        assert_eq!(
            parsed.from,
            Some(Person {
                address: "mona@example.net".into(),
                name: Some("Mona Q".into())
            })
        );
        assert_eq!(parsed.text.trim(), "It smokes.");
        assert!(parsed.defects.is_empty(), "{:?}", parsed.defects);
    }

    #[test]
    fn html_only_mail_reads_as_text_and_attachments_are_named() {
        let raw = b"From: a@b.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
              Content-Type: multipart/mixed; boundary=b\r\n\r\n\
              --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
              <p>It <b>smokes</b>.</p><p>Help!</p>\r\n\
              --b\r\nContent-Type: image/png\r\n\
              Content-Disposition: attachment; filename=\"=?utf-8?q?fl=C3=B6te.png?=\"\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n";
        let parsed = parse(raw);
        assert!(!parsed.text.contains('<'), "{}", parsed.text);
        assert!(parsed.text.contains("smokes") && parsed.text.contains("Help!"));
        let files = attachments(raw);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "flöte.png");
        assert_eq!(files[0].content_type, "image/png");
        assert_eq!(files[0].data, [0, 1, 2]);
    }

    #[test]
    fn legacy_charsets_are_decoded() {
        let greek = parse(
            b"From: a@b.gr\r\nSubject: =?iso-8859-7?b?w+Xp4SDz7/U=?=\r\nMessage-ID: <g@b>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
              Content-Type: text/plain; charset=windows-1253\r\n\r\n\xc3\xe5\xe9\xdc\r\n",
        );
        assert_eq!(greek.subject, "Γεια σου");
        assert_eq!(greek.text.trim(), "Γειά");
        let arabic = parse(
            b"From: a@b.sa\r\nMessage-ID: <a@b>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
              Content-Type: text/plain; charset=windows-1256\r\n\r\n\xe3\xd1\xcd\xc8\xc7\r\n",
        );
        assert_eq!(arabic.text.trim(), "مرحبا");
    }

    #[test]
    fn garbage_and_empty_input_never_fail() {
        let empty = parse(b"");
        assert!(empty.defects.contains(&Defect::Unparseable));
        let garbage = parse(b"\x00\xff\xfe not a message");
        assert!(garbage.defects.contains(&Defect::NoFrom));
        assert!(garbage.defects.contains(&Defect::NoMessageId));
    }

    #[test]
    fn injected_line_breaks_do_not_survive() {
        let parsed = parse(b"From: a@b\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_x@y?=\r\n\r\nbody");
        assert_eq!(parsed.subject, "hi Bcc: x@y");
    }

    #[test]
    fn preambles_do_not_hide_the_headers() {
        let spaces = parse(b"      \r\nFrom: Danielle <d@x.test>\r\nSubject: hi\r\n\r\nbody");
        assert_eq!(spaces.from.map(|p| p.address).as_deref(), Some("d@x.test"));
        let mbox =
            parse(b"From d@x.test Mon Jan  1 00:00:00 2024\nFrom: d@x.test\nSubject: hi\n\nbody");
        assert_eq!(mbox.subject, "hi");
        let headerless = parse(b"\r\nFrom: not-a-header@x.test\r\n");
        assert!(headerless.from.is_none());
    }

    #[test]
    fn unbracketed_addresses_with_names() {
        let parsed = parse(b"From: Big Bug bb@bug.com\r\nSubject: x\r\n\r\nbody");
        assert_eq!(
            parsed.from,
            Some(Person {
                address: "bb@bug.com".into(),
                name: Some("Big Bug".into())
            })
        );
    }

    #[test]
    fn null_return_path() {
        assert!(parse(b"Return-Path: <>\r\nFrom: a@b\r\n\r\nx").null_return_path);
        assert!(!parse(b"Return-Path: <a@b>\r\nFrom: a@b\r\n\r\nx").null_return_path);
    }
}
