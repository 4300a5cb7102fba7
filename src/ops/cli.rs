//! The command line. Each doc comment below is the help text: first line short (`-h`),
//! the rest long (`--help`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use super::logging::{self, LogFormat};
use super::terminal::Terminal;
use super::{check, daemon, deliver, oauth, report, show, stats};
use crate::catalog::EventKind;
use crate::config::{self, Config};
use crate::ingest;
use crate::kpi::{Ledger, Period, When};
use crate::language::Lang;
use crate::model::{QuarantineId, TicketId, TicketStatus};
use crate::render::{self, kinds, kinds::Kind};
use crate::store::{self, QuarantineStatus, Store};

/// deskgate: an email-support gateway.
///
/// deskgate watches IMAP support mailboxes, turns every customer email into a ticket in
/// SQLite, and acknowledges it over SMTP with the ticket number and a realistic promise.
///
/// Exit codes: 0 success; 1 the thing asked for does not exist (e.g. an unknown ticket) or
/// a server could not be reached by `check-config --connect`; 2 an error (invalid
/// configuration, unreadable database, ...).
#[derive(Debug, Parser)]
#[command(name = "deskgate", version, max_term_width = 100)]
pub struct Cli {
    /// Configuration file.
    ///
    /// Defaults to /etc/deskgate/deskgate.toml. Relative paths inside the file are resolved
    /// against the file's directory.
    #[arg(long, short = 'c', global = true, env = "DESKGATE_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Log format: auto (the journal under systemd, else text), text, json or journal.
    ///
    /// The log filter is read from DESKGATE_LOG (e.g. "deskgate=debug"), default "info".
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch every mailbox and send the outbox.
    ///
    /// Runs in the foreground until SIGTERM or SIGINT, then stops fetching, lets the
    /// transaction in flight commit, and exits 0 within 10 seconds. Tells systemd READY=1
    /// (Type=notify) once the database is open and the configuration valid.
    Run,

    /// Ingest one message from standard input (for the MTA: a Postfix pipe transport).
    ///
    /// The message takes the daemon's path (classify, thread, store, acknowledge) into the
    /// mailbox NAME, without IMAP. Exit 0 once it is committed (or quarantined, or a
    /// duplicate); exit 75 (EX_TEMPFAIL) when nothing was committed but a retry may work
    /// (database busy or locked, disk full, configuration invalid), so the MTA keeps the
    /// message and tries again. The running daemon sends the acknowledgement within seconds.
    Ingest {
        /// The [[mailbox]] the message was delivered to.
        #[arg(long, value_name = "NAME")]
        mailbox: String,
    },

    /// Write the man page or shell completions to standard output (for packagers).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },

    /// Check the configuration file and report every problem in it.
    ///
    /// Prints each problem as FILE:LINE: what is wrong, and exits 2 if there is any. With
    /// --connect it also logs in to every IMAP mailbox and the SMTP server and says which
    /// failed (exit 1).
    CheckConfig {
        /// Also connect and log in to every configured server.
        #[arg(long)]
        connect: bool,
    },

    /// List tickets, newest first.
    Tickets {
        /// Only tickets in this status: open, pending, resolved or closed.
        #[arg(long, value_parser = parse_status)]
        status: Option<TicketStatus>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Show one ticket: its whole transcript in order, then its events.
    Ticket {
        /// The ticket number, as in the subject tag [#N].
        number: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// List the outbox: queued, sent and failed mail, newest first.
    ///
    /// Mail a delivery report said did not arrive shows BOUNCED and what the report said.
    Outbox {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// List recent events, newest first: what deskgate decided and why.
    ///
    /// Useful kinds: sender.limited (a sender went past a per-sender limit), bounce.
    /// (bounce.received, bounce.delayed), message.quarantined, message.loop_dropped,
    /// ack.withheld, deadline. (deadline.warned, deadline.breached, deadline.met,
    /// deadline.paused), escalation.sent, survey. (survey.sent, survey.answered),
    /// ticket.status, ticket.reminded.
    Events {
        /// Only events whose kind starts with this, e.g. "sender." or "bounce.".
        #[arg(long, default_value = "")]
        kind: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Mail put aside instead of processed: list, show, release or delete it.
    ///
    /// A message is quarantined when it is not a message, has no usable sender, is beyond
    /// what a person sends (huge headers, a mail loop, absurd nesting), is larger than
    /// policy.max_message_size_mb, or could not be stored.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },

    /// Show what deskgate remembers about a customer: name, language, their tickets.
    Contact {
        /// The customer's email address.
        address: String,
        /// Show at most this many tickets, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Support figures for a period: tickets, first response, deadlines, backlog, satisfaction.
    ///
    /// Tickets opened and resolved; first-response time (median, 90th percentile); the share
    /// of deadlines met in time; warnings, breaches and escalations per level; the backlog of
    /// open tickets by age at the period's end; satisfaction average and survey response
    /// rate; all of it per language too. Computed from the recorded events only, so a past
    /// period shows the same figures whenever it is asked for. README.md ("Support figures")
    /// defines each figure and the JSON fields.
    Stats {
        #[command(flatten)]
        period: PeriodArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// List the instances running on this database and the mailboxes each fetches.
    ///
    /// Several deskgate instances may share one PostgreSQL database; each mailbox is fetched
    /// by one of them at a time (its lease), and another takes it over within 15 seconds
    /// when that one stops. Instances not heard from for 30 seconds are not listed. With
    /// SQLite there is one instance: the daemon, while it runs.
    Instances {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Write the support figures as one self-contained HTML page with charts.
    ///
    /// Tickets per day, the first-response time distribution, the share answered within
    /// policy per week, the backlog by age, satisfaction and volume per language, with the
    /// headline numbers of `deskgate stats` for the same period. No external scripts, fonts
    /// or images: the file can be mailed or opened offline.
    Report {
        /// The HTML file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        #[command(flatten)]
        period: PeriodArgs,
    },

    /// Work with the message templates.
    #[command(subcommand)]
    Template(TemplateCommand),

    /// OAuth 2.0 logins (Microsoft 365, Google Workspace) for mailboxes and SMTP.
    #[command(subcommand)]
    Oauth(OauthCommand),

    /// Copy the database to FILE while the daemon runs (SQLite's online backup API).
    ///
    /// The copy is one consistent state of the database, checked before it is named FILE.
    /// FILE must not exist. Progress is shown on a terminal. README "Backups" says how to
    /// restore it and what a restore means for mail received after the backup.
    Backup {
        /// Where to write the copy.
        file: PathBuf,
    },

    /// Copy a SQLite database into an empty PostgreSQL one, to move a desk to PostgreSQL.
    ///
    /// Every ticket, message (raw bytes included), deadline, step taken, outbox row, event,
    /// contact, quarantined message and OAuth grant is copied with its number, so the desk
    /// goes on where it stopped: no acknowledgement, escalation or survey is sent again and
    /// new tickets are numbered after the last one. Stop the daemon first.
    ///
    /// The target is --to, else the configured `database`, which must then be PostgreSQL.
    /// Its schema is created if needed. A target with a row in any table is refused. The copy
    /// is one transaction whose row counts are checked before it commits: after an error the
    /// target is as empty as before. Progress is shown on a terminal.
    MigrateStore {
        /// The SQLite database to copy (opened read-only).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL database to fill, postgres://USER@HOST[:PORT]/DB[?sslmode=...]
        /// [default: the configured database].
        ///
        /// TLS is checked against the configuration's ca_file (else the public roots), as
        /// the daemon does.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// A file whose first line is the password for --to [default: the configuration's
        /// database_password_file].
        #[arg(long, value_name = "FILE", requires = "to")]
        password_file: Option<PathBuf>,
    },
}

/// The period and tickets `stats` and `report` look at.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// Start of the period [default: 30d, i.e. 30 days ago].
    ///
    /// A date (2026-11-01: the start of that day in the support time zone), a local time
    /// (2026-11-01T09:30), a timestamp (2026-11-01T09:30:00Z or with an offset) or a
    /// duration back from now (7d, 12h, 1w).
    #[arg(long, value_name = "D", default_value = "30d", hide_default_value = true, value_parser = When::parse)]
    pub since: When,
    /// End of the period, itself excluded [default: now]; the same forms as --since.
    ///
    /// `--since 2026-11-01 --until 2026-12-01` is November.
    #[arg(long, value_name = "D", value_parser = When::parse)]
    pub until: Option<When>,
    /// Only the tickets of this mailbox (a [[mailbox]] name, its folders included).
    #[arg(long, value_name = "M")]
    pub mailbox: Option<String>,
}

impl PeriodArgs {
    /// The period asked for, in the support time zone `tz`.
    fn resolve(&self, tz: &jiff::tz::TimeZone) -> anyhow::Result<Period> {
        // Milliseconds, as events are stored: the period prints and compares without noise.
        let now = jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond())?;
        let since = self.since.resolve(tz, now).map_err(anyhow::Error::msg)?;
        let until = match self.until {
            Some(until) => until.resolve(tz, now).map_err(anyhow::Error::msg)?,
            None => now,
        };
        Period::new(since, until).map_err(anyhow::Error::msg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// deskgate(1) in roff.
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List every template in use: kind, language, part, and the file it comes from.
    List,

    /// Render one kind of mail with sample data, as the configured support desk would send it.
    ///
    /// Prints the subject and the plain-text part, or with --html the HTML part. Uses the
    /// templates of the configuration (templates_dir included), its support name, tag prefix
    /// and time zone.
    Preview {
        /// The kind of mail, e.g. ack (`deskgate template list` shows them all).
        #[arg(value_parser = parse_kind)]
        kind: &'static Kind,
        /// The language: en, ar or el.
        #[arg(long, default_value = "en", value_parser = parse_lang)]
        lang: Lang,
        /// Print the HTML part instead of the subject and text.
        #[arg(long)]
        html: bool,
    },
}

fn parse_kind(text: &str) -> Result<&'static Kind, String> {
    kinds::kind(text)
        .ok_or_else(|| format!("`{text}` is not a kind of mail; kinds: {}", kinds::names()))
}

fn parse_lang(text: &str) -> Result<Lang, String> {
    Lang::parse(text)
        .filter(|l| l.code() == text)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a language deskgate has templates for; use one of {}",
                Lang::list()
            )
        })
}

#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// List quarantined messages still held, newest first.
    List {
        /// Also list released and deleted entries.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry: why it was quarantined, then the message as received.
    Show {
        /// The entry's number, as `quarantine list` shows it.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Process the message the normal way now: a ticket, and an acknowledgement when its
    /// sender is a customer.
    ///
    /// The running daemon sends a queued acknowledgement within a minute.
    Release {
        /// The entry's number.
        id: i64,
    },
    /// Drop the message's bytes; the entry stays listed (with --all) as a record.
    Delete {
        /// The entry's number.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Sign in once in a browser (device login) and store the refresh token.
    ///
    /// For a mailbox or SMTP login with auth = "xoauth2" or "oauthbearer" and a
    /// refresh-token grant. Prints a URL and a code: open the URL on any device, enter the
    /// code and sign in as the mailbox's user. deskgate waits, then stores the refresh token
    /// in the database (the daemon uses it from its next login attempt) and checks that it
    /// yields an access token. Needs write access to the database.
    Login {
        /// The [[mailbox]] name to sign in for.
        #[arg(long, required_unless_present = "smtp", conflicts_with = "smtp")]
        mailbox: Option<String>,
        /// Sign in for the [smtp] login instead.
        #[arg(long)]
        smtp: bool,
    },
}

fn parse_status(text: &str) -> Result<TicketStatus, String> {
    TicketStatus::parse(text)
        .ok_or_else(|| format!("`{text}` is not a status; use open, pending, resolved or closed"))
}

/// Runs the command line; the binary's `main` is this plus printing the error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match dispatch(cli) {
        Ok(code) => code,
        // `deskgate stats | head`: the reader has what it wanted (ripgrep does the same).
        Err(err) if broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("deskgate: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn generate(what: Generated, out: &mut impl Write) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let shell = match what {
        Generated::Man => {
            clap_mangen::Man::new(command).render(out)?;
            return Ok(());
        }
        Generated::Bash => clap_complete::Shell::Bash,
        Generated::Zsh => clap_complete::Shell::Zsh,
        Generated::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "deskgate", out);
    Ok(())
}

/// The error and its causes on one line, each cause once (many of our errors already quote
/// their cause in their own message).
fn one_line(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// Runs the subcommand: those that need no configuration first, then the others with the
/// loaded configuration and standard output.
fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        // Exit codes for the MTA, configuration errors included.
        Command::Ingest { mailbox } => return Ok(deliver::run(&cli.config, &mailbox)),
        Command::Generate { what } => {
            generate(what, &mut std::io::stdout().lock())?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let config = Config::load(&cli.config)?;
    let mut out = output(cli.command.json());
    let code = match cli.command {
        Command::Ingest { .. } | Command::Generate { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
        Command::Run => {
            drop(out);
            runtime()?.block_on(daemon::run(config))?;
            ExitCode::SUCCESS
        }
        Command::CheckConfig { connect } => check_config(&mut out, &config, connect)?,
        Command::Tickets { status, json } => list_tickets(&mut out, &config, status, json)?,
        Command::Ticket { number, json } => show_ticket(&mut out, &config, number, json)?,
        Command::Oauth(OauthCommand::Login { mailbox, .. }) => {
            oauth_login(&mut out, &config, mailbox)?
        }
        Command::Backup { file } => {
            drop(out);
            return backup(&config, &file);
        }
        Command::MigrateStore {
            from,
            to,
            password_file,
        } => {
            drop(out);
            return migrate_store(&config, &from, to.as_deref(), password_file.as_deref());
        }
        Command::Outbox { json } => list_outbox(&mut out, &config, json)?,
        Command::Events { kind, limit, json } => {
            list_events(&mut out, &config, &kind, limit, json)?
        }
        Command::Quarantine { action } => {
            drop(out);
            return quarantine(config, action);
        }
        Command::Contact {
            address,
            limit,
            json,
        } => show_contact(&mut out, &config, &address, limit, json)?,
        Command::Stats { period, json } => print_stats(&mut out, &config, &period, json)?,
        Command::Instances { json } => list_instances(&mut out, &config, json)?,
        Command::Report { html, period } => write_report(&mut out, &config, &period, &html)?,
        Command::Template(TemplateCommand::List) => list_templates(&mut out, &config)?,
        Command::Template(TemplateCommand::Preview { kind, lang, html }) => {
            preview_template(&mut out, &config, kind, lang, html)?
        }
    };
    // Only a success is flushed here; exit code 1 (nothing found, a server not reached) leaves
    // what was printed to the flush at exit.
    if code == ExitCode::SUCCESS {
        out_flush()?;
    }
    Ok(code)
}

/// `deskgate check-config`: the checked configuration, then with `--connect` a login to each
/// server; exit code 1 when one fails.
fn check_config(out: &mut impl Write, config: &Config, connect: bool) -> anyhow::Result<ExitCode> {
    check::report(out, config)?;
    if connect && !runtime()?.block_on(check::connect(out, config))? {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `deskgate tickets`: the tickets, newest first, all or those of one status.
fn list_tickets(
    out: &mut impl Write,
    config: &Config,
    status: Option<TicketStatus>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect_read_only(&config.database)?;
    let list = store.read_blocking(|tx| tx.tickets(status))?;
    show::tickets(out, &list, &config.support.timezone, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate ticket N`: one ticket's transcript and events; exit code 1 when there is no such
/// ticket.
fn show_ticket(
    out: &mut impl Write,
    config: &Config,
    number: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect_read_only(&config.database)?;
    let id = TicketId(number);
    let found = store.read_blocking(|tx| {
        let Some(ticket) = tx.ticket(id)? else {
            return Ok(None);
        };
        Ok(Some((ticket, tx.transcript(id)?, tx.events_of(id)?)))
    })?;
    let Some((ticket, messages, events)) = found else {
        eprintln!(
            "deskgate: no ticket {number} in {}",
            config.database.display()
        );
        return Ok(ExitCode::from(1));
    };
    show::ticket(
        out,
        &ticket,
        &messages,
        &events,
        &config.support.timezone,
        json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate oauth login`: the device login for the mailbox named, or for SMTP without one.
fn oauth_login(
    out: &mut impl Write,
    config: &Config,
    mailbox: Option<String>,
) -> anyhow::Result<ExitCode> {
    let target = match mailbox {
        Some(name) => oauth::Target::Mailbox(name),
        None => oauth::Target::Smtp,
    };
    runtime()?.block_on(oauth::login(out, config, target))?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate outbox`: queued, sent and failed mail, newest first.
fn list_outbox(out: &mut impl Write, config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = Store::connect_read_only(&config.database)?;
    let rows = store.read_blocking(|tx| tx.outbox())?;
    show::outbox(out, &rows, &config.support.timezone, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate events`: the latest `limit` events, newest first, those whose kind starts with
/// `kind`.
fn list_events(
    out: &mut impl Write,
    config: &Config,
    kind: &str,
    limit: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect_read_only(&config.database)?;
    let rows = store.read_blocking(|tx| tx.events(kind, limit))?;
    show::events(out, &rows, &config.support.timezone, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate contact ADDRESS`: what deskgate remembers about a customer and their tickets;
/// exit code 1 when the address is unknown.
fn show_contact(
    out: &mut impl Write,
    config: &Config,
    address: &str,
    limit: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect_read_only(&config.database)?;
    let found = store.read_blocking(|tx| {
        let Some(contact) = tx.contact(address)? else {
            return Ok(None);
        };
        Ok(Some((contact, tx.earlier_tickets(address, None, limit)?)))
    })?;
    let Some((contact, history)) = found else {
        eprintln!(
            "deskgate: no contact {address} in {}",
            config.database.display()
        );
        return Ok(ExitCode::from(1));
    };
    show::contact(out, &contact, &history, &config.support.timezone, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Instances heard from within this long are listed as running (six heartbeats).
const INSTANCE_FRESH_MS: i64 = 30_000;

/// `deskgate instances`.
fn list_instances(out: &mut impl Write, config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = Store::connect_read_only(&config.database)?;
    let (instances, owners) =
        store.read_blocking(|tx| Ok((tx.instances(INSTANCE_FRESH_MS)?, tx.owners()?)))?;
    show::instances(out, &instances, &owners, &config.support.timezone, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate stats`: the figures of the period as a table or JSON.
fn print_stats(
    out: &mut impl Write,
    config: &Config,
    period: &PeriodArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (span, ledger) = period_ledger(config, period)?;
    let figures = ledger.stats(span, period.mailbox.as_deref());
    stats::print(out, &figures, &config.support.timezone, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `deskgate report --html FILE`: the figures of the period as a page written to `html`.
fn write_report(
    out: &mut impl Write,
    config: &Config,
    period: &PeriodArgs,
    html: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let (span, ledger) = period_ledger(config, period)?;
    let page = report::page(&ledger, span, period.mailbox.as_deref(), &config.support);
    crate::files::write_private(html, page.as_bytes())
        .with_context(|| format!("writing {}", html.display()))?;
    writeln!(out, "wrote {}", html.display())?;
    Ok(ExitCode::SUCCESS)
}

/// The period `stats` and `report` asked for, and the events figures are computed from.
fn period_ledger(config: &Config, period: &PeriodArgs) -> anyhow::Result<(Period, Ledger)> {
    let span = period.resolve(&config.support.timezone)?;
    let ledger = stats::load(config, span, period.mailbox.as_deref())?;
    Ok((span, ledger))
}

/// `deskgate template list`: each kind of mail, then each template and where it comes from.
fn list_templates(out: &mut impl Write, config: &Config) -> anyhow::Result<ExitCode> {
    for kind in kinds::KINDS {
        writeln!(out, "{}: {}", kind.name(), kind.about)?;
    }
    for (name, origin) in config.templates.origins() {
        let origin = origin.map_or("built in".to_string(), |p| p.display().to_string());
        writeln!(out, "  {name:<20} {origin}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deskgate template preview KIND`: one kind of mail rendered with sample values, its text
/// with the subject or, with `--html`, its HTML.
fn preview_template(
    out: &mut impl Write,
    config: &Config,
    kind: &'static Kind,
    lang: Lang,
    html: bool,
) -> anyhow::Result<ExitCode> {
    let parts = render::preview(&config.templates, &config.support, kind, lang)?;
    if html {
        write!(out, "{}", parts.html)?;
    } else {
        writeln!(out, "Subject: {}\n", parts.subject)?;
        write!(out, "{}", parts.text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deskgate backup FILE`: the copy, with a progress line on a terminal.
fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let show = |done: u64, total: u64| {
        if terminal && total > 0 {
            eprint!(
                "\rbackup: {:>3}% ({done} of {total} pages)",
                done * 100 / total
            );
        }
    };
    let Some(database) = config.database.sqlite_path() else {
        anyhow::bail!(
            "backup copies a SQLite database; {} is PostgreSQL: use pg_dump (README, \"Running several instances\")",
            config.database.display()
        );
    };
    let pages = store::backup(database, file, show).with_context(|| {
        format!(
            "backing up {} to {}",
            config.database.display(),
            file.display()
        )
    })?;
    if terminal {
        eprintln!();
    }
    println!(
        "backup: {} written ({pages} pages) in {:.1} s",
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `deskgate migrate-store --from FILE [--to URL]`: the SQLite store copied into an empty
/// PostgreSQL one, with a progress line on a terminal and each table's count at the end.
fn migrate_store(
    config: &Config,
    from: &std::path::Path,
    to: Option<&str>,
    password_file: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let target = migrate_target(config, to, password_file)?;
    if !from.is_file() {
        anyhow::bail!(
            "--from {}: no such file; name the SQLite database to copy (the `database` of the old configuration, e.g. /var/lib/deskgate/deskgate.db)",
            from.display()
        );
    }
    let source = Store::open_read_only(from)
        .with_context(|| format!("opening {} to copy it", from.display()))?;
    let started = std::time::Instant::now();
    let destination =
        Store::connect(&store::Database::Postgres(target)).context("connecting to the target")?;
    let terminal = std::io::stderr().is_terminal();
    let mut last_shown = std::time::Instant::now();
    let show = |table: &str, done: u64, total: u64| {
        // At most ten times a second, and always a table's first and last line.
        if terminal && (done == 0 || done == total || last_shown.elapsed().as_millis() >= 100) {
            last_shown = std::time::Instant::now();
            eprint!("\rmigrate-store: {table} {done}/{total}\x1b[K");
        }
    };
    let copied = store::copy_store(&source, &destination, show);
    if terminal {
        eprintln!();
    }
    let copied = copied
        .with_context(|| format!("copying {} to {}", from.display(), destination.describe()))?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    for table in &copied.tables {
        writeln!(
            out,
            "migrate-store: {:<14} {:>9} rows  {:>7.2} s",
            table.table,
            table.rows,
            table.elapsed.as_secs_f64()
        )?;
    }
    writeln!(
        out,
        "migrate-store: copied {} rows ({:.1} MB) from {} to {} in {elapsed:.1} s",
        copied.rows(),
        copied.bytes() as f64 / 1e6,
        from.display(),
        destination.describe()
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Where migrate-store writes: `--to` (with `--password-file`, else the configured password)
/// or the configured database, which must be PostgreSQL.
fn migrate_target(
    config: &Config,
    to: Option<&str>,
    password_file: Option<&std::path::Path>,
) -> anyhow::Result<store::PostgresTarget> {
    let configured = match &config.database {
        store::Database::Postgres(target) => Some(target),
        store::Database::Sqlite(_) => None,
    };
    let Some(url) = to else {
        return configured.cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "the configured database {} is SQLite, and migrate-store copies into PostgreSQL: name the target with --to postgres://USER@HOST/DB (and --password-file FILE), or set database = \"postgres://...\" and database_password_file in the configuration",
                config.database.display()
            )
        });
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!(
            "--to {url}: not a PostgreSQL URL; migrate-store copies into PostgreSQL (postgres://USER@HOST[:PORT]/DB)"
        );
    }
    url.parse::<::postgres::Config>()
        .map_err(|e| anyhow::anyhow!("--to: not a PostgreSQL URL: {e}"))?;
    let password = match password_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--password-file {}", file.display()))?;
            Some(text.lines().next().unwrap_or("").to_string())
        }
        None => configured.and_then(|t| t.password.clone()),
    };
    let tls = match configured.and_then(|t| t.tls.clone()) {
        Some(tls) => tls,
        None => config
            .tls
            .client_config()
            .context("setting up TLS for --to")?,
    };
    Ok(store::PostgresTarget {
        url: url.to_string(),
        password,
        instance: config.instance.clone(),
        tls: Some(tls),
    })
}

fn quarantine(config: Config, action: QuarantineAction) -> anyhow::Result<ExitCode> {
    let tz = config.support.timezone.clone();
    let mut out = output(action.json());
    let database = config.database.clone();
    let not_found = |id: i64| {
        eprintln!(
            "deskgate: no quarantined message {id} in {}",
            database.display()
        );
        Ok(ExitCode::from(1))
    };
    match action {
        QuarantineAction::List { all, json } => {
            let store = Store::connect_read_only(&config.database)?;
            let rows = store.read_blocking(|tx| tx.quarantine_list(all))?;
            show::quarantine_list(&mut out, &rows, &tz, json)?;
        }
        QuarantineAction::Show { id, json } => {
            let store = Store::connect_read_only(&config.database)?;
            let Some((entry, raw)) =
                store.read_blocking(|tx| tx.quarantine_entry(QuarantineId(id)))?
            else {
                return not_found(id);
            };
            show::quarantine_entry(&mut out, &entry, &raw, &tz, json)?;
        }
        QuarantineAction::Release { id } => {
            let store = Store::connect(&config.database)?;
            let config = std::sync::Arc::new(config);
            let released = runtime()?.block_on(ingest::release(
                &store,
                &config,
                QuarantineId(id),
                jiff::Timestamp::now(),
            ));
            let outcome = match released {
                Ok(outcome) => outcome,
                Err(ingest::ReleaseError::NotFound(_)) => return not_found(id),
                Err(err) => return Err(err.into()),
            };
            let what = match outcome {
                ingest::Outcome::Stored {
                    ticket,
                    acknowledgement,
                    ..
                } => format!(
                    "stored on {}{}",
                    ticket.map_or("no ticket".to_string(), |t| format!("ticket {t}")),
                    if acknowledgement.is_some() {
                        "; acknowledgement queued"
                    } else {
                        ""
                    }
                ),
                ingest::Outcome::Duplicate { ticket, .. } => format!(
                    "already stored{}",
                    ticket.map_or(String::new(), |t| format!(" on ticket {t}"))
                ),
                ingest::Outcome::Dropped { .. } | ingest::Outcome::Quarantined { .. } => {
                    "not stored".to_string()
                }
            };
            writeln!(out, "released quarantined message {id}: {what}")?;
        }
        QuarantineAction::Delete { id } => {
            let store = Store::connect(&config.database)?;
            let now = jiff::Timestamp::now();
            let deleted = store.write_blocking(|tx| {
                let Some(held) = tx.quarantined(QuarantineId(id))? else {
                    return Ok(None);
                };
                let done = tx.resolve_quarantine(held.id, QuarantineStatus::Deleted, now)?;
                if done {
                    tx.record(
                        &crate::store::Event {
                            detail: format!("quarantined message {id} ({})", held.reason),
                            ..crate::store::Event::new(EventKind::QuarantineDeleted)
                        },
                        now,
                    )?;
                }
                Ok(Some((done, held.status)))
            })?;
            match deleted {
                None => return not_found(id),
                Some((true, _)) => writeln!(out, "deleted quarantined message {id}")?,
                Some((false, status)) => {
                    anyhow::bail!("quarantined message {id} was already {}", status.as_str())
                }
            }
        }
    }
    out_flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Standard output for a command: exact for `--json`, else through [`Terminal`], so nothing a
/// sender wrote can steer the admin's terminal.
fn output(json: bool) -> Box<dyn Write> {
    let stdout = std::io::stdout().lock();
    if json {
        Box::new(stdout)
    } else {
        Box::new(Terminal::new(stdout))
    }
}

impl Command {
    /// Whether the command prints JSON (`--json`).
    fn json(&self) -> bool {
        match self {
            Command::Tickets { json, .. }
            | Command::Ticket { json, .. }
            | Command::Outbox { json }
            | Command::Events { json, .. }
            | Command::Contact { json, .. }
            | Command::Stats { json, .. }
            | Command::Instances { json } => *json,
            Command::Quarantine { action } => action.json(),
            _ => false,
        }
    }
}

impl QuarantineAction {
    fn json(&self) -> bool {
        match self {
            QuarantineAction::List { json, .. } | QuarantineAction::Show { json, .. } => *json,
            QuarantineAction::Release { .. } | QuarantineAction::Delete { .. } => false,
        }
    }
}

fn out_flush() -> anyhow::Result<()> {
    std::io::stdout()
        .flush()
        .context("writing to standard output")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn causes_are_printed_once() {
        let io = std::io::Error::other("disk full");
        let err = anyhow::Error::new(crate::store::StoreError::Open {
            path: "/x.db".into(),
            reason: io.to_string(),
        })
        .context("opening the database");
        assert_eq!(
            one_line(&err),
            "opening the database: database /x.db: disk full"
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "deskgate", "--config", "x.toml", "tickets", "--status", "open", "--json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Tickets {
                status: Some(TicketStatus::Open),
                json: true
            }
        ));
        let err = Cli::try_parse_from(["deskgate", "tickets", "--status", "bogus"]).unwrap_err();
        assert!(err.to_string().contains("`bogus` is not a status"), "{err}");
        let cli = Cli::try_parse_from(["deskgate", "ticket", "42"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ticket {
                number: 42,
                json: false
            }
        ));
        let cli = Cli::try_parse_from([
            "deskgate", "template", "preview", "ack", "--lang", "ar", "--html",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Template(TemplateCommand::Preview {
                lang: Lang::Ar,
                html: true,
                ..
            })
        ));
        let err = Cli::try_parse_from(["deskgate", "template", "preview", "ack", "--lang", "de"])
            .unwrap_err();
        assert!(err.to_string().contains("use one of en, ar, el"), "{err}");
        let err = Cli::try_parse_from(["deskgate", "template", "preview", "akc"]).unwrap_err();
        assert!(err.to_string().contains("kinds: ack"), "{err}");
        let cli =
            Cli::try_parse_from(["deskgate", "oauth", "login", "--mailbox", "support"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Oauth(OauthCommand::Login { mailbox: Some(ref m), smtp: false }) if m == "support"
        ));
        assert!(Cli::try_parse_from(["deskgate", "oauth", "login"]).is_err());
        assert!(
            Cli::try_parse_from(["deskgate", "oauth", "login", "--smtp", "--mailbox", "x"])
                .is_err()
        );
        let cli = Cli::try_parse_from([
            "deskgate",
            "stats",
            "--since",
            "2026-11-01",
            "--until",
            "7d",
            "--mailbox",
            "support",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Stats {
                period: PeriodArgs { since: When::Date(_), until: Some(When::Ago(_)), mailbox: Some(ref m) },
                json: false
            } if m == "support"
        ));
        let cli = Cli::try_parse_from(["deskgate", "report", "--html", "r.html"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Report { period: PeriodArgs { since: When::Ago(d), until: None, .. }, .. }
                if d.as_secs() == 30 * 86_400
        ));
        assert!(Cli::try_parse_from(["deskgate", "report"]).is_err());
        let err = Cli::try_parse_from(["deskgate", "stats", "--since", "last week"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("`last week` is not a date, a time or a duration"),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "deskgate",
            "migrate-store",
            "--from",
            "old.db",
            "--to",
            "postgres://deskgate@db/desk",
            "--password-file",
            "pw",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::MigrateStore { ref from, to: Some(ref to), password_file: Some(_) }
                if from.as_os_str() == "old.db" && to == "postgres://deskgate@db/desk"
        ));
        assert!(Cli::try_parse_from(["deskgate", "migrate-store"]).is_err());
        assert!(
            Cli::try_parse_from([
                "deskgate",
                "migrate-store",
                "--from",
                "old.db",
                "--password-file",
                "pw"
            ])
            .is_err(),
            "--password-file goes with --to"
        );
        let cli = Cli::try_parse_from(["deskgate", "check-config", "--connect"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::CheckConfig { connect: true }
        ));
    }
}
