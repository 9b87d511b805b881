//! leadrelay's e-mail adapter: the MIME message for an [`OutgoingEmail`] (lettre's builder,
//! which encodes every header) and the SMTP transport of the embedded mode ([`smtp`]).
//! Amazon SES (in `leadrelay-aws`) sends the same MIME message.

pub mod smtp;

use leadrelay_shared::email::{Mailbox, OutgoingEmail};
use leadrelay_shared::ports::NotifyError;
use lettre::message::{header::ContentType, MultiPart, SinglePart};

pub use smtp::{SmtpMailer, SmtpSetupError};

/// The MIME message: multipart/alternative, plain text first, then HTML.
pub fn message(email: &OutgoingEmail) -> Result<lettre::Message, NotifyError> {
    let mut builder = lettre::Message::builder()
        .from(mailbox(&email.from)?)
        .to(mailbox(&email.to)?)
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .date_now();
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(email.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(email.html.clone()),
                ),
        )
        .map_err(|e| unbuildable(e.to_string()))
}

/// The whole message as sent (RFC 5322), for transports that take raw MIME (SES).
pub fn to_mime(email: &OutgoingEmail) -> Result<Vec<u8>, NotifyError> {
    Ok(message(email)?.formatted())
}

/// lettre's mailbox for ours. The core checked the address already; lettre's own check is
/// stricter in places (an address it refuses cannot be sent, so the failure is permanent).
fn mailbox(mailbox: &Mailbox) -> Result<lettre::message::Mailbox, NotifyError> {
    let address = mailbox
        .address()
        .parse::<lettre::Address>()
        .map_err(|e| unbuildable(format!("an address was refused: {e}")))?;
    Ok(lettre::message::Mailbox::new(
        mailbox.name().map(str::to_owned),
        address,
    ))
}

fn unbuildable(detail: String) -> NotifyError {
    NotifyError::Permanent {
        channel: "email".into(),
        detail: format!("the message cannot be built: {detail}"),
    }
}
