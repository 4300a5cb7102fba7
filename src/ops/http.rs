//! The HTTP listener: `/healthz` for load balancers and monitoring, `/metrics` for
//! Prometheus. Loopback by default (`[http] listen`), no authentication, read-only.
//!
//! `/metrics` is computed at scrape time from the event history (one read transaction on
//! its own read-only connection, so a scrape never waits for the writer; running totals
//! kept in memory mean a scrape reads only the events recorded since the last): counters are then
//! the same after a restart and always agree with `deskgate stats`, and no in-memory counter
//! can drift from what the database says happened. The health registry adds what only the
//! running process knows (which mailboxes are connected).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Live;
use crate::health::Health;
use crate::store::{Figures, Store, StoreError, Tally};

/// Upper bounds of the delivery-to-acknowledgement histogram, in seconds.
const ACK_LATENCY_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
];

#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    /// A read-only connection of its own.
    store: Store,
    config: Live,
    /// The figures so far; each scrape adds only the events recorded since the last one.
    tally: Arc<Mutex<Tally>>,
}

/// Serves until cancelled. `listener` is bound by the caller, so a port in use is an error
/// at start (or reload), not a log line later.
pub async fn serve(
    listener: std::net::TcpListener,
    health: Arc<Health>,
    store: Store,
    config: Live,
    cancel: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(err) => {
            warn!(error = %err, "http: cannot use the listening socket; /healthz and /metrics are off");
            return;
        }
    };
    let tally = Arc::default();
    // The whole history is counted once, now, so that no scrape waits for it.
    tokio::spawn({
        let (store, tally) = (store.clone(), Arc::clone(&tally));
        async move {
            if let Err(err) = count(&store, &tally).await {
                warn!(error = %err, "http: cannot count the event history for /metrics");
            }
        }
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Shared {
            health,
            store,
            config,
            tally,
        });
    info!(listen = ?addr, "http: serving /healthz and /metrics");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(err) = served {
        warn!(error = %err, "http: the listener failed");
    }
}

/// Binds `addr` (blocking, but only a socket call).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

/// 200 when every mailbox is connected, every task alive and the outbox drains; 503 with the
/// reasons otherwise. The body is JSON either way.
async fn healthz(State(shared): State<Shared>) -> Response {
    let mut snapshot = shared.health.snapshot();
    let now = Timestamp::now();
    let mut problems = Vec::new();
    match shared.store.read(|tx| tx.outbox_now()).await {
        Ok(outbox) => {
            snapshot.outbox.depth = outbox.depth;
            snapshot.outbox.oldest = outbox.oldest;
        }
        Err(err) => problems.push(format!("database: {err}")),
    }
    let max_age = shared.config.current().http.outbox_max_age;
    problems.extend(snapshot.problems(now, max_age));
    let oldest_age = snapshot
        .outbox
        .oldest
        .map(|t| now.duration_since(t).as_secs().max(0));
    let body = json!({
        "status": if problems.is_empty() { "ok" } else { "unhealthy" },
        "instance": shared.config.current().instance,
        "problems": problems,
        "mailboxes": snapshot.mailboxes,
        "outbox": {
            "depth": snapshot.outbox.depth,
            "oldest_age_seconds": oldest_age,
        },
        "troubles": snapshot.troubles,
        "stuck_tasks": snapshot.stuck.iter().map(|(t, _)| t).collect::<Vec<_>>(),
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The figures, the tally brought up to date on the store's blocking thread.
async fn count(store: &Store, tally: &Arc<Mutex<Tally>>) -> Result<Figures, StoreError> {
    let tally = Arc::clone(tally);
    store
        .read(move |tx| {
            // A panic while counting may leave the totals half-updated: start again.
            let mut tally = tally.lock().unwrap_or_else(|poisoned| {
                let mut tally = poisoned.into_inner();
                *tally = Tally::default();
                tally
            });
            tx.figures(&mut tally)
        })
        .await
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let figures = match count(&shared.store, &shared.tally).await {
        Ok(figures) => figures,
        Err(err) => {
            warn!(error = %err, "http: /metrics cannot read the database");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the database: {err}\n"),
            )
                .into_response();
        }
    };
    let connected: Vec<(String, bool, Option<String>)> = shared
        .health
        .snapshot()
        .mailboxes
        .into_iter()
        .map(|(name, m)| (name, m.connected, m.owner))
        .collect();
    let config = shared.config.current();
    let levels = config
        .mailboxes
        .iter()
        .map(|m| m.deadlines.escalation.len())
        .chain([config.deadlines.escalation.len()])
        .max()
        .unwrap_or(0);
    match render(&figures, &connected, levels, Timestamp::now()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {err}\n"),
        )
            .into_response(),
    }
}

type Labels = Vec<(&'static str, String)>;

fn counter_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, n) in values {
        family.get_or_create(&labels).inc_by(n);
    }
    registry.register(name, help, family);
}

fn counter(registry: &mut Registry, name: &str, help: &str, n: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(n);
    registry.register(name, help, counter);
}

/// The Prometheus (OpenMetrics) text for `figures` and the mailboxes' connection state.
/// Every configured mailbox and escalation level (1..=`levels`) has its series from the
/// start, at 0 until something happens (so `rate()` and alerts see the first event).
pub fn render(
    figures: &Figures,
    connected: &[(String, bool, Option<String>)],
    levels: usize,
    now: Timestamp,
) -> Result<String, std::fmt::Error> {
    let mut escalations: BTreeMap<i64, u64> = (1..=levels as i64).map(|l| (l, 0)).collect();
    escalations.extend(figures.escalations.iter().copied());
    let mut reconnects: BTreeMap<&str, u64> =
        connected.iter().map(|(m, _, _)| (m.as_str(), 0)).collect();
    reconnects.extend(figures.reconnects.iter().map(|(m, n)| (m.as_str(), *n)));
    let mut registry = Registry::with_prefix("deskgate");
    counter_family(
        &mut registry,
        "messages",
        "Inbound messages by mailbox and class (customer, auto-reply, bounce, bulk, agent-reply, ...)",
        figures.messages.iter().map(|(mailbox, class, n)| {
            (
                vec![("mailbox", mailbox.clone()), ("class", class.clone())],
                *n,
            )
        }),
    );
    counter_family(
        &mut registry,
        "tickets_opened",
        "Tickets opened, by mailbox",
        figures
            .tickets_opened
            .iter()
            .map(|(mailbox, n)| (vec![("mailbox", mailbox.clone())], *n)),
    );
    counter(
        &mut registry,
        "acknowledgements_sent",
        "Acknowledgements the SMTP server accepted",
        figures.acknowledgements_sent,
    );
    counter_family(
        &mut registry,
        "send_failures",
        "Failed SMTP sends: deferred (will be retried), failed (given up), refused (one recipient, for good), transport (connect, greeting, TLS, login or timeout; no row decided)",
        figures
            .send_failures
            .iter()
            .map(|(outcome, n)| (vec![("outcome", outcome.clone())], *n)),
    );
    counter(
        &mut registry,
        "deadline_warnings",
        "Warnings sent before a response deadline",
        figures.deadline_warnings,
    );
    counter(
        &mut registry,
        "deadline_breaches",
        "Response deadlines that passed unanswered",
        figures.deadline_breaches,
    );
    counter_family(
        &mut registry,
        "escalations",
        "Escalations sent, by level (1 = first)",
        escalations
            .into_iter()
            .map(|(level, n)| (vec![("level", level.to_string())], n)),
    );
    counter_family(
        &mut registry,
        "reconnects",
        "IMAP sessions lost and reconnected, by mailbox",
        reconnects
            .into_iter()
            .map(|(mailbox, n)| (vec![("mailbox", mailbox.to_string())], n)),
    );
    let depth = Gauge::<i64>::default();
    depth.set(i64::try_from(figures.outbox.depth).unwrap_or(i64::MAX));
    registry.register("outbox_depth", "Queued outbound messages", depth);
    let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    oldest.set(
        figures
            .outbox
            .oldest
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64().max(0.0)),
    );
    registry.register(
        "outbox_oldest_age_seconds",
        "Age of the oldest queued outbound message (0 when the outbox is empty)",
        oldest,
    );
    let up = Family::<Labels, Gauge>::default();
    let owners = Family::<Labels, Gauge>::default();
    for (mailbox, is_connected, owner) in connected {
        up.get_or_create(&vec![("mailbox", mailbox.clone())])
            .set(i64::from(*is_connected));
        if let Some(owner) = owner {
            owners
                .get_or_create(&vec![
                    ("mailbox", mailbox.clone()),
                    ("instance", owner.clone()),
                ])
                .set(1);
        }
    }
    registry.register(
        "mailbox_connected",
        "1 while the mailbox has a logged-in IMAP session",
        up,
    );
    registry.register(
        "mailbox_owner",
        "1 for the instance that fetches the mailbox (its lease on the shared database)",
        owners,
    );
    let latency = Histogram::new(ACK_LATENCY_BUCKETS);
    for ms in &figures.ack_latency_ms {
        latency.observe(Duration::from_millis(u64::try_from(*ms).unwrap_or(0)).as_secs_f64());
    }
    registry.register(
        "ack_latency_seconds",
        "From an inbound message's commit to the SMTP server accepting its acknowledgement",
        latency,
    );
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OutboxNow;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let now = Timestamp::now();
        let figures = Figures {
            messages: vec![
                ("support".into(), "customer".into(), 3),
                ("support".into(), "auto-reply".into(), 1),
            ],
            tickets_opened: vec![("support".into(), 3)],
            acknowledgements_sent: 2,
            send_failures: vec![("deferred".into(), 1), ("failed".into(), 0)],
            deadline_warnings: 4,
            deadline_breaches: 1,
            escalations: vec![(1, 2), (2, 1)],
            reconnects: vec![("support".into(), 5)],
            ack_latency_ms: vec![300, 1500, 7000],
            outbox: OutboxNow {
                depth: 1,
                oldest: Some(now - jiff::SignedDuration::from_secs(90)),
            },
        };
        let text = render(
            &figures,
            &[
                ("support".into(), true, Some("desk-1".into())),
                ("sales".into(), false, Some("desk-2".into())),
            ],
            3,
            now,
        )
        .unwrap();
        for line in [
            "deskgate_messages_total{mailbox=\"support\",class=\"customer\"} 3",
            "deskgate_messages_total{mailbox=\"support\",class=\"auto-reply\"} 1",
            "deskgate_tickets_opened_total{mailbox=\"support\"} 3",
            "deskgate_acknowledgements_sent_total 2",
            "deskgate_send_failures_total{outcome=\"deferred\"} 1",
            "deskgate_deadline_warnings_total 4",
            "deskgate_deadline_breaches_total 1",
            "deskgate_escalations_total{level=\"2\"} 1",
            "deskgate_reconnects_total{mailbox=\"support\"} 5",
            "deskgate_reconnects_total{mailbox=\"sales\"} 0",
            "deskgate_escalations_total{level=\"3\"} 0",
            "deskgate_mailbox_connected{mailbox=\"sales\"} 0",
            "deskgate_mailbox_owner{mailbox=\"sales\",instance=\"desk-2\"} 1",
            "deskgate_mailbox_owner{mailbox=\"support\",instance=\"desk-1\"} 1",
            "deskgate_outbox_depth 1",
            "deskgate_outbox_oldest_age_seconds 90.0",
            "deskgate_mailbox_connected{mailbox=\"support\"} 1",
            "deskgate_ack_latency_seconds_bucket{le=\"0.5\"} 1",
            "deskgate_ack_latency_seconds_bucket{le=\"2.0\"} 2",
            "deskgate_ack_latency_seconds_bucket{le=\"10.0\"} 3",
            "deskgate_ack_latency_seconds_count 3",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
