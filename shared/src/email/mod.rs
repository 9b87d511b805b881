//! E-mail: rep alerts and the prospect acknowledgement, rendered purely ([`render`]) into an
//! [`OutgoingEmail`], and sent by a [`Mailer`]: SMTP in the embedded mode (`leadrelay-email`),
//! Amazon SES on AWS (`leadrelay-aws`).

mod mailbox;

pub use mailbox::{InvalidMailbox, Mailbox};

use async_trait::async_trait;

use crate::ports::NotifyError;

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

/// Sends one e-mail. Transient failures are [`NotifyError::Unreachable`] or
/// [`NotifyError::Rejected`] (retried with the message); a refusal that no retry can change is
/// [`NotifyError::Permanent`].
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), NotifyError>;
}
