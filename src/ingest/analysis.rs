//! Text analysis of one inbound message, and the attachments it would carry, done before the
//! write transaction.
//!
//! **Architecture Invariant:** no text analysis runs inside `Store::write`: quote stripping,
//! survey answers and language detection happen here, on at most the text's
//! [`prefix`] (the limits of quote stripping), each in time linear in that prefix; the transaction only
//! reads the result. (Parsing, charset guessing and reply-prefix stripping are linear too and
//! also run before it.) A hostile message therefore holds the single writer for no longer than
//! an ordinary one of its size.

use crate::agent::reply::AgentText;
use crate::agent::reply::quote::prefix;
use crate::agent::{self, Author, sign::Signer};
use crate::authres;
use crate::classify::Class;
use crate::config::Config;
use crate::language::{self, Lang};
use crate::parse::{self, Carried, ParsedMessage};

/// What the write step needs to know about a message's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Who wrote it, as far as the message itself tells (its reply key, and our MTA's
    /// authentication of its From); the transaction still checks that a verified agent's
    /// ticket exists.
    pub author: Author,
    /// A verified agent's words: commands taken off, quote and signature cut.
    pub agent_text: Option<AgentText>,
    /// The satisfaction score the text gives, for customer mail (counted only when the ticket
    /// awaits a survey answer).
    pub survey_score: Option<u8>,
    /// The language of a customer's own words and how it was found.
    pub detected: Option<(Lang, String)>,
    /// The attachments mail passed on to agents or customers carries (none for automatic
    /// mail, which is never passed on), up to `policy.carry_attachments` in all.
    pub attachments: Carried,
}

/// Analyses `parsed` (read from `raw`), which `classify` found to be `class`.
pub fn analyse(raw: &[u8], parsed: &ParsedMessage, class: &Class, config: &Config) -> Analysis {
    let signer = Signer::from_config(config);
    let sender = parsed.from.as_ref().map(|p| p.address.as_str());
    let verdict = config
        .trust
        .authserv_id
        .as_deref()
        .zip(sender.and_then(|s| s.rsplit_once('@')))
        .map(|(id, (_, domain))| authres::verdict(&parsed.authentication_results, id, domain));
    let author = agent::authenticated(
        agent::recognise(parsed, &config.agents, signer.as_ref()),
        verdict.as_ref(),
    );
    let text = prefix(&parsed.text);
    let agent_text = matches!(author, Author::Verified { .. })
        .then(|| agent::reply::read(text, &config.agents, &config.own_addresses));
    let customer = class.is_customer() && author.agent().is_none();
    Analysis {
        author,
        agent_text,
        survey_score: customer
            .then(|| crate::policy::survey_score(text))
            .flatten(),
        detected: customer
            .then(|| language::detect(&parsed.subject, text))
            .flatten(),
        attachments: if class.is_customer()
            && (!parsed.attachment_names.is_empty() || parsed.unlisted_parts > 0)
        {
            parse::attachments(raw, config.policy.carry_attachments)
        } else {
            Carried::default()
        },
    }
}
