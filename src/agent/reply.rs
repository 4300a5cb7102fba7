//! What an agent wrote: commands on the first lines, then the answer, without the quoted
//! notification, client quote headers or signature.
//!
//! Pure text in, [`AgentText`] out. Quoted text is cut at the first of:
//! - our reply-above marker (`##- … -##`, in any language the templates use);
//! - a client's quote header: "On … wrote:" (Gmail, Apple Mail, Thunderbird), Outlook's
//!   `-----Original Message-----` and `From:`/`Sent:` blocks, in English, Arabic, Greek,
//!   German, French, Spanish and Italian ([`quote`]);
//! - a trailing block of `>` lines;
//! - a signature separator `-- `.
//!
//! With nothing above the quote, an answer below the `>` quote of our marker is read instead
//! (bottom-posting). The words after `#forward ADDRESS` and the body go to the third party.
//! HTML answers are cut the same way in `render::html`.
//!
//! Only the first 256 KB and 10,000 lines of a text are read ([`quote::MAX_BYTES`],
//! [`quote::MAX_LINES`]), in time linear in that prefix.

pub mod leak;
pub mod quote;

use crate::config::Agents;
use crate::language::Lang;
use crate::model::{Priority, TicketId, TicketStatus};

pub use crate::templates::{MARKER_END, MARKER_START};

/// A command an agent gave on the first lines of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status(TicketStatus),
    /// Assign to this agent (primary address).
    Assign(String),
    Priority(Priority),
    /// Answer the customer in this language from now on.
    Language(Lang),
    /// Change who receives the ticket's answers.
    Cc(CcChange),
    /// This ticket joins that one: transcript, participants, open deadlines and events move.
    Merge(TicketId),
    /// Send the conversation to a third party (a supplier), whose answers come back to the
    /// agents only; `text` is the agent's words to them (the rest of the line and the body).
    Forward {
        to: String,
        text: String,
    },
}

/// `#cc add ADDRESS` or `#cc remove ADDRESS` (lower case, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CcChange {
    Add(String),
    Remove(String),
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
            Command::Cc(CcChange::Add(address)) => format!("#cc add {address}"),
            Command::Cc(CcChange::Remove(address)) => format!("#cc remove {address}"),
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

const HELP: &str = "known commands: #note, #open, #pending, #resolve, #close, #assign <agent>, #priority low|normal|high|urgent, #lang en|ar|el, #cc add|remove <address>, #merge <ticket>, #forward <address> [text]";

/// Reads the text of an agent's reply; `own` are the desk's addresses, which (like agents'
/// addresses and every sub-address of ours, reply keys included) can never be a recipient.
/// An agent who wrote nothing above the quote but answered below the quote of our marker
/// (bottom-posting) is read from there.
pub fn read(text: &str, agents: &Agents, own: &[String]) -> AgentText {
    let lines = quote::lines(text);
    let top = read_lines(&lines, agents, own);
    if top == AgentText::default()
        && let Some(below) = below_our_quote(&lines)
    {
        return read_lines(&lines[below..], agents, own);
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

fn read_lines(lines: &[&str], agents: &Agents, own: &[String]) -> AgentText {
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
            ("priority", level) => match Priority::parse(&level.to_lowercase()) {
                Some(p) => out.commands.push(Command::Priority(p)),
                None => out.errors.push(format!(
                    "`{line}`: priority must be low, normal, high or urgent"
                )),
            },
            ("cc", arg) => match cc_change(arg, agents, own) {
                Ok(change) => out.commands.push(Command::Cc(change)),
                Err(why) => out.errors.push(format!("`{line}`: {why}")),
            },
            ("merge", number) => match merge_target(number) {
                Some(ticket) => out.commands.push(Command::Merge(ticket)),
                None => out.errors.push(format!(
                    "`{line}`: say which ticket this one joins, e.g. `#merge 42`"
                )),
            },
            ("forward", rest) => {
                let (address, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                match recipient(address, agents, own) {
                    Ok(to) => out.commands.push(Command::Forward {
                        to,
                        text: text.trim().to_string(),
                    }),
                    Err(why) => out.errors.push(format!(
                        "`{line}`: {why}; e.g. `#forward supplier@example.com Please check`"
                    )),
                }
            }
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

/// `add ADDRESS` / `remove ADDRESS`: a deliverable address that is not ours nor an agent's.
fn cc_change(arg: &str, agents: &Agents, own: &[String]) -> Result<CcChange, String> {
    let (verb, address) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
    let address = recipient(address, agents, own);
    match verb.to_lowercase().as_str() {
        "add" => address.map(CcChange::Add),
        "remove" => address.map(CcChange::Remove),
        _ => Err("write `#cc add ADDRESS` or `#cc remove ADDRESS`".to_string()),
    }
}

/// An address a command may send to (lower case): deliverable, not ours (nor a reply key),
/// not an agent's.
fn recipient(address: &str, agents: &Agents, own: &[String]) -> Result<String, String> {
    let address = address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase();
    if address.is_empty() {
        return Err("give an address, e.g. `#cc add someone@example.com`".to_string());
    }
    if address.parse::<lettre::Address>().is_err() {
        return Err(format!("`{address}` is not a valid mail address"));
    }
    let separator = agents.relay.as_ref().map_or("+", |r| r.separator.as_str());
    let notes = agents
        .relay
        .as_ref()
        .and_then(|r| r.notes_address.as_deref());
    if own
        .iter()
        .any(|o| is_address_or_sub_address(&address, o, separator))
        || notes == Some(address.as_str())
    {
        return Err(format!(
            "`{address}` is one of deskgate's own addresses (or a reply key); it can never receive answers"
        ));
    }
    if agents.by_address(&address).is_some() {
        return Err(format!(
            "`{address}` is an agent's address; agents follow tickets through deskgate, not as recipients"
        ));
    }
    Ok(address)
}

/// `address` is `own` or `own`'s local part with `separator` and anything after it
/// (`support+4.token@example.com` for `support@example.com`).
pub(crate) fn is_address_or_sub_address(address: &str, own: &str, separator: &str) -> bool {
    let (Some((local, domain)), Some((own_local, own_domain))) =
        (address.rsplit_once('@'), own.rsplit_once('@'))
    else {
        return false;
    };
    let own_local = own_local.to_lowercase();
    domain.eq_ignore_ascii_case(own_domain)
        && (local == own_local
            || local
                .strip_prefix(own_local.as_str())
                .is_some_and(|rest| rest.starts_with(separator)))
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

/// What someone wrote above the quote of our mail and their signature (within the analysed
/// part of the text: see [`quote`]).
pub fn unquoted(text: &str) -> String {
    strip_quoted(&quote::lines(text))
}

/// The lines above the first quote or signature, trimmed of blank lines at both ends.
fn strip_quoted(lines: &[&str]) -> String {
    let cut = quote::cut(lines.len(), |i| lines[i]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::fixtures::agents;

    fn own() -> Vec<String> {
        vec!["support@example.test".into(), "sales@example.test".into()]
    }

    #[test]
    fn thunderbird_reply_loses_the_quote() {
        let text = "Please restart the printer.\n\nOn 23/11/2026 10:00, Example Support wrote:\n> ##- Please type your reply above this line -##\n> Ticket [#4]\n";
        let read = read(text, &agents(), &own());
        assert_eq!(read.body, "Please restart the printer.");
        assert!(read.commands.is_empty() && read.errors.is_empty() && !read.note);
    }

    #[test]
    fn gmail_wraps_the_wrote_line() {
        let text = "Fixed.\n\nOn Mon, 23 Nov 2026 at 10:00, Example Support <\nsupport+4.0123@example.test> wrote:\n\n> quoted\n";
        assert_eq!(read(text, &agents(), &own()).body, "Fixed.");
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
            assert_eq!(
                read(&text, &agents(), &own()).body,
                "Answer here.",
                "{header}"
            );
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
            assert_eq!(
                read(&text, &agents(), &own()).body,
                "Καλημέρα, done.",
                "{header}"
            );
        }
    }

    #[test]
    fn signature_and_marker_cut_the_text() {
        let text = "Hi,\nsee below.\n-- \nAlice, Support team\n";
        assert_eq!(read(text, &agents(), &own()).body, "Hi,\nsee below.");
        let text = "Done\n##- Please type your reply above this line -##\nTicket";
        assert_eq!(read(text, &agents(), &own()).body, "Done");
    }

    #[test]
    fn interleaved_quotes_are_kept_but_a_trailing_block_is_not() {
        let text = "> Is it on?\nYes.\n> And the cable?\nAlso yes.\n\n> old\n> older\n";
        assert_eq!(
            read(text, &agents(), &own()).body,
            "> Is it on?\nYes.\n> And the cable?\nAlso yes."
        );
    }

    #[test]
    fn commands_on_the_first_lines() {
        let read = read(
            "#assign Bob\n#priority HIGH\n#pending\n#lang el\n\nWe need your serial number.\n",
            &agents(),
            &own(),
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
        let read = read(
            "#note\nCustomer is a VIP.\n\nOn 23/11/2026 10:00, x wrote:\n> y",
            &agents(),
            &own(),
        );
        assert!(read.note);
        assert_eq!(read.body, "Customer is a VIP.");
        let read = super::read("#close\n", &agents(), &own());
        assert_eq!(read.commands, vec![Command::Status(TicketStatus::Closed)]);
        assert_eq!(read.body, "");
    }

    #[test]
    fn unknown_and_malformed_commands_are_reported() {
        let read = read(
            "#frobnicate\n#assign nobody@x.test\n#priority soon\n#close now\n#assign\n#lang de\nText",
            &agents(),
            &own(),
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
    fn a_hash_number_is_text_not_a_command() {
        let read = read("#1 fix: reboot.\n", &agents(), &own());
        assert!(read.errors.is_empty() && read.commands.is_empty());
        assert_eq!(read.body, "#1 fix: reboot.");
    }

    #[test]
    fn cc_commands_name_a_deliverable_stranger() {
        let read = read(
            "#cc add <Mona@Example.NET>\n#cc remove old@example.net\nDone.",
            &agents(),
            &own(),
        );
        assert_eq!(
            read.commands,
            vec![
                Command::Cc(CcChange::Add("mona@example.net".into())),
                Command::Cc(CcChange::Remove("old@example.net".into())),
            ]
        );
        assert!(read.errors.is_empty(), "{:?}", read.errors);
        assert_eq!(read.body, "Done.");
    }

    #[test]
    fn cc_refuses_our_addresses_reply_keys_agents_and_nonsense() {
        for (command, why) in [
            ("#cc add support@example.test", "deskgate's own"),
            ("#cc add Sales@Example.test", "deskgate's own"),
            (
                "#cc add support+4.0a1b2c3d4e5f60718293@example.test",
                "deskgate's own",
            ),
            ("#cc add notes@example.test", "deskgate's own"),
            ("#cc add agent2@example.test", "an agent's address"),
            ("#cc add alice@home.test", "an agent's address"),
            ("#cc add not an address", "not a valid mail address"),
            ("#cc add", "give an address"),
            ("#cc invite x@y.test", "#cc add ADDRESS"),
        ] {
            let read = read(&format!("{command}\nHello"), &agents(), &own());
            assert!(read.commands.is_empty(), "{command}");
            assert_eq!(read.errors.len(), 1, "{command}");
            assert!(
                read.errors[0].contains(why),
                "{command}: {}",
                read.errors[0]
            );
        }
        // Only a sub-address of ours is refused, not a look-alike.
        let read = read("#cc add supporter@example.test\nHello", &agents(), &own());
        assert!(read.errors.is_empty(), "{:?}", read.errors);
    }

    #[test]
    fn an_answer_below_our_quote_is_found() {
        let text = "On 23/11/2026 10:00, Example Support wrote:\n> ##- Please type your reply above this line -##\n> Ticket [#4]\n>\n> It smokes.\n\n#pending\nPlease unplug it.\n-- \nAlice\n";
        let read = read(text, &agents(), &own());
        assert_eq!(read.body, "Please unplug it.");
        assert_eq!(read.commands, vec![Command::Status(TicketStatus::Pending)]);
        let nothing = "On 23/11/2026 10:00, Example Support wrote:\n> ##- Please type your reply above this line -##\n> It smokes.\n\n-- \nAlice\n";
        assert_eq!(
            super::read(nothing, &agents(), &own()),
            AgentText::default()
        );
        let not_ours = "On Mon, 23 Nov 2026 at 10:00, Bob <bob@example.net> wrote:\n> someone else's mail\n\nBelow.\n";
        assert_eq!(
            super::read(not_ours, &agents(), &own()).body,
            "",
            "only below our marker"
        );
    }

    #[test]
    fn merge_and_forward() {
        let read = read("#merge [#42]\n", &agents(), &own());
        assert_eq!(read.commands, vec![Command::Merge(TicketId(42))]);
        let read = super::read(
            "#forward <Parts@Supplier.example> Is part 7 in stock?\n\nThe customer needs two.\n\nOn Mon, 23 Nov 2026 at 10:00, Example Support <support@example.test> wrote:\n> y",
            &agents(),
            &own(),
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
            "#merge soon\n#forward not-an-address\n#merge 0\n#forward support+4.0a1b@example.test\n#forward agent2@example.test\n",
            &agents(),
            &own(),
        );
        assert!(read.commands.is_empty());
        assert_eq!(read.errors.len(), 5, "{:?}", read.errors);
    }

    #[test]
    fn the_answer_is_read_from_a_capped_prefix() {
        let bomb = format!("Answer.\n{}", "> x\n".repeat(40_000));
        let read = read(&bomb, &agents(), &own());
        assert_eq!(read.body, "Answer.");
    }
}
