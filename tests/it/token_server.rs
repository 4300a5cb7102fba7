//! A small OAuth 2.0 authorization server on 127.0.0.1 for the tests: token endpoint
//! (refresh_token, client_credentials and device_code grants), device authorization
//! endpoint, and the introspection endpoint Dovecot's oauth2 passdb asks about every token.
//! Hand-written HTTP/1.1 (one request per connection, `Connection: close`): enough for
//! reqwest and Dovecot's HTTP client, small enough to read.
//!
//! The test controls it directly: issue a refresh token, approve a device code, revoke every
//! grant, and read what happened (token requests, introspections, issued refresh tokens).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The client the tests configure (`client_id`).
pub const CLIENT_ID: &str = "deskgate-test";

#[derive(Default)]
struct State {
    /// access token → (username, expires)
    access: HashMap<String, (String, Instant)>,
    /// refresh token → username (only the current ones)
    refresh: HashMap<String, String>,
    /// device_code → (user_code, approved for this username)
    devices: HashMap<String, (String, Option<String>)>,
    next: u64,
    /// What the server saw, for assertions.
    token_requests: Vec<String>,
    introspections: Vec<(String, bool)>,
    refresh_issued: Vec<String>,
    issued_access: Vec<String>,
    /// This server's token URL: the audience of service account assertions.
    token_url: String,
    /// A Google-style service account: its issuer (client_email) and RSA public key (PKCS#1 DER).
    service_account: Option<(String, Vec<u8>)>,
}

pub struct TokenServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

/// How the server behaves.
#[derive(Clone, Copy)]
pub struct Settings {
    /// Lifetime of every access token (`expires_in`).
    pub access_lifetime: Duration,
    /// Issue a new refresh token at every refresh (Microsoft does; the old one stops working).
    pub rotate: bool,
    /// For client_credentials grants: the mailbox the application acts for.
    pub app_user: &'static str,
}

impl TokenServer {
    pub async fn start(settings: Settings) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token server");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State {
            token_url: format!("http://127.0.0.1:{port}/token"),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(stream, &state, settings).await;
                });
            }
        });
        TokenServer { port, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user approves the device login showing `user_code`, signing in as `user`.
    pub fn approve(&self, user_code: &str, user: &str) -> bool {
        let mut state = self.lock();
        let mut found = false;
        for (code, approved) in state.devices.values_mut() {
            if code == user_code {
                *approved = Some(user.to_string());
                found = true;
            }
        }
        found
    }

    /// Accepts JWT bearer assertions (RFC 7523) signed by this key, issued by `issuer`.
    pub fn trust_service_account(&self, issuer: &str, public_key_der: Vec<u8>) {
        self.lock().service_account = Some((issuer.to_string(), public_key_der));
    }

    /// The admin revokes every grant: refresh and access tokens stop working.
    pub fn revoke_all(&self) {
        let mut state = self.lock();
        state.refresh.clear();
        state.access.clear();
    }

    /// `grant_type` of every token request so far.
    pub fn token_requests(&self) -> Vec<String> {
        self.lock().token_requests.clone()
    }

    /// Every introspection so far: (username or "", active).
    pub fn introspections(&self) -> Vec<(String, bool)> {
        self.lock().introspections.clone()
    }

    /// The refresh token currently valid for `user`, if any.
    /// Whether `token` is a refresh token that works now.
    pub fn is_valid_refresh(&self, token: &str) -> bool {
        self.lock().refresh.contains_key(token)
    }

    /// Every access and refresh token ever issued (none may appear in a log).
    pub fn all_tokens(&self) -> Vec<String> {
        let state = self.lock();
        let mut all = state.refresh_issued.clone();
        all.extend(state.issued_access.iter().cloned());
        all
    }

    pub fn refresh_tokens_issued(&self) -> usize {
        self.lock().refresh_issued.len()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn new_refresh(state: &mut State, user: &str) -> String {
    state.next += 1;
    let token = format!("rt-{}-{user}", state.next);
    state.refresh.insert(token.clone(), user.to_string());
    state.refresh_issued.push(token.clone());
    token
}

fn new_access(state: &mut State, user: &str, lifetime: Duration) -> String {
    state.next += 1;
    let token = format!("at-{}", state.next);
    state
        .access
        .insert(token.clone(), (user.to_string(), Instant::now() + lifetime));
    state.issued_access.push(token.clone());
    token
}

/// Reads one request (head, then Content-Length bytes of body), answers, closes.
async fn serve(
    mut stream: TcpStream,
    state: &Mutex<State>,
    settings: Settings,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("request timed out"))??;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let form = parse_form(&body);
    let (status, reply) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        answer(&mut state, settings, &path, &form)
    };
    let text = reply.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn answer(
    state: &mut State,
    settings: Settings,
    path: &str,
    form: &HashMap<String, String>,
) -> (&'static str, Value) {
    let get = |key: &str| form.get(key).map(String::as_str).unwrap_or("");
    let refuse = |error: &str| {
        (
            "400 Bad Request",
            json!({ "error": error, "error_description": format!("test server: {error}") }),
        )
    };
    let lifetime = settings.access_lifetime;
    match path {
        "/introspect" => {
            let token = get("token");
            let found = state
                .access
                .get(token)
                .filter(|(_, expires)| Instant::now() < *expires)
                .map(|(user, _)| user.clone());
            state
                .introspections
                .push((found.clone().unwrap_or_default(), found.is_some()));
            match found {
                Some(user) => ("200 OK", json!({ "active": true, "username": user })),
                None => ("200 OK", json!({ "active": false })),
            }
        }
        "/device" => {
            if get("client_id") != CLIENT_ID {
                return refuse("invalid_client");
            }
            state.next += 1;
            let device_code = format!("dc-{}", state.next);
            let user_code = format!("WXYZ-{:04}", state.next);
            state
                .devices
                .insert(device_code.clone(), (user_code.clone(), None));
            (
                "200 OK",
                json!({
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": "http://127.0.0.1/verify",
                    "expires_in": 120,
                    "interval": 1,
                }),
            )
        }
        "/token" => {
            let grant = get("grant_type").to_string();
            state.token_requests.push(grant.clone());
            let jwt_bearer = grant == "urn:ietf:params:oauth:grant-type:jwt-bearer";
            if !jwt_bearer && get("client_id") != CLIENT_ID {
                return refuse("invalid_client");
            }
            let user = match grant.as_str() {
                "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                    match verify_assertion(state, get("assertion")) {
                        Ok(user) => user,
                        Err(why) => {
                            eprintln!("token server: assertion refused: {why}");
                            return refuse("invalid_grant");
                        }
                    }
                }
                "refresh_token" => match state.refresh.get(get("refresh_token")).cloned() {
                    Some(user) => {
                        if settings.rotate {
                            state.refresh.remove(get("refresh_token"));
                        }
                        user
                    }
                    None => return refuse("invalid_grant"),
                },
                "client_credentials" => settings.app_user.to_string(),
                "urn:ietf:params:oauth:grant-type:device_code" => {
                    match state.devices.get(get("device_code")) {
                        Some((_, Some(user))) => {
                            let user = user.clone();
                            state.devices.remove(get("device_code"));
                            user
                        }
                        Some((_, None)) => return refuse("authorization_pending"),
                        None => return refuse("expired_token"),
                    }
                }
                _ => return refuse("unsupported_grant_type"),
            };
            let access = new_access(state, &user, lifetime);
            let mut reply = json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            });
            let issue_refresh = match grant.as_str() {
                "refresh_token" => settings.rotate,
                "client_credentials" | "urn:ietf:params:oauth:grant-type:jwt-bearer" => false,
                _ => true,
            };
            if issue_refresh {
                reply["refresh_token"] = json!(new_refresh(state, &user));
            }
            ("200 OK", reply)
        }
        _ => ("404 Not Found", json!({ "error": "not_found" })),
    }
}

/// Checks an RS256 assertion as Google does: signature, issuer, audience, expiry, scope.
/// Returns the user it asks to act as (`sub`).
fn verify_assertion(state: &State, assertion: &str) -> Result<String, String> {
    use base64::Engine;
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("base64: {e}"))
    };
    let (issuer, public) = state
        .service_account
        .as_ref()
        .ok_or("no service account is trusted")?;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("{} parts, not 3", parts.len()));
    };
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &decode(signature)?,
        )
        .map_err(|_| "bad signature".to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if claims["iss"] != issuer.as_str() {
        return Err(format!("iss {}", claims["iss"]));
    }
    if claims["aud"] != state.token_url.as_str() {
        return Err(format!("aud {}", claims["aud"]));
    }
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
        return Err(format!("exp {}", claims["exp"]));
    }
    if claims["scope"] != "https://mail.google.com/" {
        return Err(format!("scope {}", claims["scope"]));
    }
    claims["sub"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| "no sub".to_string())
}

/// `a=b&c=d%20e` → map (application/x-www-form-urlencoded).
fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn forms_are_decoded() {
    let form = parse_form("grant_type=refresh_token&scope=a+b%2Fc&x=%zz");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["scope"], "a b/c");
    assert_eq!(form["x"], "%zz");
}
