//! `deskgate stats` and `report --html` through the binary on a month of recorded events:
//! the page shows the numbers `stats --json` prints, and nothing it needs comes from elsewhere.

use std::path::Path;
use std::process::{Command, Output};

use deskgate::store::Store;
use serde_json::Value;

use crate::kpi_demo::record_month;

fn deskgate(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deskgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run deskgate")
}

/// A configuration whose database holds four weeks of a support desk's events.
fn desk() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("deskgate.toml");
    std::fs::write(
        &config,
        r#"database = "deskgate.db"
[support]
address = "support@example.test"
name = "Example <Support>"
timezone = "Europe/Athens"
[[mailbox]]
name = "support"
host = "127.0.0.1"
tls = "plain"
user = "support@example.test"
password = "x"
[smtp]
host = "127.0.0.1"
tls = "plain"
"#,
    )
    .expect("write config");
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
        let expected = stats.pointer(pointer).unwrap_or_else(|| panic!("{pointer}"));
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
            .map(|s| s[..s.find('"').expect("quote")].parse::<u64>().expect("count"))
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
    for outside in ["<script", "<link", "<img", "src=", "url(", "@import", "https://"] {
        assert!(!html.contains(outside), "{outside}");
    }
    assert_eq!(
        html.matches("http://").count(),
        html.matches(r#"xmlns="http://www.w3.org/2000/svg""#).count()
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
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["all", "ar", "el", "en"]);
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
