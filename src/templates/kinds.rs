//! The registry of outgoing mail kinds: what each kind is called, who reads it, which variables
//! its templates get (as sample values) and which facts every body must state.
//!
//! Adding a kind is: a [`MailKind`] variant (the compiler then points at each `match` that
//! names its outbox kind, its events and its entry in [`KINDS`]), its template files in
//! `templates/` (`KIND.LANG.{subject,txt,html}`, every shipped language for customer-facing
//! kinds, at least English for agent-facing ones), and the code that renders it. Agent-facing kinds are rendered in the reading agent's language
//! (`[[agent]] language`) through `render::agent::reader_language`, which falls back to English
//! for a language the kind has no templates in; their sample values must therefore state
//! dates and durations in the language asked for.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use minijinja::Value;

use super::locale::{Author, author_word, format_due, format_duration, format_when};
use super::marker;
use crate::catalog::EventKind;
use crate::language::Lang;

/// Who reads a kind of mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Shipped in every language of [`Lang::ALL`]; the admin may not drop one.
    Customer,
    /// Shipped in English; other languages optional, English is the fallback.
    Agent,
}

/// Every kind of outgoing mail: one name in code, from which its template name, outbox kind
/// and event names are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MailKind {
    Ack,
    Reply,
    Notification,
    Note,
    Merged,
    Forward,
    Notice,
    Bounce,
    Warning,
    Escalation,
    Update,
    Reminder,
    Survey,
    Closed,
}

impl MailKind {
    /// The first part of its template file names: `ack` for `ack.en.txt`.
    pub fn template(self) -> &'static str {
        match self {
            MailKind::Ack => "ack",
            MailKind::Reply => "reply",
            MailKind::Notification => "notification",
            MailKind::Note => "note",
            MailKind::Merged => "merged",
            MailKind::Forward => "forward",
            MailKind::Notice => "notice",
            MailKind::Bounce => "bounce",
            MailKind::Warning => "warning",
            MailKind::Escalation => "escalation",
            MailKind::Update => "update",
            MailKind::Reminder => "reminder",
            MailKind::Survey => "survey",
            MailKind::Closed => "closed",
        }
    }

    /// Its outbox kind, also the class of its outbound message row (stored: never renamed).
    pub fn outbox(self) -> &'static str {
        match self {
            MailKind::Ack => "acknowledgement",
            other => other.template(),
        }
    }

    /// The kind of a stored outbox row, if it is one of these (not an admin alert).
    pub fn from_outbox(outbox: &str) -> Option<MailKind> {
        KINDS.iter().map(|k| k.mail).find(|m| m.outbox() == outbox)
    }

    /// The kind whose template files start with `template`.
    pub fn from_template(template: &str) -> Option<MailKind> {
        KINDS
            .iter()
            .map(|k| k.mail)
            .find(|m| m.template() == template)
    }

    /// Its entry in the registry.
    pub fn spec(self) -> &'static Kind {
        let idx = match self {
            MailKind::Ack => 0,
            MailKind::Reply => 1,
            MailKind::Notification => 2,
            MailKind::Note => 3,
            MailKind::Merged => 4,
            MailKind::Forward => 5,
            MailKind::Notice => 6,
            MailKind::Bounce => 7,
            MailKind::Warning => 8,
            MailKind::Escalation => 9,
            MailKind::Update => 10,
            MailKind::Reminder => 11,
            MailKind::Survey => 12,
            MailKind::Closed => 13,
        };
        &KINDS[idx]
    }

    /// The event recorded when an inbound message queues it.
    pub fn queued_event(self) -> EventKind {
        match self {
            MailKind::Ack => EventKind::AckQueued,
            MailKind::Reply => EventKind::ReplyQueued,
            MailKind::Notification => EventKind::NotificationQueued,
            MailKind::Note => EventKind::NoteQueued,
            MailKind::Merged => EventKind::MergedQueued,
            MailKind::Forward => EventKind::ForwardQueued,
            MailKind::Notice => EventKind::NoticeQueued,
            MailKind::Bounce => EventKind::BounceNotified,
            // The scheduler's mail is recorded as its step and `outbox.queued`.
            MailKind::Warning
            | MailKind::Escalation
            | MailKind::Update
            | MailKind::Reminder
            | MailKind::Survey
            | MailKind::Closed => EventKind::OutboxQueued,
        }
    }

    /// The event recorded when it could not be rendered.
    pub fn not_sent_event(self) -> EventKind {
        match self {
            MailKind::Ack => EventKind::AckNotSent,
            MailKind::Reply => EventKind::ReplyNotSent,
            MailKind::Notification => EventKind::NotificationNotSent,
            MailKind::Note => EventKind::NoteNotSent,
            MailKind::Merged => EventKind::MergedNotSent,
            MailKind::Forward => EventKind::ForwardNotSent,
            MailKind::Notice => EventKind::NoticeNotSent,
            MailKind::Bounce => EventKind::BounceNotNotified,
            MailKind::Warning
            | MailKind::Escalation
            | MailKind::Update
            | MailKind::Reminder
            | MailKind::Survey
            | MailKind::Closed => EventKind::SchedulerNotSent,
        }
    }

    /// Whether a bounce of it tells the ticket's agents (mail to a customer carrying an answer;
    /// never agents' own mail, whose bounce must not cause another notification).
    pub fn bounce_tells_agents(self) -> bool {
        match self {
            MailKind::Ack | MailKind::Reply => true,
            MailKind::Notification
            | MailKind::Note
            | MailKind::Merged
            | MailKind::Forward
            | MailKind::Notice
            | MailKind::Bounce
            | MailKind::Warning
            | MailKind::Escalation
            | MailKind::Update
            | MailKind::Reminder
            | MailKind::Survey
            | MailKind::Closed => false,
        }
    }
}

/// One kind of outgoing mail.
#[derive(Debug)]
pub struct Kind {
    pub mail: MailKind,
    pub audience: Audience,
    /// One line for `deskgate template list` and error messages.
    pub about: &'static str,
    /// Variables the subject must use (the ticket tag keeps replies threaded).
    pub subject_requires: &'static [&'static str],
    /// Variables the text and HTML bodies must use: the facts this mail exists to tell.
    pub body_requires: &'static [&'static str],
    /// The shipped templates: (file name, source).
    pub shipped: &'static [(&'static str, &'static str)],
    /// Sample values of this kind's own variables (besides [`common_sample`]) in `lang`, times
    /// stated in the given zone.
    pub sample: fn(Lang, &TimeZone) -> Value,
}

impl Kind {
    /// The first part of its template file names: `ack` for `ack.en.txt`.
    pub fn name(&self) -> &'static str {
        self.mail.template()
    }

    /// The languages every installation must have templates for.
    pub fn required_languages(&self) -> &'static [Lang] {
        match self.audience {
            Audience::Customer => &Lang::ALL,
            Audience::Agent => &[Lang::En],
        }
    }
}

/// The parts of one message, in file-name order.
pub const PARTS: [&str; 3] = ["subject", "txt", "html"];

/// `(KIND.LANG.PART, source)` for every part of `kind` in each language given.
macro_rules! shipped {
    ($kind:literal: $($lang:literal)+) => {
        &[$(
            (concat!($kind, ".", $lang, ".subject"),
             include_str!(concat!("../../templates/", $kind, ".", $lang, ".subject"))),
            (concat!($kind, ".", $lang, ".txt"),
             include_str!(concat!("../../templates/", $kind, ".", $lang, ".txt"))),
            (concat!($kind, ".", $lang, ".html"),
             include_str!(concat!("../../templates/", $kind, ".", $lang, ".html"))),
        )+]
    };
}

/// Every kind of mail deskgate writes.
pub const KINDS: &[Kind] = &[
    Kind {
        mail: MailKind::Ack,
        audience: Audience::Customer,
        about: "to the customer: acknowledgement of a new ticket, with the time an answer is due",
        subject_requires: &["tag"],
        body_requires: &["tag", "due"],
        shipped: shipped!("ack": "en" "ar" "el"),
        sample: ack_sample,
    },
    Kind {
        mail: MailKind::Reply,
        audience: Audience::Customer,
        about: "to the customer: an agent's answer, relayed from the support address",
        subject_requires: &["tag"],
        body_requires: &["body"],
        shipped: shipped!("reply": "en" "ar" "el"),
        sample: reply_sample,
    },
    Kind {
        mail: MailKind::Notification,
        audience: Audience::Agent,
        about: "to agents: a customer wrote (new ticket or later message), with their history",
        subject_requires: &["tag"],
        body_requires: &["tag", "marker", "message", "recipients"],
        shipped: shipped!("notification": "en" "ar" "el"),
        sample: notification_sample,
    },
    Kind {
        mail: MailKind::Note,
        audience: Audience::Agent,
        about: "to agents: another agent's internal note on a ticket",
        subject_requires: &["tag"],
        body_requires: &["marker", "body"],
        shipped: shipped!("note": "en" "ar" "el"),
        sample: note_sample,
    },
    Kind {
        mail: MailKind::Merged,
        audience: Audience::Customer,
        about: "to the customer: an agent merged their ticket into another (#merge); later mail goes under its tag",
        subject_requires: &["tag"],
        body_requires: &["tag", "old_tag"],
        shipped: shipped!("merged": "en" "ar" "el"),
        sample: merged_sample,
    },
    Kind {
        mail: MailKind::Forward,
        audience: Audience::Agent,
        about: "to a third party (#forward): the conversation and the agent's words; answers come back to the agents",
        subject_requires: &["tag"],
        body_requires: &["tag", "marker", "text", "thread"],
        shipped: shipped!("forward": "en" "ar" "el"),
        sample: forward_sample,
    },
    Kind {
        mail: MailKind::Notice,
        audience: Audience::Agent,
        about: "to an agent: why their mail was not applied or not sent",
        subject_requires: &["tag"],
        body_requires: &["tag", "problem"],
        shipped: shipped!("notice": "en" "ar" "el"),
        sample: notice_sample,
    },
    Kind {
        mail: MailKind::Bounce,
        audience: Audience::Agent,
        about: "to agents: our mail did not reach the customer (a delivery report came back)",
        subject_requires: &["tag"],
        body_requires: &["tag", "failed"],
        shipped: shipped!("bounce": "en" "ar" "el"),
        sample: bounce_sample,
    },
    Kind {
        mail: MailKind::Warning,
        audience: Audience::Agent,
        about: "to the assigned agent or the team: a customer's answer is due soon",
        subject_requires: &["tag"],
        body_requires: &["tag", "marker", "due", "waiting"],
        shipped: shipped!("warning": "en" "ar" "el"),
        sample: alert_sample,
    },
    Kind {
        mail: MailKind::Escalation,
        audience: Audience::Agent,
        about: "to an escalation level: an answer is overdue, with the whole conversation and who was told",
        subject_requires: &["tag", "level"],
        body_requires: &["tag", "marker", "waiting", "thread", "told"],
        shipped: shipped!("escalation": "en" "ar" "el"),
        sample: alert_sample,
    },
    Kind {
        mail: MailKind::Update,
        audience: Audience::Customer,
        about: "to the customer: an apology at the first escalation, with a new realistic time",
        subject_requires: &["tag"],
        body_requires: &["tag", "due"],
        shipped: shipped!("update": "en" "ar" "el"),
        sample: update_sample,
    },
    Kind {
        mail: MailKind::Reminder,
        audience: Audience::Customer,
        about: "to the customer: we still wait for their reply on a pending ticket",
        subject_requires: &["tag"],
        body_requires: &["tag"],
        shipped: shipped!("reminder": "en" "ar" "el"),
        sample: no_sample,
    },
    Kind {
        mail: MailKind::Survey,
        audience: Audience::Customer,
        about: "to the customer: their ticket is resolved; one question, answered with a digit 1-5",
        subject_requires: &["tag"],
        body_requires: &["tag"],
        shipped: shipped!("survey": "en" "ar" "el"),
        sample: no_sample,
    },
    Kind {
        mail: MailKind::Closed,
        audience: Audience::Customer,
        about: "to the customer: their resolved ticket was closed automatically",
        subject_requires: &["tag"],
        body_requires: &["tag"],
        shipped: shipped!("closed": "en" "ar" "el"),
        sample: no_sample,
    },
];

pub fn kind(name: &str) -> Option<&'static Kind> {
    MailKind::from_template(name).map(MailKind::spec)
}

/// The kind names as a readable list: `ack, ...`.
pub fn names() -> String {
    KINDS.iter().map(Kind::name).collect::<Vec<_>>().join(", ")
}

/// The moment sample due times refer to.
pub fn sample_due_at() -> Timestamp {
    Timestamp::constant(1_795_514_400, 0) // 2026-11-24T10:00:00Z
}

/// Sample values of the variables every kind gets (see `render::common_context`).
pub fn common_sample(lang: Lang) -> Value {
    let (subject, customer_name) = match lang {
        Lang::En => ("Printer on fire", "Mona Quinn"),
        Lang::Ar => ("الطابعة لا تعمل", "أحمد"),
        Lang::El => ("Ο εκτυπωτής δεν δουλεύει", "Ελένη"),
    };
    minijinja::context! {
        ticket => 42,
        tag => "[#42]",
        subject => subject,
        customer_name => customer_name,
        support_name => "Example Support",
        support_address => "support@example.com",
    }
}

fn ack_sample(lang: Lang, tz: &TimeZone) -> Value {
    minijinja::context! {
        due => format_due(sample_due_at(), tz, lang),
        due_iso => sample_due_at().to_string(),
    }
}

fn reply_sample(lang: Lang, _: &TimeZone) -> Value {
    let body = match lang {
        Lang::En => "Please switch the printer off and unplug it; a technician comes tomorrow.",
        Lang::Ar => "يرجى إطفاء الطابعة وفصلها عن الكهرباء؛ سيصلكم فنّي غدًا.",
        Lang::El => {
            "Παρακαλούμε σβήστε τον εκτυπωτή και αποσυνδέστε τον· ένας τεχνικός θα έρθει αύριο."
        }
    };
    // `body_html`: the agent's sanitized HTML when they wrote some (see `render::html`).
    minijinja::context! { body => body, body_html => "", agent_name => "Alice Agent" }
}

fn notification_sample(lang: Lang, tz: &TimeZone) -> Value {
    minijinja::context! {
        marker => marker(lang),
        recipients => vec!["Mona Quinn <customer@example.net>", "accounts@example.net"],
        new_ticket => true,
        customer_address => "customer@example.net",
        status => "open",
        priority => "normal",
        assigned => "agent@example.com",
        waiting => format_duration(SignedDuration::from_mins(125), lang),
        due => format_due(sample_due_at(), tz, lang),
        language => Lang::Ar.name_in(lang),
        message => "My printer is on fire.",
        message_cut => false,
        // The customer's sanitized HTML when they wrote some (see `render::html`).
        message_html => "",
        attachments => vec!["photo.jpg", "invoice.pdf"],
        not_attached => vec!["video.mp4 (48.2 MB)"],
        unlisted => 0,
        not_added => vec!["cc11@example.net"],
        not_added_more => 0,
        history => vec![minijinja::context! {
            tag => "[#41]", subject => "Toner", status => "closed", opened => "2026-10-01",
        }],
    }
}

fn note_sample(lang: Lang, _: &TimeZone) -> Value {
    minijinja::context! {
        marker => marker(lang),
        body => "Called the customer; the printer is a model X100.",
        agent_name => "Alice Agent",
    }
}

fn merged_sample(_: Lang, _: &TimeZone) -> Value {
    minijinja::context! { old_tag => "[#41]" }
}

fn forward_sample(lang: Lang, tz: &TimeZone) -> Value {
    minijinja::context! {
        marker => marker(lang),
        agent_name => "Alice Agent",
        text => "Is part X100-7 in stock? We need two.",
        thread => vec![minijinja::context! {
            when => format_when(sample_due_at() - SignedDuration::from_hours(24), tz, lang),
            who => author_word(Author::Sender {
                name: Some("Mona Quinn"),
                address: Some("mona@example.net"),
            }, lang),
            text => "My printer is on fire.",
            attachments => vec!["photo.jpg"],
        }],
    }
}

fn notice_sample(_: Lang, _: &TimeZone) -> Value {
    minijinja::context! {
        agent_name => "Alice Agent",
        problem => "commands",
        errors => vec!["`#frob`: unknown command"],
        reason => "the reply key is not valid",
    }
}

fn bounce_sample(_: Lang, _: &TimeZone) -> Value {
    minijinja::context! {
        agent_name => "Alice Agent",
        failed => vec!["customer@example.net: 5.1.1 550 5.1.1 no such user"],
    }
}

fn alert_sample(lang: Lang, tz: &TimeZone) -> Value {
    minijinja::context! {
        marker => marker(lang),
        level => 1,
        customer_address => "customer@example.net",
        status => "open",
        priority => "high",
        assigned => "agent@example.com",
        waiting => format_duration(SignedDuration::from_hours(26), lang),
        due => format_due(sample_due_at(), tz, lang),
        overdue => format_duration(SignedDuration::from_hours(2), lang),
        left => "",
        can_reply => true,
        thread => vec![
            minijinja::context! {
                when => format_when(sample_due_at() - SignedDuration::from_hours(24), tz, lang),
                who => author_word(Author::Sender {
                    name: Some("Mona Quinn"), address: Some("customer@example.net"),
                }, lang),
                kind => "customer", internal => false, text => "My printer is on fire.",
                attachments => vec!["photo.jpg", "invoice.pdf"],
            },
            minijinja::context! {
                when => format_when(sample_due_at() - SignedDuration::from_hours(24), tz, lang),
                who => author_word(Author::Automatic("Example Support"), lang),
                kind => "acknowledgement", internal => false, text => "Thank you for writing.",
                attachments => Vec::<String>::new(),
            },
        ],
        told => vec![minijinja::context! {
            when => format_when(sample_due_at() - SignedDuration::from_hours(6), tz, lang),
            step => "warning", to => "agent@example.com",
        }],
    }
}

fn update_sample(lang: Lang, tz: &TimeZone) -> Value {
    minijinja::context! { due => format_due(sample_due_at(), tz, lang) }
}

fn no_sample(_: Lang, _: &TimeZone) -> Value {
    minijinja::context! {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_registry_entry_and_unique_names() {
        for (idx, kind) in KINDS.iter().enumerate() {
            assert_eq!(kind.mail.spec().name(), kind.name(), "entry {idx}");
            assert_eq!(MailKind::from_template(kind.name()), Some(kind.mail));
            assert_eq!(MailKind::from_outbox(kind.mail.outbox()), Some(kind.mail));
        }
        assert_eq!(MailKind::Ack.outbox(), "acknowledgement");
        assert_eq!(MailKind::from_outbox("alert"), None);
        assert_eq!(MailKind::from_template("acknowledgement"), None);
    }
}
