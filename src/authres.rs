//! `Authentication-Results` (RFC 8601): did our own MTA authenticate the domain in a message's
//! From? Pure: the caller passes the header values top to bottom.
//!
//! Only the topmost header carrying our `authserv-id` counts. Headers of other authserv-ids
//! are someone else's claims, and one of ours further down was either added before the mail
//! reached our MTA or written by the sender to look like ours (an MTA prepends its header, so
//! the real one is above any forgery). The From domain is authenticated by a DMARC pass, or a
//! DKIM pass (`header.d`) or SPF pass (`smtp.mailfrom`) for a domain aligned with it in the
//! relaxed sense: one is the other or a subdomain of it.

/// What proved the From domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Dmarc,
    Dkim,
    Spf,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Dmarc => "dmarc",
            Method::Dkim => "dkim",
            Method::Spf => "spf",
        }
    }
}

/// Whether the From domain was authenticated by our MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(Method),
    /// Why not, for the agent told and the event.
    Fail(String),
}

/// One `method=result` statement with its properties (`header.d`, `smtp.mailfrom`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    method: String,
    result: String,
    properties: Vec<(String, String)>,
}

impl Statement {
    fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The domain a property names: `user@domain`, `@domain` or `domain`.
    fn domain(&self, name: &str) -> Option<&str> {
        let value = self.property(name)?;
        Some(value.rsplit_once('@').map_or(value, |(_, d)| d))
    }
}

/// Judges `headers` (the `Authentication-Results` values, top to bottom) for mail from
/// `from_domain`, trusting only `authserv_id`.
pub fn verdict(headers: &[String], authserv_id: &str, from_domain: &str) -> Verdict {
    let from_domain = from_domain.to_ascii_lowercase();
    let Some(statements) = headers.iter().find_map(|h| {
        let (id, statements) = parse(h)?;
        id.eq_ignore_ascii_case(authserv_id).then_some(statements)
    }) else {
        return Verdict::Fail(format!("no Authentication-Results from {authserv_id}"));
    };
    let passed = |method: &'static str| {
        statements
            .iter()
            .filter(move |s| s.method == method && s.result == "pass")
    };
    if passed("dmarc").any(|s| s.domain("header.from").is_none_or(|d| d == from_domain)) {
        return Verdict::Pass(Method::Dmarc);
    }
    let aligned_by = |method: &'static str, property: &str| {
        passed(method).any(|s| s.domain(property).is_some_and(|d| aligned(d, &from_domain)))
    };
    if aligned_by("dkim", "header.d") || aligned_by("dkim", "header.i") {
        return Verdict::Pass(Method::Dkim);
    }
    if aligned_by("spf", "smtp.mailfrom") {
        return Verdict::Pass(Method::Spf);
    }
    let seen: Vec<String> = statements
        .iter()
        .map(|s| format!("{}={}", s.method, s.result))
        .collect();
    Verdict::Fail(format!(
        "{authserv_id} reports no DMARC, DKIM or SPF pass aligned with {from_domain} ({})",
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    ))
}

/// Relaxed alignment: the same domain, or one a subdomain of the other, the shorter having
/// at least two labels (so `com` aligns with nothing).
fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.contains('.')
        && !short.starts_with('.')
        && (long == short || long.ends_with(&format!(".{short}")))
}

/// The authserv-id and statements of one header value; `None` when it has no authserv-id.
fn parse(value: &str) -> Option<(String, Vec<Statement>)> {
    let text = without_comments(value);
    let mut parts = split_outside_quotes(&text, ';').into_iter();
    let id = parts.next()?.split_whitespace().next()?.to_string();
    let statements = parts.filter_map(|part| statement(&part)).collect();
    Some((id, statements))
}

/// `dkim=pass header.d=example.com header.s=sel`; `None` for `none` and malformed parts.
fn statement(part: &str) -> Option<Statement> {
    let mut words = split_outside_quotes(&tight_equals(part), ' ')
        .into_iter()
        .filter(|w| !w.is_empty());
    let (method, result) = words.next()?.split_once('=').map(|(m, r)| {
        let method = m.split('/').next().unwrap_or(m);
        (method.to_ascii_lowercase(), r.to_ascii_lowercase())
    })?;
    let properties = words
        .filter_map(|w| {
            let (key, value) = w.split_once('=')?;
            Some((
                key.to_ascii_lowercase(),
                value.trim_matches('"').to_ascii_lowercase(),
            ))
        })
        .collect();
    Some(Statement {
        method,
        result,
        properties,
    })
}

/// Removes `(comments)`, nested ones included, outside quoted strings.
fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `a = b` → `a=b` (RFC 8601 allows whitespace around `=`).
fn tight_equals(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    let mut pending_space = false;
    for c in part.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && c != '=' && !out.ends_with('=') && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// Splits at `separator` outside quoted strings; each piece trimmed.
fn split_outside_quotes(text: &str, separator: char) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == separator && !quoted {
            pieces.push(std::mem::take(&mut piece).trim().to_string());
            continue;
        }
        if c == '"' {
            quoted = !quoted;
        }
        piece.push(c);
    }
    pieces.push(piece.trim().to_string());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "mx.example.com";

    fn check(headers: &[&str], from_domain: &str, expected: Result<Method, &str>) {
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let got = verdict(&headers, OURS, from_domain);
        match (&got, expected) {
            (Verdict::Pass(m), Ok(want)) => assert_eq!(*m, want, "{headers:?}"),
            (Verdict::Fail(why), Err(part)) => {
                assert!(why.contains(part), "{headers:?}: {why:?} lacks {part:?}")
            }
            _ => panic!("{headers:?} from {from_domain}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn passes() {
        check(
            &["mx.example.com; dmarc=pass header.from=example.com"],
            "example.com",
            Ok(Method::Dmarc),
        );
        check(
            &["mx.example.com; dmarc=pass"],
            "example.com",
            Ok(Method::Dmarc),
        );
        check(
            &[
                "MX.Example.COM 1; dkim=pass (good signature) header.d=mail.example.com header.s=s1; spf=fail",
            ],
            "example.com",
            Ok(Method::Dkim),
        );
        check(
            &["mx.example.com; dkim=pass header.i=@eu.example.com"],
            "example.com",
            Ok(Method::Dkim),
        );
        check(
            &["mx.example.com; spf = pass smtp.mailfrom = bounces@example.com"],
            "eu.example.com",
            Ok(Method::Spf),
        );
        check(
            &[
                r#"mx.example.com; dkim=fail reason="bad; very bad" header.d=example.com; spf=pass smtp.mailfrom="a@example.com""#,
            ],
            "example.com",
            Ok(Method::Spf),
        );
    }

    #[test]
    fn failures() {
        check(
            &[],
            "example.com",
            Err("no Authentication-Results from mx.example.com"),
        );
        check(&["mx.example.com; none"], "example.com", Err("(none)"));
        check(
            &[
                "mx.example.com; dmarc=fail header.from=example.com; dkim=none; spf=softfail smtp.mailfrom=example.com",
            ],
            "example.com",
            Err("dmarc=fail, dkim=none, spf=softfail"),
        );
        // Passes, but for another domain: not aligned.
        check(
            &[
                "mx.example.com; dkim=pass header.d=attacker.example; spf=pass smtp.mailfrom=x@attacker.example",
            ],
            "example.com",
            Err("dkim=pass"),
        );
        check(
            &["mx.example.com; dkim=pass header.d=notexample.com"],
            "example.com",
            Err("dkim=pass"),
        );
        check(
            &["mx.example.com; dmarc=pass header.from=attacker.example"],
            "example.com",
            Err("dmarc=pass"),
        );
        // A top-level domain aligns with nothing.
        check(
            &["mx.example.com; dkim=pass header.d=com"],
            "example.com",
            Err("dkim=pass"),
        );
        // A pass in a comment is no pass.
        check(
            &["mx.example.com; dkim=fail (dkim=pass header.d=example.com) header.d=example.com"],
            "example.com",
            Err("dkim=fail"),
        );
    }

    #[test]
    fn only_the_topmost_header_of_ours_counts() {
        // Another authserv-id's pass is ignored.
        check(
            &["mx.attacker.example; dmarc=pass header.from=example.com"],
            "example.com",
            Err("no Authentication-Results from"),
        );
        // Other ids above ours are skipped; ours is found below them.
        check(
            &[
                "relay.elsewhere.example; dmarc=fail",
                "mx.example.com; dmarc=pass header.from=example.com",
            ],
            "example.com",
            Ok(Method::Dmarc),
        );
        // The sender's spoof below our real header is ignored.
        check(
            &[
                "mx.example.com; dmarc=fail header.from=example.com; spf=fail smtp.mailfrom=example.com",
                "mx.example.com; dmarc=pass header.from=example.com",
            ],
            "example.com",
            Err("dmarc=fail"),
        );
        // A different id that merely starts like ours is not ours.
        check(
            &["mx.example.com.attacker.example; dmarc=pass"],
            "example.com",
            Err("no Authentication-Results from"),
        );
    }

    #[test]
    fn alignment_is_relaxed_but_not_loose() {
        for (a, b, expected) in [
            ("example.com", "example.com", true),
            ("mail.example.com", "example.com", true),
            ("example.com", "a.b.example.com", true),
            ("notexample.com", "example.com", false),
            ("example.com.attacker.test", "example.com", false),
            ("com", "example.com", false),
            (".com", "x.com", false),
        ] {
            assert_eq!(aligned(a, b), expected, "{a} ~ {b}");
        }
    }
}
