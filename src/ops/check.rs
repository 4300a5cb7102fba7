//! `deskgate check-config [--connect]`.

use std::io::Write;

use async_imap::types::{Capability, NameAttribute};
use futures_util::TryStreamExt;

use crate::config::{Config, ConfigDuration, MailboxConfig, TlsTrust};
use crate::fetch::{FetchError, open, timed};
use crate::oauth::grant_for;
use crate::send;
use crate::store::Store;

/// Prints what the configuration amounts to, with its warnings.
pub fn report(out: &mut impl Write, config: &Config) -> std::io::Result<()> {
    writeln!(out, "{}: configuration is valid", config.path.display())?;
    writeln!(
        out,
        "  support:  {} <{}>",
        config.support.name, config.support.address
    )?;
    writeln!(out, "  database: {}", config.database.display())?;
    let policy = &config.policy;
    writeln!(
        out,
        "  policy:   per sender and hour at most {} new tickets and {} acknowledgements; mail over {} MiB quarantined; never acknowledged: {}",
        policy.new_tickets_per_hour,
        policy.acknowledgements_per_hour,
        policy.max_message_size >> 20,
        if policy.no_ack_domains.is_empty() {
            "(no domain)".to_string()
        } else {
            policy.no_ack_domains.join(", ")
        }
    )?;
    for m in &config.mailboxes {
        writeln!(
            out,
            "  mailbox {}: {}@{}:{} ({:?}), folder {}, default language {}{}",
            m.name,
            m.user,
            m.server.host,
            m.server.port,
            m.server.tls,
            m.folder,
            m.language,
            m.quarantine_folder
                .as_ref()
                .map_or(String::new(), |q| format!(", quarantine to {q}"))
        )?;
        writeln!(out, "    deadlines: {}", m.deadlines)?;
        for a in &m.addresses {
            let desk = config.desk(&m.name, Some(a.address.as_ref()));
            let own = a.templates.origins().filter(|(_, o)| o.is_some()).count();
            writeln!(
                out,
                "    address {} <{}>: team {}, default language {}, {own} template(s) of its own or from templates_dir",
                a.name,
                a.address,
                desk.team.map_or("(none)", |t| t.name.as_str()),
                a.language,
            )?;
        }
    }
    writeln!(out, "  followup: {}", config.followup)?;
    writeln!(
        out,
        "  smtp:     {}:{} ({:?})",
        config.smtp.server.host, config.smtp.server.port, config.smtp.server.tls
    )?;
    let (shipped, own): (Vec<_>, Vec<_>) = config
        .templates
        .origins()
        .partition(|(_, origin)| origin.is_none());
    writeln!(
        out,
        "  templates: {} compiled and test-rendered ({} built in, {} from templates_dir)",
        shipped.len() + own.len(),
        shipped.len(),
        own.len()
    )?;
    for warning in &config.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    let files = config
        .database
        .sqlite_path()
        .map(crate::files::database_files)
        .unwrap_or_default();
    for file in files {
        if let Some(mode) = crate::files::readable_by_others(&file) {
            writeln!(
                out,
                "  warning: {}: readable by group or others (mode {mode:04o}) and holds customers' mail and OAuth tokens; chmod 600 it (deskgate run does)",
                file.display()
            )?;
        }
    }
    Ok(())
}

/// What `--connect` learned about one mailbox.
struct Inspection {
    /// Every selectable folder with its message and unseen counts, in the server's order.
    folders: Vec<(String, u32, Option<u32>)>,
    capabilities: Vec<String>,
}

/// Logs in to every server; prints one line each, the folders of every mailbox with their
/// counts and what needs attention, and returns whether all succeeded.
pub async fn connect(out: &mut impl Write, config: &Config) -> anyhow::Result<bool> {
    let mut all_ok = true;
    // OAuth refresh tokens live in the database; before the first run there is none.
    let store = if config
        .database
        .sqlite_path()
        .is_none_or(std::path::Path::exists)
    {
        Some(Store::connect(&config.database)?)
    } else {
        None
    };
    for mailbox in &config.mailboxes {
        match inspect(mailbox, &config.tls, store.as_ref()).await {
            Ok(found) => {
                let watched = found.folders.iter().find(|f| f.0 == mailbox.folder);
                let n = watched.map_or(0, |f| f.1);
                writeln!(
                    out,
                    "  imap {}: ok ({n} messages in {})",
                    mailbox.name, mailbox.folder
                )?;
                for (name, messages, unseen) in &found.folders {
                    let role = if *name == mailbox.folder {
                        "  <- folder"
                    } else if mailbox.processed_folder.as_deref() == Some(name.as_str()) {
                        "  <- processed_folder"
                    } else {
                        ""
                    };
                    let unseen = unseen.map_or(String::new(), |u| format!(", {u} unseen"));
                    writeln!(out, "    {name}: {messages} messages{unseen}{role}")?;
                }
                let caps: Vec<&str> = found.capabilities.iter().map(String::as_str).collect();
                let names: Vec<&str> = found.folders.iter().map(|f| f.0.as_str()).collect();
                let (problems, warnings) = findings(mailbox, &caps, &names, n);
                for problem in problems {
                    all_ok = false;
                    writeln!(out, "  imap {}: FAILED: {problem}", mailbox.name)?;
                }
                for warning in warnings {
                    writeln!(out, "  warning: mailbox {}: {warning}", mailbox.name)?;
                }
            }
            Err(err) => {
                all_ok = false;
                writeln!(out, "  imap {}: FAILED: {err}", mailbox.name)?;
            }
        }
    }
    let smtp = &config.smtp;
    let tested = async {
        let grant = match &smtp.credentials {
            Some((_, credential)) => {
                grant_for(credential, store.as_ref(), &config.tls).map_err(|e| e.to_string())?
            }
            None => None,
        };
        let login = send::Smtp::new(smtp, &config.tls, grant).map_err(|e| e.to_string())?;
        let transport = login.transport().await?;
        match tokio::time::timeout(smtp.timeout, transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err("the server did not accept a connection".to_string()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {:?}", smtp.timeout)),
        }
    }
    .await;
    match tested {
        Ok(()) => writeln!(out, "  smtp {}:{}: ok", smtp.server.host, smtp.server.port)?,
        Err(err) => {
            all_ok = false;
            writeln!(
                out,
                "  smtp {}:{}: FAILED: {err}",
                smtp.server.host, smtp.server.port
            )?;
        }
    }
    Ok(all_ok)
}

/// Logs in, lists the folders with their counts and the capabilities, selects the watched
/// folder (so a missing one fails here as it would in the daemon), logs out.
async fn inspect(
    mailbox: &MailboxConfig,
    trust: &TlsTrust,
    store: Option<&Store>,
) -> Result<Inspection, FetchError> {
    let limit = mailbox.timeout;
    let grant = grant_for(&mailbox.credential, store, trust)?;
    let mut session = open(mailbox, trust, grant.as_deref()).await?.session;
    let capabilities = timed(limit, "CAPABILITY", session.capabilities()).await?;
    let capabilities: Vec<String> = capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::Atom(atom) => Some(atom.to_string()),
            _ => None,
        })
        .collect();
    let names: Vec<String> = timed(limit, "LIST", async {
        let stream = session.list(None, Some("*")).await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?
    .into_iter()
    .filter(|name| {
        !name
            .attributes()
            .iter()
            .any(|a| matches!(a, NameAttribute::NoSelect))
    })
    .map(|name| name.name().to_string())
    .collect();
    let mut folders = Vec::with_capacity(names.len());
    for name in names {
        let status = timed(limit, "STATUS", session.status(&name, "(MESSAGES UNSEEN)")).await?;
        folders.push((name, status.exists, status.unseen));
    }
    timed(limit, "SELECT", session.select(&mailbox.folder)).await?;
    let _ = timed(limit, "LOGOUT", session.logout()).await;
    Ok(Inspection {
        folders,
        capabilities,
    })
}

/// What would make the daemon fail on this mailbox (problems), and what works but worse
/// than it could (warnings).
fn findings(
    mailbox: &MailboxConfig,
    capabilities: &[&str],
    folders: &[&str],
    n_in_folder: u32,
) -> (Vec<String>, Vec<String>) {
    let has = |cap: &str| capabilities.iter().any(|c| c.eq_ignore_ascii_case(cap));
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if n_in_folder == 0 {
        warnings.push(format!(
            "folder {} is empty; check that support mail is delivered to it (see the folder list above)",
            mailbox.folder
        ));
    }
    if !has("IDLE") {
        warnings.push(format!(
            "the server lacks IDLE: new mail is noticed only every poll_interval ({})",
            ConfigDuration(mailbox.poll_interval)
        ));
    }
    if let Some(processed) = &mailbox.processed_folder {
        if !folders.contains(&processed.as_str()) {
            problems.push(format!(
                "processed_folder {processed} does not exist on the server; create it or unset processed_folder"
            ));
        }
        if !has("MOVE") && !has("UIDPLUS") {
            problems.push(format!(
                "the server lacks MOVE and UIDPLUS: processed mail cannot be moved to {processed} without expunging other clients' deleted mail; unset processed_folder"
            ));
        } else if !has("MOVE") {
            warnings.push(format!(
                "the server lacks MOVE: processed mail goes to {processed} by COPY, \\Deleted and UID EXPUNGE, which is not atomic"
            ));
        }
    } else if !has("UIDPLUS") {
        warnings.push("the server lacks UIDPLUS (RFC 4315); deskgate does not need it while processed_folder is unset".to_string());
    }
    if !has("MOVE") && mailbox.processed_folder.is_none() {
        warnings.push("the server lacks MOVE (RFC 6851); deskgate does not need it while processed_folder is unset".to_string());
    }
    (problems, warnings)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Credential, InitialImport, Secret, Server, TlsMode};

    fn mailbox(processed: Option<&str>) -> MailboxConfig {
        MailboxConfig {
            name: "support".into(),
            account: "support".into(),
            server: Server {
                host: "imap.example.com".into(),
                port: 993,
                tls: TlsMode::Implicit,
            },
            user: "support@example.com".into(),
            credential: Credential::Password(Secret::new("x")),
            folder: "INBOX".into(),
            processed_folder: processed.map(String::from),
            quarantine_folder: None,
            idle: true,
            poll_interval: Duration::from_secs(60),
            batch_size: 50,
            timeout: Duration::from_secs(60),
            initial_import: InitialImport::Unseen,
            language: crate::language::Lang::En,
            deadlines: Default::default(),
            addresses: Vec::new(),
        }
    }

    const FULL: [&str; 4] = ["IMAP4rev1", "IDLE", "UIDPLUS", "MOVE"];

    #[test]
    fn a_full_server_with_mail_needs_no_attention() {
        let (problems, warnings) = findings(&mailbox(Some("Done")), &FULL, &["INBOX", "Done"], 3);
        assert!(
            problems.is_empty() && warnings.is_empty(),
            "{problems:?} {warnings:?}"
        );
    }

    #[test]
    fn an_empty_folder_and_missing_extensions_are_named() {
        let (problems, warnings) = findings(&mailbox(None), &["IMAP4rev1"], &["INBOX"], 0);
        assert!(problems.is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(warnings[0].contains("folder INBOX is empty"));
        assert!(
            warnings[1].contains("lacks IDLE: new mail is noticed only every poll_interval (1m)")
        );
        assert!(warnings[2].contains("lacks UIDPLUS"));
        assert!(warnings[3].contains("lacks MOVE"));
    }

    #[test]
    fn a_processed_folder_must_exist_and_be_reachable() {
        let (problems, _) = findings(&mailbox(Some("Done")), &FULL, &["INBOX"], 1);
        assert_eq!(
            problems,
            [
                "processed_folder Done does not exist on the server; create it or unset processed_folder"
            ]
        );
        let (problems, _) = findings(&mailbox(Some("Done")), &["IDLE"], &["INBOX", "Done"], 1);
        assert!(
            problems[0].contains("lacks MOVE and UIDPLUS"),
            "{problems:?}"
        );
        let (problems, warnings) = findings(
            &mailbox(Some("Done")),
            &["IDLE", "UIDPLUS"],
            &["INBOX", "Done"],
            1,
        );
        assert!(problems.is_empty());
        assert!(
            warnings[0].contains("lacks MOVE: processed mail goes to Done by COPY"),
            "{warnings:?}"
        );
    }
}
