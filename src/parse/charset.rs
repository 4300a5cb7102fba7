//! Second chance for text mail-parser could only decode into U+FFFD: an unknown or lying
//! charset label, raw 8-bit headers, a UTF-8 character split across two encoded words.
//!
//! Only called for fields that came out with U+FFFD, so well-formed mail is never touched.
//! The bytes are taken again from the raw message and decoded by their label when they are
//! valid in it; otherwise by a charset the message declares elsewhere (a body's label is
//! good evidence for an undeclared 8-bit subject), then by chardetng's guess. Every guess is
//! reported so the message can carry a warning.

use encoding_rs::Encoding;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;

/// Text decoded from bytes, and the charset that had to be guessed for it, if any.
pub struct Decoded {
    pub text: String,
    pub guessed: Option<&'static str>,
}

/// Decodes `bytes` labelled `label`: by the label when the bytes are valid in it, else by
/// the first of `hints` they are valid in, else by detection.
pub fn decode(bytes: &[u8], label: Option<&str>, hints: &[&'static Encoding]) -> Decoded {
    let labelled = label.and_then(|l| Encoding::for_label(l.trim().as_bytes()));
    if let Some(text) = labelled
        .or(Some(encoding_rs::UTF_8))
        .and_then(|e| e.decode_without_bom_handling_and_without_replacement(bytes))
    {
        return Decoded {
            text: text.into_owned(),
            guessed: None,
        };
    }
    let declared = hints.iter().find(|e| {
        Some(**e) != labelled
            && e.decode_without_bom_handling_and_without_replacement(bytes)
                .is_some()
    });
    let encoding = declared.copied().unwrap_or_else(|| {
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(bytes, true);
        detector.guess(None, true)
    });
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    Decoded {
        text: text.into_owned(),
        guessed: Some(encoding.name()),
    }
}

/// A raw header value: RFC 2047 encoded words (adjacent words in one charset are joined
/// before decoding, so a character split between them survives) and raw 8-bit text.
pub fn header_value(raw: &[u8], hints: &[&'static Encoding]) -> Decoded {
    let mut text = String::new();
    let mut guessed = None;
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut rest = raw;
    let flush = |pending: &mut Option<(String, Vec<u8>)>,
                 text: &mut String,
                 guessed: &mut Option<&'static str>| {
        if let Some((charset, bytes)) = pending.take() {
            let decoded = decode(&bytes, Some(&charset), hints);
            text.push_str(&decoded.text);
            *guessed = guessed.or(decoded.guessed);
        }
    };
    while !rest.is_empty() {
        if let Some((charset, bytes, used)) = encoded_word(rest) {
            match &mut pending {
                Some((open, collected)) if open.eq_ignore_ascii_case(&charset) => {
                    collected.extend_from_slice(&bytes)
                }
                _ => {
                    flush(&mut pending, &mut text, &mut guessed);
                    pending = Some((charset, bytes));
                }
            }
            rest = &rest[used..];
            continue;
        }
        // Text up to the next encoded word; whitespace between two words is dropped.
        let next = if rest.starts_with(b"=?") {
            2
        } else {
            find(rest, b"=?").unwrap_or(rest.len())
        };
        let chunk = &rest[..next];
        let blank = chunk.iter().all(|b| b.is_ascii_whitespace());
        if !(blank && pending.is_some() && encoded_word(&rest[next..]).is_some()) {
            flush(&mut pending, &mut text, &mut guessed);
            let decoded = decode(chunk, None, hints);
            text.push_str(&decoded.text);
            guessed = guessed.or(decoded.guessed);
        }
        rest = &rest[next..];
    }
    flush(&mut pending, &mut text, &mut guessed);
    Decoded { text, guessed }
}

/// The body of a part as sent (transfer encoding undone, charset not yet applied).
pub fn transfer_decode(raw: &[u8], encoding: mail_parser::Encoding) -> Vec<u8> {
    match encoding {
        mail_parser::Encoding::None => raw.to_vec(),
        mail_parser::Encoding::QuotedPrintable => {
            quoted_printable_decode(raw).unwrap_or_else(|| raw.to_vec())
        }
        mail_parser::Encoding::Base64 => {
            let compact: Vec<u8> = raw
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64_decode(&compact).unwrap_or_default()
        }
    }
}

/// `=?charset?B|Q?payload?=` at the start of `bytes`: (charset, decoded bytes, length).
fn encoded_word(bytes: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let body = bytes.strip_prefix(b"=?")?;
    let charset_end = body.iter().position(|b| *b == b'?')?;
    let charset = std::str::from_utf8(&body[..charset_end]).ok()?;
    let charset = charset.split('*').next().unwrap_or(charset); // RFC 2231 language tag
    let kind = *body.get(charset_end + 1)?;
    if body.get(charset_end + 2) != Some(&b'?') {
        return None;
    }
    let payload_start = charset_end + 3;
    let payload_len = find(&body[payload_start..], b"?=")?;
    let payload = &body[payload_start..payload_start + payload_len];
    if charset.is_empty() || payload.iter().any(u8::is_ascii_whitespace) {
        return None;
    }
    let decoded = match kind {
        b'B' | b'b' => base64_decode(payload)?,
        b'Q' | b'q' => q_decode(payload),
        _ => return None,
    };
    Some((
        charset.to_string(),
        decoded,
        2 + payload_start + payload_len + 2,
    ))
}

fn q_decode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        match payload[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = payload
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'='),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_two_words_survives() {
        // "تحديث" in UTF-8, cut inside the second letter's two bytes.
        let raw = "=?UTF-8?B?2KrY?=\r\n =?UTF-8?B?rdiv2YrYqw==?=";
        let decoded = header_value(raw.as_bytes(), &[]);
        assert_eq!(decoded.text, "تحديث");
        assert_eq!(decoded.guessed, None);
    }

    #[test]
    fn lying_and_missing_labels_are_detected() {
        // windows-1256 bytes for "مرحبا بكم في الدعم" labelled ISO-8859-6, with a 1256-only
        // curly quote.
        let (bytes, _, _) = encoding_rs::WINDOWS_1256.encode("“مرحبا بكم في الدعم”");
        let decoded = decode(&bytes, Some("iso-8859-6"), &[]);
        assert_eq!(decoded.text, "“مرحبا بكم في الدعم”");
        assert!(decoded.guessed.is_some());
        // Undeclared 8-bit Greek, with the body's label as the hint.
        let (bytes, _, _) = encoding_rs::ISO_8859_7.encode("Πρόβλημα με την παραγγελία μου");
        let decoded = header_value(&bytes, &[encoding_rs::ISO_8859_7]);
        assert_eq!(decoded.text, "Πρόβλημα με την παραγγελία μου");
        assert_eq!(decoded.guessed, Some("ISO-8859-7"));
    }
}
