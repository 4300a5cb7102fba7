//! The relay's last check: an agent's answer must not carry what only people inside have seen.
//!
//! Before an answer is sent to a customer, its text is compared with the ticket's internal
//! notes and with the fixed wording of deskgate's mail to agents (notifications, warnings,
//! escalations, notes: their templates' literal text, the reply marker in every language).
//! A hit refuses the relay. Matching is on normalised words (lower case, punctuation and
//! quote marks dropped, lines joined), so a rewrapped or `>`-quoted copy still matches, and on
//! substantial runs only: a phrase of a template or a line of a note of at least
//! [`MIN_PHRASE`] words, or any [`SHINGLE`] consecutive words of a note. Note text the
//! customers have already seen (their own words quoted in a note) does not count. The work is
//! linear in the texts: phrases are indexed by their first [`MIN_PHRASE`] words.

use std::collections::{HashMap, HashSet};

use super::{MARKER_END, MARKER_START, quote};

/// The fewest words a template phrase or a note line must have to count.
pub const MIN_PHRASE: usize = 5;
/// Runs of this many consecutive words of a note count wherever they are.
pub const SHINGLE: usize = 8;
/// Of the texts the customers have seen, the newest this many bytes are read.
pub const PUBLIC_BYTES: usize = 1024 * 1024;
/// The most words of a hit quoted back to the agent.
const EXCERPT_WORDS: usize = 12;

/// What an answer carries that must not reach a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    /// Our reply-above marker (`##- … -##`).
    Marker,
    /// Wording of deskgate's mail to agents: a quoted notification, warning or escalation.
    Boilerplate { excerpt: String },
    /// Text of an internal note.
    Note { note: String, excerpt: String },
    /// An address only people inside may see: an agent's, the notes address, a reply key
    /// (a quote header that slipped through names them).
    Address(String),
    /// The answer as it would go out (recipients, subject, quoted mail, attachments) carries a
    /// reply key or an inside address: the last check before sending, made before anything is
    /// recorded (where, in a sentence).
    Outgoing(String),
}

impl Leak {
    /// One sentence for the agent.
    pub fn describe(&self) -> String {
        match self {
            Leak::Marker => format!(
                "the answer contains deskgate's reply marker ({MARKER_START} … {MARKER_END}), so it quotes mail meant for agents"
            ),
            Leak::Boilerplate { excerpt } => format!(
                "the answer quotes deskgate's mail to agents (a notification, warning or escalation): \"{excerpt}\""
            ),
            Leak::Note { note, excerpt } => {
                format!("the answer contains the internal {note}: \"{excerpt}\"")
            }
            Leak::Address(address) => format!(
                "the answer contains the address {address}, which only agents may see (an agent's address, the notes address or a reply key; a quote header may have slipped through)"
            ),
            Leak::Outgoing(why) => why.clone(),
        }
    }
}

/// An internal note of the ticket.
#[derive(Debug, Clone, Copy)]
pub struct Note<'a> {
    /// How the agent is told which note it is: `note by agent1@example.com of 2026-11-23 10:00`.
    pub label: &'a str,
    pub text: &'a str,
}

/// Where a phrase comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Boilerplate,
    Note(usize),
}

/// Word runs to look for, indexed by their first [`MIN_PHRASE`] words.
struct Phrases {
    phrases: Vec<(Vec<String>, Origin)>,
    by_head: HashMap<String, Vec<usize>>,
}

impl Phrases {
    fn new() -> Phrases {
        Phrases {
            phrases: Vec::new(),
            by_head: HashMap::new(),
        }
    }

    /// Adds `words` (at least [`MIN_PHRASE`] of them) unless the same run is already there.
    fn add(&mut self, words: &[String], origin: Origin) {
        if words.len() < MIN_PHRASE {
            return;
        }
        let candidates = self
            .by_head
            .entry(words[..MIN_PHRASE].join(" "))
            .or_default();
        if candidates
            .iter()
            .any(|&i| self.phrases[i].0.as_slice() == words)
        {
            return;
        }
        candidates.push(self.phrases.len());
        self.phrases.push((words.to_vec(), origin));
    }

    /// Each phrase found in `words`, as (phrase, position), in order of position.
    fn find<'w>(&'w self, words: &'w [String]) -> impl Iterator<Item = (usize, usize)> + 'w {
        (0..words.len().saturating_sub(MIN_PHRASE - 1)).flat_map(move |at| {
            let head = words[at..at + MIN_PHRASE].join(" ");
            self.by_head
                .get(&head)
                .into_iter()
                .flatten()
                .filter(move |&&i| words[at..].starts_with(&self.phrases[i].0))
                .map(move |&i| (i, at))
        })
    }
}

/// The check for one ticket: the boilerplate of deskgate's mail to agents and the ticket's
/// internal notes, less what its customers have seen.
pub struct Guard<'a> {
    phrases: Phrases,
    notes: &'a [Note<'a>],
    /// Note phrases that also occur in mail the customers saw.
    public: HashSet<usize>,
}

impl<'a> Guard<'a> {
    /// `boilerplate`: literal lines of the templates of mail to agents, marker words included;
    /// `public`: the texts the ticket's customers have seen (their mail, our answers), newest
    /// first; only the first [`PUBLIC_BYTES`] of them are read.
    pub fn new(boilerplate: &[String], notes: &'a [Note<'a>], public: &[&str]) -> Guard<'a> {
        let mut phrases = Phrases::new();
        for line in boilerplate {
            phrases.add(&words(line), Origin::Boilerplate);
        }
        for (i, note) in notes.iter().enumerate() {
            for line in quote::lines(note.text) {
                phrases.add(&words(line), Origin::Note(i));
            }
            for run in words(note.text).windows(SHINGLE) {
                phrases.add(run, Origin::Note(i));
            }
        }
        let mut public_hits = HashSet::new();
        let mut budget = PUBLIC_BYTES;
        for text in public {
            let mut end = text.len().min(budget);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            budget -= end;
            let seen = words(&text[..end]);
            public_hits.extend(
                phrases
                    .find(&seen)
                    .map(|(i, _)| i)
                    .filter(|&i| phrases.phrases[i].1 != Origin::Boilerplate),
            );
        }
        Guard {
            phrases,
            notes,
            public: public_hits,
        }
    }

    /// What `answer` carries that must not reach a customer, if anything.
    pub fn check(&self, answer: &str) -> Option<Leak> {
        let lines = quote::lines(answer);
        if lines
            .iter()
            .any(|l| l.contains(MARKER_START) && l.contains(MARKER_END))
        {
            return Some(Leak::Marker);
        }
        let answer = words(&lines.join("\n"));
        let (i, at) = self
            .phrases
            .find(&answer)
            .find(|(i, _)| !self.public.contains(i))?;
        let (phrase, origin) = &self.phrases.phrases[i];
        let end = (at + phrase.len()).min(at + EXCERPT_WORDS);
        let excerpt = answer[at..end].join(" ");
        Some(match origin {
            Origin::Boilerplate => Leak::Boilerplate { excerpt },
            Origin::Note(n) => Leak::Note {
                note: self.notes[*n].label.to_string(),
                excerpt,
            },
        })
    }
}

/// The words of `text`, lower case, without punctuation, quote marks or line breaks.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || is_mark(c)))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Combining marks (Arabic vowel signs, Greek accents written apart) belong to their word.
fn is_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{064B}'..='\u{065F}' | '\u{0670}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boilerplate() -> Vec<String> {
        [
            "The whole conversation, oldest first:",
            " (internal, not seen by the customer)",
            "Reply to this mail to answer the customer yourself; your answer is sent from ",
            "Please type your reply above this line",
            "Told before:",
        ]
        .map(String::from)
        .to_vec()
    }

    const NOTE: &str = "Customer is a VIP, handle with care.\nFraud team: the IBAN change request on\nthis account looks forged, do not confirm anything.";

    /// (answer, what it leaks).
    fn check(answer: &str, public: &[&str]) -> Option<Leak> {
        let notes = [Note {
            label: "note by agent1@example.test of 2026-11-23 10:00",
            text: NOTE,
        }];
        Guard::new(&boilerplate(), &notes, public).check(answer)
    }

    #[test]
    fn quoted_internal_text_is_caught_however_it_is_wrapped_or_quoted() {
        for (answer, expect) in [
            (
                "Thanks.\n> Customer is a VIP, handle with care.\nWe will call you.",
                "customer is a vip handle with care",
            ),
            (
                "Sorry:\n> the IBAN change request on this account looks\n> forged, do not confirm",
                "the iban change request on this account looks",
            ),
            (
                "Hello,\n---- Mon 2026-11-23 10:00 UTC, agent agent1 (internal, not seen by the customer) [agent-note]",
                "internal not seen by the customer",
            ),
            (
                "OK\nThe whole conversation, oldest\nfirst:\n",
                "the whole conversation oldest first",
            ),
            (
                "Done.\n##- Bitte schreiben Sie über dieser Zeile -##",
                "marker",
            ),
        ] {
            let leak = check(answer, &[]).unwrap_or_else(|| panic!("not caught: {answer}"));
            let text = match &leak {
                Leak::Marker => "marker".to_string(),
                Leak::Boilerplate { excerpt } | Leak::Note { excerpt, .. } => excerpt.clone(),
                Leak::Address(text) | Leak::Outgoing(text) => text.clone(),
            };
            assert!(text.starts_with(expect), "{answer}: {leak:?}");
            assert!(!leak.describe().is_empty());
        }
    }

    #[test]
    fn the_note_is_named_to_the_agent() {
        let leak = check("> Fraud team: the IBAN change request on", &[]);
        assert!(
            matches!(&leak, Some(Leak::Note { note, .. }) if note.contains("agent1@example.test")),
            "{leak:?}"
        );
    }

    #[test]
    fn ordinary_answers_and_short_common_lines_pass() {
        for answer in [
            "Please switch it off and unplug it.",
            "Thanks, we will handle it with care.",
            "Customer service: please reply to this mail to confirm.",
            "The conversation is closed.",
            "Your account looks fine.",
            "",
        ] {
            assert_eq!(check(answer, &[]), None, "{answer}");
        }
    }

    #[test]
    fn note_text_the_customer_wrote_first_is_not_a_leak() {
        let customer = "Hi, customer is a VIP, handle with care. Signed, the VIP.";
        assert_eq!(
            check("> Customer is a VIP, handle with care.\nSure.", &[customer]),
            None
        );
        // Only the newest texts count: an old one beyond the budget does not hide the note.
        let flood = "x ".repeat(PUBLIC_BYTES / 2);
        assert!(
            check(
                "> Customer is a VIP, handle with care.",
                &[&flood, customer]
            )
            .is_some()
        );
        // Boilerplate stays a leak whatever a customer wrote.
        assert!(
            check(
                "The whole conversation, oldest first:",
                &["The whole conversation, oldest first"]
            )
            .is_some()
        );
    }
}
