//! Raw RFC 5322 bytes → [`ParsedMessage`]. Never fails.
//!
//! **Architecture Invariant:** parsing is best-effort and total: whatever the bytes, the result
//! is a message plus a list of [`Defect`]s. The raw bytes are always stored next to it, so a
//! better parser can re-derive these fields later.

use jiff::Timestamp;
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

use crate::model::{Person, clean_header_text};

mod charset;
mod report;
pub mod tnef;
pub use report::{RecipientStatus, Report};

/// A header block larger than this is a resource-exhaustion attempt, not mail.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;
/// More `Received:` hops than this is a mail loop (Postfix gives up at 50 by default).
pub const MAX_RECEIVED: usize = 100;
/// MIME nesting (multiparts and attached messages) deeper than this is not mail a person sent.
pub const MAX_NESTING: usize = 50;
/// MIME parts beyond this many are not parsed: the message is stored whole, its text read from
/// the parts before, and what was not read is counted in [`ParsedMessage::unlisted_parts`].
/// (Each parsed part costs memory of its own, so a message of 150,000 empty parts would
/// otherwise take many times its size.)
pub const MAX_PARTS: usize = 1_000;
/// Attachments beyond this many are neither named nor carried.
pub const MAX_ATTACHMENTS: usize = 200;
/// At most this much of the message's text is kept as its text (stored, shown by
/// `deskgate ticket N`); the raw message is kept whole, so nothing is lost.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

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
    /// `Authentication-Results:` values, top to bottom (see [`crate::authres`]).
    pub authentication_results: Vec<String>,
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
    /// `List-Unsubscribe:` is present.
    pub list_unsubscribe: bool,
    /// `Mailing-List:` (ezmlm) or `X-Mailman-Version:` is present.
    pub mailing_list: bool,
    /// The `Sender:` address (lower case), if any.
    pub sender: Option<String>,
    /// A `multipart/digest` part: a list digest.
    pub digest: bool,
    /// `X-Autoreply:` or `X-Autorespond:` (any value but `no`): older responders' marks.
    pub x_autoreply: bool,
    /// `X-Auto-Response-Suppress:` (Exchange): the sender asks not to be answered automatically.
    pub auto_response_suppress: Option<String>,
    /// Every `X-Deskgate-Loop:` value (lower case): the support addresses that sent it.
    pub loop_marks: Vec<String>,
    /// A challenge-response system's header (`X-Bluebottle-Request`, `X-Boxbe-*`, ...).
    pub challenge_response: bool,
    /// Delivery-report contents and the returned message's ids.
    pub report: Report,
    /// Why the message is beyond what a person sends (huge header block, a loop of
    /// `Received:` hops, absurd MIME nesting); such mail is quarantined.
    pub excessive: Option<String>,
    /// Attachment file names, decoded (RFC 2047 / RFC 2231; see [`attachment_name`]); the
    /// attachments themselves stay in the stored raw message. At most [`MAX_ATTACHMENTS`].
    pub attachment_names: Vec<String>,
    /// Attachments beyond [`MAX_ATTACHMENTS`] and MIME parts beyond [`MAX_PARTS`]: not read,
    /// named or carried (they stay in the stored raw message).
    pub unlisted_parts: usize,
    pub defects: Vec<Defect>,
}

/// Something wrong with a message that did not stop it from being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The bytes are not a message at all (empty input).
    Unparseable,
    /// The MIME parser panicked on these bytes.
    ParserFailed,
    NoMessageId,
    NoFrom,
    NoDate,
    /// Text was replaced by U+FFFD: an unknown charset or undeclared 8-bit data.
    UndecodableText,
    /// An unknown, missing or lying charset label: the text was decoded by a guessed charset.
    CharsetGuessed,
    /// The text is longer than [`MAX_TEXT_BYTES`]: only its beginning is kept as text.
    TextCut,
}

impl Defect {
    pub fn as_str(self) -> &'static str {
        match self {
            Defect::Unparseable => "unparseable",
            Defect::ParserFailed => "parser-failed",
            Defect::NoMessageId => "no-message-id",
            Defect::NoFrom => "no-from",
            Defect::NoDate => "no-date",
            Defect::UndecodableText => "undecodable-text",
            Defect::CharsetGuessed => "charset-guessed",
            Defect::TextCut => "text-cut",
        }
    }
}

/// Parses `raw`. Never panics, never fails: a panic inside the MIME parser (a bug that
/// hostile input can reach) yields an empty message with [`Defect::ParserFailed`].
pub fn parse(raw: &[u8]) -> ParsedMessage {
    std::panic::catch_unwind(|| parse_unguarded(raw)).unwrap_or_else(|_| ParsedMessage {
        defects: vec![Defect::ParserFailed, Defect::NoMessageId, Defect::NoFrom],
        ..ParsedMessage::default()
    })
}

/// [`parse`] without its guard against panics in the MIME parser.
fn parse_unguarded(raw: &[u8]) -> ParsedMessage {
    let lines = crlf_from_cr(raw);
    let raw = lines.as_deref().unwrap_or(raw);
    let (input, parts_not_read) = cap_parts(skip_preamble(raw));
    let Some(message) = MessageParser::default().parse(input) else {
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
    let body = message.body_text(0);
    let text_cut = body.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES);
    let text = body.map_or_else(String::new, |t| cut_at(&t, MAX_TEXT_BYTES).to_string());
    let mut parsed = fields(&message, text, parts_not_read);
    parsed.report = report::extract(&message, parsed.message_id.as_deref());
    note_defects(&mut parsed, &message, input, text_cut);
    parsed
}

/// The fields read from the message's headers and parts, with `text` (already cut) as its
/// text and `parts_not_read` the parts [`cap_parts`] left out; no report and no defects yet.
fn fields(
    message: &mail_parser::Message<'_>,
    text: String,
    parts_not_read: usize,
) -> ParsedMessage {
    ParsedMessage {
        message_id: message
            .message_id()
            .map(normalize_id)
            .filter(|id| !id.is_empty()),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        subject: clean_header_text(message.subject().unwrap_or("")),
        from: message.from().and_then(from_person),
        reply_to: message.reply_to().and_then(first_person),
        to: message.to().map(all_people).unwrap_or_default(),
        cc: message.cc().map(all_people).unwrap_or_default(),
        delivered_to: delivered_to(message),
        authentication_results: raw_values(message, "Authentication-Results").collect(),
        date: message
            .date()
            .and_then(|d| Timestamp::from_second(d.to_timestamp()).ok()),
        text,
        auto_submitted: raw_header(message, "Auto-Submitted"),
        precedence: raw_header(message, "Precedence"),
        null_return_path: null_return_path(message),
        list_id: raw_header(message, "List-Id"),
        content_language: content_language(message),
        list_unsubscribe: raw_header(message, "List-Unsubscribe").is_some(),
        mailing_list: raw_header(message, "Mailing-List").is_some()
            || raw_header(message, "X-Mailman-Version").is_some(),
        digest: is_digest(message),
        sender: message.sender().and_then(first_person).map(|p| p.address),
        x_autoreply: x_autoreply(message),
        auto_response_suppress: raw_header(message, "X-Auto-Response-Suppress"),
        loop_marks: raw_values(message, LOOP_HEADER)
            .map(|value| value.to_ascii_lowercase())
            .collect(),
        challenge_response: challenge_response(message),
        report: Report::default(),
        excessive: excessive(message),
        attachment_names: attachment_names(message),
        unlisted_parts: parts_not_read
            + message
                .attachments()
                .count()
                .saturating_sub(MAX_ATTACHMENTS),
        defects: Vec::new(),
    }
}

/// Adds what `parsed` lacks and what reading it took to its defects, always in the same
/// order; text whose charset label lied is decoded again first.
fn note_defects(
    parsed: &mut ParsedMessage,
    message: &mail_parser::Message<'_>,
    input: &[u8],
    text_cut: bool,
) {
    if parsed.message_id.is_none() {
        parsed.defects.push(Defect::NoMessageId);
    }
    if parsed.from.is_none() {
        parsed.defects.push(Defect::NoFrom);
    }
    if parsed.date.is_none() {
        parsed.defects.push(Defect::NoDate);
    }
    if redecode(parsed, message, input) {
        parsed.defects.push(Defect::CharsetGuessed);
        parsed.text = cut_at(&parsed.text, MAX_TEXT_BYTES).to_string();
    }
    if text_cut {
        parsed.defects.push(Defect::TextCut);
    }
    if parsed.subject.contains('\u{FFFD}') || parsed.text.contains('\u{FFFD}') {
        parsed.defects.push(Defect::UndecodableText);
    }
}

/// The addresses in `Delivered-To` and `X-Original-To`, lowercased.
fn delivered_to(message: &mail_parser::Message<'_>) -> Vec<String> {
    ["Delivered-To", "X-Original-To"]
        .iter()
        .flat_map(|name| message.header_values(*name))
        .filter_map(|v| v.as_text())
        .map(|v| normalize_id(v).to_ascii_lowercase())
        .collect()
}

/// Every value of the header `name`, as written and cleaned, in order.
fn raw_values<'m>(
    message: &'m mail_parser::Message<'_>,
    name: &'m str,
) -> impl Iterator<Item = String> + 'm {
    message
        .headers_raw()
        .filter(move |(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| clean_header_text(value))
}

/// Whether the `Return-Path` is the null sender (`<>`) of bounces and other notices.
fn null_return_path(message: &mail_parser::Message<'_>) -> bool {
    raw_header(message, "Return-Path").is_some_and(|v| {
        v.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace())
            .is_empty()
    })
}

/// The message's `Content-Language`, or else that of its first text part.
fn content_language(message: &mail_parser::Message<'_>) -> Option<String> {
    raw_header(message, "Content-Language").or_else(|| {
        let part = message.text_body.first().and_then(|&i| message.part(i))?;
        part.headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case("Content-Language"))
            .and_then(|h| h.value.as_text())
            .map(clean_header_text)
            .filter(|v| !v.is_empty())
    })
}

/// Whether any part is a `multipart/digest`.
fn is_digest(message: &mail_parser::Message<'_>) -> bool {
    message.parts.iter().any(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("digest"))
        })
    })
}

/// Whether `X-Autoreply` or `X-Autorespond` is set to anything but `no`.
fn x_autoreply(message: &mail_parser::Message<'_>) -> bool {
    ["X-Autoreply", "X-Autorespond"]
        .iter()
        .any(|name| raw_header(message, name).is_some_and(|v| !v.eq_ignore_ascii_case("no")))
}

/// Whether the headers show a challenge-response system (Bluebottle, Boxbe) sent the message.
fn challenge_response(message: &mail_parser::Message<'_>) -> bool {
    message.headers_raw().any(|(name, _)| {
        let name = name.to_ascii_lowercase();
        name == "x-bluebottle-request" || name.starts_with("x-boxbe")
    })
}

/// The names of the first [`MAX_ATTACHMENTS`] attachments; a winmail.dat is named by the files
/// inside it.
fn attachment_names(message: &mail_parser::Message<'_>) -> Vec<String> {
    message
        .attachments()
        .take(MAX_ATTACHMENTS)
        .enumerate()
        .flat_map(|(i, part)| match unpacked(part, i) {
            Some(files) => files.into_iter().map(|f| f.name).collect(),
            None => vec![attachment_name(part, i)],
        })
        .collect()
}

/// `text` cut to at most `max_bytes`, at a character boundary.
pub fn cut_at(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A file attached to a message, carried along when deskgate passes the message on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Decoded file name; `attachment-N` when the sender gave none.
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
    /// `Content-ID` without angle brackets: what the message's HTML calls it (`cid:`).
    pub content_id: Option<String>,
}

/// The attachments a message passed on carries, and what it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Attachments carried, in order, together at most the budget [`attachments`] was given.
    pub files: Vec<Attachment>,
    /// Attachments left out for size (the budget was spent), by name and size in bytes.
    pub left_out: Vec<(String, u64)>,
    /// Attachments and MIME parts beyond the caps, not even read.
    pub unlisted: usize,
}

/// The attachments of `raw`, decoded, with Outlook's winmail.dat unpacked into the files it
/// carries, carried up to `budget` bytes in all (re-parses: only needed when mail is passed
/// on). Never copies more than the message holds.
pub fn attachments(raw: &[u8], budget: u64) -> Carried {
    let lines = crlf_from_cr(raw);
    let (input, parts_not_read) = cap_parts(skip_preamble(lines.as_deref().unwrap_or(raw)));
    let Some(message) = MessageParser::default().parse(input) else {
        return Carried::default();
    };
    let mut carried = Carried {
        unlisted: parts_not_read,
        ..Carried::default()
    };
    let mut spent: u64 = 0;
    let mut carry = |carried: &mut Carried, name: String, size: u64| {
        if spent + size > budget {
            carried.left_out.push((name, size));
            return None;
        }
        spent += size;
        Some(name)
    };
    for (i, part) in message.attachments().enumerate() {
        if i >= MAX_ATTACHMENTS {
            carried.unlisted += 1;
            continue;
        }
        if let Some(files) = unpacked(part, i) {
            for file in files {
                let size = file.data.len() as u64;
                if let Some(name) = carry(&mut carried, file.name, size) {
                    carried.files.push(Attachment {
                        name,
                        content_type: file
                            .content_type
                            .unwrap_or_else(|| "application/octet-stream".to_string()),
                        data: file.data,
                        content_id: None,
                    });
                }
            }
            continue;
        }
        let size = part.contents().len() as u64;
        let Some(name) = carry(&mut carried, attachment_name(part, i), size) else {
            continue;
        };
        let content_type = part.content_type().map_or_else(
            || "application/octet-stream".to_string(),
            |ct| match ct.subtype() {
                Some(sub) => format!("{}/{sub}", ct.ctype()),
                None => ct.ctype().to_string(),
            },
        );
        carried.files.push(Attachment {
            name,
            content_type,
            data: part.contents().to_vec(),
            content_id: part
                .content_id()
                .map(normalize_id)
                .filter(|id| !id.is_empty()),
        });
    }
    carried
}

/// What the MIME parser is given: `input` up to the boundary line that would open part
/// [`MAX_PARTS`] + 1, and how many parts were cut off. Only a multipart message is cut; a
/// part is counted by its opening boundary line (`--` and more, not ending in `--`).
fn cap_parts(input: &[u8]) -> (&[u8], usize) {
    let header_end = find(input, b"\n\r\n")
        .or_else(|| find(input, b"\n\n"))
        .unwrap_or(input.len());
    if find_ignore_case(&input[..header_end], b"multipart/").is_none() {
        return (input, 0);
    }
    let mut n_parts = 0;
    let mut cut = input.len();
    let mut offset = 0;
    for line in input.split(|&b| b == b'\n') {
        let trimmed = line.trim_ascii_end();
        if trimmed.len() > 2 && trimmed.starts_with(b"--") && !trimmed.ends_with(b"--") {
            n_parts += 1;
            if n_parts == MAX_PARTS + 1 {
                cut = offset;
            }
        }
        offset += line.len() + 1;
    }
    (&input[..cut], n_parts.saturating_sub(MAX_PARTS))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// The first HTML body of `raw`, when the sender wrote one (not one made from its text).
pub fn html(raw: &[u8]) -> Option<String> {
    let lines = crlf_from_cr(raw);
    let (input, _) = cap_parts(skip_preamble(lines.as_deref().unwrap_or(raw)));
    let message = MessageParser::default().parse(input)?;
    let part = message.html_body.first().and_then(|&i| message.part(i))?;
    part.is_text_html()
        .then(|| part.text_contents())
        .flatten()
        .map(str::to_string)
}

/// The files inside a winmail.dat part (`application/ms-tnef`, or TNEF bytes by any name);
/// `None` for any other part, or TNEF that carries no file.
fn unpacked(part: &mail_parser::MessagePart<'_>, index: usize) -> Option<Vec<tnef::TnefFile>> {
    let declared = part.content_type().is_some_and(|ct| {
        ct.subtype().is_some_and(|s| {
            s.eq_ignore_ascii_case("ms-tnef") || s.eq_ignore_ascii_case("vnd.ms-tnef")
        })
    }) || attachment_name(part, index).eq_ignore_ascii_case("winmail.dat");
    let contents = part.contents();
    if !declared || !tnef::is_tnef(contents) {
        return None;
    }
    Some(tnef::files(contents)).filter(|files| !files.is_empty())
}

/// The decoded file name of the `index`th attachment; `attachment-N` when the sender gave
/// none.
fn attachment_name(part: &mail_parser::MessagePart<'_>, index: usize) -> String {
    part.attachment_name()
        .map(clean_header_text)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("attachment-{}", index + 1))
}

/// Decodes again, from the raw bytes, the subject, sender name and text that mail-parser could
/// only turn into U+FFFD (see [`charset`]). Returns whether a charset had to be guessed.
fn redecode(parsed: &mut ParsedMessage, message: &mail_parser::Message<'_>, input: &[u8]) -> bool {
    const BAD: char = '\u{FFFD}';
    let mut hints: Vec<&'static encoding_rs::Encoding> = message
        .parts
        .iter()
        .filter_map(|part| part.content_type()?.attribute("charset"))
        .filter_map(|label| encoding_rs::Encoding::for_label(label.trim().as_bytes()))
        .filter(|e| *e != encoding_rs::UTF_8)
        .collect();
    let header = |name: &str| {
        let h = message
            .headers()
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
        input.get(h.offset_start as usize..h.offset_end as usize)
    };
    let subject = header("Subject").filter(|_| parsed.subject.contains(BAD));
    let from = header("From").filter(|_| {
        parsed
            .from
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .is_some_and(|n| n.contains(BAD))
    });
    let body = message
        .text_body
        .first()
        .and_then(|id| message.parts.get(*id as usize))
        .filter(|_| parsed.text.contains(BAD))
        .and_then(|part| {
            let raw = input.get(part.offset_body as usize..part.offset_end as usize)?;
            Some((part, charset::transfer_decode(raw, part.encoding)))
        });
    // One guess over all the undecodable bytes of the message, so that a short subject
    // and its body are read the same way.
    let mut evidence: Vec<u8> = Vec::new();
    for bytes in [subject, from, body.as_ref().map(|(_, b)| b.as_slice())]
        .into_iter()
        .flatten()
    {
        evidence.extend_from_slice(bytes);
        evidence.push(b'\n');
    }
    if evidence.is_empty() {
        return false;
    }
    if std::str::from_utf8(&evidence).is_err() {
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(&evidence, true);
        hints.push(detector.guess(None, true));
    }
    let mut guessed = false;
    if let Some(raw) = subject {
        let decoded = charset::header_value(raw, &hints);
        parsed.subject = clean_header_text(&decoded.text);
        guessed |= decoded.guessed.is_some();
    }
    if let Some(raw) = from {
        let decoded = charset::header_value(raw, &hints);
        let reparsed = format!("From: {}\r\n\r\n", clean_header_text(&decoded.text));
        if let Some(person) = MessageParser::default()
            .parse(reparsed.as_bytes())
            .and_then(|m| m.from().and_then(from_person))
        {
            parsed.from = Some(person);
            guessed |= decoded.guessed.is_some();
        }
    }
    if let Some((part, bytes)) = body {
        let label = part.content_type().and_then(|ct| ct.attribute("charset"));
        let decoded = charset::decode(&bytes, label, &hints);
        let text = if part.is_text_html() {
            mail_parser::decoders::html::html_to_text(&decoded.text)
        } else {
            decoded.text
        };
        let bad = |t: &str| t.matches(BAD).count();
        if bad(&text) < bad(&parsed.text) {
            parsed.text = text;
            guessed |= decoded.guessed.is_some();
        }
    }
    guessed
}

/// The header deskgate puts on everything it sends, naming its support address; mail that
/// comes back carrying our own mark is a loop.
pub const LOOP_HEADER: &str = "X-Deskgate-Loop";

fn excessive(message: &mail_parser::Message<'_>) -> Option<String> {
    let root = message.root_part();
    let header_bytes = root.offset_body.saturating_sub(root.offset_header) as usize;
    if header_bytes > MAX_HEADER_BYTES {
        return Some(format!(
            "header block of {header_bytes} bytes (limit {MAX_HEADER_BYTES})"
        ));
    }
    let n_received = message
        .headers_raw()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Received"))
        .count();
    if n_received > MAX_RECEIVED {
        return Some(format!(
            "{n_received} Received: headers (limit {MAX_RECEIVED}): a mail loop"
        ));
    }
    let depth = nesting(message, 0);
    if depth > MAX_NESTING {
        return Some(format!("MIME nesting deeper than {MAX_NESTING} levels"));
    }
    None
}

/// How deeply multiparts and attached messages nest, counted up to just past the limit.
fn nesting(message: &mail_parser::Message<'_>, outer: usize) -> usize {
    // Multipart children are listed by index; walk them breadth-first by level.
    let mut level = vec![0u32];
    let mut depth = outer;
    while !level.is_empty() && depth <= MAX_NESTING {
        depth += 1;
        let mut next = Vec::new();
        for id in level {
            let Some(part) = message.parts.get(id as usize) else {
                continue;
            };
            match &part.body {
                mail_parser::PartType::Multipart(children) => next.extend(children.iter().copied()),
                mail_parser::PartType::Message(nested) => {
                    depth = depth.max(nesting(nested, depth));
                }
                _ => {}
            }
        }
        level = next;
    }
    depth
}

/// Classic Mac line endings (CR only, no LF anywhere) hide every header boundary from the
/// parser: turn them into CRLF. `None` when the bytes are fine as they are.
fn crlf_from_cr(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.contains(&b'\n') || !raw.contains(&b'\r') {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for &byte in raw {
        out.push(byte);
        if byte == b'\r' {
            out.push(b'\n');
        }
    }
    Some(out)
}

/// Skips what some stores put before the headers and mail-parser would read as the end of
/// them: an mbox `From ` separator line and lines of nothing but spaces or tabs. (An empty
/// first line is left alone: it really means "no headers".)
fn skip_preamble(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    // `From sender date` separates mbox entries; `From  : x` is an obsolete-syntax header.
    if let Some(after) = rest.strip_prefix(b"From ")
        && after.iter().find(|b| **b != b' ' && **b != b'\t') != Some(&b':')
    {
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
            if let Some(address) = unquoted_local_part(email) {
                return Some(Person::new(&address, addr.name.as_deref()));
            }
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

/// Drops the display names of the From, To and Cc of an inbound message that pass for an
/// address (`agent1@example.com`, `Alice <agent1@…>`), for a marker of ours (`[agent-note]`)
/// or for mail from the desk (`Alice Agent via Example Support`, as agents' answers are
/// sent): agents and other participants are shown the address instead.
pub fn drop_misleading_names(parsed: &mut ParsedMessage) {
    let misleading = |name: &str| {
        name.contains(['@', '<', '>', '[', ']']) || name.to_lowercase().contains(" via ")
    };
    for person in parsed
        .from
        .iter_mut()
        .chain(&mut parsed.to)
        .chain(&mut parsed.cc)
    {
        if person.name.as_deref().is_some_and(misleading) {
            person.name = None;
        }
    }
}

/// `<"support+4.token"@example.com>` is `support+4.token@example.com` (RFC 5321 4.1.2): a
/// quoted local part that needs no quotes is read without them, so a reply key in quotes is
/// still one. (mail-parser reads the form without angle brackets as a name and the address
/// `@example.com`, which no mail can be sent to; it is never rebuilt from the name, which
/// would turn `agent1 <@example.com>` into an agent's address.) `None` for other addresses.
fn unquoted_local_part(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    let local = local.strip_prefix('"')?.strip_suffix('"')?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    (!local.is_empty() && !domain.is_empty() && local.chars().all(atext))
        .then(|| format!("{local}@{domain}"))
}

fn first_person(address: &Address<'_>) -> Option<Person> {
    all_people(address).into_iter().next()
}

/// The From person; an unqualified `From: me` is kept (the message has a sender, who can be
/// shown and threaded but never answered).
fn from_person(address: &Address<'_>) -> Option<Person> {
    first_person(address).or_else(|| {
        let addr = address.first()?;
        let word = addr.address.as_deref().or(addr.name.as_deref())?.trim();
        let plain = !word.is_empty()
            && !word.contains(|c: char| c.is_whitespace() || ":;<>,\"".contains(c));
        plain.then(|| Person::new(word, addr.name.as_deref()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_pass_for_an_address_or_the_desk_are_dropped() {
        for (from, name) in [
            ("Mona Q <mona@evil.test>", Some("Mona Q")),
            ("\"agent1@example.test\" <mona@evil.test>", None),
            ("=?utf-8?q?agent1=40example=2Etest?= <mona@evil.test>", None),
            (
                "\"Alice Agent <agent1@example.test>\" <mona@evil.test>",
                None,
            ),
            ("Alice Agent via Example Support <mona@evil.test>", None),
            ("\"agent agent1 [agent-note]\" <mona@evil.test>", None),
            (
                "=?utf-8?q?Mona=0D=0ABcc=3A_x?= <mona@evil.test>",
                Some("Mona Bcc: x"),
            ),
        ] {
            let raw =
                format!("From: {from}\r\nTo: support@example.test\r\nSubject: x\r\n\r\nhi\r\n");
            let mut parsed = parse(raw.as_bytes());
            drop_misleading_names(&mut parsed);
            let person = parsed.from.expect("From");
            assert_eq!(person.address, "mona@evil.test", "{from}");
            assert_eq!(person.name.as_deref(), name, "{from}");
        }
    }

    #[test]
    fn a_quoted_local_part_or_a_trailing_dot_is_read_away() {
        let parsed = parse(
            b"From: agent1 <@example.test>\r\nTo: Mona <\"Support+4.ABC\"@example.test>\r\n\
              Cc: <\"a b\"@example.test>, <\"x\"@example.test>, Support+4.ABC@Example.test.\r\n\
              Subject: x\r\n\r\nhi\r\n",
        );
        let address = |p: &Person| p.address.clone();
        // Never an address made of a name.
        assert_eq!(
            parsed.from.as_ref().map(address).as_deref(),
            Some("@example.test")
        );
        assert_eq!(
            parsed.to.iter().map(address).collect::<Vec<_>>(),
            ["support+4.abc@example.test"]
        );
        let cc: Vec<String> = parsed.cc.iter().map(address).collect();
        assert_eq!(
            cc[cc.len() - 2..],
            ["x@example.test", "support+4.abc@example.test"]
        );
    }

    #[test]
    fn authentication_results_keep_their_order_top_first() {
        let parsed = parse(
            b"Authentication-Results: relay.example.org; dmarc=fail\r\n\
              Received: from x by y\r\nAuthentication-Results: mx.example.com;\r\n\
              \tdkim=pass header.d=example.com\r\nauthentication-results: mx.example.com; none\r\n\
              From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n",
        );
        assert_eq!(
            parsed.authentication_results,
            [
                "relay.example.org; dmarc=fail",
                "mx.example.com; dkim=pass header.d=example.com",
                "mx.example.com; none"
            ]
        );
    }

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
        let files = attachments(raw, u64::MAX).files;
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "flöte.png");
        assert_eq!(files[0].content_type, "image/png");
        assert_eq!(files[0].data, [0, 1, 2]);
    }

    /// `n` empty attachments after a text part, as an attachment-count bomb sends them.
    fn many_parts(n: usize) -> Vec<u8> {
        let mut raw = b"From: a@b.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
              Content-Type: multipart/mixed; boundary=b\r\n\r\n\
              --b\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
            .to_vec();
        for i in 0..n {
            raw.extend(
                format!("--b\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\r\nxy\r\n")
                    .as_bytes(),
            );
        }
        raw.extend(b"--b--\r\n");
        raw
    }

    #[test]
    fn parts_and_attachments_beyond_the_caps_are_counted_not_read() {
        let parsed = parse(&many_parts(5_000));
        assert_eq!(parsed.text.trim(), "Hello");
        assert_eq!(parsed.attachment_names.len(), MAX_ATTACHMENTS);
        // 5,001 parts: 1,000 read (the text and 999 attachments), 4,001 cut off.
        assert_eq!(parsed.unlisted_parts, 4_001 + 999 - MAX_ATTACHMENTS);
        let carried = attachments(&many_parts(5_000), 10);
        assert_eq!(carried.files.len(), 5, "2 bytes each, 10 bytes in all");
        assert_eq!(carried.left_out.len(), MAX_ATTACHMENTS - 5);
        assert_eq!(carried.left_out[0], ("f5.bin".to_string(), 2));
        assert_eq!(carried.unlisted, parsed.unlisted_parts);
        let few = parse(&many_parts(3));
        assert_eq!((few.attachment_names.len(), few.unlisted_parts), (3, 0));
    }

    #[test]
    fn a_huge_text_is_kept_only_in_part_and_marked() {
        let mut raw = b"From: a@b.test\r\nSubject: x\r\n\r\n".to_vec();
        raw.extend("é".repeat(MAX_TEXT_BYTES).as_bytes());
        let parsed = parse(&raw);
        assert!(parsed.text.len() <= MAX_TEXT_BYTES && parsed.text.len() >= MAX_TEXT_BYTES - 1);
        assert!(parsed.defects.contains(&Defect::TextCut));
        assert!(
            !parse(b"From: a@b.test\r\n\r\nshort")
                .defects
                .contains(&Defect::TextCut)
        );
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
