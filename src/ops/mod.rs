//! Ops: everything an admin touches. The CLI, the daemon supervisor, systemd notification
//! and logging. `anyhow` lives here and in `main`, nowhere else.

pub mod check;
pub mod cli;
pub mod daemon;
pub mod deliver;
pub mod http;
pub mod logging;
pub mod oauth;
pub mod report;
pub mod show;
pub mod stats;
pub mod terminal;
