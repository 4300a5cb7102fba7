//! The catalogue of event kinds: every event deskgate records has one [`EventKind`], whose
//! dotted name (`ticket.created`) is what the `events` table, `deskgate events --kind` and
//! the KPIs read. The store converts at its edge (`store::Event`); a misspelt kind
//! does not compile.

/// Defines [`EventKind`] with the stored name of each variant.
macro_rules! event_kinds {
    ($($variant:ident = $name:literal,)+) => {
        /// The kind of a recorded event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($variant,)+
        }

        impl EventKind {
            /// Every kind, in catalogue order.
            pub const ALL: &[EventKind] = &[$(EventKind::$variant,)+];

            /// The stored name: `ticket.created`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }
        }
    };
}

event_kinds! {
    AckNotSent = "ack.not_sent",
    AckQueued = "ack.queued",
    AckWithheld = "ack.withheld",
    AgentAnswered = "agent.answered",
    AlertCleared = "alert.cleared",
    AlertSent = "alert.sent",
    BounceDelayed = "bounce.delayed",
    BounceNotNotified = "bounce.not_notified",
    BounceNotified = "bounce.notified",
    BounceReceived = "bounce.received",
    CustomerUpdated = "customer.updated",
    DeadlineBreached = "deadline.breached",
    DeadlineCancelled = "deadline.cancelled",
    DeadlineMet = "deadline.met",
    DeadlinePaused = "deadline.paused",
    DeadlineResumed = "deadline.resumed",
    DeadlineWarned = "deadline.warned",
    DeadlineWarningSkipped = "deadline.warning_skipped",
    EscalationSent = "escalation.sent",
    ItemFailed = "item.failed",
    MailboxDisconnected = "mailbox.disconnected",
    MailboxFirstStart = "mailbox.first_start",
    MailboxInitialImportDone = "mailbox.initial_import_done",
    MailboxLoginFailed = "mailbox.login_failed",
    MailboxLoginRecovered = "mailbox.login_recovered",
    MailboxUidvalidityChanged = "mailbox.uidvalidity_changed",
    MessageDuplicate = "message.duplicate",
    MessageImportedQuietly = "message.imported_quietly",
    MessageLoopDropped = "message.loop_dropped",
    MessageOwnReturned = "message.own_returned",
    MessageQuarantined = "message.quarantined",
    MessageReceived = "message.received",
    MessageReusedMessageId = "message.reused_message_id",
    NoteNotSent = "note.not_sent",
    NoteQueued = "note.queued",
    NoticeLimited = "notice.limited",
    NoticeNotSent = "notice.not_sent",
    NoticeQueued = "notice.queued",
    NotificationNotSent = "notification.not_sent",
    NotificationQueued = "notification.queued",
    OutboxDeferred = "outbox.deferred",
    OutboxFailed = "outbox.failed",
    OutboxKeyWithheld = "outbox.key_withheld",
    OutboxQueued = "outbox.queued",
    OutboxRefused = "outbox.refused",
    OutboxSent = "outbox.sent",
    QuarantineDeleted = "quarantine.deleted",
    QuarantineReleased = "quarantine.released",
    RelayRefused = "relay.refused",
    ReplyNotSent = "reply.not_sent",
    ReplyQueued = "reply.queued",
    SchedulePlanned = "schedule.planned",
    SchedulerNotSent = "scheduler.not_sent",
    SenderLimited = "sender.limited",
    SmtpTransportFailed = "smtp.transport_failed",
    SurveyAnswered = "survey.answered",
    SurveyRepeated = "survey.repeated",
    SurveySent = "survey.sent",
    TicketAssigned = "ticket.assigned",
    TicketCc = "ticket.cc",
    TicketCreated = "ticket.created",
    TicketFirstResponse = "ticket.first_response",
    TicketLanguage = "ticket.language",
    TicketPriority = "ticket.priority",
    TicketReminded = "ticket.reminded",
    TicketStatus = "ticket.status",
    ForwardNotSent = "forward.not_sent",
    ForwardQueued = "forward.queued",
    MergedNotSent = "merged.not_sent",
    MergedQueued = "merged.queued",
    TicketForwarded = "ticket.forwarded",
    TicketJoined = "ticket.joined",
    TicketMerged = "ticket.merged",
    TicketCcCapped = "ticket.cc_capped",
}

impl EventKind {
    /// The kind stored under `name`, if deskgate records it.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dotted_and_read_back() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in EventKind::ALL {
            let name = kind.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert_eq!(name.matches('.').count(), 1, "{name}");
            assert_eq!(EventKind::from_name(name), Some(*kind));
        }
        assert_eq!(EventKind::from_name("ticket.creatd"), None);
    }
}
