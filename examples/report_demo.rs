//! Writes a month of a support desk's events (English, Arabic, Greek) into a new database,
//! for `scripts/report-screenshot.sh`: `cargo run --example report_demo -- DB START DAYS END`.
//! The events are those the integration tests check the report against (tests/it/kpi_demo.rs).

#[path = "../tests/it/kpi_demo.rs"]
mod kpi_demo;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, start, days, end] = &args[..] else {
        eprintln!(
            "usage: report_demo DATABASE START DAYS END (e.g. demo.db 2026-10-26T00:00:00Z 28 2026-11-23T12:00:00Z)"
        );
        return ExitCode::from(2);
    };
    let parsed = (start.parse(), days.parse(), end.parse());
    let (Ok(start), Ok(days), Ok(end)) = parsed else {
        eprintln!(
            "report_demo: START and END are timestamps (2026-10-26T00:00:00Z), DAYS a number"
        );
        return ExitCode::from(2);
    };
    match deskgate::store::Store::open(std::path::Path::new(db)) {
        Ok(store) => {
            kpi_demo::record_month(&store, start, days, end, 7);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("report_demo: {err}");
            ExitCode::from(2)
        }
    }
}
