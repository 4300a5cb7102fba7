//! Opening an IMAP session: TCP (with keepalive), TLS by rustls (implicit or STARTTLS),
//! greeting, login. Every step has a timeout; async-imap has none of its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::FetchError;
use crate::config::{Credential, MailboxConfig, Sasl, Secret, TlsMode, TlsTrust};
use crate::oauth::{Grant, OAuthBearer, XOAuth2};

/// The byte stream under an IMAP session.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub type Session = async_imap::Session<ImapStream>;

/// Runs `future` with `limit`, naming `what` on timeout.
pub async fn timed<T, E>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, FetchError>
where
    FetchError: From<E>,
{
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(FetchError::from),
        Err(_) => Err(FetchError::Timeout { what, after: limit }),
    }
}

/// What a login presents.
#[derive(Clone, Copy)]
pub enum Login<'a> {
    Password(&'a Secret),
    Token(Sasl, &'a Secret),
}

/// A logged-in session, and when it should log in again with a fresh access token.
pub struct Opened {
    pub session: Session,
    pub renew_at: Option<jiff::Timestamp>,
}

/// Connects and logs in to `mailbox`'s server, with an access token from `grant` when the
/// mailbox uses OAuth 2.0. A token the server refuses is forgotten, so the next attempt
/// asks the provider for a new one.
pub async fn open(
    mailbox: &MailboxConfig,
    trust: &TlsTrust,
    grant: Option<&Grant>,
) -> Result<Opened, FetchError> {
    match (&mailbox.credential, grant) {
        (Credential::Password(password), _) => Ok(Opened {
            session: connect(mailbox, trust, Login::Password(password)).await?,
            renew_at: None,
        }),
        (Credential::OAuth2 { mechanism, .. }, Some(grant)) => {
            let token = grant.access_token().await?;
            match connect(mailbox, trust, Login::Token(*mechanism, &token.secret)).await {
                Ok(session) => Ok(Opened {
                    session,
                    renew_at: grant.renew_at().await,
                }),
                Err(err) => {
                    if matches!(err, FetchError::Login { .. }) {
                        grant.forget().await;
                    }
                    Err(err)
                }
            }
        }
        (Credential::OAuth2 { grant, .. }, None) => Err(FetchError::Protocol(format!(
            "{}: no token source was set up for this OAuth login",
            grant.account
        ))),
    }
}

/// Connects and logs in to `mailbox`'s server.
pub async fn connect(
    mailbox: &MailboxConfig,
    trust: &TlsTrust,
    with: Login<'_>,
) -> Result<Session, FetchError> {
    let server = &mailbox.server;
    let limit = mailbox.timeout;
    let address = format!("{}:{}", server.host, server.port);
    let tcp = timed(limit, "TCP connect", TcpStream::connect(&address)).await?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(20));
    socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
    tcp.set_nodelay(true)?;

    let stream = match server.tls {
        TlsMode::Implicit => ImapStream::Tls(Box::new(
            tls_handshake(tcp, &server.host, trust, limit).await?,
        )),
        TlsMode::Plain => ImapStream::Plain(tcp),
        TlsMode::Starttls => {
            let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
            greeting(&mut client, limit).await?;
            timed(
                limit,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let ImapStream::Plain(tcp) = client.into_inner() else {
                return Err(FetchError::Protocol(
                    "STARTTLS on a stream that is already TLS".into(),
                ));
            };
            // No second greeting follows STARTTLS (RFC 3501 6.2.1).
            let tls = tls_handshake(tcp, &server.host, trust, limit).await?;
            let client = async_imap::Client::new(ImapStream::Tls(Box::new(tls)));
            return login(client, mailbox, with).await;
        }
    };
    let mut client = async_imap::Client::new(stream);
    greeting(&mut client, limit).await?;
    login(client, mailbox, with).await
}

async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    trust: &TlsTrust,
    limit: Duration,
) -> Result<TlsStream<TcpStream>, FetchError> {
    let config = trust
        .client_config()
        .map_err(|e| FetchError::Tls(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| FetchError::Tls(format!("`{host}` is not a valid TLS server name: {e}")))?;
    match tokio::time::timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(err)) => Err(FetchError::Tls(err.to_string())),
        Err(_) => Err(FetchError::Timeout {
            what: "TLS handshake",
            after: limit,
        }),
    }
}

async fn greeting(
    client: &mut async_imap::Client<ImapStream>,
    limit: Duration,
) -> Result<(), FetchError> {
    match timed(limit, "server greeting", client.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(FetchError::Protocol(
            "the server closed the connection before greeting".into(),
        )),
    }
}

async fn login(
    client: async_imap::Client<ImapStream>,
    mailbox: &MailboxConfig,
    with: Login<'_>,
) -> Result<Session, FetchError> {
    let user = &mailbox.user;
    let server = &mailbox.server;
    let attempt = async {
        match with {
            Login::Password(password) => client.login(user, password.expose()).await,
            Login::Token(Sasl::Xoauth2, token) => {
                client
                    .authenticate("XOAUTH2", XOAuth2::new(user, token))
                    .await
            }
            Login::Token(Sasl::Oauthbearer, token) => {
                let auth = OAuthBearer::new(user, &server.host, server.port, token);
                client.authenticate("OAUTHBEARER", auth).await
            }
        }
    };
    match tokio::time::timeout(mailbox.timeout, attempt).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((err, _client))) => Err(FetchError::Login {
            user: mailbox.user.clone(),
            reason: err.to_string(),
        }),
        Err(_) => Err(FetchError::Timeout {
            what: "login",
            after: mailbox.timeout,
        }),
    }
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
