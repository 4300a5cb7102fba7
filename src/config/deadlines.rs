//! `[deadlines]`, `[mailbox.deadlines]` and `[followup]`: by when agents must answer, who hears
//! of it when they do not, and what happens after an answer.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use toml::Spanned;

use super::duration::{ConfigDuration, parse as parse_duration};
use super::raw::{RawBusinessHours, RawDeadlines, RawEscalation, RawFollowup};
use super::{Agents, Checker};
use crate::calendar::{BusinessHours, Calendar, Opening};

/// The response-time policy of one mailbox: the `[deadlines]` section with the mailbox's
/// `[mailbox.deadlines]` laid over it key by key.
#[derive(Debug, Clone, PartialEq)]
pub struct Deadlines {
    /// How long a new ticket may wait for its first answer (working time).
    pub first_response: Duration,
    /// How long a later customer message may wait for an answer (working time).
    pub next_response: Duration,
    /// When the clock runs.
    pub calendar: Calendar,
    /// Whether open deadlines stop while the ticket waits on the customer (`pending`).
    pub pause_while_pending: bool,
    /// When the assigned agent (or the team) is warned before a deadline passes.
    pub warning: Option<Warning>,
    /// Who is told, and when, after a deadline passed unanswered; level 1 first.
    pub escalation: Vec<Escalation>,
    /// Whether the customer gets an apology with a new realistic time at the first escalation.
    pub customer_update: bool,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines {
            first_response: DAY,
            next_response: DAY,
            calendar: Calendar::Always,
            pause_while_pending: true,
            warning: Some(Warning::Share(75)),
            escalation: Vec::new(),
            customer_update: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// This much working time before the deadline.
    Before(Duration),
    /// When this share (percent, 1-99) of the deadline's working time has passed.
    Share(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// Working time after the deadline (level 1: usually zero).
    pub after: Duration,
    /// Addresses (lower case): agents' primary addresses for agents named, or any address.
    pub to: Vec<String>,
}

/// What happens after an agent answered: `[followup]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followup {
    /// Reminders to the customer while a ticket is pending, counted from when it became pending.
    pub pending_reminders: Vec<Duration>,
    /// A pending ticket is resolved this long after it became pending; `None`: never.
    pub pending_resolve_after: Option<Duration>,
    /// A one-question satisfaction survey when a ticket is resolved (once per ticket).
    pub survey: bool,
    /// A resolved ticket is closed this long after it was resolved; `None`: never.
    pub auto_close_after: Option<Duration>,
    /// Whether the customer is told when their ticket is closed automatically.
    pub close_notice: bool,
}

impl Default for Followup {
    fn default() -> Followup {
        Followup {
            pending_reminders: vec![3 * DAY],
            pending_resolve_after: Some(7 * DAY),
            survey: true,
            auto_close_after: Some(7 * DAY),
            close_notice: true,
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl fmt::Display for Deadlines {
    /// One line for `check-config`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: Duration| ConfigDuration(d).to_string();
        write!(
            f,
            "first response {}, next response {}, ",
            d(self.first_response),
            d(self.next_response)
        )?;
        match &self.calendar {
            Calendar::Always => f.write_str("around the clock")?,
            Calendar::Business(hours) => write!(
                f,
                "business hours ({}, {} holidays)",
                hours.timezone.iana_name().unwrap_or("fixed offset"),
                hours.holidays.len()
            )?,
        }
        if self.pause_while_pending {
            f.write_str(", paused while pending")?;
        }
        match self.warning {
            None => f.write_str("; no warning")?,
            Some(Warning::Before(b)) => write!(f, "; warning {} before", d(b))?,
            Some(Warning::Share(p)) => write!(f, "; warning at {p}%")?,
        }
        if self.escalation.is_empty() {
            f.write_str("; no escalation")?;
        }
        for (n, level) in self.escalation.iter().enumerate() {
            write!(
                f,
                "; level {} {} after: {}",
                n + 1,
                d(level.after),
                level.to.join(", ")
            )?;
        }
        if self.customer_update {
            f.write_str("; the customer is updated at the first escalation")?;
        }
        Ok(())
    }
}

impl fmt::Display for Followup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: Duration| ConfigDuration(d).to_string();
        let never = |o: Option<Duration>| o.map_or("never".to_string(), d);
        let reminders: Vec<String> = self.pending_reminders.iter().map(|r| d(*r)).collect();
        write!(
            f,
            "pending: reminders after {}, resolved after {}; survey {}; closed {} after resolving{}",
            if reminders.is_empty() {
                "(none)".to_string()
            } else {
                reminders.join(", ")
            },
            never(self.pending_resolve_after),
            if self.survey { "on" } else { "off" },
            never(self.auto_close_after),
            if self.close_notice {
                " (the customer is told)"
            } else {
                ""
            }
        )
    }
}

impl Checker<'_> {
    /// The deadlines of a mailbox: `local` (its own section, if any) over `global` over the
    /// defaults. `zone` is the support time zone, the default for business hours.
    pub(super) fn deadlines(
        &mut self,
        section: &str,
        global: &RawDeadlines,
        local: Option<&RawDeadlines>,
        zone: &TimeZone,
        agents: &Agents,
    ) -> Arc<Deadlines> {
        let default = Deadlines::default();
        let pick = |f: fn(&RawDeadlines) -> Option<ConfigDuration>| {
            local.and_then(f).or_else(|| f(global)).map(|d| d.0)
        };
        let first_response = pick(|r| r.first_response).unwrap_or(default.first_response);
        let next_response = pick(|r| r.next_response).unwrap_or(first_response);
        let pause_while_pending = local
            .and_then(|r| r.pause_while_pending)
            .or(global.pause_while_pending)
            .unwrap_or(default.pause_while_pending);
        let customer_update = local
            .and_then(|r| r.customer_update)
            .or(global.customer_update)
            .unwrap_or(default.customer_update);
        let warning = match local
            .and_then(|r| r.warning.as_ref())
            .or(global.warning.as_ref())
        {
            None => default.warning,
            Some(text) => self.warning(section, text),
        };
        let calendar = match local
            .and_then(|r| r.business_hours.as_ref())
            .or(global.business_hours.as_ref())
        {
            None => Calendar::Always,
            Some(hours) => self.business_hours(section, hours, zone),
        };
        let escalation = match local
            .and_then(|r| r.escalation.as_ref())
            .or(global.escalation.as_ref())
        {
            None => Vec::new(),
            Some(levels) => {
                let built: Vec<Escalation> = levels
                    .iter()
                    .filter_map(|level| self.escalation(section, level, agents))
                    .collect();
                if let Some((n, level)) = levels
                    .iter()
                    .zip(built.windows(2))
                    .enumerate()
                    .find(|(_, (_, pair))| pair[1].after < pair[0].after)
                    .map(|(n, (level, _))| (n, level))
                {
                    self.problem(
                        level,
                        format!(
                            "{section}: escalation level {} comes before level {}; list levels in order of `after`",
                            n + 2,
                            n + 1
                        ),
                    );
                }
                built
            }
        };
        Arc::new(Deadlines {
            first_response,
            next_response,
            calendar,
            pause_while_pending,
            warning,
            escalation,
            customer_update,
        })
    }

    fn warning(&mut self, section: &str, text: &Spanned<String>) -> Option<Warning> {
        let value = text.get_ref().trim();
        if value == "off" {
            return None;
        }
        if let Some(percent) = value.strip_suffix('%') {
            return match percent.trim().parse::<u8>() {
                Ok(p) if (1..=99).contains(&p) => Some(Warning::Share(p)),
                _ => {
                    self.problem(
                        text,
                        format!("{section}: warning `{value}`: a share must be 1% to 99%"),
                    );
                    None
                }
            };
        }
        match parse_duration(value) {
            Ok(d) if !d.is_zero() => Some(Warning::Before(d)),
            Ok(_) => {
                self.problem(
                    text,
                    format!("{section}: warning `{value}` is zero; write \"off\" for no warning"),
                );
                None
            }
            Err(err) => {
                self.problem(
                    text,
                    format!("{section}: warning: {err}; or a share such as \"75%\", or \"off\""),
                );
                None
            }
        }
    }

    fn escalation(
        &mut self,
        section: &str,
        level: &Spanned<RawEscalation>,
        agents: &Agents,
    ) -> Option<Escalation> {
        let raw = level.get_ref();
        if raw.to.get_ref().is_empty() {
            self.problem(
                &raw.to,
                format!("{section}: escalation `to` is empty; name agents or addresses"),
            );
            return None;
        }
        let mut to = Vec::new();
        for who in raw.to.get_ref() {
            let who = who.trim();
            if let Some(agent) = agents.agents.iter().find(|a| a.name == who) {
                to.push(agent.address.clone());
            } else if who.parse::<lettre::Address>().is_ok() {
                to.push(who.to_ascii_lowercase());
            } else {
                self.problem(
                    &raw.to,
                    format!(
                        "{section}: escalation to `{who}`: neither an [[agent]] name nor a mail address"
                    ),
                );
                return None;
            }
        }
        Some(Escalation {
            after: raw.after.map_or(Duration::ZERO, |d| d.0),
            to,
        })
    }

    fn business_hours(
        &mut self,
        section: &str,
        spanned: &Spanned<RawBusinessHours>,
        zone: &TimeZone,
    ) -> Calendar {
        let raw = spanned.get_ref();
        let timezone = match &raw.timezone {
            None => zone.clone(),
            Some(name) => match TimeZone::get(name.get_ref()) {
                Ok(tz) => tz,
                Err(_) => {
                    self.problem(
                        name,
                        format!(
                            "{section}: business_hours.timezone `{}` is not a time zone name such as \"Europe/Athens\"",
                            name.get_ref()
                        ),
                    );
                    zone.clone()
                }
            },
        };
        let days = [
            ("monday", &raw.monday),
            ("tuesday", &raw.tuesday),
            ("wednesday", &raw.wednesday),
            ("thursday", &raw.thursday),
            ("friday", &raw.friday),
            ("saturday", &raw.saturday),
            ("sunday", &raw.sunday),
        ];
        let mut week: [Vec<Opening>; 7] = Default::default();
        for (slot, (day, value)) in week.iter_mut().zip(days) {
            if let Some(value) = value {
                match openings(value.get_ref()) {
                    Ok(list) => *slot = list,
                    Err(why) => self.problem(
                        value,
                        format!(
                            "{section}: business_hours.{day} `{}`: {why}",
                            value.get_ref()
                        ),
                    ),
                }
            }
        }
        let mut holidays = BTreeSet::new();
        for date in raw.holidays.iter().flatten() {
            match date.get_ref().parse::<Date>() {
                Ok(d) => {
                    holidays.insert(d);
                }
                Err(_) => self.problem(
                    date,
                    format!(
                        "{section}: business_hours.holidays: `{}` is not a date like \"2026-12-25\"",
                        date.get_ref()
                    ),
                ),
            }
        }
        let calendar = Calendar::Business(BusinessHours {
            timezone,
            week,
            holidays,
        });
        if !calendar.has_working_time() {
            self.problem(
                spanned,
                format!(
                    "{section}: business_hours has no opening hours on any day; deadlines would never come due"
                ),
            );
        }
        calendar
    }

    pub(super) fn followup(&mut self, raw: &RawFollowup) -> Followup {
        let default = Followup::default();
        let mut optional = |key: &str, value: &Option<Spanned<String>>, default| match value {
            None => default,
            Some(text) if text.get_ref().trim() == "never" => None,
            Some(text) => match parse_duration(text.get_ref()) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    self.problem(
                        text,
                        format!("followup.{key} is zero; write \"never\" to turn it off"),
                    );
                    default
                }
                Err(err) => {
                    self.problem(text, format!("followup.{key}: {err}, or \"never\""));
                    default
                }
            },
        };
        let pending_resolve_after = optional(
            "pending_resolve_after",
            &raw.pending_resolve_after,
            default.pending_resolve_after,
        );
        let auto_close_after = optional(
            "auto_close_after",
            &raw.auto_close_after,
            default.auto_close_after,
        );
        let mut pending_reminders: Vec<Duration> = match &raw.pending_reminders {
            None => default.pending_reminders,
            Some(list) => list.iter().map(|d| d.0).collect(),
        };
        pending_reminders.sort();
        pending_reminders.dedup();
        Followup {
            pending_reminders,
            pending_resolve_after,
            survey: raw.survey.unwrap_or(default.survey),
            auto_close_after,
            close_notice: raw.close_notice.unwrap_or(default.close_notice),
        }
    }
}

/// `"09:00-17:00"`, `"08:00-12:00, 13:00-17:00"`, `"00:00-24:00"`, or `""`/`"closed"`.
fn openings(text: &str) -> Result<Vec<Opening>, String> {
    let text = text.trim();
    if text.is_empty() || text == "closed" {
        return Ok(Vec::new());
    }
    let mut list: Vec<Opening> = Vec::new();
    for part in text.split(',') {
        let Some((open, close)) = part.trim().split_once('-') else {
            return Err("expected opening hours such as \"09:00-17:00\" or \"closed\"".into());
        };
        let open = clock(open)?.ok_or("24:00 is the end of a day, not its start")?;
        let close = clock(close)?;
        if close.is_some_and(|c| c <= open) {
            return Err(format!(
                "`{}` closes before it opens (a night shift is two days' hours: \"22:00-24:00\" and \"00:00-06:00\")",
                part.trim()
            ));
        }
        if let Some(last) = list.last()
            && last.close.is_none_or(|c| c > open)
        {
            return Err("intervals must be in order and not overlap".into());
        }
        list.push(Opening { open, close });
    }
    Ok(list)
}

/// `HH:MM`; `24:00` is `None` (midnight at the end of the day).
fn clock(text: &str) -> Result<Option<Time>, String> {
    let text = text.trim();
    if text == "24:00" {
        return Ok(None);
    }
    let bad = || format!("`{text}` is not a time such as \"09:00\"");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_hours_are_read_and_checked() {
        let nine = Time::constant(9, 0, 0, 0);
        assert_eq!(
            openings("09:00-17:00").unwrap(),
            vec![Opening {
                open: nine,
                close: Some(Time::constant(17, 0, 0, 0))
            }]
        );
        assert_eq!(openings("08:00-12:00, 13:00-24:00").unwrap().len(), 2);
        assert_eq!(openings("closed").unwrap(), vec![]);
        assert!(
            openings("17:00-09:00")
                .unwrap_err()
                .contains("closes before")
        );
        assert!(openings("9-5").unwrap_err().contains("not a time"));
        assert!(
            openings("08:00-13:00, 12:00-17:00")
                .unwrap_err()
                .contains("overlap")
        );
        assert!(openings("24:00-24:00").is_err());
    }
}
