//! Message templates: one file per kind, language and part (`ack.en.subject`, `ack.en.txt`,
//! `ack.en.html`), compiled once when the configuration is loaded.
//!
//! The shipped set is compiled into the binary; `templates_dir` replaces it with the admin's
//! files, which must provide every template the shipped set has. HTML parts are auto-escaped
//! (by minijinja, from the `.html` name); undefined variables are errors, found at load time
//! by rendering every template with sample values.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, Value};

/// The shipped templates: (file name, source).
const BUILTIN: [(&str, &str); 15] = [
    (
        "ack.en.subject",
        include_str!("../../templates/ack.en.subject"),
    ),
    ("ack.en.txt", include_str!("../../templates/ack.en.txt")),
    ("ack.en.html", include_str!("../../templates/ack.en.html")),
    (
        "notification.en.subject",
        include_str!("../../templates/notification.en.subject"),
    ),
    (
        "notification.en.txt",
        include_str!("../../templates/notification.en.txt"),
    ),
    (
        "notification.en.html",
        include_str!("../../templates/notification.en.html"),
    ),
    (
        "reply.en.subject",
        include_str!("../../templates/reply.en.subject"),
    ),
    ("reply.en.txt", include_str!("../../templates/reply.en.txt")),
    (
        "reply.en.html",
        include_str!("../../templates/reply.en.html"),
    ),
    (
        "note.en.subject",
        include_str!("../../templates/note.en.subject"),
    ),
    ("note.en.txt", include_str!("../../templates/note.en.txt")),
    ("note.en.html", include_str!("../../templates/note.en.html")),
    (
        "notice.en.subject",
        include_str!("../../templates/notice.en.subject"),
    ),
    (
        "notice.en.txt",
        include_str!("../../templates/notice.en.txt"),
    ),
    (
        "notice.en.html",
        include_str!("../../templates/notice.en.html"),
    ),
];

/// Compiled templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

/// A template that failed to render.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {reason}")]
pub struct TemplateError {
    pub name: String,
    pub reason: String,
}

/// The three parts of one rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedParts {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Templates {
    /// The templates shipped with deskgate.
    pub fn builtin() -> Templates {
        let sources = BUILTIN.map(|(name, source)| (name.to_string(), source.to_string()));
        match Templates::compile(sources.to_vec()) {
            Ok(templates) => templates,
            // The shipped templates are checked by `builtin_templates_compile` below.
            Err(errors) => unreachable!("shipped templates are broken: {errors:?}"),
        }
    }

    /// Loads every template the shipped set has from `dir`; lists everything missing or broken.
    pub fn load(dir: &Path) -> Result<Templates, Vec<String>> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for (name, _) in BUILTIN {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(source) => sources.push((name.to_string(), source)),
                Err(err) => errors.push(format!("{}: cannot read it: {err}", path.display())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Templates::compile(sources).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| format!("{}: {}", dir.join(&e.name).display(), e.reason))
                .collect()
        })
    }

    fn compile(sources: Vec<(String, String)>) -> Result<Templates, Vec<TemplateError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut errors = Vec::new();
        for (name, source) in sources {
            if let Err(err) = env.add_template_owned(name.clone(), source) {
                errors.push(TemplateError {
                    name,
                    reason: describe(&err),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let templates = Templates { env };
        let sample = minijinja::context! {
            ticket => 42, tag => "[#42]", subject => "Sample subject",
            customer_name => "Sample Customer", support_name => "Support",
            support_address => "support@example.com",
            due => "Tuesday 24 November 2026, 10:00 UTC", due_iso => "2026-11-24T10:00:00Z",
            marker => "##- Please type your reply above this line -##",
            new_ticket => true, customer_address => "customer@example.net",
            status => "open", priority => "normal", assigned => "agent@example.com",
            waiting => "2 h 5 min", message => "My printer is on fire.",
            attachments => vec!["photo.jpg"],
            history => vec![minijinja::context! {
                tag => "[#41]", subject => "Toner", status => "closed", opened => "2026-10-01",
            }],
            body => "Please switch it off.", agent_name => "Alice Agent",
            problem => "commands", errors => vec!["`#frob`: unknown command"],
            reason => "the reply key is not valid",
        };
        for (name, _) in BUILTIN {
            if let Err(err) = templates.render_one(name, &sample) {
                errors.push(err);
            }
        }
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
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

    /// Renders the subject, text and HTML parts of `kind` in `lang`.
    pub fn render_all(
        &self,
        kind: &str,
        lang: &str,
        context: &Value,
    ) -> Result<RenderedParts, TemplateError> {
        let subject = self.render_one(&format!("{kind}.{lang}.subject"), context)?;
        Ok(RenderedParts {
            subject: crate::model::clean_header_text(&subject),
            text: self.render_one(&format!("{kind}.{lang}.txt"), context)? + "\n",
            html: self.render_one(&format!("{kind}.{lang}.html"), context)? + "\n",
        })
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
    fn builtin_templates_compile() {
        let sources = BUILTIN
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .to_vec();
        assert!(Templates::compile(sources).is_ok());
    }

    #[test]
    fn admin_templates_are_checked_for_missing_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let errors = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errors.len(), BUILTIN.len(), "{errors:?}");
        assert!(
            errors[0].contains("ack.en.subject: cannot read it"),
            "{errors:?}"
        );

        for (name, source) in BUILTIN {
            std::fs::write(dir.path().join(name), source).unwrap();
        }
        assert!(Templates::load(dir.path()).is_ok());

        std::fs::write(dir.path().join("ack.en.txt"), "Hi {{ custmer_name }}").unwrap();
        let errors = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("ack.en.txt: line 1: "), "{errors:?}");
        assert!(errors[0].contains("undefined"), "{errors:?}");
    }
}
