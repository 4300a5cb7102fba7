//! Signed reply keys: `support+<ticket>.<token>@domain` and `<dg.<ticket>.<token>.<nonce>@domain>`.
//!
//! The token is the first 80 bits of HMAC-SHA256(secret, "<ticket>:<agent address>"), in lower
//! case hex so mail servers that fold local parts to lower case keep it intact. It binds a ticket
//! to one agent: a reply carrying it is that agent's answer on that ticket, and nothing else.
//! Checking it is constant-time (`verify_truncated_left`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::TicketId;

/// Hex digits in a token (80 bits).
const TOKEN_HEX: usize = 20;
const ID_PREFIX: &str = "dg.";

/// A ticket number and token read from an address or a Message-ID; not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub ticket: TicketId,
    token: Vec<u8>,
}

/// Signs reply keys for one of our addresses and checks them for any of them.
#[derive(Clone)]
pub struct Signer {
    key: Hmac<Sha256>,
    /// The key of the secret before the last rotation: what it signed still verifies.
    previous: Option<Hmac<Sha256>>,
    /// The address keys are made for: local part and domain, lower case.
    local: String,
    separator: String,
    domain: String,
    /// Every address whose keys are accepted (lower case `(local, domain)`), this one's
    /// included: a key made for sales@ is as good as one made for support@.
    accepted: Vec<(String, String)>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("local", &self.local)
            .field("separator", &self.separator)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer of `config`'s reply keys, accepting keys made for any of its addresses;
    /// `None` without a `[relay]` section.
    pub fn from_config(config: &crate::config::Config) -> Option<Signer> {
        config.agents.relay.as_ref().map(|relay| {
            let mut signer = Signer::new(
                relay.secret.expose().as_bytes(),
                &config.support.address,
                &relay.separator,
            );
            signer.previous = relay
                .previous_secret
                .as_ref()
                .map(|previous| hmac_key(previous.expose().as_bytes()));
            signer.accepted = config
                .own_addresses
                .iter()
                .filter_map(|a| a.rsplit_once('@'))
                .map(|(local, domain)| (local.to_string(), domain.to_string()))
                .collect();
            signer
        })
    }

    /// This signer making keys for `address` (one of our addresses): the Reply-To of mail
    /// about a ticket written to sales@ is `sales+<ticket>.<token>@`.
    pub fn signing_as(&self, address: &lettre::Address) -> Signer {
        let (local, domain) = (
            address.user().to_ascii_lowercase(),
            address.domain().to_ascii_lowercase(),
        );
        let mut accepted = self.accepted.clone();
        if !accepted.contains(&(local.clone(), domain.clone())) {
            accepted.push((local.clone(), domain.clone()));
        }
        Signer {
            key: self.key.clone(),
            previous: self.previous.clone(),
            local,
            separator: self.separator.clone(),
            domain,
            accepted,
        }
    }

    pub fn new(secret: &[u8], support: &lettre::Address, separator: &str) -> Signer {
        let key = hmac_key(secret);
        let (local, domain) = (
            support.user().to_ascii_lowercase(),
            support.domain().to_ascii_lowercase(),
        );
        Signer {
            key,
            previous: None,
            accepted: vec![(local.clone(), domain.clone())],
            local,
            separator: separator.to_string(),
            domain,
        }
    }

    fn mac(&self, ticket: TicketId, agent: &str) -> Hmac<Sha256> {
        mac_with(&self.key, ticket, agent)
    }

    fn token(&self, ticket: TicketId, agent: &str) -> String {
        let bytes = self.mac(ticket, agent).finalize().into_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        hex[..TOKEN_HEX].to_string()
    }

    /// `support+42.<token>@domain`: the Reply-To of a notification to `agent` about `ticket`.
    pub fn reply_address(&self, ticket: TicketId, agent: &str) -> String {
        format!(
            "{}{}{}.{}@{}",
            self.local,
            self.separator,
            ticket.0,
            self.token(ticket, agent),
            self.domain
        )
    }

    /// `dg.42.<token>.<nonce>@domain`: the Message-ID of a notification (without brackets).
    pub fn message_id(&self, ticket: TicketId, agent: &str) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{ID_PREFIX}{}.{}.{}@{}",
            ticket.0,
            self.token(ticket, agent),
            &nonce[..12],
            self.domain
        )
    }

    /// Reads `<local><sep><ticket>.<token>@<domain>` (any case) for any accepted address;
    /// `None` for other addresses.
    pub fn read_address(&self, address: &str) -> Option<Claim> {
        let address = address.to_ascii_lowercase();
        let (local, domain) = address.rsplit_once('@')?;
        self.accepted
            .iter()
            .filter(|(_, ours)| ours == domain)
            .find_map(|(ours, _)| {
                let detail = local
                    .strip_prefix(ours.as_str())?
                    .strip_prefix(self.separator.as_str())?;
                let (ticket, token) = detail.split_once('.')?;
                claim(ticket, token)
            })
    }

    /// Reads `dg.<ticket>.<token>.<nonce>@<domain>`; `None` for other Message-IDs.
    pub fn read_message_id(&self, id: &str) -> Option<Claim> {
        let id = id.to_ascii_lowercase();
        let (local, domain) = id.rsplit_once('@')?;
        if !self.accepted.iter().any(|(_, ours)| ours == domain) {
            return None;
        }
        let mut parts = local.strip_prefix(ID_PREFIX)?.split('.');
        let (ticket, token) = (parts.next()?, parts.next()?);
        claim(ticket, token)
    }

    /// Whether `claim` was signed for `agent`, with the current secret or the previous one;
    /// constant-time in the token.
    pub fn verify(&self, claim: &Claim, agent: &str) -> bool {
        std::iter::once(&self.key).chain(&self.previous).any(|key| {
            mac_with(key, claim.ticket, agent)
                .verify_truncated_left(&claim.token)
                .is_ok()
        })
    }

    /// Whether `text` holds a signed reply address or signed Message-ID of any of our
    /// addresses (by shape: keys of any secret count).
    pub fn carries_key(&self, text: &str) -> bool {
        self.scrub(text) != text
    }

    /// Replaces every signed reply address in `text` by the plain address it was made for and
    /// removes every signed Message-ID, so quoted headers that slipped through never show a
    /// customer a token.
    pub fn scrub(&self, text: &str) -> String {
        let text = self
            .accepted
            .iter()
            .fold(text.to_string(), |text, (local, domain)| {
                self.scrub_one(&text, local, domain)
            });
        let mut out = text.clone();
        for span in self.signed_ids(&text).into_iter().rev() {
            out.replace_range(span, "");
        }
        out
    }

    /// Where `text` holds signed Message-IDs, in order (byte ranges).
    fn signed_ids(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        // ASCII lower-casing keeps every byte offset.
        let lower = text.to_ascii_lowercase();
        lower
            .match_indices(ID_PREFIX)
            .filter_map(|(at, _)| {
                let end = lower[at..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "._-@".contains(c)))
                    .map_or(lower.len(), |n| at + n);
                let id = lower[at..end].trim_end_matches('.');
                self.read_message_id(id).map(|_| at..at + id.len())
            })
            .collect()
    }

    fn scrub_one(&self, text: &str, local: &str, domain: &str) -> String {
        let plain = format!("{local}@{domain}");
        let lower = text.to_ascii_lowercase();
        let needle = format!("{local}{}", self.separator);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        while let Some(found) = lower[at..].find(&needle) {
            let start = at + found;
            let end = lower[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "+-_=.@".contains(c)))
                .map_or(lower.len(), |n| start + n);
            // A full stop after the address ends the sentence, not the domain.
            let end = start + lower[start..end].trim_end_matches('.').len();
            out.push_str(&text[at..start]);
            if lower[start..end].ends_with(&format!("@{domain}"))
                && self.read_address(&lower[start..end]).is_some()
            {
                out.push_str(&plain);
            } else {
                out.push_str(&text[start..end]);
            }
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
}

fn hmac_key(secret: &[u8]) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(key) => key,
        // HMAC takes keys of any length.
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

fn mac_with(key: &Hmac<Sha256>, ticket: TicketId, agent: &str) -> Hmac<Sha256> {
    let mut mac = key.clone();
    mac.update(format!("{}:{}", ticket.0, agent.to_ascii_lowercase()).as_bytes());
    mac
}

fn claim(ticket: &str, token: &str) -> Option<Claim> {
    let ticket = ticket.parse::<i64>().ok().filter(|n| *n > 0)?;
    if token.len() != TOKEN_HEX {
        return None;
    }
    let token = (0..TOKEN_HEX)
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Claim {
        ticket: TicketId(ticket),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(
            b"0123456789abcdef0123456789abcdef",
            &"Support@Example.test".parse().unwrap(),
            "+",
        )
    }

    #[test]
    fn a_signed_address_verifies_for_its_agent_only() {
        let s = signer();
        let address = s.reply_address(TicketId(42), "agent1@example.test");
        assert!(address.starts_with("support+42."), "{address}");
        assert!(address.ends_with("@example.test"));
        let claim = s.read_address(&address.to_uppercase()).unwrap();
        assert_eq!(claim.ticket, TicketId(42));
        assert!(s.verify(&claim, "agent1@example.test"));
        assert!(s.verify(&claim, "AGENT1@example.test"));
        assert!(!s.verify(&claim, "agent2@example.test"));
    }

    #[test]
    fn another_ticket_number_or_secret_fails() {
        let s = signer();
        let address = s.reply_address(TicketId(42), "agent1@example.test");
        let forged = address.replace("+42.", "+43.");
        let claim = s.read_address(&forged).unwrap();
        assert!(!s.verify(&claim, "agent1@example.test"));
        let other = Signer::new(
            b"another secret of enough length!",
            &"support@example.test".parse().unwrap(),
            "+",
        );
        let claim = other.read_address(&address).unwrap();
        assert!(!other.verify(&claim, "agent1@example.test"));
    }

    #[test]
    fn keys_of_the_previous_secret_verify_after_a_rotation() {
        let old = signer();
        let address = old.reply_address(TicketId(42), "agent1@example.test");
        let id = old.message_id(TicketId(42), "agent1@example.test");
        let mut rotated = Signer::new(
            b"another secret of enough length!",
            &"support@example.test".parse().unwrap(),
            "+",
        );
        let claim = rotated.read_address(&address).unwrap();
        assert!(!rotated.verify(&claim, "agent1@example.test"), "not yet");
        rotated.previous = Some(hmac_key(b"0123456789abcdef0123456789abcdef"));
        assert!(rotated.verify(&claim, "agent1@example.test"));
        assert!(!rotated.verify(&claim, "agent2@example.test"));
        let claim = rotated.read_message_id(&id).unwrap();
        assert!(rotated.verify(&claim, "agent1@example.test"));
        let fresh = rotated.reply_address(TicketId(42), "agent1@example.test");
        assert_ne!(fresh, address, "new keys use the current secret");
        assert!(!old.verify(&old.read_address(&fresh).unwrap(), "agent1@example.test"));
    }

    #[test]
    fn malformed_keys_are_not_claims() {
        let s = signer();
        for address in [
            "support@example.test",
            "support+42@example.test",
            "support+42.abc@example.test",
            "support+x.0123456789abcdef0123@example.test",
            "support+42.0123456789abcdef0123@other.test",
            "supportx+42.0123456789abcdef0123@example.test",
            "support+42.0123456789abcdefg123@example.test",
        ] {
            assert_eq!(s.read_address(address), None, "{address}");
        }
    }

    #[test]
    fn the_signed_message_id_is_a_second_key() {
        let s = signer();
        let id = s.message_id(TicketId(7), "agent1@example.test");
        assert!(id.starts_with("dg.7."), "{id}");
        let claim = s.read_message_id(&id).unwrap();
        assert!(s.verify(&claim, "agent1@example.test"));
        assert_eq!(s.read_message_id("m1@customer.test"), None);
    }

    #[test]
    fn scrub_replaces_signed_addresses_only() {
        let s = signer();
        let address = s.reply_address(TicketId(42), "agent1@example.test");
        let text =
            format!("From: Support <{address}>\nwrite to support+sales@example.test or {address}.");
        assert_eq!(
            s.scrub(&text),
            "From: Support <support@example.test>\nwrite to support+sales@example.test or support@example.test."
        );
        let id = s.message_id(TicketId(42), "agent1@example.test");
        let quoted = format!("In-Reply-To: <{id}>\nsee {}.", id.to_uppercase());
        assert_eq!(s.scrub(&quoted), "In-Reply-To: <>\nsee .");
        assert!(s.carries_key(&quoted) && !s.carries_key("see dg.42.x@example.test"));
    }
}

#[cfg(test)]
mod several_addresses {
    use super::*;

    /// Keys made for any of our addresses are read and scrubbed; new keys are made for the
    /// address a ticket is on.
    #[test]
    fn keys_for_every_address_of_the_desk() {
        let mut support = Signer::new(
            b"0123456789abcdef0123456789abcdef",
            &"support@example.test".parse().unwrap(),
            "+",
        );
        let lone = support.clone();
        // As `from_config` makes it for a desk with sales@ as a [[mailbox.address]].
        support
            .accepted
            .push(("sales".to_string(), "example.test".to_string()));
        let sales = support.signing_as(&"Sales@Example.test".parse().unwrap());
        let address = sales.reply_address(TicketId(7), "agent1@example.test");
        assert!(address.starts_with("sales+7."), "{address}");
        let id = sales.message_id(TicketId(7), "agent1@example.test");
        for signer in [&support, &sales] {
            let claim = signer.read_address(&address);
            assert!(
                claim.is_some_and(|c| signer.verify(&c, "agent1@example.test")),
                "{signer:?} reads {address}"
            );
            assert!(signer.read_message_id(&id).is_some());
        }
        assert!(
            lone.read_address(&address).is_none(),
            "not a key of a desk without sales@"
        );
        let scrubbed = sales.scrub(&format!("To: <{address}> and support+7.x@example.test"));
        assert_eq!(
            scrubbed, "To: <sales@example.test> and support+7.x@example.test",
            "a malformed key is left alone"
        );
        let other = support.reply_address(TicketId(7), "agent1@example.test");
        assert_eq!(sales.scrub(&other), "support@example.test");
        assert!(support.read_address("sales+7.0000@example.test").is_none());
        assert!(support.read_address("sales+7.x@other.test").is_none());
    }
}
