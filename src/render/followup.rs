//! Mail the scheduler writes: warnings and escalations to people inside, updates, reminders,
//! surveys and closing notices to customers.

use jiff::Timestamp;

use super::agent::{reader_language, signed_mailbox};
use super::{
    ECHOED_NAME_CHARS, ECHOED_SUBJECT_CHARS, Envelope, Outgoing, RenderError, ReplyTo,
    base_subject, build, echoed, format_due, format_duration, format_when, mailbox, new_message_id,
    support_mailbox,
};
use crate::agent::sign::Signer;
use crate::config::{Agent, Support};
use crate::language::Lang;
use crate::model::{Person, TicketState};
use crate::render::Templates;
use crate::store::{Answered, MessageView, StepView};
use crate::templates::kinds::MailKind;
use crate::templates::locale::{Author, author_word};
use crate::templates::marker;
use crate::thread::format_tag;

/// A ticket's customer mail threads under their latest message.
#[derive(Debug, Clone, Copy)]
pub struct CustomerMail<'a> {
    pub ticket: &'a TicketState,
    pub customer: &'a Person,
    /// The customer's latest message with a Message-ID.
    pub answers: Option<&'a Answered>,
    pub lang: Lang,
}

/// Renders `kind` (`update`, `reminder`, `survey`, `closed`) to the ticket's customer, in the
/// ticket's language; `due` is the new promise of an update.
pub fn to_customer(
    support: &Support,
    templates: &Templates,
    kind: MailKind,
    mail: CustomerMail<'_>,
    due: Option<Timestamp>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let tag = format_tag(&support.tag_prefix, mail.ticket.id);
    let context = minijinja::context! {
        ticket => mail.ticket.id.0,
        tag => tag.clone(),
        subject => echoed(&base_subject(&mail.ticket.subject, &tag), ECHOED_SUBJECT_CHARS),
        customer_name => echoed(mail.customer.name.as_deref().unwrap_or(""), ECHOED_NAME_CHARS),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
        due => due.map(|d| format_due(d, &support.timezone, mail.lang)).unwrap_or_default(),
    };
    customer_mail(support, templates, kind, mail, &context, now)
}

/// Renders `kind` with `context` in the ticket's language to its customer, from the support
/// address, threaded under their latest message.
pub(super) fn customer_mail(
    support: &Support,
    templates: &Templates,
    kind: MailKind,
    mail: CustomerMail<'_>,
    context: &minijinja::Value,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let parts = templates.render_all(kind, mail.lang, context)?;
    let (in_reply_to, references) = match mail.answers {
        Some(answered) => {
            let mut references = answered.references.clone();
            references.push(answered.message_id.clone());
            (Some(answered.message_id.as_str()), references)
        }
        None => (None, Vec::new()),
    };
    build(
        support,
        Envelope {
            from: support_mailbox(support, None),
            to: vec![mailbox(mail.customer)?],
            cc: Vec::new(),
            reply_to: ReplyTo::From,
            message_id: new_message_id(support),
            in_reply_to,
            references,
            auto_submitted: Some("auto-generated"),
            attachments: &[],
        },
        parts,
        now,
    )
}

/// What a warning or an escalation is about.
#[derive(Debug, Clone, Copy)]
pub struct AlertFor<'a> {
    /// The recipient's address, and the agent it belongs to, if any.
    pub to: &'a str,
    pub agent: Option<&'a Agent>,
    pub ticket: &'a TicketState,
    /// When the unanswered customer message arrived, and when its answer is (was) due.
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    /// 1 for the first escalation level; 0 for a warning.
    pub level: usize,
    /// The whole conversation, oldest first (escalations only).
    pub thread: &'a [MessageView],
    /// Who was warned or escalated to before, in order.
    pub told: &'a [StepView],
    /// The customer message this is about (its Message-ID), to thread under.
    pub message_id: Option<&'a str>,
}

/// Renders a `warning` or an `escalation` to `to`. An agent gets their signed reply address,
/// so answering the mail answers the customer, as with a notification.
pub fn alert(
    support: &Support,
    templates: &Templates,
    signer: Option<&Signer>,
    kind: MailKind,
    a: AlertFor<'_>,
    now: Timestamp,
) -> Result<Outgoing, RenderError> {
    let (to, agent) = (a.to, a.agent);
    let lang = reader_language(support, templates, kind, agent);
    let tag = format_tag(&support.tag_prefix, a.ticket.id);
    let zone = &support.timezone;
    let thread = thread_values(support, a.thread, lang);
    let told: Vec<minijinja::Value> = a
        .told
        .iter()
        .filter(|s| !s.recipients.is_empty())
        .map(|s| {
            minijinja::context! {
                when => format_when(s.at, zone, lang),
                step => s.name.clone(),
                to => s.recipients.join(", "),
            }
        })
        .collect();
    let customer = a.ticket.customer.as_ref();
    let context = minijinja::context! {
        ticket => a.ticket.id.0,
        tag => tag.clone(),
        subject => base_subject(&a.ticket.subject, &tag),
        level => a.level,
        marker => marker(lang),
        customer_name => customer.and_then(|c| c.name.clone()).unwrap_or_default(),
        customer_address => customer.map(|c| c.address.clone()).unwrap_or_default(),
        status => a.ticket.status.as_str(),
        priority => a.ticket.priority.as_str(),
        assigned => a.ticket.assigned.clone().unwrap_or_default(),
        waiting => format_duration(now.duration_since(a.received_at), lang),
        due => format_due(a.due_at, zone, lang),
        overdue => if now > a.due_at { format_duration(now.duration_since(a.due_at), lang) } else { String::new() },
        left => if now < a.due_at { format_duration(a.due_at.duration_since(now), lang) } else { String::new() },
        thread => thread,
        told => told,
        can_reply => agent.is_some() && signer.is_some(),
        support_name => support.name.clone(),
        support_address => support.address.to_string(),
    };
    let parts = templates.render_all(kind, lang, &context)?;
    let recipient = mailbox(&Person::new(to, agent.map(|a| a.name.as_str())))?;
    let (reply_to, message_id) = match (agent, signer) {
        (Some(agent), Some(signer)) => (
            ReplyTo::Signed(signed_mailbox(support, signer, a.ticket, agent)?),
            signer.message_id(a.ticket.id, &agent.address),
        ),
        _ => (ReplyTo::From, new_message_id(support)),
    };
    build(
        support,
        Envelope {
            from: support_mailbox(support, None),
            to: vec![recipient],
            cc: Vec::new(),
            reply_to,
            message_id,
            in_reply_to: a.message_id,
            references: a.message_id.map(String::from).into_iter().collect(),
            auto_submitted: Some("auto-generated"),
            attachments: &[],
        },
        parts,
        now,
    )
}

/// A conversation for a template, in `lang`: when, who (an agent, our automatic mail, the
/// sender), kind, whether internal, the text and attachment names of each message.
pub(super) fn thread_values(
    support: &Support,
    thread: &[MessageView],
    lang: Lang,
) -> Vec<minijinja::Value> {
    thread
        .iter()
        .map(|m| {
            let author = match (&m.agent, m.outbound) {
                (Some(agent), _) => Author::Agent(agent),
                (None, true) => Author::Automatic(&support.name),
                (None, false) => Author::Sender {
                    name: m.from_name.as_deref(),
                    address: m.from_address.as_deref(),
                },
            };
            minijinja::context! {
                when => format_when(m.received_at, &support.timezone, lang),
                who => author_word(author, lang),
                kind => m.class.clone(),
                internal => m.internal,
                text => m.body_text.trim_end().to_string(),
                attachments => m.attachments.clone(),
            }
        })
        .collect()
}
