//! Which language to write to a customer in. Pure: the evidence goes in, a [`Choice`] comes out.
//!
//! Order of evidence: the message's `Content-Language` header (if it names a language we
//! ship), then detection on the customer's own text (whatlang, kept only above
//! [`DETECTION_FLOOR`]), then the language this contact used before, then the mailbox
//! default.

use std::fmt;

/// A language deskgate ships templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    En,
    Ar,
    El,
}

impl Lang {
    /// Every shipped language; customer-facing templates exist in each.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Ar, Lang::El];

    /// The BCP 47 primary subtag: `en`, `ar`, `el`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ar => "ar",
            Lang::El => "el",
        }
    }

    /// `en`, `EL`, `ar-SA`, `el_GR` → the language; anything else → `None`.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?;
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// The language's name in English, for agents: `Arabic`.
    pub fn english_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ar => "Arabic",
            Lang::El => "Greek",
        }
    }

    /// The language's name as a reader of `reader` calls it: Arabic is "Arabic" to an
    /// English reader, "العربية" to an Arabic one, "Αραβικά" to a Greek one.
    pub fn name_in(self, reader: Lang) -> &'static str {
        match (reader, self) {
            (Lang::En, _) => self.english_name(),
            (Lang::Ar, Lang::En) => "الإنجليزية",
            (Lang::Ar, Lang::Ar) => "العربية",
            (Lang::Ar, Lang::El) => "اليونانية",
            (Lang::El, Lang::En) => "Αγγλικά",
            (Lang::El, Lang::Ar) => "Αραβικά",
            (Lang::El, Lang::El) => "Ελληνικά",
        }
    }

    /// Written right to left.
    pub fn is_rtl(self) -> bool {
        self == Lang::Ar
    }

    /// The shipped codes as a readable list, for error messages: `en, ar, el`.
    pub fn list() -> String {
        Lang::ALL.map(Lang::code).join(", ")
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a ticket or contact has its language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The message's `Content-Language` header.
    Header,
    /// Detected in the customer's text.
    Detected,
    /// The language this contact used before.
    Contact,
    /// The mailbox default.
    Default,
    /// Set by an agent (`#lang el`); later customer mail does not change it.
    Agent,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Detected => "detected",
            Source::Contact => "contact",
            Source::Default => "default",
            Source::Agent => "agent",
        }
    }

    pub fn parse(text: &str) -> Option<Source> {
        [
            Source::Header,
            Source::Detected,
            Source::Contact,
            Source::Default,
            Source::Agent,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Evidence about the customer themselves (worth remembering on the contact), as opposed
    /// to a fallback.
    pub fn is_evidence(self) -> bool {
        matches!(self, Source::Header | Source::Detected | Source::Agent)
    }
}

/// Detection results below this whatlang confidence are ignored. Measured: one Arabic
/// sentence of three words scores 0.55, a single word 0.09 (and as Persian); Greek script
/// scores 1.0; short English is often mistaken for French or Romanian below 0.25.
pub const DETECTION_FLOOR: f64 = 0.5;

/// At most this many characters of the customer's text are looked at.
const DETECTION_SAMPLE: usize = 2000;

/// What one inbound message tells about its language.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub content_language: Option<&'a str>,
    /// What [`detect`] found in the customer's own words.
    pub detected: Option<(Lang, String)>,
}

/// The language chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub lang: Lang,
    pub source: Source,
    /// For the event log: `detected (whatlang ara 0.84)`.
    pub detail: String,
}

/// Chooses the language for a message: header, detection, the contact's, the default.
pub fn choose(evidence: &Evidence<'_>, contact: Option<Lang>, default: Lang) -> Choice {
    if let Some(lang) = evidence.content_language.and_then(from_content_language) {
        return Choice {
            lang,
            source: Source::Header,
            detail: format!(
                "Content-Language {}",
                evidence.content_language.unwrap_or("")
            ),
        };
    }
    if let Some((lang, how)) = evidence.detected.clone() {
        return Choice {
            lang,
            source: Source::Detected,
            detail: how,
        };
    }
    match contact {
        Some(lang) => Choice {
            lang,
            source: Source::Contact,
            detail: "as in this contact's earlier mail".to_string(),
        },
        None => Choice {
            lang: default,
            source: Source::Default,
            detail: "mailbox default".to_string(),
        },
    }
}

/// The first language of a `Content-Language` list (`el-GR, en`) that we ship.
pub fn from_content_language(header: &str) -> Option<Lang> {
    header.split(',').find_map(Lang::parse)
}

/// Detects the language of the customer's own words (quoted lines are skipped).
/// Returns the language and a description of the evidence.
pub fn detect(subject: &str, text: &str) -> Option<(Lang, String)> {
    let mut sample: String = subject.chars().take(DETECTION_SAMPLE).collect();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('>')) {
        if sample.len() >= DETECTION_SAMPLE {
            break;
        }
        sample.push('\n');
        sample.push_str(line);
    }
    let info = whatlang::detect(&sample)?;
    let lang = match info.lang() {
        whatlang::Lang::Eng => Some(Lang::En),
        whatlang::Lang::Ara => Some(Lang::Ar),
        whatlang::Lang::Ell => Some(Lang::El),
        _ => None,
    };
    if let Some(lang) = lang
        && info.confidence() >= DETECTION_FLOOR
    {
        return Some((
            lang,
            format!(
                "detected (whatlang {} {:.2})",
                info.lang().code(),
                info.confidence()
            ),
        ));
    }
    // whatlang's trigrams often miss short English; its commonest words do not.
    let (hits, words) = english_function_words(&sample);
    if info.script() == whatlang::Script::Latin && hits >= 3 && hits * 5 >= words {
        return Some((
            Lang::En,
            format!("detected ({hits} of {words} words are common English words)"),
        ));
    }
    None
}

/// How many of the words of `text` are among the commonest English function words, and how
/// many words there are.
fn english_function_words(text: &str) -> (usize, usize) {
    const COMMON: [&str; 40] = [
        "the", "a", "an", "and", "or", "but", "is", "are", "was", "were", "be", "have", "has",
        "had", "do", "does", "did", "not", "i", "you", "we", "my", "our", "your", "it", "this",
        "that", "to", "of", "in", "on", "for", "with", "from", "at", "can", "cannot", "please",
        "what", "since",
    ];
    let mut hits = 0;
    let mut words = 0;
    for word in text
        .split(|c: char| !c.is_alphabetic() && c != '\'')
        .filter(|w| !w.is_empty())
    {
        words += 1;
        if COMMON.contains(&word.to_lowercase().as_str()) {
            hits += 1;
        }
    }
    (hits, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence<'a>(header: Option<&'a str>, text: &'a str) -> Evidence<'a> {
        Evidence {
            content_language: header,
            detected: detect("", text),
        }
    }

    #[test]
    fn tags_parse() {
        assert_eq!(Lang::parse("el-GR"), Some(Lang::El));
        assert_eq!(Lang::parse(" AR_sa"), Some(Lang::Ar));
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("de"), None);
        assert_eq!(Lang::parse(""), None);
        assert_eq!(from_content_language("de-DE, el"), Some(Lang::El));
        assert_eq!(from_content_language("fr"), None);
    }

    #[test]
    fn the_header_wins_then_detection() {
        let arabic = "مرحبا، الطابعة في مكتبنا لا تعمل منذ أمس. ماذا نفعل؟";
        let choice = choose(&evidence(Some("el"), arabic), Some(Lang::En), Lang::En);
        assert_eq!((choice.lang, choice.source), (Lang::El, Source::Header));
        // A header naming a language we do not ship is no evidence.
        let choice = choose(&evidence(Some("de"), arabic), None, Lang::En);
        assert_eq!((choice.lang, choice.source), (Lang::Ar, Source::Detected));
        assert!(choice.detail.contains("ara"), "{}", choice.detail);
    }

    #[test]
    fn detection_in_each_language() {
        let cases = [
            (
                "Γειά σας, ο εκτυπωτής του γραφείου δεν τυπώνει από χθες.",
                Lang::El,
            ),
            ("Ευχαριστώ", Lang::El),
            ("الطابعة لا تعمل", Lang::Ar),
            (
                "Hi, I cannot log in to my account since yesterday, please help.",
                Lang::En,
            ),
            (
                "Hello, our office printer smokes when it starts. What should we do?",
                Lang::En,
            ),
        ];
        for (text, want) in cases {
            let got = detect("", text).map(|(l, _)| l);
            assert_eq!(got, Some(want), "{text}");
        }
    }

    #[test]
    fn weak_or_foreign_text_falls_back_to_the_contact_then_the_default() {
        for text in [
            "ok",
            "شكرا",
            "12345",
            "Hallo, unser Drucker funktioniert nicht mehr.",
        ] {
            let choice = choose(&evidence(None, text), Some(Lang::Ar), Lang::El);
            assert_eq!(
                (choice.lang, choice.source),
                (Lang::Ar, Source::Contact),
                "{text}"
            );
            let choice = choose(&evidence(None, text), None, Lang::El);
            assert_eq!(
                (choice.lang, choice.source),
                (Lang::El, Source::Default),
                "{text}"
            );
        }
    }

    #[test]
    fn quoted_text_is_not_the_customers_language() {
        let text = "ok\n> Αγαπητέ πελάτη, λάβαμε το μήνυμά σας και θα σας απαντήσουμε σύντομα.\n";
        assert_eq!(detect("", text), None);
    }
}
