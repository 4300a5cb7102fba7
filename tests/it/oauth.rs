//! OAuth 2.0 logins on real servers: Dovecot checks every XOAUTH2/OAUTHBEARER token against
//! the test's token server (its oauth2 passdb, introspection by POST), for IMAP and for the
//! submission AUTH that Postfix delegates to Dovecot.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Imap, Setup};
use crate::harness::{Lab, message};
use crate::token_server::{CLIENT_ID, Settings, TokenServer};

const SUPPORT: &str = "support@example.test";

/// A lab whose Dovecot asks `server` about every token.
fn lab_for(server: &TokenServer) -> Option<Lab> {
    Lab::start_with(&[(
        "MAILLAB_OAUTH2_INTROSPECTION_URL",
        server.url("/introspect"),
    )])
}

/// The generic-provider oauth2 table pointing at `server`.
fn oauth2_table(section: &str, server: &TokenServer, extra: &str) -> String {
    format!(
        "[{section}.oauth2]\nprovider = \"generic\"\nclient_id = \"{CLIENT_ID}\"\ntoken_url = \"{}\"\ndevice_authorization_url = \"{}\"\nscope = \"mail offline_access\"\n{extra}\n",
        server.url("/token"),
        server.url("/device"),
    )
}

/// Turns the standard setup into: support@ over IMAP with `auth`, a second mailbox (sales@,
/// password), and SMTP with XOAUTH2.
fn use_oauth(setup: &Setup, lab: &Lab, server: &TokenServer, imap_auth: &str, imap_extra: &str) {
    let sales_port = lab.imap_port;
    let mailbox_table = oauth2_table("mailbox", server, imap_extra);
    let smtp_table = oauth2_table("smtp", server, "");
    setup.edit_config(|text| {
        text.replacen(
            "password = \"support-pw\"\n",
            &format!("auth = \"{imap_auth}\"\n"),
            1,
        )
        .replace(
            "\n[smtp]\n",
            &format!(
                "\n{mailbox_table}\n[[mailbox]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {sales_port}\ntls = \"plain\"\nuser = \"sales@example.test\"\npassword = \"sales-pw\"\npoll_interval = \"1s\"\n\n[smtp]\n"
            ),
        )
        .replace("password_file = \"smtp-password\"\n", "auth = \"xoauth2\"\n")
        .replace("\n[outbox]\n", &format!("\n{smtp_table}\n[outbox]\n"))
    });
}

/// Runs `deskgate oauth login ARGS`, approves the code it shows as `user`, returns its output.
fn device_login(setup: &Setup, server: &TokenServer, args: &[&str], user: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deskgate"))
        .arg("--config")
        .arg(&setup.config)
        .args(["oauth", "login"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run deskgate oauth login");
    let stdout = child.stdout.take().expect("stdout");
    let mut shown = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        shown.push_str(&line);
        shown.push('\n');
        if let Some(code) = line.trim().strip_prefix("2. enter the code ") {
            assert!(server.approve(code, user), "unknown code {code}");
        }
    }
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "oauth login {args:?} failed:\n{shown}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    shown
}

/// `customer` writes to support@ and receives the acknowledgement (IMAP and SMTP logins work).
async fn round_trip(lab: &Lab, customer: &str, id: &str) {
    let support = lab.address("support");
    let raw = message(
        &lab.address(customer),
        &support,
        "Token test",
        id,
        "hi\n",
        &[],
    );
    lab.send(&lab.address(customer), &[&support], &raw).await;
    lab.wait_for(customer, "INBOX", 1, Duration::from_secs(30))
        .await;
}

/// Dovecot asked the token server about the logins (IMAP and submission), and every token
/// it was shown was an active one of support@.
fn assert_checked_by_dovecot(server: &TokenServer) {
    let checked = server.introspections();
    assert!(checked.len() >= 2, "{checked:?}");
    assert!(
        checked
            .iter()
            .all(|(user, active)| *active && user == SUPPORT),
        "{checked:?}"
    );
}

/// The refresh tokens deskgate has stored, by account.
fn stored_refresh_tokens(setup: &Setup) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(setup.database()).expect("open database");
    let mut statement = db
        .prepare("SELECT account, refresh_token FROM oauth_grants ORDER BY account")
        .expect("prepare");
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread")]
async fn device_login_then_refresh_rotation_and_a_revoked_grant() {
    let server = TokenServer::start(Settings {
        access_lifetime: Duration::from_secs(4),
        rotate: true,
        app_user: SUPPORT,
    })
    .await;
    let Some(lab) = lab_for(&server) else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    use_oauth(&setup, &lab, &server, "xoauth2", "");

    // Before any login: the admin is told what to run.
    let (code, report) = check_config_connect(&setup);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("imap support: FAILED: mailbox support: no OAuth refresh token is stored; run `deskgate oauth login --mailbox support` once"),
        "{report}"
    );

    // The device flow, end to end, for the mailbox and for SMTP.
    device_login_for_the_mailbox_and_smtp(&setup, &server);
    let (code, report) = check_config_connect(&setup);
    assert_eq!(code, Some(0), "{report}");

    // IMAP (XOAUTH2) and SMTP submission (XOAUTH2 through Postfix to Dovecot).
    let daemon = setup.start();
    round_trip(&lab, "customer1", "t1@c.test").await;

    // The 4-second token expires mid-run: IMAP logs in again, SMTP gets a new token too.
    expired_tokens_are_refreshed_and_rotated(&lab, &setup, &server).await;

    // A restart logs in with the stored (rotated) tokens.
    assert!(daemon.stop().0.success());
    let daemon = setup.start();
    round_trip(&lab, "customer3", "t3@c.test").await;

    // The grant is revoked: a clear error naming the fix, no crash, the other mailbox works.
    server.revoke_all();
    assert_the_revoked_grant_is_logged_with_its_fix(&setup, &server).await;
    let sales = sales_mail_opens_a_ticket_after_smtp_expiry(&lab, &setup).await;
    assert_the_acknowledgement_waits_for_smtp(&setup, &sales).await;
    assert_eq!(
        support_events(&setup, "mailbox.login_failed"),
        1,
        "reported once, not at every retry"
    );

    // The admin does what the log says; the running daemon logs in again by itself.
    device_login(&setup, &server, &["--mailbox", "support"], SUPPORT);
    setup
        .wait_log(
            "mailbox logs in again after a login failure",
            1,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(support_events(&setup, "mailbox.login_recovered"), 1);
    let (status, _) = daemon.stop();
    assert!(
        status.success(),
        "the daemon kept running and stopped cleanly"
    );
}

/// Runs `deskgate check-config --connect`; returns its exit code and report.
fn check_config_connect(setup: &Setup) -> (Option<i32>, String) {
    let check = setup.cli(&["check-config", "--connect"]);
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    (check.status.code(), report)
}

/// Signs in through the device flow for the support mailbox (checking what the admin is
/// shown) and for SMTP; both refresh tokens are stored.
fn device_login_for_the_mailbox_and_smtp(setup: &Setup, server: &TokenServer) {
    let shown = device_login(setup, server, &["--mailbox", "support"], SUPPORT);
    assert!(shown.contains("1. open http://127.0.0.1/verify"), "{shown}");
    assert!(
        shown.contains("Signed in: the refresh token for mailbox support is stored"),
        "{shown}"
    );
    device_login(setup, server, &["--smtp"], SUPPORT);
    let stored = stored_refresh_tokens(setup);
    assert_eq!(
        stored.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["mailbox support", "smtp"]
    );
}

/// Once the access tokens are due for renewal, mail still goes both ways; the refreshes
/// rotated the refresh tokens, and the stored ones are the valid ones.
async fn expired_tokens_are_refreshed_and_rotated(lab: &Lab, setup: &Setup, server: &TokenServer) {
    setup
        .wait_log("access token due for renewal", 2, Duration::from_secs(30))
        .await;
    round_trip(lab, "customer2", "t2@c.test").await;
    let refreshes = server
        .token_requests()
        .iter()
        .filter(|g| *g == "refresh_token")
        .count();
    assert!(refreshes >= 4, "{:?}", server.token_requests());
    assert_checked_by_dovecot(server);
    // Every rotated refresh token was stored: what the database holds is what works now.
    let stored = stored_refresh_tokens(setup);
    for (account, token) in &stored {
        assert!(server.is_valid_refresh(token), "{account}: stale {token}");
    }
    assert!(server.refresh_tokens_issued() >= 2 + refreshes);
}

/// The refused grant is logged with the command that fixes it, and no token reaches the log.
async fn assert_the_revoked_grant_is_logged_with_its_fix(setup: &Setup, server: &TokenServer) {
    setup
        .wait_log("the provider refused the grant", 1, Duration::from_secs(30))
        .await;
    let log = setup.log();
    if let Some(line) = log.lines().find(|l| l.contains("refused the grant")) {
        eprintln!("revoked grant as logged: {line}");
    }
    assert!(
        log.contains("run `deskgate oauth login --mailbox support` again"),
        "{log}"
    );
    for token in server.all_tokens() {
        assert!(!log.contains(&token), "a token reached the log: {token}");
    }
}

/// Once the SMTP access token has expired too, customer4 writes to sales@ (a password
/// login); returns the ticket it opens.
async fn sales_mail_opens_a_ticket_after_smtp_expiry(lab: &Lab, setup: &Setup) -> Value {
    // SMTP connections already logged in stay usable (as on real servers); once the SMTP
    // access token has expired too (its lifetime: 4 s), sending needs the revoked grant.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let raw = message(
        &lab.address("customer4"),
        &lab.address("sales"),
        "Sales question",
        "s1@c.test",
        "hi\n",
        &[],
    );
    lab.send(&lab.address("customer4"), &[&lab.address("sales")], &raw)
        .await;
    let tickets = setup
        .wait_json(&["tickets"], Duration::from_secs(30), |t| {
            t.as_array()
                .is_some_and(|l| l.iter().any(|t| t["mailbox"] == "sales"))
        })
        .await;
    tickets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["mailbox"] == "sales")
        .unwrap()
        .clone()
}

/// The `sales` ticket's acknowledgement waits: SMTP's grant was revoked too, and /healthz
/// says why (a transport failure: the row keeps its attempts and nothing fails).
async fn assert_the_acknowledgement_waits_for_smtp(setup: &Setup, sales: &Value) {
    let started = std::time::Instant::now();
    loop {
        let (_, health) = setup.http_get("/healthz");
        if health.contains("smtp: ") && health.contains("refused the grant") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no smtp problem on /healthz: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outbox = setup.json(&["outbox"]);
    assert!(
        outbox
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ticket"] == sales["id"] && r["status"] == "queued" && r["attempts"] == 0),
        "{outbox:#}"
    );
    assert!(
        outbox
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "failed")
    );
}

/// How many events of `kind` the support mailbox has recorded.
fn support_events(setup: &Setup, kind: &str) -> i64 {
    rusqlite::Connection::open(setup.database())
        .expect("open")
        .query_row(
            "SELECT count(*) FROM events WHERE kind = ?1 AND mailbox = 'support'",
            [kind],
            |r| r.get::<_, i64>(0),
        )
        .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn oauthbearer_with_client_credentials() {
    let server = TokenServer::start(Settings {
        access_lifetime: Duration::from_secs(3600),
        rotate: false,
        app_user: SUPPORT,
    })
    .await;
    let Some(lab) = lab_for(&server) else { return };
    let setup = Setup::new(&lab, Imap::Starttls, "");
    use_oauth(
        &setup,
        &lab,
        &server,
        "oauthbearer",
        "grant = \"client-credentials\"\nclient_secret = \"app-secret\"",
    );
    // SMTP keeps its refresh-token grant: sign in for it only.
    device_login(&setup, &server, &["--smtp"], SUPPORT);
    let login = setup.cli(&["oauth", "login", "--mailbox", "support"]);
    assert_eq!(login.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&login.stderr)
            .contains("uses grant = \"client-credentials\": the application signs in itself"),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let daemon = setup.start();
    round_trip(&lab, "customer5", "cc1@c.test").await;
    assert!(daemon.stop().0.success());
    assert!(
        server
            .token_requests()
            .contains(&"client_credentials".to_string())
    );
    assert_checked_by_dovecot(&server);
}

/// An RSA key made with openssl for the test: (PKCS#8 PEM, PKCS#1 DER public key).
fn rsa_key(dir: &std::path::Path) -> (String, Vec<u8>) {
    let key = dir.join("sa-key.pem");
    let public = dir.join("sa-key.pub.der");
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    let key_s = key.to_str().expect("utf-8 path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_s,
    ]);
    run(&[
        "rsa",
        "-in",
        key_s,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        public.to_str().expect("utf-8 path"),
    ]);
    (
        std::fs::read_to_string(&key).expect("read key"),
        std::fs::read(&public).expect("read public key"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn google_service_account_with_domain_wide_delegation() {
    let server = TokenServer::start(Settings {
        access_lifetime: Duration::from_secs(3600),
        rotate: false,
        app_user: "nobody@example.test",
    })
    .await;
    let Some(lab) = lab_for(&server) else { return };
    let setup = Setup::new(&lab, Imap::Implicit, "");
    let issuer = "deskgate@project.iam.gserviceaccount.com";
    let (pem, public) = rsa_key(setup.dir.path());
    server.trust_service_account(issuer, public);
    let key_file = setup.dir.path().join("service-account.json");
    let key_json = serde_json::json!({
        "type": "service_account",
        "client_email": issuer,
        "private_key_id": "k1",
        "private_key": pem,
        "token_uri": server.url("/token"),
    });
    std::fs::write(&key_file, key_json.to_string()).expect("write key file");
    let table = format!(
        "provider = \"google\"\ngrant = \"service-account\"\nservice_account_file = \"{}\"\n",
        key_file.display()
    );
    setup.edit_config(|text| {
        text.replacen("password = \"support-pw\"\n", "auth = \"xoauth2\"\n", 1)
            .replace(
                "\n[smtp]\n",
                &format!("\n[mailbox.oauth2]\n{table}\n[smtp]\n"),
            )
            .replace(
                "password_file = \"smtp-password\"\n",
                "auth = \"xoauth2\"\n",
            )
            .replace(
                "\n[outbox]\n",
                &format!("\n[smtp.oauth2]\n{table}\n[outbox]\n"),
            )
    });
    let daemon = setup.start();
    round_trip(&lab, "customer2", "sa1@c.test").await;
    assert!(daemon.stop().0.success());
    let grants = server.token_requests();
    assert!(
        !grants.is_empty()
            && grants
                .iter()
                .all(|g| g == "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        "{grants:?}"
    );
    // The tokens were issued for the mailbox's user (the assertion's sub), and Dovecot
    // accepted them for IMAP and submission.
    assert_checked_by_dovecot(&server);
}
