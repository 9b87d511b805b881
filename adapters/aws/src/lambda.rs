//! The SQS batch handler the queue-consuming functions share.
//!
//! Each message is handled on its own task, so one bad message (an error or a panic) never
//! fails or re-runs its batch-mates; only the failed ones are reported back
//! (`ReportBatchItemFailures`) and retried on `[pipeline] retry_schedule`; the stage
//! dead-letters a message itself once the schedule is spent (SQS's redrive after
//! maxReceiveCount is the backstop).

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::Received;
use leadrelay_shared::stages::{Deferred, Pipeline};
use tracing::{error, warn};

/// Handles a batch from `stage`'s queue and reports the messages to retry.
pub async fn handle_batch(
    pipeline: Arc<Pipeline>,
    stage: Stage,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut tasks = Vec::with_capacity(event.records.len());
    for record in event.records {
        // An empty itemIdentifier would fail the whole batch: a record without an id cannot be
        // reported on its own, so the batch is failed explicitly instead.
        let Some(message_id) = record.message_id.clone().filter(|id| !id.is_empty()) else {
            return Err("SQS record without messageId".into());
        };
        let message = Received {
            receipt: record.receipt_handle.clone().unwrap_or_default(),
            body: record.body.clone().unwrap_or_default(),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            message_id: message_id.clone(),
        };
        let pipeline = pipeline.clone();
        tasks.push((
            message_id,
            tokio::spawn(async move {
                match pipeline.handle(stage, &message.body).await {
                    Ok(_) => true,
                    // Records the failure on the lead and backs off the message's visibility
                    // on the retry schedule; once it is spent, the stage moved the message to
                    // the DLQ itself and there is nothing left to retry.
                    Err(failure) => match pipeline.defer(stage, &message, &failure).await {
                        Ok(Deferred::DeadLettered) => true,
                        Ok(Deferred::Retrying(_)) => false,
                        Err(e) => {
                            warn!(stage = %stage, error = %e, "could not defer the failed message");
                            false
                        }
                    },
                }
            }),
        ));
    }
    let mut response = SqsBatchResponse::default();
    for (message_id, task) in tasks {
        let succeeded = match task.await {
            Ok(succeeded) => succeeded,
            Err(join_error) => {
                error!(stage = %stage, message_id = %message_id, panicked = join_error.is_panic(), "message handler did not finish");
                false
            }
        };
        if !succeeded {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}
