//! The SMTP transport of the embedded mode (lettre over tokio and rustls).

use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use leadrelay_shared::config::{EmailConfig, SmtpTls};
use leadrelay_shared::email::OutgoingEmail;
use leadrelay_shared::ports::{Mailer, NotifyError};

/// Why the SMTP transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("notify.email.smtp_host is not set: the embedded mode sends e-mail over SMTP")]
    NoHost,
    #[error("notify.email: {0}")]
    Tls(String),
}

/// Sends each message over its own SMTP connection (alerts are few and must not wait on a
/// pooled connection the server dropped).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    pub fn new(config: &EmailConfig) -> Result<Self, SmtpSetupError> {
        let host = config.smtp_host.as_deref().ok_or(SmtpSetupError::NoHost)?;
        let builder = match config.smtp_tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| SmtpSetupError::Tls(e.to_string()))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| SmtpSetupError::Tls(e.to_string()))?,
        };
        let mut builder = builder
            .port(config.smtp_port())
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let Some(login) = &config.smtp_credentials {
            builder = builder.credentials(Credentials::new(
                login.username.clone(),
                login.password.expose_secret().to_owned(),
            ));
        }
        Ok(SmtpMailer {
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), NotifyError> {
        let message = crate::message(email)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

/// A 5xx reply is permanent (RFC 5321: do not repeat the same request); a 4xx reply, a timeout
/// or a broken connection is worth retrying.
fn classify(error: lettre::transport::smtp::Error) -> NotifyError {
    let channel = "email".to_owned();
    // lettre's text is the server's reply or the I/O error: never the credentials.
    let detail = leadrelay_shared::render::truncate(&error.to_string(), 200);
    // A transient reply is not `Rejected`: that variant carries HTTP statuses, where a 4xx
    // is permanent, while an SMTP 4xx is "try again later".
    if error.is_permanent() {
        NotifyError::Permanent { channel, detail }
    } else {
        NotifyError::Unreachable { channel, detail }
    }
}
