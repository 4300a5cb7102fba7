//! `[alerts]`: mail to the admin when the support desk stops or stalls.

use std::time::Duration;

use super::Checker;
use super::raw::RawAlerts;

/// Who is told, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Lower-case addresses.
    pub to: Vec<String>,
    /// How long a mailbox or the SMTP transport may fail before anyone is told.
    pub after: Duration,
    /// At most one mail per condition this often while it lasts.
    pub repeat: Duration,
}

impl Checker<'_> {
    pub(super) fn alerts(&mut self, raw: Option<&RawAlerts>) -> Option<AlertsConfig> {
        let raw = raw?;
        if raw.to.get_ref().is_empty() {
            self.problem(
                &raw.to,
                "alerts.to is empty; name the admin's address, or remove [alerts]".to_string(),
            );
            return None;
        }
        let to: Vec<String> = raw
            .to
            .get_ref()
            .iter()
            .filter_map(|address| self.address("alerts.to", address))
            .collect();
        Some(AlertsConfig {
            to,
            after: raw.after.map_or(Duration::from_secs(15 * 60), |d| d.0),
            repeat: raw.repeat.map_or(Duration::from_secs(6 * 3600), |d| d.0),
        })
    }
}
