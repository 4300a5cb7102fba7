//! Mail from agents: who wrote it, and whether a signed reply key proves it.
//!
//! Notifications to an agent carry a Reply-To of `support+<ticket>.<token>@domain` and a
//! Message-ID `dg.<ticket>.<token>.<nonce>@domain` ([`sign`]). A reply is the agent's answer on
//! that ticket only when a key it carries checks out for the agent its From names ([`recognise`]);
//! what the agent wrote is then read for commands and stripped of quotes ([`reply`]).

pub mod reply;
pub mod sign;

use crate::config::Agents;
use crate::model::TicketId;
use crate::parse::ParsedMessage;
use sign::{Claim, Signer};

/// Which signed key proved an agent reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The plus-address in To, Cc or Delivered-To.
    Address,
    /// Our signed notification Message-ID in In-Reply-To or References (the plus part was lost).
    MessageId,
}

/// Who wrote an inbound message, as far as agents are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    /// Not an agent's address, and no signed key: an ordinary sender.
    Other,
    /// An agent's reply on `ticket`, proved by a signed key.
    Verified {
        agent: String,
        ticket: TicketId,
        via: Via,
        /// Also addressed to the notes address: an internal note whatever the first line says.
        to_notes: bool,
    },
    /// From an agent's address but carrying no signed key (a Reply All to the customer, or
    /// mail written from scratch).
    Unsigned { agent: String },
    /// A signed key that does not check out for the sender: never relayed.
    Refused {
        /// The ticket the key names.
        ticket: TicketId,
        /// The agent to tell: the key's owner, else the agent the From names.
        tell: Option<String>,
        reason: String,
        /// The From is an agent's address (forged, or the agent's key was altered).
        from_agent: bool,
    },
}

impl Author {
    /// The agent the mail is from, when its From is an agent's address and nothing contradicts it.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Author::Verified { agent, .. } | Author::Unsigned { agent } => Some(agent),
            Author::Other | Author::Refused { .. } => None,
        }
    }
}

/// The reply keys `parsed` carries: plus-addresses among `recipients`, then our signed
/// Message-IDs in In-Reply-To and References.
fn claims(parsed: &ParsedMessage, recipients: &[&str], signer: &Signer) -> Vec<(Claim, Via)> {
    let mut claims: Vec<(Claim, Via)> = recipients
        .iter()
        .filter_map(|a| signer.read_address(a))
        .map(|c| (c, Via::Address))
        .collect();
    claims.extend(
        parsed
            .in_reply_to
            .iter()
            .chain(&parsed.references)
            .filter_map(|id| signer.read_message_id(id))
            .map(|c| (c, Via::MessageId)),
    );
    claims
}

/// To, Cc and the envelope recipients the server recorded.
fn recipients(parsed: &ParsedMessage) -> Vec<&str> {
    parsed
        .to
        .iter()
        .chain(&parsed.cc)
        .map(|p| p.address.as_str())
        .chain(parsed.delivered_to.iter().map(String::as_str))
        .collect()
}

/// A third party's answer to a ticket forwarded to them (`#forward`): a key that checks out
/// for the From address, which is no agent's. Returns the key's ticket and that address; the
/// caller checks that the ticket was forwarded there.
pub fn third_party(
    parsed: &ParsedMessage,
    agents: &Agents,
    signer: &Signer,
) -> Option<(TicketId, String)> {
    let from = parsed.from.as_ref()?.address.to_ascii_lowercase();
    if agents.by_address(&from).is_some() {
        return None;
    }
    let recipients = recipients(parsed);
    claims(parsed, &recipients, signer)
        .into_iter()
        .find(|(claim, _)| signer.verify(claim, &from))
        .map(|(claim, _)| (claim.ticket, from))
}

/// Decides who wrote `parsed`; `delivered_to` are the envelope recipients the server recorded.
pub fn recognise(parsed: &ParsedMessage, agents: &Agents, signer: Option<&Signer>) -> Author {
    let from = parsed.from.as_ref().map(|p| p.address.as_str());
    let from_agent = from.and_then(|f| agents.by_address(f));
    let Some(signer) = signer else {
        return match from_agent {
            Some(agent) => Author::Unsigned {
                agent: agent.address.clone(),
            },
            None => Author::Other,
        };
    };
    let recipients = recipients(parsed);
    let to_notes = agents
        .relay
        .as_ref()
        .and_then(|r| r.notes_address.as_deref())
        .is_some_and(|notes| recipients.contains(&notes));
    let claims = claims(parsed, &recipients, signer);
    if claims.is_empty() {
        return match from_agent {
            Some(agent) => Author::Unsigned {
                agent: agent.address.clone(),
            },
            None => Author::Other,
        };
    }
    if let Some(agent) = from_agent
        && let Some((claim, via)) = claims
            .iter()
            .find(|(c, _)| signer.verify(c, &agent.address))
    {
        return Author::Verified {
            agent: agent.address.clone(),
            ticket: claim.ticket,
            via: *via,
            to_notes,
        };
    }
    let (claim, _) = &claims[0];
    let owner = agents
        .agents
        .iter()
        .find(|a| signer.verify(claim, &a.address));
    let sender = from.unwrap_or("(no From)");
    let (tell, reason) = match (owner, from_agent) {
        (Some(owner), _) => (
            Some(owner.address.clone()),
            format!(
                "the reply key for ticket {} belongs to {}, but the mail is from {sender}",
                claim.ticket, owner.address
            ),
        ),
        (None, Some(agent)) => (
            Some(agent.address.clone()),
            format!(
                "the reply key for ticket {} is not valid for {sender} (wrong or altered token)",
                claim.ticket
            ),
        ),
        (None, None) => (
            None,
            format!(
                "the reply key for ticket {} is not valid for any agent (sender {sender})",
                claim.ticket
            ),
        ),
    };
    Author::Refused {
        ticket: claim.ticket,
        tell,
        reason,
        from_agent: from_agent.is_some(),
    }
}

/// Agents for unit tests: Alice Agent (agent1, alternate alice@home.test) and Bob (agent2),
/// with a relay and a notes address.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::config::{Agent, Agents, Relay, Secret};

    pub fn agents() -> Agents {
        Agents {
            agents: vec![
                Agent {
                    name: "Alice Agent".into(),
                    address: "agent1@example.test".into(),
                    alternates: vec!["alice@home.test".into()],
                    language: crate::language::Lang::En,
                },
                Agent {
                    name: "Bob".into(),
                    address: "agent2@example.test".into(),
                    alternates: vec![],
                    language: crate::language::Lang::En,
                },
            ],
            teams: vec![],
            relay: Some(Relay {
                secret: Secret::new("0123456789abcdef0123456789abcdef"),
                separator: "+".into(),
                notes_address: Some("notes@example.test".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Person;

    use fixtures::agents;

    fn signer() -> Signer {
        Signer::new(
            b"0123456789abcdef0123456789abcdef",
            &"support@example.test".parse().unwrap(),
            "+",
        )
    }

    fn mail(from: &str, to: &str) -> ParsedMessage {
        ParsedMessage {
            from: Some(Person::new(from, None)),
            to: vec![Person::new(to, None)],
            ..ParsedMessage::default()
        }
    }

    #[test]
    fn the_agent_answering_from_an_alternate_address_is_verified() {
        let s = signer();
        let to = s.reply_address(TicketId(9), "agent1@example.test");
        let author = recognise(&mail("Alice@Home.test", &to), &agents(), Some(&s));
        assert_eq!(
            author,
            Author::Verified {
                agent: "agent1@example.test".into(),
                ticket: TicketId(9),
                via: Via::Address,
                to_notes: false
            }
        );
    }

    #[test]
    fn the_signed_message_id_works_when_the_plus_part_is_lost() {
        let s = signer();
        let mut parsed = mail("agent1@example.test", "support@example.test");
        parsed.references = vec![
            "m1@customer.test".into(),
            s.message_id(TicketId(9), "agent1@example.test"),
        ];
        let author = recognise(&parsed, &agents(), Some(&s));
        assert!(matches!(
            author,
            Author::Verified {
                ticket: TicketId(9),
                via: Via::MessageId,
                ..
            }
        ));
    }

    #[test]
    fn a_customer_using_an_agents_key_is_refused_and_the_agent_told() {
        let s = signer();
        let to = s.reply_address(TicketId(9), "agent1@example.test");
        match recognise(&mail("customer2@example.test", &to), &agents(), Some(&s)) {
            Author::Refused {
                ticket,
                tell,
                reason,
                ..
            } => {
                assert_eq!(ticket, TicketId(9));
                assert_eq!(tell.as_deref(), Some("agent1@example.test"));
                assert!(reason.contains("customer2@example.test"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_forged_from_with_a_wrong_token_is_refused() {
        let s = signer();
        let to = s
            .reply_address(TicketId(9), "agent1@example.test")
            .replace("+9.", "+8.");
        match recognise(&mail("agent1@example.test", &to), &agents(), Some(&s)) {
            Author::Refused { tell, reason, .. } => {
                assert_eq!(tell.as_deref(), Some("agent1@example.test"));
                assert!(reason.contains("wrong or altered"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_agent_using_the_key_is_refused() {
        let s = signer();
        let to = s.reply_address(TicketId(9), "agent1@example.test");
        assert!(matches!(
            recognise(&mail("agent2@example.test", &to), &agents(), Some(&s)),
            Author::Refused { .. }
        ));
    }

    #[test]
    fn plain_mail_from_agents_and_others() {
        let s = signer();
        assert_eq!(
            recognise(
                &mail("agent2@example.test", "support@example.test"),
                &agents(),
                Some(&s)
            ),
            Author::Unsigned {
                agent: "agent2@example.test".into()
            }
        );
        assert_eq!(
            recognise(
                &mail("mona@example.net", "support@example.test"),
                &agents(),
                Some(&s)
            ),
            Author::Other
        );
    }

    #[test]
    fn mail_to_the_notes_address_is_flagged() {
        let s = signer();
        let mut parsed = mail("agent1@example.test", "notes@example.test");
        parsed.in_reply_to = vec![s.message_id(TicketId(3), "agent1@example.test")];
        assert!(matches!(
            recognise(&parsed, &agents(), Some(&s)),
            Author::Verified { to_notes: true, .. }
        ));
    }
}
