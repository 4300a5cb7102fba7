//! Durations in configuration files: `24h`, `90s`, `1h30m`, `2d`, `1w`.
//!
//! Written by hand rather than taken from a crate because the accepted forms are part of the
//! configuration contract and the error must name them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A positive span of time read from the configuration file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub const fn secs(n: u64) -> ConfigDuration {
        ConfigDuration(Duration::from_secs(n))
    }
}

impl fmt::Debug for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for ConfigDuration {
    /// The shortest form that parses back to the same value (`1d2h`, `90s`, `0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        if rest == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS.iter().rev() {
            if rest >= *size {
                write!(f, "{}{}", rest / size, unit)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

const UNITS: [(&str, u64); 5] = [
    ("s", 1),
    ("m", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 604_800),
];

/// Parses `<number><unit>` groups (units s, m, h, d, w), optionally separated by spaces.
pub fn parse(text: &str) -> Result<Duration, String> {
    let expected =
        "expected a duration such as \"24h\", \"90s\", \"1h30m\" or \"2d\" (units: s, m, h, d, w)";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration; {expected}"));
    }
    let mut total: u64 = 0;
    let mut chars = trimmed.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut digits = String::new();
        while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
            digits.push(*c);
            chars.next();
        }
        let mut unit = String::new();
        while let Some(c) = chars.peek().filter(|c| c.is_ascii_alphabetic()) {
            unit.push(*c);
            chars.next();
        }
        if digits.is_empty() || unit.is_empty() {
            return Err(format!("`{text}` is not a duration; {expected}"));
        }
        let Some((_, size)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit `{unit}` in `{text}`; {expected}"));
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is too large for a duration"))?;
        total = value
            .checked_mul(*size)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}` is too large for a duration"))?;
        while chars.peek() == Some(&' ') {
            chars.next();
        }
    }
    Ok(Duration::from_secs(total))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, secs: u64) {
        assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        assert_eq!(ConfigDuration::secs(secs).to_string().as_str(), {
            let round = ConfigDuration::secs(secs).to_string();
            assert_eq!(parse(&round), Ok(Duration::from_secs(secs)));
            round
        });
    }

    #[test]
    fn accepted_forms() {
        check("24h", 86_400);
        check("90s", 90);
        check("1h30m", 5_400);
        check("1h 30m", 5_400);
        check("2d", 172_800);
        check("1w", 604_800);
        check("0s", 0);
    }

    #[test]
    fn display_is_shortest() {
        assert_eq!(ConfigDuration::secs(93_600).to_string(), "1d2h");
        assert_eq!(ConfigDuration::secs(90).to_string(), "1m30s");
    }

    #[test]
    fn rejected_forms_say_why() {
        assert!(parse("24").unwrap_err().contains("is not a duration"));
        assert!(parse("3y").unwrap_err().contains("unknown unit `y`"));
        assert!(parse("").unwrap_err().contains("empty duration"));
        assert!(parse("h").unwrap_err().contains("is not a duration"));
        assert!(
            parse("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
    }
}
