//! Talking to token endpoints (RFC 6749), the device flow (RFC 8628), and token commands.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::{AccessToken, OAuthError, REQUEST_TIMEOUT};
use crate::config::{Endpoint, Secret, ServiceAccount, TlsTrust};

/// The HTTP client for token endpoints: the same rustls (ring) and trust roots as IMAP.
pub(super) fn client(trust: &TlsTrust) -> Result<reqwest::Client, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(Arc::clone(&trust.roots))
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("deskgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// A successful token response.
pub(super) struct TokenReply {
    pub token: AccessToken,
    /// Present when the provider issues or rotates a refresh token.
    pub refresh_token: Option<Secret>,
}

/// An RFC 6749 error response (`{"error": "...", "error_description": "..."}`).
struct Refusal {
    error: String,
    description: Option<String>,
}

enum Answer {
    Token(TokenReply),
    Refused(Refusal),
}

pub(super) async fn client_credentials(
    http: &reqwest::Client,
    account: &str,
    endpoint: &Endpoint,
) -> Result<TokenReply, OAuthError> {
    let answer = post_token(
        http,
        account,
        endpoint,
        &[("grant_type", "client_credentials")],
    )
    .await?;
    accept(account, answer)
}

/// RFC 7523: a Google service account's signed assertion for the mailbox's user.
pub(super) async fn service_account(
    http: &reqwest::Client,
    account: &str,
    key: &ServiceAccount,
) -> Result<TokenReply, OAuthError> {
    let assertion = jwt_assertion(key, Timestamp::now()).map_err(|reason| OAuthError::Client {
        account: account.to_string(),
        error: "service account".to_string(),
        description: Some(reason),
    })?;
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.as_str()),
    ];
    let answer = post(http, account, &key.token_url, &form).await?;
    accept(account, answer)
}

/// `header.claims.signature`, RS256, valid for an hour from `now`.
fn jwt_assertion(key: &ServiceAccount, now: Timestamp) -> Result<String, String> {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(id) = &key.key_id {
        header["kid"] = Value::String(id.clone());
    }
    let issued = now.as_second();
    let claims = serde_json::json!({
        "iss": key.issuer,
        "sub": key.subject,
        "scope": key.scope,
        "aud": key.token_url,
        "iat": issued,
        "exp": issued + 3600,
    });
    let signed = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.key.public().modulus_len()];
    key.key
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "signing the assertion failed".to_string())?;
    Ok(format!("{signed}.{}", encode(&signature)))
}

pub(super) async fn refresh(
    http: &reqwest::Client,
    account: &str,
    endpoint: &Endpoint,
    refresh_token: &Secret,
) -> Result<TokenReply, OAuthError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
    ];
    let answer = post_token(http, account, endpoint, &form).await?;
    accept(account, answer)
}

/// A token, or the refusal as the error the admin needs.
fn accept(account: &str, answer: Answer) -> Result<TokenReply, OAuthError> {
    match answer {
        Answer::Token(reply) => Ok(reply),
        Answer::Refused(refusal) => Err(refused(account, refusal)),
    }
}

fn refused(account: &str, refusal: Refusal) -> OAuthError {
    let Refusal { error, description } = refusal;
    let account = account.to_string();
    match error.as_str() {
        "invalid_grant" => OAuthError::Revoked {
            account,
            error,
            description,
        },
        "temporarily_unavailable" | "server_error" => OAuthError::Temporary {
            account,
            reason: format!(
                "{error}{}",
                description.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        },
        _ => OAuthError::Client {
            account,
            error,
            description,
        },
    }
}

async fn post_token(
    http: &reqwest::Client,
    account: &str,
    endpoint: &Endpoint,
    grant: &[(&str, &str)],
) -> Result<Answer, OAuthError> {
    let mut form: Vec<(&str, &str)> = grant.to_vec();
    form.push(("client_id", &endpoint.client_id));
    if let Some(secret) = &endpoint.client_secret {
        form.push(("client_secret", secret.expose()));
    }
    if let Some(scope) = &endpoint.scope {
        form.push(("scope", scope));
    }
    post(http, account, &endpoint.token_url, &form).await
}

/// POSTs a form; the status and the JSON body.
async fn send_form(
    http: &reqwest::Client,
    account: &str,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, Value), OAuthError> {
    let temporary = |reason| temporary(account, reason);
    let response = http
        .post(url)
        .header("Accept", "application/json")
        .form(form)
        .send()
        .await
        .map_err(|e| temporary(format!("{url}: {}", error_chain(&e))))?;
    let status = response.status();
    let body = response
        .json()
        .await
        .map_err(|e| temporary(format!("{url} answered {status} without JSON: {e}")))?;
    Ok((status, body))
}

fn temporary(account: &str, reason: String) -> OAuthError {
    OAuthError::Temporary {
        account: account.to_string(),
        reason,
    }
}

/// An RFC 6749 error in `body`, if it is one.
fn refusal(body: &Value) -> Option<Refusal> {
    let error = body.get("error").and_then(Value::as_str)?;
    Some(Refusal {
        error: error.to_string(),
        description: body
            .get("error_description")
            .and_then(Value::as_str)
            .map(String::from),
    })
}

/// POSTs a form and reads a token response or an RFC 6749 error.
async fn post(
    http: &reqwest::Client,
    account: &str,
    url: &str,
    form: &[(&str, &str)],
) -> Result<Answer, OAuthError> {
    let (status, body) = send_form(http, account, url, form).await?;
    if let Some(refusal) = refusal(&body) {
        return Ok(Answer::Refused(refusal));
    }
    let temporary = |reason| temporary(account, reason);
    if !status.is_success() {
        return Err(temporary(format!("{url} answered {status}")));
    }
    let Some(access_token) = body.get("access_token").and_then(Value::as_str) else {
        return Err(temporary(format!("{url} answered without an access_token")));
    };
    Ok(Answer::Token(TokenReply {
        token: AccessToken {
            secret: Secret::new(access_token.to_string()),
            expires_at: expires_at(&body),
        },
        refresh_token: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(|t| Secret::new(t.to_string())),
    }))
}

/// `expires_in` seconds from now (a number, or a string as some providers send it).
fn expires_at(body: &Value) -> Option<Timestamp> {
    let seconds = match body.get("expires_in")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Timestamp::now()
        .checked_add(SignedDuration::from_secs(seconds))
        .ok()
}

/// The error and its causes, each once (reqwest's own message hides the cause).
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Runs the admin's token command: stdout is the access token, or JSON with `access_token`
/// and `expires_in`. Its stderr (never its stdout) is quoted on failure.
pub(super) async fn run_command(account: &str, argv: &[String]) -> Result<AccessToken, OAuthError> {
    let failed = |reason: String| OAuthError::Command {
        account: account.to_string(),
        reason,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| failed("the command is empty".to_string()))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(REQUEST_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            failed(format!(
                "{program} did not finish within {REQUEST_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| failed(format!("cannot run {program}: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(failed(format!(
            "{program} exited with {}: {first}",
            output.status
        )));
    }
    let stdout = String::from_utf8(output.stdout)
        .map_err(|_| failed(format!("{program} printed something that is not UTF-8")))?;
    let text = stdout.trim();
    if text.starts_with('{') {
        let body: Value = serde_json::from_str(text)
            .map_err(|e| failed(format!("{program} printed invalid JSON: {e}")))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| failed(format!("{program} printed JSON without access_token")))?;
        return Ok(AccessToken {
            secret: Secret::new(token.to_string()),
            expires_at: expires_at(&body),
        });
    }
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(failed(format!("{program} printed no token")));
    }
    Ok(AccessToken {
        secret: Secret::new(token.to_string()),
        expires_at: None,
    })
}

/// What the admin must do to approve a device login.
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub verification_uri: String,
    pub user_code: String,
    pub expires_in: Duration,
    /// The provider's own instructions, if it sent some.
    pub message: Option<String>,
}

/// RFC 8628: asks for a device code, shows it through `prompt`, polls the token endpoint
/// until the admin approved it in a browser, and returns the refresh token.
pub async fn device_login(
    grant: &super::Grant,
    prompt: impl FnOnce(&DeviceAuthorization),
) -> Result<Secret, OAuthError> {
    let account = grant.account();
    let failed = |reason: String| OAuthError::Client {
        account: account.to_string(),
        error: "device login".to_string(),
        description: Some(reason),
    };
    let crate::config::TokenSource::Endpoint(endpoint) = &grant.config.source else {
        return Err(failed(
            "provider = \"command\" has no device login; the command gives the tokens".into(),
        ));
    };
    let Some(device_url) = &endpoint.device_url else {
        return Err(failed(
            "set device_authorization_url in the oauth2 table".into(),
        ));
    };
    let mut form = vec![("client_id", endpoint.client_id.as_str())];
    if let Some(scope) = &endpoint.scope {
        form.push(("scope", scope));
    }
    let (_, body) = send_form(&grant.http, account, device_url, &form).await?;
    if let Some(refusal) = refusal(&body) {
        return Err(refused(account, refusal));
    }
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(String::from);
    let seconds = |key: &str| body.get(key).and_then(Value::as_u64);
    let (Some(device_code), Some(user_code), Some(verification_uri)) = (
        text("device_code"),
        text("user_code"),
        text("verification_uri").or_else(|| text("verification_url")),
    ) else {
        return Err(failed(format!(
            "{device_url} answered without device_code, user_code and verification_uri"
        )));
    };
    let expires_in = Duration::from_secs(seconds("expires_in").unwrap_or(900));
    let mut interval = Duration::from_secs(seconds("interval").unwrap_or(5).max(1));
    prompt(&DeviceAuthorization {
        verification_uri,
        user_code,
        expires_in,
        message: text("message"),
    });
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        if started.elapsed() > expires_in {
            return Err(failed(
                "the code expired before it was approved; run the login again".into(),
            ));
        }
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code.as_str()),
        ];
        match post_token(&grant.http, account, endpoint, &form).await? {
            Answer::Token(reply) => {
                return reply.refresh_token.ok_or_else(|| {
                    failed(
                        "the provider issued no refresh token; add offline_access to scope".into(),
                    )
                });
            }
            Answer::Refused(refusal) => match refusal.error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += Duration::from_secs(5),
                "access_denied" => return Err(failed("the sign-in was declined".into())),
                "expired_token" => {
                    return Err(failed(
                        "the code expired before it was approved; run the login again".into(),
                    ));
                }
                _ => return Err(refused(account, refusal)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        ["/bin/sh", "-c", script].map(String::from).to_vec()
    }

    #[tokio::test]
    async fn a_token_command_prints_a_token_or_json() {
        let bare = run_command("mailbox a", &sh("echo tok-1")).await.unwrap();
        assert_eq!(bare.secret.expose(), "tok-1");
        assert_eq!(bare.expires_at, None, "asked again at every login");
        let json = run_command(
            "mailbox a",
            &sh(r#"echo '{"access_token": "tok-2", "expires_in": "3600"}'"#),
        )
        .await
        .unwrap();
        assert_eq!(json.secret.expose(), "tok-2");
        assert!(json.expires_at.is_some_and(|at| at > Timestamp::now()));
    }

    #[tokio::test]
    async fn a_failing_command_quotes_its_stderr_never_its_stdout() {
        let err = run_command(
            "smtp",
            &sh("echo secret-token; echo 'vault sealed' >&2; exit 3"),
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with(
                "smtp: token command failed: /bin/sh exited with exit status: 3: vault sealed"
            ),
            "{err}"
        );
        assert!(!err.contains("secret-token"));
        let err = run_command("smtp", &sh("true"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("printed no token"), "{err}");
    }

    #[test]
    fn refusals_say_who_must_act() {
        let refusal = |error: &str| Refusal {
            error: error.to_string(),
            description: Some("AADSTS70000".to_string()),
        };
        let revoked = refused("mailbox support", refusal("invalid_grant"));
        assert!(revoked.needs_admin());
        assert_eq!(
            revoked.to_string(),
            "mailbox support: the provider refused the grant (invalid_grant: AADSTS70000); the refresh token was revoked or has expired, or consent was withdrawn: run `deskgate oauth login --mailbox support` again"
        );
        assert!(refused("smtp", refusal("invalid_client")).needs_admin());
        assert!(!refused("smtp", refusal("temporarily_unavailable")).needs_admin());
    }
}
