//! Runs the real `deskgate` binary against a lab: writes its configuration, starts, stops
//! (SIGTERM) or kills (SIGKILL) it, and runs CLI subcommands for assertions.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Lab;

/// How the daemon reaches the lab's IMAP server.
#[derive(Debug, Clone, Copy)]
pub enum Imap {
    Implicit,
    Starttls,
    Plain,
}

/// `policy_extra` for tests that send many new mails from a few lab customers: no
/// per-sender limits in the way (they are tested in `hygiene`).
pub const UNLIMITED_SENDERS: &str =
    "new_tickets_per_hour = 100000\nacknowledgements_per_hour = 100000";

/// The allocator settings `systemd/deskgate.service` gives the daemon (its `Environment=`
/// lines; `package::the_unit_sets_the_allocator_as_measured` holds the two together), for
/// tests and benchmarks that measure memory as it is in production.
pub const UNIT_MALLOC: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "1048576"),
];

/// A configuration directory (config file, database, log) for one daemon.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// `[http] listen` is 127.0.0.1 on this port.
    pub http_port: u16,
}

impl Setup {
    /// A config for `lab`: support@ mailbox over `imap`, SMTP submission with STARTTLS and
    /// AUTH, retries every second; `extra` is appended to the [[mailbox]] table.
    pub fn new(lab: &Lab, imap: Imap, mailbox_extra: &str) -> Setup {
        Setup::new_as(lab, imap, "support", "", mailbox_extra)
    }

    /// [`Setup::new`] for the lab user `user` as the support address, with `policy_extra`
    /// appended to the [policy] table. The lab's customers share the support address's
    /// domain, which deskgate by default never acknowledges (colleagues): these configs set
    /// `no_ack_domains = []`.
    pub fn new_as(
        lab: &Lab,
        imap: Imap,
        user: &str,
        policy_extra: &str,
        mailbox_extra: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let http_port = free_port();
        let (port, tls) = match imap {
            Imap::Implicit => (lab.imaps_port, "implicit"),
            Imap::Starttls => (lab.imap_port, "starttls"),
            Imap::Plain => (lab.imap_port, "plain"),
        };
        let (database, ca) = store_settings(lab, dir.path());
        let text = format!(
            r#"{database}
ca_file = "{ca}"

[support]
address = "{address}"
name = "Example Support"

[deadlines]
first_response = "24h"

[policy]
no_ack_domains = []
{policy_extra}

[[mailbox]]
name = "support"
host = "127.0.0.1"
port = {port}
tls = "{tls}"
user = "{address}"
password = "{password}"
poll_interval = "1s"
timeout = "20s"
{mailbox_extra}

[smtp]
host = "127.0.0.1"
port = {submission}
tls = "starttls"
user = "{address}"
password_file = "smtp-password"
timeout = "10s"

[outbox]
retry = ["1s"]

[http]
listen = "127.0.0.1:{http_port}"
"#,
            ca = ca.display(),
            submission = lab.submission_port,
            address = lab.address(user),
            password = lab.password(user),
        );
        std::fs::write(
            dir.path().join("smtp-password"),
            format!("{}\n", lab.password(user)),
        )
        .expect("write password file");
        let config = dir.path().join("deskgate.toml");
        std::fs::write(&config, text).expect("write config");
        Setup {
            dir,
            config,
            http_port,
        }
    }

    /// Appends tables (e.g. `[relay]`, `[[agent]]`) to the configuration file.
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).expect("read config");
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Rewrites the configuration file (e.g. to add a [policy] key).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, edit(text)).expect("write config");
    }

    /// Moves this setup's store to the PostgreSQL database `url` on `pg` as instance
    /// `instance`: the lines before the first table (`database`, `ca_file`) become
    /// [`postgres_settings`]. Setups on one `url` share its mailboxes (lease) and outbox.
    pub fn use_postgres(
        &self,
        lab: &Lab,
        pg: &crate::postgres::Postgres,
        url: &str,
        instance: &str,
    ) {
        let (database, ca) = postgres_settings(lab, self.dir.path(), pg, url);
        self.edit_config(|text| {
            let body: String = text
                .lines()
                .skip_while(|line| !line.starts_with('['))
                .map(|line| format!("{line}\n"))
                .collect();
            format!(
                "{database}\nca_file = \"{}\"\ninstance = \"{instance}\"\n\n{body}",
                ca.display()
            )
        });
    }

    /// The instance holding `mailbox`'s unexpired lease, if any (`deskgate instances`).
    pub fn lease_owner(&self, mailbox: &str) -> Option<String> {
        let listed = self.json(&["instances"]);
        listed["instances"].as_array()?.iter().find_map(|i| {
            i["mailboxes"]
                .as_array()?
                .iter()
                .any(|m| m == mailbox)
                .then(|| i["id"].as_str().unwrap_or_default().to_string())
        })
    }

    /// Polls [`Setup::lease_owner`] every 100 ms until `instance` holds `mailbox`'s lease;
    /// how long that took. Panics with this setup's log after `limit`.
    pub async fn wait_owner(&self, mailbox: &str, instance: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.lease_owner(mailbox).as_deref() != Some(instance) {
            assert!(
                started.elapsed() < limit,
                "{instance} does not hold {mailbox} after {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    /// The SQLite file (meaningful only when not [`store_is_postgres`]).
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("deskgate.db")
    }

    /// Whether the daemon has created its store, so the CLI can read it: the SQLite file
    /// exists, or (PostgreSQL) `deskgate tickets --json` succeeds.
    pub fn store_ready(&self) -> bool {
        let config = std::fs::read_to_string(&self.config).unwrap_or_default();
        if config.contains("database = \"postgres") {
            self.cli(&["tickets", "--json"]).status.success()
        } else {
            self.database().exists()
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Starts `deskgate run` and waits until it has selected the mailbox (mail arriving
    /// from then on is live, not backlog), or stands by while another instance fetches it;
    /// its log is appended to daemon.log in the setup directory.
    pub fn start(&self) -> Daemon {
        self.start_with(&[("DESKGATE_LOG", "deskgate=debug,info")])
    }

    /// [`Setup::start`] with the given environment.
    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let before = self.log().len();
        let daemon = self.spawn_with(env);
        let started = Instant::now();
        let ready = |log: &str| log.contains("mailbox connected") || log.contains("standing by");
        while !ready(self.log().get(before..).unwrap_or("")) {
            if started.elapsed() > Duration::from_secs(30) {
                panic!("deskgate did not connect within 30 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// Starts `deskgate run` without waiting for anything.
    pub fn spawn(&self) -> Daemon {
        self.spawn_with(&[("DESKGATE_LOG", "deskgate=debug,info")])
    }

    /// [`Setup::spawn`] with the given environment (e.g. `DESKGATE_LOG`, `NOTIFY_SOCKET`).
    pub fn spawn_with(&self, env: &[(&str, &str)]) -> Daemon {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("open log");
        let child = Command::new(env!("CARGO_BIN_EXE_deskgate"))
            .args(["--config", self.config.to_str().expect("utf-8 path"), "run"])
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn deskgate run");
        Daemon { child: Some(child) }
    }

    /// `GET path` on the daemon's HTTP listener: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.http_port))
            .unwrap_or_else(|e| panic!("connect to the HTTP listener: {e}; log:\n{}", self.log()));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    }

    /// Runs a CLI subcommand against this setup's configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_deskgate"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run deskgate")
    }

    /// `deskgate <args> --json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.cli(&all);
        assert!(
            output.status.success(),
            "deskgate {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON output")
    }

    /// Waits until the daemon's log holds `needle` `n` times; panics with the log after
    /// `limit`.
    pub async fn wait_log(&self, needle: &str, n: usize, limit: Duration) {
        let started = Instant::now();
        while self.log().matches(needle).count() < n {
            assert!(
                started.elapsed() < limit,
                "no {needle:?} ×{n} within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `deskgate <args> --json` until `ready` holds; panics with the log after `limit`.
    pub async fn wait_json(
        &self,
        args: &[&str],
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if self.store_ready() {
                let value = self.json(args);
                if ready(&value) {
                    return value;
                }
                if Instant::now() > deadline {
                    panic!(
                        "timed out waiting on deskgate {args:?}; last value {value:#}\nlog:\n{}",
                        self.log()
                    );
                }
            } else if Instant::now() > deadline {
                panic!("no database after {limit:?}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether this run's daemons keep their store in PostgreSQL (`DESKGATE_IT_STORE=postgres`,
/// a fresh database on [`crate::postgres::shared`] for each [`Setup`]) rather than in a
/// SQLite file in the setup directory (the default).
pub fn store_is_postgres() -> bool {
    match std::env::var("DESKGATE_IT_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("DESKGATE_IT_STORE={other:?}: expected postgres or sqlite"),
    }
}

/// The `database` lines of a setup in `dir` and the `ca_file` it names. PostgreSQL: a fresh
/// database over TLS that must be verified (`sslmode=require`, so it cannot fall back to
/// plaintext), its password in `db-password`, and a `ca-bundle.pem` with the lab's CA and the
/// server's certificate.
fn store_settings(lab: &Lab, dir: &std::path::Path) -> (String, PathBuf) {
    if !store_is_postgres() {
        return ("database = \"deskgate.db\"".into(), lab.ca_file.clone());
    }
    let pg = crate::postgres::shared().expect("DESKGATE_IT_STORE=postgres needs DESKGATE_IT=1");
    postgres_settings(lab, dir, pg, &pg.fresh_database())
}

/// The `database` lines for the PostgreSQL database `url` on `pg`, and the `ca_file` they
/// need (see [`store_settings`]).
pub fn postgres_settings(
    lab: &Lab,
    dir: &std::path::Path,
    pg: &crate::postgres::Postgres,
    url: &str,
) -> (String, PathBuf) {
    std::fs::copy(&pg.password_file, dir.join("db-password")).expect("copy the database password");
    let mut bundle = std::fs::read(&lab.ca_file).expect("read the lab CA");
    if !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend(std::fs::read(&pg.ca_file).expect("read the PostgreSQL certificate"));
    let ca = dir.join("ca-bundle.pem");
    std::fs::write(&ca, bundle).expect("write the CA bundle");
    let lines =
        format!("database = \"{url}?sslmode=require\"\ndatabase_password_file = \"db-password\"");
    (lines, ca)
}

/// The instance names of two setups sharing one PostgreSQL database ([`Setup::use_postgres`]).
pub const INSTANCES: [&str; 2] = ["desk-a", "desk-b"];

/// SIGKILLs whichever of `daemons` (instances [`INSTANCES`] of `setups`) owns `mailbox`
/// and waits until the other one holds its lease, polling `deskgate instances` every
/// 100 ms; which was killed (its slot is left empty) and how long the takeover took. Panics
/// with the survivor's log after `limit`.
pub async fn kill_owner(
    setups: &[Setup; 2],
    daemons: &mut [Option<Daemon>; 2],
    mailbox: &str,
    limit: Duration,
) -> (usize, Duration) {
    let before = setups[0].lease_owner(mailbox).expect("an owner");
    let index = usize::from(before == INSTANCES[1]);
    daemons[index].take().expect("running").kill();
    let survivor = &setups[1 - index];
    let took = survivor
        .wait_owner(mailbox, INSTANCES[1 - index], limit)
        .await;
    (index, took)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// The body of a chunked HTTP/1.1 response.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A running `deskgate run`; killed on drop if still running.
pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A field of /proc/PID/status in kB (VmRSS, VmHWM).
    pub fn status_kb(&self, field: &str) -> u64 {
        let pid = self.pid();
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// Resets the peak RSS (VmHWM) to the current RSS (proc(5), clear_refs "5").
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").expect("clear_refs");
    }

    /// SIGTERM, then waits; returns the exit status and how long the exit took.
    pub fn stop(mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        signal(&child, "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("deskgate did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGHUP: reload the configuration.
    pub fn reload(&self) {
        signal(self.child.as_ref().expect("running"), "HUP");
    }

    /// SIGKILL: no chance to clean up, as in a crash or power loss of the process.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Parsed view of a raw message, through deskgate's own parser.
pub fn parsed(raw: &[u8]) -> deskgate::parse::ParsedMessage {
    deskgate::parse::parse(raw)
}

/// The header `name` of `raw`, unfolded, if present.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}
