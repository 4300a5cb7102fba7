//! `deskgate stats` and `report --html` through the binary: on a month of recorded events, the
//! page shows the numbers `stats --json` prints and needs nothing from elsewhere; on the real
//! servers, the figures are what happened to the customers' mail.

use std::time::Duration;

use deskgate::store::Store;
use serde_json::Value;

use crate::agents::{answer, with_agents};
use crate::cli::deskgate;
use crate::daemon::parsed;
use crate::harness::{Lab, message};
use crate::kpi_demo::record_month;

/// A configuration whose database holds four weeks of a support desk's events.
fn desk() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("deskgate.toml");
    let text = crate::cli::VALID
        .replace("state/deskgate.db", "deskgate.db")
        .replace(
            "name = \"Support\"\n",
            "name = \"Example <Support>\"\ntimezone = \"Europe/Athens\"\n",
        );
    std::fs::write(&config, text).expect("write config");
    let store = Store::open(&dir.path().join("deskgate.db")).expect("open store");
    record_month(
        &store,
        "2026-10-26T00:00:00Z".parse().expect("start"),
        28,
        "2026-11-23T12:00:00Z".parse().expect("end"),
        7,
    );
    (dir, config)
}

const PERIOD: [&str; 4] = ["--since", "2026-10-26", "--until", "2026-11-23"];

/// Every `NAME="VALUE"` attribute of `html`, in order.
fn attributes<'h>(html: &'h str, name: &str) -> Vec<&'h str> {
    let key = format!(" {name}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            let rest = &html[i + key.len()..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect()
}

#[test]
fn the_report_shows_the_numbers_of_stats_json() {
    let (dir, config) = desk();
    let output = deskgate(&config, &[&["stats", "--json"][..], &PERIOD].concat());
    assert!(output.status.success(), "{output:?}");
    let stats: Value = serde_json::from_slice(&output.stdout).expect("stats JSON");
    let page = dir.path().join("report.html");
    let page_arg = page.to_str().expect("utf-8 path");
    let output = deskgate(
        &config,
        &[&["report", "--html", page_arg][..], &PERIOD].concat(),
    );
    assert!(output.status.success(), "{output:?}");
    let html = std::fs::read_to_string(&page).expect("read report");

    // The demo month is a busy desk: the comparison below is over real numbers.
    let all = &stats["all"];
    let opened = all["opened"].as_u64().expect("opened");
    assert!((280..450).contains(&opened), "{opened}");
    let share = all["within_policy"]["share"].as_f64().expect("share");
    assert!((0.8..0.99).contains(&share), "{share}");
    assert!(all["escalations"][1]["count"].as_u64() > Some(0), "{all}");

    let pointers = attributes(&html, "data-kpi");
    let values = attributes(&html, "data-value");
    let shown: Vec<(&str, &str)> = html
        .split("data-kpi=\"")
        .skip(1)
        .map(|s| {
            let pointer = &s[..s.find('"').expect("quote")];
            let value = s.split("data-value=\"").nth(1).expect("data-value");
            (pointer, &value[..value.find('"').expect("quote")])
        })
        .collect();
    assert!(shown.len() > 60, "only {} figures in the page", shown.len());
    for (pointer, value) in &shown {
        let expected = stats
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer}"));
        assert_eq!(*value, expected.to_string(), "{pointer}");
    }
    for pointer in [
        "/all/opened",
        "/all/first_response/median_ms",
        "/all/first_response/p90_ms",
        "/all/within_policy/share",
        "/all/backlog/open",
        "/all/satisfaction/average",
        "/all/satisfaction/response_rate",
        "/all/escalations/1/count",
        "/languages/ar/first_response/median_ms",
        "/languages/el/opened",
        "/all/first_response/histogram/6/count",
        "/all/backlog/by_age/4/count",
    ] {
        assert!(pointers.contains(&pointer), "{pointer} not shown");
    }
    assert!(values.len() >= pointers.len());
    // The headline median as people read it.
    let median = all["first_response"]["median_ms"].as_i64().expect("median");
    assert!(
        html.contains(&format!(
            r#"data-value="{median}">{}</span>"#,
            deskgate::kpi::duration_text(median)
        )),
        "median {median}"
    );

    // Days and weeks are the same computation over their part of the period.
    let sum = |series: &str| -> u64 {
        html.split(&format!("data-series=\"{series}\" data-value=\""))
            .skip(1)
            .map(|s| {
                s[..s.find('"').expect("quote")]
                    .parse::<u64>()
                    .expect("count")
            })
            .sum()
    };
    assert_eq!(attributes(&html, "data-day").len(), 2 * 28);
    assert_eq!(sum("opened"), opened);
    assert_eq!(sum("resolved"), all["resolved"].as_u64().expect("resolved"));
    let decided: u64 = attributes(&html, "data-decided")
        .iter()
        .map(|n| n.parse::<u64>().expect("decided"))
        .sum();
    assert_eq!(Some(decided), all["within_policy"]["decided"].as_u64());
    assert_eq!(attributes(&html, "data-week").len(), 4);

    // Self-contained, and the support name is escaped.
    for outside in [
        "<script", "<link", "<img", "src=", "url(", "@import", "https://",
    ] {
        assert!(!html.contains(outside), "{outside}");
    }
    assert_eq!(
        html.matches("http://").count(),
        html.matches(r#"xmlns="http://www.w3.org/2000/svg""#)
            .count()
    );
    assert!(html.contains("Example &lt;Support&gt; — support figures"));
}

#[test]
fn stats_prints_an_aligned_table_and_refuses_what_it_cannot_read() {
    let (_dir, config) = desk();
    let output = deskgate(&config, &[&["stats"][..], &PERIOD].concat());
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("2026-10-26 00:00 EET to 2026-11-23 00:00 EET (Europe/Athens)"),
        "{text}"
    );
    let header = lines[2];
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["all", "ar", "el", "en"]
    );
    let opened = lines
        .iter()
        .find(|l| l.starts_with("tickets opened"))
        .expect("opened row");
    assert_eq!(opened.len(), header.len(), "{text}");
    let counts: Vec<u64> = opened
        .split_whitespace()
        .skip(2)
        .map(|n| n.parse().expect("count"))
        .collect();
    assert_eq!(counts[0], counts[1..].iter().sum::<u64>(), "{text}");
    assert!(text.contains("\nescalations, level 2 "), "{text}");

    for (args, message) in [
        (
            &["stats", "--since", "last tuesday"][..],
            "`last tuesday` is not a date, a time or a duration",
        ),
        (
            &["stats", "--since", "2026-11-23", "--until", "2026-11-01"][..],
            "the period is empty: --since (2026-11-22T22:00:00Z) is not before --until",
        ),
        (
            &["stats", "--mailbox", "sales"][..],
            "no mailbox `sales` in",
        ),
    ] {
        let output = deskgate(&config, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

fn timestamp(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_what_happened_on_the_real_servers() {
    const WAIT: Duration = Duration::from_secs(30);
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let support = lab.address("support");

    // Three customers write; each is acknowledged.
    for (n, (user, subject)) in [
        ("customer1", "Printer on fire"),
        ("customer2", "Invoice 7 is wrong"),
        ("customer3", "Password reset"),
    ]
    .into_iter()
    .enumerate()
    {
        let from = lab.address(user);
        let mail = message(
            &format!("Customer {n} <{from}>"),
            &support,
            subject,
            &format!("kpi{n}@customer.test"),
            "Hello, can you help us with this please? It is urgent for our office.\n",
            &[],
        );
        lab.send(&from, &[&support], &mail).await;
        lab.wait_for(user, "INBOX", 1, WAIT).await;
    }

    // Agent1 answers customer1 and resolves the ticket; customer1 answers the survey with 5.
    let notifications = lab.wait_for("agent1", "INBOX", 3, WAIT).await;
    let notification = notifications
        .iter()
        .find(|m| parsed(m).subject.contains("Printer on fire"))
        .expect("the notification for customer1's ticket");
    tokio::time::sleep(Duration::from_millis(1100)).await; // Date (whole seconds) after the ticket
    answer(
        &lab,
        "agent1",
        notification,
        "#resolve\nPlease switch it off and unplug it.",
    )
    .await;
    let inbox = lab.wait_for("customer1", "INBOX", 3, WAIT).await;
    let survey = inbox
        .iter()
        .map(|m| parsed(m))
        .find(|m| m.subject.starts_with("How did we do?"))
        .unwrap_or_else(|| {
            let subjects: Vec<String> = inbox.iter().map(|m| parsed(m).subject).collect();
            panic!("no survey among {subjects:?}")
        });
    let sid = survey.message_id.clone().expect("survey Message-ID");
    let customer1 = lab.address("customer1");
    let score = message(
        &format!("Customer 0 <{customer1}>"),
        &support,
        &format!("Re: {}", survey.subject),
        "kpi-score@customer.test",
        "5\n",
        &[("In-Reply-To", &format!("<{sid}>"))],
    );
    lab.send(&customer1, &[&support], &score).await;
    setup
        .wait_json(&["events", "--kind", "survey.answered"], WAIT, |e| {
            e.as_array().is_some_and(|e| !e.is_empty())
        })
        .await;

    let stats = setup.json(&["stats"]);
    let all = &stats["all"];
    let tickets = setup.json(&["tickets"]);
    let answered = tickets
        .as_array()
        .expect("tickets")
        .iter()
        .find(|t| t["subject"] == "Printer on fire")
        .expect("customer1's ticket");
    let response_ms = timestamp(&answered["first_response_at"])
        .duration_since(timestamp(&answered["created_at"]))
        .as_millis() as i64;
    assert!(response_ms >= 1000, "{answered:#}");
    assert_eq!(all["opened"], 3, "{stats:#}");
    assert_eq!(all["resolved"], 1, "{stats:#}");
    assert_eq!(all["first_response"]["count"], 1, "{stats:#}");
    assert_eq!(all["first_response"]["median_ms"], response_ms, "{stats:#}");
    assert_eq!(all["first_response"]["p90_ms"], response_ms, "{stats:#}");
    assert_eq!(all["within_policy"]["decided"], 1, "{stats:#}");
    assert_eq!(all["within_policy"]["share"], 1.0, "{stats:#}");
    assert_eq!(all["backlog"]["open"], 2, "{stats:#}");
    assert_eq!(all["satisfaction"]["answers"], 1, "{stats:#}");
    assert_eq!(all["satisfaction"]["average"], 5.0, "{stats:#}");
    assert_eq!(all["satisfaction"]["response_rate"], 1.0, "{stats:#}");
    assert_eq!(stats["languages"]["en"]["opened"], 3, "{stats:#}");
    daemon.stop();
}
