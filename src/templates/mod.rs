//! Message templates: one file per kind, language and part (`ack.ar.txt`), compiled once when
//! the configuration is loaded.
//!
//! The shipped set (see [`kinds`]) is compiled into the binary. `templates_dir` may
//! override any subset of it: a file there replaces the shipped file of the same name, every
//! other template stays the shipped one. A file whose name looks like a template but names an
//! unknown kind, language or part is an error (a typo must not be silently ignored).
//!
//! Every template is checked at load time: it must compile, render with its kind's sample
//! values (undefined variables are errors), and use the variables its kind requires. HTML
//! parts are auto-escaped (by minijinja, from the `.html` name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use minijinja::{AutoEscape, Environment, HtmlEscape, State, UndefinedBehavior, Value};

pub mod kinds;
pub mod locale;

use crate::language::Lang;
use kinds::{Audience, KINDS, Kind, MailKind, PARTS};

/// The marker line notifications carry; everything from it down is ours, not the agent's.
pub const MARKER_START: &str = "##-";
pub const MARKER_END: &str = "-##";

/// The line above which agents write, in `lang`; reading a reply (`agent::reply`) cuts everything
/// below it, whatever the words between the two ends.
pub fn marker(lang: Lang) -> String {
    let words = match lang {
        Lang::En => "Please type your reply above this line",
        Lang::Ar => "يُرجى كتابة ردّك فوق هذا السطر",
        Lang::El => "Γράψτε την απάντησή σας πάνω από αυτή τη γραμμή",
    };
    format!("{MARKER_START} {words} {MARKER_END}")
}

/// Compiled templates.
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from: `None` for the shipped one.
    origins: BTreeMap<String, Option<PathBuf>>,
    /// The literal lines of every template of mail to agents and the reply marker in every
    /// language: wording that must never reach a customer (the relay's leak check).
    boilerplate: Vec<String>,
}

impl std::fmt::Debug for Templates {
    /// The admin's files only (the compiled environment says nothing useful).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let overridden: BTreeMap<&str, &Path> = self
            .origins
            .iter()
            .filter_map(|(name, origin)| Some((name.as_str(), origin.as_deref()?)))
            .collect();
        f.debug_struct("Templates")
            .field("overridden", &overridden)
            .finish_non_exhaustive()
    }
}

/// A template that failed to load or render.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {reason}")]
pub struct TemplateError {
    pub name: String,
    pub reason: String,
}

/// The three parts of one rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedParts {
    /// The language the parts are in (English where a kind lacks the one asked for).
    pub lang: Lang,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Templates loaded from `templates_dir`: usable ones, plus warnings for the admin.
#[derive(Debug)]
pub struct Loaded {
    pub templates: Templates,
    pub warnings: Vec<String>,
}

impl Templates {
    /// The templates shipped with deskgate.
    pub fn builtin() -> Templates {
        match Templates::compile(shipped(), BTreeMap::new()) {
            Ok(templates) => templates,
            // The shipped templates are checked by `shipped_templates_are_complete_and_valid`.
            Err(errors) => unreachable!("shipped templates are broken: {errors:?}"),
        }
    }

    /// The shipped templates with those in each of `dirs` taking their place, later
    /// directories over earlier ones. Errors name the file.
    pub fn load(dirs: &[PathBuf]) -> Result<Loaded, Vec<String>> {
        let mut sources = shipped();
        let mut origins = BTreeMap::new();
        let mut errors = Vec::new();
        for dir in dirs {
            read_dir(dir, &mut sources, &mut origins, &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let warnings = half_overridden(&origins);
        let templates = Templates::compile(sources, origins.clone()).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    // A missing file is missing from the last directory.
                    let path = origins
                        .get(&e.name)
                        .cloned()
                        .or_else(|| dirs.last().map(|d| d.join(&e.name)));
                    let name = path.map_or(e.name.clone(), |p| p.display().to_string());
                    format!("{name}: {}", e.reason)
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Loaded {
            templates,
            warnings,
        })
    }

    fn compile(
        sources: BTreeMap<String, String>,
        origins: BTreeMap<String, PathBuf>,
    ) -> Result<Templates, Vec<TemplateError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("ltr", ltr);
        env.add_filter("isolate", isolate);
        locale::add_filters(&mut env);
        let mut errors = Vec::new();
        let names: Vec<String> = sources.keys().cloned().collect();
        for (name, source) in sources {
            if let Err(err) = env.add_template_owned(name.clone(), source) {
                errors.push(TemplateError {
                    name,
                    reason: describe(&err),
                });
            }
        }
        let origins = names
            .into_iter()
            .map(|name| {
                let origin = origins.get(&name).cloned();
                (name, origin)
            })
            .collect();
        let mut templates = Templates {
            env,
            origins,
            boilerplate: Vec::new(),
        };
        templates.boilerplate = templates.agent_wording();
        for kind in KINDS {
            for lang in Lang::ALL {
                let names = PARTS.map(|part| file_name(kind.name(), lang, part));
                let present = names
                    .iter()
                    .filter(|n| templates.origins.contains_key(*n))
                    .count();
                if present == 0 && !kind.required_languages().contains(&lang) {
                    continue;
                }
                for (name, required) in names.into_iter().zip([
                    kind.subject_requires,
                    kind.body_requires,
                    kind.body_requires,
                ]) {
                    if !templates.origins.contains_key(&name) {
                        errors.push(TemplateError {
                            reason: format!(
                                "missing: `{}` mail must exist in {}, each with all of {}",
                                kind.name(),
                                language_list(kind.required_languages()),
                                PARTS.join(", ")
                            ),
                            name,
                        });
                    } else if let Err(err) = templates.check(&name, kind, lang, required) {
                        errors.push(err);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    /// Renders `name` with `kind`'s sample values and checks it uses `required`.
    fn check(
        &self,
        name: &str,
        kind: &Kind,
        lang: Lang,
        required: &[&str],
    ) -> Result<(), TemplateError> {
        let fail = |reason: String| TemplateError {
            name: name.to_string(),
            reason,
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| fail(describe(&e)))?;
        let used = template.undeclared_variables(false);
        let missing: Vec<String> = required
            .iter()
            .filter(|v| !used.contains(**v))
            .map(|v| format!("{{{{ {v} }}}}"))
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!(
                "does not use {}, which every `{}` mail must show",
                missing.join(" and "),
                kind.name()
            )));
        }
        self.render_one(name, &sample_context(kind, lang, &TimeZone::UTC))
            .map(drop)
    }

    fn render_one(&self, name: &str, context: &Value) -> Result<String, TemplateError> {
        let fail = |err: minijinja::Error| TemplateError {
            name: name.to_string(),
            reason: describe(&err),
        };
        self.env
            .get_template(name)
            .map_err(fail)?
            .render(context)
            .map_err(fail)
    }

    /// The language `kind` is written in for a reader of `lang`: `lang`, or English when an
    /// agent-facing kind has no `lang` version.
    pub fn language_for(&self, kind: MailKind, lang: Lang) -> Lang {
        if self
            .origins
            .contains_key(&file_name(kind.template(), lang, "txt"))
        {
            lang
        } else {
            Lang::En
        }
    }

    /// Renders the subject, text and HTML parts of `kind` in `lang` (see
    /// [`Templates::language_for`]). `lang` and `dir` are added to `context`.
    pub fn render_all(
        &self,
        kind: MailKind,
        lang: Lang,
        context: &Value,
    ) -> Result<RenderedParts, TemplateError> {
        let lang = self.language_for(kind, lang);
        let context = minijinja::context! {
            lang => lang.code(),
            dir => if lang.is_rtl() { "rtl" } else { "ltr" },
            ..context.clone()
        };
        let subject = self.render_one(&file_name(kind.template(), lang, "subject"), &context)?;
        Ok(RenderedParts {
            lang,
            subject: crate::model::clean_header_text(&subject),
            text: self.render_one(&file_name(kind.template(), lang, "txt"), &context)? + "\n",
            html: self.render_one(&file_name(kind.template(), lang, "html"), &context)? + "\n",
        })
    }

    /// The wording of deskgate's mail to agents (see the field).
    pub fn boilerplate(&self) -> &[String] {
        &self.boilerplate
    }

    fn agent_wording(&self) -> Vec<String> {
        let mut lines: Vec<String> = Lang::ALL.iter().map(|lang| marker(*lang)).collect();
        for kind in KINDS.iter().filter(|k| k.audience == Audience::Agent) {
            for lang in Lang::ALL {
                for part in ["txt", "html"] {
                    if let Ok(template) = self.env.get_template(&file_name(kind.name(), lang, part))
                    {
                        lines.extend(literal_lines(template.source(), part == "html"));
                    }
                }
            }
        }
        lines
    }

    /// Every template in use, with the file it came from (`None`: shipped).
    pub fn origins(&self) -> impl Iterator<Item = (&str, Option<&Path>)> {
        self.origins
            .iter()
            .map(|(name, origin)| (name.as_str(), origin.as_deref()))
    }
}

/// The context a kind's templates are checked and previewed with; times in `tz`.
pub fn sample_context(kind: &Kind, lang: Lang, tz: &TimeZone) -> Value {
    minijinja::value::merge_maps([
        kinds::common_sample(lang),
        (kind.sample)(lang, tz),
        minijinja::context! {
            lang => lang.code(),
            dir => if lang.is_rtl() { "rtl" } else { "ltr" },
        },
    ])
}

fn shipped() -> BTreeMap<String, String> {
    KINDS
        .iter()
        .flat_map(|kind| kind.shipped.iter())
        .map(|(name, source)| (name.to_string(), source.to_string()))
        .collect()
}

/// The lines of text a template writes whatever its values: its source without `{{ … }}`,
/// `{% … %}` and `{# … #}` (each ends a line), and for HTML without tags (each ends a line),
/// with the common entities decoded.
fn literal_lines(source: &str, html: bool) -> Vec<String> {
    let mut text = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find('{') {
        let close = match rest[open..].chars().nth(1) {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                text.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
                continue;
            }
        };
        text.push_str(&rest[..open]);
        text.push('\n');
        rest = rest[open..]
            .find(close)
            .map_or("", |end| &rest[open + end + close.len()..]);
    }
    text.push_str(rest);
    if html {
        let mut plain = String::with_capacity(text.len());
        let mut in_tag = false;
        for c in text.chars() {
            match (c, in_tag) {
                ('<', _) => in_tag = true,
                ('>', true) => {
                    in_tag = false;
                    plain.push('\n');
                }
                (_, true) => {}
                (c, false) => plain.push(c),
            }
        }
        text = [
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", "\""),
            ("&#39;", "'"),
            ("&amp;", "&"),
        ]
        .iter()
        .fold(plain, |t, (entity, c)| t.replace(entity, c));
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn file_name(kind: &str, lang: Lang, part: &str) -> String {
    format!("{kind}.{}.{part}", lang.code())
}

fn language_list(langs: &[Lang]) -> String {
    langs
        .iter()
        .map(|l| l.code())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `KIND.LANG.PART` with all three known.
fn check_name(name: &str) -> Result<(), String> {
    let pieces: Vec<&str> = name.split('.').collect();
    let [kind, lang, part] = pieces[..] else {
        return Err(format!(
            "not a template name; templates are named KIND.LANG.PART, e.g. ack.en.txt (kinds: {}; languages: {}; parts: {})",
            kinds::names(),
            Lang::list(),
            PARTS.join(", ")
        ));
    };
    if kinds::kind(kind).is_none() {
        return Err(format!(
            "`{kind}` is not a kind of mail deskgate writes (kinds: {})",
            kinds::names()
        ));
    }
    if Lang::parse(lang).is_none_or(|l| l.code() != lang) {
        return Err(format!(
            "`{lang}` is not a language deskgate has templates for (languages: {})",
            Lang::list()
        ));
    }
    debug_assert!(PARTS.contains(&part), "filtered by the caller");
    Ok(())
}

/// Reads the templates in `dir` into `sources`, each replacing the one of the same name.
fn read_dir(
    dir: &Path,
    sources: &mut BTreeMap<String, String>,
    origins: &mut BTreeMap<String, PathBuf>,
    errors: &mut Vec<String>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(format!(
                "{}: cannot read the directory: {err}",
                dir.display()
            ));
            return;
        }
    };
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(err) => {
                errors.push(format!("{}: cannot list it: {err}", dir.display()));
                continue;
            }
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !PARTS.iter().any(|part| name.ends_with(&format!(".{part}"))) {
            continue; // README, editor backups, ...
        }
        if let Err(reason) = check_name(name) {
            errors.push(format!("{}: {reason}", path.display()));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                sources.insert(name.to_string(), source);
                origins.insert(name.to_string(), path.clone());
            }
            Err(err) => errors.push(format!("{}: cannot read it: {err}", path.display())),
        }
    }
}

/// A warning for each kind and language whose parts come from different places (shipped, or
/// different directories): customers would read different wording in the text and the HTML.
fn half_overridden(origins: &BTreeMap<String, PathBuf>) -> Vec<String> {
    let mut warnings = Vec::new();
    for kind in KINDS {
        for lang in Lang::ALL {
            let names = PARTS.map(|part| file_name(kind.name(), lang, part));
            let from: Vec<Option<&Path>> = names
                .iter()
                .map(|n| origins.get(n).and_then(|p| p.parent()))
                .collect();
            if from.iter().all(|f| *f == from[0]) {
                continue;
            }
            let parts: Vec<String> = names
                .iter()
                .zip(&from)
                .map(|(name, dir)| match dir {
                    Some(dir) => format!("{name} from {}", dir.display()),
                    None => format!("{name} shipped"),
                })
                .collect();
            warnings.push(format!(
                "templates: the parts of `{}` in {lang} come from different places ({}); customers may see different wording in each part",
                kind.name(),
                parts.join(", ")
            ));
        }
    }
    warnings
}

/// `{{ tag|ltr }}`: a left-to-right run that stays whole inside right-to-left text. Text parts
/// get Unicode isolates (LRI … PDI, invisible where unsupported), HTML gets `<bdi dir="ltr">`,
/// subjects a left-to-right mark on each side (LRM … LRM), which the subject lines of mail
/// clients honour more widely than isolates; `[#42]` stays whole for threading.
fn ltr(state: &State, value: String) -> Value {
    if state.name().ends_with(".subject") {
        return Value::from(format!("\u{200E}{value}\u{200E}"));
    }
    wrap(state, &value, "\u{2066}", "<bdi dir=\"ltr\">")
}

/// `{{ subject|isolate }}`: text of unknown direction (a customer's subject or name) that must
/// not reorder its surroundings: FSI … PDI in text, `<bdi>` in HTML.
fn isolate(state: &State, value: String) -> Value {
    wrap(state, &value, "\u{2068}", "<bdi>")
}

fn wrap(state: &State, value: &str, isolate_start: &str, html_start: &str) -> Value {
    if matches!(state.auto_escape(), AutoEscape::Html) {
        Value::from_safe_string(format!("{html_start}{}</bdi>", HtmlEscape(value)))
    } else {
        Value::from(format!("{isolate_start}{value}\u{2069}"))
    }
}

fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!(
            "line {line}: {}",
            err.detail().unwrap_or(&err.kind().to_string())
        ),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_wording_is_the_literal_text_of_mail_to_agents_only() {
        let templates = Templates::builtin();
        let wording = templates.boilerplate();
        for phrase in [
            "(internal, not seen by the customer)",
            "The whole conversation, oldest first:",
            "##- Please type your reply above this line -##",
            "Commands go on the first lines: #note (internal, never sent to the customer), #pending,",
        ] {
            assert!(wording.iter().any(|l| l.contains(phrase)), "{phrase}");
        }
        for line in wording {
            assert!(
                !line.contains("{{") && !line.contains("{%") && !line.contains("<p"),
                "{line}"
            );
        }
        // Customer-facing wording (the acknowledgement's) is not in it.
        assert!(
            !wording
                .iter()
                .any(|l| l.contains("Your message has reached us"))
        );
        assert_eq!(
            literal_lines("<p>A {{ x }} b &lt;c&gt;{% if y %}\nd{# note #}e</p>", true),
            vec!["A", "b <c>", "d", "e"]
        );
    }

    #[test]
    fn shipped_templates_are_complete_and_valid() {
        let templates = Templates::compile(shipped(), BTreeMap::new()).unwrap();
        for kind in KINDS {
            for lang in kind.required_languages() {
                for part in PARTS {
                    let name = file_name(kind.name(), *lang, part);
                    assert!(templates.origins.contains_key(&name), "{name} is shipped");
                }
            }
        }
    }

    #[test]
    fn admin_templates_override_a_subset() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Templates::load(&[dir.path().to_path_buf()]).unwrap();
        assert!(loaded.warnings.is_empty());
        assert!(
            loaded
                .templates
                .origins()
                .all(|(_, origin)| origin.is_none())
        );

        std::fs::write(dir.path().join("README"), "not a template").unwrap();
        std::fs::write(
            dir.path().join("ack.el.txt"),
            "Αίτημα {{ tag }}, απάντηση έως {{ due }}.",
        )
        .unwrap();
        let loaded = Templates::load(&[dir.path().to_path_buf()]).unwrap();
        let parts = loaded
            .templates
            .render_all(
                MailKind::Ack,
                Lang::El,
                &sample_context(&KINDS[0], Lang::El, &TimeZone::UTC),
            )
            .unwrap();
        assert!(
            parts
                .text
                .starts_with("Αίτημα [#42], απάντηση έως την Τρίτη"),
            "{}",
            parts.text
        );
        assert!(
            parts.html.contains("lang=\"el\""),
            "the HTML is still the shipped one"
        );
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("ack.el.txt from"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn admin_mistakes_are_reported_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ack.de.txt"), "Hallo").unwrap();
        std::fs::write(dir.path().join("akc.en.txt"), "Hello").unwrap();
        let mut errors = Templates::load(&[dir.path().to_path_buf()]).unwrap_err();
        errors.sort();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].ends_with("ack.de.txt: `de` is not a language deskgate has templates for (languages: en, ar, el)"), "{errors:?}");
        assert!(
            errors[1].contains("akc.en.txt: `akc` is not a kind"),
            "{errors:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ack.ar.txt"),
            "مرحبا {{ custmer_name }} {{ tag }} {{ due }}",
        )
        .unwrap();
        std::fs::write(dir.path().join("ack.en.html"), "<p>{{ tag }}</p>").unwrap();
        std::fs::write(dir.path().join("ack.el.subject"), "{{ subject }}").unwrap();
        let mut errors = Templates::load(&[dir.path().to_path_buf()]).unwrap_err();
        errors.sort();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("ack.ar.txt: line 1: "), "{errors:?}");
        assert!(errors[0].contains("undefined"), "{errors:?}");
        assert!(
            errors[1].contains("ack.el.subject: does not use {{ tag }}"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("ack.en.html: does not use {{ due }}"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_missing_language_is_reported() {
        let mut sources = shipped();
        sources.remove("ack.ar.html");
        let errors = Templates::compile(sources, BTreeMap::new()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].name, "ack.ar.html");
        assert!(
            errors[0]
                .reason
                .contains("must exist in en, ar, el, each with all of subject, txt, html"),
            "{errors:?}"
        );
    }

    #[test]
    fn isolates_in_text_and_bdi_in_html() {
        let mut env = Environment::new();
        env.add_filter("ltr", ltr);
        env.add_filter("isolate", isolate);
        env.add_template("t.txt", "{{ tag|ltr }} {{ s|isolate }}")
            .unwrap();
        env.add_template("t.html", "{{ tag|ltr }} {{ s|isolate }}")
            .unwrap();
        env.add_template("t.subject", "رد: {{ tag|ltr }}").unwrap();
        let ctx = minijinja::context! { tag => "[#7]", s => "<b>" };
        assert_eq!(
            env.get_template("t.txt").unwrap().render(&ctx).unwrap(),
            "\u{2066}[#7]\u{2069} \u{2068}<b>\u{2069}"
        );
        assert_eq!(
            env.get_template("t.html").unwrap().render(&ctx).unwrap(),
            "<bdi dir=\"ltr\">[#7]</bdi> <bdi>&lt;b&gt;</bdi>"
        );
        assert_eq!(
            env.get_template("t.subject").unwrap().render(&ctx).unwrap(),
            "رد: \u{200E}[#7]\u{200E}"
        );
    }
}
