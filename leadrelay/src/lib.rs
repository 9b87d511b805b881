//! The `leadrelay` binary's library: the embedded pipeline over SQLite and the operator CLI's
//! commands.

pub mod cli;
pub mod dlq;
pub mod embedded;
pub mod report;
pub mod rules;
pub mod sources;
