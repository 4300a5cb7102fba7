//! Mail from agents: who wrote it, and whether a signed reply key proves it.
//!
//! Notifications to an agent carry a Reply-To of `support+<ticket>.<token>@domain` and a
//! Message-ID `dg.<ticket>.<token>.<nonce>@domain` ([`sign`]). A reply is the agent's answer on
//! that ticket only when a key it carries checks out for the agent its From names ([`recognise`]);
//! what the agent wrote is then read for commands and stripped of quotes ([`reply`]).

pub mod boundary;
pub mod reply;
pub mod sign;

use crate::authres::Verdict;
use crate::config::{Agent, Agents};
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
    /// An agent's mail on `ticket`, proved by a signed key bound to the agent its From names
    /// (and, where `[trust] authserv_id` is set, by our MTA's authentication of that From).
    Verified {
        agent: String,
        ticket: TicketId,
        via: Via,
        /// Also addressed to the notes address: an internal note whatever the first line says.
        to_notes: bool,
    },
    /// From an agent's address but carrying no signed key: proves nothing, acts as nobody.
    Unsigned { agent: String },
    /// A signed key that does not check out for the sender: kept for agents only, never a
    /// threading key, its sender and recipients added to nothing.
    Refused {
        /// The ticket the key names.
        ticket: TicketId,
        /// The agent to tell: the key's owner, else the agent the From names.
        tell: Option<String>,
        reason: String,
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

/// Decides who wrote `parsed` from the keys it carries.
///
/// Keys in the recipients (To, Cc, Delivered-To) come first: when there is one, every one
/// must have been signed for the agent the From names, and a failing one is final (no
/// Message-ID rescues it). Without one, a signed Message-ID in In-Reply-To or References
/// signed for that agent proves the mail (their client dropped the plus part). Any key that
/// does not fit refuses the mail.
pub fn recognise(parsed: &ParsedMessage, agents: &Agents, signer: Option<&Signer>) -> Author {
    let from = parsed.from.as_ref().map(|p| p.address.as_str());
    let from_agent = from.and_then(|f| agents.by_address(f));
    let unsigned = || match from_agent {
        Some(agent) => Author::Unsigned {
            agent: agent.address.clone(),
        },
        None => Author::Other,
    };
    let Some(signer) = signer else {
        return unsigned();
    };
    let recipients = recipients(parsed);
    let to_notes = agents
        .relay
        .as_ref()
        .and_then(|r| r.notes_address.as_deref())
        .is_some_and(|notes| recipients.contains(&notes));
    // Our signed IDs name our own notifications: mail arriving under one is forged (or a
    // customer making every answer to their ticket carry a key-shaped In-Reply-To).
    if let Some(claim) = own_id_claim(parsed, signer) {
        let mut refused = refuse(&claim, agents, signer, from, from_agent);
        if let Author::Refused { reason, .. } = &mut refused {
            *reason = format!("its own Message-ID has the shape of a reply key; {reason}");
        }
        return refused;
    }
    let (claims, via) = keys(parsed, &recipients, signer);
    if claims.is_empty() {
        return unsigned();
    }
    let fits = |claim: &&Claim| from_agent.is_some_and(|a| signer.verify(claim, &a.address));
    let proof = proof(&claims, via, fits);
    if let (Some(agent), Some(claim)) = (from_agent, proof) {
        return Author::Verified {
            agent: agent.address.clone(),
            ticket: claim.ticket,
            via,
            to_notes,
        };
    }
    let claim = claims.iter().find(|c| !fits(c)).unwrap_or(&claims[0]);
    refuse(claim, agents, signer, from, from_agent)
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

/// The keys `parsed` carries: those among the `recipients` if any, else the signed
/// Message-IDs in In-Reply-To and References.
fn keys(parsed: &ParsedMessage, recipients: &[&str], signer: &Signer) -> (Vec<Claim>, Via) {
    let by_address: Vec<Claim> = recipients
        .iter()
        .filter_map(|a| signer.read_address(a))
        .collect();
    if !by_address.is_empty() {
        return (by_address, Via::Address);
    }
    let by_id = parsed
        .in_reply_to
        .iter()
        .chain(&parsed.references)
        .filter_map(|id| signer.read_message_id(id))
        .collect();
    (by_id, Via::MessageId)
}

/// A key in the mail's own Message-ID: only our notifications have one.
fn own_id_claim(parsed: &ParsedMessage, signer: &Signer) -> Option<Claim> {
    parsed
        .message_id
        .as_deref()
        .and_then(|id| signer.read_message_id(id))
}

/// The key that proves the mail: every address key fits, or one Message-ID key does.
fn proof(claims: &[Claim], via: Via, fits: impl Fn(&&Claim) -> bool) -> Option<&Claim> {
    match via {
        Via::Address => claims.iter().all(|c| fits(&c)).then(|| &claims[0]),
        // A thread may hold other agents' notifications too: the agent's own one proves it.
        Via::MessageId => claims.iter().find(fits),
    }
}

/// A third party's answer to a ticket forwarded to them (`#forward`): keys that check out for
/// the From address, which is no agent's, by the rules [`recognise`] applies to agents.
/// Returns the key's ticket and that address; the caller checks that the ticket was
/// forwarded there.
pub fn third_party(
    parsed: &ParsedMessage,
    agents: &Agents,
    signer: &Signer,
) -> Option<(TicketId, String)> {
    let from = parsed.from.as_ref()?.address.to_ascii_lowercase();
    if agents.by_address(&from).is_some() || own_id_claim(parsed, signer).is_some() {
        return None;
    }
    let recipients = recipients(parsed);
    let (claims, via) = keys(parsed, &recipients, signer);
    let claim = proof(&claims, via, |claim| signer.verify(claim, &from))?;
    Some((claim.ticket, from))
}

/// Mail from an agent's address acts as the agent only when our MTA authenticated its From
/// (`verdict`, where `[trust] authserv_id` is set): a verified key without it is refused.
pub fn authenticated(author: Author, verdict: Option<&Verdict>) -> Author {
    match (author, verdict) {
        (Author::Verified { agent, ticket, .. }, Some(Verdict::Fail(why))) => Author::Refused {
            ticket,
            tell: Some(agent),
            reason: format!("its From is not authenticated: {why}"),
        },
        (author, _) => author,
    }
}

/// A key `claim` that does not fit the sender `from`: who to tell, and why.
fn refuse(
    claim: &Claim,
    agents: &Agents,
    signer: &Signer,
    from: Option<&str>,
    from_agent: Option<&Agent>,
) -> Author {
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
                previous_secret: None,
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

    /// The reply key in the recipients.
    #[derive(Debug, Clone, Copy)]
    enum Address {
        /// Signed for agent1 on ticket 9.
        Valid,
        /// agent1's key with its ticket number altered.
        Invalid,
        /// Signed for agent2 on ticket 9.
        OtherAgents,
        Absent,
    }

    /// The signed Message-ID in References.
    #[derive(Debug, Clone, Copy)]
    enum MessageId {
        Valid,
        Invalid,
        Absent,
    }

    /// Who the From names.
    #[derive(Debug, Clone, Copy)]
    enum Sender {
        Agent,
        /// agent1's alternate address.
        Alternate,
        Customer,
        Nobody,
    }

    /// What `recognise` must say, in short.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Verified(Via),
        Unsigned,
        Other,
        /// Refused; the agent told, if any.
        Refused(Option<&'static str>),
    }

    fn check(address: Address, id: MessageId, from: Sender, expected: Expect) {
        let s = signer();
        let (alice, bob) = ("agent1@example.test", "agent2@example.test");
        let mut parsed = ParsedMessage {
            from: match from {
                Sender::Agent => Some(Person::new(alice, Some("Alice"))),
                Sender::Alternate => Some(Person::new("alice@home.test", None)),
                Sender::Customer => Some(Person::new("mona@example.net", None)),
                Sender::Nobody => None,
            },
            to: vec![Person::new("support@example.test", None)],
            references: vec!["m1@customer.test".into()],
            ..ParsedMessage::default()
        };
        let key = match address {
            Address::Valid => Some(s.reply_address(TicketId(9), alice)),
            Address::Invalid => Some(s.reply_address(TicketId(9), alice).replace("+9.", "+8.")),
            Address::OtherAgents => Some(s.reply_address(TicketId(9), bob)),
            Address::Absent => None,
        };
        parsed.cc.extend(key.map(|k| Person::new(&k, None)));
        let signed_id = match id {
            MessageId::Valid => Some(s.message_id(TicketId(9), alice)),
            MessageId::Invalid => Some(s.message_id(TicketId(9), alice).replace("dg.9.", "dg.8.")),
            MessageId::Absent => None,
        };
        parsed.references.extend(signed_id);
        let got = match recognise(&parsed, &agents(), Some(&s)) {
            Author::Verified {
                agent, ticket, via, ..
            } => {
                assert_eq!((agent.as_str(), ticket), (alice, TicketId(9)));
                Expect::Verified(via)
            }
            Author::Unsigned { agent } => {
                assert_eq!(agent, alice);
                Expect::Unsigned
            }
            Author::Other => Expect::Other,
            Author::Refused { tell, reason, .. } => {
                assert!(reason.contains("reply key for ticket"), "{reason}");
                Expect::Refused(match tell.as_deref() {
                    Some(a) if a == alice => Some(alice),
                    Some(b) if b == bob => Some(bob),
                    Some(other) => panic!("tells {other}"),
                    None => None,
                })
            }
        };
        assert_eq!(
            got, expected,
            "address {address:?}, Message-ID {id:?}, From {from:?}"
        );
    }

    /// Every combination of claims: a key in the recipients decides and a failing one is
    /// final; a Message-ID proves only without one; a key never fits a customer.
    #[test]
    fn every_combination_of_claims() {
        use Address as A;
        use Expect::*;
        use MessageId as M;
        use Sender as F;
        let (alice, bob) = (Some("agent1@example.test"), Some("agent2@example.test"));
        for from in [F::Agent, F::Alternate] {
            check(A::Valid, M::Valid, from, Verified(Via::Address));
            check(A::Valid, M::Invalid, from, Verified(Via::Address));
            check(A::Valid, M::Absent, from, Verified(Via::Address));
            check(A::Invalid, M::Valid, from, Refused(alice));
            check(A::Invalid, M::Invalid, from, Refused(alice));
            check(A::Invalid, M::Absent, from, Refused(alice));
            check(A::OtherAgents, M::Valid, from, Refused(bob));
            check(A::OtherAgents, M::Invalid, from, Refused(bob));
            check(A::OtherAgents, M::Absent, from, Refused(bob));
            check(A::Absent, M::Valid, from, Verified(Via::MessageId));
            check(A::Absent, M::Invalid, from, Refused(alice));
            check(A::Absent, M::Absent, from, Unsigned);
        }
        for from in [F::Customer, F::Nobody] {
            check(A::Valid, M::Valid, from, Refused(alice));
            check(A::Valid, M::Invalid, from, Refused(alice));
            check(A::Valid, M::Absent, from, Refused(alice));
            check(A::Invalid, M::Valid, from, Refused(None));
            check(A::Invalid, M::Invalid, from, Refused(None));
            check(A::Invalid, M::Absent, from, Refused(None));
            check(A::OtherAgents, M::Valid, from, Refused(bob));
            check(A::OtherAgents, M::Invalid, from, Refused(bob));
            check(A::OtherAgents, M::Absent, from, Refused(bob));
            check(A::Absent, M::Valid, from, Refused(alice));
            check(A::Absent, M::Invalid, from, Refused(None));
            check(A::Absent, M::Absent, from, Other);
        }
    }

    #[test]
    fn a_message_id_shaped_like_a_key_is_refused_whatever_else_it_carries() {
        let s = signer();
        let alice = "agent1@example.test";
        for (from, key) in [
            ("mona@example.net", None),
            (alice, Some(s.reply_address(TicketId(9), alice))),
        ] {
            let mut parsed = mail(from, key.as_deref().unwrap_or("support@example.test"));
            parsed.message_id = Some(s.message_id(TicketId(9), "agent2@example.test"));
            match recognise(&parsed, &agents(), Some(&s)) {
                Author::Refused { ticket, reason, .. } => {
                    assert_eq!(ticket, TicketId(9));
                    assert!(reason.contains("own Message-ID"), "{reason}");
                }
                other => panic!("{from}: {other:?}"),
            }
        }
    }

    #[test]
    fn one_failing_address_among_good_ones_is_final() {
        let s = signer();
        let mut parsed = mail(
            "agent1@example.test",
            &s.reply_address(TicketId(9), "agent1@example.test"),
        );
        parsed.delivered_to = vec![s.reply_address(TicketId(9), "agent2@example.test")];
        assert!(matches!(
            recognise(&parsed, &agents(), Some(&s)),
            Author::Refused { .. }
        ));
    }

    #[test]
    fn without_authentication_a_verified_key_is_refused() {
        let s = signer();
        let parsed = mail(
            "agent1@example.test",
            &s.reply_address(TicketId(9), "agent1@example.test"),
        );
        let verified = recognise(&parsed, &agents(), Some(&s));
        assert_eq!(authenticated(verified.clone(), None), verified);
        let pass = Verdict::Pass(crate::authres::Method::Dkim);
        assert_eq!(authenticated(verified.clone(), Some(&pass)), verified);
        let fail = Verdict::Fail("dmarc=fail".into());
        match authenticated(verified, Some(&fail)) {
            Author::Refused { tell, reason, .. } => {
                assert_eq!(tell.as_deref(), Some("agent1@example.test"));
                assert!(reason.contains("not authenticated: dmarc=fail"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let unsigned = Author::Unsigned {
            agent: "agent1@example.test".into(),
        };
        assert_eq!(authenticated(unsigned.clone(), Some(&fail)), unsigned);
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
