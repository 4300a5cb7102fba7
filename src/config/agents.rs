//! `[relay]`, `[[agent]]` and `[[team]]`: who answers customers by mail, and who hears of what.

use std::path::PathBuf;

use toml::Spanned;

pub use super::raw::NotifyWho;
use super::raw::{RawAgent, RawRelay, RawTeam};
use super::{Checker, Problem, Secret};
use crate::language::Lang;

/// The shortest relay secret accepted: 128 bits written as 32 hex digits, or any 32 bytes.
const MIN_SECRET_LEN: usize = 32;

/// Agents, their teams, and the signing of reply addresses.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    pub agents: Vec<Agent>,
    pub teams: Vec<Team>,
    /// Present whenever `agents` is not empty.
    pub relay: Option<Relay>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    /// The address notifications go to (lower case).
    pub address: String,
    /// Further addresses the agent may answer from (lower case).
    pub alternates: Vec<String>,
    /// The language of the mail deskgate writes to this agent (notifications, notes,
    /// notices, warnings, ...): `language`, else `support.language`.
    pub language: Lang,
}

impl Agent {
    /// Whether mail from `address` (lower case) is from this agent.
    pub fn owns(&self, address: &str) -> bool {
        self.address == address || self.alternates.iter().any(|a| a == address)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub name: String,
    /// Primary addresses of the members.
    pub members: Vec<String>,
    /// Mailboxes whose tickets this team handles; empty means all.
    pub mailboxes: Vec<String>,
    pub notify_new_ticket: NotifyWho,
    pub notify_customer_reply: NotifyWho,
}

#[derive(Debug, Clone)]
pub struct Relay {
    pub secret: Secret,
    /// The secret before the last rotation: keys it signed still verify, new keys use
    /// `secret`.
    pub previous_secret: Option<Secret>,
    /// Between the support address's local part and `<ticket>.<token>` (`+` by default).
    pub separator: String,
    /// Mail from an agent to this address is an internal note (lower case).
    pub notes_address: Option<String>,
}

impl Agents {
    /// The agent that `address` (any case) belongs to, by primary or alternate address.
    pub fn by_address(&self, address: &str) -> Option<&Agent> {
        let address = address.to_ascii_lowercase();
        self.agents.iter().find(|a| a.owns(&address))
    }

    /// The team handling `mailbox`: the first whose list names it, else one that lists none.
    pub fn team_for(&self, mailbox: &str) -> Option<&Team> {
        self.teams
            .iter()
            .find(|t| t.mailboxes.iter().any(|m| m == mailbox))
            .or_else(|| self.teams.iter().find(|t| t.mailboxes.is_empty()))
    }
}

impl Checker<'_> {
    pub(super) fn agents(
        &mut self,
        relay: Option<&Spanned<RawRelay>>,
        agents: &[Spanned<RawAgent>],
        teams: &[Spanned<RawTeam>],
        mailboxes: &[String],
        default_language: Lang,
    ) -> Agents {
        let mut list: Vec<Agent> = Vec::new();
        for spanned in agents {
            let raw = spanned.get_ref();
            let Some(address) = self.address("agent.address", &raw.address) else {
                continue;
            };
            let alternates: Vec<String> = raw
                .alternates
                .iter()
                .filter_map(|a| self.address("agent.alternates", a))
                .collect();
            for claimed in std::iter::once(&address).chain(&alternates) {
                if let Some(other) = list.iter().find(|a| a.owns(claimed)) {
                    self.problem(
                        &raw.address,
                        format!(
                            "agent address `{claimed}` also belongs to agent `{}`; each address may name one agent",
                            other.name
                        ),
                    );
                }
            }
            let language = self
                .language(
                    &format!("agent `{address}`: language"),
                    raw.language.as_ref(),
                )
                .unwrap_or(default_language);
            list.push(Agent {
                name: raw.name.clone(),
                address,
                alternates,
                language,
            });
        }
        let teams = if teams.is_empty() {
            // Without [[team]], every agent hears about every mailbox.
            let members: Vec<String> = list.iter().map(|a| a.address.clone()).collect();
            if members.is_empty() {
                Vec::new()
            } else {
                vec![Team {
                    name: "everyone".to_string(),
                    members,
                    mailboxes: Vec::new(),
                    notify_new_ticket: NotifyWho::Team,
                    notify_customer_reply: NotifyWho::Assigned,
                }]
            }
        } else {
            teams
                .iter()
                .map(|t| self.team(t, &list, mailboxes))
                .collect()
        };
        if !teams.is_empty() {
            for mailbox in mailboxes {
                let covered = teams
                    .iter()
                    .any(|t| t.mailboxes.is_empty() || t.mailboxes.contains(mailbox));
                if !covered {
                    self.problems.push(Problem {
                        line: None,
                        message: format!(
                            "no [[team]] handles mailbox `{mailbox}`; add it to a team's mailboxes, or give one team no mailboxes list to handle all"
                        ),
                    });
                }
            }
        }
        let relay = match relay {
            Some(relay) => self.relay(relay),
            None if !list.is_empty() => {
                self.problems.push(Problem {
                    line: None,
                    message: "agents are configured but [relay] is missing; set [relay] secret_file so reply addresses can be signed".to_string(),
                });
                None
            }
            None => None,
        };
        Agents {
            agents: list,
            teams,
            relay,
        }
    }

    fn team(&mut self, spanned: &Spanned<RawTeam>, agents: &[Agent], mailboxes: &[String]) -> Team {
        let raw = spanned.get_ref();
        let name = raw.name.get_ref().clone();
        let mut members = Vec::new();
        for member in &raw.agents {
            match agents
                .iter()
                .find(|a| a.owns(&member.get_ref().to_ascii_lowercase()))
            {
                Some(agent) => members.push(agent.address.clone()),
                None => self.problem(
                    member,
                    format!(
                        "team `{name}`: `{}` is not the address of any [[agent]]",
                        member.get_ref()
                    ),
                ),
            }
        }
        if raw.agents.is_empty() {
            self.problem(
                &raw.name,
                format!("team `{name}` has no agents; list at least one agent address"),
            );
        }
        let mut handled = Vec::new();
        for mailbox in raw.mailboxes.iter().flatten() {
            handled.push(mailbox.get_ref().clone());
            if !mailboxes.contains(mailbox.get_ref()) {
                self.problem(
                    mailbox,
                    format!(
                        "team `{name}`: there is no [[mailbox]] named `{}`",
                        mailbox.get_ref()
                    ),
                );
            }
        }
        Team {
            name,
            members,
            mailboxes: handled,
            notify_new_ticket: raw.notify_new_ticket.unwrap_or(NotifyWho::Team),
            notify_customer_reply: raw.notify_customer_reply.unwrap_or(NotifyWho::Assigned),
        }
    }

    fn relay(&mut self, spanned: &Spanned<RawRelay>) -> Option<Relay> {
        let raw = spanned.get_ref();
        let secret = self.secret(spanned, raw.secret.as_ref(), raw.secret_file.as_ref());
        let separator = match &raw.separator {
            None => "+".to_string(),
            Some(sep) => {
                let value = sep.get_ref();
                if value.chars().count() != 1 || !"+-_=".contains(value.as_str()) {
                    self.problem(
                        sep,
                        format!(
                            "relay.separator `{value}` must be one of + - _ = (the mail server's recipient delimiter)"
                        ),
                    );
                }
                value.clone()
            }
        };
        let notes_address = raw
            .notes_address
            .as_ref()
            .and_then(|a| self.address("relay.notes_address", a));
        let previous_secret = match &raw.previous_secret_file {
            Some(file) => Some(self.previous_secret(file)?),
            None => None,
        };
        Some(Relay {
            secret: secret?,
            previous_secret,
            separator,
            notes_address,
        })
    }

    /// `previous_secret_file`: the secret before a rotation, as long as a current one must be.
    fn previous_secret(&mut self, file: &Spanned<PathBuf>) -> Option<Secret> {
        let secret = self
            .secret_file("relay: previous_secret_file", file)?
            .trim()
            .to_string();
        if secret.len() < MIN_SECRET_LEN {
            self.problem(
                file,
                format!(
                    "relay: the previous secret is {} bytes long; use at least {MIN_SECRET_LEN}",
                    secret.len()
                ),
            );
            return None;
        }
        Some(Secret(secret))
    }

    /// Exactly one of `secret` and `secret_file`, at least [`MIN_SECRET_LEN`] bytes.
    fn secret(
        &mut self,
        at: &Spanned<RawRelay>,
        inline: Option<&String>,
        file: Option<&Spanned<PathBuf>>,
    ) -> Option<Secret> {
        let secret = match (inline, file) {
            (Some(_), Some(file)) => {
                self.problem(
                    file,
                    "relay: set either secret or secret_file, not both".to_string(),
                );
                return None;
            }
            (Some(secret), None) => {
                self.inline_secrets.push("relay secret".to_string());
                secret.clone()
            }
            (None, Some(file)) => self
                .secret_file("relay: secret_file", file)?
                .trim()
                .to_string(),
            (None, None) => {
                self.problem(
                    at,
                    "relay: missing secret; set secret_file (e.g. made with `openssl rand -hex 32`)"
                        .to_string(),
                );
                return None;
            }
        };
        if secret.len() < MIN_SECRET_LEN {
            self.problem(
                at,
                format!(
                    "relay: the secret is {} bytes long; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)",
                    secret.len()
                ),
            );
            return None;
        }
        Some(Secret(secret))
    }

    /// A lower-case email address, or a problem naming `key`.
    pub(super) fn address(&mut self, key: &str, value: &Spanned<String>) -> Option<String> {
        match value.get_ref().parse::<lettre::Address>() {
            Ok(address) => Some(address.to_string().to_ascii_lowercase()),
            Err(err) => {
                self.problem(
                    value,
                    format!(
                        "{key} `{}` is not an email address ({err})",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }
}
