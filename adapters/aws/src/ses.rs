//! E-mail on AWS: Amazon SES (API v2) `SendEmail` with the raw MIME message, so the text and
//! HTML parts, Reply-To and Message-ID are exactly those the embedded mode sends over SMTP.

use async_trait::async_trait;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use leadrelay_shared::email::OutgoingEmail;
use leadrelay_shared::ports::{Mailer, NotifyError};

/// Sends through SES with the function's role (`ses:SendRawEmail` and `ses:SendEmail`).
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        SesMailer { client }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), NotifyError> {
        let raw = RawMessage::builder()
            .data(Blob::new(leadrelay_email::to_mime(email)?))
            .build()
            .map_err(|e| permanent(e.to_string()))?;
        self.client
            .send_email()
            .from_email_address(email.from.address().to_owned())
            .destination(
                Destination::builder()
                    .to_addresses(email.to.address().to_owned())
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|error| {
                let detail = crate::describe(&error);
                match error.as_service_error() {
                    // What no retry changes: the message or its sender refused, sending off
                    // for the account until someone acts.
                    Some(
                        SendEmailError::MessageRejected(_)
                        | SendEmailError::MailFromDomainNotVerifiedException(_)
                        | SendEmailError::BadRequestException(_)
                        | SendEmailError::NotFoundException(_)
                        | SendEmailError::AccountSuspendedException(_)
                        | SendEmailError::SendingPausedException(_),
                    ) => permanent(detail),
                    // Throttling, quotas, the network, SES unavailable: retried with the message.
                    _ => NotifyError::Unreachable {
                        channel: "email".into(),
                        detail,
                    },
                }
            })
    }
}

fn permanent(detail: String) -> NotifyError {
    NotifyError::Permanent {
        channel: "email".into(),
        detail,
    }
}
