//! The first two stages: `dedupe` (a message already stored only advances the checkpoint)
//! and `screen` (our own mail dropped, mail the classifier distrusts quarantined).

use jiff::Timestamp;

use super::{Message, Outcome, put_aside};
use crate::catalog::EventKind;
use crate::classify::Class;
use crate::model::TicketId;
use crate::store::{Event, StoreError, Tx, content_key, dedupe_key, legacy_content_key};

/// What `dedupe` found.
pub(super) enum Deduped {
    /// New: stored under this key.
    New(String),
    /// Already stored (on this ticket; `ours`: our own outbound mail); nothing else is
    /// written.
    Known {
        ticket: Option<TicketId>,
        ours: bool,
    },
}

/// Looks the message up by its key. A different message reusing a Message-ID (broken
/// mailers, forgeries) is kept as a message of its own under a key of its content, never
/// merged into the earlier one's ticket nor dropped.
pub(super) fn dedupe(
    tx: &Tx<'_>,
    message: &Message<'_>,
    now: Timestamp,
) -> Result<Deduped, StoreError> {
    let (source, parsed, raw) = (message.source, message.parsed, message.raw);
    let mailbox = Some(source.mailbox.as_str());
    let mut key = dedupe_key(parsed.message_id.as_deref(), raw);
    let content = content_key(
        parsed.from.as_ref().map(|p| p.address.as_str()),
        &parsed.subject,
        &parsed.text,
    );
    let mut known = tx.known_message(&key)?;
    if known.is_none() && parsed.message_id.is_none() {
        known = tx.known_message(&legacy_content_key(raw))?;
    }
    if let Some(earlier) = known
        .as_ref()
        .filter(|k| !k.outbound && k.content != content)
    {
        tx.record(
            &Event {
                mailbox,
                ticket: earlier.ticket,
                message: Some(earlier.message),
                detail: format!("another message arrived under {key}"),
                ..Event::new(EventKind::MessageReusedMessageId)
            },
            now,
        )?;
        key = format!("{key}#{content}");
        known = tx.known_message(&key)?;
    }
    let Some(known) = known else {
        return Ok(Deduped::New(key));
    };
    let kind = if known.outbound {
        EventKind::MessageOwnReturned
    } else {
        EventKind::MessageDuplicate
    };
    tx.record(
        &Event {
            mailbox,
            ticket: known.ticket,
            message: Some(known.message),
            detail: match source.imap {
                Some((uidvalidity, uid)) => {
                    format!("uid {uid} (uidvalidity {uidvalidity}) repeats {key}")
                }
                None => format!("delivered by the MTA; repeats {key}"),
            },
            ..Event::new(kind)
        },
        now,
    )?;
    Ok(Deduped::Known {
        ticket: known.ticket,
        ours: known.outbound,
    })
}

/// Drops our own mail and quarantines what the classifier distrusts (once: a repeat of a
/// quarantined message is a duplicate); `None` lets the message on. Mail an admin released
/// is never screened again.
pub(super) fn screen(
    tx: &Tx<'_>,
    message: &Message<'_>,
    key: &str,
    now: Timestamp,
) -> Result<Option<Outcome>, StoreError> {
    if message.released {
        return Ok(None);
    }
    let (source, parsed) = (message.source, message.parsed);
    let mailbox = Some(source.mailbox.as_str());
    match &message.class {
        Class::OwnMail(signal) => {
            tx.record(
                &Event {
                    mailbox,
                    detail: format!(
                        "{} (Message-ID {})",
                        signal.describe(),
                        parsed.message_id.as_deref().unwrap_or("none")
                    ),
                    ..Event::new(EventKind::MessageLoopDropped)
                },
                now,
            )?;
            Ok(Some(Outcome::Dropped {
                class: message.class.clone(),
            }))
        }
        Class::Quarantine(reason) => {
            if let Some(earlier) = tx.quarantined_key(key)? {
                tx.record(
                    &Event {
                        mailbox,
                        detail: format!("repeats quarantined message {earlier}"),
                        ..Event::new(EventKind::MessageDuplicate)
                    },
                    now,
                )?;
                return Ok(Some(Outcome::Duplicate {
                    ticket: None,
                    ours: false,
                }));
            }
            let raw = message.raw;
            let id = put_aside(tx, source, parsed, reason, raw, raw.len() as u64, now)?;
            Ok(Some(Outcome::Quarantined {
                id,
                reason: reason.clone(),
            }))
        }
        _ => Ok(None),
    }
}
