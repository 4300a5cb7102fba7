//! The configuration file as written: serde types, no I/O, no cross-field checks.
//!
//! Every struct denies unknown keys so a typo is an error with a line number, never a silently
//! ignored setting. Fields that later checks must point at are wrapped in [`Spanned`].

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::duration::ConfigDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// A SQLite file, or `postgres://user@host/db` for several instances on one database.
    pub database: Option<Spanned<String>>,
    pub database_password_file: Option<Spanned<PathBuf>>,
    /// This instance's name among those sharing a PostgreSQL database (default: host name).
    pub instance: Option<Spanned<String>>,
    pub templates_dir: Option<Spanned<PathBuf>>,
    pub ca_file: Option<Spanned<PathBuf>>,
    pub support: Spanned<RawSupport>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub deadlines: RawDeadlines,
    #[serde(default)]
    pub followup: RawFollowup,
    #[serde(default)]
    pub mailbox: Vec<Spanned<RawMailbox>>,
    pub smtp: Spanned<RawSmtp>,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub http: RawHttp,
    pub alerts: Option<RawAlerts>,
    pub relay: Option<Spanned<RawRelay>>,
    #[serde(default)]
    pub trust: RawTrust,
    #[serde(default)]
    pub agent: Vec<Spanned<RawAgent>>,
    #[serde(default)]
    pub team: Vec<Spanned<RawTeam>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSupport {
    pub address: Spanned<String>,
    pub name: String,
    pub tag_prefix: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub language: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub new_tickets_per_hour: Option<Spanned<u32>>,
    pub acknowledgements_per_hour: Option<Spanned<u32>>,
    pub max_message_size_mb: Option<Spanned<u32>>,
    pub carry_attachments_mb: Option<Spanned<u32>>,
    pub max_cc_per_message: Option<Spanned<u32>>,
    pub no_ack_domains: Option<Vec<String>>,
    pub acknowledge_backlog_within: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS before login (IMAP 143, submission 587).
    Starttls,
    /// No TLS at all; accepted only for loopback hosts.
    Plain,
}

/// How deskgate logs in to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    /// LOGIN (IMAP) or AUTH PLAIN/LOGIN (SMTP) with a password.
    Password,
    /// SASL XOAUTH2 with an OAuth 2.0 access token (Google, Microsoft).
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth 2.0 access token.
    Oauthbearer,
}

/// Where OAuth 2.0 access tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Provider {
    Microsoft,
    Google,
    /// Any RFC 6749 token endpoint (token_url, optionally device_authorization_url).
    Generic,
    /// A program the admin names prints the access token.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OAuth2Grant {
    /// A user's refresh token, obtained once with `deskgate oauth login`.
    RefreshToken,
    /// The application's own identity (Microsoft app-only access).
    ClientCredentials,
    /// A Google service account with domain-wide delegation acting as the mailbox's user
    /// (RFC 7523 JWT bearer grant).
    ServiceAccount,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub provider: Spanned<OAuth2Provider>,
    pub grant: Option<Spanned<OAuth2Grant>>,
    pub tenant: Option<Spanned<String>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<Spanned<PathBuf>>,
    pub scope: Option<String>,
    pub token_url: Option<Spanned<String>>,
    pub device_authorization_url: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub service_account_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailbox {
    pub name: Spanned<String>,
    pub host: Spanned<String>,
    pub port: Option<u16>,
    pub tls: Spanned<TlsMode>,
    pub user: String,
    pub password: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub folder: Option<Spanned<String>>,
    pub folders: Option<Spanned<Vec<String>>>,
    pub processed_folder: Option<String>,
    pub quarantine_folder: Option<String>,
    pub idle: Option<bool>,
    pub poll_interval: Option<ConfigDuration>,
    pub batch_size: Option<Spanned<u32>>,
    pub timeout: Option<ConfigDuration>,
    pub language: Option<Spanned<String>>,
    /// A word (`"all"`, `"unseen"`, `"none"`) or a table with `since` or `unseen_since`:
    /// checked by hand so the error can list the accepted forms.
    pub initial_import: Option<Spanned<toml::Value>>,
    pub auth: Option<Spanned<AuthMechanism>>,
    pub oauth2: Option<Spanned<RawOAuth2>>,
    pub deadlines: Option<RawDeadlines>,
    /// Further addresses whose mail is delivered into this mailbox (`[[mailbox.address]]`).
    #[serde(default)]
    pub address: Vec<Spanned<RawAddress>>,
}

/// One more address routed into a mailbox, with its own name, team, language and templates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAddress {
    pub address: Spanned<String>,
    pub name: Option<String>,
    pub team: Option<Spanned<String>>,
    pub language: Option<Spanned<String>>,
    pub templates_dir: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: Spanned<String>,
    pub port: Option<u16>,
    pub tls: Spanned<TlsMode>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub timeout: Option<ConfigDuration>,
    pub connections: Option<Spanned<u32>>,
    pub auth: Option<Spanned<AuthMechanism>>,
    pub oauth2: Option<Spanned<RawOAuth2>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    pub retry: Option<Spanned<Vec<ConfigDuration>>>,
    pub give_up_after: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub enabled: Option<bool>,
    pub listen: Option<Spanned<String>>,
    pub outbox_max_age: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub to: Spanned<Vec<Spanned<String>>>,
    pub after: Option<ConfigDuration>,
    pub repeat: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub secret: Option<String>,
    pub secret_file: Option<Spanned<PathBuf>>,
    pub previous_secret_file: Option<Spanned<PathBuf>>,
    pub separator: Option<Spanned<String>>,
    pub notes_address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    pub authserv_id: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: String,
    pub address: Spanned<String>,
    #[serde(default)]
    pub alternates: Vec<Spanned<String>>,
    pub language: Option<Spanned<String>>,
}

/// Who hears about a ticket event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyWho {
    /// Every agent of the team.
    Team,
    /// The assigned agent, or the whole team while nobody is assigned.
    Assigned,
    /// Nobody.
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    pub name: Spanned<String>,
    pub agents: Vec<Spanned<String>>,
    pub mailboxes: Option<Vec<Spanned<String>>>,
    pub notify_new_ticket: Option<NotifyWho>,
    pub notify_customer_reply: Option<NotifyWho>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadlines {
    pub first_response: Option<ConfigDuration>,
    pub next_response: Option<ConfigDuration>,
    pub pause_while_pending: Option<bool>,
    /// `"2h"` (before the deadline), `"75%"` (of its time) or `"off"`.
    pub warning: Option<Spanned<String>>,
    pub escalation: Option<Vec<Spanned<RawEscalation>>>,
    pub customer_update: Option<bool>,
    pub business_hours: Option<Spanned<RawBusinessHours>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    pub after: Option<ConfigDuration>,
    pub to: Spanned<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBusinessHours {
    pub timezone: Option<Spanned<String>>,
    pub monday: Option<Spanned<String>>,
    pub tuesday: Option<Spanned<String>>,
    pub wednesday: Option<Spanned<String>>,
    pub thursday: Option<Spanned<String>>,
    pub friday: Option<Spanned<String>>,
    pub saturday: Option<Spanned<String>>,
    pub sunday: Option<Spanned<String>>,
    pub holidays: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFollowup {
    pub pending_reminders: Option<Vec<ConfigDuration>>,
    /// A duration, or `"never"`.
    pub pending_resolve_after: Option<Spanned<String>>,
    pub survey: Option<bool>,
    /// A duration, or `"never"`.
    pub auto_close_after: Option<Spanned<String>>,
    pub close_notice: Option<bool>,
}
