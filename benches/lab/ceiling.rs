//! The ceilings deskgate is measured against: what one IMAP connection can deliver from the
//! lab's Dovecot (a bare async-imap `UID FETCH 1:* BODY.PEEK[]` loop, plain and TLS), and
//! that loop plus the minimum real work of an ingester: parse every message with mail-parser
//! and store raw bytes and parsed fields in SQLite (WAL, a commit every 100 messages, the
//! writer on its own thread).

use std::fmt::Debug;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::harness::Lab;

/// What to do with each fetched message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Nothing: count it.
    Fetch,
    /// Parse, and store through the writer thread.
    ParseStore,
}

/// One run of the loop over `user`'s INBOX; returns (messages, elapsed). The timer starts
/// before SELECT, after LOGIN, and stops when the last row is committed.
pub async fn run(lab: &Lab, user: &str, tls: bool, work: Work, db: &Path) -> (usize, Duration) {
    if tls {
        let connector = tokio_rustls::TlsConnector::from(lab.tls_config());
        let tcp = TcpStream::connect((lab.host.as_str(), lab.imaps_port))
            .await
            .expect("connect IMAPS");
        tcp.set_nodelay(true).expect("nodelay");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = connector.connect(name, tcp).await.expect("TLS handshake");
        fetch_loop(lab, user, stream, work, db).await
    } else {
        let tcp = TcpStream::connect((lab.host.as_str(), lab.imap_port))
            .await
            .expect("connect IMAP");
        tcp.set_nodelay(true).expect("nodelay");
        fetch_loop(lab, user, tcp, work, db).await
    }
}

async fn fetch_loop<T>(lab: &Lab, user: &str, stream: T, work: Work, db: &Path) -> (usize, Duration)
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let mut client = async_imap::Client::new(stream);
    client.read_response().await.expect("greeting");
    let mut session = client
        .login(lab.address(user), lab.password(user))
        .await
        .map_err(|(e, _)| e)
        .expect("LOGIN");
    let writer = (work == Work::ParseStore).then(|| Writer::start(db));
    let parser = mail_parser::MessageParser::default();
    let started = Instant::now();
    session.select("INBOX").await.expect("SELECT");
    let mut count = 0;
    {
        let mut fetches = session
            .uid_fetch("1:*", "BODY.PEEK[]")
            .await
            .expect("UID FETCH");
        while let Some(fetch) = fetches.try_next().await.expect("FETCH response") {
            let Some(raw) = fetch.body() else { continue };
            count += 1;
            if let Some(writer) = &writer {
                writer.send(Row::parse(&parser, raw));
            }
        }
    }
    if let Some(writer) = writer {
        writer.finish();
    }
    let elapsed = started.elapsed();
    let _ = session.logout().await;
    (count, elapsed)
}

/// The fields an ingester needs from a message, and its raw bytes.
struct Row {
    message_id: Option<String>,
    from_address: Option<String>,
    from_name: Option<String>,
    subject: String,
    sent_date: Option<i64>,
    in_reply_to: Option<String>,
    body_text: String,
    attachments: usize,
    raw: Vec<u8>,
}

impl Row {
    fn parse(parser: &mail_parser::MessageParser, raw: &[u8]) -> Row {
        let message = parser.parse(raw);
        let m = message.as_ref();
        let from = m.and_then(|m| m.from()).and_then(|a| a.first());
        Row {
            message_id: m.and_then(|m| m.message_id()).map(str::to_owned),
            from_address: from.and_then(|a| a.address()).map(str::to_owned),
            from_name: from.and_then(|a| a.name()).map(str::to_owned),
            subject: m.and_then(|m| m.subject()).unwrap_or("").to_owned(),
            sent_date: m.and_then(|m| m.date()).map(|d| d.to_timestamp()),
            in_reply_to: m.and_then(|m| m.in_reply_to().as_text()).map(str::to_owned),
            body_text: m
                .and_then(|m| m.body_text(0))
                .map(|t| t.into_owned())
                .unwrap_or_default(),
            attachments: m.map_or(0, |m| m.attachment_count()),
            raw: raw.to_vec(),
        }
    }
}

/// The SQLite writer thread: rows arrive over a bounded channel, a commit every 100.
struct Writer {
    tx: mpsc::SyncSender<Row>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(db: &Path) -> Writer {
        let _ = std::fs::remove_file(db);
        let conn = rusqlite::Connection::open(db).expect("open ceiling database");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE messages (
                 id INTEGER PRIMARY KEY, message_id TEXT UNIQUE, from_address TEXT,
                 from_name TEXT, subject TEXT NOT NULL, sent_date INTEGER, in_reply_to TEXT,
                 body_text TEXT NOT NULL, attachments INTEGER NOT NULL, raw BLOB NOT NULL);",
        )
        .expect("create ceiling table");
        let (tx, rx) = mpsc::sync_channel::<Row>(1024);
        let thread = std::thread::spawn(move || {
            let mut conn = conn;
            let mut pending = 0;
            let mut transaction = conn.transaction().expect("BEGIN");
            for row in rx {
                transaction
                    .execute(
                        "INSERT INTO messages (message_id, from_address, from_name, subject,
                         sent_date, in_reply_to, body_text, attachments, raw)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        rusqlite::params![
                            row.message_id,
                            row.from_address,
                            row.from_name,
                            row.subject,
                            row.sent_date,
                            row.in_reply_to,
                            row.body_text,
                            row.attachments as i64,
                            row.raw
                        ],
                    )
                    .expect("INSERT");
                pending += 1;
                if pending == 100 {
                    transaction.commit().expect("COMMIT");
                    transaction = conn.transaction().expect("BEGIN");
                    pending = 0;
                }
            }
            transaction.commit().expect("COMMIT");
        });
        Writer { tx, thread }
    }

    fn send(&self, row: Row) {
        self.tx.send(row).expect("writer thread alive");
    }

    fn finish(self) {
        drop(self.tx);
        self.thread.join().expect("writer thread");
    }
}
