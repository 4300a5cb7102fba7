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

/// Records `days` days of tickets opened from `start` on, and everything that followed them
/// before `end`. The same `seed` gives the same events.
pub fn record_month(store: &Store, start: Timestamp, days: i64, end: Timestamp, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events: Vec<(Timestamp, EventKind, i64, Value)> = Vec::new();
    let mut ticket = 0;
    for day in 0..days {
        let midnight = start + SignedDuration::from_hours(24 * day);
        let weekend = matches!(
            midnight.to_zoned(jiff::tz::TimeZone::UTC).weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        );
        let short_staffed = (14..21).contains(&day);
        let count = if weekend {
            rng.random_range(2..6)
        } else {
            rng.random_range(11..20)
        };
        for _ in 0..count {
            ticket += 1;
            let hour = if weekend {
                rng.random_range(0.0..24.0)
            } else {
                6.0 + 11.0 * rng.random::<f64>()
            };
            let created = midnight + SignedDuration::from_secs_f64(hour * 3600.0);
            let language = match rng.random::<f64>() {
                x if x < 0.55 => "en",
                x if x < 0.82 => "ar",
                _ => "el",
            };
            let mut at = |offset_ms: i64, kind: EventKind, data: Value| {
                events.push((
                    created + SignedDuration::from_millis(offset_ms),
                    kind,
                    ticket,
                    data,
                ));
            };
            at(
                0,
                EventKind::TicketCreated,
                json!({ "language": language, "quiet": false }),
            );
            let due = created.as_millisecond() + POLICY_MS;
            let mut response = match rng.random::<f64>() {
                x if x < 0.55 => rng.random_range(5.0..90.0) * 60_000.0,
                x if x < 0.85 => rng.random_range(1.5..8.0) * 3_600_000.0,
                x if x < 0.95 => rng.random_range(8.0..22.0) * 3_600_000.0,
                _ => rng.random_range(20.0..32.0) * 3_600_000.0,
            } as i64;
            if short_staffed {
                response = response * 8 / 5;
            } else if weekend {
                response = response * 5 / 4;
            }
            let deadline = json!(ticket);
            if response > POLICY_MS * 3 / 4 {
                at(
                    POLICY_MS * 3 / 4,
                    EventKind::DeadlineWarned,
                    json!({ "deadline": deadline, "due_at": due, "to": ["agent1@example.com"] }),
                );
            }
            if response > POLICY_MS {
                at(
                    POLICY_MS,
                    EventKind::DeadlineBreached,
                    json!({ "deadline": deadline, "kind": "first-response",
                            "received_at": created.as_millisecond(), "due_at": due }),
                );
                at(
                    POLICY_MS,
                    EventKind::EscalationSent,
                    json!({ "deadline": deadline, "level": 1, "to": ["lead@example.com"],
                            "waited_ms": POLICY_MS }),
                );
                at(
                    POLICY_MS,
                    EventKind::CustomerUpdated,
                    json!({ "deadline": deadline, "due_at": due + 8 * HOUR_MS }),
                );
            }
            if response > POLICY_MS + 4 * HOUR_MS {
                at(
                    POLICY_MS + 4 * HOUR_MS,
                    EventKind::EscalationSent,
                    json!({ "deadline": deadline, "level": 2, "to": ["manager@example.com"],
                            "waited_ms": POLICY_MS + 4 * HOUR_MS }),
                );
            }
            at(
                response,
                EventKind::DeadlineMet,
                json!({ "deadline": deadline, "kind": "first-response",
                        "received_at": created.as_millisecond(), "due_at": due,
                        "met_at": created.as_millisecond() + response,
                        "within": response <= POLICY_MS }),
            );
            at(
                response,
                EventKind::TicketFirstResponse,
                json!({ "created_at": created.as_millisecond(),
                        "at": created.as_millisecond() + response,
                        "response_ms": response, "agent": "agent1@example.com" }),
            );
            let status =
                |from: &str, to: &str, by: &str| json!({ "from": from, "to": to, "by": by });
            let mut t = response;
            if rng.random::<f64>() < 0.33 {
                at(
                    t,
                    EventKind::TicketStatus,
                    status("open", "pending", "agent"),
                );
                t += rng.random_range(4..60) * HOUR_MS;
                if t - response > 48 * HOUR_MS {
                    at(
                        response + 48 * HOUR_MS,
                        EventKind::TicketReminded,
                        json!({ "n": 1 }),
                    );
                }
                at(
                    t,
                    EventKind::TicketStatus,
                    status("pending", "open", "customer"),
                );
                t += rng.random_range(1..6) * HOUR_MS;
            }
            t += rng.random_range(0..36) * HOUR_MS;
            at(
                t,
                EventKind::TicketStatus,
                status("open", "resolved", "agent"),
            );
            at(t, EventKind::SurveySent, json!({}));
            let answers = if language == "ar" { 0.5 } else { 0.62 };
            if rng.random::<f64>() < answers {
                let score = match rng.random::<f64>() {
                    x if x < 0.05 => 1,
                    x if x < 0.12 => 2,
                    x if x < 0.25 => 3,
                    x if x < 0.55 => 4,
                    _ => 5,
                };
                let later = rng.random_range(1..30) * HOUR_MS;
                at(
                    t + later,
                    EventKind::SurveyAnswered,
                    json!({ "score": score }),
                );
            }
            at(
                t + 72 * HOUR_MS,
                EventKind::TicketStatus,
                status("resolved", "closed", "scheduler"),
            );
        }
    }
    events.sort_by_key(|e| e.0);
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
