//! Text analysis of one inbound message, the attachments it would carry and its HTML (cut and
//! sanitized), done before the write transaction.
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
use crate::model::TicketId;
use crate::parse::{self, Carried, ParsedMessage};
use crate::render::{self, html::Html};

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
    /// The sender's own HTML, sanitized: a verified agent's answer cut like its text (`None`
    /// when the cut leaves nothing or our marker: the text part is relayed), or a customer's
    /// whole message. At most [`MAX_HTML`] of it is read.
    pub html: Option<Html>,
    /// Keys that check out for a From that is no agent's: maybe the answer of a third party
    /// a ticket was forwarded to (the transaction checks that it was).
    pub third_party: Option<ThirdParty>,
}

/// A third party's answer, as the message tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThirdParty {
    /// The ticket the key names (before following merges).
    pub ticket: TicketId,
    /// The sender, whom the key was signed for.
    pub from: String,
    /// What they wrote above the quote.
    pub words: String,
}

/// How much of an HTML part is read: the rest of a longer one is left out.
pub const MAX_HTML: usize = 1024 * 1024;

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
    let html = match (&agent_text, customer) {
        (Some(text), _) if !text.note && !text.body.is_empty() => {
            parse::html(raw).and_then(|html| {
                let answer = render::html::answer(parse::cut_at(&html, MAX_HTML));
                if answer.is_none() {
                    tracing::info!(
                        message_id = parsed.message_id.as_deref().unwrap_or(""),
                        "agent's HTML has no answer above a quote we know; the text part is relayed"
                    );
                }
                answer
            })
        }
        (None, true) => {
            parse::html(raw).map(|html| render::html::whole(parse::cut_at(&html, MAX_HTML)))
        }
        _ => None,
    };
    // A person's answer only: a third party's out-of-office goes the ordinary way.
    let third_party = signer
        .as_ref()
        .filter(|_| class.is_customer() && !matches!(author, Author::Verified { .. }))
        .and_then(|signer| agent::third_party(parsed, &config.agents, signer))
        .map(|(ticket, from)| ThirdParty {
            ticket,
            from,
            words: agent::reply::unquoted(text),
        });
    Analysis {
        third_party,
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
        html,
    }
}
