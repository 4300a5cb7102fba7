//! A private PostgreSQL for tests and the benchmark, driven by `tests/lab/postgres.sh` (the mail
//! lab's sibling): one server on 127.0.0.1 and a free port, TLS with a certificate of its own,
//! superuser `deskgate` with a random password, database `deskgate`, everything in a fresh temp
//! dir (dgpg.XXXXXX under [`lab_parent`]). As root the server runs as `nobody`.
//!
//! Real-server tests run only with `DESKGATE_IT=1` (after `tests/lab/postgres.sh install`);
//! otherwise [`Postgres::start`] and [`shared`] return `None` and the test returns early.
//!
//! ```ignore
//! let Some(pg) = postgres::shared() else { return }; // or Postgres::start() for a private one
//! let url = pg.fresh_database(); // postgres://deskgate@127.0.0.1:PORT/test_1
//! let password = pg.password();  // also in pg.password_file
//! let tls = pg.tls_config();     // trusts pg.ca_file only: sslmode=verify-full
//! ```

#![allow(dead_code)] // not every test binary module uses every helper

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::harness::{free_ports, owned_dir, release_ports, start_retrying, sweep_stale};

/// A private PostgreSQL server on 127.0.0.1:`port`. Dropping it stops it and removes `dir`.
#[derive(Debug)]
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    /// The server's self-signed certificate, the only root a client needs (CN and IP SAN
    /// 127.0.0.1).
    pub ca_file: PathBuf,
    /// The password of the superuser `deskgate` (one line, no newline).
    pub password_file: PathBuf,
    /// Databases made by [`Postgres::fresh_database`] so far.
    databases: AtomicU32,
    /// `sh` waiting for EOF on its stdin, whose other end only this process holds: when this
    /// process ends in any way, even SIGKILL, it stops the server and removes `dir`.
    guardian: Option<Child>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/postgres.sh")
}

fn run_script(args: &[&str]) -> std::io::Result<Output> {
    Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
}

/// The last `lines` lines of DIR/postgres.log, for failure messages.
fn log_tail(dir: &Path, lines: usize) -> String {
    let path = dir.join("postgres.log");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return format!("(no {})\n", path.display());
    };
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    let mut out = format!("--- {} (last {} lines)\n", path.display(), tail.len());
    for line in tail {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Stops and removes servers left behind by test processes whose guardian did not run either
/// (e.g. the whole process group was SIGKILLed).
fn sweep_stale_servers() {
    sweep_stale("dgpg.", "postgres", |dir| {
        let _ = run_script(&["stop", &dir.to_string_lossy()]);
    });
}

/// See [`Postgres::guardian`]. Its own process group, so a Ctrl-C in the terminal reaches
/// only the test process and the guardian then cleans up after it.
fn spawn_guardian(dir: &Path) -> Option<Child> {
    use std::os::unix::process::CommandExt;
    const GUARD: &str = r#"trap '' INT; read -r _; bash "$0" stop "$1"; rm -rf -- "$1""#;
    Command::new("sh")
        .arg("-c")
        .arg(GUARD)
        .arg(script())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| eprintln!("postgres: no guardian for {}: {e}", dir.display()))
        .ok()
}

/// One server for the whole test binary, started on first use, for tests that only need a
/// [`Postgres::fresh_database`]: never restart or stop it. It is not dropped (statics never
/// are); its guardian stops it and removes its dir when the process exits. None without
/// `DESKGATE_IT=1`.
pub fn shared() -> Option<&'static Postgres> {
    static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
    SHARED.get_or_init(Postgres::start).as_ref()
}

impl Postgres {
    /// Starts a server, or returns None after printing why (eprintln) when real-server tests
    /// are not enabled: they run only when env DESKGATE_IT=1. With DESKGATE_IT=1 any failure
    /// to start panics with the script's stderr and the tail of the server's log.
    pub fn start() -> Option<Postgres> {
        if std::env::var("DESKGATE_IT").as_deref() != Ok("1") {
            eprintln!(
                "skipping real-server test: set DESKGATE_IT=1 to run it (after \
                 `tests/lab/postgres.sh install`)"
            );
            return None;
        }
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_servers);
        // A port picked as free can still be taken by someone else (another test process)
        // before PostgreSQL binds it: retry with a fresh port in that case only.
        Some(start_retrying("the private PostgreSQL", Self::try_start))
    }

    /// One start attempt; Err((report, looks like a port clash)).
    fn try_start() -> Result<Postgres, (String, bool)> {
        let dir = owned_dir("dgpg.")?;
        let [port] = free_ports::<1>();
        let t0 = Instant::now();
        let dir_s = dir.to_str().expect("temp dir path is UTF-8").to_owned();
        let fail = |msg: String| {
            let tail = log_tail(&dir, 30);
            let clash = msg.contains("in use") || tail.contains("in use");
            // nothing of a failed start may linger
            let _ = run_script(&["stop", &dir_s]);
            let _ = std::fs::remove_dir_all(&dir);
            release_ports(&[port]);
            (format!("{msg}\n{tail}"), clash)
        };
        let out = match run_script(&["start", &dir_s, &port.to_string()]) {
            Ok(out) => out,
            Err(e) => return Err(fail(format!("cannot run {}: {e}", script().display()))),
        };
        if !out.status.success() {
            return Err(fail(format!(
                "`postgres.sh start {dir_s} {port}` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let guardian = spawn_guardian(&dir);
        eprintln!(
            "postgres: started in {} ms: {} port {port}",
            t0.elapsed().as_millis(),
            dir.display()
        );
        Ok(Postgres {
            ca_file: dir.join("ca.pem"),
            password_file: dir.join("password"),
            dir,
            port,
            databases: AtomicU32::new(0),
            guardian,
        })
    }

    /// `postgres://deskgate@127.0.0.1:PORT/DATABASE`: no password (see [`Self::password`]),
    /// no TLS parameters (see [`Self::ca_file`], [`Self::tls_config`]).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://deskgate@127.0.0.1:{}/{database}", self.port)
    }

    /// A new empty database owned by `deskgate` on this server (test_1, test_2, ...); its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "test_{}",
            self.databases.fetch_add(1, Ordering::Relaxed) + 1
        );
        self.script_or_panic(&["createdb", self.dir_str(), &name]);
        self.url(&name)
    }

    /// The superuser `deskgate`'s password (the content of [`Self::password_file`]).
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .expect("read the PostgreSQL password file")
            .trim()
            .to_owned()
    }

    /// A rustls client configuration that trusts only this server's certificate
    /// (`sslmode=verify-full`; for tokio-postgres-rustls).
    pub fn tls_config(&self) -> rustls::ClientConfig {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_file).expect("read PostgreSQL CA file") {
            roots
                .add(cert.expect("parse PostgreSQL CA"))
                .expect("add PostgreSQL CA");
        }
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// Stops the server (`-m fast`: clients are disconnected, a checkpoint is written) and
    /// starts it again on the same port and data; returns once it accepts connections. Also
    /// starts a server that [`Self::stop`] stopped.
    pub fn restart(&self) {
        self.script_or_panic(&["restart", self.dir_str()]);
    }

    /// Stops the server at once (`-m immediate`, like a crash: the next start recovers from
    /// the WAL); quiet if it is not running.
    pub fn stop(&self) {
        self.script_or_panic(&["stop", self.dir_str()]);
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("PostgreSQL dir is UTF-8")
    }

    fn script_or_panic(&self, args: &[&str]) {
        let t0 = Instant::now();
        let out =
            run_script(args).unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        if !out.status.success() {
            panic!(
                "`postgres.sh {}` failed ({}):\n{}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                log_tail(&self.dir, 30)
            );
        }
        eprintln!("postgres: {} took {} ms", args[0], t0.elapsed().as_millis());
    }
}

impl Drop for Postgres {
    /// `postgres.sh stop` (immediate), then remove the dir; never panics.
    fn drop(&mut self) {
        let t0 = Instant::now();
        if let Some(mut guardian) = self.guardian.take() {
            let _ = guardian.kill();
            let _ = guardian.wait();
        }
        match run_script(&["stop", &self.dir.to_string_lossy()]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "postgres: stop {} failed ({}): {}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("postgres: cannot run postgres.sh stop: {e}"),
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("postgres: cannot remove {}: {e}", self.dir.display());
        }
        release_ports(&[self.port]);
        eprintln!(
            "postgres: stopped and removed in {} ms",
            t0.elapsed().as_millis()
        );
    }
}

/// `psql URL?sslmode=verify-full&sslrootcert=CA -c SQL` with `password`: its output, trimmed,
/// or its error.
fn psql(pg: &Postgres, url: &str, password: &str, sql: &str) -> Result<String, String> {
    let url = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        pg.ca_file.display()
    );
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &url,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The TLS handshake a rustls client (tokio-postgres-rustls) makes: SSLRequest, then TLS
/// verified against [`Postgres::tls_config`] for 127.0.0.1.
async fn rustls_handshake(pg: &Postgres) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", pg.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // length 8, code 80877103
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .map_err(|e| format!("SSLRequest: {e}"))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| format!("SSLRequest answer: {e}"))?;
    if answer != *b"S" {
        return Err(format!("the server declined TLS: {answer:?}"));
    }
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(pg.tls_config()));
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let _ = tls.shutdown().await;
    Ok(())
}

/// The `Uid:` (real) of a process, from /proc.
fn uid_of(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_private_postgres_starts_and_restarts() {
    let t0 = Instant::now();
    let Some(pg) = Postgres::start() else { return };
    let password = pg.password();
    assert!(password.len() >= 32, "a random password: {password:?}");
    let query = "SELECT 1, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let url = pg.url("deskgate");
    assert_eq!(psql(&pg, &url, &password, query).unwrap(), "1|t");
    let err = psql(&pg, &url, "wrong", "SELECT 1").expect_err("a wrong password must fail");
    assert!(err.contains("password authentication failed"), "{err}");
    rustls_handshake(&pg).await.unwrap();

    // PostgreSQL refuses root: as root the server runs as someone else
    let postmaster = std::fs::read_to_string(pg.dir.join("data/postmaster.pid")).unwrap();
    let postmaster = postmaster.lines().next().unwrap().trim().to_owned();
    if uid_of("self") == Some(0) {
        let uid = uid_of(&postmaster).expect("the postmaster is running");
        assert_ne!(uid, 0, "the postmaster {postmaster} runs as root");
    }

    let t_restart = Instant::now();
    pg.restart();
    eprintln!("restart: {} ms", t_restart.elapsed().as_millis());
    assert_eq!(psql(&pg, &url, &password, query).unwrap(), "1|t");

    // a fresh database, owned by deskgate
    let fresh = pg.fresh_database();
    assert!(fresh.ends_with("/test_1"), "{fresh}");
    let owner = "SELECT current_database(), pg_get_userbyid(datdba), pg_encoding_to_char(encoding) \
                 FROM pg_database WHERE datname = current_database()";
    assert_eq!(
        psql(&pg, &fresh, &password, owner).unwrap(),
        "test_1|deskgate|UTF8"
    );
    assert!(pg.fresh_database().ends_with("/test_2"));

    // stop refuses connections; restart brings the server back with its data
    pg.stop();
    psql(&pg, &url, &password, "SELECT 1").expect_err("the server is stopped");
    pg.restart();
    assert_eq!(
        psql(&pg, &fresh, &password, "SELECT current_database()").unwrap(),
        "test_1"
    );

    let dir = pg.dir.clone();
    drop(pg);
    assert!(!dir.exists(), "{} is removed", dir.display());
    eprintln!(
        "a_private_postgres_starts_and_restarts: {} ms",
        t0.elapsed().as_millis()
    );
}

#[tokio::test]
async fn the_shared_postgres_hands_out_fresh_databases() {
    let Some(pg) = shared() else { return };
    let (a, b) = (pg.fresh_database(), pg.fresh_database());
    assert_ne!(a, b);
    let password = pg.password();
    assert_eq!(
        psql(pg, &b, &password, "SELECT current_database()").unwrap(),
        b.rsplit('/').next().unwrap()
    );
    assert!(
        std::ptr::eq(pg, shared().unwrap()),
        "one server per process"
    );
}
