//! deskgate's benchmark on the project's own mail lab (Postfix + Dovecot on loopback, state on
//! tmpfs when `DESKGATE_LAB_PARENT` and `TMPDIR` point there, as `scripts/bench.sh` does).
//! Prints a Markdown table of every figure and writes it to `target/bench/report.md`.
//!
//!   cargo bench --bench lab -- [--n 1000,10000] [--trickle 30] [--load 10] [--smoke]
//!                              [--tickets 1000000]
//!                              [--only ingest,smtp-source,latency,memory,deadlines,hostile,
//!                                      postgres,failover]
//!
//! `--n`: mailbox sizes for the ceilings and the ingest run; `--trickle S`: seconds of 1 msg/s
//! for the latency; `--load S`: seconds of 50 msg/s; `--smoke`: N = 50 and a few seconds
//! each, to check that the benchmark works; `--tickets`: tickets in the store for the deadline
//! engine; `--only`: some parts only. `ingest` is the ceilings and deskgate's ingest and
//! outbox on SQLite; `postgres` the same ceilings and deskgate's ingest and outbox on
//! PostgreSQL with one instance and with two on one database, then `failover` (which runs
//! alone too): the mailbox's owner killed five times. The PostgreSQL parts use one private
//! server for the run (`tests/lab/postgres.sh`, under `DESKGATE_LAB_PARENT` as the lab).
//! `smtp-source` gives the outbox rows their share of Postfix's own rate. Needs root and
//! `DESKGATE_IT=1` (the lab).

#[path = "../../tests/it/daemon.rs"]
#[allow(dead_code)]
mod daemon;
#[path = "../../tests/it/harness.rs"]
mod harness;
#[path = "../../tests/it/hostile_mail.rs"]
mod hostile_mail;
#[path = "../../tests/it/postgres.rs"]
mod postgres;

mod ceiling;
mod db;
mod deadlines;
mod mail;

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ceiling::Work;
use daemon::{INSTANCES, Imap, Setup, UNIT_MALLOC, UNLIMITED_SENDERS};
use db::{Backend, Db};
use futures_util::TryStreamExt;
use harness::Lab;
use postgres::Postgres;

/// Log level of the measured daemon: the production default.
const LOG: (&str, &str) = ("DESKGATE_LOG", "info");
/// How often each ceiling loop runs; the median is reported.
const CEILING_RUNS: usize = 3;
/// How often the failover part kills the mailbox's owner.
const KILLS: usize = 5;

struct Options {
    sizes: Vec<usize>,
    trickle_secs: u64,
    load_secs: u64,
    smtp_source_messages: usize,
    large_mb: usize,
    deadline_tickets: usize,
    /// Parts to run ("ingest", "smtp-source", "latency", "memory", "deadlines", "hostile",
    /// "postgres", "failover"); empty: all.
    only: Vec<String>,
    /// Runs of each kind of hostile mail; the worst is reported.
    hostile_runs: usize,
}

impl Options {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

fn options() -> Options {
    let mut o = Options {
        sizes: vec![1_000, 10_000],
        trickle_secs: 30,
        load_secs: 10,
        smtp_source_messages: 2_000,
        large_mb: 25,
        deadline_tickets: 1_000_000,
        only: Vec::new(),
        hostile_runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--n" => {
                o.sizes = value("--n")
                    .split(',')
                    .map(|n| n.trim().parse().expect("--n: numbers separated by commas"))
                    .collect()
            }
            "--trickle" => o.trickle_secs = value("--trickle").parse().expect("--trickle: seconds"),
            "--load" => o.load_secs = value("--load").parse().expect("--load: seconds"),
            "--smoke" => {
                o.sizes = vec![50];
                o.trickle_secs = 3;
                o.load_secs = 1;
                o.smtp_source_messages = 50;
                o.large_mb = 2;
                o.deadline_tickets = 20_000;
                o.hostile_runs = 1;
            }
            "--tickets" => {
                o.deadline_tickets = value("--tickets").parse().expect("--tickets: a number")
            }
            "--only" => o.only = value("--only").split(',').map(str::to_owned).collect(),
            "--bench" => {} // cargo bench passes it
            other => panic!("unknown argument {other:?}; see the top of benches/lab/main.rs"),
        }
    }
    o
}

/// One row of the report.
struct Line {
    part: &'static str,
    what: String,
    figure: String,
    target: String,
}

#[derive(Default)]
struct Report {
    lines: Vec<Line>,
}

impl Report {
    fn add(&mut self, part: &'static str, what: impl Into<String>, figure: impl Into<String>) {
        self.add_target(part, what, figure, "");
    }

    fn add_target(
        &mut self,
        part: &'static str,
        what: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
    ) {
        let line = Line {
            part,
            what: what.into(),
            figure: figure.into(),
            target: target.into(),
        };
        eprintln!("bench: {} | {} | {}", line.what, line.figure, line.target);
        self.lines.push(line);
    }

    fn markdown(&self, machine: &str) -> String {
        let mut out =
            format!("{machine}\n\n| part | what | figure | target |\n|---|---|---|---|\n");
        for l in &self.lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                l.part, l.what, l.figure, l.target
            );
        }
        out
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary too, with
    // the test harness's arguments: there it only says how to run it.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the lab benchmark runs with `cargo bench --bench lab` (scripts/bench.sh)");
        return;
    }
    let options = options();
    let mut report = Report::default();
    let mut machine = machine();
    eprintln!("{machine}");
    let mut backends = Vec::new();
    if options.runs("ingest") {
        backends.push(Backend::Sqlite);
    }
    if options.runs("postgres") {
        backends.extend([1, 2].map(|instances| Backend::Postgres { instances }));
    }
    let failover_part = options.runs("postgres") || options.runs("failover");
    // One private server for the run, on the lab's tmpfs, with postgres.sh's settings.
    let pg =
        failover_part.then(|| Postgres::start().expect("the PostgreSQL parts need DESKGATE_IT=1"));
    if let Some(pg) = &pg {
        let about = db::describe(pg, &Db::postgres(pg, &pg.url("deskgate")).await).await;
        eprintln!("{about}");
        machine = format!("{machine} {about}");
    }

    // First, so that the outbox's rate can be given as a share of Postfix's own.
    let postfix = if options.runs("smtp-source") {
        Some(smtp_source(&mut report, options.smtp_source_messages).await)
    } else {
        None
    };
    if !backends.is_empty() {
        for &n in &options.sizes {
            ingest(&mut report, n, postfix, &backends, pg.as_ref()).await;
        }
    }
    if let Some(pg) = pg.as_ref().filter(|_| failover_part) {
        failover(&mut report, pg, KILLS).await;
    }
    if options.runs("latency") {
        latency(&mut report, 1, options.trickle_secs).await;
        latency(&mut report, 50, options.load_secs).await;
    }
    if options.runs("memory") {
        memory_start_stop(&mut report, options.large_mb).await;
    }
    if options.runs("hostile") {
        hostile(&mut report, options.large_mb, options.hostile_runs).await;
    }
    if options.runs("deadlines") {
        let due = 10_000.min(options.deadline_tickets / 2);
        deadlines::run(&mut report, options.deadline_tickets, due).await;
    }

    let text = report.markdown(&machine);
    println!("{text}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    std::fs::write(dir.join("report.md"), &text).expect("write report");
    eprintln!(
        "bench: report written to {}",
        dir.join("report.md").display()
    );
}

/// Two agents, each notified of every new ticket (`notify_new_ticket = "team"`, the default).
const AGENTS: &str = "\n[relay]\nsecret = \"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e\"\n\
                      [[agent]]\nname = \"Alice Agent\"\naddress = \"agent1@example.test\"\n\
                      [[agent]]\nname = \"Bob Agent\"\naddress = \"agent2@example.test\"\n";

fn lab() -> Lab {
    Lab::start()
        .expect("the benchmark needs the lab: run it as root with DESKGATE_IT=1 (scripts/bench.sh)")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Parts 1, 2 and 4 (the daemon's side): ceilings, then deskgate on the same `n`-message
/// mailbox with each of `backends` in turn ([`deskgate_on`]; PostgreSQL databases on `pg`).
/// `postfix`: smtp-source's rate with as many sessions as deskgate's default connections.
async fn ingest(
    report: &mut Report,
    n: usize,
    postfix: Option<f64>,
    backends: &[Backend],
    pg: Option<&Postgres>,
) {
    let lab = lab();
    let support = lab.address("support");
    let raws: Vec<Vec<u8>> = (0..n)
        .map(|i| mail::customer_mail(&lab.domain, &support, &format!("n{n}"), i))
        .collect();
    let bytes: usize = raws.iter().map(Vec::len).sum();
    let started = Instant::now();
    lab.append_many("support", "INBOX", &raws).await;
    let fill = started.elapsed();
    report.add(
        "1",
        format!("fill support/INBOX: N = {n}, {:.0} B average, 10 % with an attachment (MULTIAPPEND, not counted)", bytes as f64 / n as f64),
        format!("{:.2} s ({:.0} msg/s)", fill.as_secs_f64(), rate(n, fill)),
    );
    drop(raws);

    let scratch = tempfile::tempdir().expect("scratch dir");
    let db = scratch.path().join("ceiling.db");
    let mut ceilings = Vec::new();
    for (name, tls, work) in [
        (
            "bare `UID FETCH 1:* BODY.PEEK[]`, plain",
            false,
            Work::Fetch,
        ),
        ("bare `UID FETCH 1:* BODY.PEEK[]`, TLS", true, Work::Fetch),
        (
            "FETCH (TLS) + mail-parser + SQLite (WAL, commit/100, writer thread)",
            true,
            Work::ParseStore,
        ),
    ] {
        let mut rates = Vec::new();
        for _ in 0..CEILING_RUNS {
            let (count, elapsed) = ceiling::run(&lab, "support", tls, work, &db).await;
            assert_eq!(count, n, "{name}: fetched {count} of {n}");
            rates.push(rate(n, elapsed));
        }
        let r = median(rates);
        ceilings.push(r);
        report.add(
            "1",
            format!("{name}, N = {n}"),
            format!("{r:.0} msg/s (median of {CEILING_RUNS})"),
        );
    }

    for (i, &backend) in backends.iter().enumerate() {
        if i > 0 {
            // The run before flagged every message \Seen: to a fresh store the folder is
            // again the unread backlog the first run met.
            unread_again(&lab, "support").await;
        }
        let ceilings = Ceilings {
            tls_fetch: ceilings[1],
            parse_store: ceilings[2],
        };
        deskgate_on(report, &lab, n, ceilings, postfix, backend, pg).await;
    }
}

/// The ceilings part 2 is given as a share of.
#[derive(Clone, Copy)]
struct Ceilings {
    tls_fetch: f64,
    parse_store: f64,
}

/// Part 2, then part 4 on `backend`: deskgate (one daemon, or two instances started at the
/// same moment on one PostgreSQL database) ingests the `n` unread messages of support/INBOX
/// with its outbox held; then the outbox alone drains the `n` acknowledgements to the lab's
/// Postfix.
async fn deskgate_on(
    report: &mut Report,
    lab: &Lab,
    n: usize,
    ceilings: Ceilings,
    postfix: Option<f64>,
    backend: Backend,
    pg: Option<&Postgres>,
) {
    let store = backend.name();
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres { .. } => Some(
            pg.expect("a PostgreSQL server for the PostgreSQL rows")
                .fresh_database(),
        ),
    };
    let setups: Vec<Setup> = INSTANCES[..backend.instances()]
        .iter()
        .map(|instance| {
            let setup = Setup::new_as(
                lab,
                Imap::Implicit,
                "support",
                &format!("{UNLIMITED_SENDERS}\nacknowledge_backlog_within = \"1h\""),
                "",
            );
            if let (Some(pg), Some(url)) = (pg, &url) {
                setup.use_postgres(lab, pg, url, instance);
            }
            // The outbox is held (its SMTP server unreachable) while ingest is timed: Postfix
            // and Dovecot delivering three mails per message on the same two cores took about
            // 70 % of the CPU in a profile. Part 4 times the outbox alone.
            smtp_to(&setup, daemon::free_port());
            setup.append_config(AGENTS);
            setup
        })
        .collect();
    let db = match (pg, &url) {
        (Some(pg), Some(url)) => Db::postgres(pg, url).await,
        _ => Db::Sqlite(setups[0].database()),
    };
    let spawned = now_ms();
    let daemons: Vec<_> = setups.iter().map(|s| s.spawn_with(&[LOG])).collect();
    let limit = Duration::from_secs(60 + n as u64 / 20);
    let acks = "SELECT count(*) FROM outbox WHERE kind = 'acknowledgement'";
    db.wait_count(acks, n, limit).await;
    let [first, last] = db
        .ints("SELECT min(created_at), max(created_at) FROM outbox")
        .await;
    let [tickets] = db.ints("SELECT count(*) FROM tickets").await;
    assert_eq!(tickets as usize, n, "every message is a ticket");
    let [notifications] = db
        .ints("SELECT count(*) FROM outbox WHERE kind = 'notification'")
        .await;
    assert_eq!(
        notifications as usize,
        2 * n,
        "both agents notified of every ticket"
    );
    let whole = Duration::from_millis((last - spawned).max(1) as u64);
    let steady = Duration::from_millis((last - first).max(1) as u64);
    let r = rate(n, whole);
    let how = if setups.len() > 1 {
        "both processes start → last ticket + acknowledgement + 2 notifications committed (the outbox held; the lease's owner fetches, the other stands by)"
    } else {
        "process start → last ticket + acknowledgement + 2 notifications committed (the outbox held)"
    };
    report.add_target(
        "2",
        format!("deskgate ingest on {store} (release, IMAP TLS), N = {n}, two agents: {how}"),
        format!(
            "{r:.0} msg/s ({:.2} s); {:.0} % of FETCH+parse+SQLite, {:.0} % of bare TLS FETCH",
            whole.as_secs_f64(),
            100.0 * r / ceilings.parse_store,
            100.0 * r / ceilings.tls_fetch
        ),
        if n >= 10_000 {
            "≥ 50 % of FETCH+parse+SQLite"
        } else {
            "≥ 25 % of FETCH+parse+SQLite"
        },
    );
    report.add(
        "2",
        format!("deskgate ingest on {store}, N = {n}: first → last acknowledgement committed (after connect and SELECT)"),
        format!(
            "{:.0} msg/s; {:.0} % of FETCH+parse+SQLite",
            rate(n - 1, steady),
            100.0 * rate(n - 1, steady) / ceilings.parse_store
        ),
    );
    stop_all(&setups, daemons);

    // Part 4: the outbox alone. The acknowledgements, queued while the SMTP server was out of
    // reach, are due at once (as when an outage ends; the notifications are left out) and the
    // daemons restarted with the lab's Postfix; nothing is left to ingest.
    db.execute(
        "UPDATE outbox SET status = 'sent' WHERE kind = 'notification';
         UPDATE outbox SET status = 'queued', sent_at = NULL, attempts = 0, next_attempt_at = 0,
         last_error = NULL, delivered = '', refused = '', claimed_by = NULL,
         claimed_until = NULL WHERE kind = 'acknowledgement';",
    )
    .await;
    for setup in &setups {
        plain_smtp(setup, lab);
    }
    let sent_before: Vec<usize> = setups.iter().map(n_sent).collect();
    let daemons: Vec<_> = setups.iter().map(|s| s.spawn_with(&[LOG])).collect();
    let acks_sent =
        "SELECT count(*) FROM outbox WHERE status = 'sent' AND kind = 'acknowledgement'";
    db.wait_count(acks_sent, n, Duration::from_secs(120 + n as u64 / 10))
        .await;
    let [first, last] = db
        .ints("SELECT min(sent_at), max(sent_at) FROM outbox WHERE kind = 'acknowledgement'")
        .await;
    let drain = Duration::from_millis((last - first).max(1) as u64);
    let r = rate(n - 1, drain);
    let share = postfix.map_or(String::new(), |p| {
        format!("; {:.0} % of smtp-source with 4 sessions", 100.0 * r / p)
    });
    let (connections, split) = if setups.len() > 1 {
        let sent: Vec<String> = setups
            .iter()
            .zip(&sent_before)
            .zip(INSTANCES)
            .map(|((s, before), name)| format!("{name} {}", n_sent(s) - before))
            .collect();
        (
            "4 per instance, the default",
            format!("; sent by {}", sent.join(", ")),
        )
    } else {
        ("4, the default", String::new())
    };
    report.add_target(
        "4",
        format!(
            "outbox on {store} → local Postfix (plain SMTP, `[smtp] connections` = {connections}), {n} queued acknowledgements"
        ),
        format!("{r:.0} msg/s ({:.2} s first → last sent){share}{split}", drain.as_secs_f64()),
        "≥ 80 % of smtp-source, 4 sessions",
    );
    stop_all(&setups, daemons);
    // What Postfix accepted is delivered before anything else is measured.
    wait_queue_empty(lab).await;
}

/// SIGTERM to every daemon; each must exit cleanly.
fn stop_all(setups: &[Setup], daemons: Vec<daemon::Daemon>) {
    for (setup, daemon) in setups.iter().zip(daemons) {
        let (status, _) = daemon.stop();
        assert!(
            status.success(),
            "deskgate exited with {status}: {}",
            setup.log()
        );
    }
}

/// How many mails the daemons of `setup` have sent (its log's `outbox: sent` lines).
fn n_sent(setup: &Setup) -> usize {
    setup.log().matches("outbox: sent").count()
}

/// Clears `\Seen` and `\Flagged` from every message in `user`'s INBOX.
async fn unread_again(lab: &Lab, user: &str) {
    let mut session = lab.imap(user).await;
    session.select("INBOX").await.expect("SELECT");
    let _: Vec<_> = session
        .uid_store("1:*", "-FLAGS.SILENT (\\Seen \\Flagged)")
        .await
        .expect("UID STORE")
        .try_collect()
        .await
        .expect("UID STORE responses");
    let _ = session.logout().await;
}

/// Part 9 (issue 19): two instances on one PostgreSQL database share the idle support
/// mailbox (IMAP IDLE, no mail arriving); the lease's owner is SIGKILLed `kills` times
/// (restarted after each takeover, as the standby), each time until the other instance is
/// listed as the owner by `deskgate instances`.
async fn failover(report: &mut Report, pg: &Postgres, kills: usize) {
    let lab = lab();
    let url = pg.fresh_database();
    let setups = INSTANCES.map(|instance| {
        let setup = Setup::new_as(&lab, Imap::Implicit, "support", UNLIMITED_SENDERS, "");
        setup.use_postgres(&lab, pg, &url, instance);
        plain_smtp(&setup, &lab);
        setup
    });
    let mut daemons = [None, None];
    for (slot, setup) in daemons.iter_mut().zip(&setups) {
        *slot = Some(setup.start_with(&[LOG]));
    }
    let mut takeovers = Vec::new();
    for _ in 0..kills {
        let (index, took) =
            daemon::kill_owner(&setups, &mut daemons, "support", Duration::from_secs(60)).await;
        takeovers.push(took.as_secs_f64());
        daemons[index] = Some(setups[index].start_with(&[LOG]));
    }
    let listed = takeovers
        .iter()
        .map(|t| format!("{t:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let max = takeovers.iter().copied().fold(0.0, f64::max);
    report.add_target(
        "9",
        format!(
            "failover on PostgreSQL: SIGKILL of the mailbox's owner (two instances, idle mailbox in IDLE) → the other instance holds the lease (`deskgate instances`, polled every 0.1 s), {kills} kills"
        ),
        format!(
            "median {:.1} s, max {max:.1} s ({listed} s)",
            median(takeovers.clone())
        ),
        "≤ 15 s (lease TTL 10 s + standby asks every 2 s)",
    );
    stop_all(&setups, daemons.into_iter().flatten().collect());
}

/// Points the daemon's `[smtp]` at the lab's plain SMTP port (a local relay, no login),
/// which `smtp-source` measures too.
fn plain_smtp(setup: &Setup, lab: &Lab) {
    smtp_to(setup, lab.smtp_port);
}

/// Points the daemon's `[smtp]` at plain SMTP on 127.0.0.1:`port`.
fn smtp_to(setup: &Setup, port: u16) {
    setup.edit_config(|text| {
        let (head, _) = text.split_once("[smtp]").expect("[smtp] table");
        let (_, tail) = text.split_once("[outbox]").expect("[outbox] table");
        format!(
            "{head}[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"plain\"\ntimeout = \"10s\"\n\n[outbox]{tail}"
        )
    });
}

/// Part 4 (Postfix's side): `smtp-source` into the same lab, one and four sessions, each
/// session sending all its messages over one connection (`-d`); returns the rate with four.
async fn smtp_source(report: &mut Report, messages: usize) -> f64 {
    let lab = lab();
    let mut rates = Vec::new();
    for sessions in [1, 4] {
        let started = Instant::now();
        let out = std::process::Command::new("smtp-source")
            .args([
                "-s",
                &sessions.to_string(),
                "-m",
                &messages.to_string(),
                "-l",
                "2200",
                // One connection per session for all its messages, as the outbox keeps its own.
                "-d",
                "-f",
                &lab.address("support"),
                "-t",
                &lab.address("customer1"),
                &format!("{}:{}", lab.host, lab.smtp_port),
            ])
            .output()
            .expect("run smtp-source (Debian package postfix)");
        let elapsed = started.elapsed();
        assert!(
            out.status.success(),
            "smtp-source: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        report.add(
            "4",
            format!(
                "Postfix's own accept rate: smtp-source -d (connections kept), {sessions} session(s), 2.2 KB messages"
            ),
            format!("{:.0} msg/s", rate(messages, elapsed)),
        );
        rates.push(rate(messages, elapsed));
        wait_queue_empty(&lab).await;
    }
    rates[1]
}

/// Waits until the lab's Postfix has delivered everything it accepted.
async fn wait_queue_empty(lab: &Lab) {
    let spool = lab.dir.join("postfix/spool");
    let queued = || {
        ["maildrop", "incoming", "active", "deferred"]
            .iter()
            .map(|q| count_files(&spool.join(q)))
            .sum::<usize>()
    };
    let started = Instant::now();
    while queued() > 0 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// Part 3: customer mail accepted by Postfix (the 250 after DATA) → its acknowledgement
/// accepted by Postfix (the outbox row's `sent_at`, stamped on the server's 250), at
/// `per_second` for `secs` seconds, IMAP IDLE.
async fn latency(report: &mut Report, per_second: u32, secs: u64) {
    let lab = Arc::new(lab());
    let setup = Setup::new_as(&lab, Imap::Implicit, "sales", UNLIMITED_SENDERS, "");
    plain_smtp(&setup, &lab);
    let daemon = setup.start_with(&[LOG]);
    let sales = lab.address("sales");
    let total = (per_second as u64 * secs) as usize;
    let started = Instant::now();
    let mut sends = Vec::new();
    for i in 0..total {
        let at = started + Duration::from_secs_f64(i as f64 / f64::from(per_second));
        tokio::time::sleep_until(at.into()).await;
        let raw = mail::customer_mail(&lab.domain, &sales, &format!("lat{per_second}"), i);
        let from = mail::sender(&lab.domain, i);
        let (lab, sales) = (Arc::clone(&lab), sales.clone());
        sends.push(tokio::spawn(async move {
            lab.send(&from, &[&sales], &raw).await;
            (
                format!("bench-lat{per_second}-{i}@client.example.net"),
                now_ms(),
            )
        }));
    }
    let mut accepted = std::collections::HashMap::new();
    for send in sends {
        let (id, at) = send.await.expect("send task");
        accepted.insert(id, at);
    }
    let db = setup.database();
    let sent = "SELECT count(*) FROM outbox WHERE kind = 'acknowledgement' AND status = 'sent'";
    Db::Sqlite(db.clone())
        .wait_count(sent, total, Duration::from_secs(60 + secs))
        .await;
    let rows: Vec<(String, i64, i64)> = {
        let conn = rusqlite::Connection::open(&db).expect("open database");
        let mut stmt = conn
            .prepare(
                "SELECT m.message_id, o.created_at, o.sent_at FROM messages m
                 JOIN outbox o ON o.ticket_id = m.ticket_id AND o.kind = 'acknowledgement'
                 WHERE m.direction = 'in'",
            )
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let mut to_commit = Vec::new();
    let mut to_sent = Vec::new();
    for (id, created, sent) in rows {
        let id = id.trim_matches(['<', '>']);
        if let Some(at) = accepted.get(id) {
            to_commit.push((created - at) as f64 / 1000.0);
            to_sent.push((sent - at) as f64 / 1000.0);
        }
    }
    assert_eq!(
        to_sent.len(),
        total,
        "every customer mail has its acknowledgement"
    );
    let (c50, c99) = percentiles(&mut to_commit);
    let (s50, s99) = percentiles(&mut to_sent);
    report.add_target(
        "3",
        format!("customer mail accepted by Postfix → acknowledgement accepted by Postfix, {per_second} msg/s for {secs} s (n = {total}, IDLE)"),
        format!("p50 {s50:.3} s, p99 {s99:.3} s (of which → ack committed: p50 {c50:.3} s, p99 {c99:.3} s)"),
        "p50 < 0.7 s, p99 < 1.5 s",
    );
    let (status, _) = daemon.stop();
    assert!(
        status.success(),
        "deskgate exited with {status}: {}",
        setup.log()
    );
}

fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at =
        |p: f64| values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1];
    (at(0.50), at(0.99))
}

/// Parts 5 and 7: start → READY (sd_notify) and → three mailboxes connected, RSS idle, peak
/// RSS while ingesting one large message, SIGTERM → exit.
async fn memory_start_stop(report: &mut Report, large_mb: usize) {
    let lab = lab();
    let setup = Setup::new_as(
        &lab,
        Imap::Implicit,
        "support",
        &format!(
            "{UNLIMITED_SENDERS}\nmax_message_size_mb = {}",
            large_mb + 5
        ),
        "",
    );
    plain_smtp(&setup, &lab);
    for user in ["sales", "lead"] {
        setup.append_config(&format!(
            "[[mailbox]]\nname = \"{user}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nuser = \"{}\"\npassword = \"{}\"\n",
            lab.imaps_port,
            lab.address(user),
            lab.password(user)
        ));
    }
    let socket_path = setup.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("socket timeout");
    let started = Instant::now();
    let daemon = setup.spawn_with(&[LOG, ("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8"))]);
    let mut buf = [0u8; 512];
    loop {
        let len = socket
            .recv(&mut buf)
            .expect("no READY=1 from deskgate within 30 s");
        if String::from_utf8_lossy(&buf[..len])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    let ready = started.elapsed();
    while setup.log().matches("mailbox connected").count() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "mailboxes did not connect: {}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connected = started.elapsed();
    report.add(
        "7",
        "start → READY=1 (sd_notify)",
        format!("{:.0} ms", ready.as_secs_f64() * 1000.0),
    );
    report.add(
        "7",
        "start → all 3 mailboxes connected (IMAP TLS login, SELECT, IDLE)",
        format!("{:.0} ms", connected.as_secs_f64() * 1000.0),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = daemon.status_kb("VmRSS");
    report.add_target(
        "5",
        "RSS idle, 3 mailboxes (IDLE), 5 s after connecting",
        format!("{:.1} MB", idle as f64 / 1024.0),
        "≤ 30 MB",
    );

    let raw = mail::large_mail(&lab.domain, &lab.address("support"), large_mb);
    let size = raw.len();
    lab.append("support", "INBOX", &raw).await;
    drop(raw);
    let acks = "SELECT count(*) FROM outbox WHERE kind = 'acknowledgement'";
    Db::Sqlite(setup.database())
        .wait_count(acks, 1, Duration::from_secs(120))
        .await;
    let peak = daemon.status_kb("VmHWM");
    let after = daemon.status_kb("VmRSS");
    report.add(
        "5",
        format!(
            "peak RSS ingesting one {:.1} MB message (max_message_size_mb = {})",
            size as f64 / 1_048_576.0,
            large_mb + 5
        ),
        format!(
            "{:.1} MB (RSS afterwards {:.1} MB)",
            peak as f64 / 1024.0,
            after as f64 / 1024.0
        ),
    );
    let (status, took) = daemon.stop();
    assert!(
        status.success(),
        "deskgate exited with {status}: {}",
        setup.log()
    );
    report.add(
        "7",
        "SIGTERM → exit (3 mailboxes in IDLE)",
        format!("{:.0} ms", took.as_secs_f64() * 1000.0),
    );
}

/// Part 8: every kind of hostile mail (issue 16), sized at the message size limit where it
/// scales, `runs` times each; the worst of the runs. In-process: `ingest` through the library
/// (parse, analysis, the write transaction, rendering). On the lab: the release daemon, the
/// hostile mail then an ordinary customer's, until that customer's acknowledgement is
/// committed (Dovecot's IDLE notification included), and the peak RSS of a daemon started
/// for that message.
async fn hostile(report: &mut Report, mb: usize, runs: usize) {
    let lab = lab();
    let policy = format!("{UNLIMITED_SENDERS}\nmax_message_size_mb = {}", mb + 5);
    let setup = Setup::new_as(&lab, Imap::Implicit, "support", &policy, "");
    plain_smtp(&setup, &lab);
    setup.append_config(AGENTS);
    let local = Setup::new_as(&lab, Imap::Implicit, "support", &policy, "");
    local.append_config(AGENTS);
    let config = Arc::new(deskgate::config::Config::load(&local.config).expect("config"));
    let store = deskgate::store::Store::connect(&config.database).expect("store");
    let (mallory, support) = (lab.address("mallory"), lab.address("support"));
    let mut worst: Vec<(&'static str, usize, Duration, Duration, u64, u64)> = Vec::new();
    for run in 0..runs {
        for (i, mail) in hostile_mail::hostile_mails(&mallory, &support, mb)
            .into_iter()
            .enumerate()
        {
            let source = deskgate::ingest::Source {
                mailbox: "support".into(),
                imap: Some((1, (run * 100 + i + 1) as u32)),
                arrival: deskgate::policy::Arrival::Live,
            };
            let took = Instant::now();
            deskgate::ingest::ingest(
                &store,
                &config,
                source,
                mail.raw.clone(),
                jiff::Timestamp::now(),
            )
            .await
            .expect("ingest");
            let in_process = took.elapsed();
            // A fresh daemon for each message: its peak RSS is this message's, not the heap
            // the allocator kept from an earlier one.
            let daemon = connected(&setup).await;
            let m =
                hostile_mail::against(&lab, &setup, &daemon, mail, Duration::from_secs(300)).await;
            let (status, _) = daemon.stop();
            assert!(
                status.success(),
                "deskgate exited with {status}: {}",
                setup.log()
            );
            if run == 0 {
                worst.push((
                    m.kind,
                    m.bytes,
                    in_process,
                    m.next_ack,
                    m.peak_kb,
                    m.before_kb,
                ));
            } else {
                let w = &mut worst[i];
                w.2 = w.2.max(in_process);
                w.3 = w.3.max(m.next_ack);
                if m.peak_kb > w.4 {
                    (w.4, w.5) = (m.peak_kb, m.before_kb);
                }
            }
        }
    }
    for (kind, bytes, in_process, next_ack, peak_kb, before_kb) in worst {
        let bound_mb = 2.0 * bytes as f64 / 1_048_576.0 + 40.0;
        let peak_mb = peak_kb as f64 / 1024.0;
        report.add_target(
            "8",
            format!(
                "hostile mail `{kind}`, {:.2} MB: ingest in-process; the next customer's acknowledgement committed after it (daemon); peak RSS (worst of {runs})",
                bytes as f64 / 1_048_576.0
            ),
            format!(
                "{:.3} s; {:.2} s; {peak_mb:.1} MB{} (RSS before: {:.1} MB)",
                in_process.as_secs_f64(),
                next_ack.as_secs_f64(),
                if peak_mb <= bound_mb { "" } else { " (over)" },
                before_kb as f64 / 1024.0
            ),
            format!("≤ 1 s; ≤ 2 s; ≤ {bound_mb:.0} MB"),
        );
    }
}

/// Starts the daemon of `setup` and waits until its mailbox is connected.
async fn connected(setup: &Setup) -> daemon::Daemon {
    let before = setup.log().matches("mailbox connected").count();
    // As the systemd unit runs it.
    let [arenas, mmap] = UNIT_MALLOC;
    let daemon = setup.spawn_with(&[LOG, arenas, mmap]);
    let started = Instant::now();
    while setup.log().matches("mailbox connected").count() == before {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon
}

/// The machine and software the figures come from.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024 / 1024);
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let kernel = run("uname", &["-r"]);
    let dovecot = run("dovecot", &["--version"]);
    let postfix = run("postconf", &["-d", "-h", "mail_version"]);
    let commit = run(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let state = std::env::var("DESKGATE_LAB_PARENT").unwrap_or_else(|_| "/tmp".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "Machine: {cores} cores ({cpu}), {mem} GiB RAM, Linux {kernel}; Dovecot {dovecot}, Postfix {postfix}; \
         lab and daemon state under {state}; deskgate {commit} (release build); one run on {}, \
         load average at the start {load}.",
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    )
}
