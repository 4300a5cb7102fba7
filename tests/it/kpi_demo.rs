//! A month of a support desk's events in English, Arabic and Greek, recorded through the real
//! store (`Tx::record`) with the kinds and data the daemon and the scheduler record
//! (ARCHITECTURE.md, "Events"). The report test reads it, and `examples/report_demo.rs` (for
//! `scripts/report-screenshot.sh`) writes it into a database for the screenshot.
//!
//! Realistic rather than uniform: more mail on weekdays and in office hours; most answers
//! within an hour or two, some the next day, a few past the 24-hour policy (warned at 75 %,
//! breached, escalated to the team lead and after 4 more hours to the manager); one week short
//! of staff; a third of the answered tickets wait on their customer first; surveys sent on
//! resolution and answered by about 60 %, mostly 4 and 5.

use deskgate::catalog::EventKind;
use deskgate::model::TicketId;
use deskgate::store::{Event, Store};
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const HOUR_MS: i64 = 3_600_000;
const POLICY_MS: i64 = 24 * HOUR_MS;

/// An event to record: when, its kind, its ticket and its data.
type Recorded = (Timestamp, EventKind, i64, Value);
/// An event of one ticket: milliseconds after the ticket opened, its kind and its data.
type Step = (i64, EventKind, Value);

/// Records `days` days of tickets opened from `start` on, and everything that followed them
/// before `end`. The same `seed` gives the same events.
pub fn record_month(store: &Store, start: Timestamp, days: i64, end: Timestamp, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events: Vec<Recorded> = Vec::new();
    let mut ticket = 0;
    for day in 0..days {
        let midnight = start + SignedDuration::from_hours(24 * day);
        let weekend = is_weekend(midnight);
        let short_staffed = (14..21).contains(&day);
        let count = if weekend {
            rng.random_range(2..6)
        } else {
            rng.random_range(11..20)
        };
        for _ in 0..count {
            ticket += 1;
            let created = opened_at(&mut rng, midnight, weekend);
            let steps = ticket_life(&mut rng, ticket, created, weekend, short_staffed);
            events.extend(steps.into_iter().map(|(offset_ms, kind, data)| {
                (
                    created + SignedDuration::from_millis(offset_ms),
                    kind,
                    ticket,
                    data,
                )
            }));
        }
    }
    events.sort_by_key(|e| e.0);
    write_events(store, events, end);
}

/// Whether the day starting at `midnight` (UTC) is a Saturday or a Sunday.
fn is_weekend(midnight: Timestamp) -> bool {
    matches!(
        midnight.to_zoned(jiff::tz::TimeZone::UTC).weekday(),
        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
    )
}

/// When a ticket of the day starting at `midnight` opens: any hour at weekends, office
/// hours (6:00 to 17:00) on weekdays.
fn opened_at(rng: &mut StdRng, midnight: Timestamp, weekend: bool) -> Timestamp {
    let hour = if weekend {
        rng.random_range(0.0..24.0)
    } else {
        6.0 + 11.0 * rng.random::<f64>()
    };
    midnight + SignedDuration::from_secs_f64(hour * 3600.0)
}

/// Everything that happens to ticket `ticket`, opened at `created`: its language, its first
/// response and the deadline events around it, then its way to closed.
fn ticket_life(
    rng: &mut StdRng,
    ticket: i64,
    created: Timestamp,
    weekend: bool,
    short_staffed: bool,
) -> Vec<Step> {
    let language = match rng.random::<f64>() {
        x if x < 0.55 => "en",
        x if x < 0.82 => "ar",
        _ => "el",
    };
    let mut steps = vec![(
        0,
        EventKind::TicketCreated,
        json!({ "language": language, "quiet": false }),
    )];
    let response = first_response_ms(rng, weekend, short_staffed);
    steps.extend(first_response_steps(ticket, created, response));
    steps.extend(resolution_steps(rng, response, language));
    steps
}

/// How long the first response takes: mostly within the hour or a few hours, some the next
/// day, a few past the policy; slower when short of staff and at weekends.
fn first_response_ms(rng: &mut StdRng, weekend: bool, short_staffed: bool) -> i64 {
    let response = match rng.random::<f64>() {
        x if x < 0.55 => rng.random_range(5.0..90.0) * 60_000.0,
        x if x < 0.85 => rng.random_range(1.5..8.0) * 3_600_000.0,
        x if x < 0.95 => rng.random_range(8.0..22.0) * 3_600_000.0,
        _ => rng.random_range(20.0..32.0) * 3_600_000.0,
    } as i64;
    if short_staffed {
        response * 8 / 5
    } else if weekend {
        response * 5 / 4
    } else {
        response
    }
}

/// The deadline's events up to the first response after `response` ms: the warning at
/// 75 %, the breach with its escalations and customer update, then the deadline met.
fn first_response_steps(ticket: i64, created: Timestamp, response: i64) -> Vec<Step> {
    let due = created.as_millisecond() + POLICY_MS;
    let deadline = json!(ticket);
    let mut steps = Vec::new();
    if response > POLICY_MS * 3 / 4 {
        steps.push((
            POLICY_MS * 3 / 4,
            EventKind::DeadlineWarned,
            json!({ "deadline": deadline, "due_at": due, "to": ["agent1@example.com"] }),
        ));
    }
    if response > POLICY_MS {
        steps.push((
            POLICY_MS,
            EventKind::DeadlineBreached,
            json!({ "deadline": deadline, "kind": "first-response",
                    "received_at": created.as_millisecond(), "due_at": due }),
        ));
        steps.push((
            POLICY_MS,
            EventKind::EscalationSent,
            json!({ "deadline": deadline, "level": 1, "to": ["lead@example.com"],
                    "waited_ms": POLICY_MS }),
        ));
        steps.push((
            POLICY_MS,
            EventKind::CustomerUpdated,
            json!({ "deadline": deadline, "due_at": due + 8 * HOUR_MS }),
        ));
    }
    if response > POLICY_MS + 4 * HOUR_MS {
        steps.push((
            POLICY_MS + 4 * HOUR_MS,
            EventKind::EscalationSent,
            json!({ "deadline": deadline, "level": 2, "to": ["manager@example.com"],
                    "waited_ms": POLICY_MS + 4 * HOUR_MS }),
        ));
    }
    steps.push((
        response,
        EventKind::DeadlineMet,
        json!({ "deadline": deadline, "kind": "first-response",
                "received_at": created.as_millisecond(), "due_at": due,
                "met_at": created.as_millisecond() + response,
                "within": response <= POLICY_MS }),
    ));
    steps.push((
        response,
        EventKind::TicketFirstResponse,
        json!({ "created_at": created.as_millisecond(),
                "at": created.as_millisecond() + response,
                "response_ms": response, "agent": "agent1@example.com" }),
    ));
    steps
}

/// After the first response at `response` ms: a third wait on their customer first (reminded
/// after 48 hours), then resolved with a survey (answered by about 60 %), closed 72 hours
/// later by the scheduler.
fn resolution_steps(rng: &mut StdRng, response: i64, language: &str) -> Vec<Step> {
    let status = |from: &str, to: &str, by: &str| json!({ "from": from, "to": to, "by": by });
    let mut steps = Vec::new();
    let mut t = response;
    if rng.random::<f64>() < 0.33 {
        steps.push((
            t,
            EventKind::TicketStatus,
            status("open", "pending", "agent"),
        ));
        t += rng.random_range(4..60) * HOUR_MS;
        if t - response > 48 * HOUR_MS {
            steps.push((
                response + 48 * HOUR_MS,
                EventKind::TicketReminded,
                json!({ "n": 1 }),
            ));
        }
        steps.push((
            t,
            EventKind::TicketStatus,
            status("pending", "open", "customer"),
        ));
        t += rng.random_range(1..6) * HOUR_MS;
    }
    t += rng.random_range(0..36) * HOUR_MS;
    steps.push((
        t,
        EventKind::TicketStatus,
        status("open", "resolved", "agent"),
    ));
    steps.push((t, EventKind::SurveySent, json!({})));
    steps.extend(survey_answer(rng, t, language));
    steps.push((
        t + 72 * HOUR_MS,
        EventKind::TicketStatus,
        status("resolved", "closed", "scheduler"),
    ));
    steps
}

/// The answer to the survey sent at `sent` ms, if the customer answers (Arabic speakers a
/// little less often): mostly 4 and 5, within 30 hours.
fn survey_answer(rng: &mut StdRng, sent: i64, language: &str) -> Option<Step> {
    let answers = if language == "ar" { 0.5 } else { 0.62 };
    if rng.random::<f64>() >= answers {
        return None;
    }
    let score = match rng.random::<f64>() {
        x if x < 0.05 => 1,
        x if x < 0.12 => 2,
        x if x < 0.25 => 3,
        x if x < 0.55 => 4,
        _ => 5,
    };
    let later = rng.random_range(1..30) * HOUR_MS;
    Some((
        sent + later,
        EventKind::SurveyAnswered,
        json!({ "score": score }),
    ))
}

/// Records `events` (sorted) before `end` in one transaction, as the support mailbox's.
fn write_events(store: &Store, events: Vec<Recorded>, end: Timestamp) {
    store
        .write_blocking(|tx| {
            for (at, kind, ticket, data) in events.into_iter().filter(|e| e.0 < end) {
                tx.record(
                    &Event {
                        mailbox: Some("support"),
                        ticket: Some(TicketId(ticket)),
                        detail: String::new(),
                        data: Some(data),
                        ..Event::new(kind)
                    },
                    at,
                )?;
            }
            Ok(())
        })
        .expect("record the demo events");
}
