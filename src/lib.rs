pub mod classify;
pub mod config;
pub mod model;
pub mod parse;
pub mod policy;
pub mod render;
pub mod thread;
