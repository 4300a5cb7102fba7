//! The last stages: `mail_for` (pure: which mail the decision causes) and `send_planned`
//! (render each from the ticket as it now stands and enqueue it, or record why not).

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::commands;
use super::effects::{Effects, agents_named};
use super::events::NewEvent;
use super::gather::Facts;
use crate::agent::boundary::Boundary;
use crate::agent::reply::CcChange;
use crate::agent::sign::Signer;
use crate::catalog::EventKind;
use crate::config::{Agent, Config, Desk};
use crate::model::{OutboxId, Person, TicketId, TicketState};
use crate::parse::ParsedMessage;
use crate::policy::{AgentNotice, Decision};
use crate::render::{self, AckFor, BounceFor, NoteFor, NoticeFor, NotificationFor, ReplyFor};
use crate::render::{Outgoing, RenderError};
use crate::send::Enqueued;
use crate::store::{StoreError, Tx};
use crate::templates::kinds::MailKind;

/// The window of the per-sender limits.
pub(super) const LIMIT_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// Notices per agent and kind in [`LIMIT_WINDOW`] about mail that proved nothing (unsigned or
/// refused: anyone can send it).
const UNPROVED_NOTICES_PER_HOUR: u32 = 1;

/// One piece of mail an inbound message causes, in the order it is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// The acknowledgement to the customer.
    Ack,
    /// The agents told of a customer's message.
    Notification(Vec<String>),
    /// The author agent's answer, relayed to the customer.
    Reply,
    /// The author agent's note, to these agents.
    Note(Vec<String>),
    /// These agents, told that our mail to the customer bounced.
    Bounce(Vec<String>),
    /// The author told about their own message (the decision's notice, or a withheld reply).
    Notice,
    /// `#forward`: the conversation and the author agent's words, to a third party.
    Forward { to: String, words: String },
    /// `#merge`: the customer told, then the ticket's rows moved into this one (last, so the
    /// mail queued before moves too).
    Merge(TicketId),
}

/// What `mail_for` reads besides the decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct MailFacts {
    /// The message has a From to answer.
    pub sender: bool,
    /// Reply keys can be made (mail to agents carries them).
    pub signer: bool,
    /// The author is a configured agent (verified or not).
    pub agent: bool,
    /// The author is a configured agent who wrote a text (verified mail).
    pub agent_text: bool,
    /// A bounce of mail to a customer named failures.
    pub bounce_failed: bool,
}

/// The mail `decision` causes.
pub(super) fn mail_for(decision: &Decision, facts: MailFacts) -> Vec<Plan> {
    let mut plans = Vec::new();
    if decision.acknowledge && facts.sender && decision.deadline.is_some() {
        plans.push(Plan::Ack);
    }
    if facts.signer && facts.sender && !decision.notify.is_empty() {
        plans.push(Plan::Notification(decision.notify.clone()));
    }
    let relay = facts.signer && facts.agent_text && decision.relay;
    if relay {
        plans.push(Plan::Reply);
    }
    if facts.signer && facts.agent_text && !decision.note_to.is_empty() {
        plans.push(Plan::Note(decision.note_to.clone()));
    }
    if facts.bounce_failed && !decision.bounce_to.is_empty() {
        plans.push(Plan::Bounce(decision.bounce_to.clone()));
    }
    // A relayed answer withheld at the last check tells its author.
    if decision.tell.is_some() || relay {
        plans.push(Plan::Notice);
    }
    if let (true, Some((to, words))) = (facts.signer && facts.agent, &decision.forward) {
        plans.push(Plan::Forward {
            to: to.clone(),
            words: words.clone(),
        });
    }
    if let Some(into) = decision.merge {
        plans.push(Plan::Merge(into));
    }
    plans
}

/// What the message queued.
#[derive(Debug, Default)]
pub(super) struct Queued {
    pub acknowledgement: Option<OutboxId>,
    /// Every outbox row, the acknowledgement included.
    pub all: Vec<OutboxId>,
}

/// Everything rendering needs besides the plan.
pub(super) struct Sending<'a> {
    pub config: &'a Config,
    pub desk: &'a Desk<'a>,
    pub facts: &'a Facts<'a>,
    pub decision: &'a Decision,
    /// The ticket as it now stands.
    pub state: &'a TicketState,
    pub new_ticket: bool,
    pub failed: &'a [String],
    /// People the message copied who were not added to the ticket.
    pub not_added: &'a [String],
    /// Signs as the address the ticket is on.
    pub signer: Option<Signer>,
}

/// Renders and enqueues each planned mail.
pub(super) fn send_planned(
    out: &Effects<'_, '_>,
    sending: &Sending<'_>,
    plans: &[Plan],
    mut reply: Option<Result<Outgoing, RenderError>>,
) -> Result<Queued, StoreError> {
    let mut queued = Queued::default();
    let mut tell = sending.decision.tell.clone();
    for plan in plans {
        match plan {
            Plan::Ack => {
                queued.acknowledgement = send_ack(out, sending)?;
                queued.all.extend(queued.acknowledgement);
            }
            Plan::Notification(to) => queued.all.extend(send_notifications(out, sending, to)?),
            Plan::Reply => {
                let Some(rendered) = reply.take() else {
                    continue;
                };
                match out.enqueue(MailKind::Reply, None, rendered, None)? {
                    Some(Enqueued::Queued(outbox)) => queued.all.push(outbox),
                    // Checked before anything was recorded; should the check still stop it,
                    // the agent who answered hears of it.
                    Some(Enqueued::Withheld(why)) => {
                        if let Some((_, agent, _)) = authored(sending) {
                            tell = Some((agent.address.clone(), AgentNotice::Withheld(why)));
                        }
                    }
                    None => {}
                }
            }
            Plan::Note(to) => queued.all.extend(send_notes(out, sending, to)?),
            Plan::Bounce(to) => queued.all.extend(send_bounces(out, sending, to)?),
            Plan::Notice => {
                if let Some(tell) = &tell {
                    let parsed = sending.facts.parsed;
                    let state = Some(sending.state);
                    queued
                        .all
                        .extend(tell_agent(out, sending.config, state, tell, parsed)?);
                }
            }
            Plan::Forward { to, words } => {
                let author = sending.facts.author.agent();
                let agent = author.and_then(|a| sending.config.agents.by_address(a));
                if let (Some(signer), Some(agent)) = (&sending.signer, agent) {
                    let agents = &sending.config.agents;
                    queued.all.extend(commands::forward(
                        out,
                        signer,
                        sending.state,
                        (agent, agents),
                        (to, words),
                    )?);
                }
            }
            Plan::Merge(into) => {
                let language = sending.desk.language;
                queued
                    .all
                    .extend(commands::merge(out, sending.state, *into, language)?);
            }
        }
    }
    Ok(queued)
}

fn send_ack(out: &Effects<'_, '_>, s: &Sending<'_>) -> Result<Option<OutboxId>, StoreError> {
    let parsed = s.facts.parsed;
    let (Some(customer), Some(deadline)) = (&parsed.from, s.decision.deadline) else {
        return Ok(None);
    };
    let ack = AckFor {
        ticket: s.state.id,
        customer,
        subject: &parsed.subject,
        message_id: parsed.message_id.as_deref(),
        references: &parsed.references,
        due_at: deadline.due_at,
        lang: s.state.language.unwrap_or(s.desk.language),
    };
    let rendered = render::acknowledgement(&s.desk.support, s.desk.templates, ack, out.now());
    out.queue(MailKind::Ack, None, rendered)
}

fn send_notifications(
    out: &Effects<'_, '_>,
    s: &Sending<'_>,
    to: &[String],
) -> Result<Vec<OutboxId>, StoreError> {
    let parsed = s.facts.parsed;
    let (Some(signer), Some(customer)) = (&s.signer, &parsed.from) else {
        return Ok(Vec::new());
    };
    let (tx, now) = (out.tx(), out.now());
    let history = tx.earlier_tickets(&customer.address, Some(s.state.id), 5)?;
    let waiting_since = tx.waiting_since(s.state.id)?.unwrap_or(now);
    // The customer's own HTML, if they wrote some, shown to agents whole.
    let customer_html = s
        .facts
        .html
        .as_ref()
        .filter(|_| s.facts.author.agent().is_none());
    let mut queued = Vec::new();
    for agent in agents_named(s.config, to) {
        let rendered = render::notification(
            &s.desk.support,
            s.desk.templates,
            signer,
            agent,
            NotificationFor {
                ticket: s.state,
                new_ticket: s.new_ticket,
                customer,
                subject: &parsed.subject,
                text: &parsed.text,
                message_id: parsed.message_id.as_deref(),
                waiting_since,
                due_at: s.decision.deadline.map(|d| d.due_at),
                history: &history,
                attachments: &s.facts.attachments,
                not_added: s.not_added,
                html: customer_html,
            },
            now,
        );
        queued.extend(out.queue(MailKind::Notification, Some(&agent.address), rendered)?);
    }
    Ok(queued)
}

/// The author agent, their text and the signer, when the message is a verified agent's.
fn authored<'s>(s: &'s Sending<'_>) -> Option<(&'s Signer, &'s Agent, &'s str)> {
    let agent = s
        .facts
        .author
        .agent()
        .and_then(|a| s.config.agents.by_address(a))?;
    Some((s.signer.as_ref()?, agent, &s.facts.text.as_ref()?.body))
}

/// The agent's answer as it will go out: to the ticket's customers once the decision's `#cc`
/// and `#lang` are applied, rendered before the transaction records any of it (so an answer
/// the last check would withhold can be refused as a leak). `None` when nothing is relayed.
pub(super) fn prerender_reply(
    tx: &Tx<'_>,
    config: &Config,
    desk: &Desk<'_>,
    facts: &Facts<'_>,
    decision: &Decision,
    signer: Option<&Signer>,
    now: Timestamp,
) -> Result<Option<Result<Outgoing, RenderError>>, StoreError> {
    let agent = facts
        .author
        .agent()
        .and_then(|a| config.agents.by_address(a));
    let (Some(signer), Some(agent), Some(text), Some(ticket)) =
        (signer, agent, &facts.text, &facts.ticket)
    else {
        return Ok(None);
    };
    if !decision.relay {
        return Ok(None);
    }
    let mut after = ticket.clone();
    for change in &decision.cc {
        match change {
            CcChange::Add(address) => {
                if !after.customers.iter().any(|p| &p.address == address) {
                    after.customers.push(Person::new(address, None));
                }
            }
            CcChange::Remove(address) => after.customers.retain(|p| &p.address != address),
        }
    }
    if let Some(lang) = decision.language {
        after.language = Some(lang);
    }
    // Participants recorded before keys were kept inside are not copied either.
    let boundary = Boundary::from_config(config);
    after.customers.retain(|p| !boundary.is_inside(&p.address));
    let answers = tx.latest_customer_message(ticket.id)?;
    Ok(Some(render::reply(
        &desk.support,
        desk.templates,
        signer,
        ReplyFor {
            ticket: &after,
            agent,
            body: facts.answer_html().map_or(&text.body, |h| &h.text),
            answers: answers.as_ref(),
            attachments: &facts.attachments.files,
            html: facts.answer_html(),
        },
        now,
    )))
}

fn send_notes(
    out: &Effects<'_, '_>,
    s: &Sending<'_>,
    to: &[String],
) -> Result<Vec<OutboxId>, StoreError> {
    let Some((signer, author, body)) = authored(s) else {
        return Ok(Vec::new());
    };
    let mut queued = Vec::new();
    for to in agents_named(s.config, to) {
        let rendered = render::note(
            &s.desk.support,
            s.desk.templates,
            signer,
            to,
            NoteFor {
                ticket: s.state,
                author,
                body,
                attachments: &s.facts.attachments.files,
            },
            out.now(),
        );
        queued.extend(out.queue(MailKind::Note, Some(&to.address), rendered)?);
    }
    Ok(queued)
}

fn send_bounces(
    out: &Effects<'_, '_>,
    s: &Sending<'_>,
    to: &[String],
) -> Result<Vec<OutboxId>, StoreError> {
    let mut queued = Vec::new();
    for agent in agents_named(s.config, to) {
        let rendered = render::bounce(
            &s.desk.support,
            s.desk.templates,
            BounceFor {
                ticket: s.state,
                agent,
                failed: s.failed,
                message_id: s.facts.parsed.message_id.as_deref(),
            },
            out.now(),
        );
        queued.extend(out.queue(MailKind::Bounce, Some(&agent.address), rendered)?);
    }
    Ok(queued)
}

/// Tells the agent in `tell` about their mail (on `ticket`, or on none), unless
/// [`notice_limited`].
pub(super) fn tell_agent(
    out: &Effects<'_, '_>,
    config: &Config,
    ticket: Option<&TicketState>,
    (agent, notice): &(String, AgentNotice),
    parsed: &ParsedMessage,
) -> Result<Option<OutboxId>, StoreError> {
    let Some(agent) = config.agents.by_address(agent) else {
        return Ok(None);
    };
    if notice_limited(out, agent, notice)? {
        return Ok(None);
    }
    let rendered = render::notice(
        out.support,
        out.templates,
        NoticeFor {
            ticket,
            agent,
            notice,
            subject: &parsed.subject,
            message_id: parsed.message_id.as_deref(),
        },
        out.now(),
    );
    let data = json!({ "agent": agent.address, "notice": notice.kind() });
    let enqueued = out.enqueue(MailKind::Notice, Some(&agent.address), rendered, Some(data))?;
    Ok(enqueued.and_then(Enqueued::queued))
}

/// A notice about mail that proved nothing, when `agent` had one of its kind within the hour:
/// recorded as a `notice.limited` event instead, so a forger cannot fill the agent's inbox.
fn notice_limited(
    out: &Effects<'_, '_>,
    agent: &Agent,
    notice: &AgentNotice,
) -> Result<bool, StoreError> {
    if !notice.unproved() {
        return Ok(false);
    }
    let since = out.now() - LIMIT_WINDOW;
    let sent = out
        .tx()
        .notices_since(&agent.address, notice.kind(), since)?;
    if sent < UNPROVED_NOTICES_PER_HOUR {
        return Ok(false);
    }
    out.record(&NewEvent {
        kind: EventKind::NoticeLimited,
        outbox: None,
        detail: format!(
            "{} notice to {} not sent: one went out within the hour",
            notice.kind(),
            agent.address
        ),
        data: Some(json!({ "agent": agent.address, "notice": notice.kind() })),
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Class;
    use crate::policy::{DeadlineKind, NewDeadline, Role, TicketAction};

    const ALL: MailFacts = MailFacts {
        sender: true,
        signer: true,
        agent: true,
        agent_text: true,
        bounce_failed: true,
    };

    fn check(change: impl FnOnce(&mut Decision), facts: MailFacts, expect: &[Plan]) {
        let mut decision = Decision::new(TicketAction::Create, Role::Sender(Class::Customer));
        change(&mut decision);
        assert_eq!(mail_for(&decision, facts), expect, "{decision:?}");
    }

    fn agents(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn acknowledged(d: &mut Decision) {
        d.acknowledge = true;
        d.deadline = Some(NewDeadline {
            kind: DeadlineKind::FirstResponse,
            due_at: jiff::Timestamp::UNIX_EPOCH,
            warn_at: None,
        });
    }

    #[test]
    fn each_decision_plans_its_mail_in_order() {
        check(|_| {}, ALL, &[]);
        check(acknowledged, ALL, &[Plan::Ack]);
        // No From to answer, or no deadline to promise: no acknowledgement.
        let no_sender = MailFacts {
            sender: false,
            ..ALL
        };
        check(acknowledged, no_sender, &[]);
        check(|d| d.acknowledge = true, ALL, &[]);
        let notified = |d: &mut Decision| {
            acknowledged(d);
            d.notify = agents(&["a@x", "b@x"]);
        };
        check(
            notified,
            ALL,
            &[Plan::Ack, Plan::Notification(agents(&["a@x", "b@x"]))],
        );
        // Without a signer agents get no mail they could answer.
        let unsigned = MailFacts {
            signer: false,
            ..ALL
        };
        check(notified, unsigned, &[Plan::Ack]);
        check(notified, no_sender, &[]);
    }

    #[test]
    fn agent_mail_plans_the_relay_notes_and_a_notice() {
        let relayed = |d: &mut Decision| d.relay = true;
        // A relayed answer may be withheld at the last check: its author may need a notice.
        check(relayed, ALL, &[Plan::Reply, Plan::Notice]);
        let no_text = MailFacts {
            agent_text: false,
            ..ALL
        };
        check(relayed, no_text, &[]);
        let noted = |d: &mut Decision| d.note_to = agents(&["b@x"]);
        check(noted, ALL, &[Plan::Note(agents(&["b@x"]))]);
        check(noted, no_text, &[]);
        let told = |d: &mut Decision| d.tell = Some(("a@x".into(), AgentNotice::Empty));
        check(told, ALL, &[Plan::Notice]);
        check(told, no_text, &[Plan::Notice]);
    }

    #[test]
    fn a_bounce_of_customer_mail_tells_the_agents() {
        let bounce = |d: &mut Decision| d.bounce_to = agents(&["a@x"]);
        check(bounce, ALL, &[Plan::Bounce(agents(&["a@x"]))]);
        let nothing_failed = MailFacts {
            bounce_failed: false,
            ..ALL
        };
        check(bounce, nothing_failed, &[]);
        check(|_| {}, ALL, &[]);
    }
}
