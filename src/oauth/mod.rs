//! OAuth 2.0 access tokens for IMAP and SMTP logins (Microsoft 365, Google, any RFC 6749
//! token endpoint, or a program the admin names).
//!
//! One [`Grant`] per login that uses OAuth 2.0. It caches the access token and asks for a
//! new one shortly before it expires ([`refresh_margin`]); concurrent callers wait for one
//! request. A refresh token that the provider rotates is written back to the database in
//! the same step, before the new access token is used. Tokens are [`Secret`]s: never
//! printed, never logged.
//!
//! Errors say whether the admin must act ([`OAuthError::needs_admin`]): a revoked or expired
//! grant, a missing refresh token, a refused client. Everything else (network, 5xx) is
//! retried by the caller like any connection failure.

mod endpoint;
mod sasl;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

pub use endpoint::{DeviceAuthorization, device_login};
pub use sasl::{OAuthBearer, XOAuth2};

use crate::config::{Credential, EndpointGrant, OAuth2, Secret, TlsTrust, TokenSource};
use crate::store::{Store, StoreError};

/// The longest a token request or token command may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "{account}: no OAuth refresh token is stored; run `deskgate oauth login --{account}` once"
    )]
    NoRefreshToken { account: String },
    #[error(
        "{account}: the provider refused the grant ({error}{}); the refresh token was revoked or has expired, or consent was withdrawn: run `deskgate oauth login --{account}` again",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Revoked {
        account: String,
        error: String,
        description: Option<String>,
    },
    #[error(
        "{account}: the provider refused the client ({error}{}); check the oauth2 table (client_id, client secret, tenant or service account key) and what the application is allowed (admin consent, domain-wide delegation)",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Client {
        account: String,
        error: String,
        description: Option<String>,
    },
    #[error("{account}: token request failed: {reason}")]
    Temporary { account: String, reason: String },
    #[error("{account}: token command failed: {reason}")]
    Command { account: String, reason: String },
    #[error("{account}: database: {source}")]
    Store { account: String, source: StoreError },
}

impl OAuthError {
    /// True when retrying cannot help until an admin acts.
    pub fn needs_admin(&self) -> bool {
        matches!(
            self,
            OAuthError::NoRefreshToken { .. }
                | OAuthError::Revoked { .. }
                | OAuthError::Client { .. }
        )
    }
}

/// An access token and when it stops working (`None`: unknown, ask again at each login).
#[derive(Clone)]
pub struct AccessToken {
    pub secret: Secret,
    pub expires_at: Option<Timestamp>,
}

impl AccessToken {
    /// From when on the token should be replaced rather than used for a new login.
    pub fn renew_at(&self, issued_at: Timestamp) -> Option<Timestamp> {
        let expires_at = self.expires_at?;
        let lifetime = expires_at.duration_since(issued_at);
        let margin = refresh_margin(Duration::try_from(lifetime).unwrap_or(Duration::ZERO));
        SignedDuration::try_from(margin)
            .ok()
            .and_then(|m| expires_at.checked_sub(m).ok())
    }
}

/// How long before expiry a token is replaced: a tenth of its lifetime, at most 5 minutes
/// (Microsoft and Google tokens live an hour).
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

struct Cached {
    token: AccessToken,
    renew_at: Option<Timestamp>,
}

/// The token source of one login.
pub struct Grant {
    pub config: Arc<OAuth2>,
    store: Option<Store>,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
    /// A rotated refresh token the database refused (disk full): used, and saved again, at
    /// the next refresh, since the provider may already have invalidated the stored one.
    unsaved: std::sync::Mutex<Option<Secret>>,
}

impl Grant {
    /// `store` holds refresh tokens; without one (check-config before the first run) a
    /// refresh-token grant reports that none is stored.
    pub fn new(
        config: Arc<OAuth2>,
        store: Option<Store>,
        trust: &TlsTrust,
    ) -> Result<Grant, OAuthError> {
        let http = endpoint::client(trust).map_err(|reason| OAuthError::Temporary {
            account: config.account.clone(),
            reason,
        })?;
        Ok(Grant {
            config,
            store,
            http,
            cache: Mutex::new(None),
            unsaved: std::sync::Mutex::new(None),
        })
    }

    pub fn account(&self) -> &str {
        &self.config.account
    }

    /// A token good for a login now: the cached one, or a new one if it is due for renewal.
    pub async fn access_token(&self) -> Result<AccessToken, OAuthError> {
        let mut cache = self.cache.lock().await;
        let now = Timestamp::now();
        if let Some(cached) = cache.as_ref()
            && cached.renew_at.is_some_and(|at| now < at)
        {
            return Ok(cached.token.clone());
        }
        let token = self.request().await?;
        let renew_at = token.renew_at(now);
        info!(account = %self.config.account, expires_at = ?token.expires_at, "OAuth access token obtained");
        *cache = Some(Cached {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }

    /// The server refused the token: the next login asks for a new one.
    pub async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    /// When a session logged in with the current token should reconnect with a new one.
    pub async fn renew_at(&self) -> Option<Timestamp> {
        self.cache.lock().await.as_ref().and_then(|c| c.renew_at)
    }

    async fn request(&self) -> Result<AccessToken, OAuthError> {
        let account = &self.config.account;
        let endpoint = match &self.config.source {
            TokenSource::Command(argv) => return endpoint::run_command(account, argv).await,
            TokenSource::ServiceAccount(key) => {
                return Ok(endpoint::service_account(&self.http, account, key)
                    .await?
                    .token);
            }
            TokenSource::Endpoint(endpoint) => endpoint,
        };
        match endpoint.grant {
            EndpointGrant::ClientCredentials => {
                let reply = endpoint::client_credentials(&self.http, account, endpoint).await?;
                Ok(reply.token)
            }
            EndpointGrant::RefreshToken => {
                let pending = self
                    .unsaved
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let current = match &pending {
                    Some(token) => token.clone(),
                    None => self.stored_refresh_token().await?,
                };
                let reply = endpoint::refresh(&self.http, account, endpoint, &current).await?;
                // What the database must hold now: a newly rotated token, or one not saved yet.
                let newest = reply
                    .refresh_token
                    .filter(|new| new.expose() != current.expose())
                    .or(pending);
                if let Some(token) = newest {
                    let saved = self.save_refresh_token(token.clone()).await;
                    let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
                    match saved {
                        Ok(()) => {
                            *unsaved = None;
                            info!(account = %account, "the provider rotated the refresh token; the new one is stored");
                        }
                        Err(err) => {
                            error!(account = %account, error = %err, "cannot store the rotated refresh token; keeping it in memory and trying again at the next refresh");
                            *unsaved = Some(token);
                        }
                    }
                }
                Ok(reply.token)
            }
        }
    }

    async fn stored_refresh_token(&self) -> Result<Secret, OAuthError> {
        let account = self.config.account.clone();
        let no_token = || OAuthError::NoRefreshToken {
            account: account.clone(),
        };
        let Some(store) = &self.store else {
            return Err(no_token());
        };
        let key = account.clone();
        let stored = store
            .read(move |tx| tx.refresh_token(&key))
            .await
            .map_err(|source| OAuthError::Store {
                account: account.clone(),
                source,
            })?;
        stored.map(Secret::new).ok_or_else(no_token)
    }

    /// Writes a refresh token (from a rotation or a device login) durably.
    pub async fn save_refresh_token(&self, token: Secret) -> Result<(), OAuthError> {
        let account = self.config.account.clone();
        let Some(store) = &self.store else {
            warn!(account = %account, "no database open: a rotated refresh token cannot be stored");
            return Ok(());
        };
        let key = account.clone();
        store
            .write(move |tx| tx.set_refresh_token(&key, token.expose(), Timestamp::now()))
            .await
            .map_err(|source| OAuthError::Store { account, source })
    }
}

/// The token source of a login that uses OAuth 2.0; `None` for a password.
pub fn grant_for(
    credential: &Credential,
    store: Option<&Store>,
    trust: &TlsTrust,
) -> Result<Option<Arc<Grant>>, OAuthError> {
    match credential {
        Credential::Password(_) => Ok(None),
        Credential::OAuth2 { grant, .. } => Ok(Some(Arc::new(Grant::new(
            Arc::clone(grant),
            store.cloned(),
            trust,
        )?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_a_tenth_of_their_lifetime_early_at_most_five_minutes() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        let issued: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let token = AccessToken {
            secret: Secret::new("t"),
            expires_at: Some(issued + SignedDuration::from_hours(1)),
        };
        assert_eq!(
            token.renew_at(issued),
            Some("2026-11-23T10:55:00Z".parse().unwrap())
        );
        let unknown = AccessToken {
            secret: Secret::new("t"),
            expires_at: None,
        };
        assert_eq!(unknown.renew_at(issued), None);
    }
}
