//! `[[mailbox.address]]`: further addresses routed into one mailbox (sales@ and support@
//! delivered to the same IMAP folder), each with its own name, team, language and templates.

use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::raw::RawConfig;
use super::{Agents, Checker, DeskAddress, MailboxConfig};
use crate::templates::Templates;

impl Checker<'_> {
    /// Builds every mailbox's addresses into `mailboxes`; returns all our addresses (lower
    /// case), the support address first. Refused: an address used twice or by an agent, an
    /// unknown team or language, templates that do not compile.
    pub(super) fn addresses(
        &mut self,
        raw: &RawConfig,
        mailboxes: &mut [MailboxConfig],
        agents: &Agents,
        templates: Option<&Arc<Templates>>,
    ) -> Vec<String> {
        let support = raw.support.get_ref();
        let mut own = vec![support.address.get_ref().to_ascii_lowercase()];
        let notes = agents.relay.as_ref().and_then(|r| r.notes_address.clone());
        for section in &raw.mailbox {
            let section = section.get_ref();
            let name = section.name.get_ref();
            let Some(language) = mailboxes
                .iter()
                .find(|m| &m.account == name)
                .map(|m| m.language)
            else {
                continue; // the mailbox itself was refused
            };
            let mut built = Vec::new();
            for spanned in &section.address {
                let entry = spanned.get_ref();
                let key = format!("mailbox `{name}` address");
                let Some(address) = self.address(&key, &entry.address) else {
                    continue;
                };
                if own.contains(&address) {
                    self.problem(
                        &entry.address,
                        format!(
                            "{key} `{address}` is configured twice (as support.address or another [[mailbox.address]]); each address belongs to one mailbox"
                        ),
                    );
                    continue;
                }
                if let Some(agent) = agents.by_address(&address) {
                    self.problem(
                        &entry.address,
                        format!(
                            "{key} `{address}` is agent `{}`'s address; customers' mail and agents' mail must arrive at different addresses",
                            agent.name
                        ),
                    );
                }
                if notes.as_deref() == Some(address.as_str()) {
                    self.problem(
                        &entry.address,
                        format!("{key} `{address}` is relay.notes_address"),
                    );
                }
                own.push(address.clone());
                let team = entry.team.as_ref().map(|team| {
                    if !raw
                        .team
                        .iter()
                        .any(|t| t.get_ref().name.get_ref() == team.get_ref())
                    {
                        self.problem(
                            team,
                            format!(
                                "{key} `{address}`: there is no [[team]] named `{}`",
                                team.get_ref()
                            ),
                        );
                    }
                    team.get_ref().clone()
                });
                let language = self
                    .language(
                        &format!("{key} `{address}`: language"),
                        entry.language.as_ref(),
                    )
                    .unwrap_or(language);
                let templates = match &entry.templates_dir {
                    None => templates.cloned(),
                    Some(dir) => {
                        let dirs: Vec<&Spanned<PathBuf>> =
                            raw.templates_dir.iter().chain([dir]).collect();
                        self.templates(&dirs, &format!("{key} `{address}`: templates_dir"))
                            .map(Arc::new)
                    }
                };
                let (Ok(parsed), Some(templates)) = (address.parse(), templates) else {
                    continue;
                };
                built.push(DeskAddress {
                    address: parsed,
                    name: entry.name.clone().unwrap_or_else(|| support.name.clone()),
                    team,
                    language,
                    templates,
                });
            }
            for mailbox in mailboxes.iter_mut().filter(|m| &m.account == name) {
                mailbox.addresses = built.clone();
            }
        }
        own
    }

    /// The shipped templates overridden by each directory in turn; problems name `key`, the
    /// last directory's line and the file.
    pub(super) fn templates(&mut self, dirs: &[&Spanned<PathBuf>], key: &str) -> Option<Templates> {
        let paths: Vec<PathBuf> = dirs.iter().map(|d| self.path(d.get_ref())).collect();
        let at = dirs.last()?;
        match Templates::load(&paths) {
            Ok(loaded) => {
                self.warnings.extend(loaded.warnings);
                Some(loaded.templates)
            }
            Err(errors) => {
                for error in errors {
                    self.problem(at, format!("{key}: {error}"));
                }
                None
            }
        }
    }
}
