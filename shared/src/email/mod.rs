//! E-mail: rep alerts and the prospect acknowledgement, rendered purely ([`render`]) into an
//! [`OutgoingEmail`], and sent by a [`Mailer`]: SMTP in the embedded mode ([`smtp`]), Amazon
//! SES on AWS (in the `aws` crate).

pub mod render;
pub mod smtp;
mod stage;

pub use stage::ACK_RECEIPT;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};

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

impl OutgoingEmail {
    /// The MIME message: multipart/alternative, plain text first, then HTML.
    pub fn message(&self) -> Result<lettre::Message, NotifyError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(self.to.clone())
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone()))
            .date_now();
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(self.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(self.html.clone()),
                    ),
            )
            .map_err(|e| NotifyError::Permanent {
                channel: "email".into(),
                detail: format!("the message cannot be built: {e}"),
            })
    }

    /// The whole message as sent (RFC 5322), for transports that take raw MIME (SES).
    pub fn to_mime(&self) -> Result<Vec<u8>, NotifyError> {
        Ok(self.message()?.formatted())
    }
}

/// Sends one e-mail. Transient failures are [`NotifyError::Unreachable`] or
/// [`NotifyError::Rejected`] (retried with the message); a refusal that no retry can change is
/// [`NotifyError::Permanent`].
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), NotifyError>;
}
