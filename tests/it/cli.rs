//! The binary's behaviour with bad input: exact messages and exit codes. No servers needed.

use std::path::Path;
use std::process::{Command, Output};

pub fn deskgate(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deskgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run deskgate")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_string()
}

pub const VALID: &str = r#"database = "state/deskgate.db"
[support]
address = "support@example.test"
name = "Support"
[[mailbox]]
name = "support"
host = "127.0.0.1"
tls = "plain"
user = "support@example.test"
password = "x"
[smtp]
host = "127.0.0.1"
tls = "plain"
"#;

#[test]
fn bad_config_files_are_refused_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deskgate.toml");
    let shown = config.display().to_string();
    let cases = [
        (
            VALID.replace("password = \"x\"", "pasword = \"x\""),
            format!(
                "deskgate: {shown}:10: unknown key `pasword`, expected one of `name`, `host`, `port`, `tls`, `user`, \
             `password`, `password_file`, `folder`, `folders`, `processed_folder`, `quarantine_folder`, `idle`, `poll_interval`, `batch_size`, `timeout`, \
             `language`, `initial_import`, `auth`, `oauth2`, `deadlines`, `address`"
            ),
        ),
        (
            VALID.replace(
                "host = \"127.0.0.1\"\ntls = \"plain\"\nuser",
                "host = \"imap.example.com\"\ntls = \"plain\"\nuser",
            ),
            format!(
                "deskgate: {shown}:8: mailbox `support`: tls = \"plain\" is allowed only for loopback hosts \
             (127.0.0.1, ::1, localhost), not imap.example.com; use \"implicit\" or \"starttls\""
            ),
        ),
        (
            VALID.replace(
                "tls = \"plain\"\nuser",
                "port = \"993\"\ntls = \"plain\"\nuser",
            ),
            format!(
                "deskgate: {shown}:8: port: wrong type: string \"993\", expected a whole number from 0 to 65535"
            ),
        ),
        (
            VALID.replace("[smtp]\nhost = \"127.0.0.1\"\ntls = \"plain\"\n", ""),
            format!("deskgate: {shown}: missing the [smtp] section"),
        ),
        (
            format!("{VALID}[deadlines]\nfirst_response = \"1 day\"\n"),
            format!(
                "deskgate: {shown}:15: first_response: `1 day` is not a duration; expected a duration such as \
             \"24h\", \"90s\", \"1h30m\" or \"2d\" (units: s, m, h, d, w)"
            ),
        ),
        (
            "[support\n".to_string(),
            format!("deskgate: {shown}:1: unclosed table, expected `]`"),
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, &text).unwrap();
        for args in [&["check-config"][..], &["run"], &["tickets"]] {
            let output = deskgate(&config, args);
            assert_eq!(output.status.code(), Some(2), "{args:?} with:\n{text}");
            assert_eq!(stderr(&output), expected, "{args:?} with:\n{text}");
        }
    }
    let missing = deskgate(&dir.path().join("nope.toml"), &["check-config"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        stderr(&missing),
        format!(
            "deskgate: {}: cannot read the configuration file: No such file or directory (os error 2)",
            dir.path().join("nope.toml").display()
        )
    );
}

#[test]
fn valid_config_reads_and_reports_missing_things_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deskgate.toml");
    std::fs::write(&config, VALID).unwrap();
    let check = deskgate(&config, &["check-config"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("configuration is valid"), "{report}");
    assert!(
        report
            .contains("warning: mailbox `support`: tls = \"plain\" sends the password unencrypted"),
        "{report}"
    );

    let tickets = deskgate(&config, &["tickets"]);
    assert_eq!(tickets.status.code(), Some(2));
    assert!(
        stderr(&tickets)
            .contains("no such file; has `deskgate run` started with this configuration yet?"),
        "{}",
        stderr(&tickets)
    );

    // With a database (created as the daemon would), an unknown ticket is exit 1.
    deskgate::store::Store::open(&dir.path().join("state/deskgate.db")).unwrap();
    let unknown = deskgate(&config, &["ticket", "999"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).starts_with("deskgate: no ticket 999 in "),
        "{}",
        stderr(&unknown)
    );
    let empty = deskgate(&config, &["tickets"]);
    assert_eq!(String::from_utf8_lossy(&empty.stdout).trim(), "no tickets");
}

/// Secrets from systemd credentials (`credential:NAME` in $CREDENTIALS_DIRECTORY), and a
/// warning when the file itself holds secrets others can read; no secret is ever printed.
#[test]
fn credentials_and_readable_inline_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deskgate.toml");
    let mode = |m: u32| std::fs::set_permissions(&config, std::fs::Permissions::from_mode(m));

    // An inline password in a file everyone can read: a warning naming it, not its value.
    std::fs::write(
        &config,
        VALID.replace("password = \"x\"", "password = \"hunter2-secret\""),
    )
    .unwrap();
    mode(0o644).unwrap();
    let output = deskgate(&config, &["check-config"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(
            "readable by every user (mode 0644) and holds secrets (mailbox `support` password)"
        ),
        "{text}"
    );
    assert!(!text.contains("hunter2-secret"), "{text}");
    mode(0o600).unwrap();
    let output = deskgate(&config, &["check-config"]);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("readable by every user"));

    // The same password as a systemd credential.
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("imap-password"), "hunter2-secret\n").unwrap();
    std::fs::write(
        &config,
        VALID.replace(
            "password = \"x\"",
            "password_file = \"credential:imap-password\"",
        ),
    )
    .unwrap();
    mode(0o644).unwrap();
    let with_credentials = |dir: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deskgate"));
        command.arg("--config").arg(&config).arg("check-config");
        command.env_remove("CREDENTIALS_DIRECTORY");
        if let Some(dir) = dir {
            command.env("CREDENTIALS_DIRECTORY", dir);
        }
        command.output().expect("run deskgate")
    };
    let output = with_credentials(Some(&credentials));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(!text.contains("readable by every user"), "{text}");
    assert!(!text.contains("hunter2-secret"), "{text}");
    // Outside systemd the credential cannot be found, and the message says why.
    let output = with_credentials(None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "password_file: credential `imap-password`: CREDENTIALS_DIRECTORY is not set; systemd sets it for a unit with LoadCredential=imap-password:FILE"
        ),
        "{}",
        stderr(&output)
    );
}
