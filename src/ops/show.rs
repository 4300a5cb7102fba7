//! `deskgate tickets`, `ticket N`, `outbox`, `events`, `quarantine`: human tables or `--json`.
//! The caller hands the human views a [`super::terminal::Terminal`], which escapes controls.

use std::io::Write;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::store::{
    ContactView, EarlierTicket, EventView, InstanceView, MessageView, OutboxView, Owner,
    QuarantineView, TicketView, from_ms,
};

/// Formats times for people in the support desk's zone: `2026-11-23 10:00 EET`.
pub fn when(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// `Name <address>`, the bare address, or `missing`.
fn person(name: &Option<String>, address: &Option<String>, missing: &str) -> String {
    match (name, address) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (None, Some(address)) => address.clone(),
        _ => missing.to_string(),
    }
}

fn ticket_json(t: &TicketView) -> Value {
    json!({
        "id": t.id.0,
        "mailbox": t.mailbox,
        "address": t.address,
        "subject": t.subject,
        "customer": { "address": t.customer_address, "name": t.customer_name },
        "status": t.status.as_str(),
        "created_at": t.created_at.to_string(),
        "updated_at": t.updated_at.to_string(),
        "messages": t.n_messages,
        "next_due_at": t.next_due_at.map(|d| d.to_string()),
        "assigned": t.assigned,
        "priority": t.priority,
        "first_response_at": t.first_response_at.map(|d| d.to_string()),
        "language": t.language.map(|(lang, _)| lang.code()),
        "language_source": t.language.map(|(_, source)| source.as_str()),
        "imported_quietly": t.imported_quietly,
    })
}

pub fn tickets(
    out: &mut impl Write,
    tickets: &[TicketView],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let list: Vec<Value> = tickets.iter().map(ticket_json).collect();
        return writeln!(out, "{}", Value::Array(list));
    }
    if tickets.is_empty() {
        return writeln!(out, "no tickets");
    }
    writeln!(
        out,
        "{:>6}  {:<8}  {:<4}  {:<28}  {:<36}  {:>4}  {:<20}  DUE",
        "TICKET", "STATUS", "LANG", "CUSTOMER", "SUBJECT", "MSGS", "OPENED"
    )?;
    for t in tickets {
        writeln!(
            out,
            "{:>6}  {:<8}  {:<4}  {:<28}  {:<36}  {:>4}  {:<20}  {}",
            t.id.0,
            t.status.as_str(),
            t.language.map_or("-", |(lang, _)| lang.code()),
            cut(t.customer_address.as_deref().unwrap_or("(unknown)"), 28),
            cut(&t.subject, 36),
            t.n_messages,
            when(t.created_at, tz),
            match t.next_due_at {
                Some(due) => when(due, tz),
                None if t.imported_quietly => "- (imported quietly)".to_string(),
                None => "-".to_string(),
            },
        )?;
    }
    let quiet = tickets.iter().filter(|t| t.imported_quietly).count();
    if quiet > 0 {
        writeln!(out)?;
        writeln!(
            out,
            "{quiet} of these {} tickets were imported quietly: mail already in the mailbox at the first start, no acknowledgement sent, no deadline",
            tickets.len()
        )?;
    }
    Ok(())
}

pub fn ticket(
    out: &mut impl Write,
    ticket: &TicketView,
    messages: &[MessageView],
    events: &[EventView],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let mut value = ticket_json(ticket);
        value["transcript"] = messages
            .iter()
            .map(|m| {
                json!({
                    "direction": if m.outbound { "out" } else { "in" },
                    "message_id": m.message_id,
                    "from": { "address": m.from_address, "name": m.from_name },
                    "subject": m.subject,
                    "at": m.received_at.to_string(),
                    "class": m.class,
                    "internal": m.internal,
                    "agent": m.agent,
                    "defects": m.defects.split_whitespace().collect::<Vec<_>>(),
                    "text": m.body_text,
                    "attachments": m.attachments,
                })
            })
            .collect();
        value["events"] = events
            .iter()
            .map(|e| json!({ "at": e.at.to_string(), "kind": e.kind, "detail": e.detail }))
            .collect();
        return writeln!(out, "{value}");
    }
    writeln!(
        out,
        "Ticket {} [{}] {}",
        ticket.id.0, ticket.status, ticket.subject
    )?;
    let customer = person(&ticket.customer_name, &ticket.customer_address, "(unknown)");
    match &ticket.address {
        Some(address) => writeln!(
            out,
            "Customer: {customer}   Mailbox: {} (written to {address})",
            ticket.mailbox
        )?,
        None => writeln!(out, "Customer: {customer}   Mailbox: {}", ticket.mailbox)?,
    }
    if let Some((lang, source)) = ticket.language {
        writeln!(out, "Language: {lang} ({})", source.as_str())?;
    }
    writeln!(
        out,
        "Opened:   {}   Priority: {}   Assigned: {}",
        when(ticket.created_at, tz),
        ticket.priority,
        ticket.assigned.as_deref().unwrap_or("nobody")
    )?;
    if let Some(first) = ticket.first_response_at {
        writeln!(out, "First answered: {}", when(first, tz))?;
    }
    if let Some(due) = ticket.next_due_at {
        writeln!(out, "Answer due by: {}", when(due, tz))?;
    }
    for m in messages {
        let from = person(&m.from_name, &m.from_address, "(no sender)");
        let arrow = if m.outbound { "out" } else { "in " };
        let seen_by = if m.internal { ", agents only" } else { "" };
        writeln!(out)?;
        writeln!(
            out,
            "── {arrow} {}  {from}  [{}{seen_by}]",
            when(m.received_at, tz),
            m.class
        )?;
        writeln!(out, "   Subject: {}", m.subject)?;
        if !m.defects.is_empty() {
            writeln!(out, "   Defects: {}", m.defects)?;
        }
        if !m.attachments.is_empty() {
            writeln!(out, "   Attachments: {}", m.attachments.join(", "))?;
        }
        for line in m.body_text.trim_end().lines() {
            writeln!(out, "   {line}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "Events:")?;
    for e in events {
        writeln!(out, "  {}  {:<24} {}", when(e.at, tz), e.kind, e.detail)?;
    }
    Ok(())
}

/// `deskgate instances`: who runs, and who fetches which mailbox.
pub fn instances(
    out: &mut impl Write,
    instances: &[InstanceView],
    owners: &[Owner],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    let at = |ms: i64| when(from_ms(ms), tz);
    if as_json {
        let value = json!({
            "instances": instances.iter().map(|i| json!({
                "id": i.id,
                "host": i.host,
                "pid": i.pid,
                "version": i.version,
                "started_at": from_ms(i.started_at).to_string(),
                "seen_at": from_ms(i.seen_at).to_string(),
                "mailboxes": i.mailboxes,
            })).collect::<Vec<_>>(),
            "leases": owners.iter().map(|o| json!({
                "mailbox": o.mailbox,
                "instance": o.instance,
                "since": from_ms(o.since).to_string(),
                "expires_at": from_ms(o.expires_at).to_string(),
            })).collect::<Vec<_>>(),
        });
        return writeln!(out, "{value}");
    }
    if instances.is_empty() {
        writeln!(
            out,
            "no instance has been heard from in the last 30 seconds"
        )?;
    } else {
        writeln!(
            out,
            "{:<20} {:<20} {:>8} {:<10} {:<19}  MAILBOXES",
            "INSTANCE", "HOST", "PID", "VERSION", "LAST SEEN"
        )?;
    }
    for i in instances {
        let mailboxes = if i.mailboxes.is_empty() {
            "(standby)".to_string()
        } else {
            i.mailboxes.join(", ")
        };
        writeln!(
            out,
            "{:<20} {:<20} {:>8} {:<10} {:<19}  {}",
            i.id,
            i.host,
            i.pid,
            i.version,
            at(i.seen_at),
            mailboxes
        )?;
    }
    for o in owners
        .iter()
        .filter(|o| !instances.iter().any(|i| i.mailboxes.contains(&o.mailbox)))
    {
        writeln!(
            out,
            "mailbox {}: nobody fetches it now (lease of {} ran out at {})",
            o.mailbox,
            o.instance,
            at(o.expires_at)
        )?;
    }
    Ok(())
}

pub fn outbox(
    out: &mut impl Write,
    rows: &[OutboxView],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "id": r.id.0,
                    "ticket": r.ticket.map(|t| t.0),
                    "kind": r.kind,
                    "recipients": r.recipients.split_whitespace().collect::<Vec<_>>(),
                    "subject": r.subject,
                    "status": r.status,
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at.to_string(),
                    "last_error": r.last_error,
                    "created_at": r.created_at.to_string(),
                    "sent_at": r.sent_at.map(|t| t.to_string()),
                    "bounce": r.bounce,
                    "refused": r.refused.lines().collect::<Vec<_>>(),
                })
            })
            .collect();
        return writeln!(out, "{}", Value::Array(list));
    }
    if rows.is_empty() {
        return writeln!(out, "outbox is empty");
    }
    writeln!(
        out,
        "{:>6}  {:>6}  {:<15}  {:<7}  {:>8}  {:<28}  {:<20}  LAST ERROR",
        "ID", "TICKET", "KIND", "STATUS", "ATTEMPTS", "TO", "SENT / NEXT TRY"
    )?;
    for r in rows {
        let at = match (r.status.as_str(), r.sent_at) {
            ("sent", Some(sent)) => when(sent, tz),
            ("queued", _) => when(r.next_attempt_at, tz),
            _ => "-".to_string(),
        };
        writeln!(
            out,
            "{:>6}  {:>6}  {:<15}  {:<7}  {:>8}  {:<28}  {:<20}  {}",
            r.id.0,
            r.ticket.map_or("-".to_string(), |t| t.0.to_string()),
            r.kind,
            r.status,
            r.attempts,
            cut(&r.recipients, 28),
            at,
            match (&r.bounce, r.refused.is_empty()) {
                (Some(bounce), _) => format!("BOUNCED: {bounce}"),
                (None, false) => format!("REFUSED: {}", r.refused.replace('\n', "; ")),
                (None, true) => r.last_error.clone().unwrap_or_default(),
            },
        )?;
    }
    Ok(())
}

/// `deskgate contact ADDRESS`: what we remember about a customer, then their tickets.
pub fn contact(
    out: &mut impl Write,
    contact: &ContactView,
    history: &[EarlierTicket],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let value = json!({
            "address": contact.address,
            "name": contact.name,
            "language": contact.language.map(|l| l.code()),
            "first_seen": contact.first_seen.to_string(),
            "last_seen": contact.last_seen.to_string(),
            "tickets": contact.n_tickets,
            "messages": contact.n_messages,
            "history": history.iter().map(|h| json!({
                "id": h.id.0,
                "subject": h.subject,
                "status": h.status,
                "created_at": h.created_at.to_string(),
            })).collect::<Vec<_>>(),
        });
        return writeln!(out, "{value}");
    }
    writeln!(
        out,
        "{}",
        person(&contact.name, &Some(contact.address.clone()), "")
    )?;
    writeln!(
        out,
        "Language: {}",
        contact.language.map_or("(not known yet)", |l| l.code())
    )?;
    writeln!(
        out,
        "Seen:     {} to {}, {} messages, {} tickets",
        when(contact.first_seen, tz),
        when(contact.last_seen, tz),
        contact.n_messages,
        contact.n_tickets
    )?;
    for h in history {
        writeln!(
            out,
            "  {:>6}  {:<8}  {}  {}",
            h.id.0,
            h.status,
            when(h.created_at, tz),
            h.subject
        )?;
    }
    Ok(())
}

/// `deskgate events`: newest first.
pub fn events(
    out: &mut impl Write,
    events: &[EventView],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let list: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "at": e.at.to_string(),
                    "kind": e.kind,
                    "ticket": e.ticket.map(|t| t.0),
                    "detail": e.detail,
                })
            })
            .collect();
        return writeln!(out, "{}", Value::Array(list));
    }
    if events.is_empty() {
        return writeln!(out, "no events");
    }
    for e in events {
        writeln!(
            out,
            "{}  {:<26} {:>6}  {}",
            when(e.at, tz),
            e.kind,
            e.ticket.map_or("-".to_string(), |t| t.0.to_string()),
            e.detail
        )?;
    }
    Ok(())
}

fn quarantine_json(q: &QuarantineView) -> Value {
    json!({
        "id": q.id.0,
        "at": q.created_at.to_string(),
        "mailbox": q.mailbox,
        "uid": q.uid,
        "reason": q.reason,
        "message_id": q.message_id,
        "from": q.from_address,
        "subject": q.subject,
        "size": q.size,
        "complete": q.complete,
        "status": q.status.as_str(),
        "resolved_at": q.resolved_at.map(|t| t.to_string()),
    })
}

/// `deskgate quarantine list`.
pub fn quarantine_list(
    out: &mut impl Write,
    entries: &[QuarantineView],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let list: Vec<Value> = entries.iter().map(quarantine_json).collect();
        return writeln!(out, "{}", Value::Array(list));
    }
    if entries.is_empty() {
        return writeln!(out, "quarantine is empty");
    }
    writeln!(
        out,
        "{:>5}  {:<8}  {:<20}  {:>9}  {:<28}  {:<28}  REASON",
        "ID", "STATUS", "ARRIVED", "BYTES", "FROM", "SUBJECT"
    )?;
    for q in entries {
        writeln!(
            out,
            "{:>5}  {:<8}  {:<20}  {:>9}  {:<28}  {:<28}  {}",
            q.id.0,
            q.status.as_str(),
            when(q.created_at, tz),
            q.size,
            cut(q.from_address.as_deref().unwrap_or("(none)"), 28),
            cut(&q.subject, 28),
            q.reason,
        )?;
    }
    Ok(())
}

/// `deskgate quarantine show N`: the entry, then its raw bytes (`--raw`: only those).
pub fn quarantine_entry(
    out: &mut impl Write,
    entry: &QuarantineView,
    raw: &[u8],
    tz: &TimeZone,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let mut value = quarantine_json(entry);
        value["raw"] = Value::String(String::from_utf8_lossy(raw).into_owned());
        return writeln!(out, "{value}");
    }
    writeln!(
        out,
        "Quarantined message {} [{}]",
        entry.id.0,
        entry.status.as_str()
    )?;
    writeln!(out, "Reason:     {}", entry.reason)?;
    writeln!(out, "Arrived:    {}", when(entry.created_at, tz))?;
    if let (Some(mailbox), Some(uid)) = (&entry.mailbox, entry.uid) {
        writeln!(out, "Mailbox:    {mailbox} (UID {uid})")?;
    }
    writeln!(
        out,
        "From:       {}",
        entry.from_address.as_deref().unwrap_or("(none)")
    )?;
    writeln!(out, "Subject:    {}", entry.subject)?;
    writeln!(
        out,
        "Message-ID: {}",
        entry.message_id.as_deref().unwrap_or("(none)")
    )?;
    let kept = if entry.complete {
        "the whole message"
    } else {
        "the headers only"
    };
    writeln!(out, "Size:       {} bytes; kept: {kept}", entry.size)?;
    writeln!(out)?;
    out.write_all(raw)?;
    if !raw.ends_with(b"\n") {
        writeln!(out)?;
    }
    Ok(())
}
