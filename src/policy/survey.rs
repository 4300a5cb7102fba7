//! Reading a satisfaction score out of a customer's reply to the survey.

use crate::agent::reply::unquoted;

/// The score (1-5) a survey reply gives: the first thing the customer wrote above the quote is
/// a single digit 1-5, in Western, Arabic-Indic (١-٥) or Eastern Arabic-Indic (۱-۵) form,
/// alone or followed by words ("4 - quick, thanks"). Anything else is not a score, and the
/// reply is handled as an ordinary message.
pub fn score(text: &str) -> Option<u8> {
    let written = unquoted(text);
    let first = written.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut chars = first.chars();
    let value = digit(chars.next()?)?;
    match chars.next() {
        Some(c) if digit(c).is_some() || c.is_alphanumeric() => None,
        _ if (1..=5).contains(&value) => Some(value),
        _ => None,
    }
}

fn digit(c: char) -> Option<u8> {
    let value = match c {
        '0'..='9' => u32::from(c) - u32::from('0'),
        '\u{0660}'..='\u{0669}' => u32::from(c) - 0x0660,
        '\u{06F0}'..='\u{06F9}' => u32::from(c) - 0x06F0,
        _ => return None,
    };
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_in_three_scripts() {
        assert_eq!(score("5"), Some(5));
        assert_eq!(score("  4 - quick and kind, thanks\n"), Some(4));
        assert_eq!(score("٣"), Some(3), "Arabic-Indic three");
        assert_eq!(score("۵"), Some(5), "Eastern Arabic-Indic five");
        assert_eq!(
            score("\n\n١\n\nOn Mon, Support wrote:\n> Reply with 1-5"),
            Some(1)
        );
    }

    #[test]
    fn anything_else_is_not_a_score() {
        assert_eq!(score("0"), None);
        assert_eq!(score("6"), None);
        assert_eq!(score("10"), None);
        assert_eq!(score("3rd time I write: the printer is still broken"), None);
        assert_eq!(score("The printer is still broken. 5 pages jammed."), None);
        assert_eq!(score(""), None);
        assert_eq!(
            score("On Mon, Support wrote:\n> 5 = excellent"),
            None,
            "a digit in the quote is ours"
        );
    }
}
