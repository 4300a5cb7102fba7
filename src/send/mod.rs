//! Send: drains the outbox over SMTP with lettre.
//!
//! The sender reads only committed rows. It sleeps until the earliest due row (capped, so a
//! clock jump is noticed) or until ingest wakes it. Each send runs inside a tokio timeout
//! (lettre's own timeout covers only the TCP connect). The outcome is written back in one
//! transaction with its event: sent, retried later (4xx, network, TLS, timeout), or failed
//! (5xx, or still failing after `give_up_after`). A row marked sent is never sent again.
//!
//! **Architecture Invariant:** send never touches IMAP. At-least-once: a crash between the
//! server's 250 and the commit of `sent` sends that row again after restart, with the same
//! bytes and Message-ID, so clients show it once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, Tls, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::agent::boundary::Boundary;
use crate::config::{
    Credential, Live, OutboxConfig, Secret, SmtpConfig, Support, TlsMode, TlsTrust,
};
use crate::health::Reporter;
use crate::model::{OutboxId, Person, TicketId};
use crate::oauth::Grant;
use crate::policy::plus;
use crate::render::Outgoing;
use crate::store::{Event, NewMessage, NewOutbox, OutboxRow, Store, StoreError, Tx, dedupe_key};

pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The longest the sender sleeps without looking at the outbox again.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The sender's name in the health registry and the supervisor's log lines.
pub const TASK: &str = "outbox sender";
/// How many due rows one pass claims.
const BATCH: u32 = 50;
/// After shutdown is requested, how long a send in flight may still finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How one send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    Sent,
    /// Worth retrying: 4xx, network, TLS, timeout.
    Temporary(String),
    /// Retrying cannot help: 5xx, or an envelope we cannot build.
    Permanent(String),
}

/// Builds the SMTP transport described by `smtp`, trusting `trust`'s extra CA; `token` is
/// the access token when the login uses OAuth 2.0 (XOAUTH2).
pub fn transport(
    smtp: &SmtpConfig,
    trust: &TlsTrust,
    token: Option<&Secret>,
) -> Result<Transport, lettre::transport::smtp::Error> {
    let server = &smtp.server;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.clone())
        .port(server.port)
        .timeout(Some(smtp.timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(4)
                .idle_timeout(Duration::from_secs(30)),
        );
    if server.tls != TlsMode::Plain {
        let mut parameters = TlsParameters::builder(server.host.clone());
        if let Some(pem) = &trust.extra_ca_pem {
            parameters = parameters.add_root_certificate(Certificate::from_pem(pem)?);
        }
        let parameters = parameters.build()?;
        builder = builder.tls(match server.tls {
            TlsMode::Implicit => Tls::Wrapper(parameters),
            _ => Tls::Required(parameters),
        });
    }
    match (&smtp.credentials, token) {
        (Some((user, Credential::Password(password))), _) => {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        (Some((user, Credential::OAuth2 { .. })), Some(token)) => {
            builder = builder
                .credentials(Credentials::new(user.clone(), token.expose().to_string()))
                .authentication(vec![Mechanism::Xoauth2]);
        }
        (Some((_, Credential::OAuth2 { .. })), None) | (None, _) => {}
    }
    Ok(builder.build())
}

/// The SMTP login: a transport built once for a password, or rebuilt whenever the OAuth
/// access token changes (connections already open in the pool stay logged in); and the
/// sender's own connection, kept open between messages.
///
/// The sender does not send through lettre's pooled transport: lettre 0.11.23 never sets
/// TCP_NODELAY, and it writes a message's body and its final `.` in two writes, so Nagle holds
/// the `.` until the server's delayed ACK, 40 ms per message (22 messages/s to a local
/// Postfix; fixed upstream in lettre PR #1159, not released yet). The sender therefore opens
/// its TCP connection itself, with TCP_NODELAY, and lets lettre do the rest (greeting, EHLO,
/// STARTTLS, AUTH, the transaction).
pub struct Smtp {
    config: SmtpConfig,
    trust: TlsTrust,
    grant: Option<Arc<Grant>>,
    current: tokio::sync::Mutex<Option<(Transport, Option<Secret>)>>,
    connection: tokio::sync::Mutex<Option<Open>>,
}

/// The sender's connection between two messages.
struct Open {
    connection: AsyncSmtpConnection,
    last_used: Instant,
    /// The OAuth access token it logged in with.
    token: Option<Secret>,
}

/// Reused without a NOOP when used this recently (a burst of mail).
const FRESH: Duration = Duration::from_secs(1);
/// Closed rather than reused after this long unused (servers time idle clients out).
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Why a send through [`Smtp::send`] failed.
#[derive(Debug)]
pub enum SendError {
    /// The SMTP server or lettre said so.
    Smtp(lettre::transport::smtp::Error),
    /// Before lettre had a connection: TCP connect, TLS handshake, the login's token.
    Connect(String),
}

impl Smtp {
    /// Checks that a transport can be built (e.g. the CA file is usable).
    pub fn new(
        config: &SmtpConfig,
        trust: &TlsTrust,
        grant: Option<Arc<Grant>>,
    ) -> Result<Smtp, lettre::transport::smtp::Error> {
        let first = match grant {
            None => Some((transport(config, trust, None)?, None)),
            Some(_) => None,
        };
        Ok(Smtp {
            config: config.clone(),
            trust: trust.clone(),
            grant,
            current: tokio::sync::Mutex::new(first),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// A transport logged in with the current credentials, or why there is none (always a
    /// temporary failure: the admin fixes the login, the mail waits).
    pub async fn transport(&self) -> Result<Transport, String> {
        let mut current = self.current.lock().await;
        let Some(grant) = &self.grant else {
            return current
                .as_ref()
                .map(|(transport, _)| transport.clone())
                .ok_or_else(|| "no SMTP transport".to_string());
        };
        let token = token(grant).await?;
        if let Some((transport, used)) = current.as_ref()
            && used.as_ref() == Some(&token)
        {
            return Ok(transport.clone());
        }
        let transport =
            transport(&self.config, &self.trust, Some(&token)).map_err(|e| e.to_string())?;
        *current = Some((transport.clone(), Some(token)));
        Ok(transport)
    }

    /// Sends `raw` over the sender's connection, opening one when there is none (or it has
    /// been idle too long, or fails a NOOP); a connection that failed is not used again. With
    /// OAuth, the grant is asked for the current token first, and a connection logged in with
    /// an older token is replaced (as a revoked grant must stop the mail).
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), SendError> {
        let token = match &self.grant {
            Some(grant) => Some(token(grant).await.map_err(SendError::Connect)?),
            None => None,
        };
        let mut slot = self.connection.lock().await;
        let mut kept = None;
        if let Some(mut open) = slot.take() {
            let idle = open.last_used.elapsed();
            if idle < IDLE_LIMIT
                && open.token == token
                && !open.connection.has_broken()
                && (idle < FRESH || open.connection.test_connected().await)
            {
                kept = Some(open.connection);
            }
        }
        let mut connection = match kept {
            Some(connection) => connection,
            None => self.connect(token.as_ref()).await?,
        };
        match connection.send(envelope, raw).await {
            Ok(_) => {
                *slot = Some(Open {
                    connection,
                    last_used: Instant::now(),
                    token,
                });
                Ok(())
            }
            Err(err) => {
                connection.abort().await;
                Err(SendError::Smtp(err))
            }
        }
    }

    /// A new connection with TCP_NODELAY, greeted, encrypted as configured and logged in
    /// (with `token` when the login is OAuth).
    async fn connect(&self, token: Option<&Secret>) -> Result<AsyncSmtpConnection, SendError> {
        let server = &self.config.server;
        let address = format!("{}:{}", server.host, server.port);
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|e| SendError::Connect(format!("connecting to {address}: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Connect(format!("TCP_NODELAY: {e}")))?;
        let hello = ClientId::default();
        let mut connection = match server.tls {
            TlsMode::Implicit => {
                let config = self
                    .trust
                    .client_config()
                    .map_err(|e| SendError::Connect(e.to_string()))?;
                let name = rustls::pki_types::ServerName::try_from(server.host.clone())
                    .map_err(|e| SendError::Connect(format!("`{}`: {e}", server.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError::Connect(format!("TLS with {address}: {e}")))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(ImplicitTls(tls)), &hello)
                    .await
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await,
        }
        .map_err(SendError::Smtp)?;
        if server.tls == TlsMode::Starttls {
            let mut parameters = TlsParameters::builder(server.host.clone());
            if let Some(pem) = &self.trust.extra_ca_pem {
                parameters = parameters
                    .add_root_certificate(Certificate::from_pem(pem).map_err(SendError::Smtp)?);
            }
            let parameters = parameters.build().map_err(SendError::Smtp)?;
            connection
                .starttls(parameters, &hello)
                .await
                .map_err(SendError::Smtp)?;
        }
        let login = match &self.config.credentials {
            Some((user, Credential::Password(password))) => Some((
                Credentials::new(user.clone(), password.expose().to_string()),
                vec![Mechanism::Plain, Mechanism::Login],
            )),
            Some((user, Credential::OAuth2 { .. })) => {
                let Some(token) = token else {
                    return Err(SendError::Connect(
                        "no token source was set up for the SMTP OAuth login".into(),
                    ));
                };
                Some((
                    Credentials::new(user.clone(), token.expose().to_string()),
                    vec![Mechanism::Xoauth2],
                ))
            }
            None => None,
        };
        if let Some((credentials, mechanisms)) = login {
            connection
                .auth(&mechanisms, &credentials)
                .await
                .map_err(SendError::Smtp)?;
        }
        Ok(connection)
    }

    /// The server refused the login: forget the access token so the next send gets a new
    /// one.
    async fn login_refused(&self) {
        if let Some(grant) = &self.grant {
            grant.forget().await;
        }
    }
}

/// The current access token of `grant`; when there is none, why (an error the admin must
/// act on is logged).
async fn token(grant: &Grant) -> Result<Secret, String> {
    match grant.access_token().await {
        Ok(token) => Ok(token.secret),
        Err(err) => {
            if err.needs_admin() {
                error!(error = %err, "outbox: SMTP cannot log in until an admin acts; mail stays queued");
            }
            Err(err.to_string())
        }
    }
}

/// A TLS stream from the first byte (SMTPS), as lettre takes an existing stream.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Drains the outbox until cancelled.
pub struct Sender {
    /// Read per row (retry schedule, timeout); SMTP settings live in `smtp`, and a reload
    /// that changes them restarts the sender.
    pub config: Live,
    pub store: Store,
    pub health: Reporter,
    pub smtp: Arc<Smtp>,
    /// Notified by ingest after a commit that queued mail.
    pub wake: Arc<Notify>,
}

impl Sender {
    pub async fn run(self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            let pause = match self.pass(&cancel).await {
                Ok(pause) => match self.store.read(|tx| tx.outbox_now()).await {
                    Ok(now) => {
                        self.health.outbox(Some((now.depth, now.oldest)), None);
                        pause
                    }
                    Err(err) => self.store_failed(err),
                },
                Err(err) => self.store_failed(err),
            };
            self.health.beat(pause);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
                _ = cancel.cancelled() => break,
            }
        }
        info!("outbox sender stopped");
    }

    fn store_failed(&self, err: StoreError) -> Duration {
        error!(error = %err, "outbox: cannot read or update the store; retrying in 5s");
        self.health.outbox(
            None,
            Some(format!("cannot read or update the store: {err}")),
        );
        Duration::from_secs(5)
    }

    /// Sends every due row; returns how long to sleep before the next pass.
    async fn pass(&self, cancel: &CancellationToken) -> Result<Duration, StoreError> {
        loop {
            let now = Timestamp::now();
            let due = self.store.read(move |tx| tx.outbox_due(now, BATCH)).await?;
            let full = due.len() == BATCH as usize;
            for row in due {
                if cancel.is_cancelled() {
                    return Ok(Duration::ZERO);
                }
                self.deliver(row, cancel).await?;
            }
            if !full {
                break;
            }
        }
        let next = self.store.read(|tx| tx.outbox_next_due()).await?;
        let now = Timestamp::now();
        Ok(match next {
            Some(at) if at <= now => Duration::ZERO,
            Some(at) => Duration::try_from(at.duration_since(now))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }

    async fn deliver(&self, row: OutboxRow, cancel: &CancellationToken) -> Result<(), StoreError> {
        let config = self.config.current();
        // The send, bounded by the SMTP timeout, and the commit of its outcome.
        self.health.beat(config.smtp.timeout * 2);
        let result = self.attempt(&row, cancel).await;
        let Some(result) = result else {
            warn!(
                outbox_id = row.id.0,
                "shutdown during a send; the row stays queued"
            );
            return Ok(());
        };
        let now = Timestamp::now();
        let outcome = next_step(&result, &row, &config.outbox, now);
        let (id, ticket) = (row.id, row.ticket);
        let recipients = row.recipients.join(", ");
        let message_id = row.message_id.clone();
        match &outcome {
            Step::Sent => info!(
                outbox_id = id.0,
                ticket = ticket.map(|t| t.0),
                message_id,
                to = recipients,
                "outbox: sent"
            ),
            Step::Retry { at, reason } => {
                warn!(outbox_id = id.0, ticket = ticket.map(|t| t.0), message_id, reason, retry_at = %at, "outbox: deferred")
            }
            Step::Fail { reason } => error!(
                outbox_id = id.0,
                ticket = ticket.map(|t| t.0),
                message_id,
                reason,
                "outbox: failed permanently"
            ),
        }
        self.store
            .write(move |tx| {
                let (kind, detail) = match outcome {
                    Step::Sent => {
                        tx.outbox_sent(id, now)?;
                        ("outbox.sent", format!("to {recipients}"))
                    }
                    Step::Retry { at, reason } => {
                        tx.outbox_retry_at(id, at, &reason)?;
                        ("outbox.deferred", format!("{reason}; next attempt {at}"))
                    }
                    Step::Fail { reason } => {
                        tx.outbox_failed(id, &reason)?;
                        ("outbox.failed", reason)
                    }
                };
                tx.record(
                    &Event {
                        kind,
                        ticket,
                        outbox: Some(id),
                        detail,
                        ..Event::default()
                    },
                    now,
                )
            })
            .await
    }

    /// One SMTP attempt; `None` if shutdown cut it off.
    async fn attempt(&self, row: &OutboxRow, cancel: &CancellationToken) -> Option<SendResult> {
        let envelope = match envelope(row) {
            Ok(envelope) => envelope,
            Err(reason) => return Some(SendResult::Permanent(reason)),
        };
        let limit = self.config.current().smtp.timeout;
        let send = tokio::time::timeout(limit, self.smtp.send(&envelope, &row.raw));
        let grace = async {
            cancel.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = send => Some(match result {
                Ok(Ok(())) => SendResult::Sent,
                Ok(Err(SendError::Smtp(err))) => {
                    if is_login_refused(&err) {
                        self.smtp.login_refused().await;
                    }
                    classify(&err)
                }
                Ok(Err(SendError::Connect(reason))) => SendResult::Temporary(reason),
                Err(_) => SendResult::Temporary(format!("no answer from the SMTP server within {limit:?}")),
            }),
            _ = grace => None,
        }
    }
}

fn envelope(row: &OutboxRow) -> Result<Envelope, String> {
    let from = row
        .envelope_from
        .parse()
        .map_err(|e| format!("envelope sender `{}` is invalid: {e}", row.envelope_from))?;
    let to = row
        .recipients
        .iter()
        .map(|r| {
            r.parse()
                .map_err(|e| format!("recipient `{r}` is invalid: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| format!("envelope: {e}"))
}

/// 530/534/535: the server refused our login (RFC 4954), not the message.
fn is_login_refused(err: &lettre::transport::smtp::Error) -> bool {
    err.status()
        .is_some_and(|code| matches!(u16::from(code), 530 | 534 | 535))
}

/// Temporary or permanent, from lettre's error. A refused login is temporary: the message
/// is fine, the admin must fix the credentials, and the mail waits for that.
pub fn classify(err: &lettre::transport::smtp::Error) -> SendResult {
    let reason = err.to_string();
    if err.is_permanent() && !is_login_refused(err) {
        SendResult::Permanent(reason)
    } else {
        SendResult::Temporary(reason)
    }
}

/// What to write after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Sent,
    Retry { at: Timestamp, reason: String },
    Fail { reason: String },
}

/// Pure: the retry schedule (`retry[min(attempts, len-1)]`) and the give-up rule.
fn next_step(result: &SendResult, row: &OutboxRow, outbox: &OutboxConfig, now: Timestamp) -> Step {
    match result {
        SendResult::Sent => Step::Sent,
        SendResult::Permanent(reason) => Step::Fail {
            reason: reason.clone(),
        },
        SendResult::Temporary(reason) => {
            if now >= plus(row.created_at, outbox.give_up_after) {
                return Step::Fail {
                    reason: format!("still failing after {:?} ({reason})", outbox.give_up_after),
                };
            }
            let index = (row.attempts as usize).min(outbox.retry.len().saturating_sub(1));
            let delay = outbox
                .retry
                .get(index)
                .copied()
                .unwrap_or(Duration::from_secs(60));
            Step::Retry {
                at: plus(now, delay),
                reason: reason.clone(),
            }
        }
    }
}

/// Who a rendered mail is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// An agent or another person inside (team lead, manager): internal mail.
    Inside(&'a str),
    /// A customer or a third party: never sent with a reply key in it.
    Outside(&'a Boundary),
}

/// Puts rendered mail in the outbox, inside the caller's transaction: the outbound message row
/// (so the ticket's transcript and In-Reply-To look-ups find it) and the outbox row the
/// sender delivers. Mail to someone inside is internal: never a threading key for anyone
/// else. Mail to someone outside that carries a reply key is the one choke point where keys
/// would leave the agents: it is not queued (`None`), and a `outbox.key_withheld` event and
/// an error say why.
pub fn enqueue(
    tx: &Tx<'_>,
    support: &Support,
    ticket: TicketId,
    class: &str,
    audience: Audience<'_>,
    out: &Outgoing,
    now: Timestamp,
) -> Result<Option<OutboxId>, StoreError> {
    let agent = match audience {
        Audience::Inside(agent) => Some(agent),
        Audience::Outside(boundary) => {
            if let Some(leak) = boundary.leak(&out.raw) {
                error!(ticket = ticket.0, message_id = %out.message_id, kind = class, "not sent, it would carry a reply key outside: {leak}");
                tx.record(
                    &Event {
                        kind: "outbox.key_withheld",
                        ticket: Some(ticket),
                        detail: format!(
                            "{class} to {} not sent: {leak}",
                            out.recipients.join(", ")
                        ),
                        ..Event::default()
                    },
                    now,
                )?;
                return Ok(None);
            }
            None
        }
    };
    let from = Person::new(&out.envelope_from, Some(&support.name));
    let row = tx.insert_message(&NewMessage {
        ticket: Some(ticket),
        outbound: true,
        dedupe_key: &dedupe_key(Some(&out.message_id), &out.raw),
        message_id: Some(&out.message_id),
        source: None,
        from: Some(&from),
        subject: &out.subject,
        sent_date: Some(now),
        received_at: now,
        in_reply_to: &[],
        references: &[],
        class,
        defects: "",
        body_text: &out.text,
        attachments: &[],
        raw: &out.raw,
        internal: agent.is_some(),
        agent,
    })?;
    tx.enqueue(&NewOutbox {
        ticket,
        message: row,
        kind: class,
        envelope_from: &out.envelope_from,
        recipients: &out.recipients,
        now,
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OutboxId;

    fn row(attempts: u32) -> OutboxRow {
        OutboxRow {
            id: OutboxId(1),
            ticket: None,
            message_id: "x@y".into(),
            envelope_from: "support@example.test".into(),
            recipients: vec!["a@b.c".into()],
            raw: Vec::new(),
            attempts,
            created_at: "2026-11-23T10:00:00Z".parse().unwrap(),
        }
    }

    fn outbox() -> OutboxConfig {
        OutboxConfig {
            retry: vec![Duration::from_secs(10), Duration::from_secs(60)],
            give_up_after: Duration::from_secs(3600),
        }
    }

    /// The choke point: mail to someone outside that carries a reply key is not queued, and
    /// the refusal is recorded; the same mail to an agent is.
    #[test]
    fn mail_outside_with_a_reply_key_is_withheld_at_enqueue() {
        use crate::agent::sign::Signer;
        use crate::store::NewTicket;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("boundary.db")).expect("open store");
        let address: lettre::Address = "support@example.test".parse().unwrap();
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef", &address, "+");
        let boundary = Boundary::new(
            Some(signer.clone()),
            vec!["support@example.test".into()],
            "+",
            Vec::new(),
        );
        let support = Support {
            address,
            name: "Example Support".into(),
            tag_prefix: "#".into(),
            timezone: jiff::tz::TimeZone::UTC,
            language: crate::language::Lang::En,
        };
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let key = signer.reply_address(TicketId(1), "agent1@example.test");
        let outgoing = |n: u32, cc: &str| {
            let raw = format!(
                "From: support@example.test\r\nTo: mona@example.net\r\nCc: {cc}\r\nSubject: Re: x\r\nMessage-ID: <o{n}@example.test>\r\n\r\nHello.\r\n"
            );
            Outgoing {
                message_id: format!("o{n}@example.test"),
                subject: "Re: x".into(),
                envelope_from: "support@example.test".into(),
                recipients: vec!["mona@example.net".into(), cc.to_string()],
                text: "Hello.".into(),
                raw: raw.into_bytes(),
            }
        };
        let (leaking, clean) = (outgoing(1, &key), outgoing(2, "boss@example.net"));
        let (withheld, to_agent, sent) = store
            .write_blocking(|tx| {
                let ticket = tx.create_ticket(&NewTicket {
                    mailbox: "support",
                    subject: "x",
                    customer: None,
                    language: None,
                    address: None,
                    now,
                })?;
                let outside = Audience::Outside(&boundary);
                let withheld = enqueue(tx, &support, ticket, "reply", outside, &leaking, now)?;
                let inside = Audience::Inside("agent1@example.test");
                let to_agent = enqueue(tx, &support, ticket, "note", inside, &leaking, now)?;
                let sent = enqueue(tx, &support, ticket, "reply", outside, &clean, now)?;
                Ok((withheld, to_agent, sent))
            })
            .expect("write");
        assert_eq!(withheld, None);
        assert!(to_agent.is_some() && sent.is_some());
        let events = store
            .read_blocking(|tx| tx.events("outbox.key_withheld", 10))
            .expect("events");
        assert_eq!(events.len(), 1);
        assert!(
            events[0].detail.contains("Cc names the reply address"),
            "{}",
            events[0].detail
        );
    }

    #[test]
    fn retry_schedule_repeats_its_last_delay_then_gives_up() {
        let now: Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        let temporary = SendResult::Temporary("451 try later".into());
        let at = |secs| Step::Retry {
            at: plus(now, Duration::from_secs(secs)),
            reason: "451 try later".into(),
        };
        assert_eq!(next_step(&temporary, &row(0), &outbox(), now), at(10));
        assert_eq!(next_step(&temporary, &row(1), &outbox(), now), at(60));
        assert_eq!(next_step(&temporary, &row(7), &outbox(), now), at(60));
        let late: Timestamp = "2026-11-23T11:00:00Z".parse().unwrap();
        assert!(matches!(
            next_step(&temporary, &row(9), &outbox(), late),
            Step::Fail { .. }
        ));
    }

    #[test]
    fn permanent_failures_are_final() {
        let now: Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        let step = next_step(
            &SendResult::Permanent("550 no such user".into()),
            &row(0),
            &outbox(),
            now,
        );
        assert_eq!(
            step,
            Step::Fail {
                reason: "550 no such user".into()
            }
        );
        assert_eq!(
            next_step(&SendResult::Sent, &row(0), &outbox(), now),
            Step::Sent
        );
    }

    #[test]
    fn bad_envelopes_are_permanent() {
        let mut bad = row(0);
        bad.recipients = vec!["not an address".into()];
        assert!(
            envelope(&bad)
                .unwrap_err()
                .contains("recipient `not an address` is invalid")
        );
    }
}
