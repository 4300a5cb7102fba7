//! Issue 16: one hostile mail cannot hurt the desk. Bounded work and memory per message
//! (in-process and on the real servers), escaped terminal output, private files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deskgate::config::Config;
use deskgate::ingest::{Outcome, Source, ingest};
use deskgate::model::TicketId;
use deskgate::policy::Arrival;
use deskgate::store::Store;

use crate::agents::{AGENTS, add_agents, write_relay_key};
use crate::cli::{VALID, deskgate};
use crate::daemon::{Imap, Setup, UNLIMITED_SENDERS};
use crate::harness::Lab;
use crate::hostile_mail::{against, controls, hostile_mails};
use crate::ops::NotifySocket;

const CUSTOMER: &str = "mallory@example.net";
const SUPPORT: &str = "support@example.test";

/// The configuration of the in-process desk: one mailbox, two agents, no per-sender limits.
fn config_text() -> String {
    format!("{VALID}[policy]\n{UNLIMITED_SENDERS}\n{AGENTS}")
}

/// A desk in a temporary directory: its configuration file and its store.
struct Desk {
    dir: tempfile::TempDir,
    config: Arc<Config>,
    store: Store,
}

impl Desk {
    fn new() -> Desk {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deskgate.toml");
        write_relay_key(dir.path());
        deskgate::files::write_private(&path, config_text().as_bytes()).expect("write config");
        let config = Arc::new(Config::load(&path).expect("config"));
        let store = Store::connect(&config.database).expect("store");
        Desk { dir, config, store }
    }

    async fn ingest(&self, uid: u32, raw: Vec<u8>) -> Outcome {
        let source = Source {
            mailbox: "support".into(),
            imap: Some((1, uid)),
            arrival: Arrival::Live,
        };
        ingest(
            &self.store,
            &self.config,
            source,
            raw,
            jiff::Timestamp::now(),
        )
        .await
        .expect("ingest")
        .0
    }

    /// `(kind, bytes, subject)` of each outbox row in `ids`.
    fn queued(&self, outcome: &Outcome) -> Vec<(String, usize, String)> {
        let Outcome::Stored { queued, .. } = outcome else {
            return Vec::new();
        };
        let conn =
            rusqlite::Connection::open(self.config.database.sqlite_path().expect("a SQLite store"))
                .expect("open database");
        queued
            .iter()
            .map(|id| {
                conn.query_row(
                    "SELECT o.kind, length(m.raw), m.subject FROM outbox o \
                     JOIN messages m ON m.id = o.message_row_id WHERE o.id = ?1",
                    [id.0],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize, r.get(2)?)),
                )
                .expect("outbox row")
            })
            .collect()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = deskgate(&self.dir.path().join("deskgate.toml"), args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

fn ordinary(n: usize) -> Vec<u8> {
    format!(
        "From: Carol <carol{n}@example.org>\r\nTo: {SUPPORT}\r\nSubject: printer {n}\r\n\
         Message-ID: <ordinary{n}.{}@example.org>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n\
         The printer is broken.\r\n",
        std::process::id()
    )
    .into_bytes()
}

/// Every kind of hostile mail is ingested without a panic, and what it makes deskgate send is
/// bounded by the caps, not by the message: notifications carry at most the analysed text and
/// 200 (empty) attachments, acknowledgements echo at most 200 characters of the subject.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_mail_is_handled_within_bounds() {
    let desk = Desk::new();
    for (uid, mail) in (1u32..).zip(hostile_mails(CUSTOMER, SUPPORT, 4)) {
        let size = mail.raw.len();
        let started = Instant::now();
        let outcome = desk.ingest(uid, mail.raw).await;
        let took = started.elapsed();
        eprintln!("{}: {size} bytes, {took:?}: {outcome:?}", mail.kind);
        // Generous: a debug build on a loaded machine; the benchmark measures release builds.
        assert!(took < Duration::from_secs(60), "{}: {took:?}", mail.kind);
        let expect_quarantine =
            ["re-subject-100k", "header-line-1mb", "nesting-beyond"].contains(&mail.kind);
        assert_eq!(
            matches!(outcome, Outcome::Quarantined { .. }),
            expect_quarantine,
            "{}: {outcome:?}",
            mail.kind
        );
        for (kind, bytes, subject) in desk.queued(&outcome) {
            assert!(
                bytes < 2_000_000,
                "{}: a {kind} of {bytes} bytes for a {size}-byte message",
                mail.kind
            );
            if kind == "acknowledgement" {
                assert!(subject.chars().count() <= 220, "{}: {subject}", mail.kind);
                assert!(!subject.chars().any(char::is_control), "{subject:?}");
                assert!(!subject.contains('\u{202e}'), "{subject:?}");
            }
        }
        if let Outcome::Stored { queued, .. } = &outcome {
            assert!(queued.len() <= 3, "{}: {queued:?}", mail.kind);
        }
    }
    // The next ordinary customer is handled as usual.
    let outcome = desk.ingest(1_000, ordinary(1)).await;
    assert!(
        matches!(
            outcome,
            Outcome::Stored {
                acknowledgement: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// A verified agent's answer that is one big quote is cut before the transaction and relayed
/// as the agent's own words only.
#[tokio::test(flavor = "multi_thread")]
async fn an_agents_quote_bomb_is_relayed_as_their_words_only() {
    let desk = Desk::new();
    let outcome = desk.ingest(1, ordinary(2)).await;
    let Outcome::Stored {
        ticket: Some(ticket),
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    let signer = deskgate::agent::sign::Signer::from_config(&desk.config).expect("signer");
    let reply_to = signer.reply_address(ticket, "agent1@example.test");
    let raw = format!(
        "From: Alice Agent <agent1@example.test>\r\nTo: {reply_to}\r\nSubject: Re: printer\r\n\
         Message-ID: <answer@example.test>\r\nDate: Mon, 07 Dec 2026 10:05:00 +0000\r\n\r\n\
         We will send a technician.\r\n\r\n{}",
        "> quoted\r\n".repeat(100_000)
    );
    let outcome = desk.ingest(2, raw.into_bytes()).await;
    let queued = desk.queued(&outcome);
    assert!(
        queued
            .iter()
            .any(|(kind, bytes, _)| kind == "reply" && *bytes < 20_000),
        "{queued:?}"
    );
    let shown = desk.cli(&["ticket", &ticket.0.to_string(), "--json"]);
    assert!(shown.contains("We will send a technician."), "{shown}");
    assert!(
        !shown.contains("> quoted"),
        "the quote was relayed: {shown}"
    );
}

/// Every control character a sender can put in a name, address, subject, attachment name or
/// body reaches the admin's terminal only as a visible escape; `--json` keeps the strings.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_are_escaped_in_every_human_view() {
    let desk = Desk::new();
    let mails = hostile_mails(CUSTOMER, SUPPORT, 1);
    let evil = mails
        .iter()
        .find(|m| m.kind == "controls-everywhere")
        .expect("controls mail");
    let outcome = desk.ingest(1, evil.raw.clone()).await;
    let Outcome::Stored {
        ticket: Some(TicketId(ticket)),
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    // A quarantined message whose raw bytes carry escapes too.
    let mut junk = b"From: \x1b]0;owned\x07 <x@example.net>\r\nX-Junk: ".to_vec();
    junk.extend(std::iter::repeat_n(b'j', 300 * 1024));
    junk.extend(b"\r\n\r\n\x1b[2Jcleared\r\n");
    let quarantined = desk.ingest(2, junk).await;
    let Outcome::Quarantined { id, .. } = quarantined else {
        panic!("{quarantined:?}")
    };
    let ticket = ticket.to_string();
    let id = id.0.to_string();
    let views: [&[&str]; 6] = [
        &["tickets"],
        &["ticket", &ticket],
        &["events"],
        &["outbox"],
        &["contact", CUSTOMER],
        &["quarantine", "show", &id],
    ];
    for view in views {
        let shown = desk.cli(view);
        let steering: Vec<char> = shown
            .chars()
            .filter(|c| *c != '\n' && *c != '\t')
            .filter(|c| c.is_control() || controls().contains(*c))
            .collect();
        assert!(
            steering.is_empty(),
            "{view:?} printed {steering:?}:\n{shown}"
        );
    }
    let transcript = desk.cli(&["ticket", &ticket]);
    for escaped in [
        "\\x1b[31mred",
        "\\x1b]52;c;ZXZpbA==\\x07",
        "\\u{202e}txt.exe",
        "\\x1b[1A\\x1b[2Koverwritten",
    ] {
        assert!(
            transcript.contains(escaped),
            "{escaped} not in:\n{transcript}"
        );
    }
    // Every control of the body, each shown by its escape.
    for c in controls().chars().filter(|c| *c != '\t') {
        let escape = if (c as u32) < 0x80 {
            format!("\\x{:02x}", c as u32)
        } else {
            format!("\\u{{{:x}}}", c as u32)
        };
        assert!(
            transcript.contains(&escape),
            "{escape} not in:\n{transcript}"
        );
    }
    let raw = desk.cli(&["quarantine", "show", &id]);
    assert!(
        raw.contains("\\x1b]0;owned\\x07") && raw.contains("\\x1b[2Jcleared"),
        "{raw}"
    );
    // JSON: the exact strings, escaped by JSON itself.
    let json: serde_json::Value =
        serde_json::from_str(&desk.cli(&["ticket", &ticket, "--json"])).expect("json");
    let text = json["transcript"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("\x1b[31mred\x1b]52;c;ZXZpbA==\x07\u{202e}txt.exe"),
        "{text:?}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The database deskgate creates (and its -wal/-shm, and a report) are private under the
/// usual umask 022; check-config warns about a database others can read.
#[test]
fn the_database_is_private_under_umask_022() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("deskgate.toml");
    write_relay_key(dir.path());
    deskgate::files::write_private(&config, config_text().as_bytes()).expect("write config");
    let mail = dir.path().join("mail.eml");
    std::fs::write(&mail, ordinary(3)).expect("write mail");
    let run = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask 022 && exec \"$0\" --config \"$1\" {args}"))
            .arg(env!("CARGO_BIN_EXE_deskgate"))
            .arg(&config)
            .stdin(std::fs::File::open(&mail).expect("mail"))
            .output()
            .expect("run deskgate");
        assert!(out.status.success(), "{args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run("ingest --mailbox support");
    let state = dir.path().join("state");
    let db = state.join("deskgate.db");
    assert_eq!(mode(&state), 0o700, "state directory");
    assert_eq!(mode(&db), 0o600, "database");
    // Whoever opens it next, SQLite's -wal and -shm take the database's mode.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE probe (x); DROP TABLE probe;")
        .expect("write");
    for file in deskgate::files::database_files(&db) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(conn);
    run(&format!(
        "report --html {}",
        state.join("report.html").display()
    ));
    assert_eq!(mode(&state.join("report.html")), 0o600, "report");

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let checked = run("check-config");
    assert!(
        checked.contains(&format!(
            "warning: {}: readable by group or others (mode 0644)",
            db.display()
        )),
        "{checked}"
    );
    run("ingest --mailbox support");
    assert_eq!(mode(&db), 0o600, "tightened when opened for writing");
}

/// systemd's `WatchdogSec=` for the daemon under test (the unit's is 60 s): it pings every
/// half of it, so a ping more than 1.5 s late fails the test.
const WATCHDOG: Duration = Duration::from_secs(3);

/// On the real servers, under systemd's watchdog: after each kind of hostile mail the next
/// ordinary customer is still acknowledged promptly, the daemon's peak RSS stays within
/// 2 × the message + 40 MB, and its watchdog pings never stop for a whole `WatchdogSec=`.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_mail_never_stalls_the_desk() {
    let Some(lab) = Lab::start() else { return };
    let setup = add_agents(Setup::new_as(
        &lab,
        Imap::Implicit,
        "support",
        UNLIMITED_SENDERS,
        "",
    ));
    let notify = NotifySocket::bind(setup.dir.path());
    let watchdog_usec = WATCHDOG.as_micros().to_string();
    let daemon = setup.start_with(&[
        ("DESKGATE_LOG", "deskgate=debug,info"),
        ("NOTIFY_SOCKET", &notify.path.display().to_string()),
        ("WATCHDOG_USEC", &watchdog_usec),
    ]);
    notify.wait(0, "WATCHDOG=1", |m| m == "WATCHDOG=1\n");
    let started = Instant::now();
    for mail in hostile_mails(&lab.address("mallory"), &lab.address("support"), 8) {
        // A debug build on a shared machine; the benchmark measures the release build.
        let m = against(&lab, &setup, &daemon, mail, Duration::from_secs(60)).await;
        // The bound is on the whole process in a release build (the benchmark checks it);
        // a debug build's own RSS is larger, so here it bounds what the message added.
        let bound_kb = (2 * m.bytes as u64) / 1024 + 40 * 1024;
        let added_kb = m.peak_kb.saturating_sub(m.before_kb);
        eprintln!(
            "{}: {} bytes, next acknowledgement after {:?}, peak RSS {} kB, {added_kb} kB more than before (bound {bound_kb} kB)",
            m.kind, m.bytes, m.next_ack, m.peak_kb
        );
        assert!(
            m.next_ack < Duration::from_secs(20),
            "{}: {:?}",
            m.kind,
            m.next_ack
        );
        assert!(
            added_kb <= bound_kb,
            "{}: peak RSS {} kB",
            m.kind,
            m.peak_kb
        );
    }
    let finished = Instant::now();
    let (status, _) = daemon.stop();
    assert!(status.success(), "{}", setup.log());
    let longest = longest_silence(&notify.pings(), started, finished);
    eprintln!("longest time without a watchdog ping: {longest:?} (WatchdogSec {WATCHDOG:?})");
    assert!(
        longest < WATCHDOG,
        "the watchdog went {longest:?} without a ping; systemd would have restarted deskgate"
    );
}

/// The longest time between `from` and `to` without a ping (`pings` in arrival order).
fn longest_silence(pings: &[Instant], from: Instant, to: Instant) -> Duration {
    let inside = pings.iter().copied().filter(|at| (from..to).contains(at));
    let marks: Vec<Instant> = std::iter::once(from)
        .chain(inside)
        .chain(std::iter::once(to))
        .collect();
    marks
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default()
}
