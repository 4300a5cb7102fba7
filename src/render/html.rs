//! HTML that people wrote: an agent's answer with the quote cut in the HTML itself, or a
//! customer's message shown to agents, both sanitized, with the `cid:` images they still show
//! and a text alternative from the same cut.
//!
//! The cut works on html5ever's tokens: everything from the first start of a quote is dropped
//! (our reply marker in the text, Gmail's `gmail_quote`, Outlook's `divRplyFwdMsg` and its
//! `border-top` header block, Apple Mail's and Thunderbird's `blockquote type="cite"`,
//! Thunderbird's `moz-cite-prefix`), and the agent's command lines before the first words.
//! What is left is written back and cleaned by ammonia, which closes what the cut left open:
//! no scripts, no event handlers, no forms, images only from `cid:` parts of the same mail,
//! links kept, styles limited to how text looks.

use std::cell::RefCell;
use std::collections::BTreeSet;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use crate::agent::reply::{MARKER_END, MARKER_START, command_word};

/// Sanitized HTML with its text alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Html {
    /// A body fragment, safe to insert into a template unescaped.
    pub html: String,
    /// The same content as text, for the text alternative and the transcript.
    pub text: String,
    /// Content-IDs (without angle brackets) that `html` shows as `cid:` images.
    pub shown: BTreeSet<String>,
    /// Content-IDs the original HTML showed and `html` no longer does: the quote's images.
    pub cut: BTreeSet<String>,
}

/// Where the agent's answer ends in their HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteStart {
    /// Our reply marker, quoted in any way.
    Marker,
    Gmail,
    /// `divRplyFwdMsg`, `appendonsend`, or Word's `border-top` header block.
    Outlook,
    /// `blockquote type="cite"` (Apple Mail, Thunderbird).
    Cite,
    /// `moz-cite-prefix` (Thunderbird's "On … wrote:").
    Thunderbird,
    Yahoo,
}

/// The agent's answer in `html`: command lines and the quote removed, sanitized. `None` when
/// nothing of the answer is left above the quote (bottom-posting; the text part decides) or
/// when our marker is still in what is left (an unknown quote: relaying it would show the
/// customer our notification).
pub fn answer(html: &str) -> Option<Html> {
    let tokens = tokenize(html);
    let (kept, quote) = cut(&tokens);
    let kept = drop_command_lines(kept);
    let out = finish(&serialize(&kept), &tokens);
    tracing::debug!(?quote, "agent HTML cut");
    let left_marker = out.text.contains(MARKER_START) && out.text.contains(MARKER_END);
    (!out.text.trim().is_empty() && !left_marker).then_some(out)
}

/// A customer's HTML, whole, sanitized: what they saw when they sent it.
pub fn whole(html: &str) -> Html {
    let tokens = tokenize(html);
    finish(&serialize(&body_tokens(&tokens)), &tokens)
}

fn finish(written: &str, original: &[Tok]) -> Html {
    let html = sanitizer().clean(written).to_string();
    let clean = tokenize(&html);
    let shown = images(&clean);
    let cut = images(original).difference(&shown).cloned().collect();
    Html {
        text: to_text(&clean),
        html,
        shown,
        cut,
    }
}

/// The sanitizer: ammonia's defaults (no scripts, no event handlers, no forms or frames)
/// plus direction and limited styles, `cid:` as the only image source, no relative URLs.
fn sanitizer() -> ammonia::Builder<'static> {
    let mut builder = ammonia::Builder::default();
    builder
        .add_tags(["font"])
        .add_generic_attributes(["dir", "style", "align"])
        // A tooltip is text the text alternative would not show (nor the leak check read).
        .rm_generic_attributes(["title"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tag_attributes("ol", ["start", "type"])
        .add_tag_attributes("td", ["valign", "width", "colspan", "rowspan"])
        .add_tag_attributes("table", ["width", "cellpadding", "cellspacing", "border"])
        .filter_style_properties(
            [
                "color",
                "background-color",
                "font-family",
                "font-size",
                "font-style",
                "font-weight",
                "text-align",
                "text-decoration",
                "direction",
                "margin-left",
                "margin-right",
                "margin-top",
                "margin-bottom",
                "list-style-type",
            ]
            .into_iter()
            .collect(),
        )
        .add_url_schemes(["cid"])
        .url_relative(ammonia::UrlRelative::Deny)
        .add_clean_content_tags(["form", "title", "textarea", "select", "button"])
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            // Images load from the mail itself, never from a server that learns who read it.
            ("img", "src") if !is_cid(value) => None,
            _ => Some(value.into()),
        });
    builder
}

fn is_cid(url: &str) -> bool {
    url.trim_start()
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("cid:"))
}

/// A token of HTML, owned and simplified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        self_closing: bool,
    },
    End(String),
    Text(String),
}

impl Tok {
    fn attr(&self, wanted: &str) -> Option<&str> {
        match self {
            Tok::Start { attrs, .. } => attrs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.as_str()),
            _ => None,
        }
    }

    fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c.eq_ignore_ascii_case(class)))
    }
}

struct Sink(RefCell<Vec<Tok>>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut out = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name = tag.name.to_string().to_ascii_lowercase();
                let raw = match name.as_str() {
                    "script" => Some(RawKind::ScriptData),
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" => Some(RawKind::Rawtext),
                    "title" | "textarea" => Some(RawKind::Rcdata),
                    _ => None,
                };
                if tag.kind == TagKind::EndTag {
                    out.push(Tok::End(name));
                    return TokenSinkResult::Continue;
                }
                out.push(Tok::Start {
                    name,
                    attrs: tag
                        .attrs
                        .iter()
                        .map(|a| {
                            (
                                a.name.local.to_string().to_ascii_lowercase(),
                                a.value.to_string(),
                            )
                        })
                        .collect(),
                    self_closing: tag.self_closing,
                });
                if let Some(kind) = raw.filter(|_| !tag.self_closing) {
                    return TokenSinkResult::RawData(kind);
                }
            }
            Token::CharacterTokens(text) => match out.last_mut() {
                Some(Tok::Text(last)) => last.push_str(&text),
                _ => out.push(Tok::Text(text.to_string())),
            },
            Token::DoctypeToken(_)
            | Token::CommentToken(_)
            | Token::NullCharacterToken
            | Token::EOFToken
            | Token::ParseError(_) => {}
        }
        TokenSinkResult::Continue
    }
}

fn tokenize(html: &str) -> Vec<Tok> {
    let tokenizer = Tokenizer::new(Sink(RefCell::new(Vec::new())), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    // The sink never asks for a script to run, so feeding runs to the end at once.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.take()
}

/// The tokens of the body: `<head>` (title, styles, Word's XML) and everything inside
/// `<script>`/`<style>` left out.
fn body_tokens(tokens: &[Tok]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut skipping: Option<&str> = None;
    for token in tokens {
        match (skipping, token) {
            (Some(until), Tok::End(name)) if name == until => skipping = None,
            // `</head>` may be left out: `<body>` ends the head as well.
            (Some("head"), Tok::Start { name, .. }) if name == "body" => skipping = None,
            (Some(_), _) => {}
            (None, Tok::Start { name, .. })
                if matches!(name.as_str(), "head" | "script" | "style" | "title" | "xml") =>
            {
                skipping = Some(name.as_str());
            }
            (None, Tok::Start { name, .. } | Tok::End(name))
                if matches!(name.as_str(), "html" | "body") => {}
            (None, token) => out.push(token.clone()),
        }
    }
    out
}

/// The body up to the first quote start, and which quote it was.
fn cut(tokens: &[Tok]) -> (Vec<Tok>, Option<QuoteStart>) {
    let mut body = body_tokens(tokens);
    for i in 0..body.len() {
        if let Some(quote) = quote_start(&body[i]) {
            body.truncate(i);
            return (body, Some(quote));
        }
        if let Tok::Text(text) = &body[i]
            && let Some(at) = marker_at(text)
        {
            let before = text[..at].to_string();
            body.truncate(i);
            body.push(Tok::Text(before));
            return (body, Some(QuoteStart::Marker));
        }
    }
    (body, None)
}

fn quote_start(token: &Tok) -> Option<QuoteStart> {
    let Tok::Start { name, .. } = token else {
        return None;
    };
    let id = token.attr("id").unwrap_or("");
    let style: String = token
        .attr("style")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if token.has_class("gmail_quote") || token.has_class("gmail_quote_container") {
        Some(QuoteStart::Gmail)
    } else if ["divRplyFwdMsg", "appendonsend", "stopSpelling"]
        .iter()
        .any(|known| id.eq_ignore_ascii_case(known))
        || (name == "div" && style.contains("border:none;border-top:solid"))
    {
        Some(QuoteStart::Outlook)
    } else if name == "blockquote"
        && token
            .attr("type")
            .is_some_and(|t| t.eq_ignore_ascii_case("cite"))
    {
        Some(QuoteStart::Cite)
    } else if token.has_class("moz-cite-prefix") {
        Some(QuoteStart::Thunderbird)
    } else if token.has_class("yahoo_quoted") {
        Some(QuoteStart::Yahoo)
    } else {
        None
    }
}

/// The byte offset of the line holding our reply marker in `text`.
fn marker_at(text: &str) -> Option<usize> {
    let start = text.find(MARKER_START)?;
    text[start..]
        .contains(MARKER_END)
        .then(|| text[..start].rfind('\n').map_or(0, |newline| newline + 1))
}

/// Removes the command lines (`#pending`, `#assign Bob`) the answer starts with, as
/// [`crate::agent::reply::read`] takes them off the text part.
fn drop_command_lines(mut tokens: Vec<Tok>) -> Vec<Tok> {
    for token in tokens.iter_mut() {
        let Tok::Text(text) = token else { continue };
        let mut rest = text.as_str();
        loop {
            let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
            let trimmed = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}');
            if trimmed.is_empty() && !after.is_empty() {
                rest = after;
            } else if !trimmed.is_empty() && command_word(trimmed).is_some() {
                rest = after;
                if rest.is_empty() {
                    break;
                }
            } else {
                break;
            }
        }
        let words_left = rest.chars().any(|c| !(c.is_whitespace() || c == '\u{a0}'));
        *text = rest.to_string();
        if words_left {
            break;
        }
    }
    tokens
}

/// Writes tokens back as HTML, escaping text and attribute values.
fn serialize(tokens: &[Tok]) -> String {
    let mut out = String::new();
    for token in tokens {
        match token {
            Tok::Start {
                name,
                attrs,
                self_closing,
            } => {
                out.push('<');
                out.push_str(name);
                let word = attrs
                    .iter()
                    .any(|(attr, value)| attr == "class" && value.starts_with("Mso"));
                if word && !attrs.iter().any(|(attr, _)| attr == "style") {
                    out.push_str(" style=\"margin-top:0;margin-bottom:0\"");
                }
                for (attr, value) in attrs {
                    // Word's paragraphs have no margins (its `MsoNormal` rule, which the
                    // sanitizer drops with the head): the answer keeps its spacing.
                    let value = match (word, attr.as_str()) {
                        (true, "style") => format!("margin-top:0;margin-bottom:0;{value}"),
                        _ => value.clone(),
                    };
                    out.push(' ');
                    out.push_str(attr);
                    out.push_str("=\"");
                    out.push_str(&value.replace('&', "&amp;").replace('"', "&quot;"));
                    out.push('"');
                }
                out.push_str(if *self_closing { "/>" } else { ">" });
            }
            Tok::End(name) => {
                out.push_str("</");
                out.push_str(name);
                out.push('>');
            }
            Tok::Text(text) => out.push_str(
                &text
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;"),
            ),
        }
    }
    out
}

/// The Content-IDs of the `cid:` images in `tokens`, percent-decoded (RFC 2392).
fn images(tokens: &[Tok]) -> BTreeSet<String> {
    tokens
        .iter()
        .filter(|t| matches!(t, Tok::Start { name, .. } if name == "img"))
        .filter_map(|t| t.attr("src"))
        .filter(|src| is_cid(src))
        .map(|src| percent_decode(src.trim()[4..].trim()))
        .filter(|cid| !cid.is_empty())
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text a reader sees in sanitized HTML: blocks on lines of their own, list items
/// numbered or bulleted, bold as `*bold*`, links followed by their address, images by
/// their description.
fn to_text(tokens: &[Tok]) -> String {
    let mut text = Text::default();
    let mut lists: Vec<Option<u32>> = Vec::new();
    let mut links: Vec<Option<(String, usize)>> = Vec::new();
    for token in tokens {
        match token {
            Tok::Text(words) => text.words(words),
            Tok::Start { name, .. } => match name.as_str() {
                "br" => text.out.push('\n'),
                "b" | "strong" => text.out.push('*'),
                "ul" => {
                    lists.push(None);
                    text.block();
                }
                "ol" => {
                    let start = token.attr("start").and_then(|s| s.parse().ok());
                    lists.push(Some(start.unwrap_or(1)));
                    text.block();
                }
                "li" => {
                    text.block();
                    let indent = "  ".repeat(lists.len().saturating_sub(1));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            text.out.push_str(&format!("{indent}{n}. "));
                            *n += 1;
                        }
                        _ => text.out.push_str(&format!("{indent}- ")),
                    }
                }
                "a" => links.push(
                    token
                        .attr("href")
                        .map(|href| (href.to_string(), text.out.len())),
                ),
                "img" => {
                    let alt = token.attr("alt").unwrap_or("").trim();
                    text.words(&match alt {
                        "" => "[image]".to_string(),
                        alt => format!("[image: {alt}]"),
                    });
                }
                "hr" => {
                    text.block();
                    text.out.push_str("----");
                    text.block();
                }
                name if is_block(name) => text.block(),
                _ => {}
            },
            Tok::End(name) => match name.as_str() {
                "b" | "strong" => text.out.push('*'),
                "ul" | "ol" => {
                    lists.pop();
                    text.block();
                }
                "a" => {
                    if let Some(Some((href, at))) = links.pop() {
                        let shown = text.out[at..].trim().to_string();
                        let address = href.strip_prefix("mailto:").unwrap_or(&href);
                        if !shown.contains(address) {
                            text.out.push_str(&format!(" <{href}>"));
                        }
                    }
                }
                name if is_block(name) => text.block(),
                _ => {}
            },
        }
    }
    text.finish()
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "blockquote"
            | "pre"
            | "table"
            | "tr"
            | "center"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "dl"
            | "dt"
            | "dd"
    )
}

#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    /// Adds words with HTML's whitespace rules: any run of spaces and newlines is one space.
    fn words(&mut self, words: &str) {
        for (i, word) in words
            .split(|c: char| c.is_whitespace() && c != '\u{a0}')
            .enumerate()
        {
            let at_line_start = self.out.is_empty() || self.out.ends_with('\n');
            if i > 0 && !at_line_start && !self.out.ends_with(' ') {
                self.out.push(' ');
            }
            self.out.push_str(&word.replace('\u{a0}', " "));
        }
    }

    /// Ends the current line, if it has anything on it.
    fn block(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn finish(self) -> String {
        let mut out = String::new();
        let mut blank = 0;
        for line in self.out.lines().map(str::trim_end) {
            blank = if line.trim().is_empty() { blank + 1 } else { 0 };
            if blank < 2 {
                out.push_str(if blank == 1 { "" } else { line });
                out.push('\n');
            }
        }
        out.trim().to_string()
    }
}

#[cfg(test)]
mod tests;
