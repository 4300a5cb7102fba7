//! The pure decide step.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::agent::Author;
use crate::agent::reply::leak::Leak;
use crate::agent::reply::{AgentText, CcChange, Command};
use crate::classify::{Class, NoAck};
use crate::config::{Deadlines, NotifyWho, Policy, Team, Warning};
use crate::language::Lang;
use crate::model::{Priority, TicketId, TicketState, TicketStatus};
use crate::thread::Threading;

/// What to do with the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketAction {
    /// Open a new ticket for this message.
    Create,
    /// Add the message to this existing ticket.
    Append(TicketId),
    /// Keep the message without a ticket: a bounce of nothing we sent, or a refused reply key
    /// naming no ticket.
    Unfiled,
}

/// Which answer an agent owes the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineKind {
    /// The first answer on a new ticket.
    FirstResponse,
    /// An answer to a later customer message on an existing ticket.
    NextResponse,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::FirstResponse => "first-response",
            DeadlineKind::NextResponse => "next-response",
        }
    }
}

/// What an inbound message is, once its author is known; stored as the message's class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An ordinary sender, or machine mail: the classifier's verdict stands.
    Sender(Class),
    /// A verified agent answer, relayed to the customer.
    AgentReply,
    /// An agent's Reply All straight to the customer: recorded and counted, not sent again.
    AgentDirect,
    /// A verified internal note.
    AgentNote,
    /// A verified reply carrying only commands.
    AgentCommands,
    /// A verified reply with a bad command, or nothing to send: the agent is told why.
    AgentRejected,
    /// Carried a reply key that did not fit its sender: kept for agents only.
    KeyRefused,
    /// The answer of a third party a ticket was forwarded to: for the agents only.
    ThirdParty,
}

impl Role {
    pub fn as_str(&self) -> String {
        match self {
            Role::Sender(class) => class.as_str(),
            agent => agent.kind().to_string(),
        }
    }

    /// A stable label (the class without its evidence) for metrics and KPIs.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Sender(class) => class.kind(),
            Role::AgentReply => "agent-reply",
            Role::AgentDirect => "agent-direct",
            Role::AgentNote => "agent-note",
            Role::AgentCommands => "agent-commands",
            Role::AgentRejected => "agent-rejected",
            Role::KeyRefused => "key-refused",
            Role::ThirdParty => "third-party",
        }
    }

    /// Only agents see it: its Message-ID must never thread anyone else's mail.
    pub fn internal(&self) -> bool {
        !matches!(self, Role::Sender(_) | Role::AgentDirect)
    }
}

/// Why an agent gets a mail about their own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentNotice {
    /// Unknown or malformed commands: nothing was applied or sent.
    BadCommands(Vec<String>),
    /// Nothing was left to send once quotes and the signature were removed.
    Empty,
    /// A reply key did not check out: the message was kept for agents only.
    Refused(String),
    /// Mail from the agent's address without a reply key: recorded as ordinary mail.
    Unsigned,
    /// The answer carries internal text (why): nothing was applied or sent.
    Leak(String),
    /// The answer was withheld at the last check before sending (why): as it would go out it
    /// carries a reply key or an inside address. Nothing was applied or sent.
    Withheld(String),
}

impl AgentNotice {
    /// A stable label: the notice template's `problem`, and the key notices are limited by.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentNotice::BadCommands(_) => "commands",
            AgentNotice::Empty => "empty",
            AgentNotice::Refused(_) => "refused",
            AgentNotice::Unsigned => "unsigned",
            AgentNotice::Leak(_) => "leak",
            AgentNotice::Withheld(_) => "withheld",
        }
    }

    /// About mail that proved nothing (anyone can send it): at most one an hour per agent and
    /// kind, or a forger fills the agent's inbox.
    pub fn unproved(&self) -> bool {
        matches!(self, AgentNotice::Refused(_) | AgentNotice::Unsigned)
    }
}

/// What the store knows about the sender's last hour, for the per-sender limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderLoad {
    /// Tickets this address opened in the last hour.
    pub new_tickets: u32,
    /// Acknowledgements queued to this address in the last hour.
    pub acknowledgements: u32,
    /// The address's most recent ticket, where mail beyond the ticket limit is recorded.
    pub latest_ticket: Option<TicketId>,
}

/// A per-sender limit that this message went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    NewTickets(u32),
    Acknowledgements(u32),
}

impl Limit {
    pub fn describe(self) -> String {
        match self {
            Limit::NewTickets(n) => {
                format!("more than {n} new tickets from this sender in an hour")
            }
            Limit::Acknowledgements(n) => {
                format!("more than {n} acknowledgements to this sender in an hour")
            }
        }
    }
}

/// When a message reached the folder, relative to deskgate watching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Arrived after deskgate first started on the folder.
    Live,
    /// Was already in the folder at the first start; `arrived_at` is the server's
    /// INTERNALDATE, if it gave one.
    Backlog {
        arrived_at: Option<Timestamp>,
        first_start: Timestamp,
    },
    /// Read again after the server reset UIDVALIDITY (and not already stored): new to us if
    /// it arrived after the mailbox's last sync (`last_sync`).
    Reread {
        arrived_at: Option<Timestamp>,
        last_sync: Timestamp,
    },
}

/// An inbound message with everything the decision needs, looked up beforehand.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub class: &'a Class,
    pub author: &'a Author,
    pub threading: Threading,
    /// The ticket it threads into, or that its reply key names.
    pub ticket: Option<&'a TicketState>,
    /// What an agent wrote (for verified agent mail).
    pub text: Option<&'a AgentText>,
    /// Everyone in To and Cc (lower case).
    pub recipients: &'a [String],
    /// The message's Date header.
    pub sent: Option<Timestamp>,
    /// Why a customer must not get an automatic answer, if so.
    pub no_ack: Option<&'a NoAck>,
    /// The sender's last hour, for the per-sender limits.
    pub load: SenderLoad,
    /// Whether it was already in the folder at the first start.
    pub arrival: Arrival,
    /// The satisfaction score the message gives (1-5), when its ticket awaits one.
    pub survey_score: Option<u8>,
    /// What an agent's answer carries that must not reach a customer (the relay's check).
    pub leak: Option<&'a Leak>,
}

/// A customer message now awaits an agent's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDeadline {
    pub kind: DeadlineKind,
    /// The answer is due by then (working time, as the acknowledgement promises).
    pub due_at: Timestamp,
    /// The assigned agent or the team is warned then, if a warning is configured.
    pub warn_at: Option<Timestamp>,
}

/// The outcome of [`decide`]: everything the ingest transaction must write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub ticket: TicketAction,
    pub role: Role,
    /// Send the customer an acknowledgement (only ever for a new ticket).
    pub acknowledge: bool,
    /// A new customer ticket that is not acknowledged, and why.
    pub withheld: Option<String>,
    /// A per-sender limit this message went past.
    pub limited: Option<Limit>,
    /// A customer message now awaits an agent.
    pub deadline: Option<NewDeadline>,
    /// The customer answered the satisfaction survey with this score.
    pub survey: Option<u8>,
    /// Set the ticket to this status.
    pub status: Option<TicketStatus>,
    pub assign: Option<String>,
    pub priority: Option<Priority>,
    /// An agent chose the language the customer is answered in.
    pub language: Option<Lang>,
    /// An agent changed who receives the ticket's answers.
    pub cc: Vec<CcChange>,
    /// An agent answered the customer at this time: the ticket's open deadlines are met.
    pub answered_at: Option<Timestamp>,
    /// Pass the agent's answer on to the customer.
    pub relay: bool,
    /// Agents told about this customer message.
    pub notify: Vec<String>,
    /// Agents told when this delivery report says our mail did not reach the customer.
    pub bounce_to: Vec<String>,
    /// Agents who receive this internal note.
    pub note_to: Vec<String>,
    /// An agent told about their own message: (agent, why).
    pub tell: Option<(String, AgentNotice)>,
    /// `#merge N`: the ticket joins ticket N (checked to exist before deciding).
    pub merge: Option<TicketId>,
    /// `#forward`: the conversation goes to this third party with the agent's words.
    pub forward: Option<(String, String)>,
    /// Backlog mail from a customer imported without acknowledgement, deadline (so it is
    /// never escalated either) or notification: older than
    /// `policy.acknowledge_backlog_within` at the first start.
    pub quiet: bool,
}

impl Decision {
    pub fn new(ticket: TicketAction, role: Role) -> Decision {
        Decision {
            ticket,
            role,
            acknowledge: false,
            withheld: None,
            limited: None,
            deadline: None,
            survey: None,
            status: None,
            assign: None,
            priority: None,
            language: None,
            cc: Vec::new(),
            answered_at: None,
            relay: false,
            notify: Vec::new(),
            bounce_to: Vec::new(),
            note_to: Vec::new(),
            tell: None,
            merge: None,
            forward: None,
            quiet: false,
        }
    }
}

/// Decides what an inbound message causes. `team` is the team of the ticket's mailbox.
pub fn decide(
    inbound: &Inbound<'_>,
    policy: &Policy,
    deadlines: &Deadlines,
    team: Option<&Team>,
    now: Timestamp,
) -> Decision {
    let automatic = !inbound.class.is_customer();
    match inbound.author {
        Author::Refused { tell, reason, .. } => {
            // Its References and subject are not used: the key's ticket, else no ticket at all
            // (a key naming no ticket must not open one per mail). Nobody is acknowledged,
            // timed or notified; the agent is told, on the key's ticket, unless a machine
            // wrote it.
            let Some(ticket) = inbound.ticket else {
                return Decision::new(TicketAction::Unfiled, Role::KeyRefused);
            };
            let mut decision = Decision::new(TicketAction::Append(ticket.id), Role::KeyRefused);
            decision.tell = tell
                .clone()
                .filter(|_| !automatic)
                .map(|agent| (agent, AgentNotice::Refused(reason.clone())));
            decision
        }
        // An agent's out-of-office answering a notification is machine mail like any other.
        _ if automatic => ordinary(inbound, policy, deadlines, team, now, false),
        Author::Other => ordinary(inbound, policy, deadlines, team, now, false),
        // No key, no proof: whatever it says (a Reply All to the customer included), it acts
        // as nobody. Recorded as ordinary mail, unanswered, and the agent hears of it. Mail
        // that threads into no ticket opens none (anyone can send it: each would be a
        // ticket without a customer); it is kept on no ticket.
        Author::Unsigned { agent } => {
            let mut decision = match inbound.threading.ticket() {
                Some(_) => ordinary(inbound, policy, deadlines, team, now, true),
                None => Decision::new(TicketAction::Unfiled, Role::Sender(inbound.class.clone())),
            };
            decision.tell = Some((agent.clone(), AgentNotice::Unsigned));
            decision
        }
        Author::Verified {
            agent, to_notes, ..
        } => match (inbound.ticket, inbound.text) {
            (Some(ticket), _) if writes_to_customer(ticket, inbound) => {
                // A proved Reply All: the customer has it already; counted, not sent again.
                let mut decision =
                    Decision::new(TicketAction::Append(ticket.id), Role::AgentDirect);
                decision.answered_at = Some(answer_time(inbound.sent, ticket, now));
                decision.assign = ticket.assigned.is_none().then(|| agent.clone());
                decision
            }
            (Some(ticket), Some(text)) => {
                agent_reply(ticket, text, agent, *to_notes, inbound, team, now)
            }
            // ingest turns a key naming no ticket into `Refused`; nothing to act on otherwise.
            _ => ordinary(inbound, policy, deadlines, team, now, true),
        },
    }
}

/// The agent's mail went to one of the ticket's customers directly (a Reply All).
fn writes_to_customer(ticket: &TicketState, inbound: &Inbound<'_>) -> bool {
    ticket
        .customers
        .iter()
        .any(|c| inbound.recipients.contains(&c.address))
}

/// A customer's (or a stranger's, or a machine's) message.
fn ordinary(
    inbound: &Inbound<'_>,
    policy: &Policy,
    deadlines: &Deadlines,
    team: Option<&Team>,
    now: Timestamp,
    from_agent: bool,
) -> Decision {
    let load = inbound.load;
    let mut limited = None;
    let ticket = match inbound.threading.ticket() {
        Some(id) => TicketAction::Append(id),
        None if matches!(inbound.class, Class::Bounce(_)) => TicketAction::Unfiled,
        None => match load.latest_ticket {
            Some(latest) if load.new_tickets >= policy.new_tickets_per_hour => {
                limited = Some(Limit::NewTickets(policy.new_tickets_per_hour));
                TicketAction::Append(latest)
            }
            _ => TicketAction::Create,
        },
    };
    let mut decision = Decision::new(ticket, Role::Sender(inbound.class.clone()));
    decision.limited = limited;
    let assigned = inbound.ticket.and_then(|t| t.assigned.as_deref());
    if let (Class::Bounce(_), TicketAction::Append(_), Some(team)) = (inbound.class, ticket, team) {
        decision.bounce_to = recipients(team, NotifyWho::Assigned, assigned);
    }
    if from_agent || !inbound.class.is_customer() {
        return decision;
    }
    if is_old_backlog(inbound.arrival, policy) {
        decision.quiet = true;
        return decision;
    }
    if let (TicketAction::Append(_), Some(score)) = (ticket, inbound.survey_score) {
        // A satisfaction score is an answer to us, not a question for an agent.
        decision.survey = Some(score);
        return decision;
    }
    let (kind, wait) = match ticket {
        TicketAction::Create => (DeadlineKind::FirstResponse, deadlines.first_response),
        TicketAction::Append(_) | TicketAction::Unfiled => {
            (DeadlineKind::NextResponse, deadlines.next_response)
        }
    };
    decision.deadline = Some(new_deadline(kind, deadlines, now, wait));
    if ticket == TicketAction::Create {
        if let Some(reason) = inbound.no_ack {
            decision.withheld = Some(reason.describe());
        } else if load.acknowledgements >= policy.acknowledgements_per_hour {
            let limit = Limit::Acknowledgements(policy.acknowledgements_per_hour);
            decision.withheld = Some(limit.describe());
            decision.limited = Some(limit);
        }
        decision.acknowledge = decision.withheld.is_none();
    }
    if let Some(state) = inbound.ticket
        && state.status != TicketStatus::Open
    {
        decision.status = Some(TicketStatus::Open);
    }
    decision.notify = match (ticket, team) {
        (_, None) | (TicketAction::Unfiled, _) => Vec::new(),
        (TicketAction::Create, Some(team)) => recipients(team, team.notify_new_ticket, None),
        (TicketAction::Append(_), Some(team)) => {
            recipients(team, team.notify_customer_reply, assigned)
        }
    };
    decision
}

fn agent_reply(
    ticket: &TicketState,
    text: &AgentText,
    agent: &str,
    to_notes: bool,
    inbound: &Inbound<'_>,
    team: Option<&Team>,
    now: Timestamp,
) -> Decision {
    let append = TicketAction::Append(ticket.id);
    let mut errors = text.errors.clone();
    errors.extend(text.commands.iter().filter_map(|c| cc_refused(c, ticket)));
    if !errors.is_empty() {
        return rejected(append, agent, AgentNotice::BadCommands(errors));
    }
    let note = text.note || to_notes;
    let role = match (note, text.body.is_empty(), text.commands.is_empty()) {
        (true, false, _) => Role::AgentNote,
        (false, false, _) => Role::AgentReply,
        (_, true, false) => Role::AgentCommands,
        (_, true, true) => return rejected(append, agent, AgentNotice::Empty),
    };
    if let (Role::AgentReply, Some(leak)) = (&role, inbound.leak) {
        let notice = match leak {
            Leak::Outgoing(why) => AgentNotice::Withheld(why.clone()),
            other => AgentNotice::Leak(other.describe()),
        };
        return rejected(append, agent, notice);
    }
    let mut decision = Decision::new(append, role.clone());
    for command in &text.commands {
        match command {
            Command::Status(status) => decision.status = Some(*status),
            Command::Assign(to) => decision.assign = Some(to.clone()),
            Command::Priority(p) => decision.priority = Some(*p),
            Command::Language(l) => decision.language = Some(*l),
            Command::Merge(into) => decision.merge = Some(*into),
            Command::Forward { to, text } => decision.forward = Some((to.clone(), text.clone())),
            Command::Cc(change) => decision.cc.push(change.clone()),
        }
    }
    match role {
        Role::AgentReply => {
            decision.relay = true;
            decision.answered_at = Some(answer_time(inbound.sent, ticket, now));
            if decision.assign.is_none() && ticket.assigned.is_none() {
                decision.assign = Some(agent.to_string());
            }
            if decision.status.is_none()
                && matches!(ticket.status, TicketStatus::Resolved | TicketStatus::Closed)
            {
                decision.status = Some(TicketStatus::Open);
            }
        }
        Role::AgentNote => {
            let mut to: Vec<String> = team.map(|t| t.members.clone()).unwrap_or_default();
            to.extend(ticket.assigned.clone());
            to.retain(|a| a != agent);
            to.sort();
            to.dedup();
            decision.note_to = to;
        }
        _ => {}
    }
    decision
}

/// An agent's mail not acted on: nothing applied, the agent told why.
fn rejected(append: TicketAction, agent: &str, why: AgentNotice) -> Decision {
    let mut decision = Decision::new(append, Role::AgentRejected);
    decision.tell = Some((agent.to_string(), why));
    decision
}

/// Why `#cc remove` cannot apply to `ticket`: the address is its customer, or no recipient.
fn cc_refused(command: &Command, ticket: &TicketState) -> Option<String> {
    let Command::Cc(CcChange::Remove(address)) = command else {
        return None;
    };
    if ticket
        .customer
        .as_ref()
        .is_some_and(|c| &c.address == address)
    {
        return Some(format!(
            "`#cc remove {address}`: {address} is the ticket's customer, who always receives the answers"
        ));
    }
    (!ticket.customers.iter().any(|c| &c.address == address)).then(|| {
        format!("`#cc remove {address}`: {address} does not receive this ticket's answers")
    })
}

/// When the agent answered: their Date header, kept between the ticket's creation and now
/// (a late fetch must not count against the agent, a wrong clock must not count for them).
fn answer_time(sent: Option<Timestamp>, ticket: &TicketState, now: Timestamp) -> Timestamp {
    sent.map_or(now, |sent| sent.clamp(ticket.created_at, now))
}

/// The agents `who` names within `team`.
fn recipients(team: &Team, who: NotifyWho, assigned: Option<&str>) -> Vec<String> {
    match (who, assigned) {
        (NotifyWho::None, _) => Vec::new(),
        (NotifyWho::Assigned, Some(agent)) => vec![agent.to_string()],
        (NotifyWho::Assigned, None) | (NotifyWho::Team, _) => team.members.clone(),
    }
}

/// Backlog mail is old unless it arrived within `acknowledge_backlog_within` before the first
/// start (its UID already proves it was there before). Mail read again after a UIDVALIDITY
/// reset is old if it arrived before the last sync (less the same window); INTERNALDATE has
/// whole seconds, so the last sync's own second counts as after it. Unknown arrival: old.
fn is_old_backlog(arrival: Arrival, policy: &Policy) -> bool {
    let window = policy.acknowledge_backlog_within;
    match arrival {
        Arrival::Live => false,
        Arrival::Backlog {
            arrived_at,
            first_start,
        } => window.is_zero() || arrived_at.is_none_or(|at| at < before(first_start, window)),
        Arrival::Reread {
            arrived_at,
            last_sync,
        } => arrived_at.is_none_or(|at| at.as_second() < before(last_sync, window).as_second()),
    }
}

/// `at - span`, saturating at the beginning of time.
pub fn before(at: Timestamp, span: Duration) -> Timestamp {
    SignedDuration::try_from(span)
        .ok()
        .and_then(|d| at.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// A deadline of `wait` working time from `start`, and its warning time: the same calculation
/// the acknowledgement's promise and the scheduler use.
pub fn new_deadline(
    kind: DeadlineKind,
    deadlines: &Deadlines,
    start: Timestamp,
    wait: Duration,
) -> NewDeadline {
    let calendar = &deadlines.calendar;
    let due_at = calendar.add(start, wait);
    let warn_at = match deadlines.warning {
        None => None,
        Some(Warning::Before(lead)) => wait
            .checked_sub(lead)
            .filter(|w| !w.is_zero())
            .map(|w| calendar.add(start, w)),
        Some(Warning::Share(percent)) => {
            Some(calendar.add(start, wait.mul_f64(f64::from(percent) / 100.0)))
        }
    }
    .filter(|at| *at < due_at);
    NewDeadline {
        kind,
        due_at,
        warn_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Via;
    use crate::classify::Signal;
    use crate::model::Person;

    fn policy() -> Policy {
        Policy {
            new_tickets_per_hour: 10,
            acknowledgements_per_hour: 5,
            max_message_size: 25 << 20,
            carry_attachments: 10 << 20,
            max_cc_per_message: 10,
            no_ack_domains: Vec::new(),
            acknowledge_backlog_within: Duration::ZERO,
        }
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn team() -> Team {
        Team {
            name: "t".into(),
            members: vec!["a1@x.test".into(), "a2@x.test".into()],
            mailboxes: vec![],
            notify_new_ticket: NotifyWho::Team,
            notify_customer_reply: NotifyWho::Assigned,
        }
    }

    fn ticket(status: TicketStatus, assigned: Option<&str>) -> TicketState {
        TicketState {
            id: TicketId(4),
            mailbox: "support".into(),
            subject: "Printer".into(),
            status,
            priority: Priority::Normal,
            assigned: assigned.map(String::from),
            customer: Some(Person::new("mona@example.net", None)),
            customers: vec![
                Person::new("mona@example.net", None),
                Person::new("boss@example.net", None),
            ],
            created_at: "2026-11-23T08:00:00Z".parse().unwrap(),
            language: None,
            address: None,
        }
    }

    fn customer<'a>(threading: Threading, state: Option<&'a TicketState>) -> Inbound<'a> {
        Inbound {
            class: &Class::Customer,
            author: &Author::Other,
            threading,
            ticket: state,
            text: None,
            recipients: &[],
            sent: None,
            no_ack: None,
            load: SenderLoad::default(),
            arrival: Arrival::Live,
            survey_score: None,
            leak: None,
        }
    }

    /// `decide` with the usual policy, deadlines, team and clock.
    fn decided(inbound: &Inbound<'_>) -> Decision {
        decide(
            inbound,
            &policy(),
            &Deadlines::default(),
            Some(&team()),
            now(),
        )
    }

    fn text(body: &str) -> AgentText {
        AgentText {
            body: body.into(),
            ..AgentText::default()
        }
    }

    fn verified(agent: &str) -> Author {
        Author::Verified {
            agent: agent.into(),
            ticket: TicketId(4),
            via: Via::Address,
            to_notes: false,
        }
    }

    #[test]
    fn new_customer_message_is_acknowledged_timed_and_notified_to_the_team() {
        let d = decide(
            &customer(Threading::New, None),
            &policy(),
            &Deadlines::default(),
            Some(&team()),
            now(),
        );
        assert_eq!(d.ticket, TicketAction::Create);
        assert!(d.acknowledge);
        assert_eq!(
            d.deadline,
            Some(NewDeadline {
                kind: DeadlineKind::FirstResponse,
                due_at: "2026-11-24T10:00:00Z".parse().unwrap(),
                warn_at: Some("2026-11-24T04:00:00Z".parse().unwrap()),
            }),
            "24 h, warned at 75 %"
        );
        assert_eq!(d.notify, vec!["a1@x.test", "a2@x.test"]);
        assert_eq!(d.role, Role::Sender(Class::Customer));
    }

    #[test]
    fn a_reply_reopens_is_not_acknowledged_and_goes_to_the_assigned_agent() {
        let state = ticket(TicketStatus::Pending, Some("a2@x.test"));
        for threading in [
            Threading::Reference(TicketId(4)),
            Threading::Tag(TicketId(4)),
        ] {
            let d = decide(
                &customer(threading, Some(&state)),
                &policy(),
                &Deadlines::default(),
                Some(&team()),
                now(),
            );
            assert_eq!(d.ticket, TicketAction::Append(TicketId(4)));
            assert!(!d.acknowledge);
            assert_eq!(d.status, Some(TicketStatus::Open));
            assert_eq!(d.deadline.map(|d| d.kind), Some(DeadlineKind::NextResponse));
            assert_eq!(d.notify, vec!["a2@x.test"]);
        }
    }

    #[test]
    fn a_guessed_tag_opens_a_new_acknowledged_ticket() {
        let d = decide(
            &customer(Threading::NewIgnoringTag(TicketId(4)), None),
            &policy(),
            &Deadlines::default(),
            None,
            now(),
        );
        assert_eq!(d.ticket, TicketAction::Create);
        assert!(d.acknowledge);
        assert!(d.notify.is_empty(), "no team, nobody to tell");
    }

    #[test]
    fn automatic_mail_is_recorded_but_never_answered_timed_or_relayed() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Open, None);
        let body = text("I am out of office");
        for class in [
            Class::AutoReply(Signal::NullReturnPath),
            Class::Bulk(Signal::ListId),
            Class::Quarantine("released".into()),
        ] {
            let inbound = Inbound {
                class: &class,
                author: &author,
                text: Some(&body),
                ..customer(Threading::New, Some(&state))
            };
            let d = decided(&inbound);
            assert_eq!(d.ticket, TicketAction::Create);
            assert!(!d.acknowledge && !d.relay);
            assert_eq!(d.deadline, None);
            assert_eq!(d.answered_at, None);
            assert!(d.notify.is_empty());
        }
    }

    #[test]
    fn merge_and_forward_are_commands_not_answers() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Open, None);
        let read = crate::agent::reply::read(
            "#merge 7\n#forward parts@supplier.test Stock?\n\nTwo, please.",
            &crate::agent::fixtures::agents(),
            &["support@x.test".to_string()],
        );
        let inbound = Inbound {
            author: &author,
            text: Some(&read),
            ..customer(Threading::Signed(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentCommands);
        assert!(
            !d.relay && d.answered_at.is_none(),
            "nothing reaches the customer"
        );
        assert_eq!(d.merge, Some(TicketId(7)));
        assert_eq!(
            d.forward,
            Some((
                "parts@supplier.test".into(),
                "Stock?\n\nTwo, please.".into()
            ))
        );
    }

    #[test]
    fn a_verified_reply_is_relayed_counted_and_assigns_the_agent() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Closed, None);
        let body = text("Please restart it.");
        let sent: Timestamp = "2026-11-23T09:30:00Z".parse().unwrap();
        let inbound = Inbound {
            author: &author,
            text: Some(&body),
            sent: Some(sent),
            ..customer(Threading::Signed(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentReply);
        assert!(d.relay && !d.acknowledge);
        assert_eq!(d.answered_at, Some(sent));
        assert_eq!(d.assign.as_deref(), Some("a1@x.test"));
        assert_eq!(
            d.status,
            Some(TicketStatus::Open),
            "a closed ticket reopens"
        );
        assert!(d.notify.is_empty() && d.deadline.is_none());
    }

    #[test]
    fn an_answer_carrying_internal_text_is_not_relayed_nor_applied() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Open, None);
        let mut body = text("Sure.\n> The whole conversation, oldest first:");
        body.commands = vec![Command::Status(TicketStatus::Closed)];
        let leak = Leak::Boilerplate {
            excerpt: "the whole conversation oldest first".into(),
        };
        let inbound = Inbound {
            author: &author,
            text: Some(&body),
            leak: Some(&leak),
            ..customer(Threading::Signed(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentRejected);
        assert!(!d.relay && d.answered_at.is_none() && d.status.is_none());
        assert!(
            matches!(&d.tell, Some((a, AgentNotice::Leak(why))) if a == "a1@x.test" && why.contains("oldest first")),
            "{:?}",
            d.tell
        );
        // A note is for agents: the same text is no leak there.
        let mut note = body.clone();
        note.note = true;
        let inbound = Inbound {
            text: Some(&note),
            ..inbound
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentNote);
    }

    #[test]
    fn cc_changes_apply_unless_they_remove_the_customer_or_a_stranger() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Open, None);
        let decide_with = |commands: Vec<Command>| {
            let mut body = text("Copying accounts.");
            body.commands = commands;
            let inbound = Inbound {
                author: &author,
                text: Some(&body),
                ..customer(Threading::Signed(TicketId(4)), Some(&state))
            };
            decided(&inbound)
        };
        let changes = vec![
            CcChange::Add("accounts@example.net".into()),
            CcChange::Remove("boss@example.net".into()),
        ];
        let d = decide_with(changes.iter().cloned().map(Command::Cc).collect());
        assert_eq!(d.role, Role::AgentReply);
        assert_eq!(d.cc, changes);
        for (address, why) in [
            ("mona@example.net", "the ticket's customer"),
            ("nobody@example.net", "does not receive"),
        ] {
            let d = decide_with(vec![Command::Cc(CcChange::Remove(address.into()))]);
            assert_eq!(d.role, Role::AgentRejected, "{address}");
            assert!(d.cc.is_empty() && !d.relay);
            assert!(
                matches!(&d.tell, Some((_, AgentNotice::BadCommands(e))) if e[0].contains(why)),
                "{:?}",
                d.tell
            );
        }
    }

    #[test]
    fn the_answer_time_stays_between_the_ticket_and_now() {
        let state = ticket(TicketStatus::Open, None);
        assert_eq!(answer_time(None, &state, now()), now());
        let future: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(answer_time(Some(future), &state, now()), now());
        assert_eq!(
            answer_time(Some(Timestamp::UNIX_EPOCH), &state, now()),
            state.created_at
        );
    }

    #[test]
    fn a_note_goes_to_the_other_agents_only() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Open, Some("a3@x.test"));
        let mut body = text("VIP customer");
        body.note = true;
        let inbound = Inbound {
            author: &author,
            text: Some(&body),
            ..customer(Threading::Signed(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentNote);
        assert!(!d.relay && d.answered_at.is_none());
        assert_eq!(d.note_to, vec!["a2@x.test", "a3@x.test"]);
    }

    #[test]
    fn commands_apply_and_bad_commands_apply_nothing() {
        let author = verified("a1@x.test");
        let state = ticket(TicketStatus::Open, None);
        let mut body = text("");
        body.commands = vec![
            Command::Status(TicketStatus::Closed),
            Command::Priority(Priority::Urgent),
        ];
        let inbound = Inbound {
            author: &author,
            text: Some(&body),
            ..customer(Threading::Signed(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentCommands);
        assert_eq!(d.status, Some(TicketStatus::Closed));
        assert_eq!(d.priority, Some(Priority::Urgent));
        assert!(!d.relay && d.tell.is_none());

        let mut bad = body.clone();
        bad.errors = vec!["`#frob`: unknown".into()];
        let inbound = Inbound {
            text: Some(&bad),
            ..inbound
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentRejected);
        assert_eq!(d.status, None);
        assert!(matches!(d.tell, Some((_, AgentNotice::BadCommands(_)))));

        let empty = text("");
        let inbound = Inbound {
            text: Some(&empty),
            ..inbound
        };
        let d = decided(&inbound);
        assert_eq!(d.tell, Some(("a1@x.test".into(), AgentNotice::Empty)));
    }

    #[test]
    fn a_proved_reply_all_is_counted_not_relayed_an_unproved_one_acts_as_nobody() {
        let state = ticket(TicketStatus::Open, None);
        let recipients = vec!["mona@example.net".to_string(), "support@x.test".into()];
        let body = text("Try resetting your password.");
        let sent: Timestamp = "2026-11-23T09:30:00Z".parse().unwrap();
        let verified = verified("a2@x.test");
        let inbound = Inbound {
            author: &verified,
            recipients: &recipients,
            text: Some(&body),
            sent: Some(sent),
            ..customer(Threading::Signed(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::AgentDirect);
        assert_eq!(d.answered_at, Some(sent));
        assert_eq!(d.assign.as_deref(), Some("a2@x.test"));
        assert!(!d.relay && d.tell.is_none() && !d.acknowledge);

        let unsigned = Author::Unsigned {
            agent: "a2@x.test".into(),
        };
        let inbound = Inbound {
            author: &unsigned,
            text: None,
            ..customer(Threading::Reference(TicketId(4)), Some(&state))
        };
        let d = decided(&inbound);
        assert_eq!(d.role, Role::Sender(Class::Customer));
        assert_eq!(d.ticket, TicketAction::Append(TicketId(4)));
        assert_eq!(d.answered_at, None, "no clock stops");
        assert_eq!(d.assign, None);
        assert!(d.note_to.is_empty() && !d.relay && d.deadline.is_none());
        assert_eq!(d.tell, Some(("a2@x.test".into(), AgentNotice::Unsigned)));
    }

    /// Red team: forged agent mail threading into no ticket, sent again and again, opens no
    /// ticket (each would have no customer, outside the per-sender limits); the agent is told.
    #[test]
    fn unsigned_agent_mail_on_no_ticket_opens_none() {
        let author = Author::Unsigned {
            agent: "a2@x.test".into(),
        };
        for load in [
            SenderLoad::default(),
            SenderLoad {
                new_tickets: 50,
                acknowledgements: 50,
                latest_ticket: Some(TicketId(9)),
            },
        ] {
            let inbound = Inbound {
                author: &author,
                load,
                ..customer(Threading::New, None)
            };
            let d = decided(&inbound);
            assert_eq!(d.ticket, TicketAction::Unfiled, "{load:?}");
            assert!(!d.acknowledge && !d.relay && d.deadline.is_none() && d.notify.is_empty());
            assert_eq!(d.tell, Some(("a2@x.test".into(), AgentNotice::Unsigned)));
        }
        // The same mail from a customer opens a ticket.
        let d = decided(&customer(Threading::New, None));
        assert_eq!(d.ticket, TicketAction::Create);
    }

    #[test]
    fn a_refused_key_is_kept_for_agents_and_the_agent_is_told() {
        let author = Author::Refused {
            ticket: TicketId(4),
            tell: Some("a1@x.test".into()),
            reason: "bad".into(),
        };
        let state = ticket(TicketStatus::Open, None);
        for (threading, state, action, told) in [
            // A key naming no ticket opens none, and there is no ticket to tell anyone about.
            (Threading::New, None, TicketAction::Unfiled, false),
            (
                Threading::Claimed(TicketId(4)),
                Some(&state),
                TicketAction::Append(TicketId(4)),
                true,
            ),
        ] {
            let inbound = Inbound {
                author: &author,
                ..customer(threading, state)
            };
            let d = decided(&inbound);
            assert_eq!(d.ticket, action);
            assert_eq!(d.role, Role::KeyRefused);
            assert!(d.role.internal());
            assert!(!d.acknowledge && !d.relay && d.deadline.is_none() && d.notify.is_empty());
            assert!(d.answered_at.is_none() && d.status.is_none() && d.assign.is_none());
            let tell = Some(("a1@x.test".into(), AgentNotice::Refused("bad".into())));
            assert_eq!(d.tell, tell.filter(|_| told));
        }
        let automatic = Inbound {
            class: &Class::AutoReply(Signal::NullReturnPath),
            author: &author,
            ..customer(Threading::Claimed(TicketId(4)), Some(&state))
        };
        let d = decided(&automatic);
        assert_eq!(d.role, Role::KeyRefused, "internal, machine or not");
        assert_eq!(d.tell, None, "no notice answers a machine");
    }

    #[test]
    fn bounces_join_the_ticket_they_return_or_none() {
        let class = Class::Bounce(Signal::MailerDaemon);
        let state = ticket(TicketStatus::Pending, None);
        let linked = decide(
            &Inbound {
                class: &class,
                ..customer(Threading::Reference(TicketId(4)), Some(&state))
            },
            &policy(),
            &Deadlines::default(),
            Some(&team()),
            now(),
        );
        assert_eq!(linked.ticket, TicketAction::Append(TicketId(4)));
        assert!(!linked.acknowledge && linked.deadline.is_none() && linked.status.is_none());
        assert!(linked.notify.is_empty(), "a bounce is no customer message");
        assert_eq!(
            linked.bounce_to,
            team().members,
            "nobody assigned: the team hears of it"
        );
        let stray = decide(
            &Inbound {
                class: &class,
                ..customer(Threading::New, None)
            },
            &policy(),
            &Deadlines::default(),
            Some(&team()),
            now(),
        );
        assert_eq!(stray.ticket, TicketAction::Unfiled);
        assert!(stray.notify.is_empty());
    }

    #[test]
    fn no_ack_reasons_withhold_the_acknowledgement_but_keep_the_ticket() {
        let reason = NoAck::NoReplyAddress;
        let d = decide(
            &Inbound {
                no_ack: Some(&reason),
                ..customer(Threading::New, None)
            },
            &policy(),
            &Deadlines::default(),
            None,
            now(),
        );
        assert_eq!(d.ticket, TicketAction::Create);
        assert!(!d.acknowledge);
        assert_eq!(d.withheld, Some(reason.describe()));
        assert!(d.deadline.is_some());
    }

    #[test]
    fn per_sender_limits() {
        let busy = |new_tickets, acknowledgements| Inbound {
            load: SenderLoad {
                new_tickets,
                acknowledgements,
                latest_ticket: Some(TicketId(3)),
            },
            ..customer(Threading::New, None)
        };
        let under = decide(&busy(9, 4), &policy(), &Deadlines::default(), None, now());
        assert_eq!(under.ticket, TicketAction::Create);
        assert!(under.acknowledge && under.limited.is_none());
        let no_more_acks = decide(&busy(5, 5), &policy(), &Deadlines::default(), None, now());
        assert_eq!(no_more_acks.ticket, TicketAction::Create);
        assert!(!no_more_acks.acknowledge);
        assert_eq!(no_more_acks.limited, Some(Limit::Acknowledgements(5)));
        let no_more_tickets = decide(&busy(10, 5), &policy(), &Deadlines::default(), None, now());
        assert_eq!(no_more_tickets.ticket, TicketAction::Append(TicketId(3)));
        assert!(!no_more_tickets.acknowledge);
        assert_eq!(no_more_tickets.limited, Some(Limit::NewTickets(10)));
    }

    #[test]
    fn huge_policies_saturate() {
        let d = new_deadline(
            DeadlineKind::FirstResponse,
            &Deadlines::default(),
            now(),
            Duration::from_secs(u64::MAX),
        );
        assert_eq!(d.due_at, Timestamp::MAX);
        assert_eq!(
            d.warn_at, None,
            "a warning at the end of time is no warning"
        );
    }

    #[test]
    fn warnings_come_before_the_deadline_or_not_at_all() {
        let hour = Duration::from_secs(3600);
        let with = |warning| Deadlines {
            warning,
            ..Deadlines::default()
        };
        let at = |w| new_deadline(DeadlineKind::FirstResponse, &with(w), now(), 24 * hour);
        assert_eq!(
            at(Some(Warning::Before(2 * hour))).warn_at,
            Some(now() + SignedDuration::from_hours(22))
        );
        assert_eq!(at(Some(Warning::Before(24 * hour))).warn_at, None);
        assert_eq!(at(Some(Warning::Before(30 * hour))).warn_at, None);
        assert_eq!(
            at(Some(Warning::Share(50))).warn_at,
            Some(now() + SignedDuration::from_hours(12))
        );
        assert_eq!(at(None).warn_at, None);
    }

    #[test]
    fn next_response_has_its_own_time() {
        let state = ticket(TicketStatus::Open, None);
        let deadlines = Deadlines {
            next_response: Duration::from_secs(4 * 3600),
            ..Deadlines::default()
        };
        let d = decide(
            &customer(Threading::Reference(TicketId(4)), Some(&state)),
            &policy(),
            &deadlines,
            None,
            now(),
        );
        assert_eq!(
            d.deadline.map(|d| (d.kind, d.due_at)),
            Some((
                DeadlineKind::NextResponse,
                now() + SignedDuration::from_hours(4)
            ))
        );
    }

    #[test]
    fn a_survey_score_is_recorded_not_answered() {
        let state = ticket(TicketStatus::Resolved, Some("a2@x.test"));
        let d = decide(
            &Inbound {
                survey_score: Some(4),
                leak: None,
                ..customer(Threading::Reference(TicketId(4)), Some(&state))
            },
            &policy(),
            &Deadlines::default(),
            Some(&team()),
            now(),
        );
        assert_eq!(d.survey, Some(4));
        assert_eq!(d.status, None, "a score does not reopen the ticket");
        assert!(d.deadline.is_none() && d.notify.is_empty() && !d.acknowledge);
    }

    fn backlog(minutes_before_start: i64) -> Arrival {
        Arrival::Backlog {
            arrived_at: Some(now() - SignedDuration::from_mins(minutes_before_start)),
            first_start: now(),
        }
    }

    fn arriving(arrival: Arrival, threading: Threading) -> Inbound<'static> {
        Inbound {
            arrival,
            ..customer(threading, None)
        }
    }

    #[test]
    fn backlog_is_imported_quietly_by_default() {
        for arrival in [
            backlog(1),
            backlog(60 * 24 * 30),
            Arrival::Backlog {
                arrived_at: None,
                first_start: now(),
            },
            // Without a window, even mail from the start's own second is old.
            Arrival::Backlog {
                arrived_at: Some(now()),
                first_start: now() + SignedDuration::from_millis(900),
            },
        ] {
            let d = decide(
                &arriving(arrival, Threading::New),
                &policy(),
                &Deadlines::default(),
                Some(&team()),
                now(),
            );
            assert_eq!(d.ticket, TicketAction::Create);
            assert!(d.quiet, "{arrival:?}");
            assert!(!d.acknowledge);
            assert_eq!(d.deadline, None, "never escalated either");
            assert!(d.notify.is_empty(), "agents are not paged for old mail");
        }
    }

    #[test]
    fn recent_backlog_is_acknowledged_within_the_window() {
        let policy = Policy {
            acknowledge_backlog_within: Duration::from_secs(3600),
            ..policy()
        };
        let later = now() + SignedDuration::from_mins(5);
        let recent = decide(
            &arriving(backlog(59), Threading::New),
            &policy,
            &Deadlines::default(),
            None,
            later,
        );
        assert!(!recent.quiet);
        assert!(recent.acknowledge);
        assert_eq!(
            recent.deadline.map(|d| d.due_at),
            Some(later + SignedDuration::from_hours(24))
        );
        let old = decide(
            &arriving(backlog(61), Threading::New),
            &policy,
            &Deadlines::default(),
            None,
            later,
        );
        assert!(old.quiet && !old.acknowledge);
    }

    #[test]
    fn after_a_uidvalidity_reset_only_mail_since_the_last_sync_is_acknowledged() {
        let reread = |arrived: &str| Arrival::Reread {
            arrived_at: Some(arrived.parse().unwrap()),
            last_sync: "2026-11-23T10:00:00.900Z".parse().unwrap(),
        };
        let decide_at = |arrival| {
            decide(
                &arriving(arrival, Threading::New),
                &policy(),
                &Deadlines::default(),
                None,
                now(),
            )
        };
        assert!(decide_at(reread("2026-11-23T09:59:59Z")).quiet);
        // INTERNALDATE has whole seconds: the last sync's own second counts as after it.
        assert!(!decide_at(reread("2026-11-23T10:00:00Z")).quiet);
        assert!(decide_at(reread("2026-11-23T10:05:00Z")).acknowledge);
    }

    #[test]
    fn automatic_backlog_is_not_counted_quiet_and_huge_spans_saturate() {
        let bounce = Inbound {
            class: &Class::AutoReply(Signal::NullReturnPath),
            ..arriving(backlog(90), Threading::New)
        };
        let d = decide(&bounce, &policy(), &Deadlines::default(), None, now());
        assert!(!d.quiet && !d.acknowledge && d.deadline.is_none());
        assert_eq!(before(now(), Duration::from_secs(u64::MAX)), Timestamp::MIN);
    }
}
