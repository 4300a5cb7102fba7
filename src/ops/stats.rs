//! `deskgate stats`: the support figures of a period as an aligned table or `--json`.
//! The figures themselves are computed in [`crate::kpi`]; `report` draws the same ones.

use std::io::Write;

use anyhow::Context;
use jiff::tz::TimeZone;

use super::show::when;
use crate::config::Config;
use crate::kpi::{self, Figures, Ledger, Period, Stats, duration_text, percent_text};
use crate::store::Store;

/// The events recorded before `period`'s end, once `mailbox` (if any) is checked against the
/// configuration.
pub fn load(config: &Config, period: Period, mailbox: Option<&str>) -> anyhow::Result<Ledger> {
    if let Some(wanted) = mailbox {
        let known = |m: &&crate::config::MailboxConfig| m.name == *wanted || m.account == *wanted;
        if !config.mailboxes.iter().any(|m| known(&m)) {
            let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
            anyhow::bail!(
                "no mailbox `{wanted}` in {}; mailboxes: {}",
                config.path.display(),
                names.join(", ")
            );
        }
    }
    let store = Store::connect_read_only(&config.database)?;
    let events = store
        .read_blocking(|tx| tx.kpi_events(&kpi::KINDS, period.until))
        .context("reading the events")?;
    Ok(Ledger::new(events))
}

pub fn print(out: &mut impl Write, stats: &Stats, tz: &TimeZone, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, stats)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} to {} ({}), {}",
        when(stats.since, tz),
        when(stats.until, tz),
        tz.iana_name().unwrap_or("UTC offset"),
        stats
            .mailbox
            .as_ref()
            .map_or("all mailboxes".to_string(), |m| format!("mailbox {m}"))
    )?;
    writeln!(out)?;
    let mut columns: Vec<(&str, &Figures)> = vec![("all", &stats.all)];
    columns.extend(stats.languages.iter().map(|(code, f)| (code.as_str(), f)));
    for row in table(&columns) {
        writeln!(out, "{}", row.trim_end())?;
    }
    Ok(())
}

/// One line per figure, one column per set of figures, numbers right-aligned.
fn table(columns: &[(&str, &Figures)]) -> Vec<String> {
    let mut rows: Vec<(String, Vec<String>)> = vec![(
        String::new(),
        columns.iter().map(|(name, _)| name.to_string()).collect(),
    )];
    let mut row = |label: &str, cell: &dyn Fn(&Figures) -> String| {
        rows.push((
            label.to_string(),
            columns.iter().map(|(_, f)| cell(f)).collect(),
        ));
    };
    let ms = |v: Option<i64>| v.map_or("-".to_string(), duration_text);
    let share = |v: Option<f64>| v.map_or("-".to_string(), percent_text);
    row("tickets opened", &|f| f.opened.to_string());
    row("  imported quietly", &|f| f.opened_quietly.to_string());
    row("tickets resolved", &|f| f.resolved.to_string());
    row("first responses", &|f| f.first_response.count.to_string());
    row("  median", &|f| ms(f.first_response.median_ms));
    row("  90th percentile", &|f| ms(f.first_response.p90_ms));
    row("answered within policy", &|f| share(f.within_policy.share));
    row("  deadlines decided", &|f| {
        f.within_policy.decided.to_string()
    });
    row("  met in time", &|f| f.within_policy.within.to_string());
    row("deadline warnings", &|f| f.warnings.to_string());
    row("deadlines breached", &|f| f.breaches.to_string());
    let levels = columns.first().map_or(&[][..], |(_, f)| &f.escalations[..]);
    if levels.is_empty() {
        row("escalations", &|_| "0".to_string());
    }
    for level in levels.iter().map(|l| l.level) {
        row(&format!("escalations, level {level}"), &|f| {
            let n = f.escalations.iter().find(|l| l.level == level);
            n.map_or(0, |l| l.count).to_string()
        });
    }
    row("customer updates", &|f| f.customer_updates.to_string());
    row("pending reminders", &|f| f.reminders.to_string());
    row("backlog: open at the end", &|f| f.backlog.open.to_string());
    for (i, bucket) in columns
        .first()
        .map_or(&[][..], |(_, f)| &f.backlog.by_age[..])
        .iter()
        .enumerate()
    {
        row(&format!("  {}", bucket.label), &|f| {
            f.backlog.by_age[i].count.to_string()
        });
    }
    row("backlog: pending", &|f| f.backlog.pending.to_string());
    row("satisfaction (1-5)", &|f| {
        f.satisfaction
            .average
            .map_or("-".to_string(), |a| format!("{a:.2}"))
    });
    row("  answers", &|f| f.satisfaction.answers.to_string());
    row("surveys sent", &|f| f.satisfaction.surveys_sent.to_string());
    row("  answered", &|f| {
        f.satisfaction.surveys_answered.to_string()
    });
    row("  response rate", &|f| share(f.satisfaction.response_rate));
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            rows.iter()
                .map(|(_, cells)| cells[c].chars().count())
                .max()
                .unwrap_or(0)
                .max(6)
        })
        .collect();
    rows.iter()
        .map(|(label, cells)| {
            let mut line = format!("{label:<label_width$}");
            for (cell, width) in cells.iter().zip(&widths) {
                line.push_str(&format!("  {cell:>width$}"));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::{Bucket, Level};

    #[test]
    fn the_table_is_aligned_and_shows_every_level() {
        let mut all = Figures {
            opened: 1234,
            escalations: vec![Level { level: 1, count: 3 }, Level { level: 2, count: 1 }],
            ..Figures::default()
        };
        all.first_response.median_ms = Some(80 * 60_000);
        all.within_policy.share = Some(0.931);
        all.backlog.by_age = vec![Bucket {
            label: "< 1h",
            count: 2,
        }];
        let mut ar = Figures {
            opened: 34,
            escalations: vec![Level { level: 2, count: 1 }],
            ..Figures::default()
        };
        ar.backlog.by_age = vec![Bucket {
            label: "< 1h",
            count: 0,
        }];
        let rows = table(&[("all", &all), ("ar", &ar)]);
        let find = |label: &str| {
            rows.iter()
                .find(|r| r.starts_with(label))
                .unwrap_or_else(|| panic!("{label} in {rows:#?}"))
                .clone()
        };
        let header = &rows[0];
        let opened = find("tickets opened");
        assert_eq!(header.len(), opened.len(), "{rows:#?}");
        assert!(opened.ends_with("    1234      34"), "{opened}");
        assert!(find("  median").ends_with("1h 20m       -"));
        assert!(find("answered within policy").ends_with("93.1%       -"));
        assert!(find("escalations, level 1").ends_with("3       0"));
        assert!(find("escalations, level 2").ends_with("1       1"));
        assert!(find("  < 1h").ends_with("2       0"));
    }
}
