//! `deskgate oauth login`: the device login (RFC 8628) in a terminal.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::{Config, Credential, EndpointGrant, TokenSource};
use crate::oauth::{Grant, device_login};
use crate::store::Store;

/// Whose login to sign in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Mailbox(String),
    Smtp,
}

pub async fn login(out: &mut impl Write, config: &Config, target: Target) -> anyhow::Result<()> {
    let credential = match &target {
        Target::Mailbox(name) => match config.mailbox(name) {
            Some(mailbox) => Some(&mailbox.credential),
            None => {
                let mut names: Vec<&str> = config
                    .mailboxes
                    .iter()
                    .map(|m| m.account.as_str())
                    .collect();
                names.dedup();
                bail!(
                    "no mailbox `{name}` in {}; mailboxes: {}",
                    config.path.display(),
                    names.join(", ")
                );
            }
        },
        Target::Smtp => config.smtp.credentials.as_ref().map(|(_, c)| c),
    };
    let what = match &target {
        Target::Mailbox(name) => format!("mailbox `{name}`"),
        Target::Smtp => "[smtp]".to_string(),
    };
    let Some(Credential::OAuth2 { grant, .. }) = credential else {
        bail!("{what} does not log in with OAuth 2.0; set auth = \"xoauth2\" and an oauth2 table");
    };
    match &grant.source {
        TokenSource::Endpoint(endpoint) if endpoint.grant == EndpointGrant::RefreshToken => {}
        TokenSource::Endpoint(_) => {
            bail!(
                "{what} uses grant = \"client-credentials\": the application signs in itself, there is nothing to log in"
            )
        }
        TokenSource::ServiceAccount(_) => {
            bail!(
                "{what} uses a Google service account (grant = \"service-account\"): there is nothing to log in"
            )
        }
        TokenSource::Command(_) => {
            bail!(
                "{what} gets its tokens from a command (provider = \"command\"): there is nothing to log in"
            )
        }
    }
    let store = Store::connect(&config.database).context("opening the database")?;
    let grant = Grant::new(Arc::clone(grant), Some(store), &config.tls)?;
    let mut shown = Ok(());
    let refresh_token = device_login(&grant, |device| {
        shown = (|| {
            writeln!(out, "To sign in for {what}:")?;
            writeln!(out, "  1. open {}", device.verification_uri)?;
            writeln!(out, "  2. enter the code {}", device.user_code)?;
            writeln!(
                out,
                "  3. sign in as the mailbox's user and accept the permissions"
            )?;
            if let Some(message) = &device.message {
                writeln!(out, "({message})")?;
            }
            writeln!(
                out,
                "Waiting up to {} minutes...",
                device.expires_in.as_secs().div_ceil(60)
            )?;
            out.flush()
        })();
    })
    .await;
    shown.context("writing to standard output")?;
    grant.save_refresh_token(refresh_token?).await?;
    grant
        .access_token()
        .await
        .context("the stored refresh token does not give an access token")?;
    writeln!(
        out,
        "Signed in: the refresh token for {} is stored in {}. A running daemon uses it at its next login attempt.",
        grant.account(),
        config.database.display()
    )?;
    Ok(())
}
