//! Login credentials: a password, or OAuth 2.0 access tokens from a provider.

use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::raw::{AuthMechanism, OAuth2Grant, OAuth2Provider, RawOAuth2};
use super::{Checker, Secret, is_loopback};

/// How deskgate logs in to one server.
#[derive(Debug, Clone)]
pub enum Credential {
    Password(Secret),
    OAuth2 { mechanism: Sasl, grant: Arc<OAuth2> },
}

/// The SASL mechanism that carries an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sasl {
    Xoauth2,
    Oauthbearer,
}

impl Sasl {
    pub fn as_str(self) -> &'static str {
        match self {
            Sasl::Xoauth2 => "XOAUTH2",
            Sasl::Oauthbearer => "OAUTHBEARER",
        }
    }
}

/// Where the access tokens of one login come from.
#[derive(Debug)]
pub struct OAuth2 {
    /// The key of this grant's refresh token in the database, and its name in messages:
    /// `mailbox NAME` or `smtp`.
    pub account: String,
    pub provider: OAuth2Provider,
    pub source: TokenSource,
}

#[derive(Debug)]
pub enum TokenSource {
    /// An RFC 6749 token endpoint.
    Endpoint(Endpoint),
    /// A Google service account signing JWT assertions for the mailbox's user.
    ServiceAccount(Box<ServiceAccount>),
    /// A program that prints an access token (or `{"access_token", "expires_in"}` JSON).
    Command(Vec<String>),
}

#[derive(Debug)]
pub struct Endpoint {
    pub grant: EndpointGrant,
    pub token_url: String,
    /// RFC 8628 device authorization endpoint, for `deskgate oauth login`.
    pub device_url: Option<String>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Space-separated scopes; `None` sends no scope.
    pub scope: Option<String>,
}

/// The grants a token endpoint is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointGrant {
    RefreshToken,
    ClientCredentials,
}

/// A Google service account key (the JSON file Google issues), checked at load time.
pub struct ServiceAccount {
    /// `client_email`: the JWT issuer.
    pub issuer: String,
    /// `private_key_id`, sent as the JWT `kid`.
    pub key_id: Option<String>,
    pub key: ring::signature::RsaKeyPair,
    /// `token_uri`: where assertions are exchanged, and the JWT audience.
    pub token_url: String,
    /// The user the service account acts as (domain-wide delegation): the login name.
    pub subject: String,
    pub scope: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("issuer", &self.issuer)
            .field("token_url", &self.token_url)
            .field("subject", &self.subject)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What a token is for: the default Microsoft scopes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Imap,
    Smtp,
}

/// The raw keys that say how to log in to one server.
pub(super) struct RawLogin<'r, T> {
    pub section: &'r str,
    /// The enclosing table, for "missing ..." problems.
    pub at: &'r Spanned<T>,
    pub account: String,
    pub purpose: Purpose,
    /// The login name (a service account acts as this user).
    pub user: &'r str,
    pub auth: Option<&'r Spanned<AuthMechanism>>,
    pub password: Option<&'r String>,
    pub password_file: Option<&'r Spanned<PathBuf>>,
    pub oauth2: Option<&'r Spanned<RawOAuth2>>,
}

impl Checker<'_> {
    /// Reads and checks a Google service account key file.
    fn service_account(
        &mut self,
        section: &str,
        spanned: &Spanned<RawOAuth2>,
        provider: OAuth2Provider,
        user: &str,
        scope: Option<&str>,
    ) -> Option<ServiceAccount> {
        let raw = spanned.get_ref();
        if provider != OAuth2Provider::Google {
            self.problem(
                &raw.provider,
                format!("{section}: grant = \"service-account\" is for provider = \"google\" (domain-wide delegation)"),
            );
            return None;
        }
        let Some(file) = &raw.service_account_file else {
            self.problem(
                spanned,
                format!("{section}: grant = \"service-account\" needs service_account_file (the JSON key Google issues for the service account)"),
            );
            return None;
        };
        let path = self.path(file.get_ref());
        self.warn_if_readable(&format!("{section}: service_account_file"), &path);
        match read_service_account(&path, user, scope) {
            Ok(key) => Some(key),
            Err(why) => {
                self.problem(
                    file,
                    format!("{section}: service_account_file {}: {why}", path.display()),
                );
                None
            }
        }
    }

    pub(super) fn credential<T>(&mut self, login: RawLogin<'_, T>) -> Option<Credential> {
        let section = login.section;
        let mechanism = match login.auth.map(|a| *a.get_ref()) {
            None | Some(AuthMechanism::Password) => {
                if let Some(oauth2) = login.oauth2 {
                    self.problem(
                        oauth2,
                        format!(
                            "{section}: an oauth2 table is set but auth is \"password\"; set auth = \"xoauth2\" or \"oauthbearer\", or remove the table"
                        ),
                    );
                }
                return self
                    .password(section, login.at, login.password, login.password_file)
                    .map(Credential::Password);
            }
            Some(AuthMechanism::Xoauth2) => Sasl::Xoauth2,
            Some(AuthMechanism::Oauthbearer) => Sasl::Oauthbearer,
        };
        let auth = login.auth?;
        if login.purpose == Purpose::Smtp && mechanism == Sasl::Oauthbearer {
            self.problem(
                auth,
                format!(
                    "{section}: auth = \"oauthbearer\" is not available for SMTP (lettre 0.11 speaks only XOAUTH2); use auth = \"xoauth2\", which Microsoft 365 and Google accept"
                ),
            );
        }
        if login.password.is_some() || login.password_file.is_some() {
            self.problem(
                auth,
                format!(
                    "{section}: password and password_file are not used with auth = \"{}\"; remove them",
                    mechanism.as_str().to_ascii_lowercase()
                ),
            );
        }
        let Some(oauth2) = login.oauth2 else {
            self.problem(
                auth,
                format!(
                    "{section}: auth = \"{}\" needs an oauth2 table saying where access tokens come from (see config.example.toml)",
                    mechanism.as_str().to_ascii_lowercase()
                ),
            );
            return None;
        };
        let grant = self.oauth2(section, oauth2, login.purpose, login.account, login.user)?;
        Some(Credential::OAuth2 {
            mechanism,
            grant: Arc::new(grant),
        })
    }

    /// Where one login's access tokens come from: a service account, a command or a token
    /// endpoint, as `grant` and `provider` say.
    fn oauth2(
        &mut self,
        section: &str,
        spanned: &Spanned<RawOAuth2>,
        purpose: Purpose,
        account: String,
        user: &str,
    ) -> Option<OAuth2> {
        let raw = spanned.get_ref();
        let provider = *raw.provider.get_ref();
        let section = format!("{section}: oauth2");
        let grant = raw.grant.as_ref().map(|g| *g.get_ref());
        if let Some(file) = &raw.service_account_file
            && grant != Some(OAuth2Grant::ServiceAccount)
        {
            self.problem(
                file,
                format!(
                    "{section}: service_account_file is only used with grant = \"service-account\""
                ),
            );
        }
        let source = if grant == Some(OAuth2Grant::ServiceAccount) {
            let account_key =
                self.service_account(&section, spanned, provider, user, raw.scope.as_deref())?;
            TokenSource::ServiceAccount(Box::new(account_key))
        } else if provider == OAuth2Provider::Command {
            TokenSource::Command(self.token_command(&section, spanned)?)
        } else {
            TokenSource::Endpoint(self.endpoint(&section, spanned, grant, purpose)?)
        };
        Some(OAuth2 {
            account,
            provider,
            source,
        })
    }

    /// The program that prints access tokens, for provider = "command".
    fn token_command(
        &mut self,
        section: &str,
        spanned: &Spanned<RawOAuth2>,
    ) -> Option<Vec<String>> {
        let raw = spanned.get_ref();
        let Some(command) = raw.command.as_ref().filter(|c| !c.get_ref().is_empty()) else {
            self.problem(
                spanned,
                format!(
                    "{section}: provider = \"command\" needs command = [\"/path/to/program\", \"arg\", ...]"
                ),
            );
            return None;
        };
        Some(command.get_ref().clone())
    }

    /// An RFC 6749 token endpoint: the provider's, unless token_url or
    /// device_authorization_url name another.
    fn endpoint(
        &mut self,
        section: &str,
        spanned: &Spanned<RawOAuth2>,
        grant: Option<OAuth2Grant>,
        purpose: Purpose,
    ) -> Option<Endpoint> {
        let raw = spanned.get_ref();
        let provider = *raw.provider.get_ref();
        if let Some(command) = &raw.command {
            self.problem(
                command,
                format!("{section}: command is only used with provider = \"command\""),
            );
        }
        let grant = match grant {
            Some(OAuth2Grant::ClientCredentials) => EndpointGrant::ClientCredentials,
            _ => EndpointGrant::RefreshToken,
        };
        let (client_id, client_secret) = self.client(section, spanned, grant)?;
        let (token_url, device_url, scope) =
            self.provider_endpoint(section, spanned, grant, purpose)?;
        if let Some(tenant) = raw
            .tenant
            .as_ref()
            .filter(|_| provider != OAuth2Provider::Microsoft)
        {
            self.problem(
                tenant,
                format!("{section}: tenant is only used with provider = \"microsoft\""),
            );
        }
        let token_url = raw
            .token_url
            .as_ref()
            .map_or(token_url, |u| u.get_ref().clone());
        let device_url = raw
            .device_authorization_url
            .as_ref()
            .map(|u| u.get_ref().clone())
            .or(device_url);
        for (key, url) in [
            ("token_url", &raw.token_url),
            ("device_authorization_url", &raw.device_authorization_url),
        ] {
            if let Some(url) = url
                && let Err(why) = check_url(url.get_ref())
            {
                self.problem(url, format!("{section}: {key} {why}"));
            }
        }
        Some(Endpoint {
            grant,
            token_url,
            device_url,
            client_id,
            client_secret,
            scope: raw.scope.clone().or(scope),
        })
    }

    /// The app registration's client ID and, where there is one, its secret; a secret is
    /// required for client credentials and by Google.
    fn client(
        &mut self,
        section: &str,
        spanned: &Spanned<RawOAuth2>,
        grant: EndpointGrant,
    ) -> Option<(String, Option<Secret>)> {
        let raw = spanned.get_ref();
        let client_secret = match (&raw.client_secret, &raw.client_secret_file) {
            (None, None) => None,
            (inline, file) => self.password(
                &format!("{section}: client"),
                spanned,
                inline.as_ref(),
                file.as_ref(),
            ),
        };
        let Some(client_id) = raw.client_id.clone() else {
            self.problem(spanned, format!("{section}: missing client_id (the application (client) ID of your app registration)"));
            return None;
        };
        let needs_secret = grant == EndpointGrant::ClientCredentials
            || *raw.provider.get_ref() == OAuth2Provider::Google;
        if needs_secret && client_secret.is_none() {
            self.problem(
                spanned,
                format!("{section}: this grant needs client_secret_file (or client_secret)"),
            );
        }
        Some((client_id, client_secret))
    }

    /// The provider's token URL, device authorization URL and default scope.
    fn provider_endpoint(
        &mut self,
        section: &str,
        spanned: &Spanned<RawOAuth2>,
        grant: EndpointGrant,
        purpose: Purpose,
    ) -> Option<(String, Option<String>, Option<String>)> {
        let raw = spanned.get_ref();
        match *raw.provider.get_ref() {
            OAuth2Provider::Microsoft => {
                let Some(tenant) = &raw.tenant else {
                    self.problem(
                        spanned,
                        format!("{section}: provider = \"microsoft\" needs tenant (your directory (tenant) ID or domain, e.g. \"contoso.onmicrosoft.com\")"),
                    );
                    return None;
                };
                let base = format!(
                    "https://login.microsoftonline.com/{}/oauth2/v2.0",
                    tenant.get_ref()
                );
                Some((
                    format!("{base}/token"),
                    Some(format!("{base}/devicecode")),
                    Some(microsoft_scope(grant, purpose).to_string()),
                ))
            }
            OAuth2Provider::Google => {
                if let Some(at) = raw
                    .grant
                    .as_ref()
                    .filter(|_| grant == EndpointGrant::ClientCredentials)
                {
                    self.problem(
                        at,
                        format!("{section}: Google has no client-credentials grant for mail; use grant = \"refresh-token\""),
                    );
                }
                Some((
                    "https://oauth2.googleapis.com/token".to_string(),
                    Some("https://oauth2.googleapis.com/device/code".to_string()),
                    Some("https://mail.google.com/".to_string()),
                ))
            }
            OAuth2Provider::Generic | OAuth2Provider::Command => {
                let Some(token_url) = &raw.token_url else {
                    self.problem(
                        spanned,
                        format!("{section}: provider = \"generic\" needs token_url"),
                    );
                    return None;
                };
                Some((token_url.get_ref().clone(), None, None))
            }
        }
    }
}

/// Microsoft's default scope: the mail protocol's for a user's refresh token, Exchange
/// Online's `.default` for the app's own client credentials.
fn microsoft_scope(grant: EndpointGrant, purpose: Purpose) -> &'static str {
    match (grant, purpose) {
        (EndpointGrant::ClientCredentials, _) => "https://outlook.office365.com/.default",
        (EndpointGrant::RefreshToken, Purpose::Imap) => {
            "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
        }
        (EndpointGrant::RefreshToken, Purpose::Smtp) => {
            "https://outlook.office.com/SMTP.Send offline_access"
        }
    }
}

fn read_service_account(
    path: &std::path::Path,
    user: &str,
    scope: Option<&str>,
) -> Result<ServiceAccount, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |key: &str| json.get(key).and_then(|v| v.as_str()).map(String::from);
    let (Some(issuer), Some(pem)) = (field("client_email"), field("private_key")) else {
        return Err("no client_email or private_key; is it a service account key file?".into());
    };
    let token_url =
        field("token_uri").unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
    check_url(&token_url).map_err(|why| format!("token_uri {why}"))?;
    let der = match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => der,
        _ => {
            return Err("private_key is not a PEM PKCS#8 key (-----BEGIN PRIVATE KEY-----)".into());
        }
    };
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|e| format!("private_key is not a usable RSA key: {e}"))?;
    Ok(ServiceAccount {
        issuer,
        key_id: field("private_key_id"),
        key,
        token_url,
        subject: user.to_string(),
        scope: scope.unwrap_or("https://mail.google.com/").to_string(),
    })
}

/// An HTTPS URL, or plain HTTP to a loopback host (a local token service or a test).
fn check_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    let loopback = url.host_str().is_some_and(is_loopback);
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "`{text}` must be an https:// URL (plain http:// only for loopback hosts)"
        )),
    }
}
