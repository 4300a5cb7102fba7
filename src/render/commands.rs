//! Mail that agents' commands cause: `#merge` tells the customer where their ticket went,
//! `#forward` sends the conversation to a third party with a reply address of its own.

use jiff::Timestamp;

use super::agent::reader_language;
use super::followup::{CustomerMail, customer_mail, thread_values};
use super::{
    Envelope, Outgoing, RenderError, ReplyTo, base_subject, build, mailbox, support_mailbox,
};
use crate::agent::sign::Signer;
use crate::config::{Agent, Support};
use crate::model::{Person, TicketId};
use crate::render::Templates;
use crate::store::MessageView;
use crate::templates::kinds::MailKind;
use crate::templates::marker;
use crate::thread::format_tag;

/// Tells the customer of a merged ticket, in its language, that it continues as `into`.
pub fn merged(
    support: &Support,
    templates: &Templates,
    mail: CustomerMail<'_>,
    into: TicketId,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let old_tag = format_tag(&support.tag_prefix, mail.ticket.id);
    let tag = format_tag(&support.tag_prefix, into);
    let context = minijinja::context! {
        ticket => into.0,
        tag => tag,
        old_tag => old_tag.clone(),
        subject => base_subject(&mail.ticket.subject, &old_tag),
        customer_name => mail.customer.name.clone().unwrap_or_default(),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    customer_mail(support, templates, MailKind::Merged, mail, &context, now)
}

/// A ticket forwarded to a third party by an agent.
#[derive(Debug, Clone, Copy)]
pub struct ForwardFor<'a> {
    pub ticket: TicketId,
    pub subject: &'a str,
    pub agent: &'a Agent,
    /// The third party's address.
    pub to: &'a str,
    /// The agent's words to them.
    pub text: &'a str,
    /// What the customer and the agents said to each other (no internal mail).
    pub thread: &'a [MessageView],
}

/// The conversation to the third party, from "<Agent> via <Support>", with Reply-To and
/// Message-ID signed for the third party's address, so its answers come back to this ticket.
pub fn forward(
    support: &Support,
    templates: &Templates,
    signer: &Signer,
    f: ForwardFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let lang = reader_language(support, templates, MailKind::Forward, None);
    let tag = format_tag(&support.tag_prefix, f.ticket);
    let context = minijinja::context! {
        ticket => f.ticket.0,
        tag => tag.clone(),
        subject => base_subject(f.subject, &tag),
        agent_name => f.agent.name.clone(),
        text => signer.scrub(f.text),
        marker => marker(lang),
        thread => thread_values(support, f.thread, lang),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let parts = templates.render_all(MailKind::Forward, lang, &context)?;
    let reply_to = Person::new(&signer.reply_address(f.ticket, f.to), Some(&support.name));
    build(
        support,
        Envelope {
            from: support_mailbox(support, Some(&f.agent.name)),
            to: vec![mailbox(&Person::new(f.to, None))?],
            cc: Vec::new(),
            reply_to: ReplyTo::Signed(mailbox(&reply_to)?),
            message_id: signer.message_id(f.ticket, f.to),
            in_reply_to: None,
            references: Vec::new(),
            auto_submitted: None,
            attachments: &[],
        },
        parts,
        now,
    )
}
