//! Real-server test harness: a private Postfix + Dovecot per test ("lab"), driven by
//! `tests/lab/lab.sh`, plus small SMTP/IMAP helpers to feed and inspect the mailboxes.
//!
//! Real-server tests run only with `DESKGATE_IT=1` (as root, after `tests/lab/lab.sh install`);
//! otherwise [`Lab::start`] returns `None` and the test returns early.
//!
//! ```ignore
//! let Some(lab) = Lab::start() else { return };
//! lab.send(&lab.address("customer1"), &[&lab.address("support")], &raw).await;
//! let msgs = lab.wait_for("support", "INBOX", 1, Duration::from_secs(10)).await;
//! ```

#![allow(dead_code)] // not every test binary module uses every helper

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

type ImapSession = async_imap::Session<TcpStream>;

/// Upper bound for one SMTP or IMAP operation of the helpers (they panic after it).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports handed out to labs of this process, so parallel tests never pick the same one
/// between "free" and "bound by Dovecot/Postfix".
static PORTS_IN_USE: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A private Postfix + Dovecot on 127.0.0.1 with five free ports, in a fresh short temp dir
/// (<= 40 chars, e.g. /tmp/dglab.XXXXXX; the socket path limit) under [`lab_parent`].
#[derive(Debug)]
pub struct Lab {
    pub dir: PathBuf,
    pub host: String,
    pub domain: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub submission_port: u16,
    pub submissions_port: u16,
    pub ca_file: PathBuf,
}

/// Where labs are made: `DESKGATE_LAB_PARENT` (the benchmark puts them on tmpfs, /dev/shm),
/// else /tmp. Also the private PostgreSQL servers (`postgres.rs`).
pub fn lab_parent() -> PathBuf {
    std::env::var_os("DESKGATE_LAB_PARENT").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

/// `N` distinct free ports, none handed out before by this process and not yet released: all
/// `N` listeners stay open until we have them. Also used by `postgres.rs`.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut guard = PORTS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < N {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if port >= 1024 && !used.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
        listeners.push(l);
    }
    used.extend(&ports);
    drop(listeners);
    std::array::from_fn(|i| ports[i])
}

pub fn release_ports(ports: &[u16]) {
    let mut guard = PORTS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(used) = guard.as_mut() {
        for p in ports {
            used.remove(p);
        }
    }
}

fn run_script(args: &[&str], env: &[(&str, String)]) -> std::io::Result<Output> {
    let mut cmd = Command::new(script());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
}

/// The last `lines` lines of every DIR/log/*.log, for failure messages.
fn log_tails(dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir.join("log")) else {
        return format!("(no log directory in {})\n", dir.display());
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        out.push_str(&format!(
            "--- {} (last {} lines)\n",
            path.display(),
            tail.len()
        ));
        for line in tail {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Exists and is not a zombie (a container's pid 1 may reap dead processes late).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Stops and removes labs left behind by test processes that were killed (Ctrl-C, SIGKILL)
/// before `Drop` ran.
fn sweep_stale_labs() {
    sweep_stale("dglab.", "lab", |dir| {
        let _ = run_script(
            &["stop", &dir.to_string_lossy()],
            &[("MAILLAB_STOP_TIMEOUT", "0".into())],
        );
    });
}

/// Up to three attempts of `try_start` (Err: the report, and whether it looks like a port
/// clash, the one failure worth another attempt); panics with every report.
pub fn start_retrying<T>(what: &str, try_start: impl Fn() -> Result<T, (String, bool)>) -> T {
    let mut failures = String::new();
    for attempt in 1..=3 {
        match try_start() {
            Ok(server) => return server,
            Err((msg, port_clash)) => {
                failures.push_str(&format!("=== attempt {attempt}\n{msg}\n"));
                if !port_clash {
                    break;
                }
            }
        }
    }
    panic!("{what} did not start:\n{failures}");
}

/// A new directory `prefix`XXXXXX under [`lab_parent`], kept, with this process's pid in
/// owner.pid (so a later run cleans up after a killed test process, [`sweep_stale`]).
pub fn owned_dir(prefix: &str) -> Result<PathBuf, (String, bool)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(6)
        .tempdir_in(lab_parent())
        .map_err(|e| {
            let parent = lab_parent();
            (
                format!("cannot create a temp dir in {}: {e}", parent.display()),
                false,
            )
        })?
        .keep();
    let _ = std::fs::write(dir.join("owner.pid"), std::process::id().to_string());
    Ok(dir)
}

/// Stops (`stop`) and removes the directories `prefix`* under [`lab_parent`] whose owner.pid
/// names a process that no longer exists: servers of test processes killed before `Drop`.
pub fn sweep_stale(prefix: &str, what: &str, stop: impl Fn(&Path)) {
    let Ok(entries) = std::fs::read_dir(lab_parent()) else {
        return;
    };
    for dir in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix));
        let owner = std::fs::read_to_string(dir.join("owner.pid")).ok();
        let Some(pid) = owner.and_then(|o| o.trim().parse::<u32>().ok()) else {
            continue; // not ours, or being created right now
        };
        if !ours || pid_alive(pid) {
            continue;
        }
        eprintln!(
            "{what}: removing stale {} (owner pid {pid} is gone)",
            dir.display()
        );
        stop(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Lab {
    /// Starts a lab, or returns None after printing why (eprintln) when real-server tests are
    /// not enabled: they run only when env DESKGATE_IT=1. With DESKGATE_IT=1 any failure to
    /// start panics with the script's stderr and the tail of DIR/log/*.log.
    pub fn start() -> Option<Lab> {
        Lab::start_with(&[])
    }

    /// Like [`Lab::start`], with extra `lab.sh` settings (e.g.
    /// `MAILLAB_OAUTH2_INTROSPECTION_URL`).
    pub fn start_with(settings: &[(&str, String)]) -> Option<Lab> {
        if std::env::var("DESKGATE_IT").as_deref() != Ok("1") {
            eprintln!(
                "skipping real-server test: set DESKGATE_IT=1 to run it (as root, after \
                 `tests/lab/lab.sh install`)"
            );
            return None;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_labs);
        // A port picked as free can still be taken by someone else (another test process)
        // before Dovecot or Postfix binds it: retry with fresh ports in that case only.
        Some(start_retrying("the mail lab", || Self::try_start(settings)))
    }

    /// One start attempt; Err((report, looks like a port clash)).
    fn try_start(settings: &[(&str, String)]) -> Result<Lab, (String, bool)> {
        let dir = owned_dir("dglab.")?;
        let ports = free_ports::<5>();
        let t0 = Instant::now();
        let mut env = vec![
            ("MAILLAB_IMAP_PORT", ports[0].to_string()),
            ("MAILLAB_IMAPS_PORT", ports[1].to_string()),
            ("MAILLAB_SMTP_PORT", ports[2].to_string()),
            ("MAILLAB_SUBMISSION_PORT", ports[3].to_string()),
            ("MAILLAB_SUBMISSIONS_PORT", ports[4].to_string()),
        ];
        env.extend(settings.iter().cloned());
        let dir_s = dir.to_str().expect("temp dir path is UTF-8").to_owned();
        let fail = |msg: String| {
            let tails = log_tails(&dir, 30);
            let clash = msg.contains("in use") || tails.contains("in use");
            // nothing of a failed start may linger
            let _ = run_script(&["stop", &dir_s], &[("MAILLAB_STOP_TIMEOUT", "0".into())]);
            let _ = std::fs::remove_dir_all(&dir);
            release_ports(&ports);
            (format!("{msg}\n{tails}"), clash)
        };
        let out = match run_script(&["start", &dir_s], &env) {
            Ok(out) => out,
            Err(e) => return Err(fail(format!("cannot run {}: {e}", script().display()))),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(fail(format!(
                "`lab.sh start {dir_s}` failed ({}):\n{stderr}",
                out.status
            )));
        }
        let vars: Vec<(&str, &str)> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        let port = |key: &str| get(key).and_then(|v| v.parse::<u16>().ok());
        let parsed = (|| {
            Some(Lab {
                dir: PathBuf::from(get("MAILLAB_DIR")?),
                host: get("MAILLAB_HOST")?,
                domain: get("MAILLAB_DOMAIN")?,
                imap_port: port("MAILLAB_IMAP_PORT")?,
                imaps_port: port("MAILLAB_IMAPS_PORT")?,
                smtp_port: port("MAILLAB_SMTP_PORT")?,
                submission_port: port("MAILLAB_SUBMISSION_PORT")?,
                submissions_port: port("MAILLAB_SUBMISSIONS_PORT")?,
                ca_file: PathBuf::from(get("MAILLAB_CA_FILE")?),
            })
        })();
        match parsed {
            Some(lab) => {
                eprintln!(
                    "lab: started in {} ms: {} imap {} smtp {}",
                    t0.elapsed().as_millis(),
                    lab.dir.display(),
                    lab.imap_port,
                    lab.smtp_port
                );
                Ok(lab)
            }
            None => Err(fail(format!(
                "`lab.sh start` printed unexpected settings:\n{stdout}\n{stderr}"
            ))),
        }
    }

    /// "customer1" -> "customer1@example.test"
    pub fn address(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }

    /// "customer1" -> "customer1-pw"
    pub fn password(&self, user: &str) -> String {
        format!("{user}-pw")
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("lab dir is UTF-8")
    }

    fn script_or_panic(&self, cmd: &str) {
        let t0 = Instant::now();
        let out = run_script(&[cmd, self.dir_str()], &[])
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        if !out.status.success() {
            panic!(
                "`lab.sh {cmd} {}` failed ({}):\n{}\n{}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                log_tails(&self.dir, 30)
            );
        }
        eprintln!("lab: {cmd} took {} ms", t0.elapsed().as_millis());
    }

    /// Stops only the lab's Postfix (Dovecot stays up): the SMTP ports refuse connections.
    pub fn stop_postfix(&self) {
        self.script_or_panic("postfix-stop");
    }

    /// Starts the lab's Postfix again; returns once the SMTP port greets with 220.
    /// Mail Postfix had accepted but not delivered yet stays queued and is delivered then.
    pub fn start_postfix(&self) {
        self.script_or_panic("postfix-start");
    }

    /// Routes mail for `recipient` through a Postfix pipe transport running `argv` as
    /// `user` (Postfix refuses root), and restarts the lab's Postfix to apply it.
    pub fn pipe_transport(&self, recipient: &str, user: &str, argv: &str) {
        let etc = self.dir.join("postfix/etc");
        let mut master = std::fs::read_to_string(etc.join("master.cf")).expect("read master.cf");
        master.push_str(&format!(
            "deskgate  unix  -       n       n       -       -       pipe\n  flags=DRq user={user} argv={argv}\n"
        ));
        std::fs::write(etc.join("master.cf"), master).expect("write master.cf");
        std::fs::write(etc.join("transport"), format!("{recipient} deskgate:\n"))
            .expect("write transport map");
        let mut main = std::fs::read_to_string(etc.join("main.cf")).expect("read main.cf");
        main.push_str(&format!(
            "transport_maps = texthash:{}\ndeskgate_destination_recipient_limit = 1\n",
            etc.join("transport").display()
        ));
        std::fs::write(etc.join("main.cf"), main).expect("write main.cf");
        self.stop_postfix();
        self.start_postfix();
    }

    /// Asks Postfix to retry deferred mail now.
    pub fn flush_queue(&self) {
        let status = std::process::Command::new("postqueue")
            .arg("-c")
            .arg(self.dir.join("postfix/etc"))
            .arg("-f")
            .status()
            .expect("run postqueue");
        assert!(status.success(), "postqueue -f failed");
    }

    /// The lab's Postfix log so far.
    pub fn postfix_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/postfix.log")).unwrap_or_default()
    }

    /// A rustls client configuration that trusts only the lab's CA (the certificate covers
    /// 127.0.0.1, localhost and mail.example.test).
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_file).expect("read lab CA file") {
            roots.add(cert.expect("parse lab CA")).expect("add lab CA");
        }
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Submit raw RFC 5322 bytes over plain SMTP to smtp_port (no auth) with the given
    /// envelope; `from` may be "" for the null sender. Panics if the server refuses.
    pub async fn send(&self, from: &str, to: &[&str], raw: &[u8]) {
        if let Err(e) = self.try_send(from, to, raw).await {
            panic!("lab send from <{from}> to {to:?} failed: {e}");
        }
    }

    /// Like [`Lab::send`], but returns the error (e.g. while Postfix is stopped, or a
    /// 550 for an unknown recipient).
    pub async fn try_send(&self, from: &str, to: &[&str], raw: &[u8]) -> Result<(), String> {
        let parse = |a: &str| {
            a.parse::<Address>()
                .map_err(|e| format!("bad address {a:?}: {e}"))
        };
        let from = if from.is_empty() {
            None
        } else {
            Some(parse(from)?)
        };
        let to = to.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(from, to).map_err(|e| format!("bad envelope: {e}"))?;
        let job = async {
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.smtp_port),
                Some(IO_TIMEOUT),
                &ClientId::Domain("client.example.test".into()),
                None,
                None,
            )
            .await
            .map_err(|e| format!("connect to {}:{}: {e}", self.host, self.smtp_port))?;
            let res = conn.send(&envelope, raw).await.map_err(|e| e.to_string());
            let _ = conn.quit().await;
            res.map(|_| ())
        };
        tokio::time::timeout(IO_TIMEOUT, job)
            .await
            .unwrap_or_else(|_| Err(format!("SMTP timed out after {IO_TIMEOUT:?}")))
    }

    /// Submits raw bytes as `user` would from a mail client: SMTP submission with STARTTLS
    /// (trusting the lab CA) and AUTH; the envelope sender is the user's address.
    pub async fn submit(&self, user: &str, to: &[&str], raw: &[u8]) {
        use lettre::AsyncTransport;
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let pem = std::fs::read(&self.ca_file).expect("lab CA");
        let tls = TlsParameters::builder(self.host.clone())
            .add_root_certificate(Certificate::from_pem(&pem).expect("lab CA is PEM"))
            .build_rustls()
            .expect("TLS parameters");
        let transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&self.host)
                .port(self.submission_port)
                .tls(Tls::Required(tls))
                .credentials(Credentials::new(self.address(user), self.password(user)))
                .timeout(Some(IO_TIMEOUT))
                .build();
        let from: Address = self.address(user).parse().expect("address");
        let to: Vec<Address> = to.iter().map(|a| a.parse().expect("address")).collect();
        let envelope = Envelope::new(Some(from), to).expect("envelope");
        if let Err(e) = transport.send_raw(&envelope, raw).await {
            panic!("submission as {user} failed: {e}");
        }
    }

    /// A logged-in IMAP session (plain LOGIN on imap_port).
    pub async fn imap(&self, user: &str) -> ImapSession {
        match tokio::time::timeout(IO_TIMEOUT, self.try_imap(user)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("IMAP login as {user}: {e}"),
            Err(_) => panic!("IMAP login as {user} timed out after {IO_TIMEOUT:?}"),
        }
    }

    async fn try_imap(&self, user: &str) -> Result<ImapSession, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.imap_port))
            .await
            .map_err(|e| format!("connect to {}:{}: {e}", self.host, self.imap_port))?;
        let mut client = async_imap::Client::new(tcp);
        match client.read_response().await {
            Ok(Some(_greeting)) => {}
            Ok(None) => return Err("connection closed before the greeting".into()),
            Err(e) => return Err(format!("reading the greeting: {e}")),
        }
        client
            .login(self.address(user), self.password(user))
            .await
            .map_err(|(e, _)| format!("LOGIN: {e}"))
    }

    /// IMAP APPEND raw bytes into a user's folder (plain IMAP LOGIN on imap_port).
    pub async fn append(&self, user: &str, folder: &str, raw: &[u8]) {
        let job = async {
            let mut s = self.imap(user).await;
            s.append(folder, None, None, raw)
                .await
                .unwrap_or_else(|e| panic!("APPEND to {user}/{folder}: {e}"));
            let _ = s.logout().await;
        };
        tokio::time::timeout(IO_TIMEOUT, job)
            .await
            .unwrap_or_else(|_| panic!("APPEND to {user}/{folder} timed out"));
    }

    /// Fills a folder fast: one MULTIAPPEND (RFC 3502) per 500 messages, each message a
    /// non-synchronizing literal (LITERAL+, RFC 7888), so nothing waits for the server
    /// between messages. async-imap has neither, hence the raw protocol.
    pub async fn append_many(&self, user: &str, folder: &str, raws: &[Vec<u8>]) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        async fn until_tagged(stream: &mut BufReader<TcpStream>, tag: &str) -> Result<(), String> {
            let mut line = String::new();
            loop {
                line.clear();
                let n = stream
                    .read_line(&mut line)
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed".into());
                }
                if let Some(status) = line.strip_prefix(tag) {
                    return match status.trim_start().starts_with("OK") {
                        true => Ok(()),
                        false => Err(line.trim_end().to_owned()),
                    };
                }
            }
        }
        let job = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.imap_port))
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = BufReader::new(tcp);
            let login = format!(
                "a LOGIN \"{}\" \"{}\"\r\n",
                self.address(user),
                self.password(user)
            );
            stream
                .get_mut()
                .write_all(login.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            until_tagged(&mut stream, "a ").await?;
            for (i, chunk) in raws.chunks(500).enumerate() {
                let tag = format!("m{i} ");
                let mut command = format!("{tag}APPEND \"{folder}\"").into_bytes();
                for raw in chunk {
                    command.extend_from_slice(format!(" {{{}+}}\r\n", raw.len()).as_bytes());
                    command.extend_from_slice(raw);
                }
                command.extend_from_slice(b"\r\n");
                stream
                    .get_mut()
                    .write_all(&command)
                    .await
                    .map_err(|e| e.to_string())?;
                until_tagged(&mut stream, &tag).await?;
            }
            let _ = stream.get_mut().write_all(b"z LOGOUT\r\n").await;
            Ok::<(), String>(())
        };
        match tokio::time::timeout(IO_TIMEOUT * 10, job).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("MULTIAPPEND to {user}/{folder}: {e}"),
            Err(_) => panic!("MULTIAPPEND to {user}/{folder} timed out"),
        }
    }

    /// IMAP APPEND with flags (e.g. `(\\Seen)`) and an arrival time (INTERNALDATE) `age`
    /// ago, as a mailbox that has been in use for a while holds its mail.
    pub async fn append_aged(
        &self,
        user: &str,
        folder: &str,
        flags: Option<&str>,
        age: Duration,
        raw: &[u8],
    ) {
        let at = SystemTime::now() - age;
        let date = rfc2822_date(at); // "Mon, 23 Nov 2026 18:04:05 +0000"
        let mut parts = date.split([' ', ',']).filter(|p| !p.is_empty()).skip(1);
        let (day, month, year, time) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let internaldate = format!("\"{day:0>2}-{month}-{year} {time} +0000\"");
        let job = async {
            let mut s = self.imap(user).await;
            s.append(folder, flags, Some(&internaldate), raw)
                .await
                .unwrap_or_else(|e| panic!("APPEND {internaldate} to {user}/{folder}: {e}"));
            let _ = s.logout().await;
        };
        tokio::time::timeout(IO_TIMEOUT, job)
            .await
            .unwrap_or_else(|_| panic!("APPEND to {user}/{folder} timed out"));
    }

    /// All messages of a user's folder, raw bytes, in UID order (BODY.PEEK[] so flags do not
    /// change).
    pub async fn fetch_all(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let job = async {
            let mut s = self.imap(user).await;
            let msgs = fetch_bodies(&mut s, folder)
                .await
                .unwrap_or_else(|e| panic!("fetch {user}/{folder}: {e}"));
            let _ = s.logout().await;
            msgs
        };
        tokio::time::timeout(IO_TIMEOUT, job)
            .await
            .unwrap_or_else(|_| panic!("fetch {user}/{folder} timed out"))
    }

    /// Polls (every ~50 ms) until the folder holds at least n messages, returns fetch_all;
    /// panics with a clear message after `timeout`. A folder that does not exist yet counts
    /// as empty.
    pub async fn wait_for(
        &self,
        user: &str,
        folder: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        match self.try_wait_for(user, folder, n, timeout).await {
            Ok(msgs) => msgs,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Lab::wait_for`], but returns the timeout as an error (with the tail of the
    /// lab's logs), e.g. to check that nothing arrives.
    pub async fn try_wait_for(
        &self,
        user: &str,
        folder: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>, String> {
        let deadline = Instant::now() + timeout;
        let mut session: Option<ImapSession> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let poll = async {
                if session.is_none() {
                    session = Some(self.try_imap(user).await?);
                }
                let s = session.as_mut().expect("session");
                match s.examine(folder).await {
                    Ok(mbox) => Ok(mbox.exists as usize),
                    // the folder does not exist (yet): keep the session
                    Err(async_imap::error::Error::No(e)) => Err(format!("EXAMINE: NO {e}")),
                    Err(e) => {
                        session = None;
                        Err(format!("EXAMINE: {e}"))
                    }
                }
            };
            let last =
                match tokio::time::timeout(remaining.max(Duration::from_millis(100)), poll).await {
                    Ok(Ok(count)) if count >= n => {
                        if let Some(mut s) = session.take() {
                            let _ = s.logout().await;
                        }
                        return Ok(self.fetch_all(user, folder).await);
                    }
                    Ok(Ok(count)) => format!("{count} message(s)"),
                    Ok(Err(e)) => e,
                    Err(_) => {
                        session = None; // interrupted mid-command
                        "IMAP poll timed out".into()
                    }
                };
            if Instant::now() >= deadline {
                return Err(format!(
                    "wait_for: {user}/{folder} did not reach {n} message(s) within {timeout:?} \
                     (last poll: {last})\n{}",
                    log_tails(&self.dir, 15)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Flags of every message in the folder, in UID order (e.g. to check \Seen was set), as
    /// IMAP spells them ("\\Seen", "\\Answered", keywords as is). `\Recent` is left out: it
    /// depends on which session saw the message first.
    pub async fn flags(&self, user: &str, folder: &str) -> Vec<Vec<String>> {
        let job = async {
            let mut s = self.imap(user).await;
            let flags = fetch_flags(&mut s, folder)
                .await
                .unwrap_or_else(|e| panic!("flags of {user}/{folder}: {e}"));
            let _ = s.logout().await;
            flags
        };
        tokio::time::timeout(IO_TIMEOUT, job)
            .await
            .unwrap_or_else(|_| panic!("flags of {user}/{folder} timed out"))
    }
}

async fn fetch_bodies(
    s: &mut ImapSession,
    folder: &str,
) -> async_imap::error::Result<Vec<Vec<u8>>> {
    if s.examine(folder).await?.exists == 0 {
        return Ok(Vec::new());
    }
    let mut fetches: Vec<_> = s
        .uid_fetch("1:*", "(UID BODY.PEEK[])")
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .map(|f| (f.uid.unwrap_or(0), f.body().unwrap_or_default().to_vec()))
        .collect();
    fetches.sort_by_key(|(uid, _)| *uid);
    Ok(fetches.into_iter().map(|(_, body)| body).collect())
}

async fn fetch_flags(
    s: &mut ImapSession,
    folder: &str,
) -> async_imap::error::Result<Vec<Vec<String>>> {
    use async_imap::types::Flag;
    if s.examine(folder).await?.exists == 0 {
        return Ok(Vec::new());
    }
    let mut fetches: Vec<(u32, Vec<String>)> = s
        .uid_fetch("1:*", "(UID FLAGS)")
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .map(|f| {
            let flags = f
                .flags()
                .filter_map(|flag| match flag {
                    Flag::Seen => Some("\\Seen".to_owned()),
                    Flag::Answered => Some("\\Answered".to_owned()),
                    Flag::Flagged => Some("\\Flagged".to_owned()),
                    Flag::Deleted => Some("\\Deleted".to_owned()),
                    Flag::Draft => Some("\\Draft".to_owned()),
                    Flag::Recent | Flag::MayCreate => None,
                    Flag::Custom(c) => Some(c.into_owned()),
                })
                .collect();
            (f.uid.unwrap_or(0), flags)
        })
        .collect();
    fetches.sort_by_key(|(uid, _)| *uid);
    Ok(fetches.into_iter().map(|(_, flags)| flags).collect())
}

impl Drop for Lab {
    /// `lab.sh stop` with MAILLAB_STOP_TIMEOUT=0, then remove the dir; never panics.
    fn drop(&mut self) {
        let t0 = Instant::now();
        match run_script(
            &["stop", &self.dir.to_string_lossy()],
            &[("MAILLAB_STOP_TIMEOUT", "0".into())],
        ) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "lab: stop {} failed ({}): {}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("lab: cannot run lab.sh stop: {e}"),
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("lab: cannot remove {}: {e}", self.dir.display());
        }
        release_ports(&[
            self.imap_port,
            self.imaps_port,
            self.smtp_port,
            self.submission_port,
            self.submissions_port,
        ]);
        eprintln!(
            "lab: stopped and removed in {} ms",
            t0.elapsed().as_millis()
        );
    }
}

/// Build a simple customer message: From/To/Subject/Date/Message-ID (given id without <>)/
/// MIME-Version/Content-Type text/plain; charset=utf-8, 8bit body; optional extra raw header
/// lines. An extra header with the name of a standard one replaces it. A non-ASCII subject is
/// written as an RFC 2047 encoded word; line ends become CRLF.
pub fn message(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    body: &str,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let subject = encode_header_text(subject);
    let date = rfc2822_date(SystemTime::now());
    let message_id = format!("<{message_id}>");
    let standard: [(&str, &str); 7] = [
        ("From", from),
        ("To", to),
        ("Subject", &subject),
        ("Date", &date),
        ("Message-ID", &message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ];
    let mut out = String::new();
    for (name, value) in standard {
        let value = extra_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(value, |(_, v)| *v);
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Content-Transfer-Encoding: 8bit\r\n");
    for (name, value) in extra_headers {
        if !standard.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            && !name.eq_ignore_ascii_case("Content-Transfer-Encoding")
        {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    for line in body.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// RFC 2047 "B" encoded words for non-ASCII text (ASCII is returned unchanged).
fn encode_header_text(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    // at most 45 bytes per word (60 base64 chars + 12 = 72 <= 75), split on char boundaries
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    words.join("\r\n ")
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// "Mon, 23 Nov 2026 18:04:05 +0000"
fn rfc2822_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil_from_days (H. Hinnant): days since 1970-01-01 -> year, month, day
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Self-tests of the harness (real servers only with DESKGATE_IT=1).
// ---------------------------------------------------------------------------------------------

#[test]
fn message_format() {
    let raw = message(
        "Customer One <customer1@example.test>",
        "support@example.test",
        "Grüße",
        "abc@example.test",
        "line 1\nline 2",
        &[
            ("In-Reply-To", "<x@y>"),
            ("date", "Tue, 1 Jan 2030 00:00:00 +0000"),
        ],
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("From: Customer One <customer1@example.test>\r\n"));
    assert!(text.contains("\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
    assert!(text.contains("\r\nDate: Tue, 1 Jan 2030 00:00:00 +0000\r\n"));
    assert!(text.contains("\r\nMessage-ID: <abc@example.test>\r\n"));
    assert!(text.contains("\r\nIn-Reply-To: <x@y>\r\n"));
    assert!(text.ends_with("\r\n\r\nline 1\r\nline 2\r\n"));
    assert_eq!(text.matches("Date:").count(), 1);
    assert_eq!(
        rfc2822_date(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
        "Thu, 29 Feb 2024 23:59:59 +0000"
    );
    assert_eq!(rfc2822_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"M"), "TQ==");
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn lab_delivers_and_appends() {
    let t0 = Instant::now();
    let Some(lab) = Lab::start() else { return };
    let support = lab.address("support");
    let customer = lab.address("customer1");

    // SMTP -> LMTP -> support's INBOX; plus-address keeps its tag in Delivered-To
    let tagged = format!("support+t42@{}", lab.domain);
    let raw = message(&customer, &support, "Help", "m1@example.test", "Hello", &[]);
    lab.send(&customer, &[&tagged], &raw).await;
    let msgs = lab
        .wait_for("support", "INBOX", 1, Duration::from_secs(10))
        .await;
    assert_eq!(msgs.len(), 1);
    assert!(contains(&msgs[0], "Message-ID: <m1@example.test>"));
    assert!(contains(&msgs[0], &format!("Delivered-To: {tagged}")));
    assert!(contains(&msgs[0], "\r\n\r\nHello\r\n"));
    assert_eq!(
        lab.flags("support", "INBOX").await,
        vec![Vec::<String>::new()]
    );

    // unknown recipient refused at RCPT
    let err = lab
        .try_send(&customer, &["nobody@example.test"], &raw)
        .await
        .expect_err("unknown recipient must be refused");
    assert!(err.contains("550"), "{err}");

    // APPEND with flags visible through flags()
    let sent = message(
        &customer,
        &support,
        "Copy",
        "m2@example.test",
        "Sent copy",
        &[],
    );
    lab.append("customer1", "Sent", &sent).await;
    let mut s = lab.imap("customer1").await;
    s.append("INBOX", Some("(\\Seen)"), None, &raw)
        .await
        .unwrap();
    s.logout().await.unwrap();
    assert_eq!(lab.fetch_all("customer1", "Sent").await, vec![sent]);
    assert_eq!(
        lab.flags("customer1", "INBOX").await,
        vec![vec!["\\Seen".to_string()]]
    );
    assert!(lab.fetch_all("customer1", "Trash").await.is_empty());

    // "SMTP server down for a while"
    lab.stop_postfix();
    let err = lab
        .try_send(&customer, &[&support], &raw)
        .await
        .expect_err("send must fail while Postfix is stopped");
    eprintln!("while stopped: {err}");
    let t_start = Instant::now();
    lab.start_postfix();
    eprintln!("postfix-start: {} ms", t_start.elapsed().as_millis());
    let raw2 = message(&customer, &support, "Again", "m3@example.test", "Back", &[]);
    let t_send = Instant::now();
    lab.send(&customer, &[&support], &raw2).await;
    let msgs = lab
        .wait_for("support", "INBOX", 2, Duration::from_secs(10))
        .await;
    eprintln!(
        "delivery after restart: {} ms",
        t_send.elapsed().as_millis()
    );
    assert!(contains(&msgs[1], "Message-ID: <m3@example.test>"));
    drop(lab);
    eprintln!("lab_delivers_and_appends: {} ms", t0.elapsed().as_millis());
}

#[tokio::test]
async fn lab_tls_and_submission() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, TlsParameters};
    use tokio::io::AsyncReadExt;

    let t0 = Instant::now();
    let Some(lab) = Lab::start() else { return };

    // IMAPS verified against the lab CA with rustls
    let connector = tokio_rustls::TlsConnector::from(lab.tls_config());
    let tcp = TcpStream::connect((lab.host.as_str(), lab.imaps_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("IMAPS handshake");
    let mut greeting = [0u8; 4];
    tls.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"* OK");

    // submission: STARTTLS + AUTH PLAIN, then delivery to another lab user
    let ca = std::fs::read(&lab.ca_file).unwrap();
    let params = TlsParameters::builder(lab.host.clone())
        .add_root_certificate(Certificate::from_pem(&ca).unwrap())
        .build_rustls()
        .unwrap();
    let hello = ClientId::Domain("client.example.test".into());
    let mut conn = AsyncSmtpConnection::connect_tokio1(
        (lab.host.as_str(), lab.submission_port),
        Some(IO_TIMEOUT),
        &hello,
        None,
        None,
    )
    .await
    .unwrap();
    conn.starttls(params, &hello).await.expect("STARTTLS");
    conn.auth(
        &[Mechanism::Plain],
        &Credentials::new(lab.address("support"), lab.password("support")),
    )
    .await
    .expect("AUTH PLAIN");
    let raw = message(
        &lab.address("support"),
        &lab.address("customer2"),
        "Re: Help",
        "ack1@example.test",
        "We got your mail.",
        &[],
    );
    let envelope = Envelope::new(
        Some(lab.address("support").parse().unwrap()),
        vec![lab.address("customer2").parse().unwrap()],
    )
    .unwrap();
    conn.send(&envelope, &raw).await.expect("submission");
    let _ = conn.quit().await;
    let msgs = lab
        .wait_for("customer2", "INBOX", 1, Duration::from_secs(10))
        .await;
    assert!(contains(&msgs[0], "Message-ID: <ack1@example.test>"));
    drop(lab);
    eprintln!("lab_tls_and_submission: {} ms", t0.elapsed().as_millis());
}

#[tokio::test]
async fn lab_wait_for_times_out_clearly() {
    let Some(lab) = Lab::start() else { return };
    let t0 = Instant::now();
    let err = lab
        .try_wait_for("sales", "INBOX", 1, Duration::from_millis(300))
        .await
        .expect_err("sales/INBOX is empty");
    let waited = t0.elapsed();
    assert!(
        err.contains("sales/INBOX did not reach 1 message(s)"),
        "{err}"
    );
    assert!(err.contains("last poll: 0 message(s)"), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // a folder that does not exist counts as empty, it is not an error
    let err = lab
        .try_wait_for("sales", "Tickets", 1, Duration::from_millis(200))
        .await
        .expect_err("no such folder");
    assert!(err.contains("EXAMINE: NO"), "{err}");
}
