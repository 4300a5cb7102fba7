//! Who sent this and may we answer? Pure: looks at a [`ParsedMessage`], nothing else.
//!
//! The foundation knows the RFC 3834 signals every responder must honour; the full hygiene
//! rules (bounces, out-of-office subjects, rate limits) extend [`Class`] later.

use crate::parse::ParsedMessage;

/// What kind of sender a message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A person writing to support: recorded and, on a new ticket, acknowledged.
    Customer,
    /// Machine-generated mail: recorded on a ticket, never answered.
    Automatic(AutoReason),
    /// No usable From address: recorded, nobody to answer.
    NoSender,
}

/// Why a message counts as automatic; stored with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoReason {
    /// `Auto-Submitted:` with a value other than `no` (RFC 3834).
    AutoSubmitted(String),
    /// `Precedence: bulk | junk | list` (and `auto_reply`).
    Precedence(String),
    /// `Return-Path: <>`.
    NullReturnPath,
    /// From `mailer-daemon@` (a postmaster is a person: the corpus has one writing in).
    MailerDaemon,
    /// Carries `List-Id:`: mailing-list traffic.
    MailingList,
    /// From the support address itself: answering would talk to ourselves.
    OwnAddress,
}

impl Class {
    pub fn as_str(&self) -> String {
        match self {
            Class::Customer => "customer".to_string(),
            Class::NoSender => "no-sender".to_string(),
            Class::Automatic(reason) => format!("automatic: {}", reason.describe()),
        }
    }

    pub fn may_acknowledge(&self) -> bool {
        matches!(self, Class::Customer)
    }
}

impl AutoReason {
    pub fn describe(&self) -> String {
        match self {
            AutoReason::AutoSubmitted(v) => format!("Auto-Submitted: {v}"),
            AutoReason::Precedence(v) => format!("Precedence: {v}"),
            AutoReason::NullReturnPath => "null Return-Path".to_string(),
            AutoReason::MailerDaemon => "sent by a mailer daemon".to_string(),
            AutoReason::MailingList => "List-Id present".to_string(),
            AutoReason::OwnAddress => "sent from the support address".to_string(),
        }
    }
}

/// Classifies `message` for a support desk whose address is `support_address` (lower case).
pub fn classify(message: &ParsedMessage, support_address: &str) -> Class {
    if let Some(value) = &message.auto_submitted {
        let value = value.to_ascii_lowercase();
        if value.split(';').next().map(str::trim) != Some("no") {
            return Class::Automatic(AutoReason::AutoSubmitted(value));
        }
    }
    if let Some(value) = &message.precedence {
        let value = value.to_ascii_lowercase();
        if ["bulk", "junk", "list", "auto_reply"].contains(&value.trim()) {
            return Class::Automatic(AutoReason::Precedence(value));
        }
    }
    if message.null_return_path {
        return Class::Automatic(AutoReason::NullReturnPath);
    }
    if message.list_id.is_some() {
        return Class::Automatic(AutoReason::MailingList);
    }
    let Some(from) = &message.from else {
        return Class::NoSender;
    };
    let local = from.address.split('@').next().unwrap_or("");
    if local == "mailer-daemon" {
        return Class::Automatic(AutoReason::MailerDaemon);
    }
    if from.address == support_address {
        return Class::Automatic(AutoReason::OwnAddress);
    }
    Class::Customer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn check(headers: &str, expected: Class) {
        let raw = format!("{headers}\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n");
        assert_eq!(
            classify(&parse(raw.as_bytes()), "support@example.test"),
            expected,
            "{headers}"
        );
    }

    #[test]
    fn customers() {
        check("From: a@b.c", Class::Customer);
        check("From: a@b.c\r\nAuto-Submitted: no", Class::Customer);
        check("From: a@b.c\r\nPrecedence: first-class", Class::Customer);
    }

    #[test]
    fn automatic_mail() {
        check(
            "From: a@b.c\r\nAuto-Submitted: auto-replied",
            Class::Automatic(AutoReason::AutoSubmitted("auto-replied".into())),
        );
        check(
            "From: a@b.c\r\nAuto-Submitted: Auto-Generated; owner-email=x@y",
            Class::Automatic(AutoReason::AutoSubmitted(
                "auto-generated; owner-email=x@y".into(),
            )),
        );
        check(
            "From: a@b.c\r\nPrecedence: Bulk",
            Class::Automatic(AutoReason::Precedence("bulk".into())),
        );
        check(
            "Return-Path: <>\r\nFrom: a@b.c",
            Class::Automatic(AutoReason::NullReturnPath),
        );
        check(
            "From: MAILER-DAEMON@b.c",
            Class::Automatic(AutoReason::MailerDaemon),
        );
        check("From: Bob <postmaster@b.c>", Class::Customer);
        check(
            "From: a@b.c\r\nList-Id: <x.lists.b.c>",
            Class::Automatic(AutoReason::MailingList),
        );
        check(
            "From: Support <SUPPORT@example.test>",
            Class::Automatic(AutoReason::OwnAddress),
        );
    }

    #[test]
    fn no_sender() {
        check("Subject: hi", Class::NoSender);
        check("From: undisclosed-recipients:;", Class::NoSender);
    }
}
