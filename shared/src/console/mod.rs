//! The console's domain: who may see and do what ([`access`]), a signed-in person's
//! [`session::Session`], and the [`audit::ConsoleAction`] every change made through the console
//! leaves behind. The pages themselves are the `leadrelay-console` adapter; the store that keeps
//! sessions and the audit log is the [`crate::ports::ConsoleStore`] port.

pub mod access;
pub mod audit;
pub mod session;

pub use crate::config::Role;
pub use access::Viewer;
pub use audit::ConsoleAction;
pub use session::Session;
