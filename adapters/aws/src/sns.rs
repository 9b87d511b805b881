//! SMS through Amazon SNS (`Publish` to a phone number), for `[notify.sms] provider = "sns"`
//! on Lambda: no provider account or token to manage, the function's role sends.

use async_trait::async_trait;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use leadrelay_shared::ports::{NotifyError, SmsSender};

pub struct SnsSms {
    client: aws_sdk_sns::Client,
    /// The sender id shown where the destination country supports one.
    sender_id: Option<String>,
}

impl SnsSms {
    pub fn new(client: aws_sdk_sns::Client, sender_id: Option<String>) -> Self {
        SnsSms { client, sender_id }
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, NotifyError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| NotifyError::Misconfigured {
            channel: "sms".into(),
            detail: e.to_string(),
        })
}

#[async_trait]
impl SmsSender for SnsSms {
    async fn send_sms(&self, to: &str, text: &str) -> Result<(), NotifyError> {
        // Transactional: delivered ahead of promotional traffic, and sent at all in countries
        // that block promotional SMS.
        let mut publish = self
            .client
            .publish()
            .phone_number(to)
            .message(text)
            .message_attributes("AWS.SNS.SMS.SMSType", attribute("Transactional")?);
        if let Some(id) = &self.sender_id {
            publish = publish.message_attributes("AWS.SNS.SMS.SenderID", attribute(id)?);
        }
        publish.send().await.map(|_| ()).map_err(classify)
    }
}

/// A refused request (bad number, opted out, no permission) is permanent; throttling and
/// anything that did not reach SNS is worth retrying.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    error: SdkError<E, aws_sdk_sns::config::http::HttpResponse>,
) -> NotifyError {
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error.as_service_error(), status) {
        (Some(service), Some(status)) => {
            let code = service.code().unwrap_or("unknown");
            let throttled = code.contains("Throttl");
            NotifyError::Rejected {
                channel: "sms".into(),
                status: if throttled { 429 } else { status },
                detail: format!("{code}: {}", service.message().unwrap_or(""))
                    .chars()
                    .take(200)
                    .collect(),
            }
        }
        _ => NotifyError::Unreachable {
            channel: "sms".into(),
            detail: match error {
                SdkError::TimeoutError(_) => "timed out".into(),
                SdkError::DispatchFailure(_) => "connection failed".into(),
                _ => "request failed".into(),
            },
        },
    }
}
