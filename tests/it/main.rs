//! Integration tests: one binary, one harness (ripgrep's layout).
//!
//! Real-server tests start their own Postfix + Dovecot and run only with DESKGATE_IT=1
//! (the README's test command sets it); without it they print why and return.

/// Several addresses routed to one mailbox, each a desk with its own wording and team.
mod addresses;
/// Agents answer by mail: notification, relay, notes, commands, forgeries.
mod agents;
/// Bad configuration and other rejected input, through the binary.
mod cli;
/// `#merge` and `#forward` by mail.
mod commands;
/// The shared real-world corpus through ingest (skipped without ../shared).
mod corpus;
/// Runs the deskgate binary: config, start/stop/kill, CLI JSON.
mod daemon;
/// Deadlines of seconds: warnings, escalation levels, follow-ups, the survey.
mod deadlines;
/// Restarts and SIGKILL mid-batch: nothing lost, nothing doubled.
mod durability;
/// Failures stay small: refused recipients, a broken smarthost, a full disk, restarts.
mod failures;
/// A safe first start: the backlog per initial_import, imported quietly.
mod first_start;
/// Customer mail → ticket → acknowledgement; replies; tags; automatic mail.
mod flow;
/// The project's mail lab (Postfix + Dovecot on loopback) and mailbox helpers.
mod harness;
/// Issue 16: hostile mail (bounded time and memory), escaped terminal output, private files.
mod hostile;
/// The generator of hostile mails (shared with the benchmark).
mod hostile_mail;
/// Agents' HTML answers, customers' HTML and winmail.dat, bottom-posting (issue 20).
mod html;
/// Loops, bounces, bursts, oversize and unparseable mail on the real servers.
mod hygiene;
/// Two instances on one PostgreSQL database: shared work, failover, a database restart (issue 19).
mod instances;
/// A month of a support desk's events, for the KPI tests and the report screenshot.
mod kpi_demo;
/// Arabic and Greek in legacy charsets; language choice, contacts, history.
mod languages;
/// `migrate-store`: a desk moves from SQLite to PostgreSQL; refused targets and sources.
mod migrate;
/// OAuth 2.0 logins (XOAUTH2, OAUTHBEARER) against Dovecot's oauth2 passdb.
mod oauth;
/// systemd notify/watchdog, reload, /healthz and /metrics, MTA ingest, secrets in logs.
mod ops;
/// The systemd unit (security rating, verify) and the Debian package.
mod package;
/// A private PostgreSQL (initdb on loopback, TLS, as nobody) and fresh databases on it.
mod postgres;
/// The relay fails closed: client quote shapes, escalations and notes, `#cc`.
mod relay;
/// `deskgate stats` and `report --html` on a month of events: the same numbers.
mod report;
/// A small OAuth 2.0 authorization server on loopback for those tests.
mod token_server;
/// IMAP TLS modes, check-config --connect, SMTP outage.
mod transport;
/// Issue 15's attacks on agents' keys and identity, and the flows that must keep working.
mod trust;
