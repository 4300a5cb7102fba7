//! What `/metrics` and `/healthz` read: counts over the event history (so they survive
//! restarts and agree with `deskgate stats`) and the outbox as it is now.

use std::collections::{BTreeMap, HashMap};

use crate::store::sql::params;
use jiff::Timestamp;

use super::{StoreError, Tx, from_ms};
use crate::catalog::EventKind;

/// Totals since the database was created.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// (mailbox, class, n) from `message.received`.
    pub messages: Vec<(String, String, u64)>,
    /// (mailbox, n) from `ticket.created`.
    pub tickets_opened: Vec<(String, u64)>,
    /// Acknowledgements the SMTP server accepted (one latency each).
    pub acknowledgements_sent: u64,
    /// (outcome, n) from `outbox.deferred`, `outbox.failed`, `outbox.refused` and
    /// `smtp.transport_failed`.
    pub send_failures: Vec<(String, u64)>,
    pub deadline_warnings: u64,
    pub deadline_breaches: u64,
    /// (level, n) from `escalation.sent`.
    pub escalations: Vec<(i64, u64)>,
    /// (mailbox, n) from `mailbox.disconnected`.
    pub reconnects: Vec<(String, u64)>,
    /// Milliseconds from an inbound message's commit (`ack.queued`) to the SMTP server's
    /// acceptance of its acknowledgement (`outbox.sent`), one per acknowledgement sent.
    pub ack_latency_ms: Vec<i64>,
    pub outbox: OutboxNow,
}

/// The outbox at this moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxNow {
    pub depth: u64,
    /// When the oldest queued row was queued.
    pub oldest: Option<Timestamp>,
}

impl Tx<'_> {
    pub fn outbox_now(&self) -> Result<OutboxNow, StoreError> {
        let (depth, oldest): (i64, Option<i64>) = self.query_row(
            "SELECT count(*), min(created_at) FROM outbox WHERE status = 'queued'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(OutboxNow {
            depth: depth.max(0) as u64,
            oldest: oldest.map(from_ms),
        })
    }

    /// How many messages quarantine holds and when the latest was put there; `None` when
    /// it holds none.
    pub fn quarantine_held(&self) -> Result<Option<(u64, Timestamp)>, StoreError> {
        let (n, latest): (i64, Option<i64>) = self.query_row(
            "SELECT count(*), max(created_at) FROM quarantine WHERE status = 'held'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(latest.map(|at| (n.max(0) as u64, from_ms(at))))
    }

    /// Changes whenever another connection commits (SQLite's `PRAGMA data_version`): how the
    /// daemon notices mail `deskgate ingest` stored.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    /// The figures, brought up to date from the events appended since `tally` last looked:
    /// the first call reads the whole history, later ones only what is new.
    pub fn figures(&self, tally: &mut Tally) -> Result<Figures, StoreError> {
        let counted: Vec<&str> = COUNTED.iter().map(|k| k.as_str()).collect();
        // `+kind`: SQLite walks the new rowids, not the kind index over the whole history.
        let stmt = self.prepare(self.pick(
            "SELECT id, at, kind, coalesce(mailbox, ''), outbox_id,
                    coalesce(json_extract(data, '$.class'), 'unknown'),
                    coalesce(json_extract(data, '$.level'), 0)
             FROM events WHERE id > ?1 AND +kind IN (SELECT value FROM json_each(?2))
             ORDER BY id",
            "SELECT id, at, kind, coalesce(mailbox, ''), outbox_id,
                    coalesce(data::jsonb ->> 'class', 'unknown'),
                    coalesce((data::jsonb ->> 'level')::bigint, 0)
             FROM events WHERE id > ?1 AND kind IN (SELECT json_array_elements_text(?2::json))
             ORDER BY id",
        ))?;
        let counted = serde_json::Value::from(counted).to_string();
        let since = tally.last_event;
        stmt.for_each(params![since, counted], |row| {
            let id: i64 = row.get(0)?;
            let at: i64 = row.get(1)?;
            let name: String = row.get(2)?;
            let mailbox: String = row.get(3)?;
            let outbox_id: Option<i64> = row.get(4)?;
            let Some(kind) = COUNTED.iter().copied().find(|k| k.as_str() == name) else {
                return Err(StoreError::Corrupt(format!(
                    "event {id}: {name} is not a counted kind"
                )));
            };
            match kind {
                EventKind::MessageReceived => {
                    *tally.messages.entry((mailbox, row.get(5)?)).or_default() += 1;
                }
                EventKind::TicketCreated => *tally.tickets_opened.entry(mailbox).or_default() += 1,
                EventKind::MailboxDisconnected => {
                    *tally.reconnects.entry(mailbox).or_default() += 1
                }
                EventKind::EscalationSent => {
                    *tally.escalations.entry(row.get(6)?).or_default() += 1
                }
                EventKind::DeadlineWarned => tally.deadline_warnings += 1,
                EventKind::DeadlineBreached => tally.deadline_breaches += 1,
                EventKind::AckQueued => {
                    if let Some(id) = outbox_id {
                        tally.acks_waiting.entry(id).or_insert(at);
                    }
                }
                EventKind::OutboxSent => {
                    // The first acceptance of an acknowledgement: its latency.
                    if let Some(queued) = outbox_id.and_then(|id| tally.acks_waiting.remove(&id)) {
                        tally.ack_latency_ms.push(at - queued);
                    }
                }
                failure => {
                    *tally
                        .send_failures
                        .entry(failure_label(failure))
                        .or_default() += 1
                }
            }
            tally.last_event = id;
            Ok(())
        })?;
        let send_failures = ["deferred", "failed", "refused", "transport"]
            .into_iter()
            .map(|label| {
                let n = tally.send_failures.get(label).copied().unwrap_or(0);
                (label.to_string(), n)
            })
            .collect();
        Ok(Figures {
            messages: tally
                .messages
                .iter()
                .map(|((mailbox, class), n)| (mailbox.clone(), class.clone(), *n))
                .collect(),
            tickets_opened: pairs(&tally.tickets_opened),
            acknowledgements_sent: tally.ack_latency_ms.len() as u64,
            send_failures,
            deadline_warnings: tally.deadline_warnings,
            deadline_breaches: tally.deadline_breaches,
            escalations: pairs(&tally.escalations),
            reconnects: pairs(&tally.reconnects),
            ack_latency_ms: tally.ack_latency_ms.clone(),
            outbox: self.outbox_now()?,
        })
    }
}

/// The running totals behind [`Figures`], and the last event they include. Events are only
/// ever appended, so what was counted stays counted: a scrape reads only the new events.
#[derive(Debug, Default)]
pub struct Tally {
    last_event: i64,
    messages: BTreeMap<(String, String), u64>,
    tickets_opened: BTreeMap<String, u64>,
    send_failures: BTreeMap<&'static str, u64>,
    deadline_warnings: u64,
    deadline_breaches: u64,
    escalations: BTreeMap<i64, u64>,
    reconnects: BTreeMap<String, u64>,
    /// Acknowledgements queued and not sent yet: outbox row → when queued (ms).
    acks_waiting: HashMap<i64, i64>,
    ack_latency_ms: Vec<i64>,
}

/// The event kinds the figures count.
const COUNTED: [EventKind; 12] = [
    EventKind::MessageReceived,
    EventKind::TicketCreated,
    EventKind::AckQueued,
    EventKind::OutboxSent,
    EventKind::OutboxDeferred,
    EventKind::OutboxFailed,
    EventKind::OutboxRefused,
    EventKind::SmtpTransportFailed,
    EventKind::DeadlineWarned,
    EventKind::DeadlineBreached,
    EventKind::EscalationSent,
    EventKind::MailboxDisconnected,
];

/// The `outcome` label of a send failure's event kind.
fn failure_label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::OutboxDeferred => "deferred",
        EventKind::OutboxFailed => "failed",
        EventKind::OutboxRefused => "refused",
        _ => "transport",
    }
}

fn pairs<K: Clone>(map: &BTreeMap<K, u64>) -> Vec<(K, u64)> {
    map.iter().map(|(k, n)| (k.clone(), *n)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::OutboxId;
    use crate::store::{Event, Store};

    type Row<'a> = (
        EventKind,
        Option<&'a str>,
        Option<i64>,
        serde_json::Value,
        i64,
    );

    fn record(store: &Store, events: &[Row<'_>]) {
        store
            .write_blocking(|tx| {
                for (kind, mailbox, outbox, data, at) in events {
                    tx.record(
                        &Event {
                            mailbox: *mailbox,
                            outbox: outbox.map(OutboxId),
                            data: Some(data.clone()),
                            ..Event::new(*kind)
                        },
                        Timestamp::from_millisecond(*at).expect("time"),
                    )?;
                }
                Ok(())
            })
            .expect("record");
    }

    fn summary(figures: &Figures) -> String {
        format!(
            "{:?} {:?} {} {:?} {} {} {:?} {:?} {:?}",
            figures.messages,
            figures.tickets_opened,
            figures.acknowledgements_sent,
            figures.send_failures,
            figures.deadline_warnings,
            figures.deadline_breaches,
            figures.escalations,
            figures.reconnects,
            figures.ack_latency_ms
        )
    }

    /// A scrape reads only the events since the last one; the totals are those of a count
    /// over the whole history, including an acknowledgement queued before a scrape and sent
    /// after it.
    #[test]
    fn figures_kept_between_scrapes_equal_a_count_from_scratch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("deskgate.db")).expect("open");
        let none = json!({});
        record(
            &store,
            &[
                (
                    EventKind::MessageReceived,
                    Some("support"),
                    None,
                    json!({"class": "customer"}),
                    1_000,
                ),
                (
                    EventKind::TicketCreated,
                    Some("support"),
                    None,
                    none.clone(),
                    1_000,
                ),
                (
                    EventKind::AckQueued,
                    Some("support"),
                    Some(7),
                    none.clone(),
                    1_000,
                ),
                (
                    EventKind::OutboxDeferred,
                    None,
                    Some(7),
                    none.clone(),
                    1_200,
                ),
                (
                    EventKind::TicketAssigned,
                    Some("support"),
                    None,
                    none.clone(),
                    1_300,
                ),
            ],
        );
        let mut kept = Tally::default();
        let first = store
            .read_blocking(|tx| tx.figures(&mut kept))
            .expect("scrape");
        assert_eq!(first.acknowledgements_sent, 0);
        record(
            &store,
            &[
                (EventKind::OutboxSent, None, Some(7), none.clone(), 1_450),
                (EventKind::OutboxSent, None, Some(7), none.clone(), 1_900),
                (
                    EventKind::MessageReceived,
                    Some("sales"),
                    None,
                    json!({"class": "bounce"}),
                    2_000,
                ),
                (
                    EventKind::MessageReceived,
                    Some("support"),
                    None,
                    json!({"class": "customer"}),
                    2_000,
                ),
                (
                    EventKind::EscalationSent,
                    None,
                    None,
                    json!({"level": 2}),
                    2_100,
                ),
                (EventKind::DeadlineBreached, None, None, none.clone(), 2_100),
                (
                    EventKind::MailboxDisconnected,
                    Some("sales"),
                    None,
                    none.clone(),
                    2_200,
                ),
                (EventKind::SmtpTransportFailed, None, None, none, 2_300),
            ],
        );
        let kept = store
            .read_blocking(|tx| tx.figures(&mut kept))
            .expect("scrape");
        let fresh = store
            .read_blocking(|tx| tx.figures(&mut Tally::default()))
            .expect("scrape");
        assert_eq!(summary(&kept), summary(&fresh));
        assert_eq!(kept.ack_latency_ms, vec![450]);
        assert_eq!(
            kept.messages,
            vec![
                ("sales".to_string(), "bounce".to_string(), 1),
                ("support".to_string(), "customer".to_string(), 2)
            ]
        );
        assert_eq!(kept.escalations, vec![(2, 1)]);
        assert_eq!(kept.send_failures[0], ("deferred".to_string(), 1));
        assert_eq!(kept.send_failures[3], ("transport".to_string(), 1));
    }
}
