//! Mail to and for agents: notifications, relayed answers, internal notes, notices.

use jiff::Timestamp;
use lettre::message::Mailbox;

use super::html::Html;
use super::{
    Envelope, Outgoing, RenderError, RenderedParts, ReplyTo, base_subject, build, format_due,
    format_duration, mailbox, new_message_id, support_mailbox,
};
use crate::agent::sign::Signer;
use crate::config::{Agent, Support};
use crate::language::Lang;
use crate::model::{Person, TicketState};
use crate::parse::{Attachment, Carried};
use crate::policy::AgentNotice;
use crate::store::{Answered, EarlierTicket};
use crate::templates::Templates;
use crate::templates::kinds::MailKind;
use crate::templates::marker;
use crate::thread::format_tag;

/// The language mail of `kind` to people inside is written in: the agent's own (`[[agent]]
/// language`), else the desk's (`support.language`; e.g. an escalation address that is no
/// agent), or English when `kind` has no templates in it. Every agent-facing kind goes
/// through here, so its dates and figures are in the language of its words.
pub(super) fn reader_language(
    support: &Support,
    templates: &Templates,
    kind: MailKind,
    agent: Option<&Agent>,
) -> Lang {
    templates.language_for(kind, agent.map_or(support.language, |a| a.language))
}

/// A customer message an agent is told about.
#[derive(Debug, Clone, Copy)]
pub struct NotificationFor<'a> {
    pub ticket: &'a TicketState,
    pub new_ticket: bool,
    pub customer: &'a Person,
    pub subject: &'a str,
    pub text: &'a str,
    /// The customer message's Message-ID: notifications thread under it in the agent's client.
    pub message_id: Option<&'a str>,
    pub waiting_since: Timestamp,
    pub due_at: Option<Timestamp>,
    pub history: &'a [EarlierTicket],
    /// The customer's attachments: those carried, and those only listed.
    pub attachments: &'a Carried,
    /// People the message copied who were not added to the ticket (too many at once).
    pub not_added: &'a [String],
    /// The customer's own HTML, sanitized: shown to agents as the customer saw it.
    pub html: Option<&'a Html>,
}

/// Addresses a notification names of those not added (the rest are counted).
const NOT_ADDED_SHOWN: usize = 5;

/// Tells `agent` about a customer message; Reply-To and Message-ID carry the agent's key.
pub fn notification(
    support: &Support,
    templates: &Templates,
    signer: &Signer,
    agent: &Agent,
    n: NotificationFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let lang = reader_language(support, templates, MailKind::Notification, Some(agent));
    let tag = format_tag(&support.tag_prefix, n.ticket.id);
    // Each agent gets the analysed part of the text at most: a huge body is stored once, not
    // copied into every agent's notification.
    let message = crate::agent::reply::quote::prefix(n.text);
    let history: Vec<minijinja::Value> = n
        .history
        .iter()
        .map(|t| {
            minijinja::context! {
                tag => format_tag(&support.tag_prefix, t.id),
                subject => t.subject.clone(),
                status => t.status.clone(),
                opened => t.created_at.to_zoned(support.timezone.clone()).strftime("%Y-%m-%d").to_string(),
            }
        })
        .collect();
    let context = minijinja::context! {
        ticket => n.ticket.id.0,
        tag => tag.clone(),
        marker => marker(lang),
        new_ticket => n.new_ticket,
        subject => base_subject(n.subject, &tag),
        customer_name => n.customer.name.clone().unwrap_or_default(),
        customer_address => n.customer.address.clone(),
        status => n.ticket.status.as_str(),
        priority => n.ticket.priority.as_str(),
        assigned => n.ticket.assigned.clone().unwrap_or_default(),
        waiting => format_duration(now.duration_since(n.waiting_since), lang),
        due => n.due_at.map(|d| format_due(d, &support.timezone, lang)).unwrap_or_default(),
        language => n.ticket.language.map_or("", |l| l.name_in(lang)),
        message => message.trim_end(),
        message_cut => message.len() < n.text.len(),
        message_html => n.html.map_or("", |h| h.html.as_str()),
        recipients => n.ticket.customers.iter().map(|p| match &p.name {
            Some(name) => format!("{name} <{}>", p.address),
            None => p.address.clone(),
        }).collect::<Vec<_>>(),
        attachments => n.attachments.files.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        not_attached => n
            .attachments
            .left_out
            .iter()
            .map(|(name, size)| format!("{name} ({})", format_size(*size)))
            .collect::<Vec<_>>(),
        unlisted => n.attachments.unlisted,
        not_added => n.not_added.iter().take(NOT_ADDED_SHOWN).cloned().collect::<Vec<_>>(),
        not_added_more => n.not_added.len().saturating_sub(NOT_ADDED_SHOWN),
        history => history,
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let parts = templates.render_all(MailKind::Notification, lang, &context)?;
    let via = n.customer.name.as_deref().unwrap_or(&n.customer.address);
    build(
        support,
        Envelope {
            from: support_mailbox(support, Some(via)),
            to: vec![agent_mailbox(agent)?],
            cc: Vec::new(),
            reply_to: ReplyTo::Signed(signed_mailbox(support, signer, n.ticket, agent)?),
            message_id: signer.message_id(n.ticket.id, &agent.address),
            in_reply_to: n.message_id,
            references: n.message_id.map(String::from).into_iter().collect(),
            auto_submitted: Some("auto-generated"),
            attachments: &n.attachments.files,
        },
        parts,
        now,
    )
}

/// `2.4 MB`, `512 KB`, `12 bytes`.
fn format_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{} KB", bytes / 1_000),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// An agent's answer, to be passed on to the ticket's customers.
#[derive(Debug, Clone, Copy)]
pub struct ReplyFor<'a> {
    pub ticket: &'a TicketState,
    pub agent: &'a Agent,
    /// The answer as text: the agent's stripped words, or the text of `html` when there is
    /// one (the same cut, so whatever checks this text checks what the HTML says).
    pub body: &'a str,
    /// The customer message answered (latest with a Message-ID).
    pub answers: Option<&'a Answered>,
    pub attachments: &'a [Attachment],
    /// The agent's HTML answer, cut and sanitized; its images travel beside it.
    pub html: Option<&'a Html>,
}

/// The agent's answer as the customer receives it: from "<Agent> via <Support>", threaded
/// under the customer's latest message, copied to everyone the customer copied, framed in the
/// ticket's language.
pub fn reply(
    support: &Support,
    templates: &Templates,
    signer: &Signer,
    r: ReplyFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let tag = format_tag(&support.tag_prefix, r.ticket.id);
    let body = signer.scrub(r.body);
    let body_html = r.html.map_or(String::new(), |h| signer.scrub(&h.html));
    // Images only the cut quote showed (our notification's, the customer's) stay behind.
    let files: Vec<Attachment> = r
        .attachments
        .iter()
        .filter(|file| {
            !r.html.is_some_and(|h| {
                file.content_id
                    .as_ref()
                    .is_some_and(|id| h.cut.contains(id))
            })
        })
        .cloned()
        .collect();
    let context = minijinja::context! {
        ticket => r.ticket.id.0,
        tag => tag.clone(),
        subject => base_subject(&r.ticket.subject, &tag),
        body => body,
        body_html => body_html,
        agent_name => r.agent.name.clone(),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let lang = r.ticket.language.unwrap_or(support.language);
    let parts = templates.render_all(MailKind::Reply, lang, &context)?;
    let customer = r
        .ticket
        .customer
        .as_ref()
        .ok_or_else(|| RenderError::BadRecipient {
            address: String::new(),
            reason: format!("ticket {} has no customer address", r.ticket.id),
        })?;
    let cc = r
        .ticket
        .customers
        .iter()
        .filter(|p| p.address != customer.address)
        .map(mailbox)
        .collect::<Result<Vec<_>, _>>()?;
    let mut references = r.answers.map(|a| a.references.clone()).unwrap_or_default();
    references.extend(r.answers.map(|a| a.message_id.clone()));
    build(
        support,
        Envelope {
            from: support_mailbox(support, Some(&r.agent.name)),
            to: vec![mailbox(customer)?],
            cc,
            reply_to: ReplyTo::Support(support_mailbox(support, None)),
            message_id: new_message_id(support),
            in_reply_to: r.answers.map(|a| a.message_id.as_str()),
            references,
            auto_submitted: None,
            attachments: &files,
        },
        parts,
        now,
    )
}

/// An internal note, for one of the other agents of the ticket.
#[derive(Debug, Clone, Copy)]
pub struct NoteFor<'a> {
    pub ticket: &'a TicketState,
    pub author: &'a Agent,
    pub body: &'a str,
    pub attachments: &'a [Attachment],
}

pub fn note(
    support: &Support,
    templates: &Templates,
    signer: &Signer,
    to: &Agent,
    n: NoteFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let lang = reader_language(support, templates, MailKind::Note, Some(to));
    let tag = format_tag(&support.tag_prefix, n.ticket.id);
    let context = minijinja::context! {
        ticket => n.ticket.id.0,
        tag => tag.clone(),
        marker => marker(lang),
        subject => base_subject(&n.ticket.subject, &tag),
        body => n.body,
        agent_name => n.author.name.clone(),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let parts = templates.render_all(MailKind::Note, lang, &context)?;
    build(
        support,
        Envelope {
            from: support_mailbox(support, Some(&n.author.name)),
            to: vec![agent_mailbox(to)?],
            cc: Vec::new(),
            reply_to: ReplyTo::Signed(signed_mailbox(support, signer, n.ticket, to)?),
            message_id: signer.message_id(n.ticket.id, &to.address),
            in_reply_to: None,
            references: Vec::new(),
            auto_submitted: Some("auto-generated"),
            attachments: n.attachments,
        },
        parts,
        now,
    )
}

/// Why an agent's own message was not acted on.
#[derive(Debug, Clone, Copy)]
pub struct NoticeFor<'a> {
    /// `None`: the mail was kept on no ticket (forged agent mail threading into none).
    pub ticket: Option<&'a TicketState>,
    pub agent: &'a Agent,
    pub notice: &'a AgentNotice,
    /// Subject of the agent's (or the refused) message.
    pub subject: &'a str,
    /// Message-ID of that message, so the notice threads under it.
    pub message_id: Option<&'a str>,
}

pub fn notice(
    support: &Support,
    templates: &Templates,
    n: NoticeFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let tag = n
        .ticket
        .map(|t| format_tag(&support.tag_prefix, t.id))
        .unwrap_or_default();
    let (errors, reason) = match n.notice {
        AgentNotice::BadCommands(errors) => (errors.clone(), String::new()),
        AgentNotice::Empty | AgentNotice::Unsigned => (Vec::new(), String::new()),
        AgentNotice::Refused(reason)
        | AgentNotice::Leak(reason)
        | AgentNotice::Withheld(reason) => (Vec::new(), reason.clone()),
    };
    let problem = n.notice.kind();
    let context = minijinja::context! {
        ticket => n.ticket.map(|t| t.id.0),
        tag => tag.clone(),
        subject => if n.subject.is_empty() { "(no subject)" } else { n.subject },
        agent_name => n.agent.name.clone(),
        problem => problem,
        errors => errors,
        reason => reason,
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let lang = reader_language(support, templates, MailKind::Notice, Some(n.agent));
    let parts = templates.render_all(MailKind::Notice, lang, &context)?;
    to_agent(support, n.agent, n.message_id, "auto-replied", parts, now)
}

/// A mail from the support address to one agent, threaded under `in_reply_to`, without a
/// reply key (nothing to answer).
fn to_agent(
    support: &Support,
    agent: &Agent,
    in_reply_to: Option<&str>,
    auto_submitted: &'static str,
    parts: RenderedParts,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    build(
        support,
        Envelope {
            from: support_mailbox(support, None),
            to: vec![agent_mailbox(agent)?],
            cc: Vec::new(),
            reply_to: ReplyTo::From,
            message_id: new_message_id(support),
            in_reply_to,
            references: in_reply_to.map(String::from).into_iter().collect(),
            auto_submitted: Some(auto_submitted),
            attachments: &[],
        },
        parts,
        now,
    )
}

/// A delivery report came back for our mail on a ticket.
#[derive(Debug, Clone, Copy)]
pub struct BounceFor<'a> {
    pub ticket: &'a TicketState,
    pub agent: &'a Agent,
    /// `address: status diagnostic` per failed recipient.
    pub failed: &'a [String],
    /// The report's Message-ID: the mail threads under it in the agent's client.
    pub message_id: Option<&'a str>,
}

/// Tells `agent` that a customer did not get our mail.
pub fn bounce(
    support: &Support,
    templates: &Templates,
    b: BounceFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let tag = format_tag(&support.tag_prefix, b.ticket.id);
    let context = minijinja::context! {
        ticket => b.ticket.id.0,
        tag => tag.clone(),
        subject => base_subject(&b.ticket.subject, &tag),
        agent_name => b.agent.name.clone(),
        failed => b.failed.to_vec(),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let lang = reader_language(support, templates, MailKind::Bounce, Some(b.agent));
    let parts = templates.render_all(MailKind::Bounce, lang, &context)?;
    to_agent(support, b.agent, b.message_id, "auto-generated", parts, now)
}

fn agent_mailbox(agent: &Agent) -> Result<Mailbox, RenderError> {
    mailbox(&Person::new(&agent.address, Some(&agent.name)))
}

/// `Support <support+<ticket>.<token>@domain>`.
pub(super) fn signed_mailbox(
    support: &Support,
    signer: &Signer,
    ticket: &TicketState,
    agent: &Agent,
) -> Result<Mailbox, RenderError> {
    let address = signer.reply_address(ticket.id, &agent.address);
    mailbox(&Person::new(&address, Some(&support.name)))
}
