//! The figures from events recorded through the real store (`Tx::record`), as the daemon and
//! the scheduler record them.

use serde_json::{Value, json};

use super::*;
use crate::catalog::EventKind;
use crate::store::{Event, Store};

struct Log {
    store: Store,
    _dir: tempfile::TempDir,
}

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

const MIN: i64 = 60_000;

impl Log {
    fn new() -> Log {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("kpi.db")).expect("open store");
        Log { store, _dir: dir }
    }

    fn rec(&self, at: &str, kind: EventKind, ticket: i64, mailbox: &str, data: Value) {
        self.store
            .write_blocking(|tx| {
                tx.record(
                    &Event {
                        mailbox: Some(mailbox),
                        ticket: Some(TicketId(ticket)),
                        detail: String::new(),
                        data: (!data.is_null()).then_some(data),
                        ..Event::new(kind)
                    },
                    t(at),
                )
            })
            .expect("record");
    }

    fn opened(&self, at: &str, ticket: i64, language: Option<&str>) {
        self.rec(
            at,
            EventKind::TicketCreated,
            ticket,
            "support",
            json!({ "language": language, "quiet": false }),
        );
    }

    fn status(&self, at: &str, ticket: i64, from: &str, to: &str) {
        self.rec(
            at,
            EventKind::TicketStatus,
            ticket,
            "support",
            json!({ "from": from, "to": to, "by": "agent" }),
        );
    }

    fn stats(&self, since: &str, until: &str, mailbox: Option<&str>) -> Stats {
        let period = Period::new(t(since), t(until)).expect("period");
        let events = self
            .store
            .read_blocking(|tx| tx.kpi_events(&KINDS, period.until))
            .expect("load events");
        Ledger::new(events).stats(period, mailbox)
    }
}

const SINCE: &str = "2026-11-02T00:00:00Z";
const UNTIL: &str = "2026-11-09T00:00:00Z";

#[test]
fn opened_resolved_and_first_response_times() {
    let log = Log::new();
    log.opened("2026-11-01T09:00:00Z", 1, Some("en")); // before the period
    log.status("2026-11-01T10:00:00Z", 1, "open", "resolved"); // resolved before it too
    log.opened("2026-11-02T09:00:00Z", 2, Some("en"));
    log.opened("2026-11-03T09:00:00Z", 3, Some("en"));
    log.rec(
        "2026-11-03T09:30:00Z",
        EventKind::TicketCreated,
        4,
        "support",
        json!({ "language": "en", "quiet": true }),
    );
    for (ticket, minutes) in [(2, 10), (3, 30), (4, 120)] {
        log.rec(
            "2026-11-04T09:00:00Z",
            EventKind::TicketFirstResponse,
            ticket,
            "support",
            json!({ "created_at": 0, "at": 0, "response_ms": minutes * MIN, "agent": "a@x" }),
        );
    }
    log.status("2026-11-05T09:00:00Z", 2, "open", "resolved");
    log.status("2026-11-06T09:00:00Z", 2, "resolved", "closed"); // auto-close: not again
    log.status("2026-11-05T09:00:00Z", 3, "open", "closed");
    log.status("2026-11-06T09:00:00Z", 3, "closed", "open");
    log.status("2026-11-07T09:00:00Z", 3, "open", "resolved"); // resolved again: counts
    let s = log.stats(SINCE, UNTIL, None);
    assert_eq!(s.all.opened, 3);
    assert_eq!(s.all.opened_quietly, 1);
    assert_eq!(s.all.resolved, 3);
    let r = &s.all.first_response;
    assert_eq!(r.count, 3);
    assert_eq!(r.median_ms, Some(30 * MIN));
    assert_eq!(r.p90_ms, Some(120 * MIN));
    let counts: Vec<u64> = r.histogram.iter().map(|b| b.count).collect();
    assert_eq!(counts, [1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(r.histogram[2].label, "1-4h");
}

#[test]
fn nearest_rank_percentiles() {
    let ten: Vec<i64> = (1..=10).collect();
    assert_eq!(nearest_rank(&ten, 50), Some(5));
    assert_eq!(nearest_rank(&ten, 90), Some(9));
    assert_eq!(nearest_rank(&[7], 90), Some(7));
    assert_eq!(nearest_rank(&[], 50), None);
}

#[test]
fn each_deadline_counts_once_at_its_first_outcome() {
    let log = Log::new();
    let met = |at: &str, deadline: i64, within: bool| {
        log.rec(
            at,
            EventKind::DeadlineMet,
            1,
            "support",
            json!({ "deadline": deadline, "kind": "first-response", "received_at": 0,
                    "due_at": 0, "met_at": 0, "within": within }),
        )
    };
    let breached = |at: &str, deadline: i64| {
        log.rec(
            at,
            EventKind::DeadlineBreached,
            1,
            "support",
            json!({ "deadline": deadline, "kind": "first-response", "received_at": 0, "due_at": 0 }),
        )
    };
    log.opened("2026-10-30T09:00:00Z", 1, Some("en"));
    breached("2026-11-01T09:00:00Z", 5); // before the period ...
    met("2026-11-02T10:00:00Z", 5, false); // ... so not counted in it when met late
    met("2026-11-03T09:00:00Z", 1, true);
    met("2026-11-03T10:00:00Z", 2, false); // late, and the scheduler never said so
    breached("2026-11-04T09:00:00Z", 3);
    met("2026-11-04T12:00:00Z", 3, false); // late: counted once, at the breach
    breached("2026-11-05T09:00:00Z", 4); // still unanswered
    let s = log.stats(SINCE, UNTIL, None);
    assert_eq!(s.all.within_policy.decided, 4);
    assert_eq!(s.all.within_policy.within, 1);
    assert_eq!(s.all.within_policy.share, Some(0.25));
    assert_eq!(s.all.breaches, 2);
}

#[test]
fn backlog_replays_status_to_the_periods_end() {
    let log = Log::new();
    log.opened("2026-11-08T23:30:00Z", 1, None); // 30 minutes old at the end
    log.opened("2026-11-08T22:00:00Z", 2, None); // 2 hours
    log.opened("2026-11-03T00:00:00Z", 3, None); // 6 days
    log.opened("2026-11-06T00:00:00Z", 4, None);
    log.status("2026-11-06T01:00:00Z", 4, "open", "pending");
    log.opened("2026-11-06T00:00:00Z", 5, None);
    log.status("2026-11-06T01:00:00Z", 5, "open", "resolved");
    log.opened("2026-10-01T00:00:00Z", 6, None); // reopened by its customer: open again
    log.status("2026-10-02T00:00:00Z", 6, "open", "resolved");
    log.status("2026-11-08T12:00:00Z", 6, "resolved", "open");
    let s = log.stats(SINCE, UNTIL, None);
    let b = &s.all.backlog;
    assert_eq!((b.open, b.pending), (4, 1));
    let counts: Vec<(&str, u64)> = b.by_age.iter().map(|b| (b.label, b.count)).collect();
    assert_eq!(
        counts,
        [
            ("< 1h", 1),
            ("1-4h", 1),
            ("4-24h", 0),
            ("1-3d", 0),
            ("> 3d", 2)
        ]
    );
}

#[test]
fn status_changes_recorded_before_v6_still_count() {
    let log = Log::new();
    log.opened("2026-10-01T09:00:00Z", 1, None);
    log.opened("2026-10-01T09:00:00Z", 2, None);
    log.opened("2026-11-03T09:00:00Z", 3, None);
    // v5 wrote the new status as the detail, with no data.
    for (at, ticket, detail) in [
        ("2026-10-02T09:00:00Z", 1, "resolved"),
        ("2026-11-03T10:00:00Z", 3, "pending"),
        ("2026-11-04T10:00:00Z", 3, "resolved"),
    ] {
        log.store
            .write_blocking(|tx| {
                tx.record(
                    &Event {
                        ticket: Some(TicketId(ticket)),
                        detail: detail.to_string(),
                        ..Event::new(EventKind::TicketStatus)
                    },
                    t(at),
                )
            })
            .expect("record");
    }
    let s = log.stats(SINCE, UNTIL, None);
    assert_eq!((s.all.opened, s.all.resolved), (1, 1));
    assert_eq!((s.all.backlog.open, s.all.backlog.pending), (1, 0));
}

#[test]
fn escalations_warnings_and_satisfaction() {
    let log = Log::new();
    for ticket in 1..=4 {
        log.opened("2026-10-20T09:00:00Z", ticket, Some("ar"));
    }
    let escalate = |at: &str, level: i64| {
        log.rec(
            at,
            EventKind::EscalationSent,
            1,
            "support",
            json!({ "deadline": 1, "level": level, "to": ["lead@x"], "waited_ms": 1 }),
        )
    };
    escalate("2026-11-03T09:00:00Z", 1);
    escalate("2026-11-03T10:00:00Z", 2);
    escalate("2026-11-04T09:00:00Z", 1);
    log.rec(
        "2026-11-03T08:00:00Z",
        EventKind::DeadlineWarned,
        1,
        "support",
        json!({ "deadline": 1, "due_at": 0, "to": ["a@x"] }),
    );
    log.rec(
        "2026-11-03T11:00:00Z",
        EventKind::CustomerUpdated,
        1,
        "support",
        json!({ "deadline": 1, "due_at": 0 }),
    );
    log.rec(
        "2026-11-03T11:00:00Z",
        EventKind::TicketReminded,
        2,
        "support",
        json!({ "n": 1 }),
    );
    log.rec(
        "2026-11-01T09:00:00Z",
        EventKind::SurveySent,
        4,
        "support",
        json!({}),
    );
    for ticket in 1..=3 {
        log.rec(
            "2026-11-05T09:00:00Z",
            EventKind::SurveySent,
            ticket,
            "support",
            json!({}),
        );
    }
    let answer = |ticket: i64, score: i64| {
        log.rec(
            "2026-11-06T09:00:00Z",
            EventKind::SurveyAnswered,
            ticket,
            "support",
            json!({ "score": score }),
        )
    };
    answer(1, 5);
    answer(2, 4);
    answer(4, 1); // to a survey sent before the period: a score, not a response to its surveys
    let s = log.stats(SINCE, UNTIL, None);
    assert_eq!(
        s.all.escalations,
        [Level { level: 1, count: 2 }, Level { level: 2, count: 1 }]
    );
    assert_eq!(
        (s.all.warnings, s.all.customer_updates, s.all.reminders),
        (1, 1, 1)
    );
    let sat = &s.all.satisfaction;
    assert_eq!(sat.answers, 3);
    assert_eq!(sat.average, Some(3.33));
    assert_eq!(sat.by_score, [1, 0, 0, 1, 1]);
    assert_eq!((sat.surveys_sent, sat.surveys_answered), (3, 2));
    assert_eq!(sat.response_rate, Some(0.6667));
}

#[test]
fn per_language_follows_the_last_recorded_language() {
    let log = Log::new();
    log.opened("2026-11-03T09:00:00Z", 1, Some("en"));
    log.opened("2026-11-03T09:00:00Z", 2, Some("ar"));
    log.opened("2026-11-03T09:00:00Z", 3, None);
    log.rec(
        "2026-11-03T10:00:00Z",
        EventKind::TicketLanguage,
        3,
        "support",
        json!({ "language": "el" }),
    );
    log.opened("2026-11-03T09:00:00Z", 4, None);
    log.rec(
        "2026-11-04T09:00:00Z",
        EventKind::TicketFirstResponse,
        2,
        "support",
        json!({ "response_ms": 42 * MIN }),
    );
    let s = log.stats(SINCE, UNTIL, None);
    let opened: Vec<(&str, u64)> = s
        .languages
        .iter()
        .map(|(code, f)| (code.as_str(), f.opened))
        .collect();
    assert_eq!(opened, [("ar", 1), ("el", 1), ("en", 1), ("none", 1)]);
    assert_eq!(s.languages["ar"].first_response.median_ms, Some(42 * MIN));
    assert_eq!(s.languages["en"].first_response.median_ms, None);
}

#[test]
fn a_mailbox_includes_its_folders_only() {
    let log = Log::new();
    for (ticket, mailbox) in [
        (1, "support"),
        (2, "support/Shared/Billing"),
        (3, "sales"),
        (4, "supportdesk"),
    ] {
        log.rec(
            "2026-11-03T09:00:00Z",
            EventKind::TicketCreated,
            ticket,
            mailbox,
            json!({ "language": "en", "quiet": false }),
        );
    }
    assert_eq!(log.stats(SINCE, UNTIL, Some("support")).all.opened, 2);
    assert_eq!(log.stats(SINCE, UNTIL, Some("sales")).all.opened, 1);
    assert_eq!(log.stats(SINCE, UNTIL, None).all.opened, 4);
    assert_eq!(log.stats(SINCE, UNTIL, Some("nothing")).all.opened, 0);
}

#[test]
fn same_figures_whether_asked_now_or_later() {
    let log = Log::new();
    log.opened("2026-11-03T09:00:00Z", 1, Some("en"));
    log.opened("2026-11-04T09:00:00Z", 2, Some("el"));
    log.opened("2026-11-05T09:00:00Z", 3, Some("ar"));
    log.rec(
        "2026-11-05T09:00:00Z",
        EventKind::DeadlineBreached,
        3,
        "support",
        json!({ "deadline": 3, "kind": "first-response", "received_at": 0, "due_at": 0 }),
    );
    log.rec(
        "2026-11-06T09:00:00Z",
        EventKind::SurveySent,
        1,
        "support",
        json!({}),
    );
    let before = log.stats(SINCE, UNTIL, None);
    // The week after: ticket 2 answered and resolved, 3 answered late, 1's survey answered,
    // a new ticket.
    log.rec(
        "2026-11-10T09:00:00Z",
        EventKind::TicketFirstResponse,
        2,
        "support",
        json!({ "response_ms": 6 * 24 * 60 * MIN }),
    );
    log.rec(
        "2026-11-10T09:00:00Z",
        EventKind::DeadlineMet,
        3,
        "support",
        json!({ "deadline": 3, "within": false }),
    );
    log.status("2026-11-10T10:00:00Z", 2, "open", "resolved");
    log.rec(
        "2026-11-10T11:00:00Z",
        EventKind::SurveyAnswered,
        1,
        "support",
        json!({ "score": 2 }),
    );
    log.opened("2026-11-11T09:00:00Z", 4, Some("en"));
    let after = log.stats(SINCE, UNTIL, None);
    assert_eq!(before, after);
    assert_eq!(before.all.backlog.open, 3);
    assert_eq!(before.all.within_policy.share, Some(0.0));
    // ... while the following week sees them.
    let next = log.stats(UNTIL, "2026-11-16T00:00:00Z", None);
    assert_eq!((next.all.opened, next.all.resolved), (1, 1));
    assert_eq!(next.all.satisfaction.answers, 1);
}

#[test]
fn when_accepts_dates_times_and_durations() {
    let athens = TimeZone::get("Europe/Athens").expect("tz");
    let now = t("2026-11-23T12:00:00Z");
    let resolve = |text: &str| When::parse(text).and_then(|w| w.resolve(&athens, now));
    assert_eq!(resolve("2026-11-01"), Ok(t("2026-10-31T22:00:00Z")));
    assert_eq!(resolve("2026-11-01T09:30"), Ok(t("2026-11-01T07:30:00Z")));
    assert_eq!(resolve("2026-11-01 09:30"), Ok(t("2026-11-01T07:30:00Z")));
    assert_eq!(
        resolve("2026-11-01T09:30:00Z"),
        Ok(t("2026-11-01T09:30:00Z"))
    );
    assert_eq!(
        resolve("2026-11-01T09:30:00+01:00"),
        Ok(t("2026-11-01T08:30:00Z"))
    );
    assert_eq!(resolve("7d"), Ok(t("2026-11-16T12:00:00Z")));
    assert_eq!(resolve("1h30m"), Ok(t("2026-11-23T10:30:00Z")));
    for bad in ["yesterday", "2026-13-01", "7 days", "", "-3d"] {
        let err = resolve(bad).unwrap_err();
        assert!(
            err.contains("is not a date, a time or a duration"),
            "{bad}: {err}"
        );
    }
    let err = Period::new(t(UNTIL), t(SINCE)).unwrap_err();
    assert!(err.contains("is not before --until"), "{err}");
}

#[test]
fn periods_split_into_local_days_and_monday_weeks() {
    let athens = TimeZone::get("Europe/Athens").expect("tz");
    // Wednesday 4 November 12:00 local to Tuesday 17 November 00:00 local.
    let period = Period::new(t("2026-11-04T10:00:00Z"), t("2026-11-16T22:00:00Z")).expect("p");
    let days = period.split(&athens, 1);
    assert_eq!(days.len(), 13);
    assert_eq!(days[0].0.to_string(), "2026-11-04");
    assert_eq!(days[0].1.since, period.since);
    assert_eq!(days[1].1.since, t("2026-11-04T22:00:00Z"));
    assert_eq!(days[12].1.until, period.until);
    let weeks = period.split(&athens, 7);
    let starts: Vec<String> = weeks.iter().map(|(d, _)| d.to_string()).collect();
    assert_eq!(starts, ["2026-11-02", "2026-11-09", "2026-11-16"]);
    assert_eq!(weeks[0].1.since, period.since);
    assert_eq!(weeks[1].1.since, t("2026-11-08T22:00:00Z"));
}

#[test]
fn durations_and_shares_read_as_people_write_them() {
    assert_eq!(duration_text(45_000), "45s");
    assert_eq!(duration_text(12 * MIN + 5_000), "12m");
    assert_eq!(duration_text(185 * MIN), "3h 05m");
    assert_eq!(duration_text((2 * 24 + 4) * 60 * MIN), "2d 4h");
    assert_eq!(percent_text(0.9310), "93.1%");
}
