//! The SMTP side of the sender: our own connection (TCP_NODELAY), login, and one transaction
//! per outbox row with every recipient's reply kept apart.
//!
//! Only the replies to MAIL, RCPT and DATA decide what happens to a row and its recipients
//! ([`Answer`]); a failure to connect, greet, encrypt or log in, a network error and a
//! timeout are the transport's ([`Broken`]), which decides nothing about any row.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, Tls, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::error;

use crate::config::{Credential, Secret, SmtpConfig, TlsMode, TlsTrust};
use crate::oauth::Grant;

pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The transport failed (connect, greeting, STARTTLS, login, the network, a malformed
/// reply): no recipient's fate is decided, and the sender backs off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Broken(pub String);

/// What the server answered to one transaction, per recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Recipients that got the mail (the server accepted its DATA).
    pub accepted: Vec<String>,
    /// Refused for good (5xx to RCPT, or to MAIL or DATA for all of them): `address: reply`.
    pub refused: Vec<String>,
    /// Refused for now (4xx): `address: reply`; the next attempt tries them again.
    pub deferred: Vec<String>,
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

    /// Sends `raw` from `from` to `to` over the sender's connection, opening one when there
    /// is none (or it has been idle too long, or fails a NOOP); a connection that failed is
    /// not used again. With OAuth, the grant is asked for the current token first, and a
    /// connection logged in with an older token is replaced (as a revoked grant must stop the
    /// mail). Each recipient's fate is in the [`Answer`]; an `Err` decides nobody's.
    pub async fn send(&self, from: &str, to: &[String], raw: &[u8]) -> Result<Answer, Broken> {
        let token = match &self.grant {
            Some(grant) => Some(token(grant).await.map_err(Broken)?),
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
        match transaction(&mut connection, from, to, raw).await {
            Ok(answer) => {
                *slot = Some(Open {
                    connection,
                    last_used: Instant::now(),
                    token,
                });
                Ok(answer)
            }
            Err(err) => {
                connection.abort().await;
                Err(Broken(err.to_string()))
            }
        }
    }

    /// A new connection with TCP_NODELAY, greeted, encrypted as configured and logged in
    /// (with `token` when the login is OAuth).
    async fn connect(&self, token: Option<&Secret>) -> Result<AsyncSmtpConnection, Broken> {
        let server = &self.config.server;
        let address = format!("{}:{}", server.host, server.port);
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|e| Broken(format!("connecting to {address}: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| Broken(format!("TCP_NODELAY: {e}")))?;
        let hello = ClientId::default();
        let mut connection = match server.tls {
            TlsMode::Implicit => {
                let config = self
                    .trust
                    .client_config()
                    .map_err(|e| Broken(e.to_string()))?;
                let name = rustls::pki_types::ServerName::try_from(server.host.clone())
                    .map_err(|e| Broken(format!("`{}`: {e}", server.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Broken(format!("TLS with {address}: {e}")))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(ImplicitTls(tls)), &hello)
                    .await
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await,
        }
        .map_err(|e| Broken(format!("greeting: {e}")))?;
        if server.tls == TlsMode::Starttls {
            let mut parameters = TlsParameters::builder(server.host.clone());
            if let Some(pem) = &self.trust.extra_ca_pem {
                parameters = parameters.add_root_certificate(
                    Certificate::from_pem(pem)
                        .map_err(|e| Broken(format!("TLS parameters: {e}")))?,
                );
            }
            let parameters = parameters
                .build()
                .map_err(|e| Broken(format!("TLS parameters: {e}")))?;
            connection
                .starttls(parameters, &hello)
                .await
                .map_err(|e| Broken(format!("STARTTLS: {e}")))?;
        }
        let login = match &self.config.credentials {
            Some((user, Credential::Password(password))) => Some((
                Credentials::new(user.clone(), password.expose().to_string()),
                vec![Mechanism::Plain, Mechanism::Login],
            )),
            Some((user, Credential::OAuth2 { .. })) => {
                let Some(token) = token else {
                    return Err(Broken(
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
        if let Some((credentials, mechanisms)) = login
            && let Err(err) = connection.auth(&mechanisms, &credentials).await
        {
            if is_login_refused(&err) {
                self.login_refused().await;
            }
            return Err(Broken(format!("login: {err}")));
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

/// One MAIL / RCPT… / DATA transaction. A negative reply decides the recipients it is
/// about; anything else (the network, a malformed reply, a refused login at MAIL) is the
/// transport's `Err`. The connection is left ready for the next transaction (RSET after a
/// refusal).
async fn transaction(
    connection: &mut AsyncSmtpConnection,
    from: &str,
    to: &[String],
    raw: &[u8],
) -> Result<Answer, lettre::transport::smtp::Error> {
    let mut answer = Answer::default();
    let (sender, mut recipients) = match envelope(from, to, &mut answer) {
        Some(parsed) => parsed,
        None => return Ok(answer),
    };
    let options = match mail_options(connection, &sender, &recipients, raw) {
        Ok(options) => options,
        Err(reason) => {
            answer.refuse_all(recipients.iter().map(|(text, _)| text), &reason);
            return Ok(answer);
        }
    };
    if let Some(reply) = reply(connection.command(Mail::new(Some(sender), options)).await)? {
        answer.put(recipients.iter().map(|(text, _)| text), &reply);
        return reset(connection, answer).await;
    }
    let mut taken = Vec::new();
    for (text, address) in recipients.drain(..) {
        match reply(connection.command(Rcpt::new(address, vec![])).await)? {
            None => taken.push(text),
            Some(reply) => answer.put([&text], &reply),
        }
    }
    if taken.is_empty() {
        return reset(connection, answer).await;
    }
    let data = match reply(connection.command(Data).await)? {
        None => reply(connection.message(raw).await)?,
        refused => refused,
    };
    match data {
        None => answer.accepted = taken,
        Some(reply) => {
            answer.put(&taken, &reply);
            return reset(connection, answer).await;
        }
    }
    Ok(answer)
}

/// A server's negative reply to one command.
struct Reply {
    text: String,
    permanent: bool,
}

/// `Ok(None)`: positive; `Ok(Some)`: the server refused (4xx or 5xx); `Err`: the transport
/// failed, or the server wants a login (530 at MAIL), which is the transport's too.
fn reply<T>(
    result: Result<T, lettre::transport::smtp::Error>,
) -> Result<Option<Reply>, lettre::transport::smtp::Error> {
    match result {
        Ok(_) => Ok(None),
        Err(err) if is_login_refused(&err) => Err(err),
        Err(err) if err.is_permanent() || err.is_transient() => Ok(Some(Reply {
            permanent: err.is_permanent(),
            text: err.to_string(),
        })),
        Err(err) => Err(err),
    }
}

impl Answer {
    /// Puts `recipients` among the refused or the deferred, as `reply` says.
    fn put<'a>(&mut self, recipients: impl IntoIterator<Item = &'a String>, reply: &Reply) {
        let list = if reply.permanent {
            &mut self.refused
        } else {
            &mut self.deferred
        };
        list.extend(
            recipients
                .into_iter()
                .map(|r| format!("{r}: {}", reply.text)),
        );
    }

    fn refuse_all<'a>(&mut self, recipients: impl IntoIterator<Item = &'a String>, reason: &str) {
        let reply = Reply {
            text: reason.to_string(),
            permanent: true,
        };
        self.put(recipients, &reply);
    }
}

/// The parsed envelope; an address that does not parse is refused here (it never will).
/// `None` when nobody is left to send to.
fn envelope(
    from: &str,
    to: &[String],
    answer: &mut Answer,
) -> Option<(Address, Vec<(String, Address)>)> {
    let sender = match from.parse::<Address>() {
        Ok(sender) => sender,
        Err(err) => {
            answer.refuse_all(to, &format!("envelope sender `{from}` is invalid: {err}"));
            return None;
        }
    };
    let mut recipients = Vec::new();
    for text in to {
        match text.parse::<Address>() {
            Ok(address) => recipients.push((text.clone(), address)),
            Err(err) => answer.refuse_all([text], &format!("not a valid address: {err}")),
        }
    }
    (!recipients.is_empty()).then_some((sender, recipients))
}

/// SMTPUTF8 and 8BITMIME when the envelope or the message need them (as lettre's own
/// `send` does); a server without them can never take this mail.
fn mail_options(
    connection: &AsyncSmtpConnection,
    sender: &Address,
    recipients: &[(String, Address)],
    raw: &[u8],
) -> Result<Vec<MailParameter>, String> {
    let info = connection.server_info();
    let mut options = Vec::new();
    let non_ascii =
        !AsRef::<str>::as_ref(sender).is_ascii() || recipients.iter().any(|(t, _)| !t.is_ascii());
    if non_ascii {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err("the server does not take non-ASCII addresses (no SMTPUTF8)".into());
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !raw.is_ascii() {
        if !info.supports_feature(Extension::EightBitMime) {
            return Err("the server does not take 8-bit mail (no 8BITMIME)".into());
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(options)
}

/// Ends a transaction the server refused, so the connection can be used again.
async fn reset(
    connection: &mut AsyncSmtpConnection,
    answer: Answer,
) -> Result<Answer, lettre::transport::smtp::Error> {
    connection.command(Rset).await?;
    Ok(answer)
}

/// 530/534/535: the server refused (or wants) our login (RFC 4954), not the message.
fn is_login_refused(err: &lettre::transport::smtp::Error) -> bool {
    err.status()
        .is_some_and(|code| matches!(u16::from(code), 530 | 534 | 535))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_does_not_parse_is_refused_alone() {
        let mut answer = Answer::default();
        let to = ["not an address".to_string(), "a@b.c".to_string()];
        let (_, recipients) = envelope("support@example.test", &to, &mut answer).expect("one left");
        assert_eq!(recipients.len(), 1);
        assert_eq!(recipients[0].0, "a@b.c");
        assert_eq!(answer.refused.len(), 1);
        assert!(answer.refused[0].starts_with("not an address: not a valid address"));
        let mut answer = Answer::default();
        assert!(envelope("bad sender", &to[1..], &mut answer).is_none());
        assert!(answer.refused[0].contains("envelope sender `bad sender` is invalid"));
    }
}
