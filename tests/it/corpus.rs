//! The shared real-world corpus (../shared/corpus, 385 messages) through the whole ingest
//! step in-process: parse, classify, thread, decide, render and one store transaction each.
//! Skipped, with a note, where the corpus is absent.
//!
//! What the foundation promises for it: no message panics or fails to commit, every message
//! is stored exactly once (re-ingesting the corpus adds nothing), and no message the
//! manifest calls an ordinary `ticket` and that opens a ticket with a usable sender goes
//! unacknowledged. (Replies threaded into an earlier ticket are rightly not acknowledged.) Bounce and list recognition are a later feature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deskgate::classify::Class;
use deskgate::config::Config;
use deskgate::ingest::{Outcome, Source, ingest};
use deskgate::store::Store;

fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    dir.join("MANIFEST.tsv").exists().then_some(dir)
}

const CONFIG: &str = r#"
database = "corpus.db"
[support]
address = "support@example.test"
name = "Support"
[[mailbox]]
name = "corpus"
host = "127.0.0.1"
tls = "plain"
user = "support"
password = "x"
[smtp]
host = "127.0.0.1"
tls = "plain"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_message_is_stored_once_and_ordinary_mail_is_acknowledged() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: ../shared/corpus is not present");
        return;
    };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("manifest");
    let rows: Vec<(String, String)> = manifest
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some((fields.next()?.to_string(), fields.nth(1)?.to_string()))
        })
        .collect();
    assert!(rows.len() >= 300, "manifest has {} rows", rows.len());

    let state = tempfile::tempdir().expect("temp dir");
    let config =
        Arc::new(Config::from_toml(&state.path().join("deskgate.toml"), CONFIG).expect("config"));
    let store = Store::open(&config.database).expect("store");
    let now = jiff::Timestamp::now();
    let mut n_stored = 0;
    let mut missed_customers = Vec::new();
    let mut n_no_sender = 0;
    for pass in 0..2 {
        for (index, (path, expected)) in rows.iter().enumerate() {
            let raw = std::fs::read(dir.join(path)).expect("corpus file");
            let source = Source {
                arrival: deskgate::policy::Arrival::Live,
                mailbox: "corpus".into(),
                uidvalidity: 1 + pass,
                uid: index as u32 + 1,
            };
            let (outcome, _) = ingest(&store, &config, source, raw, now)
                .await
                .unwrap_or_else(|err| panic!("{path}: ingest failed: {err}"));
            match outcome {
                Outcome::Stored {
                    class,
                    acknowledgement,
                    created,
                    ..
                } => {
                    assert_eq!(pass, 0, "{path} stored again on the second pass");
                    n_stored += 1;
                    if class == Class::NoSender {
                        n_no_sender += 1;
                    } else if expected == "ticket" && created && acknowledgement.is_none() {
                        missed_customers.push(format!("{path}: {}", class.as_str()));
                    }
                }
                Outcome::Duplicate { .. } => {}
            }
        }
    }
    // Files that share a Message-ID (the threading folder has such pairs) are one message.
    assert!(
        n_stored > rows.len() * 9 / 10,
        "stored {n_stored} of {}",
        rows.len()
    );
    assert!(
        missed_customers.is_empty(),
        "ordinary mail left unacknowledged:\n{}",
        missed_customers.join("\n")
    );
    eprintln!(
        "corpus: {} files, {n_stored} stored ({n_no_sender} without a usable sender), second pass added nothing",
        rows.len()
    );
}
