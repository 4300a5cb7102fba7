//! Configuration: one TOML file, read once, validated as a whole.
//!
//! Two layers, as in ripgrep's flags: [`raw`] is what serde reads (no I/O, unknown keys are
//! errors), [`Config`] is the validated result (paths resolved against the file's directory,
//! password files read, CA certificates parsed, templates compiled). Every problem is
//! collected with its line, so `deskgate check-config` lists them all at once.

mod addresses;
mod agents;
mod alerts;
mod database;
mod deadlines;
mod duration;
mod oauth2;
mod raw;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use toml::Spanned;

pub use agents::{Agent, Agents, NotifyWho, Relay, Team};
pub use alerts::AlertsConfig;
pub use database::{Database, PostgresTarget};
pub use deadlines::{Deadlines, Escalation, Followup, Warning};
pub use duration::ConfigDuration;
pub use duration::parse as parse_duration;
pub use oauth2::{Credential, Endpoint, EndpointGrant, OAuth2, Sasl, ServiceAccount, TokenSource};
use oauth2::{Purpose, RawLogin};
pub use raw::{AuthMechanism, OAuth2Grant, OAuth2Provider, TlsMode};
use raw::{RawConfig, RawMailbox, RawSmtp};

use crate::language::Lang;

use crate::templates::Templates;

/// Where `deskgate` looks for its configuration when neither `--config` nor
/// `DESKGATE_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/deskgate/deskgate.toml";
const DEFAULT_DATABASE: &str = "/var/lib/deskgate/deskgate.db";
/// `/healthz` and `/metrics` on 127.0.0.1 unless `[http]` says otherwise.
pub const DEFAULT_HTTP_PORT: u16 = 9187;
/// `password_file = "credential:NAME"` reads the systemd credential NAME.
const CREDENTIAL_PREFIX: &str = "credential:";

/// The validated configuration of one daemon.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub database: Database,
    /// This instance's name (`instance`, default the host name): who owns a mailbox, who
    /// claimed an outbox row.
    pub instance: String,
    pub support: Support,
    pub policy: Policy,
    /// `[deadlines]` alone: for tickets of a mailbox no longer configured.
    pub deadlines: Arc<Deadlines>,
    pub followup: Followup,
    pub mailboxes: Vec<MailboxConfig>,
    pub smtp: SmtpConfig,
    pub outbox: OutboxConfig,
    pub http: HttpConfig,
    /// `None`: no `[alerts]`, problems only on `/healthz` and in the log.
    pub alerts: Option<AlertsConfig>,
    pub tls: TlsTrust,
    pub templates: Arc<Templates>,
    pub agents: Agents,
    /// `[trust]`: how mail from agents' addresses is authenticated.
    pub trust: Trust,
    /// The support address and every `[[mailbox.address]]` (lower case): mail from any of
    /// them, or carrying the loop mark of any of them, is our own.
    pub own_addresses: Vec<String>,
    /// Accepted but worth an admin's attention (e.g. plaintext IMAP on loopback).
    pub warnings: Vec<String>,
    /// Secrets written in the file itself (e.g. "mailbox `support` password"): the file must
    /// not be readable by others ([`Config::load`] warns).
    pub inline_secrets: Vec<String>,
}

/// `[trust]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// The authserv-id of our own MTA's `Authentication-Results` header: when set, mail from
    /// an agent's address acts as the agent only when that header authenticates its From.
    pub authserv_id: Option<String>,
}

/// `/healthz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `None`: no listener.
    pub listen: Option<std::net::SocketAddr>,
    /// `/healthz` says 503 when a queued message has waited longer.
    pub outbox_max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct Support {
    /// The address customers write to and acknowledgements come from.
    pub address: lettre::Address,
    pub name: String,
    /// `#` makes subject tags look like `[#123]`.
    pub tag_prefix: String,
    /// Zone in which promised answer times are stated.
    pub timezone: TimeZone,
    /// The language of customers nothing else is known about, unless their mailbox says.
    pub language: Lang,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// New tickets one sender may open per hour; later mail joins their latest ticket.
    pub new_tickets_per_hour: u32,
    /// Acknowledgements one address may receive per hour.
    pub acknowledgements_per_hour: u32,
    /// Messages larger than this (bytes, by the server's RFC822.SIZE) are quarantined
    /// without fetching their body.
    pub max_message_size: u64,
    /// The customer's (or agent's) attachments a notification, note or relayed answer
    /// carries, in bytes in all; the rest are listed by name and size.
    pub carry_attachments: u64,
    /// Participants (To and Cc besides the sender) one customer message may add to a ticket;
    /// the rest are listed in the agents' notification, for `#cc add`.
    pub max_cc_per_message: usize,
    /// Senders on these domains (lower case) are never acknowledged: colleagues, and other
    /// aliases of the support desk that could answer back.
    pub no_ack_domains: Vec<String>,
    /// Backlog mail (already in a folder when deskgate first started on it) that arrived at
    /// most this long before that start is acknowledged like new mail; older backlog mail is
    /// imported quietly. Zero: nothing from the backlog is acknowledged.
    pub acknowledge_backlog_within: Duration,
}

/// Which messages already in a folder at the first start become tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialImport {
    All,
    /// Messages without `\Seen`.
    Unseen,
    /// None: only mail arriving after the first start.
    Nothing,
    /// Messages that arrived (IMAP INTERNALDATE) at most this long before the first start.
    Since(Duration),
    /// Unseen messages that arrived at most this long before the first start.
    UnseenSince(Duration),
}

impl fmt::Display for InitialImport {
    /// As written in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitialImport::All => f.write_str("\"all\""),
            InitialImport::Unseen => f.write_str("\"unseen\""),
            InitialImport::Nothing => f.write_str("\"none\""),
            InitialImport::Since(d) => write!(f, "{{ since = \"{}\" }}", ConfigDuration(*d)),
            InitialImport::UnseenSince(d) => {
                write!(f, "{{ unseen_since = \"{}\" }}", ConfigDuration(*d))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// The key of this watched folder's sync position and the `mailbox` of its tickets: the
    /// [[mailbox]] name, or `NAME/FOLDER` when the section lists several `folders`.
    pub name: String,
    /// The [[mailbox]] name (`deskgate oauth login --mailbox`), shared by its folders.
    pub account: String,
    pub server: Server,
    pub user: String,
    pub credential: Credential,
    pub folder: String,
    /// Move processed mail here; `None` means flag it `\Seen` and leave it.
    pub processed_folder: Option<String>,
    /// Move quarantined mail here; `None` means flag it `\Flagged` and leave it.
    pub quarantine_folder: Option<String>,
    pub idle: bool,
    pub poll_interval: Duration,
    pub batch_size: u32,
    pub timeout: Duration,
    /// The language of customers nothing else is known about (`support.language` if unset).
    pub language: Lang,
    /// What to do with the mail already in `folder` at the first start.
    pub initial_import: InitialImport,
    /// Response times, business hours, warnings and escalations of this mailbox's tickets.
    pub deadlines: Arc<Deadlines>,
    /// Further addresses delivered into this mailbox (`[[mailbox.address]]`), each a desk of
    /// its own; the support address is the desk of all other mail.
    pub addresses: Vec<DeskAddress>,
}

/// One more address routed into a mailbox: customers who write to it are acknowledged and
/// answered from it, in its wording, and its team hears about their tickets.
#[derive(Debug, Clone)]
pub struct DeskAddress {
    pub address: lettre::Address,
    /// The display name of mail from this address (`support.name` if unset).
    pub name: String,
    /// The [[team]] that hears of its tickets (the mailbox's team if unset).
    pub team: Option<String>,
    /// The language of customers nothing else is known about (the mailbox's if unset).
    pub language: Lang,
    /// The shipped templates, overridden by `templates_dir`, overridden by its own.
    pub templates: Arc<Templates>,
}

/// Everything that depends on which address a ticket's customer wrote to.
#[derive(Debug)]
pub struct Desk<'c> {
    /// `[support]` with the address and name mail goes out from.
    pub support: Support,
    pub templates: &'c Templates,
    pub team: Option<&'c Team>,
    /// The default language of its customers.
    pub language: Lang,
    /// The `[[mailbox.address]]`, or `None` for the support address.
    pub address: Option<&'c DeskAddress>,
}

impl Desk<'_> {
    /// Who answers for a ticket at this desk: its `assigned` agent, else the desk's team.
    pub fn responsible(&self, assigned: Option<&str>) -> Vec<String> {
        match assigned {
            Some(agent) => vec![agent.to_string()],
            None => self.team.map(|t| t.members.clone()).unwrap_or_default(),
        }
    }
}

/// `[smtp] connections` when unset, and its largest value.
const DEFAULT_SMTP_CONNECTIONS: u32 = 4;
const MAX_SMTP_CONNECTIONS: u32 = 32;

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub server: Server,
    /// The login name and how to log in; `None`: no authentication.
    pub credentials: Option<(String, Credential)>,
    pub timeout: Duration,
    /// SMTP sessions the outbox sends over at once, each with rows of its own.
    pub connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Delay before attempt n+1 is `retry[min(n, len-1)]`.
    pub retry: Vec<Duration>,
    /// A row still failing temporarily this long after it was queued is marked failed.
    pub give_up_after: Duration,
}

/// Certificates to trust besides the public web roots.
#[derive(Clone)]
pub struct TlsTrust {
    /// PEM text of `ca_file`, kept for lettre, which takes PEM.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub roots: Arc<rustls::RootCertStore>,
}

impl TlsTrust {
    /// A rustls client configuration (ring) trusting these roots: IMAP over TLS, and SMTP
    /// with implicit TLS.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(Arc::clone(&self.roots))
        .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust")
            .field("n_roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

/// The configuration in force in a running daemon. The daemon swaps in a new one on reload
/// (SIGHUP); tasks take [`Live::current`] once per unit of work (a message, a send, a
/// scheduler batch), so a unit never sees two configurations.
#[derive(Debug, Clone)]
pub struct Live(tokio::sync::watch::Receiver<Arc<Config>>);

impl Live {
    /// The sender half replaces the configuration; `Live` handles read it.
    pub fn new(config: Arc<Config>) -> (tokio::sync::watch::Sender<Arc<Config>>, Live) {
        let (sender, receiver) = tokio::sync::watch::channel(config);
        (sender, Live(receiver))
    }

    pub fn current(&self) -> Arc<Config> {
        Arc::clone(&self.0.borrow())
    }
}

/// A password: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with the file: where, and a sentence saying what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{}:{}: {}", path.display(), line, p.message),
            None => format!("{}: {}", path.display(), p.message),
        })
        .collect();
    lines.join("\n")
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut config = Config::from_toml(path, &text)?;
        config.warn_if_others_can_read(path);
        Ok(config)
    }

    /// A file with inline secrets that other users can read: a warning, not an error (the
    /// admin may be testing), naming the secrets and the fix.
    fn warn_if_others_can_read(&mut self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if self.inline_secrets.is_empty() {
            return;
        }
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            self.warnings.push(format!(
                "the file is readable by every user (mode {mode:04o}) and holds secrets ({}); chmod o-r it, or move them to password_file / secret_file, e.g. a systemd credential (password_file = \"credential:NAME\")",
                self.inline_secrets.join(", ")
            ));
        }
    }

    /// Validates `text` as if it had been read from `path` (relative paths inside it are
    /// resolved against `path`'s directory).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|err| {
            let at = err.span().map(|span| span.start);
            let message =
                explain_parse_error(err.message(), at.and_then(|offset| line_text(text, offset)));
            // A missing section is missing from the whole file, not from any one line.
            let line = at
                .filter(|_| !message.starts_with("missing the ["))
                .map(|offset| line_of(text, offset));
            invalid(vec![Problem { line, message }])
        })?;
        let mut check = Checker {
            text,
            base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            problems: Vec::new(),
            warnings: Vec::new(),
            inline_secrets: Vec::new(),
        };
        let config = check.build(path, raw);
        match config {
            Some(config) if check.problems.is_empty() => Ok(config),
            _ => Err(invalid(check.problems)),
        }
    }

    /// The desk of a ticket in `mailbox` whose customer wrote to `address` (`None`: the
    /// support address). An address no longer configured falls back to the support address.
    pub fn desk(&self, mailbox: &str, address: Option<&str>) -> Desk<'_> {
        let section = self.mailbox(mailbox);
        let account = section.map_or(mailbox, |m| m.account.as_str());
        let extra = address.and_then(|a| {
            section?
                .addresses
                .iter()
                .find(|d| d.address.to_string().eq_ignore_ascii_case(a))
        });
        let team = extra
            .and_then(|d| d.team.as_deref())
            .and_then(|name| self.agents.teams.iter().find(|t| t.name == name))
            .or_else(|| self.agents.team_for(account));
        match extra {
            Some(desk) => Desk {
                support: Support {
                    address: desk.address.clone(),
                    name: desk.name.clone(),
                    ..self.support.clone()
                },
                templates: &desk.templates,
                team,
                language: desk.language,
                address: Some(desk),
            },
            None => Desk {
                support: self.support.clone(),
                templates: &self.templates,
                team,
                language: section.map_or(self.support.language, |m| m.language),
                address: None,
            },
        }
    }

    /// The watched folder named `name` (a ticket's mailbox), or else the first folder of
    /// the [[mailbox]] section named `name`.
    pub fn mailbox(&self, name: &str) -> Option<&MailboxConfig> {
        let found = self.mailboxes.iter().find(|m| m.name == name);
        found.or_else(|| self.mailboxes.iter().find(|m| m.account == name))
    }
}

/// The text of the line holding `offset`, trimmed.
fn line_text(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |i| offset + i);
    Some(text.get(start..end)?.trim())
}

/// Turns serde's wording into an admin's: names the key or section the error is on, and says
/// "key" and "value" rather than "field", "variant" and Rust type names.
fn explain_parse_error(message: &str, line: Option<&str>) -> String {
    let mut message = message
        .trim_end_matches('\n')
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace("unknown variant", "unknown value")
        .replace("invalid type: ", "wrong type: ")
        .replace("expected u16", "expected a whole number from 0 to 65535")
        .replace("expected u32", "expected a whole number")
        .replace("expected path string", "expected a path in quotes")
        .replace("expected a string", "expected text in quotes");
    for section in ["support", "smtp"] {
        message = message.replace(
            &format!("missing key `{section}`"),
            &format!("missing the [{section}] section"),
        );
    }
    match line {
        _ if message.starts_with("missing the [") => message,
        Some(line) if line.starts_with('[') && line.ends_with(']') => {
            format!("in {line}: {message}")
        }
        Some(line) => match line.split_once('=') {
            Some((key, _)) if !message.contains(&format!("`{}`", key.trim())) => {
                format!("{}: {message}", key.trim())
            }
            _ => message,
        },
        None => message,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Collects problems while turning [`RawConfig`] into [`Config`].
struct Checker<'t> {
    text: &'t str,
    base: PathBuf,
    problems: Vec<Problem>,
    warnings: Vec<String>,
    /// Secrets written in the file itself (e.g. "mailbox `support` password").
    inline_secrets: Vec<String>,
}

impl Checker<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, message: String) {
        self.problems.push(Problem {
            line: Some(line_of(self.text, at.span().start)),
            message,
        });
    }

    /// A warning when group or others may read the secret file at `path`.
    fn warn_if_readable(&mut self, what: &str, path: &Path) {
        if let Some(mode) = crate::files::readable_by_others(path) {
            self.warnings.push(format!(
                "{what} {}: readable by group or others (mode {mode:04o}); chmod 600 it",
                path.display()
            ));
        }
    }

    /// `database`: a SQLite file, or a PostgreSQL URL with `database_password_file` and TLS
    /// checked against the configured roots.
    fn database(
        &mut self,
        raw: &RawConfig,
        tls: Option<&TlsTrust>,
        instance: Option<&str>,
    ) -> Option<Database> {
        let password = match &raw.database_password_file {
            Some(file) => Some(self.secret_file("database_password_file", file)?),
            None => None,
        };
        let Some(value) = &raw.database else {
            return Some(Database::Sqlite(PathBuf::from(DEFAULT_DATABASE)));
        };
        let text = value.get_ref();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            if password.is_some() {
                self.problem(
                    value,
                    "database_password_file is for a PostgreSQL database (database = \"postgres://user@host/db\"); a SQLite file has no password".to_string(),
                );
                return None;
            }
            return Some(Database::Sqlite(self.path(Path::new(text))));
        }
        if let Err(err) = text.parse::<::postgres::Config>() {
            self.problem(value, format!("database: not a PostgreSQL URL: {err}"));
            return None;
        }
        if text.contains(':')
            && text.split_once("://").is_some_and(|(_, rest)| {
                rest.split_once('@')
                    .is_some_and(|(user, _)| user.contains(':'))
            })
        {
            self.inline_secrets.push("database password".to_string());
        }
        match tls?.client_config() {
            Ok(tls) => Some(Database::Postgres(PostgresTarget {
                url: text.clone(),
                password,
                instance: instance.unwrap_or_default().to_string(),
                tls: Some(tls),
            })),
            Err(err) => {
                self.problem(value, format!("database: TLS set-up failed: {err}"));
                None
            }
        }
    }

    /// `instance`, or the host name.
    fn instance(&mut self, raw: Option<&Spanned<String>>) -> Option<String> {
        let Some(value) = raw else {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            return Some(if host.is_empty() {
                "deskgate".to_string()
            } else {
                host
            });
        };
        let name = value.get_ref();
        let fits = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if fits {
            Some(name.clone())
        } else {
            self.problem(
                value,
                format!("instance `{name}`: 1 to 64 letters, digits, `-`, `_` or `.` (it names this deskgate among those sharing a database)"),
            );
            None
        }
    }

    /// The first line of a file holding a secret. `credential:NAME` is the systemd
    /// credential NAME (`LoadCredential=NAME:...` in the unit), read from
    /// `$CREDENTIALS_DIRECTORY`.
    fn secret_file(&mut self, what: &str, file: &Spanned<PathBuf>) -> Option<String> {
        let value = file.get_ref();
        let path = match value
            .to_str()
            .and_then(|v| v.strip_prefix(CREDENTIAL_PREFIX))
        {
            Some(name) if name.is_empty() || name.contains('/') => {
                self.problem(
                    file,
                    format!("{what}: `{}` is not a credential name (credential:NAME, NAME as in LoadCredential=NAME:FILE)", value.display()),
                );
                return None;
            }
            Some(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => Path::new(&dir).join(name),
                None => {
                    self.problem(
                        file,
                        format!("{what}: credential `{name}`: CREDENTIALS_DIRECTORY is not set; systemd sets it for a unit with LoadCredential={name}:FILE (outside systemd, give the file's path instead)"),
                    );
                    return None;
                }
            },
            None => self.path(value),
        };
        self.warn_if_readable(what, &path);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.lines().next().unwrap_or("").to_string()),
            Err(err) => {
                self.problem(
                    file,
                    format!("{what} {}: cannot read it: {err}", path.display()),
                );
                None
            }
        }
    }

    fn path(&self, value: &Path) -> PathBuf {
        if value.is_absolute() {
            value.to_path_buf()
        } else {
            self.base.join(value)
        }
    }

    fn build(&mut self, path: &Path, raw: RawConfig) -> Option<Config> {
        let instance = self.instance(raw.instance.as_ref());
        let support = self.support(&raw.support);
        let policy = self.policy(&raw.policy, support.as_ref());
        let tls = self.tls_trust(raw.ca_file.as_ref());
        let database = self.database(&raw, tls.as_ref(), instance.as_deref());
        if raw.mailbox.is_empty() {
            self.problems.push(Problem {
                line: None,
                message:
                    "no [[mailbox]] is configured; deskgate needs at least one mailbox to watch"
                        .to_string(),
            });
        }
        let default_language = support.as_ref().map_or(Lang::En, |s| s.language);
        let mut mailboxes = Vec::new();
        for mailbox in &raw.mailbox {
            for built in self.mailbox(mailbox, default_language) {
                if mailboxes
                    .iter()
                    .any(|m: &MailboxConfig| m.name == built.name)
                {
                    self.problem(
                        &mailbox.get_ref().name,
                        format!(
                            "mailbox name `{}` is used twice; names must be unique",
                            built.name
                        ),
                    );
                }
                mailboxes.push(built);
            }
        }
        // Teams name [[mailbox]] sections, whatever folders those watch.
        let mut names: Vec<String> = mailboxes.iter().map(|m| m.account.clone()).collect();
        names.dedup();
        let agents = self.agents(
            raw.relay.as_ref(),
            &raw.agent,
            &raw.team,
            &names,
            default_language,
        );
        let zone = support
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, |s| s.timezone.clone());
        let deadlines = self.deadlines("[deadlines]", &raw.deadlines, None, &zone, &agents);
        for mailbox in mailboxes.iter_mut() {
            mailbox.deadlines = Arc::clone(&deadlines);
        }
        for section in &raw.mailbox {
            let section = section.get_ref();
            let Some(local) = &section.deadlines else {
                continue;
            };
            let name = section.name.get_ref();
            let own = self.deadlines(
                &format!("mailbox `{name}` deadlines"),
                &raw.deadlines,
                Some(local),
                &zone,
                &agents,
            );
            for mailbox in mailboxes.iter_mut().filter(|m| &m.account == name) {
                mailbox.deadlines = Arc::clone(&own);
            }
        }
        if deadlines.escalation.is_empty()
            && mailboxes.iter().all(|m| m.deadlines.escalation.is_empty())
        {
            self.warnings.push(
                "no [[deadlines.escalation]] level: a deadline that passes is recorded and counted, but nobody senior is told".to_string(),
            );
        }
        let followup = self.followup(&raw.followup);
        let smtp = self.smtp(&raw.smtp);
        let outbox = self.outbox(&raw.outbox);
        let http = self.http(&raw.http);
        let alerts = self.alerts(raw.alerts.as_ref());
        let templates = match &raw.templates_dir {
            None => Some(Templates::builtin()),
            Some(dir) => self.templates(&[dir], "templates_dir"),
        }
        .map(Arc::new);
        let own_addresses = self.addresses(&raw, &mut mailboxes, &agents, templates.as_ref());
        let trust = self.trust(&raw.trust, &agents);
        Some(Config {
            path: path.to_path_buf(),
            database: database?,
            instance: instance?,
            support: support?,
            policy,
            deadlines,
            followup,
            mailboxes,
            smtp: smtp?,
            outbox,
            http,
            alerts,
            tls: tls?,
            templates: templates?,
            agents,
            trust,
            own_addresses,
            warnings: std::mem::take(&mut self.warnings),
            inline_secrets: std::mem::take(&mut self.inline_secrets),
        })
    }

    fn trust(&mut self, raw: &raw::RawTrust, agents: &Agents) -> Trust {
        let authserv_id = raw.authserv_id.as_ref().and_then(|id| {
            let value = id.get_ref().trim();
            if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ';') {
                self.problem(
                    id,
                    format!("trust.authserv_id `{value}` is not an authserv-id (e.g. \"mx.example.com\", as your MTA writes it in Authentication-Results)"),
                );
                return None;
            }
            Some(value.to_string())
        });
        if authserv_id.is_none() && agents.relay.is_some() {
            self.warnings.push("[trust] authserv_id is not set: mail from an agent's address is believed on its reply key alone, so anyone holding a leaked key can forge that agent's From; set it to the authserv-id your MTA writes in Authentication-Results".to_string());
        }
        Trust { authserv_id }
    }

    fn support(&mut self, raw: &Spanned<raw::RawSupport>) -> Option<Support> {
        let raw = raw.get_ref();
        let address = match raw.address.get_ref().parse::<lettre::Address>() {
            Ok(address) => Some(address),
            Err(err) => {
                self.problem(
                    &raw.address,
                    format!(
                        "support.address `{}` is not an email address ({err})",
                        raw.address.get_ref()
                    ),
                );
                None
            }
        };
        let tag_prefix = match &raw.tag_prefix {
            None => "#".to_string(),
            Some(prefix) => {
                let value = prefix.get_ref();
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || "[]".contains(c))
                {
                    self.problem(
                        prefix,
                        format!(
                            "support.tag_prefix `{value}` must be non-empty, without spaces or brackets (e.g. \"#\" or \"ACME-\")"
                        ),
                    );
                }
                value.clone()
            }
        };
        let timezone = match &raw.timezone {
            None => Some(TimeZone::UTC),
            Some(name) => match TimeZone::get(name.get_ref()) {
                Ok(tz) => Some(tz),
                Err(err) => {
                    self.problem(
                        name,
                        format!(
                            "support.timezone `{}` is not a known IANA time zone such as \"Europe/Athens\" ({err})",
                            name.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let language = self.language("support.language", raw.language.as_ref());
        Some(Support {
            address: address?,
            name: raw.name.clone(),
            tag_prefix,
            timezone: timezone?,
            language: language.unwrap_or(Lang::En),
        })
    }

    /// A shipped language code, or a problem naming the key.
    fn language(&mut self, key: &str, value: Option<&Spanned<String>>) -> Option<Lang> {
        let value = value?;
        match Lang::parse(value.get_ref()).filter(|l| l.code() == value.get_ref()) {
            Some(lang) => Some(lang),
            None => {
                self.problem(
                    value,
                    format!(
                        "{key} `{}` is not a language deskgate has templates for; use one of {}",
                        value.get_ref(),
                        Lang::list()
                    ),
                );
                None
            }
        }
    }

    fn tls_trust(&mut self, ca_file: Option<&Spanned<PathBuf>>) -> Option<TlsTrust> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let Some(ca_file) = ca_file else {
            return Some(TlsTrust {
                extra_ca_pem: None,
                roots: Arc::new(roots),
            });
        };
        let path = self.path(ca_file.get_ref());
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(err) => {
                self.problem(
                    ca_file,
                    format!("ca_file {}: cannot read it: {err}", path.display()),
                );
                return None;
            }
        };
        let mut n_added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            match cert
                .map_err(|e| e.to_string())
                .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
            {
                Ok(()) => n_added += 1,
                Err(err) => {
                    self.problem(
                        ca_file,
                        format!(
                            "ca_file {}: a certificate is unusable: {err}",
                            path.display()
                        ),
                    );
                    return None;
                }
            }
        }
        if n_added == 0 {
            self.problem(
                ca_file,
                format!(
                    "ca_file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
                    path.display()
                ),
            );
            return None;
        }
        Some(TlsTrust {
            extra_ca_pem: Some(pem),
            roots: Arc::new(roots),
        })
    }

    fn server(
        &mut self,
        section: &str,
        host: &Spanned<String>,
        port: Option<u16>,
        tls: &Spanned<TlsMode>,
        defaults: [u16; 3],
    ) -> Server {
        let mode = *tls.get_ref();
        if mode == TlsMode::Plain {
            if is_loopback(host.get_ref()) {
                self.warnings.push(format!(
                    "{section}: tls = \"plain\" sends the password unencrypted; accepted only because {} is a loopback address",
                    host.get_ref()
                ));
            } else {
                self.problem(
                    tls,
                    format!(
                        "{section}: tls = \"plain\" is allowed only for loopback hosts (127.0.0.1, ::1, localhost), not {}; use \"implicit\" or \"starttls\"",
                        host.get_ref()
                    ),
                );
            }
        }
        let port = port.unwrap_or(match mode {
            TlsMode::Implicit => defaults[0],
            TlsMode::Starttls => defaults[1],
            TlsMode::Plain => defaults[2],
        });
        Server {
            host: host.get_ref().clone(),
            port,
            tls: mode,
        }
    }

    /// Exactly one of `password` and `password_file`; the file's first line is the password.
    fn password(
        &mut self,
        section: &str,
        at: &Spanned<impl Sized>,
        inline: Option<&String>,
        file: Option<&Spanned<PathBuf>>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(file)) => {
                self.problem(
                    file,
                    format!("{section}: set either password or password_file, not both"),
                );
                None
            }
            (Some(password), None) => {
                self.inline_secrets.push(format!("{section} password"));
                Some(Secret(password.clone()))
            }
            (None, Some(file)) => self
                .secret_file(&format!("{section}: password_file"), file)
                .map(Secret),
            (None, None) => {
                self.problem(
                    at,
                    format!("{section}: missing password; set password or password_file"),
                );
                None
            }
        }
    }

    /// One [[mailbox]] section: one watched folder per entry of `folders` (or the one
    /// `folder`), sharing the login.
    fn mailbox(
        &mut self,
        spanned: &Spanned<RawMailbox>,
        default_language: Lang,
    ) -> Vec<MailboxConfig> {
        let raw = spanned.get_ref();
        let name = raw.name.get_ref().clone();
        let section = format!("mailbox `{name}`");
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.problem(
                &raw.name,
                format!("mailbox name `{name}` must be non-empty, without spaces"),
            );
        }
        let server = self.server(&section, &raw.host, raw.port, &raw.tls, [993, 143, 143]);
        let credential = self.credential(RawLogin {
            section: &section,
            at: spanned,
            account: format!("mailbox {name}"),
            purpose: Purpose::Imap,
            user: &raw.user,
            auth: raw.auth.as_ref(),
            password: raw.password.as_ref(),
            password_file: raw.password_file.as_ref(),
            oauth2: raw.oauth2.as_ref(),
        });
        let batch_size = match &raw.batch_size {
            None => 50,
            Some(size) if (1..=1000).contains(size.get_ref()) => *size.get_ref(),
            Some(size) => {
                self.problem(
                    size,
                    format!(
                        "{section}: batch_size must be between 1 and 1000, not {}",
                        size.get_ref()
                    ),
                );
                50
            }
        };
        let initial_import = match &raw.initial_import {
            None => Some(InitialImport::Unseen),
            Some(value) => self.initial_import(&section, value),
        };
        let folders = self.folders(&section, raw);
        let language = self
            .language(&format!("{section}: language"), raw.language.as_ref())
            .unwrap_or(default_language);
        let (Some(credential), Some(initial_import)) = (credential, initial_import) else {
            return Vec::new();
        };
        let several = folders.len() > 1;
        folders
            .into_iter()
            .map(|folder| MailboxConfig {
                name: if several {
                    format!("{name}/{folder}")
                } else {
                    name.clone()
                },
                account: name.clone(),
                server: server.clone(),
                user: raw.user.clone(),
                credential: credential.clone(),
                folder,
                processed_folder: raw.processed_folder.clone(),
                quarantine_folder: raw.quarantine_folder.clone(),
                idle: raw.idle.unwrap_or(true),
                poll_interval: raw.poll_interval.map_or(Duration::from_secs(60), |d| d.0),
                batch_size,
                timeout: raw.timeout.map_or(Duration::from_secs(60), |d| d.0),
                initial_import,
                language,
                deadlines: Arc::default(),
                addresses: Vec::new(),
            })
            .collect()
    }

    /// `folder` or `folders` (not both), each distinct and none the processed folder.
    fn folders(&mut self, section: &str, raw: &RawMailbox) -> Vec<String> {
        let folders = match (&raw.folder, &raw.folders) {
            (Some(_), Some(list)) => {
                self.problem(
                    list,
                    format!("{section}: set either folder or folders, not both"),
                );
                return Vec::new();
            }
            (Some(folder), None) => vec![folder.get_ref().clone()],
            (None, Some(list)) if list.get_ref().is_empty() => {
                self.problem(
                    list,
                    format!("{section}: folders must name at least one folder, e.g. [\"INBOX\", \"Shared/Support\"]"),
                );
                return Vec::new();
            }
            (None, Some(list)) => list.get_ref().clone(),
            (None, None) => vec!["INBOX".to_string()],
        };
        let at_line = |checker: &mut Self, message: String| match (&raw.folders, &raw.folder) {
            (Some(list), _) => checker.problem(list, message),
            (None, Some(folder)) => checker.problem(folder, message),
            (None, None) => checker.problems.push(Problem {
                line: None,
                message,
            }),
        };
        let mut unique: Vec<String> = Vec::with_capacity(folders.len());
        for folder in folders {
            if unique.contains(&folder) {
                at_line(self, format!("{section}: folder {folder} is listed twice"));
                continue;
            }
            if raw.processed_folder.as_ref() == Some(&folder) {
                at_line(
                    self,
                    format!(
                        "{section}: processed_folder {folder} is also a watched folder; processed mail would be read again"
                    ),
                );
            }
            unique.push(folder);
        }
        unique
    }

    fn initial_import(
        &mut self,
        section: &str,
        value: &Spanned<toml::Value>,
    ) -> Option<InitialImport> {
        let forms =
            "\"all\", \"unseen\", \"none\", { since = \"7d\" } or { unseen_since = \"7d\" }";
        let parsed = match value.get_ref() {
            toml::Value::String(word) => match word.as_str() {
                "all" => Ok(InitialImport::All),
                "unseen" => Ok(InitialImport::Unseen),
                "none" => Ok(InitialImport::Nothing),
                other => Err(format!("`{other}` is not one of {forms}")),
            },
            toml::Value::Table(table) => {
                let mut entries = table.iter();
                match (entries.next(), entries.next()) {
                    (Some((key, toml::Value::String(text))), None)
                        if key == "since" || key == "unseen_since" =>
                    {
                        match duration::parse(text) {
                            Ok(age) if key == "since" => Ok(InitialImport::Since(age)),
                            Ok(age) => Ok(InitialImport::UnseenSince(age)),
                            Err(err) => Err(format!("{key}: {err}")),
                        }
                    }
                    _ => Err(format!(
                        "a table here holds exactly one key, since or unseen_since, with a duration in quotes; use one of {forms}"
                    )),
                }
            }
            _ => Err(format!("use one of {forms}")),
        };
        match parsed {
            Ok(import) => Some(import),
            Err(err) => {
                self.problem(value, format!("{section}: initial_import: {err}"));
                None
            }
        }
    }

    fn smtp(&mut self, spanned: &Spanned<RawSmtp>) -> Option<SmtpConfig> {
        let raw = spanned.get_ref();
        let server = self.server("smtp", &raw.host, raw.port, &raw.tls, [465, 587, 25]);
        let credentials = match &raw.user {
            Some(user) => Some((
                user.clone(),
                self.credential(RawLogin {
                    section: "smtp",
                    at: spanned,
                    account: "smtp".to_string(),
                    purpose: Purpose::Smtp,
                    user,
                    auth: raw.auth.as_ref(),
                    password: raw.password.as_ref(),
                    password_file: raw.password_file.as_ref(),
                    oauth2: raw.oauth2.as_ref(),
                })?,
            )),
            None => {
                if let Some(file) = &raw.password_file {
                    self.problem(
                        file,
                        "smtp: password_file is set but user is not".to_string(),
                    );
                } else if raw.password.is_some() {
                    self.problem(spanned, "smtp: password is set but user is not".to_string());
                } else if let Some(auth) = &raw.auth {
                    self.problem(auth, "smtp: auth is set but user is not".to_string());
                }
                None
            }
        };
        let connections = match &raw.connections {
            None => DEFAULT_SMTP_CONNECTIONS,
            Some(n) if (1..=MAX_SMTP_CONNECTIONS).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                self.problem(
                    n,
                    format!(
                        "smtp.connections must be between 1 and {MAX_SMTP_CONNECTIONS}, not {}",
                        n.get_ref()
                    ),
                );
                DEFAULT_SMTP_CONNECTIONS
            }
        };
        Some(SmtpConfig {
            server,
            credentials,
            timeout: raw.timeout.map_or(Duration::from_secs(60), |d| d.0),
            connections,
        })
    }

    fn policy(&mut self, raw: &raw::RawPolicy, support: Option<&Support>) -> Policy {
        let mut count =
            |key: &str, value: &Option<Spanned<u32>>, default: u32, max: u32| match value {
                None => default,
                Some(n) if (1..=max).contains(n.get_ref()) => *n.get_ref(),
                Some(n) => {
                    self.problem(
                        n,
                        format!(
                            "policy.{key} must be between 1 and {max}, not {}",
                            n.get_ref()
                        ),
                    );
                    default
                }
            };
        let new_tickets_per_hour = count(
            "new_tickets_per_hour",
            &raw.new_tickets_per_hour,
            10,
            100_000,
        );
        let acknowledgements_per_hour = count(
            "acknowledgements_per_hour",
            &raw.acknowledgements_per_hour,
            5,
            100_000,
        );
        let max_message_size_mb = count("max_message_size_mb", &raw.max_message_size_mb, 25, 2048);
        let carry_attachments_mb =
            count("carry_attachments_mb", &raw.carry_attachments_mb, 10, 2048);
        let max_cc_per_message = count("max_cc_per_message", &raw.max_cc_per_message, 10, 1000);
        Policy {
            new_tickets_per_hour,
            acknowledgements_per_hour,
            max_message_size: u64::from(max_message_size_mb) * 1024 * 1024,
            carry_attachments: u64::from(carry_attachments_mb) * 1024 * 1024,
            max_cc_per_message: max_cc_per_message as usize,
            acknowledge_backlog_within: raw
                .acknowledge_backlog_within
                .map_or(Duration::ZERO, |d| d.0),
            no_ack_domains: match &raw.no_ack_domains {
                Some(domains) => domains
                    .iter()
                    .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                    .collect(),
                None => support
                    .map(|s| vec![s.address.domain().to_ascii_lowercase()])
                    .unwrap_or_default(),
            },
        }
    }

    fn outbox(&mut self, raw: &raw::RawOutbox) -> OutboxConfig {
        let default_retry = [30, 120, 600, 1800, 3600].map(Duration::from_secs).to_vec();
        let retry = match &raw.retry {
            None => default_retry,
            Some(list) if list.get_ref().is_empty() => {
                self.problem(
                    list,
                    "outbox.retry must list at least one delay, e.g. [\"30s\", \"5m\", \"1h\"]"
                        .to_string(),
                );
                default_retry
            }
            Some(list) => list.get_ref().iter().map(|d| d.0).collect(),
        };
        OutboxConfig {
            retry,
            give_up_after: raw
                .give_up_after
                .map_or(Duration::from_secs(3 * 86_400), |d| d.0),
        }
    }
}

impl Checker<'_> {
    fn http(&mut self, raw: &raw::RawHttp) -> HttpConfig {
        let outbox_max_age = raw
            .outbox_max_age
            .map_or(Duration::from_secs(15 * 60), |d| d.0);
        let listen = match (&raw.enabled, &raw.listen) {
            (Some(false), _) => None,
            (_, None) => Some(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                DEFAULT_HTTP_PORT,
            ))),
            (_, Some(listen)) => match listen.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) => {
                    if !addr.ip().is_loopback() {
                        self.warnings.push(format!(
                            "http.listen = \"{addr}\" is not a loopback address: /healthz and /metrics (no authentication) are open to the network; put a reverse proxy or firewall in front"
                        ));
                    }
                    Some(addr)
                }
                Err(_) => {
                    self.problem(
                        listen,
                        format!(
                            "http.listen = \"{}\" is not an address and port, e.g. \"127.0.0.1:{DEFAULT_HTTP_PORT}\" or \"[::1]:{DEFAULT_HTTP_PORT}\" (enabled = false turns the listener off)",
                            listen.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        HttpConfig {
            listen,
            outbox_max_age,
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
