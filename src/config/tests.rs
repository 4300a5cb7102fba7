//! Tests of the configuration contract: the shipped example documents every key and is
//! valid, and every refusal says what is wrong and where.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::language::Lang;

const RAW_RS: &str = include_str!("raw.rs");
const EXAMPLE: &str = include_str!("../../config.example.toml");
const PATH: &str = "/etc/deskgate/deskgate.toml";

/// The fields of every `pub struct Raw…` in raw.rs, by struct name.
fn raw_fields() -> BTreeMap<String, Vec<String>> {
    let mut structs = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in RAW_RS.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct Raw") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            current = Some((format!("Raw{name}"), Vec::new()));
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                structs.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut()
            && let Some((field, _)) = line
                .strip_prefix("pub ")
                .and_then(|rest| rest.split_once(':'))
        {
            fields.push(field.trim().to_string());
        }
    }
    structs
}

/// Which sections of the file each raw struct is, by section: "" for `RawConfig` (top
/// level), otherwise the path of fields whose types lead to it (`pub smtp: Spanned<RawSmtp>`
/// → "smtp"; `pub oauth2: Option<Spanned<RawOAuth2>>` inside it → "smtp.oauth2").
fn sections() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let structs = raw_fields();
    let body = |name: &str| {
        RAW_RS
            .split(&format!("pub struct {name} "))
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or_else(|| panic!("raw.rs has no `pub struct {name}`"))
    };
    let mut sections = BTreeMap::new();
    let mut pending = vec![(String::new(), "RawConfig".to_string())];
    while let Some((section, name)) = pending.pop() {
        for line in body(&name).lines() {
            let Some((field, ty)) = line
                .trim()
                .strip_prefix("pub ")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            for child in structs.keys() {
                if ty.contains(&format!("<{child}>")) || ty.trim() == format!("{child},") {
                    let path = if section.is_empty() {
                        field.trim().to_string()
                    } else {
                        format!("{section}.{}", field.trim())
                    };
                    pending.push((path, child.clone()));
                }
            }
        }
        let fields = structs[&name].iter().cloned().collect();
        sections.insert(section, (name, fields));
    }
    for name in structs.keys() {
        assert!(
            sections.values().any(|(n, _)| n == name),
            "{name} is not reachable from RawConfig"
        );
    }
    sections
}

/// The keys the example shows, active or commented out, by section, and the section headers.
fn example_keys() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut headers = BTreeSet::new();
    let mut section = String::new();
    for line in EXAMPLE.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            headers.insert(section.clone());
            continue;
        }
        let body = line.strip_prefix("# ").unwrap_or(line);
        let Some((key, _)) = body.split_once(" =") else {
            continue;
        };
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            keys.entry(section.clone())
                .or_default()
                .insert(key.to_string());
        }
    }
    (keys, headers)
}

#[test]
fn example_config_documents_every_key() {
    let sections = sections();
    let (keys, headers) = example_keys();
    // A struct used in several sections ([mailbox.oauth2], [smtp.oauth2]) is documented once,
    // and so is the key that holds such a table.
    let mut undocumented = Vec::new();
    for (section, (name, fields)) in &sections {
        for field in fields {
            let documented =
                sections
                    .iter()
                    .filter(|(_, (other, _))| other == name)
                    .any(|(shown_in, _)| {
                        let table = if shown_in.is_empty() {
                            field.clone()
                        } else {
                            format!("{shown_in}.{field}")
                        };
                        let table_of_struct_shown =
                            sections.get(&table).is_some_and(|(child, _)| {
                                sections
                                    .iter()
                                    .any(|(at, (other, _))| other == child && headers.contains(at))
                            });
                        keys.get(shown_in).is_some_and(|k| k.contains(field))
                            || headers.contains(&table)
                            || table_of_struct_shown
                    });
            if !documented {
                undocumented.push(format!("[{section}] {field}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "config.example.toml does not show: {undocumented:?}"
    );
    // And nothing it shows, even commented out, is stale.
    let mut unknown = Vec::new();
    for (section, shown) in &keys {
        for key in shown {
            if !sections.get(section).is_some_and(|(_, f)| f.contains(key)) {
                unknown.push(format!("[{section}] {key}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "config.example.toml shows keys the parser refuses: {unknown:?}"
    );
}

/// The example, with `/etc/deskgate/` moved into `dir` and every active `password_file` and
/// `secret_file` created there; returns the path to load and the text.
fn example_in(dir: &Path, text: &str) -> (PathBuf, String) {
    let text = text.replace("/etc/deskgate/", &format!("{}/", dir.display()));
    for (n, line) in text.lines().enumerate() {
        if let Some(value) = line.strip_prefix("password_file = ") {
            let file = PathBuf::from(value.trim_matches('"'));
            assert!(file.starts_with(dir), "{file:?} is not under /etc/deskgate");
            crate::files::write_private(
                &file,
                format!("secret-{n}\nignored second line\n").as_bytes(),
            )
            .unwrap();
        }
        if let Some(value) = line.strip_prefix("secret_file = ") {
            let file = PathBuf::from(value.trim_matches('"'));
            assert!(file.starts_with(dir), "{file:?} is not under /etc/deskgate");
            crate::files::write_private(&file, format!("{:064}\n", n).as_bytes()).unwrap();
        }
    }
    let path = dir.join("deskgate.toml");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

#[test]
fn secret_files_others_can_read_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = example_in(dir.path(), EXAMPLE);
    let key = dir.path().join("relay.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let config = Config::from_toml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.warnings,
        [format!(
            "relay: secret_file {}: readable by group or others (mode 0640); chmod 600 it",
            key.display()
        )]
    );
}

#[test]
fn example_config_is_valid_apart_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = example_in(dir.path(), EXAMPLE);
    let config = Config::from_toml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Config::load(&path)
            .map(|c| c.mailboxes.len())
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );

    assert_eq!(
        config.database,
        crate::config::Database::Sqlite(PathBuf::from("/var/lib/deskgate/deskgate.db"))
    );
    assert_eq!(config.support.address.to_string(), "support@example.com");
    assert_eq!(config.support.tag_prefix, "#");
    assert_eq!(config.support.timezone.iana_name(), Some("Europe/Athens"));
    assert_eq!(
        config.deadlines.first_response,
        Duration::from_secs(24 * 3600)
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["support", "billing"]);
    let support = &config.mailboxes[0];
    assert_eq!(
        support.server,
        Server {
            host: "imap.example.com".into(),
            port: 993,
            tls: TlsMode::Implicit
        }
    );
    assert!(
        matches!(&support.credential, Credential::Password(p) if p.expose().starts_with("secret-"))
    );
    assert_eq!(support.folder, "INBOX");
    assert_eq!(support.processed_folder, None);
    assert!(support.idle);
    assert_eq!(support.poll_interval, Duration::from_secs(60));
    assert_eq!(support.batch_size, 50);
    assert_eq!(support.timeout, Duration::from_secs(60));
    let billing = &config.mailboxes[1];
    assert_eq!(billing.server.port, 993);
    let Credential::OAuth2 { mechanism, grant } = &billing.credential else {
        panic!("billing logs in with OAuth 2.0: {:?}", billing.credential);
    };
    assert_eq!(*mechanism, Sasl::Xoauth2);
    assert_eq!(grant.account, "mailbox billing");
    let TokenSource::Endpoint(endpoint) = &grant.source else {
        panic!("{grant:?}");
    };
    assert_eq!(endpoint.grant, EndpointGrant::RefreshToken);
    assert_eq!(
        endpoint.token_url,
        "https://login.microsoftonline.com/example.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(
        endpoint.device_url.as_deref(),
        Some("https://login.microsoftonline.com/example.onmicrosoft.com/oauth2/v2.0/devicecode")
    );
    assert_eq!(
        endpoint.scope.as_deref(),
        Some("https://outlook.office.com/IMAP.AccessAsUser.All offline_access")
    );
    assert!(endpoint.client_secret.is_none());
    assert_eq!(billing.processed_folder.as_deref(), Some("INBOX.Processed"));
    assert_eq!(billing.poll_interval, Duration::from_secs(120));
    assert_eq!(billing.timeout, Duration::from_secs(90));
    assert_eq!(support.initial_import, InitialImport::Unseen);
    assert_eq!(
        billing.initial_import,
        InitialImport::UnseenSince(Duration::from_secs(14 * 86_400))
    );
    assert_eq!(config.policy.acknowledge_backlog_within, Duration::ZERO);

    assert_eq!(
        config.smtp.server,
        Server {
            host: "smtp.example.com".into(),
            port: 587,
            tls: TlsMode::Starttls
        }
    );
    let (user, password) = config.smtp.credentials.as_ref().expect("smtp credentials");
    assert_eq!(user, "support@example.com");
    assert!(matches!(password, Credential::Password(p) if p.expose().starts_with("secret-")));
    assert_eq!(config.smtp.timeout, Duration::from_secs(60));

    let retry: Vec<u64> = config.outbox.retry.iter().map(Duration::as_secs).collect();
    assert_eq!(retry, [30, 120, 600, 1800, 3600]);
    assert_eq!(config.outbox.give_up_after, Duration::from_secs(3 * 86_400));
}

/// The values shown commented out are the defaults (except for keys unset by default, shown
/// with an example): uncommenting them changes nothing.
#[test]
fn example_config_comments_show_the_defaults() {
    // Shown as examples of a setting that is unset by default.
    let skip = [
        "password",
        "templates_dir",
        "ca_file",
        "processed_folder",
        "secret",
        "notes_address",
        "previous_secret_file",
        "quarantine_folder",
        "client_secret",
        "client_secret_file",
        "token_url",
        "device_authorization_url",
        "command",
        "service_account_file",
        "folders",
        "database",
        "database_password_file",
        "instance",
    ];
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(body)
                if body.split_once(" = ").is_some_and(|(key, _)| {
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !skip.contains(&key)
                }) =>
            {
                body
            }
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    assert_ne!(uncommented, EXAMPLE);
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = example_in(dir.path(), EXAMPLE);
    let shown = Config::from_toml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let (path, text) = example_in(dir.path(), &uncommented);
    let explicit = Config::from_toml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{:?}", shown.support),
        format!("{:?}", explicit.support)
    );
    assert_eq!(
        format!("{:?}", shown.mailboxes),
        format!("{:?}", explicit.mailboxes)
    );
    assert_eq!(format!("{:?}", shown.smtp), format!("{:?}", explicit.smtp));
    assert_eq!(
        format!("{:?}", shown.outbox),
        format!("{:?}", explicit.outbox)
    );
    assert_eq!(
        format!("{:?}", shown.agents),
        format!("{:?}", explicit.agents)
    );
}

// A minimal valid file, in three parts; the error tests below change one thing in it.
const SUPPORT: &str = r#"[support]
address = "support@example.com"
name = "Example Support"
"#;
const MAILBOX: &str = r#"[[mailbox]]
name = "support"
host = "imap.example.com"
tls = "implicit"
user = "support@example.com"
password = "secret"
"#;
const SMTP: &str = r#"[smtp]
host = "smtp.example.com"
tls = "starttls"
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new(PATH), text)
}

/// The refusal of `text`, as `deskgate check-config` prints it.
fn refusal(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(err) => err.to_string(),
    }
}

const NO_ESCALATION: &str = "no [[deadlines.escalation]] level: a deadline that passes is recorded and counted, but nobody senior is told";

#[test]
fn minimal_config_is_valid() {
    let config = load(&format!("{SUPPORT}{MAILBOX}{SMTP}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.mailboxes.len(), 1);
    assert_eq!(config.smtp.credentials.as_ref().map(|c| &c.0), None);
    assert_eq!(config.support.timezone, TimeZone::UTC);
    assert_eq!(config.warnings, [NO_ESCALATION]);
}

#[test]
fn unknown_key_is_named_with_the_keys_allowed() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("password =", "pasword =")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:9: unknown key `pasword`, expected one of `name`, `host`, `port`, `tls`, \
         `user`, `password`, `password_file`, `folder`, `folders`, `processed_folder`, `quarantine_folder`, `idle`, \
         `poll_interval`, `batch_size`, `timeout`, `language`, `initial_import`, `auth`, `oauth2`, `deadlines`, `address`"
    );
}

#[test]
fn wrong_type() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("tls =", "port = \"993\"\ntls =")
    );
    assert_eq!(
        refusal(&text),
        r#"/etc/deskgate/deskgate.toml:7: port: wrong type: string "993", expected a whole number from 0 to 65535"#
    );
}

#[test]
fn missing_smtp_section() {
    assert_eq!(
        refusal(&format!("{SUPPORT}{MAILBOX}")),
        "/etc/deskgate/deskgate.toml: missing the [smtp] section"
    );
}

#[test]
fn missing_mailbox_host() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("host = \"imap.example.com\"\n", "")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:4: in [[mailbox]]: missing key `host`"
    );
}

#[test]
fn plain_tls_to_a_remote_host_is_refused() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("\"implicit\"", "\"plain\"")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:7: mailbox `support`: tls = \"plain\" is allowed only for loopback hosts \
         (127.0.0.1, ::1, localhost), not imap.example.com; use \"implicit\" or \"starttls\""
    );
    let text = format!(
        "{SUPPORT}{MAILBOX}{}",
        SMTP.replace("\"starttls\"", "\"plain\"")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:12: smtp: tls = \"plain\" is allowed only for loopback hosts \
         (127.0.0.1, ::1, localhost), not smtp.example.com; use \"implicit\" or \"starttls\""
    );
}

#[test]
fn plain_tls_on_loopback_is_accepted_with_a_warning() {
    let mailbox = MAILBOX
        .replace("\"implicit\"", "\"plain\"")
        .replace("imap.example.com", "127.0.0.1");
    let smtp = SMTP
        .replace("\"starttls\"", "\"plain\"")
        .replace("smtp.example.com", "localhost");
    let config = load(&format!("{SUPPORT}{mailbox}{smtp}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.mailboxes[0].server.port, 143);
    assert_eq!(config.smtp.server.port, 25);
    assert_eq!(
        config.warnings,
        [
            "mailbox `support`: tls = \"plain\" sends the password unencrypted; accepted only because 127.0.0.1 \
             is a loopback address",
            NO_ESCALATION,
            "smtp: tls = \"plain\" sends the password unencrypted; accepted only because localhost is a loopback \
             address",
        ]
    );
    let ipv6 = MAILBOX
        .replace("\"implicit\"", "\"plain\"")
        .replace("imap.example.com", "::1");
    let config = load(&format!("{SUPPORT}{ipv6}{SMTP}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.warnings.len(), 2);
}

#[test]
fn invalid_duration() {
    let text = format!("{SUPPORT}[deadlines]\nfirst_response = \"24\"\n{MAILBOX}{SMTP}");
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:5: first_response: `24` is not a duration; expected a duration such as \"24h\", \"90s\", \
         \"1h30m\" or \"2d\" (units: s, m, h, d, w)"
    );
}

#[test]
fn alerts_defaults_and_refusals() {
    let with = |table: &str| load(&format!("{SUPPORT}{MAILBOX}{SMTP}[alerts]\n{table}"));
    let alerts = with("to = [\"IT@example.com\"]\n")
        .expect("valid")
        .alerts
        .expect("[alerts]");
    assert_eq!(alerts.to, ["it@example.com"]);
    assert_eq!(alerts.after, Duration::from_secs(15 * 60));
    assert_eq!(alerts.repeat, Duration::from_secs(6 * 3600));
    let refused = |table: &str| refusal(&format!("{SUPPORT}{MAILBOX}{SMTP}[alerts]\n{table}"));
    assert!(refused("to = []\n").contains("alerts.to is empty"));
    assert!(refused("to = [\"it\"]\n").contains("alerts.to `it` is not an email address"));
    assert!(refused("to = [\"it@example.com\"]\nafter = \"soon\"\n").contains("is not a duration"));
}

#[test]
fn initial_import_forms() {
    let with = |value: &str| {
        let text = format!("{SUPPORT}{MAILBOX}initial_import = {value}\n{SMTP}");
        load(&text).map(|c| c.mailboxes[0].initial_import)
    };
    let week = Duration::from_secs(7 * 86_400);
    assert_eq!(with("\"all\"").ok(), Some(InitialImport::All));
    assert_eq!(with("\"none\"").ok(), Some(InitialImport::Nothing));
    assert_eq!(with("\"unseen\"").ok(), Some(InitialImport::Unseen));
    assert_eq!(
        with("{ since = \"7d\" }").ok(),
        Some(InitialImport::Since(week))
    );
    assert_eq!(
        with("{ unseen_since = \"1w\" }").ok(),
        Some(InitialImport::UnseenSince(week))
    );
    for import in [
        InitialImport::All,
        InitialImport::Since(week),
        InitialImport::UnseenSince(week),
    ] {
        assert_eq!(
            with(&import.to_string()).ok(),
            Some(import),
            "{import} reads back"
        );
    }
    let forms = "\"all\", \"unseen\", \"none\", { since = \"7d\" } or { unseen_since = \"7d\" }";
    for (value, why) in [
        ("\"recent\"", format!("`recent` is not one of {forms}")),
        ("7", format!("use one of {forms}")),
        (
            "{ since = \"7\" }",
            "since: `7` is not a duration; expected a duration such as \"24h\", \"90s\", \"1h30m\" or \"2d\" (units: s, m, h, d, w)".to_string(),
        ),
        (
            "{ since = \"7d\", unseen = true }",
            format!("a table here holds exactly one key, since or unseen_since, with a duration in quotes; use one of {forms}"),
        ),
    ] {
        let text = format!("{SUPPORT}{MAILBOX}initial_import = {value}\n{SMTP}");
        assert_eq!(
            refusal(&text),
            format!("/etc/deskgate/deskgate.toml:10: mailbox `support`: initial_import: {why}"),
            "{value}"
        );
    }
}

#[test]
fn several_folders_share_one_login() {
    let with = |extra: &str| load(&format!("{SUPPORT}{MAILBOX}{extra}{SMTP}"));
    let config =
        with("folders = [\"INBOX\", \"Shared/Billing\"]\n").unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<(&str, &str, &str)> = config
        .mailboxes
        .iter()
        .map(|m| (m.name.as_str(), m.account.as_str(), m.folder.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("support/INBOX", "support", "INBOX"),
            ("support/Shared/Billing", "support", "Shared/Billing")
        ]
    );
    assert_eq!(
        config.mailbox("support").map(|m| m.folder.as_str()),
        Some("INBOX")
    );
    let single = with("folder = \"Support\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        single.mailboxes[0].name, "support",
        "one folder keeps the plain name"
    );
    for (extra, why) in [
        (
            "folder = \"INBOX\"\nfolders = [\"A\"]\n",
            "11: mailbox `support`: set either folder or folders, not both",
        ),
        (
            "folders = []\n",
            "10: mailbox `support`: folders must name at least one folder, e.g. [\"INBOX\", \"Shared/Support\"]",
        ),
        (
            "folders = [\"A\", \"A\"]\n",
            "10: mailbox `support`: folder A is listed twice",
        ),
        (
            "processed_folder = \"Done\"\nfolders = [\"INBOX\", \"Done\"]\n",
            "11: mailbox `support`: processed_folder Done is also a watched folder; processed mail would be read again",
        ),
    ] {
        assert_eq!(
            refusal(&format!("{SUPPORT}{MAILBOX}{extra}{SMTP}")),
            format!("/etc/deskgate/deskgate.toml:{why}"),
            "{extra}"
        );
    }
}

#[test]
fn unknown_tls_mode() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("\"implicit\"", "\"ssl\"")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:7: tls: unknown value `ssl`, expected one of `implicit`, `starttls`, `plain`"
    );
}

#[test]
fn password_and_password_file_together() {
    let text = format!("{SUPPORT}{MAILBOX}password_file = \"imap-password\"\n{SMTP}");
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:10: mailbox `support`: set either password or password_file, not both"
    );
}

#[test]
fn neither_password_nor_password_file() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("password = \"secret\"\n", "")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:4: mailbox `support`: missing password; set password or password_file"
    );
    let text = format!("{SUPPORT}{MAILBOX}{SMTP}user = \"support@example.com\"\n");
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:10: smtp: missing password; set password or password_file"
    );
}

#[test]
fn unreadable_password_file() {
    let text = format!(
        "{SUPPORT}{}{SMTP}",
        MAILBOX.replace("password = \"secret\"", "password_file = \"nope\"")
    );
    let message = refusal(&text);
    assert!(
        message.starts_with(
            "/etc/deskgate/deskgate.toml:9: mailbox `support`: password_file /etc/deskgate/nope: cannot read it: "
        ),
        "{message}"
    );
}

#[test]
fn unknown_timezone() {
    let text = format!("{SUPPORT}timezone = \"Europe/Atlantis\"\n{MAILBOX}{SMTP}");
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:4: support.timezone `Europe/Atlantis` is not a known IANA time zone such as \
         \"Europe/Athens\" (failed to find time zone `Europe/Atlantis` in time zone database)"
    );
}

#[test]
fn invalid_support_address() {
    let support = SUPPORT.replace("support@example.com", "support at example.com");
    assert_eq!(
        refusal(&format!("{support}{MAILBOX}{SMTP}")),
        "/etc/deskgate/deskgate.toml:2: support.address `support at example.com` is not an email address \
         (Missing domain or user)"
    );
}

#[test]
fn no_mailbox() {
    assert_eq!(
        refusal(&format!("{SUPPORT}{SMTP}")),
        "/etc/deskgate/deskgate.toml: no [[mailbox]] is configured; deskgate needs at least one mailbox to watch"
    );
}

#[test]
fn duplicate_mailbox_names() {
    assert_eq!(
        refusal(&format!("{SUPPORT}{MAILBOX}{MAILBOX}{SMTP}")),
        "/etc/deskgate/deskgate.toml:11: mailbox name `support` is used twice; names must be unique"
    );
}

#[test]
fn several_problems_are_all_listed_in_file_order() {
    let text = format!(
        "{}timezone = \"Mars/Olympus\"\n{}{MAILBOX}{}{}[outbox]\nretry = []\n",
        SUPPORT.replace("support@example.com", "support"),
        MAILBOX.replace("\"implicit\"", "\"plain\""),
        MAILBOX
            .replace("\"support\"", "\"sales\"")
            .replace("password = \"secret\"\n", "batch_size = 0\n"),
        SMTP.replace("\"starttls\"", "\"plain\""),
    );
    assert_eq!(
        refusal(&text),
        [
            "/etc/deskgate/deskgate.toml:2: support.address `support` is not an email address (Missing domain or user)",
            "/etc/deskgate/deskgate.toml:4: support.timezone `Mars/Olympus` is not a known IANA time zone such as \
             \"Europe/Athens\" (failed to find time zone `Mars/Olympus` in time zone database)",
            "/etc/deskgate/deskgate.toml:8: mailbox `support`: tls = \"plain\" is allowed only for loopback hosts \
             (127.0.0.1, ::1, localhost), not imap.example.com; use \"implicit\" or \"starttls\"",
            "/etc/deskgate/deskgate.toml:12: mailbox name `support` is used twice; names must be unique",
            "/etc/deskgate/deskgate.toml:17: mailbox `sales`: missing password; set password or password_file",
            "/etc/deskgate/deskgate.toml:22: mailbox `sales`: batch_size must be between 1 and 1000, not 0",
            "/etc/deskgate/deskgate.toml:25: smtp: tls = \"plain\" is allowed only for loopback hosts \
             (127.0.0.1, ::1, localhost), not smtp.example.com; use \"implicit\" or \"starttls\"",
            "/etc/deskgate/deskgate.toml:27: outbox.retry must list at least one delay, e.g. [\"30s\", \"5m\", \"1h\"]",
        ]
        .join("\n")
    );
}

/// Problems serde finds stop the parse: only the first is reported, and the checks after it
/// (which would find the rest) do not run.
#[test]
fn a_parse_error_hides_later_problems() {
    let text = format!(
        "{}[deadlines]\nfirst_response = \"1y\"\n{MAILBOX}{SMTP}",
        SUPPORT.replace("support@example.com", "support")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:5: first_response: unknown unit `y` in `1y`; expected a duration such as \"24h\", \"90s\", \
         \"1h30m\" or \"2d\" (units: s, m, h, d, w)"
    );
}

const AGENTS: &str = r#"[relay]
secret = "0123456789abcdef0123456789abcdef"

[[agent]]
name = "Alice"
address = "Alice@Example.com"
alternates = ["alice@home.example"]

[[agent]]
name = "Bob"
address = "bob@example.com"
"#;

#[test]
fn agents_without_teams_form_one_team_for_every_mailbox() {
    let config =
        load(&format!("{SUPPORT}{MAILBOX}{SMTP}{AGENTS}")).unwrap_or_else(|e| panic!("{e}"));
    let agents = &config.agents;
    assert_eq!(
        agents
            .by_address("ALICE@home.example")
            .map(|a| a.name.as_str()),
        Some("Alice")
    );
    let team = agents.team_for("support").expect("a team");
    assert_eq!(team.members, ["alice@example.com", "bob@example.com"]);
    assert_eq!(team.notify_new_ticket, NotifyWho::Team);
    assert_eq!(team.notify_customer_reply, NotifyWho::Assigned);
    assert_eq!(
        agents.relay.as_ref().map(|r| r.separator.as_str()),
        Some("+")
    );
}

#[test]
fn agents_need_a_relay_secret_of_some_length() {
    let without = AGENTS.replace(
        "[relay]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
        "",
    );
    assert!(
        refusal(&format!("{SUPPORT}{MAILBOX}{SMTP}{without}"))
            .ends_with("agents are configured but [relay] is missing; set [relay] secret_file so reply addresses can be signed"),
    );
    let short = AGENTS.replace("0123456789abcdef0123456789abcdef", "short");
    assert_eq!(
        refusal(&format!("{SUPPORT}{MAILBOX}{SMTP}{short}")),
        "/etc/deskgate/deskgate.toml:13: relay: the secret is 5 bytes long; use at least 32 (e.g. `openssl rand -hex 32`)"
    );
}

#[test]
fn trust_is_warned_about_until_an_authserv_id_is_set() {
    let config =
        load(&format!("{SUPPORT}{MAILBOX}{SMTP}{AGENTS}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.trust.authserv_id, None);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("[trust] authserv_id is not set")),
        "{:?}",
        config.warnings
    );
    let trusted =
        format!("{SUPPORT}{MAILBOX}{SMTP}{AGENTS}[trust]\nauthserv_id = \"mx.example.com\"\n");
    let config = load(&trusted).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.trust.authserv_id.as_deref(), Some("mx.example.com"));
    assert!(!config.warnings.iter().any(|w| w.contains("[trust]")));
    let bad = trusted.replace("\"mx.example.com\"", "\"mx.example.com; dkim=pass\"");
    assert!(
        refusal(&bad)
            .contains("trust.authserv_id `mx.example.com; dkim=pass` is not an authserv-id"),
        "{}",
        refusal(&bad)
    );
}

#[test]
fn the_previous_relay_secret_is_read_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("old.key"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("short.key"), "old\n").unwrap();
    let with = |file: &str| {
        let text = format!(
            "{SUPPORT}{MAILBOX}{SMTP}{}",
            AGENTS.replace(
                "[relay]\n",
                &format!("[relay]\nprevious_secret_file = \"{file}\"\n")
            )
        );
        Config::from_toml(&dir.path().join("deskgate.toml"), &text)
    };
    let config = with("old.key").unwrap_or_else(|e| panic!("{e}"));
    let previous = config.agents.relay.and_then(|r| r.previous_secret);
    assert_eq!(
        previous.as_ref().map(Secret::expose),
        Some("fedcba9876543210fedcba9876543210")
    );
    let refused = with("short.key").map(|_| ()).unwrap_err().to_string();
    assert!(
        refused.contains("relay: the previous secret is 3 bytes long"),
        "{refused}"
    );
}

#[test]
fn team_mistakes_are_named() {
    let teams = r#"
[[team]]
name = "first-line"
agents = ["alice@example.com", "carol@example.com"]
mailboxes = ["suport"]
"#;
    assert_eq!(
        refusal(&format!("{SUPPORT}{MAILBOX}{SMTP}{AGENTS}{teams}")),
        "/etc/deskgate/deskgate.toml:27: team `first-line`: `carol@example.com` is not the address of any [[agent]]\n\
         /etc/deskgate/deskgate.toml:28: team `first-line`: there is no [[mailbox]] named `suport`\n\
         /etc/deskgate/deskgate.toml: no [[team]] handles mailbox `support`; add it to a team's mailboxes, or give one team no mailboxes list to handle all"
    );
}

#[test]
fn an_address_belongs_to_one_agent() {
    let twice = format!("{AGENTS}alternates = [\"alice@example.com\"]\n");
    assert!(
        refusal(&format!("{SUPPORT}{MAILBOX}{SMTP}{twice}"))
            .contains("agent address `alice@example.com` also belongs to agent `Alice`")
    );
}

#[test]
fn languages_default_per_mailbox_and_unknown_ones_are_named() {
    let text = format!(
        "{}{MAILBOX}{}{SMTP}",
        SUPPORT.replace("name =", "language = \"ar\"\nname ="),
        MAILBOX
            .replace("\"support\"", "\"greek\"")
            .replace("password =", "language = \"el\"\npassword =")
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.support.language, Lang::Ar);
    assert_eq!(
        config.mailbox("support").map(|m| m.language),
        Some(Lang::Ar)
    );
    assert_eq!(config.mailbox("greek").map(|m| m.language), Some(Lang::El));

    let text = format!(
        "{}{}{SMTP}",
        SUPPORT.replace("name =", "language = \"de\"\nname ="),
        MAILBOX.replace("password =", "language = \"el-GR\"\npassword =")
    );
    assert_eq!(
        refusal(&text),
        "/etc/deskgate/deskgate.toml:3: support.language `de` is not a language deskgate has templates for; use one of en, ar, el\n\
         /etc/deskgate/deskgate.toml:10: mailbox `support`: language `el-GR` is not a language deskgate has templates for; use one of en, ar, el"
    );
}

#[test]
fn template_mistakes_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ack.ar.txt"),
        "{{ tag }} {{ due }} {% if %}",
    )
    .unwrap();
    let text = format!(
        "templates_dir = \"{}\"\n{SUPPORT}{MAILBOX}{SMTP}",
        dir.path().display()
    );
    let refusal = refusal(&text);
    assert!(
        refusal.starts_with(&format!(
            "/etc/deskgate/deskgate.toml:1: templates_dir: {}: line 1: ",
            dir.path().join("ack.ar.txt").display()
        )),
        "{refusal}"
    );
}

#[test]
fn oauth2_logins_are_checked_with_their_reasons() {
    let oauth = |auth: &str, table: &str| {
        format!(
            "{SUPPORT}{}auth = \"{auth}\"\n[mailbox.oauth2]\n{table}{SMTP}",
            MAILBOX.replace("password = \"secret\"\n", "")
        )
    };
    let config = load(&oauth(
        "oauthbearer",
        "provider = \"google\"\nclient_id = \"id\"\nclient_secret = \"s\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let Credential::OAuth2 { mechanism, grant } = &config.mailboxes[0].credential else {
        panic!("not OAuth");
    };
    assert_eq!(*mechanism, Sasl::Oauthbearer);
    let TokenSource::Endpoint(endpoint) = &grant.source else {
        panic!("not an endpoint");
    };
    assert_eq!(endpoint.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(endpoint.scope.as_deref(), Some("https://mail.google.com/"));

    let command = load(&oauth(
        "xoauth2",
        "provider = \"command\"\ncommand = [\"/usr/bin/token\", \"support\"]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        &command.mailboxes[0].credential,
        Credential::OAuth2 { grant, .. } if matches!(&grant.source, TokenSource::Command(argv) if argv.len() == 2)
    ));

    let cases = [
        (
            oauth("xoauth2", "provider = \"microsoft\"\nclient_id = \"id\"\n"),
            "/etc/deskgate/deskgate.toml:10: mailbox `support`: oauth2: provider = \"microsoft\" needs tenant (your directory (tenant) ID or domain, e.g. \"contoso.onmicrosoft.com\")",
        ),
        (
            oauth(
                "xoauth2",
                "provider = \"microsoft\"\ntenant = \"t\"\nclient_id = \"id\"\ngrant = \"client-credentials\"\n",
            ),
            "/etc/deskgate/deskgate.toml:10: mailbox `support`: oauth2: this grant needs client_secret_file (or client_secret)",
        ),
        (
            oauth(
                "xoauth2",
                "provider = \"generic\"\nclient_id = \"id\"\ntoken_url = \"http://auth.example.com/token\"\n",
            ),
            "/etc/deskgate/deskgate.toml:13: mailbox `support`: oauth2: token_url `http://auth.example.com/token` must be an https:// URL (plain http:// only for loopback hosts)",
        ),
        (
            oauth(
                "xoauth2",
                "provider = \"microsoft\"\ngrant = \"service-account\"\nservice_account_file = \"sa.json\"\n",
            ),
            "/etc/deskgate/deskgate.toml:11: mailbox `support`: oauth2: grant = \"service-account\" is for provider = \"google\" (domain-wide delegation)",
        ),
        (
            oauth(
                "xoauth2",
                "provider = \"google\"\ngrant = \"service-account\"\n",
            ),
            "/etc/deskgate/deskgate.toml:10: mailbox `support`: oauth2: grant = \"service-account\" needs service_account_file (the JSON key Google issues for the service account)",
        ),
        (
            oauth(
                "xoauth2",
                "provider = \"google\"\ngrant = \"service-account\"\nservice_account_file = \"/nonexistent/sa.json\"\n",
            ),
            "/etc/deskgate/deskgate.toml:13: mailbox `support`: oauth2: service_account_file /nonexistent/sa.json: cannot read it: No such file or directory (os error 2)",
        ),
        (
            oauth("xoauth2", "provider = \"command\"\n"),
            "/etc/deskgate/deskgate.toml:10: mailbox `support`: oauth2: provider = \"command\" needs command = [\"/path/to/program\", \"arg\", ...]",
        ),
        (
            format!("{SUPPORT}{MAILBOX}auth = \"xoauth2\"\n{SMTP}"),
            "/etc/deskgate/deskgate.toml:10: mailbox `support`: password and password_file are not used with auth = \"xoauth2\"; remove them\n\
             /etc/deskgate/deskgate.toml:10: mailbox `support`: auth = \"xoauth2\" needs an oauth2 table saying where access tokens come from (see config.example.toml)",
        ),
        (
            format!("{SUPPORT}{MAILBOX}[mailbox.oauth2]\nprovider = \"google\"\n{SMTP}"),
            "/etc/deskgate/deskgate.toml:10: mailbox `support`: an oauth2 table is set but auth is \"password\"; set auth = \"xoauth2\" or \"oauthbearer\", or remove the table",
        ),
        (
            format!(
                "{SUPPORT}{MAILBOX}{SMTP}user = \"support@example.com\"\nauth = \"oauthbearer\"\n[smtp.oauth2]\nprovider = \"command\"\ncommand = [\"x\"]\n"
            ),
            "/etc/deskgate/deskgate.toml:14: smtp: auth = \"oauthbearer\" is not available for SMTP (lettre 0.11 speaks only XOAUTH2); use auth = \"xoauth2\", which Microsoft 365 and Google accept",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(refusal(&text), expected, "{text}");
    }
}

#[test]
fn deadline_mistakes_are_named_with_their_line() {
    let text = format!(
        "{SUPPORT}{MAILBOX}{SMTP}[deadlines]\nwarning = \"120%\"\n[deadlines.business_hours]\ntimezone = \"Mars/Olympus\"\nmonday = \"17:00-09:00\"\nholidays = [\"25.12.2026\"]\n[[deadlines.escalation]]\nafter = \"4h\"\nto = [\"boss@example.com\"]\n[[deadlines.escalation]]\nafter = \"0s\"\nto = [\"nobody here\"]\n"
    );
    let refused = refusal(&text);
    for expected in [
        ":14: [deadlines]: warning `120%`: a share must be 1% to 99%",
        ":16: [deadlines]: business_hours.timezone `Mars/Olympus` is not a time zone name",
        ":17: [deadlines]: business_hours.monday `17:00-09:00`: `17:00-09:00` closes before it opens",
        ":18: [deadlines]: business_hours.holidays: `25.12.2026` is not a date",
        ":24: [deadlines]: escalation to `nobody here`: neither an [[agent]] name nor a mail address",
    ] {
        assert!(refused.contains(expected), "{expected:?} in:\n{refused}");
    }
    let unordered = format!(
        "{SUPPORT}{MAILBOX}{SMTP}[[deadlines.escalation]]\nafter = \"4h\"\nto = [\"boss@example.com\"]\n[[deadlines.escalation]]\nafter = \"0s\"\nto = [\"lead@example.com\"]\n"
    );
    assert!(
        refusal(&unordered).contains("escalation level 2 comes before level 1"),
        "{}",
        refusal(&unordered)
    );
}

#[test]
fn a_mailbox_overrides_deadlines_key_by_key() {
    let text = format!(
        "{SUPPORT}{MAILBOX}[mailbox.deadlines]\nfirst_response = \"4h\"\n{SMTP}[deadlines]\nnext_response = \"8h\"\nwarning = \"30m\"\n"
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let own = &config.mailboxes[0].deadlines;
    assert_eq!(own.first_response, Duration::from_secs(4 * 3600));
    assert_eq!(own.next_response, Duration::from_secs(8 * 3600));
    assert_eq!(
        own.warning,
        Some(crate::config::Warning::Before(Duration::from_secs(1800)))
    );
    assert_eq!(
        config.deadlines.first_response,
        Duration::from_secs(24 * 3600)
    );
}

#[test]
fn addresses_of_a_mailbox_are_desks_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ack.en.txt"),
        "Sales here. {{ tag }} by {{ due }}.",
    )
    .unwrap();
    let text = format!(
        "{SUPPORT}language = \"el\"\n{MAILBOX}\
         [[mailbox.address]]\naddress = \"Sales@Example.com\"\nname = \"Example Sales\"\nteam = \"sales\"\nlanguage = \"ar\"\ntemplates_dir = \"{}\"\n\
         [[mailbox.address]]\naddress = \"billing@example.com\"\n\
         {SMTP}{AGENTS}[[team]]\nname = \"first\"\nagents = [\"alice@example.com\"]\n\
         [[team]]\nname = \"sales\"\nagents = [\"bob@example.com\"]\nmailboxes = []\n\
         [[agent]]\nname = \"Chris\"\naddress = \"chris@example.com\"\nlanguage = \"en\"\n",
        dir.path().display()
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.own_addresses,
        [
            "support@example.com",
            "sales@example.com",
            "billing@example.com"
        ]
    );
    let sales = config.desk("support", Some("sales@example.com"));
    assert_eq!(sales.support.address.to_string(), "sales@example.com");
    assert_eq!(sales.support.name, "Example Sales");
    assert_eq!(sales.team.map(|t| t.name.as_str()), Some("sales"));
    assert_eq!(sales.language, Lang::Ar);
    let sample = crate::templates::sample_context(
        crate::templates::kinds::MailKind::Ack.spec(),
        Lang::En,
        &jiff::tz::TimeZone::UTC,
    );
    let ack = sales
        .templates
        .render_all(crate::templates::kinds::MailKind::Ack, Lang::En, &sample)
        .unwrap();
    assert!(ack.text.starts_with("Sales here. [#42]"), "{}", ack.text);
    let billing = config.desk("support", Some("billing@example.com"));
    assert_eq!(
        billing.support.name, "Example Support",
        "support.name by default"
    );
    assert_eq!(billing.team.map(|t| t.name.as_str()), Some("first"));
    assert_eq!(
        billing.language,
        Lang::El,
        "the mailbox's language by default"
    );
    let primary = config.desk("support", None);
    assert_eq!(primary.support.address.to_string(), "support@example.com");
    assert!(
        primary
            .templates
            .render_all(crate::templates::kinds::MailKind::Ack, Lang::En, &sample)
            .unwrap()
            .text
            .starts_with("Hello")
    );
    let gone = config.desk("support", Some("old@example.com"));
    assert!(gone.address.is_none(), "an address no longer configured");
    let languages: Vec<(&str, Lang)> = config
        .agents
        .agents
        .iter()
        .map(|a| (a.name.as_str(), a.language))
        .collect();
    assert_eq!(
        languages,
        [("Alice", Lang::El), ("Bob", Lang::El), ("Chris", Lang::En)],
        "agents read support.language unless they say"
    );
}

#[test]
fn address_mistakes_are_refused_with_their_line() {
    let with = |addresses: &str| {
        format!(
            "{SUPPORT}{MAILBOX}{addresses}{SMTP}{AGENTS}[[team]]\nname = \"first\"\nagents = [\"bob@example.com\"]\n"
        )
    };
    let refused = refusal(&with(
        "[[mailbox.address]]\naddress = \"sales@example.com\"\nteam = \"sales\"\n\
         [[mailbox.address]]\naddress = \"SALES@example.com\"\n\
         [[mailbox.address]]\naddress = \"support@example.com\"\n\
         [[mailbox.address]]\naddress = \"bob@example.com\"\n\
         [[mailbox.address]]\naddress = \"not an address\"\nlanguage = \"de\"\n",
    ));
    let lines: Vec<&str> = refused.lines().collect();
    assert_eq!(lines.len(), 5, "{refused}");
    assert!(
        lines[0].ends_with(
            ":12: mailbox `support` address `sales@example.com`: there is no [[team]] named `sales`"
        ),
        "{refused}"
    );
    assert!(
        lines[1].ends_with(":14: mailbox `support` address `sales@example.com` is configured twice (as support.address or another [[mailbox.address]]); each address belongs to one mailbox"),
        "{refused}"
    );
    assert!(
        lines[2].contains(":16: ")
            && lines[2].contains("`support@example.com` is configured twice"),
        "{refused}"
    );
    assert!(
        lines[3].ends_with(":18: mailbox `support` address `bob@example.com` is agent `Bob`'s address; customers' mail and agents' mail must arrive at different addresses"),
        "{refused}"
    );
    assert!(
        lines[4]
            .contains(":20: mailbox `support` address `not an address` is not an email address"),
        "{refused}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ack.en.txt"),
        "{{ tag }} {{ due }} {% if %}",
    )
    .unwrap();
    let refused = refusal(&with(&format!(
        "[[mailbox.address]]\naddress = \"sales@example.com\"\ntemplates_dir = \"{}\"\n",
        dir.path().display()
    )));
    assert!(
        refused.starts_with(&format!(
            "{PATH}:12: mailbox `support` address `sales@example.com`: templates_dir: {}: line 1: ",
            dir.path().join("ack.en.txt").display()
        )),
        "{refused}"
    );
}

/// Issue 18: the outbox sends over `[smtp] connections` sessions (4 unless set; 1 to 32).
#[test]
fn smtp_connections_default_to_four_and_stay_within_bounds() {
    let default = load(&format!("{SUPPORT}{MAILBOX}{SMTP}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(default.smtp.connections, 4);
    let one = load(&format!("{SUPPORT}{MAILBOX}{SMTP}connections = 1\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.smtp.connections, 1);
    for bad in ["0", "33"] {
        let text = format!("{SUPPORT}{MAILBOX}{SMTP}connections = {bad}\n");
        assert!(
            refusal(&text).contains(&format!(
                "smtp.connections must be between 1 and 32, not {bad}"
            )),
            "{}",
            refusal(&text)
        );
    }
}
