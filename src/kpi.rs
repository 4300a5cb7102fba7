//! KPIs: the figures of `deskgate stats` and `deskgate report`, computed by pure functions
//! from the recorded events (ARCHITECTURE.md, "Events") and from nothing else.
//!
//! A figure for a period is a function of the events recorded before the period's end: the
//! store loads exactly those ([`crate::store::Tx::kpi_events`]), and [`Ledger`] replays them
//! from the first (the backlog at the period's end needs every ticket ever opened). Events
//! recorded later never change it, so last week's figures are the same today and next month.
//!
//! Definitions (README.md "Support figures" says the same for admins):
//! - **opened**: `ticket.created` in the period (`opened_quietly`: of them, backlog imported
//!   at a first start without acknowledgement).
//! - **resolved**: `ticket.status` into resolved or closed from open or pending, in the
//!   period (a ticket reopened and resolved again counts twice; auto-close of a resolved
//!   ticket does not count).
//! - **first response**: `ticket.first_response` in the period; median and p90 by nearest
//!   rank (a time some ticket really had).
//! - **within policy**: each deadline counts once, in the period of its first outcome: met by
//!   its due time (`deadline.met` with `within`), or late (`deadline.breached`, or
//!   `deadline.met` without `within` when no breach came first). A deadline breached and still
//!   unanswered counts as late; one whose ticket was resolved before it came due has no
//!   outcome and does not count. `share` = within / decided.
//! - **escalations**, **warnings**, **breaches**, **customer updates**, **reminders**: events
//!   in the period.
//! - **backlog**: tickets open (waiting on us) at the period's end, by age since they were
//!   opened; `pending` (waiting on the customer) beside it.
//! - **satisfaction**: scores of `survey.answered` in the period (average, count per score);
//!   response rate = surveys sent in the period that were answered before its end / surveys
//!   sent in the period.
//! - **per language**: the ticket's language as last recorded before the period's end
//!   (`ticket.created`, then `ticket.language`); `none` for tickets without one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;

use crate::catalog::EventKind;
use crate::language::Lang;
use crate::model::{TicketId, TicketStatus};
use crate::store::EventRecord;

/// The event kinds the figures read; the store loads only these.
pub const KINDS: [EventKind; 12] = [
    EventKind::TicketCreated,
    EventKind::TicketStatus,
    EventKind::TicketLanguage,
    EventKind::TicketFirstResponse,
    EventKind::DeadlineMet,
    EventKind::DeadlineBreached,
    EventKind::DeadlineWarned,
    EventKind::EscalationSent,
    EventKind::CustomerUpdated,
    EventKind::TicketReminded,
    EventKind::SurveySent,
    EventKind::SurveyAnswered,
];

/// The key of tickets without a language in [`Stats::languages`].
pub const NO_LANGUAGE: &str = "none";

/// Upper bounds (exclusive) of the first-response histogram's buckets, and their labels.
const RESPONSE_BUCKETS: [(i64, &str); 7] = [
    (15 * MINUTE, "< 15m"),
    (HOUR, "15m-1h"),
    (4 * HOUR, "1-4h"),
    (8 * HOUR, "4-8h"),
    (24 * HOUR, "8-24h"),
    (48 * HOUR, "1-2d"),
    (i64::MAX, "> 2d"),
];

/// Upper bounds (exclusive) of the backlog's age buckets, and their labels.
const AGE_BUCKETS: [(i64, &str); 5] = [
    (HOUR, "< 1h"),
    (4 * HOUR, "1-4h"),
    (24 * HOUR, "4-24h"),
    (72 * HOUR, "1-3d"),
    (i64::MAX, "> 3d"),
];

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// A point in time as `--since` and `--until` accept it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// `2026-11-01`: the start of that day in the support time zone.
    Date(Date),
    /// `2026-11-01T09:30` (or with a space): in the support time zone.
    Local(DateTime),
    /// `2026-11-01T09:30:00Z`, or with an offset.
    Instant(Timestamp),
    /// `7d`, `12h`: that long before now.
    Ago(Duration),
}

impl When {
    pub fn parse(text: &str) -> Result<When, String> {
        let text = text.trim();
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(When::Instant(at));
        }
        if text.contains(['T', 't', ' ', ':'])
            && let Ok(local) = text.parse::<DateTime>()
        {
            return Ok(When::Local(local));
        }
        if let Ok(date) = text.parse::<Date>() {
            return Ok(When::Date(date));
        }
        if text.starts_with(|c: char| c.is_ascii_digit())
            && let Ok(ago) = crate::config::parse_duration(text)
        {
            return Ok(When::Ago(ago));
        }
        Err(format!(
            "`{text}` is not a date, a time or a duration; expected e.g. 2026-11-01, \
             2026-11-01T09:30, 2026-11-01T09:30:00Z or 7d"
        ))
    }

    /// The instant meant, dates and local times read in `tz`.
    pub fn resolve(self, tz: &TimeZone, now: Timestamp) -> Result<Timestamp, String> {
        let resolved = match self {
            When::Instant(at) => Ok(at),
            When::Date(date) => tz.to_timestamp(date.to_datetime(jiff::civil::Time::midnight())),
            When::Local(local) => tz.to_timestamp(local),
            When::Ago(ago) => {
                jiff::SignedDuration::try_from(ago).and_then(|ago| now.checked_sub(ago))
            }
        };
        resolved
            .map_err(|e| format!("{self:?} is out of the range of dates deskgate can read: {e}"))
    }
}

/// A half-open span of time: `since` included, `until` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl Period {
    pub fn new(since: Timestamp, until: Timestamp) -> Result<Period, String> {
        if since >= until {
            return Err(format!(
                "the period is empty: --since ({since}) is not before --until ({until})"
            ));
        }
        Ok(Period { since, until })
    }

    fn contains(&self, at: Timestamp) -> bool {
        self.since <= at && at < self.until
    }

    /// The period cut at the starts of days (`step` 1) or weeks (`step` 7, weeks starting on
    /// Monday) in `tz`; the first and last pieces are cut at the period's ends.
    pub fn split(&self, tz: &TimeZone, step: i8) -> Vec<(Date, Period)> {
        let first = self.since.to_zoned(tz.clone()).date();
        let mut day = if step == 7 {
            first
                .checked_sub(i64::from(first.weekday().to_monday_zero_offset()).days())
                .unwrap_or(first)
        } else {
            first
        };
        let mut pieces = Vec::new();
        let mut start = self.since;
        while start < self.until {
            let Ok(next) = day.checked_add(step.days()) else {
                break;
            };
            let end = tz
                .to_timestamp(next.to_datetime(jiff::civil::Time::midnight()))
                .map_or(self.until, |t| t.min(self.until));
            if end > start {
                pieces.push((
                    day,
                    Period {
                        since: start,
                        until: end,
                    },
                ));
            }
            start = end;
            day = next;
        }
        pieces
    }
}

/// Everything `deskgate stats --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub since: Timestamp,
    pub until: Timestamp,
    /// The `--mailbox` asked for (its folders included), or null for all.
    pub mailbox: Option<String>,
    pub all: Figures,
    /// Per language code (en, ar, el, and `none` when some ticket has no language).
    pub languages: BTreeMap<String, Figures>,
}

/// The figures of one period, for all tickets or one language's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub opened: u64,
    pub opened_quietly: u64,
    pub resolved: u64,
    pub first_response: FirstResponse,
    pub within_policy: WithinPolicy,
    pub warnings: u64,
    pub breaches: u64,
    /// Escalation mails per level (1 = first), levels that occurred only, in order.
    pub escalations: Vec<Level>,
    pub customer_updates: u64,
    pub reminders: u64,
    pub backlog: Backlog,
    pub satisfaction: Satisfaction,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirstResponse {
    pub count: u64,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    pub histogram: Vec<Bucket>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WithinPolicy {
    pub decided: u64,
    pub within: u64,
    /// within / decided, rounded to 4 places; null when nothing was decided.
    pub share: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Level {
    pub level: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Backlog {
    pub open: u64,
    pub pending: u64,
    /// Open tickets by age at the period's end.
    pub by_age: Vec<Bucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    pub label: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Satisfaction {
    pub answers: u64,
    /// Average score (1-5), rounded to 2 places; null without answers.
    pub average: Option<f64>,
    /// Answers with score 1, 2, 3, 4, 5.
    pub by_score: [u64; 5],
    pub surveys_sent: u64,
    /// Of the surveys sent in the period, those answered before its end.
    pub surveys_answered: u64,
    /// surveys_answered / surveys_sent, rounded to 4 places; null when none was sent.
    pub response_rate: Option<f64>,
}

/// What one ticket is, as far as the figures care: where and in which language.
#[derive(Debug, Clone, Default)]
struct Ticket {
    mailbox: Option<String>,
    language: Option<String>,
}

/// Which tickets a computation looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Select<'a> {
    /// A mailbox name; its folders (`NAME/FOLDER`) belong to it.
    pub mailbox: Option<&'a str>,
    /// A language code, or [`NO_LANGUAGE`].
    pub language: Option<&'a str>,
}

impl Select<'_> {
    fn admits(&self, ticket: &Ticket) -> bool {
        let mailbox_ok = self.mailbox.is_none_or(|wanted| {
            ticket.mailbox.as_deref().is_some_and(|name| {
                name == wanted
                    || name
                        .strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        });
        let language_ok = self
            .language
            .is_none_or(|wanted| ticket.language.as_deref().unwrap_or(NO_LANGUAGE) == wanted);
        mailbox_ok && language_ok
    }
}

/// What one event says, as far as the figures care; read from its JSON once, replayed often.
#[derive(Debug, Clone, Copy)]
enum What {
    Created {
        quiet: bool,
    },
    Status(TicketStatus),
    FirstResponse {
        ms: i64,
    },
    /// `deadline.met` (`breached` false) or `deadline.breached`.
    Outcome {
        deadline: Option<i64>,
        breached: bool,
        within: bool,
    },
    Warned,
    Escalated {
        level: u64,
    },
    CustomerUpdated,
    Reminded,
    SurveySent,
    SurveyAnswered {
        score: usize,
    },
}

impl What {
    /// `None` for kinds the figures do not count and for events without the data they need.
    fn read(event: &EventRecord) -> Option<What> {
        let kind = EventKind::from_name(&event.kind)?;
        Some(match kind {
            EventKind::TicketCreated => What::Created {
                quiet: flag(event, "quiet") == Some(true),
            },
            // Before v6 the detail was the new status and nothing else.
            EventKind::TicketStatus => What::Status(TicketStatus::parse(match &event.data {
                Some(_) => text(event, "to")?,
                None => &event.detail,
            })?),
            EventKind::TicketFirstResponse => What::FirstResponse {
                ms: number(event, "response_ms")?.max(0),
            },
            EventKind::DeadlineMet | EventKind::DeadlineBreached => What::Outcome {
                deadline: number(event, "deadline"),
                breached: kind == EventKind::DeadlineBreached,
                within: flag(event, "within") == Some(true),
            },
            EventKind::DeadlineWarned => What::Warned,
            EventKind::EscalationSent => What::Escalated {
                level: u64::try_from(number(event, "level")?).ok()?,
            },
            EventKind::CustomerUpdated => What::CustomerUpdated,
            EventKind::TicketReminded => What::Reminded,
            EventKind::SurveySent => What::SurveySent,
            EventKind::SurveyAnswered => What::SurveyAnswered {
                score: usize::try_from(number(event, "score")?)
                    .ok()
                    .filter(|s| (1..=5).contains(s))?,
            },
            _ => return None,
        })
    }
}

/// One event on a ticket: when, which ticket (an index into [`Ledger::tickets`]), what.
#[derive(Debug, Clone, Copy)]
struct Fact {
    at: Timestamp,
    ticket: usize,
    what: What,
}

/// The loaded events as facts in time order, and the tickets they are about. All figures are
/// computed from one ledger.
pub struct Ledger {
    facts: Vec<Fact>,
    tickets: Vec<Ticket>,
}

impl Ledger {
    /// `events` as [`crate::store::Tx::kpi_events`] returns them (every event before some end).
    pub fn new(mut events: Vec<EventRecord>) -> Ledger {
        events.sort_by_key(|e| e.at);
        let mut index: HashMap<TicketId, usize> = HashMap::new();
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut facts = Vec::new();
        for event in &events {
            let Some(id) = event.ticket else { continue };
            let n = *index.entry(id).or_insert_with(|| {
                tickets.push(Ticket::default());
                tickets.len() - 1
            });
            let ticket = &mut tickets[n];
            if ticket.mailbox.is_none() {
                ticket.mailbox.clone_from(&event.mailbox);
            }
            if matches!(
                EventKind::from_name(&event.kind),
                Some(EventKind::TicketCreated | EventKind::TicketLanguage)
            ) && let Some(code) = text(event, "language")
            {
                ticket.language = Some(code.to_string());
            }
            if let Some(what) = What::read(event) {
                facts.push(Fact {
                    at: event.at,
                    ticket: n,
                    what,
                });
            }
        }
        Ledger { facts, tickets }
    }

    /// The figures of `period` for all tickets of `mailbox` (or all) and per language.
    pub fn stats(&self, period: Period, mailbox: Option<&str>) -> Stats {
        let all = Select {
            mailbox,
            language: None,
        };
        let mut codes: Vec<&str> = Lang::ALL.iter().map(|l| l.code()).collect();
        let unknown = self
            .tickets
            .iter()
            .any(|t| all.admits(t) && t.language.is_none());
        for ticket in self.tickets.iter().filter(|t| all.admits(t)) {
            if let Some(code) = ticket.language.as_deref()
                && !codes.contains(&code)
            {
                codes.push(code);
            }
        }
        if unknown {
            codes.push(NO_LANGUAGE);
        }
        let languages = codes
            .into_iter()
            .map(|code| {
                let select = Select {
                    language: Some(code),
                    ..all
                };
                (code.to_string(), self.figures(period, select))
            })
            .collect();
        Stats {
            since: period.since,
            until: period.until,
            mailbox: mailbox.map(str::to_string),
            all: self.figures(period, all),
            languages,
        }
    }

    /// The figures of `period` for the tickets `select` admits.
    pub fn figures(&self, period: Period, select: Select<'_>) -> Figures {
        let mut f = Figures::default();
        let admitted: Vec<bool> = self.tickets.iter().map(|t| select.admits(t)).collect();
        // Per ticket: its status and when it was opened, surveys sent in the period unanswered.
        let mut status: Vec<Option<(TicketStatus, Timestamp)>> = vec![None; self.tickets.len()];
        let mut surveys_awaited = vec![0u64; self.tickets.len()];
        let mut decided: HashSet<i64> = HashSet::new();
        let mut responses = Vec::new();
        let mut escalations: BTreeMap<u64, u64> = BTreeMap::new();
        let mut scores = Vec::new();
        let end = self.facts.partition_point(|fact| fact.at < period.until);
        for fact in self.facts[..end]
            .iter()
            .filter(|fact| admitted[fact.ticket])
        {
            let now = period.contains(fact.at);
            let t = fact.ticket;
            match fact.what {
                What::Created { quiet } => {
                    status[t] = Some((TicketStatus::Open, fact.at));
                    if now {
                        f.opened += 1;
                        f.opened_quietly += u64::from(quiet);
                    }
                }
                What::Status(to) => {
                    let Some((current, _)) = status[t].as_mut() else {
                        continue;
                    };
                    let done = |s: TicketStatus| {
                        matches!(s, TicketStatus::Resolved | TicketStatus::Closed)
                    };
                    if now && done(to) && !done(*current) {
                        f.resolved += 1;
                    }
                    *current = to;
                }
                What::FirstResponse { ms } if now => responses.push(ms),
                What::Outcome {
                    deadline,
                    breached,
                    within,
                } => {
                    if now && breached {
                        f.breaches += 1;
                    }
                    // Counted once, in the period of its first outcome.
                    let Some(deadline) = deadline else { continue };
                    if decided.insert(deadline) && now {
                        f.within_policy.decided += 1;
                        f.within_policy.within += u64::from(within && !breached);
                    }
                }
                What::Warned if now => f.warnings += 1,
                What::Escalated { level } if now => *escalations.entry(level).or_default() += 1,
                What::CustomerUpdated if now => f.customer_updates += 1,
                What::Reminded if now => f.reminders += 1,
                What::SurveySent if now => {
                    f.satisfaction.surveys_sent += 1;
                    surveys_awaited[t] += 1;
                }
                What::SurveyAnswered { score } if now => {
                    scores.push(score);
                    if surveys_awaited[t] > 0 {
                        surveys_awaited[t] -= 1;
                        f.satisfaction.surveys_answered += 1;
                    }
                }
                _ => {}
            }
        }
        responses.sort_unstable();
        f.first_response = FirstResponse {
            count: responses.len() as u64,
            median_ms: nearest_rank(&responses, 50),
            p90_ms: nearest_rank(&responses, 90),
            histogram: histogram(&RESPONSE_BUCKETS, responses.iter().copied()),
        };
        f.within_policy.share = ratio(f.within_policy.within, f.within_policy.decided, 4);
        f.escalations = escalations
            .into_iter()
            .map(|(level, count)| Level { level, count })
            .collect();
        let open_ages = status
            .iter()
            .flatten()
            .filter(|(s, _)| *s == TicketStatus::Open)
            .map(|(_, opened)| period.until.duration_since(*opened).as_millis() as i64);
        f.backlog.by_age = histogram(&AGE_BUCKETS, open_ages);
        f.backlog.open = f.backlog.by_age.iter().map(|b| b.count).sum();
        f.backlog.pending = status
            .iter()
            .flatten()
            .filter(|(s, _)| *s == TicketStatus::Pending)
            .count() as u64;
        let s = &mut f.satisfaction;
        s.answers = scores.len() as u64;
        for score in &scores {
            s.by_score[score - 1] += 1;
        }
        s.average = ratio(scores.iter().sum::<usize>() as u64, s.answers, 2);
        s.response_rate = ratio(s.surveys_answered, s.surveys_sent, 4);
        f
    }
}

fn flag(event: &EventRecord, field: &str) -> Option<bool> {
    event.data.as_ref()?.get(field)?.as_bool()
}

fn text<'e>(event: &'e EventRecord, field: &str) -> Option<&'e str> {
    event.data.as_ref()?.get(field)?.as_str()
}

fn number(event: &EventRecord, field: &str) -> Option<i64> {
    event.data.as_ref()?.get(field)?.as_i64()
}

/// The `percent`th percentile by nearest rank of sorted `values`.
fn nearest_rank(values: &[i64], percent: usize) -> Option<i64> {
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

fn histogram(buckets: &[(i64, &'static str)], values: impl Iterator<Item = i64>) -> Vec<Bucket> {
    let mut counts: Vec<Bucket> = buckets
        .iter()
        .map(|(_, label)| Bucket { label, count: 0 })
        .collect();
    for value in values {
        if let Some(i) = buckets.iter().position(|(bound, _)| value < *bound) {
            counts[i].count += 1;
        }
    }
    counts
}

/// `part / whole` rounded to `places` decimals; `None` when `whole` is 0.
fn ratio(part: u64, whole: u64, places: i32) -> Option<f64> {
    (whole > 0).then(|| {
        let scale = 10f64.powi(places);
        (part as f64 / whole as f64 * scale).round() / scale
    })
}

/// A span of milliseconds as people read it: `45s`, `12m`, `3h 05m`, `2d 4h`.
pub fn duration_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A share as a percentage with one decimal: `93.1%`.
pub fn percent_text(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

#[cfg(test)]
mod tests;
