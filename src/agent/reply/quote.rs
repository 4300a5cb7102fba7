//! Where the quoted part of a reply starts, in linear time on a capped prefix of the text.
//!
//! Only the first [`MAX_BYTES`] bytes and [`MAX_LINES`] lines of a text are analysed: what an
//! agent or a customer wrote above a quote is never longer, and a hostile mail of 40,000 `>`
//! lines costs no more than one of 10,000. Each line is examined together with at most
//! [`WINDOW`] - 1 lines after it (a wrapped "wrote:" line, Outlook's header block), and the
//! trailing block of `>` lines is found in one pass from the end, so the work is linear in the
//! analysed text.
//!
//! Quote headers are data ([`WROTE`], [`FROM`], [`HEADER_KEYS`], [`ORIGINAL`]): Gmail, Apple
//! Mail and Thunderbird's "On … wrote:" line and Outlook's `From:`/`Sent:` block and
//! `-----Original Message-----` rule, in English, Arabic, Greek, German, French, Spanish and
//! Italian.

use super::{MARKER_END, MARKER_START};

/// The most of a text that is analysed, in bytes.
pub const MAX_BYTES: usize = 256 * 1024;
/// The most of a text that is analysed, in lines.
pub const MAX_LINES: usize = 10_000;
/// A line and the lines after it that decide whether a quote starts there.
const WINDOW: usize = 5;

/// "On … wrote:" lines: (how the line starts, the verb it contains), lower case. An empty
/// start: the verb alone decides (its language has no fixed opening word).
const WROTE: &[(&str, &str)] = &[
    ("on ", " wrote"),        // en: "On Mon, 23 Nov 2026 at 10:00, Mona <m@x> wrote:"
    ("am ", " schrieb"),      // de: "Am 23.11.2026 um 10:00 schrieb Mona <m@x>:"
    ("le ", " a écrit"),      // fr: "Le lun. 23 nov. 2026 à 10:00, Mona <m@x> a écrit :"
    ("el ", " escribió"),     // es: "El lun, 23 nov 2026 a las 10:00, Mona (<m@x>) escribió:"
    ("il ", " ha scritto"),   // it: "Il giorno lun 23 nov 2026 alle ore 10:00 Mona ha scritto:"
    ("", "έγραψε"),           // el: "Στις Δευ 23 Νοε 2026 στις 10:00, ο/η Mona έγραψε:"
    ("", "كتب"),              // ar: "في الاثنين، 23 نوفمبر 2026 كتب Mona <m@x>:"
    ("", "تمت كتابة ما يلي"), // ar (Gmail): "… تمت كتابة ما يلي بواسطة Mona <m@x>:"
];

/// The first key of Outlook's quote header block: From, in each language.
const FROM: &[&str] = &["from", "von", "de", "da", "από", "من"];

/// Keys that follow `From:` within the block: Sent, Date, To, Cc, Subject in each language.
const HEADER_KEYS: &[&str] = &[
    "sent",
    "date",
    "to",
    "cc",
    "subject",
    "gesendet",
    "datum",
    "an",
    "betreff",
    "envoyé",
    "à",
    "objet",
    "enviado",
    "enviado el",
    "fecha",
    "para",
    "asunto",
    "inviato",
    "data",
    "a",
    "oggetto",
    "στάλθηκε",
    "ημερομηνία",
    "προς",
    "κοιν",
    "θέμα",
    "تم الإرسال",
    "التاريخ",
    "إلى",
    "نسخة",
    "الموضوع",
];

/// Outlook's `-----Original Message-----` rule, in each language (lower case).
const ORIGINAL: &[&str] = &[
    "original message",
    "ursprüngliche nachricht",
    "message d'origine",
    "mensaje original",
    "messaggio originale",
    "αρχικό μήνυμα",
    "الرسالة الأصلية",
];

/// The analysed part of `text`: at most [`MAX_BYTES`] bytes (cut at a character boundary) and
/// [`MAX_LINES`] lines, split into lines without their `\r\n` or `\n`.
pub fn lines(text: &str) -> Vec<&str> {
    let mut end = text.len().min(MAX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].lines().take(MAX_LINES).collect()
}

/// The index of the first of `n` lines that starts a quote or a signature (`n` if none);
/// `line(i)` gives line `i`. Each line is asked for at most [`WINDOW`] + 3 times.
///
/// Where the quote starts at our marker or at a `>` line, a client's quote header directly
/// above it is cut too, in any language ([`header_above`]).
pub fn cut<'a>(n: usize, line: impl Fn(usize) -> &'a str) -> usize {
    let tail = trailing_quote(n, &line);
    let Some(at) = (0..n).find(|&i| {
        let window: Vec<&str> = (i..n.min(i + WINDOW)).map(&line).collect();
        starts_quote(&window) || (i >= tail && window[0].trim_start().starts_with('>'))
    }) else {
        return n;
    };
    let first = line(at).trim();
    if first.starts_with('>') || (first.contains(MARKER_START) && first.contains(MARKER_END)) {
        header_above(at, &line)
    } else {
        at
    }
}

/// Where a quote header in a language we do not parse starts, directly above the quote at
/// `at` (blank lines between allowed): a block of two or more `Key: value` lines holding a
/// date or an address (Outlook's `Van:/Verzonden:/Aan:`), or one line ending in `:` holding
/// one ("Op … schreef …:", also wrapped over two lines), with a rule line (`-----…-----`,
/// `_____`) just above either. `at` when there is none.
fn header_above<'a>(at: usize, line: &impl Fn(usize) -> &'a str) -> usize {
    let mut end = at;
    while end > 0 && line(end - 1).trim().is_empty() {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && is_field(line(start - 1)) {
        start -= 1;
    }
    let dated = |i: usize| line(i).chars().any(|c| c.is_numeric() || c == '@');
    let start = if end - start >= 2 && (start..end).any(dated) {
        start
    } else if end > 0 && is_intro(line(end - 1)) {
        let intro = end - 1;
        // Gmail wraps a long "wrote:" line: a fragment of an address and the verb.
        let fragment = line(intro).split_whitespace().count() <= 2;
        if fragment && intro > 0 && !line(intro - 1).trim().is_empty() {
            intro - 1
        } else {
            intro
        }
    } else {
        return at;
    };
    if start > 0 && is_rule(line(start - 1)) {
        start - 1
    } else {
        start
    }
}

/// `Key: value` with a short key of letters (at most three words), optionally `*bold*`.
fn is_field(line: &str) -> bool {
    let line = line.trim().trim_start_matches('*');
    let Some((key, value)) = line.split_once(':') else {
        return false;
    };
    let key = key.trim_end_matches('*').trim();
    let value = value.trim_start_matches('*').trim();
    !key.is_empty()
        && !value.is_empty()
        && key.chars().count() <= 30
        && key.split_whitespace().count() <= 3
        && key
            .chars()
            .all(|c| c.is_alphabetic() || c.is_whitespace() || matches!(c, '-' | '.' | '\''))
}

/// A line ending in a colon that holds a date or an address: "Op … schreef …:".
fn is_intro(line: &str) -> bool {
    let line = line.trim();
    (line.ends_with(':') || line.ends_with('：'))
        && !line.starts_with('>')
        && line.chars().any(|c| c.is_numeric() || c == '@')
}

/// `-----Oorspronkelijk bericht-----`, `________`: a rule in any language.
fn is_rule(line: &str) -> bool {
    let line = line.trim();
    (line.starts_with("-----") && line.ends_with("-----"))
        || (line.chars().count() >= 10 && line.chars().all(|c| c == '_' || c == '-'))
}

/// Where the block of `>` and blank lines that ends the text starts (`n` if the last line is
/// neither).
fn trailing_quote<'a>(n: usize, line: &impl Fn(usize) -> &'a str) -> usize {
    let mut start = n;
    while start > 0 {
        let text = line(start - 1).trim_start();
        if !(text.is_empty() || text.starts_with('>')) {
            break;
        }
        start -= 1;
    }
    start
}

/// Whether a quote or signature starts at `window[0]`, the rest of the window following it.
fn starts_quote(window: &[&str]) -> bool {
    let raw = window[0];
    let line = raw.trim();
    let bare = line.trim_start_matches('>').trim();
    (bare.contains(MARKER_START) && bare.contains(MARKER_END))
        || line == "--"
        || raw == "-- "
        || is_wrote(line)
        || wrapped_wrote(line, window.get(1).map_or("", |l| l.trim()))
        || is_original_message(line)
        || (line.chars().count() >= 20 && line.chars().all(|c| c == '_'))
        || is_header_block(window)
}

/// A "wrote:" line wrapped over two lines (Gmail wraps long names and addresses).
fn wrapped_wrote(line: &str, next: &str) -> bool {
    !next.is_empty() && !is_wrote(next) && is_wrote(&format!("{line} {next}"))
}

/// "On … wrote:" and its translations ([`WROTE`]). The line must end with a colon and hold a
/// date or an address (a digit or `@`), so "Il cliente ha scritto:" in an answer is text.
fn is_wrote(line: &str) -> bool {
    let line: String = line
        .chars()
        .filter(|c| !is_bidi_control(*c))
        .collect::<String>()
        .to_lowercase();
    let line = line.trim();
    let ends = line.ends_with(':') || line.ends_with('：');
    ends && line.chars().any(|c| c.is_numeric() || c == '@')
        && WROTE
            .iter()
            .any(|(start, verb)| line.starts_with(start) && line.contains(verb))
}

/// Gmail wraps Arabic quote headers in embedding and mark characters.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_original_message(line: &str) -> bool {
    if !(line.starts_with("--") && line.ends_with("--")) {
        return false;
    }
    let line = line.to_lowercase();
    ORIGINAL.iter().any(|w| line.contains(w))
}

/// Outlook's quote header: `From:` followed within four lines by `Sent:`, `Date:`, `To:`,
/// `Cc:` or `Subject:` (in any language of [`HEADER_KEYS`]), optionally in `*bold*`.
fn is_header_block(window: &[&str]) -> bool {
    let Some((first, rest)) = window.split_first() else {
        return false;
    };
    header_key(first).is_some_and(|k| FROM.contains(&k.as_str()))
        && rest
            .iter()
            .any(|l| header_key(l).is_some_and(|k| HEADER_KEYS.contains(&k.as_str())))
}

/// `*Gesendet:* Montag` → `gesendet`; `None` for a line without a colon.
fn header_key(line: &str) -> Option<String> {
    let (key, _) = line.trim().trim_start_matches('*').split_once(':')?;
    Some(key.trim_end_matches('*').trim().to_lowercase())
}

/// The part of `text` that is analysed: at most [`MAX_BYTES`] (cut at a character boundary)
/// and [`MAX_LINES`] lines.
pub fn prefix(text: &str) -> &str {
    let text = crate::parse::cut_at(text, MAX_BYTES);
    match text.match_indices('\n').nth(MAX_LINES - 1) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_capped_by_bytes_and_lines() {
        assert_eq!(prefix("short\ntext"), "short\ntext");
        let lines = "> x\n".repeat(MAX_LINES * 2);
        let cut = prefix(&lines);
        assert_eq!(cut.lines().count(), MAX_LINES);
        let long = "é".repeat(MAX_BYTES);
        let cut = prefix(&long);
        assert!(cut.len() <= MAX_BYTES && cut.len() >= MAX_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    /// Every language × client shape: the reply text, the quote header as that client writes
    /// it, then the quoted mail (unquoted for Outlook, `> ` for the others).
    const HEADERS: &[(&str, &str)] = &[
        // English
        (
            "en gmail",
            "On Mon, 23 Nov 2026 at 10:00, Example Support <support@example.test> wrote:",
        ),
        (
            "en apple",
            "On 23 Nov 2026, at 10:00, Example Support <support@example.test> wrote:",
        ),
        (
            "en thunderbird",
            "On 23/11/2026 10:00, Example Support wrote:",
        ),
        (
            "en outlook",
            "________________________________\nFrom: Example Support <support@example.test>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Alice Agent <agent1@example.test>\nSubject: Printer [#4]",
        ),
        (
            "en outlook mac",
            "From: Example Support <support@example.test>\nDate: Monday, 23 November 2026 at 10:00\nTo: Alice Agent <agent1@example.test>",
        ),
        (
            "en outlook classic",
            "-----Original Message-----\nFrom: Example Support\nSent: Monday",
        ),
        // German
        (
            "de gmail",
            "Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Example Support <support@example.test>:",
        ),
        (
            "de apple",
            "Am 23.11.2026 um 10:00 schrieb Example Support <support@example.test>:",
        ),
        (
            "de thunderbird",
            "Am 23.11.26 um 10:00 schrieb Example Support:",
        ),
        (
            "de outlook",
            "________________________________\nVon: Example Support <support@example.test>\nGesendet: Montag, 23. November 2026 10:00\nAn: Alice Agent <agent1@example.test>\nBetreff: AW: Drucker [#4]",
        ),
        (
            "de outlook classic",
            "-----Ursprüngliche Nachricht-----\nVon: Example Support\nGesendet: Montag",
        ),
        // French
        (
            "fr gmail",
            "Le lun. 23 nov. 2026 à 10:00, Example Support <support@example.test> a écrit :",
        ),
        (
            "fr apple",
            "Le 23 nov. 2026 à 10:00, Example Support <support@example.test> a écrit :",
        ),
        (
            "fr thunderbird",
            "Le 23/11/2026 à 10:00, Example Support a écrit :",
        ),
        (
            "fr outlook",
            "________________________________\nDe : Example Support <support@example.test>\nEnvoyé : lundi 23 novembre 2026 10:00\nÀ : Alice Agent <agent1@example.test>\nObjet : RE: Imprimante [#4]",
        ),
        (
            "fr outlook classic",
            "-----Message d'origine-----\nDe : Example Support\nEnvoyé : lundi",
        ),
        // Spanish
        (
            "es gmail",
            "El lun, 23 nov 2026 a las 10:00, Example Support (<support@example.test>) escribió:",
        ),
        (
            "es apple",
            "El 23 nov 2026, a las 10:00, Example Support <support@example.test> escribió:",
        ),
        (
            "es thunderbird",
            "El 23/11/26 a las 10:00, Example Support escribió:",
        ),
        (
            "es outlook",
            "________________________________\nDe: Example Support <support@example.test>\nEnviado el: lunes, 23 de noviembre de 2026 10:00\nPara: Alice Agent <agent1@example.test>\nAsunto: RE: Impresora [#4]",
        ),
        (
            "es outlook classic",
            "-----Mensaje original-----\nDe: Example Support\nEnviado: lunes",
        ),
        // Italian
        (
            "it gmail",
            "Il giorno lun 23 nov 2026 alle ore 10:00 Example Support <support@example.test> ha scritto:",
        ),
        (
            "it apple",
            "Il giorno 23 nov 2026, alle ore 10:00, Example Support <support@example.test> ha scritto:",
        ),
        (
            "it thunderbird",
            "Il 23/11/26 10:00, Example Support ha scritto:",
        ),
        (
            "it outlook",
            "________________________________\nDa: Example Support <support@example.test>\nInviato: lunedì 23 novembre 2026 10:00\nA: Alice Agent <agent1@example.test>\nOggetto: R: Stampante [#4]",
        ),
        (
            "it outlook classic",
            "-----Messaggio originale-----\nDa: Example Support\nInviato: lunedì",
        ),
        // Greek
        (
            "el gmail",
            "Στις Δευ 23 Νοε 2026 στις 10:00, ο/η Example Support <support@example.test> έγραψε:",
        ),
        (
            "el apple",
            "Στις 23 Νοε 2026, στις 10:00, ο χρήστης Example Support <support@example.test> έγραψε:",
        ),
        (
            "el thunderbird",
            "Ο/Η Example Support έγραψε στις 23/11/2026 10:00:",
        ),
        (
            "el outlook",
            "________________________________\nΑπό: Example Support <support@example.test>\nΣτάλθηκε: Δευτέρα, 23 Νοεμβρίου 2026 10:00 πμ\nΠρος: Alice Agent <agent1@example.test>\nΘέμα: ΑΠ: Εκτυπωτής [#4]",
        ),
        (
            "el outlook classic",
            "-----Αρχικό μήνυμα-----\nΑπό: Example Support\nΣτάλθηκε: Δευτέρα",
        ),
        // Arabic
        (
            "ar gmail",
            "\u{202b}في الاثنين، 23 نوفمبر 2026 في 10:00 ص تمت كتابة ما يلي بواسطة \u{202a}Example Support\u{202c}\u{200f} <\u{202a}support@example.test\u{202c}>:\u{202c}",
        ),
        (
            "ar apple",
            "في 23 نوفمبر 2026، الساعة 10:00، كتب Example Support <support@example.test>:",
        ),
        (
            "ar thunderbird",
            "في ٢٣‏/١١‏/٢٠٢٦ ١٠:٠٠ ص، كتب Example Support:",
        ),
        (
            "ar outlook",
            "________________________________\nمن: Example Support <support@example.test>\nتم الإرسال: الاثنين، 23 نوفمبر 2026 10:00 ص\nإلى: Alice Agent <agent1@example.test>\nالموضوع: رد: الطابعة [#4]",
        ),
        (
            "ar outlook classic",
            "-----الرسالة الأصلية-----\nمن: Example Support\nتم الإرسال: الاثنين",
        ),
    ];

    fn cut_text(text: &str) -> String {
        let lines = lines(text);
        lines[..cut(lines.len(), |i| lines[i])].join("\n")
    }

    #[test]
    fn every_language_and_client_shape_is_cut() {
        for (shape, header) in HEADERS {
            let quoted = if shape.contains("outlook") {
                "Ticket [#4] has not been answered in time.\nInternal: customer owes 300 EUR."
                    .to_string()
            } else {
                "> Ticket [#4] has not been answered in time.\n> Internal: customer owes 300 EUR."
                    .to_string()
            };
            let text = format!("Answer here.\nSecond line.\n\n{header}\n{quoted}\n");
            assert_eq!(
                cut_text(&text).trim_end(),
                "Answer here.\nSecond line.",
                "{shape}"
            );
        }
    }

    /// Clients in languages we do not parse: the header above our marker (or above the `>`
    /// quote of it) goes with the quote, wherever the agent's address is in it.
    #[test]
    fn unknown_languages_lose_the_header_above_our_marker() {
        let marker = "##- Typ uw antwoord boven deze regel -##";
        for header in [
            // Dutch Outlook, with and without its rule.
            "Van: Alice Agent <agent1@example.test>\nVerzonden: maandag 23 november 2026 10:00\nAan: Example Support <support@example.test>\nOnderwerp: Printer [#4]\n",
            "-----Oorspronkelijk bericht-----\nVan: Example Support\nVerzonden: maandag 23 november 2026 10:00\n",
            "*Van:* Example Support <support@example.test>\n*Datum:* 23-11-2026\n",
            // Dutch Gmail, on one line and wrapped.
            "Op ma 23 nov. 2026 om 10:00 schreef Example Support <support@example.test>:\n",
            "Op ma 23 nov. 2026 om 10:00 schreef Alice Agent <\nagent1@example.test>:\n",
            // Polish Thunderbird.
            "W dniu 23.11.2026 o 10:00, Example Support pisze:",
        ] {
            for quoted in [
                format!("{marker}\nTicket [#4]"),
                format!("> {marker}\n> Ticket [#4]"),
            ] {
                let text = format!("Answer here.\n\n{header}\n{quoted}\n");
                assert_eq!(cut_text(&text).trim_end(), "Answer here.", "{header}");
            }
        }
    }

    #[test]
    fn answers_ending_in_plain_lines_above_the_marker_keep_them() {
        let marker = "##- Please type your reply above this line -##";
        for answer in [
            "Steps done:\nReboot: yes\nCable: replaced",
            "Your order is on its way.\nThanks",
            "Call us at the number below:",
        ] {
            let text = format!("{answer}\n\n{marker}\nTicket [#4]\n");
            assert_eq!(cut_text(&text).trim_end(), answer, "{answer}");
        }
    }

    #[test]
    fn answers_that_look_like_headers_are_text() {
        for text in [
            "Il cliente ha scritto:\nla stampante è rotta.",
            "Le client a écrit :\nl'imprimante est en panne.",
            "Am Montag schrieb der Kunde:\nDrucker kaputt.",
            "On Monday the customer wrote:\nit smokes.",
            "From: our side, nothing changed.\nThanks.",
            "De: nada.\nGracias.",
        ] {
            assert_eq!(cut_text(text), text, "{text}");
        }
    }

    #[test]
    fn a_quote_bomb_is_capped_and_each_line_is_looked_at_a_bounded_number_of_times() {
        let looks = std::cell::Cell::new(0_usize);
        let count = |lines: &[&str]| {
            looks.set(0);
            let at = cut(lines.len(), |i| {
                looks.set(looks.get() + 1);
                lines[i]
            });
            (at, looks.get())
        };
        // 40,000 lines of `>`: only 10,000 analysed, each asked for a bounded number of times.
        let bomb = "> x\n".repeat(40_000);
        let analysed = lines(&bomb);
        assert_eq!(analysed.len(), MAX_LINES);
        let (at, n_looks) = count(&analysed);
        assert_eq!(at, 0, "all of it is a trailing quote");
        assert!(n_looks <= analysed.len() * (WINDOW + 3), "{n_looks}");
        // An answer above 400 KB of `>` lines that never reach the end (text after each).
        let interleaved = format!("Answer.\n{}", "reply\n> q\n".repeat(40_000));
        assert!(interleaved.len() >= 400_000);
        let analysed = lines(&interleaved);
        assert!(analysed.iter().map(|l| l.len() + 1).sum::<usize>() <= MAX_BYTES);
        assert!(analysed.len() <= MAX_LINES);
        let (at, n_looks) = count(&analysed);
        assert_eq!(at, analysed.len(), "interleaved quotes are kept");
        assert!(n_looks <= analysed.len() * (WINDOW + 3), "{n_looks}");
        // 400 KB in one line: cut at the byte cap, one line.
        let long = "x".repeat(400_000);
        assert_eq!(lines(&long), vec!["x".repeat(MAX_BYTES).as_str()]);
    }

    #[test]
    fn the_byte_cap_never_splits_a_character() {
        let text = "έ".repeat(MAX_BYTES);
        let analysed = lines(&text);
        assert!(analysed[0].len() <= MAX_BYTES && analysed[0].chars().all(|c| c == 'έ'));
    }
}
