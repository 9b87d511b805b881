//! The queues on SQS: one standard queue per stage, each with a dead-letter queue whose
//! redrive policy (maxReceiveCount) the template sets. SQS itself moves a message to the DLQ.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
pub use aws_sdk_sqs::Client;
use jiff::Timestamp;
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::{DeadLetter, DeadLetters, Queue, QueueError, Received};

/// The queue URLs of one deployment.
#[derive(Debug, Clone, Default)]
pub struct QueueUrls {
    pub work: HashMap<Stage, String>,
    pub dead: HashMap<Stage, String>,
}

impl QueueUrls {
    fn work(&self, stage: Stage) -> Result<&str, QueueError> {
        self.work
            .get(&stage)
            .map(String::as_str)
            .ok_or_else(|| QueueError::Unavailable(format!("no queue URL configured for {stage}")))
    }

    fn dead(&self, stage: Stage) -> Result<&str, QueueError> {
        self.dead.get(&stage).map(String::as_str).ok_or_else(|| {
            QueueError::Unavailable(format!("no dead-letter queue URL configured for {stage}"))
        })
    }
}

#[derive(Clone)]
pub struct SqsQueues {
    client: Client,
    urls: QueueUrls,
    /// Long-poll wait for `receive`, in seconds (0 = return at once).
    wait_seconds: i32,
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug>(error: SdkError<E>) -> QueueError {
    QueueError::Unavailable(crate::describe(&error))
}

/// SQS's longest visibility timeout, in seconds (12 hours).
const MAX_VISIBILITY: i32 = 43_200;
/// A retry's visibility counts from the receive, and SQS refuses a change past 12 hours from
/// it: leave room for the time the failed attempt already took (a function runs at most
/// 15 minutes).
const RETRY_VISIBILITY_MARGIN: i32 = 900;

fn seconds(duration: Duration) -> i32 {
    // SQS caps visibility at 12 hours; round sub-second delays up so a retry is never instant.
    i32::try_from(duration.as_millis().div_ceil(1000))
        .unwrap_or(MAX_VISIBILITY)
        .min(MAX_VISIBILITY)
}

/// The visibility timeout that waits `delay` before a retry, within what SQS accepts.
fn retry_visibility(delay: Duration) -> i32 {
    seconds(delay).min(MAX_VISIBILITY - RETRY_VISIBILITY_MARGIN)
}

impl SqsQueues {
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        SqsQueues {
            client,
            urls,
            wait_seconds: 0,
        }
    }

    /// Long-poll receives (for the CLI and tests; Lambda's event source polls by itself).
    pub fn with_wait(mut self, wait_seconds: i32) -> Self {
        self.wait_seconds = wait_seconds.clamp(0, 20);
        self
    }

    pub fn urls(&self) -> &QueueUrls {
        &self.urls
    }

    /// Approximate number of visible messages in `stage`'s dead-letter queue.
    pub async fn dead_letter_depth(&self, stage: Stage) -> Result<u64, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(self.urls.dead(stage)?)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Asks SQS to move every message of `stage`'s DLQ back to its queue, at most `per_second`.
    /// Returns the task handle; SQS runs the move on its side.
    pub async fn start_move_task(
        &self,
        stage: Stage,
        per_second: i32,
    ) -> Result<String, QueueError> {
        let dlq_arn = self.arn(self.urls.dead(stage)?).await?;
        let work_arn = self.arn(self.urls.work(stage)?).await?;
        let output = self
            .client
            .start_message_move_task()
            .source_arn(dlq_arn)
            .destination_arn(work_arn)
            .max_number_of_messages_per_second(per_second.clamp(1, 500))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.task_handle().unwrap_or_default().to_owned())
    }

    async fn arn(&self, url: &str) -> Result<String, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| QueueError::Unavailable(format!("no ARN for {url}")))
    }
}

/// The message attribute that carries a given-up message's receive count into its DLQ.
const RECEIVES_ATTRIBUTE: &str = "receives";

fn receive_count(attributes: Option<&HashMap<MessageSystemAttributeName, String>>) -> u32 {
    attributes
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[async_trait]
impl Queue for SqsQueues {
    async fn send(&self, stage: Stage, envelope: &Envelope) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(self.urls.work(stage)?)
            .message_body(envelope.to_json())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn send_delayed(
        &self,
        stage: Stage,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        // SQS accepts 0..=900 seconds.
        let seconds = i32::try_from(delay.as_secs().min(900)).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(self.urls.work(stage)?)
            .message_body(envelope.to_json())
            .delay_seconds(seconds)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn receive(&self, stage: Stage, max: u32) -> Result<Vec<Received>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(self.urls.work(stage)?)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    message_id: m.message_id()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count: receive_count(m.attributes()),
                })
            })
            .collect())
    }

    async fn delete(&self, stage: Stage, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(self.urls.work(stage)?)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn retry_later(
        &self,
        stage: Stage,
        receipt: &str,
        delay: Duration,
        _error: &str,
    ) -> Result<(), QueueError> {
        // SQS keeps no error text; the stage records it on the lead and in the log.
        // ChangeMessageVisibility, not a delayed copy: DelaySeconds stops at 15 minutes.
        self.client
            .change_message_visibility()
            .queue_url(self.urls.work(stage)?)
            .receipt_handle(receipt)
            .visibility_timeout(retry_visibility(delay))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn give_up(
        &self,
        stage: Stage,
        message: &Received,
        error: &str,
    ) -> Result<(), QueueError> {
        // A copy into the DLQ, then the original deleted: a crash in between leaves the
        // message to come back and be given up again (two copies, which replay absorbs).
        let text = |value: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Unavailable(e.to_string()))
        };
        let receives = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(message.receive_count.to_string())
            .build()
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(self.urls.dead(stage)?)
            .message_body(&message.body)
            .message_attributes("error", text(error)?)
            .message_attributes(RECEIVES_ATTRIBUTE, receives)
            .send()
            .await
            .map_err(unavailable)?;
        self.delete(stage, &message.receipt).await
    }

    async fn dead_letter(
        &self,
        stage: Stage,
        envelope: &Envelope,
        error: &str,
    ) -> Result<(), QueueError> {
        // The DLQ's listing shows the error from this attribute (the stage also records it on
        // the lead); SQS caps attribute values at 256 KB, far above an error line.
        let reason = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(error)
            .build()
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(self.urls.dead(stage)?)
            .message_body(envelope.to_json())
            .message_attributes("error", reason)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for SqsQueues {
    async fn list(
        &self,
        stage: Stage,
        max: usize,
        hold: Duration,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let url = self.urls.dead(stage)?;
        let mut letters: Vec<DeadLetter> = Vec::new();
        // SQS has no peek: receive (hiding each message for `hold`) until nothing more comes.
        while letters.len() < max {
            let want = (max - letters.len()).min(10);
            let output = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .visibility_timeout(seconds(hold).max(1))
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("error")
                .message_attribute_names(RECEIVES_ATTRIBUTE)
                .send()
                .await
                .map_err(unavailable)?;
            let batch = output.messages();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                if letters.iter().any(|l| l.message_id == id) {
                    continue;
                }
                let body = m.body().unwrap_or_default().to_owned();
                let attributes = m.attributes();
                letters.push(DeadLetter {
                    message_id: id.to_owned(),
                    receipt: receipt.to_owned(),
                    lead_id: Envelope::from_json(&body).ok().map(|e| e.lead_id),
                    body,
                    // Given up by the stage: the receives it counted. Moved by the redrive: the
                    // DLQ's own count includes this listing; the source's is gone.
                    receive_count: m
                        .message_attributes()
                        .and_then(|a| a.get(RECEIVES_ATTRIBUTE))
                        .and_then(|v| v.string_value())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| receive_count(attributes).saturating_sub(1)),
                    // Set when the stage parked it itself (a permanent failure).
                    last_error: m
                        .message_attributes()
                        .and_then(|a| a.get("error"))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned),
                    sent_at: attributes
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                        .and_then(|v| v.parse::<i64>().ok())
                        .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
                });
            }
        }
        letters.sort_by_key(|l| l.sent_at);
        Ok(letters)
    }

    async fn replay(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(self.urls.work(stage)?)
            .message_body(&letter.body)
            .send()
            .await
            .map_err(unavailable)?;
        self.discard(stage, letter).await
    }

    async fn discard(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(self.urls.dead(stage)?)
            .receipt_handle(&letter.receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.urls.dead(stage)?)
            .receipt_handle(&letter.receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_within_what_sqs_accepts() {
        assert_eq!(retry_visibility(Duration::from_millis(1)), 1);
        assert_eq!(retry_visibility(Duration::from_secs(8 * 3600)), 8 * 3600);
        // 12 hours counts from the receive: a long step keeps room for the attempt's own time.
        assert_eq!(
            retry_visibility(Duration::from_secs(12 * 3600)),
            MAX_VISIBILITY - RETRY_VISIBILITY_MARGIN
        );
        assert_eq!(seconds(Duration::from_secs(13 * 3600)), MAX_VISIBILITY);
    }
}
