//! Keys never leave the agents.
//!
//! [`Boundary::is_inside`] names the addresses that are never ticket participants nor customer
//! recipients: our own and every sub-address of theirs (signed reply addresses included), the
//! agents' (alternates included) and the notes address. [`Boundary::leak`] is the last check before mail to a customer or a third party
//! is queued (`send::enqueue`): mail that carries a reply key in To, Cc, Reply-To, References,
//! In-Reply-To or its text is not sent.

use mail_parser::{MessageParser, MimeHeaders};

use super::reply::is_address_or_sub_address;
use super::sign::Signer;
use crate::config::Config;
use crate::parse::parse;

/// What is inside the desk, and the shapes of its keys.
#[derive(Debug, Clone)]
pub struct Boundary {
    /// Reads keys of every one of our addresses (their shape; no secret is checked).
    signer: Option<Signer>,
    /// Lower-case addresses that are inside.
    inside: Vec<String>,
    /// Our own addresses (lower case): they and every sub-address of theirs are inside.
    own: Vec<String>,
    /// The recipient delimiter of sub-addresses (`+`).
    separator: String,
}

impl Boundary {
    pub fn from_config(config: &Config) -> Boundary {
        let agents = &config.agents;
        let inside = agents
            .agents
            .iter()
            .flat_map(|a| std::iter::once(&a.address).chain(&a.alternates))
            .cloned()
            .chain(agents.relay.iter().flat_map(|r| r.notes_address.clone()))
            .map(|a| a.to_ascii_lowercase())
            .collect();
        let separator = agents.relay.as_ref().map_or("+", |r| r.separator.as_str());
        Boundary::new(
            Signer::from_config(config),
            config.own_addresses.clone(),
            separator,
            inside,
        )
    }

    /// `own`: our addresses (lower case), whose sub-addresses after `separator` are ours too;
    /// `inside`: further addresses that are inside (agents, the notes address).
    pub fn new(
        signer: Option<Signer>,
        own: Vec<String>,
        separator: &str,
        inside: Vec<String>,
    ) -> Boundary {
        Boundary {
            signer,
            inside,
            own,
            separator: separator.to_string(),
        }
    }

    /// Whether `address` (any case) is ours or a sub-address of ours (reply keys included), or
    /// an agent's.
    pub fn is_inside(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        self.inside.contains(&address)
            || self
                .own
                .iter()
                .any(|own| is_address_or_sub_address(&address, own, &self.separator))
    }

    /// The first address in `text` that only people inside may see: an agent's (alternates
    /// included), the notes address, or a signed reply address, in any case, quoted or
    /// percent-encoded. Our plain addresses are public: an answer may name them.
    pub fn inside_address_in(&self, text: &str) -> Option<String> {
        let text = percent_decoded(text);
        addresses_in(&text).find(|address| {
            self.inside.contains(address)
                || self
                    .signer
                    .as_ref()
                    .is_some_and(|s| s.read_address(address).is_some())
        })
    }

    /// Where the finished message `raw` carries a reply key; `None` when it carries none.
    pub fn leak(&self, raw: &[u8]) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let parsed = parse(raw);
        let people = [
            ("To", &parsed.to),
            ("Cc", &parsed.cc),
            ("Reply-To", &parsed.reply_to.iter().cloned().collect()),
        ];
        for (header, list) in people {
            if let Some(p) = list
                .iter()
                .find(|p| signer.read_address(&p.address).is_some())
            {
                return Some(format!("{header} names the reply address {}", p.address));
            }
        }
        if signer.carries_key(&parsed.subject) {
            return Some("the Subject carries a reply key".to_string());
        }
        let ids = [
            ("In-Reply-To", &parsed.in_reply_to),
            ("References", &parsed.references),
        ];
        for (header, list) in ids {
            if let Some(id) = list.iter().find(|id| signer.read_message_id(id).is_some()) {
                return Some(format!("{header} names the signed Message-ID {id}"));
            }
        }
        let message = MessageParser::default().parse(raw)?;
        let texts = (0..)
            .map_while(|i| message.body_text(i))
            .chain((0..).map_while(|i| message.body_html(i)));
        for text in texts {
            if signer.carries_key(&text) {
                return Some("the text carries a reply key".to_string());
            }
        }
        attachment_with_key(&message, signer, 0)
    }
}

/// How deep attached messages are opened (a notification attached to an answer attached to
/// a forward…).
const MAX_NESTING: usize = 3;

/// The first attachment of `message` that carries a reply key: decoded, and an attached
/// message (an agent answering with the notification attached) read headers and text.
fn attachment_with_key(
    message: &mail_parser::Message<'_>,
    signer: &Signer,
    depth: usize,
) -> Option<String> {
    for (i, part) in message.attachments().enumerate() {
        let name = part
            .attachment_name()
            .map_or_else(|| format!("attachment {}", i + 1), String::from);
        let found = match part.message() {
            Some(inner) if depth < MAX_NESTING => {
                signer.carries_key(&String::from_utf8_lossy(inner.raw_message()))
                    || (0..)
                        .map_while(|i| inner.body_text(i))
                        .any(|text| signer.carries_key(&text))
                    || attachment_with_key(inner, signer, depth + 1).is_some()
            }
            _ => signer.carries_key(&String::from_utf8_lossy(part.contents())),
        };
        if found {
            return Some(format!("the attachment {name} carries a reply key"));
        }
    }
    None
}

/// Every `local@domain` in `text`, lower case, without quotes around the local part.
fn addresses_in(text: &str) -> impl Iterator<Item = String> + '_ {
    let local_char = |c: char| c.is_alphanumeric() || "._%+-'\"!#$&*/=?^`{|}~".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    text.match_indices('@').filter_map(move |(at, _)| {
        let local_len: usize = text[..at]
            .chars()
            .rev()
            .take_while(|&c| local_char(c))
            .map(char::len_utf8)
            .sum();
        let domain_len: usize = text[at + 1..]
            .chars()
            .take_while(|&c| domain_char(c))
            .map(char::len_utf8)
            .sum();
        let local = text[at - local_len..at].trim_matches(|c| c == '"' || c == '\'' || c == '.');
        let domain = text[at + 1..at + 1 + domain_len].trim_matches(|c| c == '.' || c == '-');
        (!local.is_empty() && !domain.is_empty())
            .then(|| format!("{local}@{domain}").to_lowercase())
    })
}

/// `text` with `%XX` escapes of ASCII decoded (`agent1%40example.com`, `support%2B4.…`).
fn percent_decoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escaped = rest
            .get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(u8::is_ascii);
        match escaped {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TicketId;

    fn boundary() -> (Boundary, Signer) {
        let signer = Signer::new(
            b"0123456789abcdef0123456789abcdef",
            &"support@example.test".parse().unwrap(),
            "+",
        );
        let boundary = Boundary::new(
            Some(signer.clone()),
            vec!["support@example.test".to_string()],
            "+",
            vec![
                "agent1@example.test".to_string(),
                "alice@home.test".to_string(),
            ],
        );
        (boundary, signer)
    }

    fn mail(headers: &str, body: &str) -> Vec<u8> {
        let subject = if headers.contains("Subject:") {
            ""
        } else {
            "Subject: x\r\n"
        };
        format!(
            "From: Support <support@example.test>\r\nTo: mona@example.net\r\n{subject}Message-ID: <a@example.test>\r\n{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn inside_addresses() {
        let (boundary, signer) = boundary();
        let key = signer.reply_address(TicketId(4), "agent1@example.test");
        for address in [
            "support@example.test",
            "Agent1@Example.test",
            "alice@home.test",
            key.as_str(),
            &key.to_uppercase(),
            "support+sales@example.test",
        ] {
            assert!(boundary.is_inside(address), "{address}");
        }
        for address in ["mona@example.net", "supportive@example.test"] {
            assert!(!boundary.is_inside(address), "{address}");
        }
    }

    #[test]
    fn keys_anywhere_a_customer_would_see_them_are_found() {
        let (boundary, signer) = boundary();
        let key = signer.reply_address(TicketId(4), "agent1@example.test");
        let id = signer.message_id(TicketId(4), "agent1@example.test");
        assert_eq!(boundary.leak(&mail("", "Hello.")), None);
        for (headers, body, expected) in [
            (format!("Cc: Support <{key}>\r\n"), "Hi", "Cc names"),
            (format!("Reply-To: <{key}>\r\n"), "Hi", "Reply-To names"),
            (
                format!("In-Reply-To: <{id}>\r\n"),
                "Hi",
                "In-Reply-To names",
            ),
            (
                format!("References: <m1@customer.test> <{id}>\r\n"),
                "Hi",
                "References names",
            ),
            (format!("Subject: Re: x {key}\r\n"), "Hi", "the Subject"),
            (String::new(), &*format!("write to {key}."), "the text"),
            (String::new(), &*format!("ref <{id}>"), "the text"),
            (
                String::new(),
                &*format!("ref {}.", id.to_uppercase()),
                "the text",
            ),
        ] {
            let raw = mail(&headers, body);
            let found = boundary.leak(&raw);
            assert!(
                found.as_deref().is_some_and(|f| f.contains(expected)),
                "{headers} {body}: {found:?}"
            );
        }
    }

    #[test]
    fn inside_addresses_in_an_answer_are_found_however_written() {
        let (boundary, signer) = boundary();
        let key = signer.reply_address(TicketId(4), "agent1@example.test");
        for (text, found) in [
            (
                "Van: Alice Agent <agent1@example.test>",
                "agent1@example.test",
            ),
            ("write to AGENT1@Example.TEST.", "agent1@example.test"),
            ("mailto:agent1%40example.test", "agent1@example.test"),
            ("(alice@home.test)", "alice@home.test"),
            (&*format!("\"{key}\""), key.as_str()),
            (&*format!("<{}>", key.to_uppercase()), key.as_str()),
            (&*key.replace('+', "%2B"), key.as_str()),
        ] {
            assert_eq!(
                boundary.inside_address_in(text).as_deref(),
                Some(found),
                "{text}"
            );
        }
        for text in [
            "Write to support@example.test or support+sales@example.test any time.",
            "mona@example.net, 100% sure, a@ b, @home",
            "",
        ] {
            assert_eq!(boundary.inside_address_in(text), None, "{text}");
        }
    }

    #[test]
    fn keys_in_attachments_are_found_attached_messages_included() {
        let (boundary, signer) = boundary();
        let key = signer.reply_address(TicketId(4), "agent1@example.test");
        let notification = format!(
            "From: support@example.test\r\nReply-To: <{key}>\r\nSubject: Ticket [#4]\r\n\r\nInternal.\r\n"
        );
        let encoded = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("write to {key}"))
        };
        let with = |part: &str| {
            format!(
                "From: support@example.test\r\nTo: mona@example.net\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nclean\r\n--b\r\n{part}\r\n--b--\r\n"
            )
        };
        for (part, name) in [
            (
                format!(
                    "Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=n.eml\r\n\r\n{notification}"
                ),
                "n.eml",
            ),
            (
                format!(
                    "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=k.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}"
                ),
                "k.txt",
            ),
        ] {
            let found = boundary.leak(with(&part).as_bytes());
            assert!(
                found.as_deref().is_some_and(|f| f.contains(name)),
                "{name}: {found:?}"
            );
        }
        let clean = "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nfine";
        assert_eq!(boundary.leak(with(clean).as_bytes()), None);
    }

    #[test]
    fn keys_in_html_are_found() {
        let (boundary, signer) = boundary();
        let key = signer.reply_address(TicketId(4), "agent1@example.test");
        let raw = format!(
            "From: support@example.test\r\nTo: mona@example.net\r\nSubject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nclean\r\n--b\r\nContent-Type: text/html\r\n\r\n<a href=\"mailto:{key}\">us</a>\r\n--b--\r\n"
        );
        assert!(boundary.leak(raw.as_bytes()).is_some());
    }
}
