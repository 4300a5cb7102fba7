//! Keys never leave the agents.
//!
//! [`Boundary::is_inside`] names the addresses that are never ticket participants nor customer
//! recipients: our own and every sub-address of theirs (signed reply addresses included), the
//! agents' (alternates included) and the notes address. [`Boundary::leak`] is the last check before mail to a customer or a third party
//! is queued (`send::enqueue`): mail that carries a reply key in To, Cc, Reply-To, References,
//! In-Reply-To or its text is not sent.

use mail_parser::MessageParser;

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
        None
    }
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
        format!(
            "From: Support <support@example.test>\r\nTo: mona@example.net\r\nSubject: x\r\nMessage-ID: <a@example.test>\r\n{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
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
    fn keys_in_html_are_found() {
        let (boundary, signer) = boundary();
        let key = signer.reply_address(TicketId(4), "agent1@example.test");
        let raw = format!(
            "From: support@example.test\r\nTo: mona@example.net\r\nSubject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nclean\r\n--b\r\nContent-Type: text/html\r\n\r\n<a href=\"mailto:{key}\">us</a>\r\n--b--\r\n"
        );
        assert!(boundary.leak(raw.as_bytes()).is_some());
    }
}
