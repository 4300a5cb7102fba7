//! Which messages already in a folder at the first start become tickets (`initial_import`).

use jiff::Timestamp;

use super::decide::before;
use crate::config::InitialImport;

/// What the server says about a backlog message before its body is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogMessage {
    pub seen: bool,
    /// IMAP INTERNALDATE: when the message reached the folder.
    pub arrived_at: Option<Timestamp>,
}

/// Whether `message`, in the folder at `first_start`, is imported. A message of unknown age
/// counts as recent for `since`: leaving a customer's mail out is worse than importing it.
pub fn import_backlog(
    rule: InitialImport,
    message: BacklogMessage,
    first_start: Timestamp,
) -> bool {
    let recent = |age| {
        message
            .arrived_at
            .is_none_or(|at| at >= before(first_start, age))
    };
    match rule {
        InitialImport::All => true,
        InitialImport::Nothing => false,
        InitialImport::Unseen => !message.seen,
        InitialImport::Since(age) => recent(age),
        InitialImport::UnseenSince(age) => !message.seen && recent(age),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::SignedDuration;

    use super::*;

    fn start() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn message(seen: bool, days_old: Option<i64>) -> BacklogMessage {
        BacklogMessage {
            seen,
            arrived_at: days_old.map(|d| start() - SignedDuration::from_hours(24 * d)),
        }
    }

    #[test]
    fn each_rule_selects_what_its_name_says() {
        let week = Duration::from_secs(7 * 86_400);
        let cases = [
            (message(false, Some(1)), [true, true, false, true, true]),
            (message(true, Some(1)), [true, false, false, true, false]),
            (message(false, Some(8)), [true, true, false, false, false]),
            (message(true, Some(8)), [true, false, false, false, false]),
            (message(false, None), [true, true, false, true, true]),
        ];
        let rules = [
            InitialImport::All,
            InitialImport::Unseen,
            InitialImport::Nothing,
            InitialImport::Since(week),
            InitialImport::UnseenSince(week),
        ];
        for (message, expected) in cases {
            for (rule, want) in rules.iter().zip(expected) {
                assert_eq!(
                    import_backlog(*rule, message, start()),
                    want,
                    "{rule} {message:?}"
                );
            }
        }
    }

    #[test]
    fn the_age_limit_is_inclusive() {
        let rule = InitialImport::Since(Duration::from_secs(3600));
        let exactly = BacklogMessage {
            seen: true,
            arrived_at: Some(start() - SignedDuration::from_hours(1)),
        };
        assert!(import_backlog(rule, exactly, start()));
    }
}
