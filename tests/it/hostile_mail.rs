//! Hostile mail, as anyone on the internet can send it to the support address (issue 16).
//! Used by the in-process test and the real-server test in `hostile.rs`, and by the benchmark
//! (`benches/lab`, which mounts this file).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use deskgate::parse::MAX_NESTING;

use crate::daemon::{Daemon, Setup};
use crate::harness::{Lab, message};

/// One kind of hostile mail.
pub struct Hostile {
    pub kind: &'static str,
    pub raw: Vec<u8>,
}

/// Every kind, from `from` to `to`; `mb` sizes the kinds that scale with the size limit
/// (single-line bodies, base64 garbage).
pub fn hostile_mails(from: &str, to: &str, mb: usize) -> Vec<Hostile> {
    let bytes = mb << 20;
    let mut all = vec![
        quote_bomb(from, to, "quote-bomb", &"> x\n".repeat(100_000)),
        quote_bomb(
            from,
            to,
            "quote-bomb-headers",
            &"On Mon, 1 Jan 2026 at 10:00, X <x@example.net> wrote:\n>\n".repeat(8_000),
        ),
        // 240 KB: under the header limit, so it is stripped; 300 KB: over it, quarantined.
        Hostile {
            kind: "re-subject-60k",
            raw: plain(
                from,
                to,
                &format!("{}x", "Re: ".repeat(60_000)),
                "",
                "Hello",
            ),
        },
        Hostile {
            kind: "re-subject-100k",
            raw: plain(
                from,
                to,
                &format!("{}x", "Re:".repeat(100_000)),
                "",
                "Hello",
            ),
        },
        Hostile {
            kind: "parts-50k",
            raw: many_parts(from, to, 50_000),
        },
        Hostile {
            kind: "parts-150k",
            raw: many_parts(from, to, 150_000),
        },
        // MIME levels, the text part included: at the limit is read, one more quarantined.
        Hostile {
            kind: "nesting-at-limit",
            raw: nested(from, to, MAX_NESTING - 1),
        },
        Hostile {
            kind: "nesting-beyond",
            raw: nested(from, to, MAX_NESTING),
        },
        Hostile {
            kind: "addresses-10k",
            raw: many_addresses(from, to, 10_000),
        },
        Hostile {
            kind: "header-line-1mb",
            raw: plain(
                from,
                to,
                "long header",
                &format!("X-Junk: {}\r\n", "j".repeat(1 << 20)),
                "Hello",
            ),
        },
        Hostile {
            kind: "base64-garbage",
            raw: base64_garbage(from, to, bytes),
        },
        Hostile {
            kind: "single-line-body",
            raw: plain(from, to, "one line", "", &"word ".repeat(bytes / 5)),
        },
    ];
    all.push(Hostile {
        kind: "controls-everywhere",
        raw: controls_everywhere(from, to),
    });
    all
}

/// What one hostile mail did to a running daemon.
pub struct Measured {
    pub kind: &'static str,
    pub bytes: usize,
    /// From the hostile mail's arrival in the folder to the commit of the acknowledgement of
    /// an ordinary customer's mail that arrived right after it.
    pub next_ack: Duration,
    /// The daemon's peak RSS (VmHWM) meanwhile, in kB.
    pub peak_kb: u64,
    /// Its RSS just before, in kB.
    pub before_kb: u64,
}

/// Puts `mail` into support's INBOX and an ordinary customer's mail right after it, and
/// waits (at most `limit`) for the ordinary mail's acknowledgement to be committed.
pub async fn against(
    lab: &Lab,
    setup: &Setup,
    daemon: &Daemon,
    mail: Hostile,
    limit: Duration,
) -> Measured {
    // Unique: with a subject shared by an earlier run, an earlier acknowledgement would end
    // the wait at once, and the next daemon would inherit this mail unprocessed.
    let subject = format!("ordinary after {} {}", mail.kind, uuid_like());
    let ordinary = message(
        &lab.address("customer1"),
        &lab.address("support"),
        &subject,
        &format!("{}.{}@example.test", mail.kind, uuid_like()),
        "Hello, my printer is broken.\n",
        &[],
    );
    let bytes = mail.raw.len();
    daemon.reset_peak();
    let before_kb = daemon.status_kb("VmRSS");
    lab.append("support", "INBOX", &mail.raw).await;
    drop(mail.raw);
    let arrived = Instant::now();
    lab.append("support", "INBOX", &ordinary).await;
    let acknowledged = "SELECT count(*) FROM outbox o JOIN messages m ON m.id = o.message_row_id \
                        WHERE o.kind = 'acknowledgement' AND m.subject LIKE '%' || ?1 || '%'";
    loop {
        let found = rusqlite::Connection::open_with_flags(
            setup.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|db| db.query_row(acknowledged, [&subject], |r| r.get::<_, i64>(0)));
        if found.is_ok_and(|n| n > 0) {
            break;
        }
        assert!(
            arrived.elapsed() < limit,
            "{}: no acknowledgement of the next mail within {limit:?}; daemon log:\n{}",
            mail.kind,
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Measured {
        kind: mail.kind,
        bytes,
        next_ack: arrived.elapsed(),
        peak_kb: daemon.status_kb("VmHWM"),
        before_kb,
    }
}

/// Every C0 control but CR and LF, DEL, every C1 control and the bidi controls.
pub fn controls() -> String {
    (0u32..0x20)
        .filter(|c| *c != 0x0a && *c != 0x0d)
        .chain(0x7f..0xa0)
        .chain([0x061c, 0x200e, 0x200f])
        .chain(0x202a..=0x202e)
        .chain(0x2066..=0x2069)
        .filter_map(char::from_u32)
        .collect()
}

fn message_id() -> String {
    format!("<{}@hostile.example.net>", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}.{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A text/plain message; `extra` are more header lines (each ending in CRLF).
fn plain(from: &str, to: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Mallory <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {}\r\n\
         Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n{extra}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        message_id()
    )
    .into_bytes()
}

fn quote_bomb(from: &str, to: &str, kind: &'static str, quote: &str) -> Hostile {
    Hostile {
        kind,
        raw: plain(from, to, kind, "", &format!("3\n{quote}")),
    }
}

/// `n` empty attachments after a text part.
fn many_parts(from: &str, to: &str, n: usize) -> Vec<u8> {
    let mut raw = String::new();
    let _ = write!(
        raw,
        "From: Mallory <{from}>\r\nTo: {to}\r\nSubject: {n} parts\r\nMessage-ID: {}\r\n\
         Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nSee attached.\r\n",
        message_id()
    );
    for i in 0..n {
        let _ = write!(
            raw,
            "--b\r\nContent-Disposition: attachment; filename=f{i}\r\n\r\n\r\n"
        );
    }
    raw.push_str("--b--\r\n");
    raw.into_bytes()
}

/// Multiparts nested `depth` deep, the text at the bottom.
fn nested(from: &str, to: &str, depth: usize) -> Vec<u8> {
    let mut raw = format!(
        "From: Mallory <{from}>\r\nTo: {to}\r\nSubject: nested {depth}\r\nMessage-ID: {}\r\n\
         Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b0\r\n\r\n",
        message_id()
    );
    for level in 1..depth {
        let _ = write!(
            raw,
            "--b{}\r\nContent-Type: multipart/mixed; boundary=b{level}\r\n\r\n",
            level - 1
        );
    }
    let _ = write!(
        raw,
        "--b{}\r\nContent-Type: text/plain\r\n\r\ndeep down\r\n",
        depth - 1
    );
    for level in (0..depth).rev() {
        let _ = write!(raw, "--b{level}--\r\n");
    }
    raw.into_bytes()
}

/// `n` addresses, half in To and half in Cc (folded lines).
fn many_addresses(from: &str, to: &str, n: usize) -> Vec<u8> {
    let list = |start: usize| {
        (start..start + n / 2)
            .map(|i| format!("u{i}@example.org"))
            .collect::<Vec<_>>()
            .join(",\r\n ")
    };
    plain(
        from,
        &format!("{to},\r\n {}", list(0)),
        "many recipients",
        &format!("Cc: {}\r\n", list(n / 2)),
        "Hello",
    )
}

/// A text part declared base64 that is not base64, `bytes` long.
fn base64_garbage(from: &str, to: &str, bytes: usize) -> Vec<u8> {
    let line = "!!@@##$$%%^^&&**(())__++==--;;::''\"\",,..<<>>??//\\\\||~~``AAAA==\r\n";
    let mut raw = format!(
        "From: Mallory <{from}>\r\nTo: {to}\r\nSubject: garbage\r\nMessage-ID: {}\r\n\
         Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        message_id()
    );
    raw.push_str(&line.repeat(bytes / line.len()));
    raw.into_bytes()
}

/// Every control character in every header deskgate reads (as RFC 2047 encoded words, the
/// way they get through a server) and raw in the body: terminal escapes, OSC 52, bidi.
fn controls_everywhere(from: &str, to: &str) -> Vec<u8> {
    let evil = format!(
        "{}\x1b[31mred\x1b]52;c;ZXZpbA==\x07\u{202e}txt.exe",
        controls()
    );
    let b64 = |text: &str| format!("=?utf-8?b?{}?=", base64(text.as_bytes()));
    format!(
        "From: {} <{from}>\r\nTo: {} <{to}>\r\nCc: {} <cc@example.org>\r\n\
         Subject: {}\r\nMessage-ID: {}\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{evil}\r\n\x1b[1A\x1b[2Koverwritten\r\n\
         --b\r\nContent-Disposition: attachment; filename=\"{}\"\r\n\r\nx\r\n--b--\r\n",
        b64(&evil),
        b64(&evil),
        b64(&evil),
        b64(&evil),
        message_id(),
        b64(&evil),
    )
    .into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
