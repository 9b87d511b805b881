//! E-mail values, pure: an address with its display name ([`Mailbox`]), as the configuration
//! and the renderers write them, and one message ready to send ([`OutgoingEmail`]). Nothing
//! else of the crate is imported here, so the configuration, the renderers and the ports all
//! build on it. Messages are rendered by [`crate::render::email`] and sent through the
//! [`crate::ports::Mailer`] port: SMTP in the embedded mode (`leadrelay-email`), Amazon SES on
//! AWS (`leadrelay-aws`).

mod mailbox;

pub use mailbox::{InvalidMailbox, Mailbox};

/// One message, ready to send: every header value already made single-line and safe.
#[derive(Clone, PartialEq)]
pub struct OutgoingEmail {
    pub from: Mailbox,
    pub to: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    /// `<...@domain>`: stable per lead and recipient, so a resent copy threads with the first.
    pub message_id: String,
    pub text: String,
    pub html: String,
}

// Prospect PII: never printed whole, even by `{:?}` in a log line.
impl std::fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}
