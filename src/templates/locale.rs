//! The reader's language in what templates show: due times, short timestamps, durations,
//! status and priority words, scheduler steps, message classes, the authors of a
//! conversation's messages and the Greek vocative.
//!
//! jiff has no locale data, so the names come from our own tables. Arabic uses Western digits:
//! the ticket tag must stay `[#42]` anyway, and one kind of digit reads better. Dates and
//! durations reach templates already written (`due`, `waiting`, `when`, ...); words that
//! templates get as codes (`open`, `high`, `warning`, `acknowledgement`) and customers' names
//! go through filters that read the template's `lang`: `status`, `priority`, `step`, `class`
//! and `vocative`.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use minijinja::{Environment, State};

use crate::language::Lang;
use crate::model::{Priority, TicketStatus};

/// Adds the word filters (see the module documentation) to a template environment.
pub(super) fn add_filters(env: &mut Environment<'_>) {
    env.add_filter("status", |state: &State, code: String| {
        TicketStatus::parse(&code).map_or(code, |s| status_word(s, reader(state)).to_string())
    });
    env.add_filter("priority", |state: &State, code: String| {
        Priority::parse(&code).map_or(code, |p| priority_word(p, reader(state)).to_string())
    });
    env.add_filter("step", |state: &State, name: String| {
        step_word(&name, reader(state))
    });
    env.add_filter("class", |state: &State, class: String| {
        class_word(&class, reader(state))
    });
    env.add_filter("vocative", |state: &State, name: String| {
        match reader(state) {
            Lang::El => greek_vocative(&name).unwrap_or_default(),
            _ => name,
        }
    });
}

/// The language of the template being rendered (its context's `lang`).
fn reader(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|lang| lang.as_str().and_then(Lang::parse))
        .unwrap_or(Lang::En)
}

pub(crate) const WEEKDAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const WEEKDAYS_AR: [&str; 7] = [
    "الاثنين",
    "الثلاثاء",
    "الأربعاء",
    "الخميس",
    "الجمعة",
    "السبت",
    "الأحد",
];
const WEEKDAYS_EL: [&str; 7] = [
    "Δευτέρα",
    "Τρίτη",
    "Τετάρτη",
    "Πέμπτη",
    "Παρασκευή",
    "Σάββατο",
    "Κυριακή",
];
/// Greek weekday abbreviations as calendars print them; Arabic has none (full names).
const WEEKDAYS_EL_SHORT: [&str; 7] = ["Δευ", "Τρί", "Τετ", "Πέμ", "Παρ", "Σάβ", "Κυρ"];

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_AR: [&str; 12] = [
    "يناير",
    "فبراير",
    "مارس",
    "أبريل",
    "مايو",
    "يونيو",
    "يوليو",
    "أغسطس",
    "سبتمبر",
    "أكتوبر",
    "نوفمبر",
    "ديسمبر",
];
/// Genitive, as in a date: "24 Νοεμβρίου".
const MONTHS_EL: [&str; 12] = [
    "Ιανουαρίου",
    "Φεβρουαρίου",
    "Μαρτίου",
    "Απριλίου",
    "Μαΐου",
    "Ιουνίου",
    "Ιουλίου",
    "Αυγούστου",
    "Σεπτεμβρίου",
    "Οκτωβρίου",
    "Νοεμβρίου",
    "Δεκεμβρίου",
];

/// Monday = 0.
fn weekday_index(zoned: &Zoned) -> usize {
    zoned.weekday().to_monday_zero_offset() as usize
}

/// The zone as an offset every reader can convert: `UTC`, `UTC+2`, `UTC+5:30`.
fn utc_offset(zoned: &Zoned) -> String {
    let seconds = zoned.offset().seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    match (seconds.abs() / 3600, seconds.abs() % 3600 / 60) {
        (0, 0) => "UTC".to_string(),
        (h, 0) => format!("UTC{sign}{h}"),
        (h, m) => format!("UTC{sign}{h}:{m:02}"),
    }
}

/// The promised answer time in `tz`, in `lang`, with the zone spelled out as an offset:
/// "Tuesday 24 November 2026, 12:00 EET (UTC+2)", "الثلاثاء، 24 نوفمبر 2026، الساعة 12:00
/// بتوقيت UTC+2", "την Τρίτη 24 Νοεμβρίου 2026, στις 12:00 (ώρα UTC+2)". The Greek one
/// carries the weekday's article (την Τρίτη, το Σάββατο), so templates write `έως {{ due }}`.
pub fn format_due(due_at: Timestamp, tz: &TimeZone, lang: Lang) -> String {
    let zoned = due_at.to_zoned(tz.clone());
    let (weekday_idx, month_idx) = (weekday_index(&zoned), (zoned.month() - 1) as usize);
    let (day, year) = (zoned.day(), zoned.year());
    let time = format!("{:02}:{:02}", zoned.hour(), zoned.minute());
    let utc = utc_offset(&zoned);
    match lang {
        Lang::En => {
            let (weekday, month) = (WEEKDAYS_EN[weekday_idx], MONTHS_EN[month_idx]);
            // An abbreviation such as EET helps English readers; numeric ones ("+03") add nothing.
            let abbreviation = zoned.strftime("%Z").to_string();
            let zone = if utc == "UTC" || !abbreviation.chars().all(|c| c.is_ascii_alphabetic()) {
                utc
            } else {
                format!("{abbreviation} ({utc})")
            };
            format!("{weekday} {day} {month} {year}, {time} {zone}")
        }
        Lang::Ar => {
            let (weekday, month) = (WEEKDAYS_AR[weekday_idx], MONTHS_AR[month_idx]);
            format!("{weekday}، {day} {month} {year}، الساعة {time} بتوقيت {utc}")
        }
        Lang::El => {
            let (weekday, month) = (WEEKDAYS_EL[weekday_idx], MONTHS_EL[month_idx]);
            // Σάββατο is the only neuter weekday; one o'clock is "στη μία".
            let article = if weekday_idx == 5 { "το" } else { "την" };
            let at = if zoned.hour() == 1 {
                "στη"
            } else {
                "στις"
            };
            format!("{article} {weekday} {day} {month} {year}, {at} {time} (ώρα {utc})")
        }
    }
}

/// A moment in a conversation or a list of steps, short: "Tue 2026-11-24 04:00 EET",
/// "الثلاثاء 2026-11-24، 04:00 UTC+2", "Τρί 2026-11-24 04:00 UTC+2".
pub fn format_when(at: Timestamp, tz: &TimeZone, lang: Lang) -> String {
    let zoned = at.to_zoned(tz.clone());
    let weekday_idx = weekday_index(&zoned);
    let date = zoned.strftime("%Y-%m-%d");
    let time = zoned.strftime("%H:%M");
    match lang {
        Lang::En => zoned.strftime("%a %Y-%m-%d %H:%M %Z").to_string(),
        Lang::Ar => format!(
            "{} {date}، {time} {}",
            WEEKDAYS_AR[weekday_idx],
            utc_offset(&zoned)
        ),
        Lang::El => format!(
            "{} {date} {time} {}",
            WEEKDAYS_EL_SHORT[weekday_idx],
            utc_offset(&zoned)
        ),
    }
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Day,
    Hour,
    Minute,
}

/// How long, to the minute, in at most two units and without zero parts: `3 d 4 h`, `2 h`,
/// `5 min`; `3 ημέρες και 4 ώρες`, `1 ώρα`; `يوم و3 ساعات`, `ساعتان`, `11 دقيقة`.
/// Arabic counts agree with their number (see [`arabic_count`]). English keeps its
/// abbreviations; Greek ones would end a sentence in two periods.
pub fn format_duration(duration: SignedDuration, lang: Lang) -> String {
    let minutes = duration.as_secs().max(0) / 60;
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts = match (days, hours) {
        (0, 0) => [(mins, Unit::Minute), (0, Unit::Minute)],
        (0, _) => [(hours, Unit::Hour), (mins, Unit::Minute)],
        _ => [(days, Unit::Day), (hours, Unit::Hour)],
    };
    let words: Vec<String> = parts
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| count(n, unit, lang))
        .collect();
    if words.is_empty() {
        return match lang {
            Lang::En => "less than a minute",
            Lang::Ar => "أقل من دقيقة",
            Lang::El => "λιγότερο από ένα λεπτό",
        }
        .to_string();
    }
    words.join(match lang {
        Lang::En => " ",
        // The conjunction is written joined to the next word: ساعتان و5 دقائق.
        Lang::Ar => " و",
        Lang::El => " και ",
    })
}

/// `n` of `unit` in `lang`.
fn count(n: i64, unit: Unit, lang: Lang) -> String {
    match lang {
        Lang::En => {
            let abbreviation = match unit {
                Unit::Day => "d",
                Unit::Hour => "h",
                Unit::Minute => "min",
            };
            format!("{n} {abbreviation}")
        }
        Lang::El => {
            let (one, many) = match unit {
                Unit::Day => ("ημέρα", "ημέρες"),
                Unit::Hour => ("ώρα", "ώρες"),
                Unit::Minute => ("λεπτό", "λεπτά"),
            };
            format!("{n} {}", if n == 1 { one } else { many })
        }
        Lang::Ar => arabic_count(
            n,
            match unit {
                Unit::Day => &DAY,
                Unit::Hour => &HOUR,
                Unit::Minute => &MINUTE,
            },
        ),
    }
}

/// The forms an Arabic noun takes after a number.
struct ArabicNoun {
    /// 1: the noun alone (ساعة).
    one: &'static str,
    /// 2: the dual alone, nominative (ساعتان).
    two: &'static str,
    /// 3-10 (and 103-110, ...): the plural (3 ساعات).
    few: &'static str,
    /// 11-99 (and 111-199, ...): the singular, accusative (11 ساعة, 11 يومًا).
    many: &'static str,
    /// 100, 101, 102, 200, ...: the singular, genitive (100 يوم).
    hundreds: &'static str,
}

const DAY: ArabicNoun = ArabicNoun {
    one: "يوم",
    two: "يومان",
    few: "أيام",
    many: "يومًا",
    hundreds: "يوم",
};
const HOUR: ArabicNoun = ArabicNoun {
    one: "ساعة",
    two: "ساعتان",
    few: "ساعات",
    many: "ساعة",
    hundreds: "ساعة",
};
const MINUTE: ArabicNoun = ArabicNoun {
    one: "دقيقة",
    two: "دقيقتان",
    few: "دقائق",
    many: "دقيقة",
    hundreds: "دقيقة",
};

/// `n` of `noun` as Arabic grammar wants it: the number's last two digits choose the form.
fn arabic_count(n: i64, noun: &ArabicNoun) -> String {
    match (n, n % 100) {
        (1, _) => noun.one.to_string(),
        (2, _) => noun.two.to_string(),
        (_, 3..=10) => format!("{n} {}", noun.few),
        (_, 11..=99) => format!("{n} {}", noun.many),
        _ => format!("{n} {}", noun.hundreds),
    }
}

/// A ticket's status as a reader of `lang` calls it (of a ticket: تذكرة and αίτημα).
pub fn status_word(status: TicketStatus, lang: Lang) -> &'static str {
    match (lang, status) {
        (Lang::En, _) => status.as_str(),
        (Lang::Ar, TicketStatus::Open) => "مفتوحة",
        (Lang::Ar, TicketStatus::Pending) => "بانتظار العميل",
        (Lang::Ar, TicketStatus::Resolved) => "محلولة",
        (Lang::Ar, TicketStatus::Closed) => "مغلقة",
        (Lang::El, TicketStatus::Open) => "ανοιχτό",
        (Lang::El, TicketStatus::Pending) => "σε αναμονή του πελάτη",
        (Lang::El, TicketStatus::Resolved) => "επιλυμένο",
        (Lang::El, TicketStatus::Closed) => "κλειστό",
    }
}

/// A ticket's priority as a reader of `lang` calls it (of أولوية and προτεραιότητα).
pub fn priority_word(priority: Priority, lang: Lang) -> &'static str {
    match (lang, priority) {
        (Lang::En, _) => priority.as_str(),
        (Lang::Ar, Priority::Low) => "منخفضة",
        (Lang::Ar, Priority::Normal) => "عادية",
        (Lang::Ar, Priority::High) => "عالية",
        (Lang::Ar, Priority::Urgent) => "عاجلة",
        (Lang::El, Priority::Low) => "χαμηλή",
        (Lang::El, Priority::Normal) => "κανονική",
        (Lang::El, Priority::High) => "υψηλή",
        (Lang::El, Priority::Urgent) => "επείγουσα",
    }
}

/// A scheduler step (`warning`, `escalation-2`, `reminder-1`, ...; see
/// `policy::steps`) as a reader of `lang` calls it; a name it does not know stays as it is.
pub fn step_word(name: &str, lang: Lang) -> String {
    let (base, number) = match name.rsplit_once('-') {
        Some((base, n)) if n.parse::<usize>().is_ok() => (base, Some(n)),
        _ => (name, None),
    };
    let word = match (lang, base) {
        (Lang::En, _) => None,
        (Lang::Ar, "warning") => Some("تنبيه"),
        (Lang::Ar, "breach") => Some("فوات الموعد"),
        (Lang::Ar, "escalation") => Some("تصعيد"),
        (Lang::Ar, "reminder") => Some("تذكير"),
        (Lang::Ar, "resolve") => Some("حل تلقائي"),
        (Lang::Ar, "survey") => Some("استبيان"),
        (Lang::Ar, "close") => Some("إغلاق تلقائي"),
        (Lang::El, "warning") => Some("προειδοποίηση"),
        (Lang::El, "breach") => Some("λήξη προθεσμίας"),
        (Lang::El, "escalation") => Some("κλιμάκωση"),
        (Lang::El, "reminder") => Some("υπενθύμιση"),
        (Lang::El, "resolve") => Some("αυτόματη επίλυση"),
        (Lang::El, "survey") => Some("έρευνα ικανοποίησης"),
        (Lang::El, "close") => Some("αυτόματο κλείσιμο"),
        _ => None,
    };
    match (word, number) {
        (Some(word), Some(n)) => format!("{word} {n}"),
        (Some(word), None) => word.to_string(),
        (None, _) => name.to_string(),
    }
}

/// A message's stored class (`customer`, `auto-reply: out-of-office subject`,
/// `acknowledgement`, ...) as a reader of `lang` calls it. English readers get it whole,
/// evidence included; others get the kind alone, or the class as it is if unknown.
pub fn class_word(class: &str, lang: Lang) -> String {
    if lang == Lang::En {
        return class.to_string();
    }
    let kind = class
        .rsplit("; ")
        .next()
        .unwrap_or(class)
        .split(':')
        .next()
        .unwrap_or(class)
        .trim();
    let words = match kind {
        "customer" => ["رسالة العميل", "μήνυμα πελάτη"],
        "auto-reply" => ["رد آلي", "αυτόματη απάντηση"],
        "bounce" => ["تقرير عدم تسليم", "αναφορά μη παράδοσης"],
        "bulk" => ["بريد جماعي", "μαζική αλληλογραφία"],
        "own mail" | "own-mail" => ["من بريدنا", "δικό μας μήνυμα"],
        "quarantine" => ["محجوزة", "σε καραντίνα"],
        "agent-reply" | "reply" => ["رد الموظف", "απάντηση συναδέλφου"],
        "agent-direct" => ["رد مباشر من الموظف", "απευθείας απάντηση συναδέλφου"],
        "agent-note" | "note" => ["ملاحظة داخلية", "εσωτερική σημείωση"],
        "agent-commands" => ["أوامر", "εντολές"],
        "agent-rejected" => ["رد مرفوض", "απάντηση που δεν στάλθηκε"],
        "acknowledgement" => ["إشعار الاستلام", "επιβεβαίωση παραλαβής"],
        "notification" => ["إشعار", "ειδοποίηση"],
        "notice" => ["تنبيه للموظف", "ενημέρωση συναδέλφου"],
        "update" => ["اعتذار وموعد جديد", "συγγνώμη και νέα προθεσμία"],
        "reminder" => ["تذكير", "υπενθύμιση"],
        "survey" => ["استبيان", "έρευνα ικανοποίησης"],
        "closed" => ["إشعار الإغلاق", "ειδοποίηση κλεισίματος"],
        "warning" => ["تنبيه", "προειδοποίηση"],
        "escalation" => ["تصعيد", "κλιμάκωση"],
        _ => return class.to_string(),
    };
    words[usize::from(lang == Lang::El)].to_string()
}

/// Who wrote a message of a conversation.
#[derive(Debug, Clone, Copy)]
pub enum Author<'a> {
    /// An agent (their address).
    Agent(&'a str),
    /// Mail we wrote ourselves (the desk's name).
    Automatic(&'a str),
    /// Anyone else, as their mail names them.
    Sender {
        name: Option<&'a str>,
        address: Option<&'a str>,
    },
}

/// `author` for a reader of `lang`: "agent alice@…", "Example Support (automatic)",
/// "Mona <mona@…>".
pub fn author_word(author: Author<'_>, lang: Lang) -> String {
    match (author, lang) {
        (Author::Agent(agent), Lang::En) => format!("agent {agent}"),
        (Author::Agent(agent), Lang::Ar) => format!("الموظف {agent}"),
        (Author::Agent(agent), Lang::El) => format!("συνάδελφος {agent}"),
        (Author::Automatic(desk), Lang::En) => format!("{desk} (automatic)"),
        (Author::Automatic(desk), Lang::Ar) => format!("{desk} (رسالة آلية)"),
        (Author::Automatic(desk), Lang::El) => format!("{desk} (αυτόματο μήνυμα)"),
        (Author::Sender { name, address }, _) => match (name, address) {
            (Some(name), Some(address)) => format!("{name} <{address}>"),
            (None, Some(address)) => address.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => match lang {
                Lang::En => "(no sender)",
                Lang::Ar => "(بلا مُرسِل)",
                Lang::El => "(χωρίς αποστολέα)",
            }
            .to_string(),
        },
    }
}

/// The vocative of a Greek first name (the first word of `name`), which is what a Greek
/// greeting uses: Γιώργος → Γιώργο, Αλέξανδρος → Αλέξανδρε, Γιάννης → Γιάννη, Κώστας →
/// Κώστα; feminine names (Ελένη, Μαρία) stay as they are. `None` when unsure: a name in
/// another script, an unknown ending, an ending said both ways (Στέλιο/Στέλιε), or no accent
/// to go by; the greeting then goes without the name.
pub fn greek_vocative(name: &str) -> Option<String> {
    let first: Vec<char> = name.split_whitespace().next()?.chars().collect();
    if first.len() < 2 || !first.iter().all(|c| is_greek_letter(*c)) {
        return None;
    }
    let lower: Vec<char> = first
        .iter()
        .collect::<String>()
        .to_lowercase()
        .chars()
        .collect();
    if lower.len() != first.len() {
        return None;
    }
    let n = lower.len();
    let (drop, ending) = match (lower[n - 2], lower[n - 1]) {
        (_, 'α' | 'ά' | 'η' | 'ή' | 'ω' | 'ώ') => (0, ""),
        ('ο', 'ς') => (2, second_declension(&lower[..n - 2])?),
        ('α' | 'ά' | 'η' | 'ή', 'ς') => (1, ""),
        _ => return None,
    };
    let mut vocative: String = first[..n - drop].iter().collect();
    if first[n - 1].is_uppercase() {
        vocative.push_str(&ending.to_uppercase());
    } else {
        vocative.push_str(ending);
    }
    Some(vocative)
}

/// The vocative ending of a name in unaccented -ος with this (lower-case) stem: -ο when the
/// stress is on the last syllable but one (Γιώργο, Νίκο, Παύλο), -ε when it is on the one
/// before (Αλέξανδρε, Άγγελε, Νικόλαε); learned names in -ιος take -ιε (Δημήτριε).
fn second_declension(stem: &[char]) -> Option<&'static str> {
    if let [rest @ .., before, 'ι'] = stem
        && !is_vowel(*before)
    {
        // Two syllables (Στέλιος, Μάριος) are said both ways.
        return (syllables(rest).len() >= 2).then_some("ε");
    }
    let mut word = stem.to_vec();
    word.push('ο');
    let syllables = syllables(&word);
    let stressed = syllables.iter().rposition(|accented| *accented)?;
    match syllables.len() - 1 - stressed {
        1 => Some("ο"),
        2 => Some("ε"),
        _ => None,
    }
}

/// The vowel nuclei of a lower-case Greek word, in order, each with whether it carries the
/// accent; the two-letter vowels (αι, ει, οι, ου, αυ, ευ, ηυ, υι) count once.
fn syllables(word: &[char]) -> Vec<bool> {
    let mut nuclei: Vec<bool> = Vec::new();
    let mut previous: Option<char> = None;
    for &c in word {
        if !is_vowel(c) {
            previous = None;
            continue;
        }
        let joins = previous.is_some_and(|p| {
            matches!(
                (p, c),
                ('α' | 'ε' | 'ο' | 'υ', 'ι' | 'ί') | ('α' | 'ε' | 'ο' | 'η', 'υ' | 'ύ')
            )
        });
        let accented = "άέήίόύώΐΰ".contains(c);
        match nuclei.last_mut() {
            Some(last) if joins => *last |= accented,
            _ => nuclei.push(accented),
        }
        // A diphthong's second letter starts no new one (ουι is ου + ι).
        previous = if joins { None } else { Some(c) };
    }
    nuclei
}

fn is_vowel(c: char) -> bool {
    "αεηιουωάέήίόύώϊϋΐΰ".contains(c)
}

fn is_greek_letter(c: char) -> bool {
    c.is_alphabetic() && matches!(c, '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(n: i64) -> SignedDuration {
        SignedDuration::from_mins(n)
    }

    #[test]
    fn due_times_in_each_language_with_a_clear_zone() {
        let due: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let athens = TimeZone::get("Europe/Athens").unwrap();
        let summer: Timestamp = "2026-05-03T06:05:00Z".parse().unwrap();
        let saturday: Timestamp = "2026-11-27T23:30:00Z".parse().unwrap();
        let riyadh = TimeZone::get("Asia/Riyadh").unwrap();
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        let utc = TimeZone::UTC;
        for (at, tz, lang, want) in [
            (
                due,
                &athens,
                Lang::En,
                "Tuesday 24 November 2026, 12:00 EET (UTC+2)",
            ),
            (
                due,
                &athens,
                Lang::Ar,
                "الثلاثاء، 24 نوفمبر 2026، الساعة 12:00 بتوقيت UTC+2",
            ),
            (
                due,
                &athens,
                Lang::El,
                "την Τρίτη 24 Νοεμβρίου 2026, στις 12:00 (ώρα UTC+2)",
            ),
            (
                summer,
                &athens,
                Lang::El,
                "την Κυριακή 3 Μαΐου 2026, στις 09:05 (ώρα UTC+3)",
            ),
            (
                saturday,
                &athens,
                Lang::El,
                "το Σάββατο 28 Νοεμβρίου 2026, στη 01:30 (ώρα UTC+2)",
            ),
            (
                saturday,
                &utc,
                Lang::Ar,
                "الجمعة، 27 نوفمبر 2026، الساعة 23:30 بتوقيت UTC",
            ),
            // A numeric abbreviation (+03) is not repeated.
            (summer, &riyadh, Lang::En, "Sunday 3 May 2026, 09:05 UTC+3"),
            (
                summer,
                &kolkata,
                Lang::En,
                "Sunday 3 May 2026, 11:35 IST (UTC+5:30)",
            ),
            (
                due,
                &utc,
                Lang::Ar,
                "الثلاثاء، 24 نوفمبر 2026، الساعة 10:00 بتوقيت UTC",
            ),
        ] {
            assert_eq!(format_due(at, tz, lang), want);
        }
    }

    #[test]
    fn short_times_name_the_weekday_in_the_readers_language() {
        let at: Timestamp = "2026-11-24T04:00:00Z".parse().unwrap();
        let athens = TimeZone::get("Europe/Athens").unwrap();
        for (tz, lang, want) in [
            (&TimeZone::UTC, Lang::En, "Tue 2026-11-24 04:00 UTC"),
            (&athens, Lang::En, "Tue 2026-11-24 06:00 EET"),
            (&TimeZone::UTC, Lang::Ar, "الثلاثاء 2026-11-24، 04:00 UTC"),
            (&athens, Lang::El, "Τρί 2026-11-24 06:00 UTC+2"),
        ] {
            assert_eq!(format_when(at, tz, lang), want);
        }
    }

    #[test]
    fn durations_leave_out_zero_parts() {
        for (mins, en, el) in [
            (0, "less than a minute", "λιγότερο από ένα λεπτό"),
            (1, "1 min", "1 λεπτό"),
            (59, "59 min", "59 λεπτά"),
            (60, "1 h", "1 ώρα"),
            (120, "2 h", "2 ώρες"),
            (125, "2 h 5 min", "2 ώρες και 5 λεπτά"),
            (1440, "1 d", "1 ημέρα"),
            (1440 * 3 + 61, "3 d 1 h", "3 ημέρες και 1 ώρα"),
        ] {
            assert_eq!(format_duration(minutes(mins), Lang::En), en, "{mins}");
            assert_eq!(format_duration(minutes(mins), Lang::El), el, "{mins}");
        }
        assert_eq!(
            format_duration(SignedDuration::from_secs(-90), Lang::En),
            "less than a minute"
        );
    }

    /// 1 and 2 are the noun alone (singular, dual), 3-10 take the plural, 11-99 the
    /// accusative singular, 100-102 the genitive singular; the last two digits decide.
    #[test]
    fn arabic_counts_agree_with_their_number() {
        for (mins, want) in [
            (0, "أقل من دقيقة"),
            (1, "دقيقة"),
            (2, "دقيقتان"),
            (3, "3 دقائق"),
            (10, "10 دقائق"),
            (11, "11 دقيقة"),
            (59, "59 دقيقة"),
            (60, "ساعة"),
            (120, "ساعتان"),
            (180, "3 ساعات"),
            (125, "ساعتان و5 دقائق"),
            (61, "ساعة ودقيقة"),
            (11 * 60 + 2, "11 ساعة ودقيقتان"),
            (1440 + 120, "يوم وساعتان"),
            (1440 * 2, "يومان"),
            (1440 * 7 + 60 * 23, "7 أيام و23 ساعة"),
            (1440 * 11, "11 يومًا"),
            (1440 * 100, "100 يوم"),
            (1440 * 102, "102 يوم"),
            (1440 * 103, "103 أيام"),
            (1440 * 111, "111 يومًا"),
        ] {
            assert_eq!(format_duration(minutes(mins), Lang::Ar), want, "{mins} min");
        }
    }

    #[test]
    fn codes_become_the_readers_words() {
        assert_eq!(status_word(TicketStatus::Open, Lang::Ar), "مفتوحة");
        assert_eq!(
            status_word(TicketStatus::Pending, Lang::El),
            "σε αναμονή του πελάτη"
        );
        assert_eq!(status_word(TicketStatus::Closed, Lang::En), "closed");
        assert_eq!(priority_word(Priority::High, Lang::El), "υψηλή");
        for (name, lang, want) in [
            ("warning", Lang::Ar, "تنبيه"),
            ("escalation-2", Lang::Ar, "تصعيد 2"),
            ("escalation-2", Lang::El, "κλιμάκωση 2"),
            ("reminder-1", Lang::En, "reminder-1"),
            ("frobnicate-3", Lang::El, "frobnicate-3"),
        ] {
            assert_eq!(step_word(name, lang), want);
        }
        for (class, lang, want) in [
            ("acknowledgement", Lang::Ar, "إشعار الاستلام"),
            ("customer", Lang::El, "μήνυμα πελάτη"),
            (
                "auto-reply: out-of-office subject",
                Lang::El,
                "αυτόματη απάντηση",
            ),
            (
                "released from quarantine; customer",
                Lang::Ar,
                "رسالة العميل",
            ),
            (
                "auto-reply: out-of-office subject",
                Lang::En,
                "auto-reply: out-of-office subject",
            ),
            ("something new", Lang::Ar, "something new"),
        ] {
            assert_eq!(class_word(class, lang), want);
        }
    }

    #[test]
    fn greek_names_take_the_vocative_or_are_left_out() {
        for (name, want) in [
            ("Γιώργος", Some("Γιώργο")),
            ("Νίκος Παπαδόπουλος", Some("Νίκο")),
            ("Παύλος", Some("Παύλο")),
            ("Αλέξανδρος", Some("Αλέξανδρε")),
            ("Άγγελος", Some("Άγγελε")),
            ("Νικόλαος", Some("Νικόλαε")),
            ("Ευάγγελος", Some("Ευάγγελε")),
            ("Βασίλειος", Some("Βασίλειε")),
            ("Δημήτριος", Some("Δημήτριε")),
            ("Κυριάκος", Some("Κυριάκο")),
            ("ΓΙΏΡΓΟΣ", Some("ΓΙΏΡΓΟ")),
            ("Γιάννης", Some("Γιάννη")),
            ("Ερμής", Some("Ερμή")),
            ("Κώστας", Some("Κώστα")),
            ("Θωμάς", Some("Θωμά")),
            ("Ελένη", Some("Ελένη")),
            ("Μαρία Κ.", Some("Μαρία")),
            ("Κλειώ", Some("Κλειώ")),
            // Said both ways, no accent to go by, stressed last, other endings, other scripts.
            ("Στέλιος", None),
            ("ΓΙΩΡΓΟΣ", None),
            ("Θεός", None),
            ("Άρτεμις", None),
            ("Mona Quinn", None),
            ("أحمد", None),
            ("", None),
        ] {
            assert_eq!(greek_vocative(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn filters_speak_the_templates_language() {
        let mut env = Environment::new();
        add_filters(&mut env);
        env.add_template(
            "t.txt",
            "{{ s|status }}/{{ p|priority }}/{{ t|step }}/{{ k|class }}/{{ n|vocative }}",
        )
        .unwrap();
        let render = |lang: &str| {
            let ctx = minijinja::context! {
                lang => lang, s => "open", p => "urgent", t => "escalation-1",
                k => "acknowledgement", n => "Γιώργος",
            };
            env.get_template("t.txt").unwrap().render(ctx).unwrap()
        };
        assert_eq!(
            render("en"),
            "open/urgent/escalation-1/acknowledgement/Γιώργος"
        );
        assert_eq!(render("ar"), "مفتوحة/عاجلة/تصعيد 1/إشعار الاستلام/Γιώργος");
        assert_eq!(
            render("el"),
            "ανοιχτό/επείγουσα/κλιμάκωση 1/επιβεβαίωση παραλαβής/Γιώργο"
        );
    }
}
