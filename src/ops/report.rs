//! `deskgate report --html`: the figures of `deskgate stats` as one self-contained page with
//! charts (inline CSS, SVG drawn here; no scripts, fonts or images from elsewhere).
//!
//! Every number shown comes from [`crate::kpi`]: the headline figures and the language table
//! from the same [`Stats`] `stats --json` prints (each carries `data-kpi`, its JSON pointer
//! there, and `data-value`, the raw value, so a test can hold the page against the JSON), the
//! per-day and per-week charts from the same computation over each day or week.

use std::fmt::Write as _;

use jiff::civil::Date;
use serde_json::Value;

use super::show::when;
use crate::config::Support;
use crate::kpi::{
    Figures, Ledger, NO_LANGUAGE, Period, Select, Stats, duration_text, percent_text,
};
use crate::language::Lang;

const BLUE: &str = "#2f6fb3";
const GREEN: &str = "#3a9a6a";
const ORANGE: &str = "#d9822b";

/// How a figure is written for people.
#[derive(Clone, Copy)]
enum Fmt {
    Count,
    Duration,
    Share,
    Score,
}

impl Fmt {
    fn text(self, value: &Value) -> String {
        match (self, value) {
            (Fmt::Count, Value::Number(n)) => n.to_string(),
            (Fmt::Duration, Value::Number(n)) => n.as_i64().map_or("–".into(), duration_text),
            (Fmt::Share, Value::Number(n)) => n.as_f64().map_or("–".into(), percent_text),
            (Fmt::Score, Value::Number(n)) => {
                n.as_f64().map_or("–".into(), |a| format!("{a:.2}"))
            }
            _ => "–".to_string(),
        }
    }
}

/// The whole page: header, headline cards, charts, the table per language, footer.
pub fn page(ledger: &Ledger, period: Period, mailbox: Option<&str>, support: &Support) -> String {
    let tz = &support.timezone;
    let stats = ledger.stats(period, mailbox);
    let json = serde_json::to_value(&stats).unwrap_or(Value::Null);
    let select = Select {
        mailbox,
        language: None,
    };
    let mut html = String::new();
    header(&mut html, period, mailbox, support);
    cards(&mut html, &stats, &json);
    html.push_str("<section class=\"charts\">");
    tickets_per_day_chart(&mut html, ledger, &period.split(tz, 1), select);
    first_response_chart(&mut html, &stats);
    within_policy_chart(&mut html, ledger, &period.split(tz, 7), select);
    backlog_chart(&mut html, &stats);
    satisfaction_chart(&mut html, &stats);
    languages_chart(&mut html, &stats);
    html.push_str("</section>\n");
    language_table(&mut html, &stats, &json);
    footer(&mut html, mailbox);
    html
}

/// The figure at `pointer` in `stats --json` as people read it, tagged with its pointer and raw
/// value so a test can hold the page against the JSON.
fn figure(json: &Value, pointer: &str, fmt: Fmt) -> String {
    let value = json.pointer(pointer).unwrap_or(&Value::Null);
    format!(
        r#"<span data-kpi="{}" data-value="{}">{}</span>"#,
        esc(pointer),
        esc(&value.to_string()),
        esc(&fmt.text(value))
    )
}

/// The document head with the styles, and the title with the period and its time zone.
fn header(html: &mut String, period: Period, mailbox: Option<&str>, support: &Support) {
    let tz = &support.timezone;
    let title = format!(
        "{} — support figures{}",
        support.name,
        mailbox.map_or(String::new(), |m| format!(", mailbox {m}"))
    );
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{CSS}</style></head><body>
<header><h1>{title}</h1><p>{} to {} ({})</p></header>
"#,
        esc(&when(period.since, tz)),
        esc(&when(period.until, tz)),
        esc(tz.iana_name().unwrap_or("UTC offset")),
        title = esc(&title),
    );
}

/// The headline figures of the whole period, one card each.
fn cards(html: &mut String, stats: &Stats, json: &Value) {
    let figure = |pointer: &str, fmt: Fmt| figure(json, pointer, fmt);
    let (escalations, escalation_note) = escalations_card(stats, json);
    let cards = [
        (
            "tickets opened",
            figure("/all/opened", Fmt::Count),
            format!("{} resolved", figure("/all/resolved", Fmt::Count)),
        ),
        (
            "first response, median",
            figure("/all/first_response/median_ms", Fmt::Duration),
            format!(
                "90% within {} · {} answered",
                figure("/all/first_response/p90_ms", Fmt::Duration),
                figure("/all/first_response/count", Fmt::Count)
            ),
        ),
        (
            "answered within policy",
            figure("/all/within_policy/share", Fmt::Share),
            format!(
                "{} of {} deadlines",
                figure("/all/within_policy/within", Fmt::Count),
                figure("/all/within_policy/decided", Fmt::Count)
            ),
        ),
        (
            "open at the end",
            figure("/all/backlog/open", Fmt::Count),
            format!(
                "{} waiting on the customer",
                figure("/all/backlog/pending", Fmt::Count)
            ),
        ),
        ("escalations", escalations, escalation_note),
        (
            "satisfaction (1-5)",
            figure("/all/satisfaction/average", Fmt::Score),
            format!(
                "{} answers · {} of surveys answered",
                figure("/all/satisfaction/answers", Fmt::Count),
                figure("/all/satisfaction/response_rate", Fmt::Share)
            ),
        ),
    ];
    html.push_str("<section class=\"cards\">");
    for (label, value, note) in cards {
        let _ = write!(
            html,
            r#"<div class="card"><div class="kpi-label">{label}</div><div class="kpi-value">{value}</div><div class="kpi-note">{note}</div></div>"#
        );
    }
    html.push_str("</section>\n");
}

/// The escalations card's value (all levels together) and note (breaches, then each level).
fn escalations_card(stats: &Stats, json: &Value) -> (String, String) {
    let escalations = &stats.all.escalations;
    if escalations.is_empty() {
        return (
            "0".to_string(),
            format!(
                "{} breaches · none",
                figure(json, "/all/breaches", Fmt::Count)
            ),
        );
    }
    let total = escalations.iter().map(|l| l.count).sum::<u64>();
    let levels = escalations
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "level {}: {}",
                l.level,
                figure(json, &format!("/all/escalations/{i}/count"), Fmt::Count)
            )
        })
        .collect::<Vec<_>>();
    (
        total.to_string(),
        format!(
            "{} breaches · {}",
            figure(json, "/all/breaches", Fmt::Count),
            levels.join(" · ")
        ),
    )
}

/// Tickets opened and resolved on each day of the period.
fn tickets_per_day_chart(
    html: &mut String,
    ledger: &Ledger,
    days: &[(Date, Period)],
    select: Select<'_>,
) {
    let per_day: Vec<_> = days
        .iter()
        .map(|(day, span)| (day, ledger.figures(*span, select)))
        .collect();
    let day_series = |name: &'static str, color: &'static str, count: fn(&Figures) -> u64| Series {
        name,
        color,
        values: per_day.iter().map(|(_, f)| Some(count(f) as f64)).collect(),
        tags: per_day
            .iter()
            .map(|(d, f)| {
                format!(
                    r#"data-day="{d}" data-series="{name}" data-value="{}""#,
                    count(f)
                )
            })
            .collect(),
    };
    let bars = Bars {
        labels: per_day
            .iter()
            .map(|(d, _)| d.strftime("%b %-d").to_string())
            .collect(),
        series: vec![
            day_series("opened", BLUE, |f| f.opened),
            day_series("resolved", GREEN, |f| f.resolved),
        ],
        format: |v| format!("{v:.0}"),
        value_labels: false,
    };
    chart(html, "Tickets per day", "wide", &bars.svg(960.0, 230.0));
}

/// How many tickets got their first response within each band of waiting time.
fn first_response_chart(html: &mut String, stats: &Stats) {
    let histogram = &stats.all.first_response.histogram;
    let bars = Bars {
        labels: histogram.iter().map(|b| b.label.to_string()).collect(),
        series: vec![Series {
            name: "tickets",
            color: BLUE,
            values: histogram.iter().map(|b| Some(b.count as f64)).collect(),
            tags: kpi_tags(
                "/all/first_response/histogram",
                histogram.iter().map(|b| b.count),
            ),
        }],
        format: |v| format!("{v:.0}"),
        value_labels: true,
    };
    chart(
        html,
        "First response: how long customers waited",
        "",
        &bars.svg(460.0, 230.0),
    );
}

/// The share of deadlines met in each week of the period (`weeks` starts each on its Monday).
fn within_policy_chart(
    html: &mut String,
    ledger: &Ledger,
    weeks: &[(Date, Period)],
    select: Select<'_>,
) {
    let weeks: Vec<_> = weeks
        .iter()
        .map(|(monday, span)| (monday, ledger.figures(*span, select)))
        .collect();
    let bars = Bars {
        labels: weeks
            .iter()
            .map(|(d, _)| format!("week of {}", d.strftime("%b %-d")))
            .collect(),
        series: vec![Series {
            name: "within policy",
            color: GREEN,
            values: weeks
                .iter()
                .map(|(_, f)| f.within_policy.share.map(|s| s * 100.0))
                .collect(),
            tags: weeks
                .iter()
                .map(|(d, f)| {
                    format!(
                        r#"data-week="{d}" data-decided="{}" data-within="{}""#,
                        f.within_policy.decided, f.within_policy.within
                    )
                })
                .collect(),
        }],
        format: |v| format!("{v:.0}%"),
        value_labels: true,
    };
    chart(
        html,
        "Answered within policy, per week",
        "",
        &bars.svg_max(460.0, 230.0, 100.0),
    );
}

/// The tickets still open at the end of the period, by how long they have been open.
fn backlog_chart(html: &mut String, stats: &Stats) {
    let rows: Vec<HBar> = stats
        .all
        .backlog
        .by_age
        .iter()
        .enumerate()
        .map(|(i, b)| HBar {
            label: b.label.to_string(),
            value: b.count,
            kpi: format!("/all/backlog/by_age/{i}/count"),
        })
        .collect();
    chart(
        html,
        "Open tickets by age at the end",
        "",
        &hbars(&rows, ORANGE),
    );
}

/// Survey answers per score, the best score first.
fn satisfaction_chart(html: &mut String, stats: &Stats) {
    let sat = &stats.all.satisfaction;
    let rows: Vec<HBar> = (0..5)
        .rev()
        .map(|i| HBar {
            label: format!("{} {}", i + 1, "★".repeat(i + 1)),
            value: sat.by_score[i],
            kpi: format!("/all/satisfaction/by_score/{i}"),
        })
        .collect();
    chart(
        html,
        "Satisfaction: survey answers by score",
        "",
        &hbars(&rows, GREEN),
    );
}

/// Tickets opened in each language the desk saw.
fn languages_chart(html: &mut String, stats: &Stats) {
    let rows: Vec<HBar> = stats
        .languages
        .iter()
        .map(|(code, f)| HBar {
            label: language_name(code),
            value: f.opened,
            kpi: format!("/languages/{code}/opened"),
        })
        .collect();
    chart(html, "Tickets opened per language", "", &hbars(&rows, BLUE));
}

/// The version, and the `deskgate stats` command that shows the same figures.
fn footer(html: &mut String, mailbox: Option<&str>) {
    let _ = write!(
        html,
        "<footer>deskgate {} · figures computed from the recorded events, as <code>deskgate stats{}</code> \
         shows them</footer>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        mailbox.map_or(String::new(), |m| format!(" --mailbox {}", esc(m)))
    );
}

fn language_name(code: &str) -> String {
    if code == NO_LANGUAGE {
        return "not known".to_string();
    }
    Lang::parse(code).map_or(code.to_string(), |l| l.english_name().to_string())
}

/// The main figures of all languages together, then of each language, one row each.
fn language_table(html: &mut String, stats: &Stats, json: &Value) {
    let columns: [(&str, &str, Fmt); 9] = [
        ("opened", "opened", Fmt::Count),
        ("resolved", "resolved", Fmt::Count),
        (
            "first response, median",
            "first_response/median_ms",
            Fmt::Duration,
        ),
        ("90th percentile", "first_response/p90_ms", Fmt::Duration),
        ("within policy", "within_policy/share", Fmt::Share),
        ("deadlines breached", "breaches", Fmt::Count),
        ("open at the end", "backlog/open", Fmt::Count),
        ("satisfaction", "satisfaction/average", Fmt::Score),
        ("surveys answered", "satisfaction/response_rate", Fmt::Share),
    ];
    html.push_str("<section class=\"card wide\"><h2>Per language</h2><table><thead><tr><th></th>");
    for (label, _, _) in &columns {
        let _ = write!(html, "<th>{label}</th>");
    }
    html.push_str("</tr></thead><tbody>");
    let keys = std::iter::once(("all languages".to_string(), "/all".to_string())).chain(
        stats
            .languages
            .keys()
            .map(|code| (language_name(code), format!("/languages/{code}"))),
    );
    for (name, base) in keys {
        let _ = write!(html, "<tr><th>{}</th>", esc(&name));
        for (_, field, fmt) in &columns {
            let _ = write!(
                html,
                "<td>{}</td>",
                figure(json, &format!("{base}/{field}"), *fmt)
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table></section>\n");
}

fn chart(html: &mut String, title: &str, class: &str, svg: &str) {
    let _ = writeln!(
        html,
        "<figure class=\"card {class}\"><figcaption>{title}</figcaption>{svg}</figure>"
    );
}

/// `data-kpi` and `data-value` for the elements of the JSON array at `pointer`.
fn kpi_tags(pointer: &str, counts: impl Iterator<Item = u64>) -> Vec<String> {
    counts
        .enumerate()
        .map(|(i, n)| format!(r#"data-kpi="{pointer}/{i}/count" data-value="{n}""#))
        .collect()
}

struct Series {
    name: &'static str,
    color: &'static str,
    /// One per label; `None` where there is nothing to show (no deadline decided that week).
    values: Vec<Option<f64>>,
    /// Extra attributes of each bar.
    tags: Vec<String>,
}

/// A vertical bar chart: one group of bars per label, one bar per series.
struct Bars {
    labels: Vec<String>,
    series: Vec<Series>,
    format: fn(f64) -> String,
    value_labels: bool,
}

impl Bars {
    fn svg(&self, width: f64, height: f64) -> String {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0f64, |a, b| a.max(*b));
        self.svg_max(width, height, nice_ceiling(max))
    }

    fn svg_max(&self, width: f64, height: f64, max: f64) -> String {
        let (left, right, top, bottom) = (44.0, 8.0, 22.0, 34.0);
        let plot_w = width - left - right;
        let plot_h = height - top - bottom;
        let mut svg = format!(
            r#"<svg viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">"#
        );
        if self.labels.is_empty() {
            return svg + &empty(width, height);
        }
        for step in 0..=4 {
            let v = max * f64::from(step) / 4.0;
            let y = top + plot_h - plot_h * f64::from(step) / 4.0;
            let _ = write!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e7ec"/><text x="{}" y="{:.1}" class="axis" text-anchor="end">{}</text>"##,
                width - right,
                left - 6.0,
                y + 4.0,
                (self.format)(v)
            );
        }
        let n = self.labels.len() as f64;
        let group = plot_w / n;
        let bar = (group * 0.8 / self.series.len() as f64).min(48.0);
        let every = (self.labels.len() as f64 / 12.0).ceil().max(1.0) as usize;
        for (i, label) in self.labels.iter().enumerate() {
            let x0 = left + group * i as f64 + (group - bar * self.series.len() as f64) / 2.0;
            for (k, series) in self.series.iter().enumerate() {
                let x = x0 + bar * k as f64;
                let Some(v) = series.values[i] else {
                    let _ = write!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">no deadlines</text>"#,
                        x + bar / 2.0,
                        top + plot_h - 4.0
                    );
                    continue;
                };
                let h = if max > 0.0 { plot_h * v / max } else { 0.0 };
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" rx="2" fill="{}" {}><title>{}: {} {}</title></rect>"#,
                    top + plot_h - h,
                    (bar - 1.0).max(1.0),
                    series.color,
                    series.tags[i],
                    esc(label),
                    (self.format)(v),
                    series.name
                );
                if self.value_labels {
                    let _ = write!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" class="value" text-anchor="middle">{}</text>"#,
                        x + bar / 2.0,
                        top + plot_h - h - 4.0,
                        (self.format)(v)
                    );
                }
            }
            if i % every == 0 {
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"#,
                    left + group * (i as f64 + 0.5),
                    height - bottom + 16.0,
                    esc(label)
                );
            }
        }
        if self.series.len() > 1 {
            let mut x = left;
            for series in &self.series {
                let _ = write!(
                    svg,
                    r#"<rect x="{x}" y="4" width="10" height="10" rx="2" fill="{}"/><text x="{}" y="13" class="axis">{}</text>"#,
                    series.color,
                    x + 14.0,
                    series.name
                );
                x += 90.0;
            }
        }
        svg + "</svg>"
    }
}

struct HBar {
    label: String,
    value: u64,
    /// The JSON pointer of `value` in `stats --json`.
    kpi: String,
}

/// Horizontal bars with their labels on the left and values on the right.
fn hbars(rows: &[HBar], color: &str) -> String {
    let (width, row_h, left, right) = (460.0, 30.0, 110.0, 50.0);
    let height = row_h * rows.len().max(1) as f64 + 10.0;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">"#
    );
    let max = rows.iter().map(|r| r.value).max().unwrap_or(0);
    if max == 0 {
        return svg + &empty(width, height.max(60.0));
    }
    for (i, row) in rows.iter().enumerate() {
        let y = 5.0 + row_h * i as f64;
        let w = (width - left - right) * row.value as f64 / max as f64;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" class="label" text-anchor="end">{}</text><rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#eef1f4" rx="3"/><rect x="{left}" y="{:.1}" width="{w:.1}" height="{:.1}" rx="3" fill="{color}" data-kpi="{}" data-value="{}"/><text x="{:.1}" y="{:.1}" class="value">{}</text>"##,
            left - 8.0,
            y + row_h / 2.0 + 4.0,
            esc(&row.label),
            y + 4.0,
            width - left - right,
            row_h - 8.0,
            y + 4.0,
            row_h - 8.0,
            esc(&row.kpi),
            row.value,
            left + w + 6.0,
            y + row_h / 2.0 + 4.0,
            row.value
        );
    }
    svg + "</svg>"
}

fn empty(width: f64, height: f64) -> String {
    format!(
        r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">nothing in this period</text></svg>"#,
        width / 2.0,
        height / 2.0
    )
}

/// The smallest round number at or above `max` whose quarters (the grid lines) are round too.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 4.0 {
        return 4.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 1.2, 1.6, 2.0, 2.4, 4.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= max)
        .unwrap_or(10.0 * magnitude)
}

/// Text made safe inside HTML elements and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 32px; background: #f4f6f8; color: #1d2733;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 18px; color: #5b6675; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; margin-bottom: 12px; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-bottom: 12px; }
.card { background: #fff; border-radius: 8px; padding: 14px 16px; margin: 0;
  box-shadow: 0 1px 2px rgba(20, 30, 40, .08); }
.card.wide { grid-column: 1 / -1; }
.kpi-label { color: #5b6675; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.kpi-value { font-size: 28px; font-weight: 600; margin: 4px 0 2px; }
.kpi-note { color: #5b6675; font-size: 12px; }
figcaption, h2 { font-size: 15px; font-weight: 600; margin: 0 0 8px; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: #5b6675; }
svg text.value { fill: #1d2733; font-weight: 600; }
svg text.label { fill: #1d2733; font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 10px; text-align: right; border-bottom: 1px solid #e3e7ec; white-space: nowrap; }
thead th { color: #5b6675; font-weight: 500; font-size: 12px; }
tbody th { text-align: left; font-weight: 600; }
footer { color: #8a94a3; font-size: 12px; margin-top: 14px; }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(2, 1fr); } .charts { grid-template-columns: 1fr; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 4.0);
        assert_eq!(nice_ceiling(3.0), 4.0);
        assert_eq!(nice_ceiling(7.0), 8.0);
        assert_eq!(nice_ceiling(19.0), 20.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(118.0), 120.0);
        assert_eq!(nice_ceiling(130.0), 160.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"<b a="1">&'"#), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }
}
