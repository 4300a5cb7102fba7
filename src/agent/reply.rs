//! What an agent wrote: commands on the first lines, then the answer, without the quoted
//! notification, client quote headers or signature.
//!
//! Pure text in, [`AgentText`] out. Quoted text is cut at the first of:
//! - our reply-above marker (`##- … -##`, in any language the templates use);
//! - a client's quote header: "On … wrote:" (Gmail, Apple Mail, Thunderbird) and its Arabic
//!   (`كتب`) and Greek (`έγραψε`) forms, Outlook's `-----Original Message-----` and
//!   `From:`/`Sent:` blocks in English, Arabic and Greek;
//! - a trailing block of `>` lines;
//! - a signature separator `-- `.
//!
//! With nothing above the quote, an answer below the `>` quote of our marker is read instead
//! (bottom-posting). The words after `#forward ADDRESS` and the body go to the third party.
//! HTML answers are cut the same way in [`crate::render::html`].

use crate::config::Agents;
use crate::language::Lang;
use crate::model::{Priority, TicketId, TicketStatus};

/// The marker line notifications carry; everything from it down is ours, not the agent's.
pub const MARKER_START: &str = "##-";
pub const MARKER_END: &str = "-##";

/// A command an agent gave on the first lines of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status(TicketStatus),
    /// Assign to this agent (primary address).
    Assign(String),
    Priority(Priority),
    /// Answer the customer in this language from now on.
    Language(Lang),
    /// This ticket joins that one: transcript, participants, open deadlines and events move.
    Merge(TicketId),
    /// Send the conversation to a third party (a supplier), whose answers come back to the
    /// agents only; `text` is the agent's words to them (the rest of the line and the body).
    Forward {
        to: String,
        text: String,
    },
}

impl Command {
    pub fn describe(&self) -> String {
        match self {
            Command::Status(TicketStatus::Open) => "#open".to_string(),
            Command::Status(TicketStatus::Pending) => "#pending".to_string(),
            Command::Status(TicketStatus::Resolved) => "#resolve".to_string(),
            Command::Status(TicketStatus::Closed) => "#close".to_string(),
            Command::Assign(agent) => format!("#assign {agent}"),
            Command::Priority(p) => format!("#priority {}", p.as_str()),
            Command::Language(l) => format!("#lang {}", l.code()),
            Command::Merge(ticket) => format!("#merge {ticket}"),
            Command::Forward { to, .. } => format!("#forward {to}"),
        }
    }
}

/// An agent's reply, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentText {
    /// `#note` on the first line: for the other agents only.
    pub note: bool,
    pub commands: Vec<Command>,
    /// Unknown or malformed commands, each a sentence for the agent.
    pub errors: Vec<String>,
    /// The answer itself, quotes and signature removed; may be empty (commands only).
    pub body: String,
}

const HELP: &str = "known commands: #note, #open, #pending, #resolve, #close, #assign <agent>, #priority low|normal|high|urgent, #lang en|ar|el, #merge <ticket>, #forward <address> [text]";

/// Reads the text of an agent's reply. An agent who wrote nothing above the quote but
/// answered below the quote of our marker (bottom-posting) is read from there.
pub fn read(text: &str, agents: &Agents) -> AgentText {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let top = read_lines(&lines, agents);
    if top == AgentText::default()
        && let Some(below) = below_our_quote(&lines)
    {
        return read_lines(&lines[below..], agents);
    }
    top
}

/// The line after the `>` block that quotes our marker, when something follows it.
fn below_our_quote(lines: &[&str]) -> Option<usize> {
    let marker = lines.iter().position(|line| {
        let line = line.trim_start();
        line.starts_with('>') && line.contains(MARKER_START) && line.contains(MARKER_END)
    })?;
    let mut end = marker;
    for (i, line) in lines.iter().enumerate().skip(marker + 1) {
        match line.trim() {
            quoted if quoted.starts_with('>') => end = i,
            "" => {}
            _ => break,
        }
    }
    Some(end + 1).filter(|&below| below < lines.len())
}

fn read_lines(lines: &[&str], agents: &Agents) -> AgentText {
    let mut out = AgentText::default();
    let mut first_body = 0;
    let mut note_text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            first_body = i + 1;
            continue;
        }
        let Some(word) = command_word(line) else {
            break;
        };
        first_body = i + 1;
        let arg = line[1 + word.len()..].trim();
        match (word.to_lowercase().as_str(), arg) {
            ("note", text) => {
                out.note = true;
                note_text = text.to_string();
            }
            ("open", "") => out.commands.push(Command::Status(TicketStatus::Open)),
            ("pending", "") => out.commands.push(Command::Status(TicketStatus::Pending)),
            ("resolve", "") => out.commands.push(Command::Status(TicketStatus::Resolved)),
            ("close", "") => out.commands.push(Command::Status(TicketStatus::Closed)),
            ("open" | "pending" | "resolve" | "close", _) => out
                .errors
                .push(format!("`{line}`: #{word} takes no argument")),
            ("assign", "") => out.errors.push(format!(
                "`{line}`: say whom to assign, e.g. `#assign agent@example.com`"
            )),
            ("assign", who) => match find_agent(agents, who) {
                Some(address) => out.commands.push(Command::Assign(address)),
                None => out.errors.push(format!(
                    "`{line}`: `{who}` is not a configured agent (give an agent's address or name; agents: {})",
                    agents
                        .agents
                        .iter()
                        .map(|a| a.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
            ("lang", code) => match Lang::parse(code).filter(|l| l.code() == code.to_lowercase()) {
                Some(lang) => out.commands.push(Command::Language(lang)),
                None => out.errors.push(format!(
                    "`{line}`: language must be one of {}",
                    Lang::ALL.map(|l| l.code()).join(", ")
                )),
            },
            ("merge", number) => match merge_target(number) {
                Some(ticket) => out.commands.push(Command::Merge(ticket)),
                None => out.errors.push(format!(
                    "`{line}`: say which ticket this one joins, e.g. `#merge 42`"
                )),
            },
            ("forward", rest) => match forward_target(rest) {
                Some((to, text)) => out.commands.push(Command::Forward { to, text }),
                None => out.errors.push(format!(
                    "`{line}`: say whom to forward to, e.g. `#forward supplier@example.com Please check`"
                )),
            },
            ("priority", level) => match Priority::parse(&level.to_lowercase()) {
                Some(p) => out.commands.push(Command::Priority(p)),
                None => out.errors.push(format!(
                    "`{line}`: priority must be low, normal, high or urgent"
                )),
            },
            _ => out
                .errors
                .push(format!("`{line}`: unknown command #{word}; {HELP}")),
        }
    }
    let body = strip_quoted(&lines[first_body.min(lines.len())..]);
    out.body = match (note_text.is_empty(), body.is_empty()) {
        (true, _) => body,
        (false, true) => note_text,
        (false, false) => format!("{note_text}\n{body}"),
    };
    // What follows #forward is written to the third party, not to the customer.
    if let Some(Command::Forward { text, .. }) = out
        .commands
        .iter_mut()
        .find(|c| matches!(c, Command::Forward { .. }))
    {
        let body = std::mem::take(&mut out.body);
        *text = [text.as_str(), body.as_str()]
            .iter()
            .filter(|t| !t.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    out
}

/// `42`, `#42` or `[#42]`.
fn merge_target(arg: &str) -> Option<TicketId> {
    let digits = arg
        .trim_matches(|c| c == '[' || c == ']')
        .trim_start_matches('#');
    digits.parse::<i64>().ok().filter(|n| *n > 0).map(TicketId)
}

/// `address [text]`: an address that mail can be sent to, and the words after it.
fn forward_target(arg: &str) -> Option<(String, String)> {
    let (address, text) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
    let address = address.trim_matches(|c| c == '<' || c == '>');
    address
        .parse::<lettre::Address>()
        .ok()
        .map(|a| (a.to_string().to_ascii_lowercase(), text.trim().to_string()))
}

/// `#word …` → `word` when the line starts with `#` and a letter.
pub(crate) fn command_word(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let end = rest
        .find(|c: char| !c.is_alphanumeric())
        .unwrap_or(rest.len());
    let word = &rest[..end];
    word.chars()
        .next()
        .filter(|c| c.is_alphabetic())
        .map(|_| word)
}

fn find_agent(agents: &Agents, who: &str) -> Option<String> {
    let who = who.trim_matches(|c| c == '<' || c == '>');
    agents
        .by_address(who)
        .or_else(|| {
            agents
                .agents
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(who))
        })
        .map(|a| a.address.clone())
}

/// What someone wrote above the quote of our mail and their signature.
pub fn unquoted(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    strip_quoted(&lines)
}

/// The lines above the first quote or signature, trimmed of blank lines at both ends.
fn strip_quoted(lines: &[&str]) -> String {
    let cut = (0..lines.len())
        .find(|&i| starts_quote(lines, i))
        .unwrap_or(lines.len());
    let mut kept = &lines[..cut];
    while let [rest @ .., last] = kept
        && last.trim().is_empty()
    {
        kept = rest;
    }
    while let [first, rest @ ..] = kept
        && first.trim().is_empty()
    {
        kept = rest;
    }
    kept.iter()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

fn starts_quote(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim();
    let next = lines.get(i + 1).map_or("", |l| l.trim());
    let bare = line.trim_start_matches('>').trim();
    (bare.contains(MARKER_START) && bare.contains(MARKER_END))
        || line == "--"
        || lines[i] == "-- "
        || is_wrote_line(line)
        || (!next.is_empty() && is_wrote_line(&format!("{line} {next}")) && !is_wrote_line(next))
        || is_original_message(line)
        || (line.chars().count() >= 20 && line.chars().all(|c| c == '_'))
        || is_header_block(lines, i)
        || (line.starts_with('>')
            && lines[i..]
                .iter()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('>')))
}

/// "On Mon, 23 Nov 2026 at 10:00, Mona <m@x> wrote:" and its Arabic and Greek forms.
fn is_wrote_line(line: &str) -> bool {
    let ends = line.ends_with(':') || line.ends_with('：');
    ends && ((line.starts_with("On ") && line.contains(" wrote"))
        || line.contains("έγραψε")
        || line.contains("كتب"))
}

fn is_original_message(line: &str) -> bool {
    line.starts_with("--")
        && line.ends_with("--")
        && ["original message", "αρχικό μήνυμα", "الرسالة الأصلية"]
            .iter()
            .any(|w| line.to_lowercase().contains(w))
}

/// Outlook's quote header: `From:` followed within four lines by `Sent:`, `Date:`, `To:` or
/// `Subject:` (or their Greek and Arabic forms), optionally in `*bold*`.
fn is_header_block(lines: &[&str], i: usize) -> bool {
    let key = |line: &str| -> String {
        line.trim()
            .trim_start_matches('*')
            .split(':')
            .next()
            .unwrap_or("")
            .trim_end_matches('*')
            .trim()
            .to_lowercase()
    };
    let has_colon = |line: &str| line.contains(':');
    if !has_colon(lines[i]) || !["from", "από", "من"].contains(&key(lines[i]).as_str()) {
        return false;
    }
    lines[i + 1..].iter().take(4).any(|l| {
        has_colon(l)
            && [
                "sent",
                "date",
                "to",
                "subject",
                "στάλθηκε",
                "ημερομηνία",
                "προς",
                "θέμα",
                "تم الإرسال",
                "التاريخ",
                "إلى",
                "الموضوع",
            ]
            .contains(&key(l).as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::fixtures::agents;

    #[test]
    fn thunderbird_reply_loses_the_quote() {
        let text = "Please restart the printer.\n\nOn 23/11/2026 10:00, Example Support wrote:\n> ##- Please type your reply above this line -##\n> Ticket [#4]\n";
        let read = read(text, &agents());
        assert_eq!(read.body, "Please restart the printer.");
        assert!(read.commands.is_empty() && read.errors.is_empty() && !read.note);
    }

    #[test]
    fn gmail_wraps_the_wrote_line() {
        let text = "Fixed.\n\nOn Mon, 23 Nov 2026 at 10:00, Example Support <\nsupport+4.0123@example.test> wrote:\n\n> quoted\n";
        assert_eq!(read(text, &agents()).body, "Fixed.");
    }

    #[test]
    fn outlook_blocks_in_three_languages() {
        for header in [
            "-----Original Message-----\nFrom: Example Support\nSent: Monday",
            "________________________________\nFrom: Example Support <support@example.test>\nSent: Monday, 23 November 2026 10:00\nTo: Alice",
            "*From:* Example Support\n*Sent:* Monday",
            "Από: Example Support\nΣτάλθηκε: Δευτέρα",
            "من: Example Support\nتم الإرسال: الاثنين",
            "-----Αρχικό μήνυμα-----",
        ] {
            let text = format!("Answer here.\n\n{header}\n\nold text\n");
            assert_eq!(read(&text, &agents()).body, "Answer here.", "{header}");
        }
    }

    #[test]
    fn arabic_and_greek_wrote_lines() {
        for header in [
            "في الاثنين، 23 نوفمبر 2026 في 10:00 ص كتب Example Support <support@example.test>:",
            "Στις Δευ 23 Νοε 2026 στις 10:00, ο/η Example Support <support@example.test> έγραψε:",
            "Ο/Η Example Support έγραψε στις 23/11/2026 10:00:",
        ] {
            let text = format!("Καλημέρα, done.\n\n{header}\n> old\n");
            assert_eq!(read(&text, &agents()).body, "Καλημέρα, done.", "{header}");
        }
    }

    #[test]
    fn signature_and_marker_cut_the_text() {
        let text = "Hi,\nsee below.\n-- \nAlice, Support team\n";
        assert_eq!(read(text, &agents()).body, "Hi,\nsee below.");
        let text = "Done\n##- Please type your reply above this line -##\nTicket";
        assert_eq!(read(text, &agents()).body, "Done");
    }

    #[test]
    fn interleaved_quotes_are_kept_but_a_trailing_block_is_not() {
        let text = "> Is it on?\nYes.\n> And the cable?\nAlso yes.\n\n> old\n> older\n";
        assert_eq!(
            read(text, &agents()).body,
            "> Is it on?\nYes.\n> And the cable?\nAlso yes."
        );
    }

    #[test]
    fn commands_on_the_first_lines() {
        let read = read(
            "#assign Bob\n#priority HIGH\n#pending\n#lang el\n\nWe need your serial number.\n",
            &agents(),
        );
        assert_eq!(
            read.commands,
            vec![
                Command::Assign("agent2@example.test".into()),
                Command::Priority(Priority::High),
                Command::Status(TicketStatus::Pending),
                Command::Language(Lang::El),
            ]
        );
        assert!(read.errors.is_empty(), "{:?}", read.errors);
        assert_eq!(read.body, "We need your serial number.");
    }

    #[test]
    fn a_note_and_a_close() {
        let read = read("#note\nCustomer is a VIP.\n\nOn x wrote:\n> y", &agents());
        assert!(read.note);
        assert_eq!(read.body, "Customer is a VIP.");
        let read = super::read("#close\n", &agents());
        assert_eq!(read.commands, vec![Command::Status(TicketStatus::Closed)]);
        assert_eq!(read.body, "");
    }

    #[test]
    fn unknown_and_malformed_commands_are_reported() {
        let read = read(
            "#frobnicate\n#assign nobody@x.test\n#priority soon\n#close now\n#assign\n#lang de\nText",
            &agents(),
        );
        assert!(read.commands.is_empty());
        assert_eq!(read.errors.len(), 6, "{:?}", read.errors);
        assert!(read.errors[0].contains("unknown command #frobnicate"));
        assert!(read.errors[1].contains("not a configured agent"));
        assert!(read.errors[2].contains("low, normal, high or urgent"));
        assert!(read.errors[3].contains("takes no argument"));
        assert!(read.errors[4].contains("say whom"));
        assert!(read.errors[5].contains("one of en, ar, el"));
    }

    #[test]
    fn an_answer_below_our_quote_is_found() {
        let text = "On 23/11/2026 10:00, Example Support wrote:\n> ##- Please type your reply above this line -##\n> Ticket [#4]\n>\n> It smokes.\n\n#pending\nPlease unplug it.\n-- \nAlice\n";
        let read = read(text, &agents());
        assert_eq!(read.body, "Please unplug it.");
        assert_eq!(read.commands, vec![Command::Status(TicketStatus::Pending)]);
        let nothing = "On 23/11/2026 10:00, Example Support wrote:\n> ##- Please type your reply above this line -##\n> It smokes.\n\n-- \nAlice\n";
        assert_eq!(super::read(nothing, &agents()), AgentText::default());
        let not_ours = "On x wrote:\n> someone else's mail\n\nBelow.\n";
        assert_eq!(
            super::read(not_ours, &agents()).body,
            "",
            "only below our marker"
        );
    }

    #[test]
    fn merge_and_forward() {
        let read = read("#merge [#42]\n", &agents());
        assert_eq!(read.commands, vec![Command::Merge(TicketId(42))]);
        let read = super::read(
            "#forward <Parts@Supplier.example> Is part 7 in stock?\n\nThe customer needs two.\n\nOn x wrote:\n> y",
            &agents(),
        );
        assert_eq!(
            read.commands,
            vec![Command::Forward {
                to: "parts@supplier.example".into(),
                text: "Is part 7 in stock?\n\nThe customer needs two.".into(),
            }]
        );
        assert_eq!(read.body, "", "nothing of it goes to the customer");
        let read = super::read(
            "#merge soon\n#forward not-an-address\n#merge 0\n",
            &agents(),
        );
        assert!(read.commands.is_empty());
        assert_eq!(read.errors.len(), 3, "{:?}", read.errors);
    }

    #[test]
    fn a_hash_number_is_text_not_a_command() {
        let read = read("#1 fix: reboot.\n", &agents());
        assert!(read.errors.is_empty() && read.commands.is_empty());
        assert_eq!(read.body, "#1 fix: reboot.");
    }
}
