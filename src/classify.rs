//! Who sent this and may we answer? Pure: looks at a [`ParsedMessage`] and the support
//! address, nothing else.
//!
//! Order of evidence: our own mail coming back, then mail that is beyond what a person sends
//! (quarantined), then delivery reports, then auto-replies, then lists and bulk mail. A
//! delivery report usually also carries `Auto-Submitted` and a null `Return-Path`, and an
//! auto-reply often carries `Precedence: bulk`, so the more specific kind is tested first.
//!
//! [`no_acknowledgement`] is the second question, for customers: a person wrote, but must not
//! get an automatic answer (`noreply@` addresses, colleagues on the support domain, Exchange's
//! `X-Auto-Response-Suppress`).

use crate::parse::{Defect, ParsedMessage};

/// What kind of sender a message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A person writing to support: recorded and, on a new ticket, acknowledged.
    Customer,
    /// An out-of-office reply, receipt or challenge: recorded on a ticket, never answered.
    AutoReply(Signal),
    /// A delivery report or bounce: recorded on the ticket of the message it returns, the
    /// failed recipient marked, never answered.
    Bounce(Signal),
    /// Mailing-list or bulk mail: recorded, never answered.
    Bulk(Signal),
    /// Mail deskgate sent coming back to it: dropped with a log line.
    OwnMail(Signal),
    /// Not something to act on: kept raw in quarantine with the reason.
    Quarantine(String),
}

/// The evidence a classification rests on; stored with the message and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// `Auto-Submitted:` with a value other than `no` (RFC 3834).
    AutoSubmitted(String),
    /// `X-Autoreply:` / `X-Autorespond:`.
    XAutoreply,
    /// `Precedence: bulk | junk | list | auto_reply`.
    Precedence(String),
    /// `Return-Path: <>`.
    NullReturnPath,
    /// From `mailer-daemon@` (or `postmaster@` with other bounce evidence).
    MailerDaemon,
    /// `multipart/report` of this `report-type`.
    Report(String),
    /// `X-Failed-Recipients:` (Exim).
    FailedRecipients,
    /// A subject such as "Undelivered Mail Returned to Sender" from an automatic sender.
    BounceSubject,
    /// A subject such as "Out of Office" / «رد تلقائي» / «Αυτόματη απάντηση».
    AutoReplySubject,
    /// An accept/decline from a calendar (`text/calendar; method=REPLY`).
    CalendarReply,
    /// A challenge-response system asks to verify the sender.
    ChallengeResponse,
    /// `List-Id:`.
    ListId,
    /// `List-Unsubscribe:`.
    ListUnsubscribe,
    /// `Mailing-List:` (ezmlm) or `X-Mailman-Version:`.
    MailingList,
    /// A `multipart/digest` part and "digest" in the subject.
    Digest,
    /// From (or Sender) a list's own address (`-request@`, `owner-`, `newsletter@`).
    ListSender,
    /// Our own `X-Deskgate-Loop` mark.
    LoopMark,
    /// From the support address itself.
    OwnAddress,
}

impl Class {
    /// Short text for the message row, events and logs.
    pub fn as_str(&self) -> String {
        match self {
            Class::Customer => "customer".to_string(),
            Class::AutoReply(s) => format!("auto-reply: {}", s.describe()),
            Class::Bounce(s) => format!("bounce: {}", s.describe()),
            Class::Bulk(s) => format!("bulk: {}", s.describe()),
            Class::OwnMail(s) => format!("own mail: {}", s.describe()),
            Class::Quarantine(reason) => format!("quarantine: {reason}"),
        }
    }

    /// The class alone, without its evidence: a label for metrics and KPIs.
    pub fn kind(&self) -> &'static str {
        match self {
            Class::Customer => "customer",
            Class::AutoReply(_) => "auto-reply",
            Class::Bounce(_) => "bounce",
            Class::Bulk(_) => "bulk",
            Class::OwnMail(_) => "own-mail",
            Class::Quarantine(_) => "quarantine",
        }
    }

    /// Only a person may get an automatic answer or a deadline.
    pub fn is_customer(&self) -> bool {
        matches!(self, Class::Customer)
    }
}

impl Signal {
    pub fn describe(&self) -> String {
        match self {
            Signal::AutoSubmitted(v) => format!("Auto-Submitted: {v}"),
            Signal::XAutoreply => "X-Autoreply/X-Autorespond".to_string(),
            Signal::Precedence(v) => format!("Precedence: {v}"),
            Signal::NullReturnPath => "null Return-Path".to_string(),
            Signal::MailerDaemon => "sent by a mailer daemon".to_string(),
            Signal::Report(t) => format!("multipart/report; report-type={t}"),
            Signal::FailedRecipients => "X-Failed-Recipients".to_string(),
            Signal::BounceSubject => "non-delivery subject".to_string(),
            Signal::AutoReplySubject => "out-of-office subject".to_string(),
            Signal::CalendarReply => "calendar reply".to_string(),
            Signal::ChallengeResponse => "challenge-response".to_string(),
            Signal::ListId => "List-Id".to_string(),
            Signal::ListUnsubscribe => "List-Unsubscribe".to_string(),
            Signal::MailingList => "Mailing-List/X-Mailman-Version".to_string(),
            Signal::Digest => "multipart/digest".to_string(),
            Signal::ListSender => "sent by a list or newsletter address".to_string(),
            Signal::LoopMark => "our X-Deskgate-Loop header".to_string(),
            Signal::OwnAddress => "sent from one of our addresses".to_string(),
        }
    }
}

/// Classifies `message` for a support desk whose addresses are `ours` (lower case: the
/// support address and every `[[mailbox.address]]`).
pub fn classify(message: &ParsedMessage, ours: &[String]) -> Class {
    if message.loop_marks.iter().any(|m| ours.contains(m)) {
        return Class::OwnMail(Signal::LoopMark);
    }
    let from = message.from.as_ref().map(|p| p.address.as_str());
    if from.is_some_and(|f| ours.iter().any(|o| o == f)) {
        return Class::OwnMail(Signal::OwnAddress);
    }
    if message.defects.contains(&Defect::ParserFailed) {
        return Class::Quarantine("the MIME parser failed on this message".to_string());
    }
    if let Some(reason) = &message.excessive {
        return Class::Quarantine(reason.clone());
    }
    if let Some(signal) = bounce_signal(message, from) {
        return Class::Bounce(signal);
    }
    if let Some(signal) = auto_reply_signal(message) {
        return Class::AutoReply(signal);
    }
    if let Some(value) = &message.precedence {
        let value = value.trim().to_ascii_lowercase();
        if ["bulk", "junk", "list"].contains(&value.as_str()) {
            return Class::Bulk(Signal::Precedence(value));
        }
    }
    if message.list_id.is_some() {
        return Class::Bulk(Signal::ListId);
    }
    if message.list_unsubscribe {
        return Class::Bulk(Signal::ListUnsubscribe);
    }
    if message.mailing_list {
        return Class::Bulk(Signal::MailingList);
    }
    // Pine forwards several messages as a digest too; a list digest also says so in its
    // subject ("Ppp digest, Vol 1 #2").
    if message.digest && message.subject.to_lowercase().contains("digest") {
        return Class::Bulk(Signal::Digest);
    }
    let Some(from) = from else {
        // Automatic mail without a From is still recognised above; a person without one
        // cannot be answered or even told apart.
        return Class::Quarantine(if message.defects.contains(&Defect::Unparseable) {
            "not a message (no header block)".to_string()
        } else {
            "no usable sender (From)".to_string()
        });
    };
    if is_list_sender(from) || message.sender.as_deref().is_some_and(is_list_sender) {
        return Class::Bulk(Signal::ListSender);
    }
    Class::Customer
}

/// List software's own addresses: `list-request@`, `list-bounces@`, `owner-list@`, and
/// newsletter senders.
fn is_list_sender(address: &str) -> bool {
    let local = local_part(address);
    ["-request", "-bounces", "-owner", "-admin"]
        .iter()
        .any(|suffix| local.ends_with(suffix))
        || local.starts_with("owner-")
        || local.starts_with("newsletter")
}

fn local_part(address: &str) -> &str {
    address.split('@').next().unwrap_or("")
}

fn bounce_signal(message: &ParsedMessage, from: Option<&str>) -> Option<Signal> {
    if let Some(kind) = &message.report.report_type
        && (kind == "delivery-status" || kind == "feedback-report")
    {
        return Some(Signal::Report(kind.clone()));
    }
    if message.report.recipients.iter().any(|r| r.failed()) {
        return Some(Signal::FailedRecipients);
    }
    let local = from.map(local_part).unwrap_or("");
    let daemon = ["mailer-daemon", "mail-daemon", "maildaemon", "mailerdaemon"].contains(&local);
    let subject = message.subject.to_lowercase();
    let bounce_subject = BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s));
    if daemon
        && (bounce_subject
            || message.auto_submitted.is_some()
            || !message.report.original_ids.is_empty()
            || message.null_return_path)
    {
        return Some(Signal::MailerDaemon);
    }
    let automatic_sender = message.null_return_path
        || daemon
        || local == "postmaster"
        || from.is_none()
        || message
            .auto_submitted
            .as_deref()
            .is_some_and(|v| !v.eq_ignore_ascii_case("no"));
    (bounce_subject && automatic_sender).then_some(Signal::BounceSubject)
}

/// Lower-case fragments of non-delivery subjects (English, as MTAs write them).
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable",
    "undelivered mail",
    "undeliverable mail",
    "delivery status notification",
    "delivery failure",
    "delivery has failed",
    "mail delivery failed",
    "mail delivery failure",
    "mail delivery system",
    "returned mail",
    "returned to sender",
    "failure notice",
    "non-delivery",
    "nondeliverable",
    "non deliverable",
    "could not be delivered",
    "delivery notification",
    "delivery problem",
    "delayed mail",
    "delivery delayed",
    "message delivery delay",
    "warning: could not send",
    "mail system error",
    "rejected:",
    "message not delivered",
    "bounce notification",
];

fn auto_reply_signal(message: &ParsedMessage) -> Option<Signal> {
    if let Some(value) = &message.auto_submitted {
        let value = value.to_ascii_lowercase();
        if value.split(';').next().map(str::trim) != Some("no") {
            return Some(Signal::AutoSubmitted(value));
        }
    }
    if message.x_autoreply {
        return Some(Signal::XAutoreply);
    }
    if let Some(value) = &message.precedence
        && value.trim().eq_ignore_ascii_case("auto_reply")
    {
        return Some(Signal::Precedence("auto_reply".into()));
    }
    if message.report.report_type.as_deref() == Some("disposition-notification") {
        return Some(Signal::Report("disposition-notification".into()));
    }
    if message.null_return_path {
        return Some(Signal::NullReturnPath);
    }
    if message.challenge_response {
        return Some(Signal::ChallengeResponse);
    }
    if message.report.calendar_reply {
        return Some(Signal::CalendarReply);
    }
    let subject = message.subject.to_lowercase();
    if subject.starts_with("auto:") || AUTO_REPLY_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return Some(Signal::AutoReplySubject);
    }
    None
}

/// Lower-case fragments of out-of-office subjects: English, Arabic and Greek first, then
/// the other languages the corpus and common servers use.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "automatic response",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "autoresponse",
    "vacation reply",
    "away from the office",
    "رد تلقائي",
    "رد آلي",
    "خارج المكتب",
    "αυτόματη απάντηση",
    "εκτός γραφείου",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "automatyczna odpowied",
];

/// Why a customer must not get an automatic answer, if so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAck {
    /// `noreply@`-style address: nobody reads replies.
    NoReplyAddress,
    /// An address of the support domain itself (`policy.no_ack_domains`): a colleague, or
    /// another alias that may answer back.
    SupportDomain,
    /// `X-Auto-Response-Suppress` asks for no automatic replies.
    SuppressHeader(String),
    /// The From address is not one mail can be sent to (`me`, `jdoe@machine.`).
    UnusableAddress(String),
}

impl NoAck {
    pub fn describe(&self) -> String {
        match self {
            NoAck::NoReplyAddress => "the sender is a no-reply address".to_string(),
            NoAck::SupportDomain => "the sender is on the support domain".to_string(),
            NoAck::SuppressHeader(v) => format!("X-Auto-Response-Suppress: {v}"),
            NoAck::UnusableAddress(a) => format!("`{a}` is not an address mail can be sent to"),
        }
    }
}

/// Local parts (letters and digits only) that start like these never read replies:
/// `no-reply`, `noreply.billing`, `do_not_reply`, `mailer-daemon`.
const NO_REPLY_PREFIXES: &[&str] = &["noreply", "donotreply", "mailerdaemon"];
/// Whole local parts that never read replies.
const NO_REPLY_NAMES: &[&str] = &["bounce", "bounces", "nobody", "noresponse"];

/// For a customer message: a reason not to acknowledge it, if any. `no_ack_domains` are
/// lower case.
pub fn no_acknowledgement(message: &ParsedMessage, no_ack_domains: &[String]) -> Option<NoAck> {
    let from = message.from.as_ref()?.address.as_str();
    if from.parse::<lettre::Address>().is_err() || !from.contains('.') {
        return Some(NoAck::UnusableAddress(from.to_string()));
    }
    let local = local_part(from);
    let squashed: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if NO_REPLY_PREFIXES.iter().any(|p| squashed.starts_with(p))
        || NO_REPLY_NAMES.contains(&squashed.as_str())
    {
        return Some(NoAck::NoReplyAddress);
    }
    let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
    if no_ack_domains.iter().any(|d| d == domain) {
        return Some(NoAck::SupportDomain);
    }
    if let Some(value) = &message.auto_response_suppress {
        let lower = value.to_ascii_lowercase();
        if lower
            .split(',')
            .map(str::trim)
            .any(|v| v == "all" || v == "autoreply" || v == "oof")
        {
            return Some(NoAck::SuppressHeader(value.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const SUPPORT: &str = "support@example.test";

    fn class_of(headers: &str) -> Class {
        let raw = format!("{headers}\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n");
        classify(&parse(raw.as_bytes()), &[SUPPORT.to_string()])
    }

    fn check(headers: &str, expected: Class) {
        assert_eq!(class_of(headers), expected, "{headers}");
    }

    #[test]
    fn customers() {
        check("From: a@b.c", Class::Customer);
        check("From: a@b.c\r\nAuto-Submitted: no", Class::Customer);
        check("From: a@b.c\r\nPrecedence: first-class", Class::Customer);
        check("From: Bob <postmaster@b.c>\r\nSubject: hi", Class::Customer);
        check("From: a@b.c\r\nSubject: Vacation booking", Class::Customer);
        check("From: a@b.c\r\nX-Autoreply: no", Class::Customer);
    }

    #[test]
    fn auto_replies() {
        use Signal::*;
        let auto = |s| Class::AutoReply(s);
        check(
            "From: a@b.c\r\nAuto-Submitted: Auto-Replied",
            auto(AutoSubmitted("auto-replied".into())),
        );
        check(
            "From: a@b.c\r\nAuto-Submitted: auto-generated; owner-email=x@y",
            auto(AutoSubmitted("auto-generated; owner-email=x@y".into())),
        );
        check("From: a@b.c\r\nX-Autoreply: yes", auto(XAutoreply));
        check("From: a@b.c\r\nX-Autorespond: 1", auto(XAutoreply));
        check(
            "From: a@b.c\r\nPrecedence: auto_reply",
            auto(Precedence("auto_reply".into())),
        );
        check("Return-Path: <>\r\nFrom: a@b.c", auto(NullReturnPath));
        check(
            "From: a@b.c\r\nSubject: Out of Office: hi",
            auto(AutoReplySubject),
        );
        check(
            "From: a@b.c\r\nSubject: AUTO: Jo is away",
            auto(AutoReplySubject),
        );
        check(
            "From: a@b.c\r\nSubject: =?utf-8?b?2LHYryDYqtmE2YLYp9im2Yo6INi32YTYqNmD?=",
            auto(AutoReplySubject),
        );
        check(
            "From: a@b.c\r\nSubject: =?utf-8?q?=CE=91=CF=85=CF=84=CF=8C=CE=BC=CE=B1=CF=84=CE=B7_=CE=B1=CF=80=CE=AC=CE=BD=CF=84=CE=B7=CF=83=CE=B7?=",
            auto(AutoReplySubject),
        );
        // Automatic mail needs no sender to be recognised.
        check("Return-Path: <>\r\nSubject: x", auto(NullReturnPath));
    }

    #[test]
    fn bounces() {
        use Signal::*;
        check(
            "From: MAILER-DAEMON@b.c\r\nSubject: Undelivered Mail Returned to Sender\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=x",
            Class::Bounce(Report("delivery-status".into())),
        );
        check(
            "From: MAILER-DAEMON@b.c\r\nSubject: failure notice",
            Class::Bounce(MailerDaemon),
        );
        check(
            "From: postmaster@b.c\r\nReturn-Path: <>\r\nSubject: Delivery Status Notification (Failure)",
            Class::Bounce(BounceSubject),
        );
        check(
            "From: a@b.c\r\nX-Failed-Recipients: x@y.z",
            Class::Bounce(FailedRecipients),
        );
        // A person's subject about a bounce is not one.
        check(
            "From: a@b.c\r\nSubject: Fwd: Undeliverable: invoice",
            Class::Customer,
        );
    }

    #[test]
    fn lists_and_bulk() {
        use Signal::*;
        check(
            "From: a@b.c\r\nPrecedence: Bulk",
            Class::Bulk(Precedence("bulk".into())),
        );
        check("From: a@b.c\r\nList-Id: <x.lists.b.c>", Class::Bulk(ListId));
        check(
            "From: a@b.c\r\nList-Unsubscribe: <mailto:u@b.c>",
            Class::Bulk(ListUnsubscribe),
        );
        check(
            "From: a@b.c\r\nMailing-List: contact x",
            Class::Bulk(MailingList),
        );
        check("From: ppp-request@b.c", Class::Bulk(ListSender));
        check("From: News <newsletter@b.c>", Class::Bulk(ListSender));
    }

    #[test]
    fn own_mail_and_quarantine() {
        check(
            "From: Support <SUPPORT@example.test>",
            Class::OwnMail(Signal::OwnAddress),
        );
        check(
            "From: x@other.test\r\nX-Deskgate-Loop: support@example.test",
            Class::OwnMail(Signal::LoopMark),
        );
        // Another deskgate's mark is not ours: its mail is automatic by Auto-Submitted.
        check(
            "From: x@other.test\r\nX-Deskgate-Loop: help@other.test",
            Class::Customer,
        );
        check(
            "Subject: hi",
            Class::Quarantine("no usable sender (From)".into()),
        );
        check(
            "From: undisclosed-recipients:;",
            Class::Quarantine("no usable sender (From)".into()),
        );
        let received = "Received: from x by y\r\n".repeat(crate::parse::MAX_RECEIVED + 1);
        assert!(matches!(
            class_of(&format!("{received}From: a@b.c")),
            Class::Quarantine(reason) if reason.contains("mail loop")
        ));
    }

    #[test]
    fn who_is_never_acknowledged() {
        let reason = |from: &str, extra: &str| {
            let raw = format!("From: {from}\r\n{extra}Subject: x\r\n\r\nbody");
            no_acknowledgement(&parse(raw.as_bytes()), &["example.test".to_string()])
        };
        assert_eq!(reason("a@b.c", ""), None);
        for noreply in [
            "noreply@b.c",
            "no-reply@b.c",
            "No_Reply.Billing@b.c",
            "do-not-reply@b.c",
            "DoNotReply@b.c",
            "bounces@b.c",
        ] {
            assert_eq!(
                reason(noreply, ""),
                Some(NoAck::NoReplyAddress),
                "{noreply}"
            );
        }
        assert_eq!(reason("replies@b.c", ""), None);
        assert_eq!(
            reason("colleague@example.test", ""),
            Some(NoAck::SupportDomain)
        );
        assert_eq!(
            reason("a@b.c", "X-Auto-Response-Suppress: All\r\n"),
            Some(NoAck::SuppressHeader("All".into()))
        );
        assert_eq!(
            reason("a@b.c", "X-Auto-Response-Suppress: RN, NRN\r\n"),
            None
        );
        assert_eq!(reason("me", ""), Some(NoAck::UnusableAddress("me".into())));
    }

    /// Random bytes built from mail-shaped fragments: parse, classify and the
    /// acknowledgement rules never panic (the corpus-mutation test in tests/it covers real
    /// messages).
    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        const FRAGMENTS: &[&[u8]] = &[
            b"From: ",
            b"Subject: ",
            b"Content-Type: multipart/mixed; boundary=b\r\n",
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
            b"Content-Type: message/delivery-status\r\n",
            b"Content-Type: message/rfc822\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"Final-Recipient: rfc822;",
            b"Action: failed\r\n",
            b"Message-ID: <",
            b"X-Deskgate-Loop: ",
            b"--b\r\n",
            b"--b--\r\n",
            b"=?utf-8?B?",
            b"=?windows-1256?Q?=E3=D1",
            b"?=",
            b"\r\n",
            b"\r\n\r\n",
            b"\r",
            b"\n",
            b"\x00",
            b"\xff\xfe",
            b"@",
            b"<>",
            b":",
            b";",
            b" ",
        ];
        let mut rng = StdRng::seed_from_u64(6);
        for _ in 0..3000 {
            let mut raw = Vec::new();
            for _ in 0..rng.random_range(0..80) {
                if rng.random_bool(0.7) {
                    raw.extend_from_slice(FRAGMENTS[rng.random_range(0..FRAGMENTS.len())]);
                } else {
                    for _ in 0..rng.random_range(1..12) {
                        raw.push(rng.random());
                    }
                }
            }
            let parsed = parse(&raw);
            let _ = classify(&parsed, &["support@example.test".to_string()]);
            let _ = no_acknowledgement(&parsed, &["example.test".into()]);
            assert!(!parsed.subject.contains(['\r', '\n']), "{raw:?}");
        }
    }
}
