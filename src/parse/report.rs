//! What a delivery report (or a bounce that only looks like one) says about the message it
//! returns: which recipients failed, and the Message-IDs of the original, so the bounce can be
//! tied to the ticket and the outbound message it is about.
//!
//! Standard reports (RFC 3464 `multipart/report; report-type=delivery-status`) carry one
//! `message/delivery-status` part with a block of fields per recipient and the returned
//! message (or its headers) in a `message/rfc822` / `text/rfc822-headers` part. Older and
//! non-standard bounces (qmail, Exchange 2003, Lotus, many appliances) quote the returned
//! headers in plain text and name failed recipients in `X-Failed-Recipients` (Exim) or not at
//! all; for them the quoted `Message-ID:` lines are the link.

use mail_parser::{MessagePart, MimeHeaders, PartType};

use super::normalize_id;

/// What the report parts of a message say. Empty for ordinary mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The `report-type` of a top-level `multipart/report`, lower case.
    pub report_type: Option<String>,
    /// Per-recipient fields of `message/delivery-status` parts, plus `X-Failed-Recipients`.
    pub recipients: Vec<RecipientStatus>,
    /// Message-IDs of the returned original, from attached messages or headers and from
    /// `Message-ID:` lines quoted in the text; the report's own id is never among them.
    pub original_ids: Vec<String>,
    /// A `text/calendar` part with `METHOD:REPLY` (an accept/decline sent by a calendar).
    pub calendar_reply: bool,
}

/// One recipient block of a delivery-status report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientStatus {
    /// Lower-cased address from `Final-Recipient` (or `Original-Recipient`).
    pub address: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lower case); empty if absent.
    pub action: String,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code`, shortened, for the agent.
    pub diagnostic: String,
}

impl RecipientStatus {
    /// The message did not and will not reach this recipient.
    pub fn failed(&self) -> bool {
        self.action == "failed" || (self.action.is_empty() && self.status.starts_with('5'))
    }
}

/// How much of a part's text is scanned for quoted headers.
const SCAN_LIMIT: usize = 256 * 1024;
const MAX_IDS: usize = 20;

pub(super) fn extract(message: &mail_parser::Message<'_>, own_id: Option<&str>) -> Report {
    let mut report = Report {
        report_type: message
            .content_type()
            .filter(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            })
            .and_then(|ct| attribute(ct, "report-type"))
            .map(|t| t.trim().to_ascii_lowercase()),
        ..Report::default()
    };
    for part in &message.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_default();
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                report
                    .recipients
                    .extend(delivery_status(&String::from_utf8_lossy(part_bytes(part))));
            }
            ("text", "calendar") => {
                let text = String::from_utf8_lossy(part_bytes(part)).to_ascii_uppercase();
                report.calendar_reply |= text.contains("METHOD:REPLY")
                    || part
                        .content_type()
                        .and_then(|ct| attribute(ct, "method"))
                        .is_some_and(|m| m.eq_ignore_ascii_case("reply"));
            }
            _ => {}
        }
        match &part.body {
            PartType::Message(nested) => {
                if let Some(id) = nested.message_id() {
                    push_id(&mut report.original_ids, id, own_id);
                }
            }
            PartType::Text(text) => quoted_ids(text, &mut report.original_ids, own_id),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes)
                if ctype == "text" || (ctype == "message" && subtype != "delivery-status") =>
            {
                quoted_ids(
                    &String::from_utf8_lossy(bytes),
                    &mut report.original_ids,
                    own_id,
                );
            }
            _ => {}
        }
    }
    if let Some(value) = message.header_raw("X-Failed-Recipients") {
        for address in value.split(',').map(|a| a.trim().to_ascii_lowercase()) {
            if address.contains('@') && !report.recipients.iter().any(|r| r.address == address) {
                report.recipients.push(RecipientStatus {
                    address,
                    action: "failed".into(),
                    ..RecipientStatus::default()
                });
            }
        }
    }
    report
}

fn attribute<'a>(ct: &'a mail_parser::ContentType<'_>, name: &str) -> Option<&'a str> {
    ct.attributes()?
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_ref())
}

fn part_bytes<'a>(part: &'a MessagePart<'_>) -> &'a [u8] {
    let bytes = part.contents();
    &bytes[..bytes.len().min(SCAN_LIMIT)]
}

/// RFC 3464 fields: a per-message block, then a block per recipient. Some senders leave out
/// the blank lines, so a new `Final-Recipient` (or `Original-Recipient` after a complete
/// block) also starts a block.
fn delivery_status(text: &str) -> Vec<RecipientStatus> {
    let mut out: Vec<RecipientStatus> = Vec::new();
    let mut current: Option<RecipientStatus> = None;
    let mut has_final = false;
    for line in unfold(text) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            name @ ("final-recipient" | "original-recipient") => {
                let address = value
                    .split_once(';')
                    .map_or(value, |(_, a)| a)
                    .trim()
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_ascii_lowercase();
                let is_final = name == "final-recipient";
                // A block is complete once it has its final recipient, or an action.
                let starts_block = match &current {
                    None => true,
                    Some(c) => (is_final && has_final) || !c.action.is_empty(),
                };
                if starts_block {
                    out.extend(current.take());
                    has_final = false;
                }
                let c = current.get_or_insert_with(RecipientStatus::default);
                if is_final || c.address.is_empty() {
                    c.address = address;
                }
                has_final |= is_final;
            }
            "action" => {
                if let Some(c) = current.as_mut() {
                    c.action = value.to_ascii_lowercase();
                }
            }
            "status" => {
                if let Some(c) = current.as_mut() {
                    c.status = value.chars().take(16).collect();
                }
            }
            "diagnostic-code" => {
                if let Some(c) = current.as_mut() {
                    let text = value.split_once(';').map_or(value, |(_, d)| d).trim();
                    c.diagnostic = crate::model::clean_header_text(text)
                        .chars()
                        .take(300)
                        .collect();
                }
            }
            _ => {}
        }
    }
    out.extend(current);
    out.retain(|r| r.address.contains('@'));
    out
}

/// Header-style lines with continuation lines joined.
fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t'])
            && let Some(last) = lines.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
        } else {
            lines.push(line.trim_end().to_string());
        }
    }
    lines
}

/// `Message-ID: <x@y>` lines quoted in a bounce's text (or in returned headers), possibly
/// indented or prefixed with `>`.
fn quoted_ids(text: &str, ids: &mut Vec<String>, own_id: Option<&str>) {
    let text = &text[..floor_char_boundary(text, SCAN_LIMIT)];
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start_matches(|c: char| c == '>' || c.is_whitespace());
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let folded;
        let mut value = value.trim();
        if value.is_empty() {
            // `Message-ID:` folded onto the next line.
            folded = lines.next().unwrap_or("").trim().to_string();
            value = &folded;
        }
        let id = match (value.find('<'), value.find('>')) {
            (Some(start), Some(end)) if start < end => &value[start + 1..end],
            _ => value.split_whitespace().next().unwrap_or(""),
        };
        push_id(ids, id, own_id);
    }
}

fn push_id(ids: &mut Vec<String>, id: &str, own_id: Option<&str>) {
    let id = normalize_id(id);
    if ids.len() < MAX_IDS
        && id.contains('@')
        && !id.contains(char::is_whitespace)
        && Some(id.as_str()) != own_id
        && !ids.contains(&id)
    {
        ids.push(id);
    }
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_status_blocks() {
        let found = delivery_status(
            "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; Mona@Example.NET\nAction: failed\n\
             Status: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no such\n  user here\n\n\
             Original-Recipient: rfc822;b@x\nFinal-Recipient: rfc822;b@x\nAction: delayed\nStatus: 4.4.1\n\
             Final-Recipient: rfc822;c@x\nAction: failed\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].address, "mona@example.net");
        assert!(found[0].failed());
        assert_eq!(found[0].diagnostic, "550 5.1.1 no such user here");
        assert_eq!(found[1].address, "b@x");
        assert!(!found[1].failed());
        assert_eq!(found[2].address, "c@x");
        assert!(found[2].failed());
    }

    #[test]
    fn quoted_message_ids() {
        let mut ids = Vec::new();
        quoted_ids(
            "--- returned headers ---\n> Message-ID: <ack1@support.test>\n   message-id:\n <two@x>\nMessage-ID: <self@x>\n",
            &mut ids,
            Some("self@x"),
        );
        assert_eq!(ids, vec!["ack1@support.test", "two@x"]);
    }
}
