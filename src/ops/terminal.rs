//! The edge between stored text and the admin's terminal.
//!
//! Everything a customer wrote (names, addresses, subjects, bodies, raw quarantined bytes) may
//! carry terminal escape sequences: colours, OSC 0/52 (window title, clipboard), cursor moves
//! that overwrite earlier lines, bidi overrides that reorder what is shown. Every human view of
//! the CLI writes through [`Terminal`], which shows such characters as visible escapes
//! (`\x1b`, `\u{202e}`); `--json` output does not (JSON escapes control characters itself and
//! the strings stay exact).

use std::borrow::Cow;
use std::io::Write;

/// Shows `text` with every character that could steer a terminal written as an escape:
/// C0 controls except line feed and tab as `\x1b`, DEL as `\x7f`, C1 controls and bidi
/// controls as `\u{9b}`, `\u{202e}`. Line feeds and tabs are kept: they only move to the next
/// line or column.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escape`] for bytes that may not be UTF-8 (raw mail): bytes that are not part of a valid
/// UTF-8 sequence are shown as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return match escape(text) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        };
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    Cow::Owned(out.into_bytes())
}

/// Whether `c` is a control character a terminal acts on, or a bidi control.
fn steers(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        c if c.is_control() => true,
        // ALM, LRM, RLM, LRE/RLE/PDF/LRO/RLO, LRI/RLI/FSI/PDI.
        '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

fn push_char(out: &mut String, c: char) {
    if !steers(c) {
        out.push(c);
    } else if (c as u32) < 0x80 {
        out.push_str(&format!("\\x{:02x}", c as u32));
    } else {
        out.push_str(&format!("\\u{{{:x}}}", c as u32));
    }
}

/// A writer that passes everything written to it through [`escape_bytes`]: the human views
/// write to one, so no field can be forgotten.
pub struct Terminal<W: Write> {
    inner: W,
}

impl<W: Write> Terminal<W> {
    pub fn new(inner: W) -> Terminal<W> {
        Terminal { inner }
    }
}

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(&escape_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_untouched() {
        let text = "Γειά σου, مرحبا\n\tline two";
        assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn every_control_is_shown_visibly() {
        assert_eq!(escape("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("\x1b]52;c;ZXZpbA==\x07"), "\\x1b]52;c;ZXZpbA==\\x07");
        assert_eq!(escape("a\rb\x7f\u{9b}2K"), "a\\x0db\\x7f\\u{9b}2K");
        assert_eq!(escape("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let shown = escape(&c.to_string()).into_owned();
            if c == '\n' || c == '\t' {
                assert_eq!(shown, c.to_string());
            } else {
                assert!(shown.starts_with('\\'), "{c:?} shown as {shown:?}");
                assert!(!shown.chars().any(|s| s.is_control()), "{c:?}: {shown:?}");
            }
        }
    }

    #[test]
    fn invalid_utf8_is_shown_as_bytes() {
        assert_eq!(
            escape_bytes(b"caf\xe9 \x1b[2J").as_ref(),
            b"caf\\xe9 \\x1b[2J".as_slice()
        );
    }

    #[test]
    fn the_writer_escapes_what_passes_through() {
        let mut out = Terminal::new(Vec::new());
        let subject = "\x1b[1A\x1b[2Kok";
        writeln!(out, "Subject: {subject}").unwrap();
        assert_eq!(
            String::from_utf8(out.inner).unwrap(),
            "Subject: \\x1b[1A\\x1b[2Kok\n"
        );
    }
}
