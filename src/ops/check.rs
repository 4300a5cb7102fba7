//! `deskgate check-config [--connect]`.

use std::io::Write;

use crate::config::Config;
use crate::fetch::{connect as imap_connect, timed};
use crate::send;

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
        "  policy:   first response within {:?}; per sender and hour at most {} new tickets and {} acknowledgements; mail over {} MiB quarantined; never acknowledged: {}",
        policy.first_response,
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
    }
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
    Ok(())
}

/// Logs in to every server; prints one line each and returns whether all succeeded.
pub async fn connect(out: &mut impl Write, config: &Config) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for mailbox in &config.mailboxes {
        let result = async {
            let mut session = imap_connect(mailbox, &config.tls).await?;
            let selected =
                timed(mailbox.timeout, "SELECT", session.select(&mailbox.folder)).await?;
            let _ = timed(mailbox.timeout, "LOGOUT", session.logout()).await;
            Ok::<_, crate::fetch::FetchError>(selected.exists)
        }
        .await;
        match result {
            Ok(n) => writeln!(
                out,
                "  imap {}: ok ({n} messages in {})",
                mailbox.name, mailbox.folder
            )?,
            Err(err) => {
                all_ok = false;
                writeln!(out, "  imap {}: FAILED: {err}", mailbox.name)?;
            }
        }
    }
    let smtp = &config.smtp;
    let tested = async {
        let transport = send::transport(smtp, &config.tls).map_err(|e| e.to_string())?;
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
