//! Outlook's `winmail.dat` (TNEF, MS-OXTNEF): the files it carries, nothing else.
//!
//! The one crate on crates.io (`tnef` 0.1.1) had a single release in 2019 and pulls in
//! chrono and a code-page crate; the attachment records are a few dozen lines. Reads only:
//! `attAttachRenddata` (a new attachment begins), `attAttachTitle` (its name),
//! `attAttachData` (its bytes) and, inside `attAttachment`'s MAPI properties, the long file
//! name and MIME type. Every length is checked against what is left, so hostile input ends
//! the decoding early and never panics (see the random-input test).

/// A file unpacked from TNEF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TnefFile {
    pub name: String,
    /// From the MIME tag property, if Outlook wrote one.
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

const SIGNATURE: u32 = 0x223E_9F78;
const LEVEL_ATTACHMENT: u8 = 0x02;
/// Attribute ids (the low 16 bits; the high 16 bits are the value's type).
const ATT_ATTACH_RENDDATA: u16 = 0x9002;
const ATT_ATTACH_TITLE: u16 = 0x8010;
const ATT_ATTACH_DATA: u16 = 0x800F;
const ATT_ATTACHMENT: u16 = 0x9005;
/// MAPI property ids inside `attAttachment`.
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;

/// Whether `data` starts like TNEF.
pub fn is_tnef(data: &[u8]) -> bool {
    read_u32(data, 0) == Some(SIGNATURE)
}

/// The files in `data`; empty when it is not TNEF or carries none. Records after a damaged
/// one are not read; files with neither a name nor bytes are left out.
pub fn files(data: &[u8]) -> Vec<TnefFile> {
    if !is_tnef(data) {
        return Vec::new();
    }
    let mut files: Vec<TnefFile> = Vec::new();
    // Signature (4) and legacy key (2).
    let mut at = 6;
    while let Some((level, id, value, next)) = attribute(data, at) {
        at = next;
        if level != LEVEL_ATTACHMENT {
            continue;
        }
        if id == ATT_ATTACH_RENDDATA || files.is_empty() {
            files.push(TnefFile {
                name: String::new(),
                content_type: None,
                data: Vec::new(),
            });
        }
        let Some(file) = files.last_mut() else {
            continue;
        };
        match id {
            ATT_ATTACH_TITLE if file.name.is_empty() => file.name = text8(value),
            ATT_ATTACH_DATA => file.data = value.to_vec(),
            ATT_ATTACHMENT => {
                let props = properties(value);
                if let Some(name) = props.long_name.filter(|n| !n.is_empty()) {
                    file.name = name;
                }
                file.content_type = props.mime_type.filter(|t| t.contains('/'));
            }
            _ => {}
        }
    }
    files.retain(|f| !f.name.is_empty() || !f.data.is_empty());
    for (i, file) in files.iter_mut().enumerate() {
        if file.name.is_empty() {
            file.name = format!("winmail-{}", i + 1);
        }
    }
    files
}

/// One attribute at `at`: level, id, value, where the next one starts.
fn attribute(data: &[u8], at: usize) -> Option<(u8, u16, &[u8], usize)> {
    let level = *data.get(at)?;
    let id = read_u32(data, at + 1)?;
    let len = usize::try_from(read_u32(data, at + 5)?).ok()?;
    let start = at + 9;
    let value = data.get(start..start.checked_add(len)?)?;
    // A two-byte checksum follows; Outlook's are right and others' are often not, so it is
    // skipped rather than checked.
    let next = start + len + 2;
    (next <= data.len()).then_some((level, (id & 0xFFFF) as u16, value, next))
}

#[derive(Default)]
struct Properties {
    long_name: Option<String>,
    mime_type: Option<String>,
}

/// The long file name and MIME tag among MAPI properties (MS-OXTNEF 2.1.3.4).
fn properties(data: &[u8]) -> Properties {
    let mut found = Properties::default();
    let Some(count) = read_u32(data, 0) else {
        return found;
    };
    let mut at = 4;
    for _ in 0..count {
        let (Some(kind), Some(id)) = (read_u16(data, at), read_u16(data, at + 2)) else {
            break;
        };
        at += 4;
        if id >= 0x8000 {
            // A named property: GUID, then a number or a name.
            let Some(next) = skip_name(data, at + 16) else {
                break;
            };
            at = next;
        }
        let Some((values, next)) = property_values(data, at, kind) else {
            break;
        };
        at = next;
        let text = match (kind, values.first()) {
            (0x001E, Some(v)) => Some(text8(v)),
            (0x001F, Some(v)) => Some(utf16(v)),
            _ => None,
        };
        match id {
            PR_ATTACH_LONG_FILENAME => found.long_name = text,
            PR_ATTACH_MIME_TAG => found.mime_type = text,
            _ => {}
        }
    }
    found
}

fn skip_name(data: &[u8], at: usize) -> Option<usize> {
    match read_u32(data, at)? {
        0 => Some(at + 8),
        _ => {
            let len = usize::try_from(read_u32(data, at + 4)?).ok()?;
            Some(at + 8 + padded(len)?)
        }
    }
}

/// The values of a property of type `kind` at `at`, and where the next property starts.
fn property_values(data: &[u8], at: usize, kind: u16) -> Option<(Vec<&[u8]>, usize)> {
    let multi = kind & 0x1000 != 0;
    let fixed = match kind & !0x1000 {
        0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => Some(4),
        0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => Some(8),
        0x0048 => Some(16),
        0x000D | 0x001E | 0x001F | 0x0102 => None,
        _ => return None,
    };
    let (count, mut at) = match (multi, fixed) {
        (false, Some(_)) => (1, at),
        _ => (read_u32(data, at)?, at + 4),
    };
    let mut values = Vec::new();
    for _ in 0..count {
        let len = match fixed {
            Some(size) => size,
            None => {
                let len = usize::try_from(read_u32(data, at)?).ok()?;
                at += 4;
                len
            }
        };
        values.push(data.get(at..at.checked_add(len)?)?);
        at = at.checked_add(padded(len)?)?;
    }
    (at <= data.len()).then_some((values, at))
}

fn padded(len: usize) -> Option<usize> {
    len.checked_add(3).map(|l| l & !3)
}

/// An 8-bit string: UTF-8 when valid, else Windows-1252 (Outlook's ANSI code page in the West).
fn text8(bytes: &[u8]) -> String {
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    };
    crate::model::clean_header_text(&text)
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&u| u != 0)
        .collect();
    crate::model::clean_header_text(&String::from_utf16_lossy(&units))
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Builds TNEF the way Outlook lays it out, for tests here and in `tests/it`.
pub mod build {
    /// A `winmail.dat` with a message-level attribute and each file as its own
    /// attachment records: `(8.3 title, long name, bytes)`.
    pub fn winmail(files: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&super::SIGNATURE.to_le_bytes());
        out.extend_from_slice(&0x0001u16.to_le_bytes());
        // attMessageClass, message level: read past, never used.
        attribute(&mut out, 0x01, 0x0007_8008, b"IPM.Microsoft Mail.Note\0");
        for (title, long, data) in files {
            attribute(&mut out, 0x02, 0x0006_9002, &[0u8; 14]);
            let mut name = title.as_bytes().to_vec();
            name.push(0);
            attribute(&mut out, 0x02, 0x0001_8010, &name);
            attribute(&mut out, 0x02, 0x0006_800F, data);
            attribute(&mut out, 0x02, 0x0006_9005, &long_name(long));
        }
        out
    }

    fn attribute(out: &mut Vec<u8>, level: u8, id: u32, value: &[u8]) {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        let sum = value
            .iter()
            .fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
    }

    /// MAPI properties: PR_ATTACH_METHOD (a long) and PR_ATTACH_LONG_FILENAME (Unicode).
    fn long_name(name: &str) -> Vec<u8> {
        let mut props = Vec::new();
        props.extend_from_slice(&2u32.to_le_bytes());
        props.extend_from_slice(&0x0003u16.to_le_bytes());
        props.extend_from_slice(&0x3705u16.to_le_bytes());
        props.extend_from_slice(&1u32.to_le_bytes());
        props.extend_from_slice(&0x001Fu16.to_le_bytes());
        props.extend_from_slice(&0x3707u16.to_le_bytes());
        let mut text: Vec<u8> = name
            .encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect();
        props.extend_from_slice(&1u32.to_le_bytes());
        props.extend_from_slice(&(text.len() as u32).to_le_bytes());
        while !text.len().is_multiple_of(4) {
            text.push(0);
        }
        props.extend_from_slice(&text);
        props
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_out_with_their_long_names() {
        let data = build::winmail(&[
            (
                "REPORT~1.PDF",
                "Quarterly report – Ελλάδα.pdf",
                b"%PDF-1.4 body",
            ),
            ("IMAGE0~1.PNG", "", b"\x89PNG\r\n"),
        ]);
        let files = files(&data);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "Quarterly report – Ελλάδα.pdf");
        assert_eq!(files[0].data, b"%PDF-1.4 body");
        assert_eq!(files[1].name, "IMAGE0~1.PNG", "no long name: the title");
        assert_eq!(files[1].data, b"\x89PNG\r\n");
    }

    #[test]
    fn not_tnef_or_cut_short_is_no_files_and_no_panic() {
        assert!(files(b"").is_empty());
        assert!(files(b"PK\x03\x04 a zip").is_empty());
        let data = build::winmail(&[("A.TXT", "a.txt", b"hello")]);
        for len in 0..data.len() {
            let _ = files(&data[..len]);
        }
        assert_eq!(files(&data)[0].name, "a.txt");
    }

    /// Random bytes after a valid start, and random single-byte changes of a real file:
    /// decoding ends without a panic and never returns more bytes than it was given.
    #[test]
    fn mutated_input_never_panics() {
        let data = build::winmail(&[
            ("A.TXT", "a.txt", b"hello"),
            ("B.BIN", "b.bin", &[7u8; 300]),
        ]);
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut mutated = data.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % mutated.len() as u64) as usize;
                mutated[at] = next() as u8;
            }
            let total: usize = files(&mutated).iter().map(|f| f.data.len()).sum();
            assert!(total <= mutated.len());
            let mut random = data[..6].to_vec();
            random.extend((0..(next() % 200)).map(|_| next() as u8));
            let _ = files(&random);
        }
    }
}
