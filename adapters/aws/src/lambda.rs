//! The SQS batch handler the queue-consuming functions share.
//!
//! Each message is handled on its own task, so one bad message (an error or a panic) never
//! fails or re-runs its batch-mates; only the failed ones are reported back
//! (`ReportBatchItemFailures`) and retried on `[pipeline] retry_schedule`; the stage
//! dead-letters a message itself once the schedule is spent (SQS's redrive after
//! maxReceiveCount is the backstop).

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::Received;
use leadrelay_shared::stages::{Deferred, Outcome, Pipeline, StageError};
use tracing::{error, warn};

/// Handles a batch from `stage`'s queue and reports the messages to retry. Dispatches on the
/// stage at run time, so it links every stage: a function serving one stage calls
/// [`enrich_batch`], [`route_batch`] or [`notify_batch`] instead.
pub async fn handle_batch(
    pipeline: Arc<Pipeline>,
    stage: Stage,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    match stage {
        Stage::Enrich => enrich_batch(pipeline, event).await,
        Stage::Route => route_batch(pipeline, event).await,
        Stage::Notify => notify_batch(pipeline, event).await,
    }
}

/// Handles a batch from the enrich queue and reports the messages to retry.
pub async fn enrich_batch(
    pipeline: Arc<Pipeline>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    batch_with(
        pipeline,
        Stage::Enrich,
        event,
        |pipeline, body| async move { pipeline.handle_enrich(&body).await },
    )
    .await
}

/// Handles a batch from the route queue and reports the messages to retry.
pub async fn route_batch(
    pipeline: Arc<Pipeline>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    batch_with(pipeline, Stage::Route, event, |pipeline, body| async move {
        pipeline.handle_route(&body).await
    })
    .await
}

/// Handles a batch from the notify queue and reports the messages to retry.
pub async fn notify_batch(
    pipeline: Arc<Pipeline>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    batch_with(
        pipeline,
        Stage::Notify,
        event,
        |pipeline, body| async move { pipeline.handle_notify(&body).await },
    )
    .await
}

/// The batch handling every stage shares; `handle` runs one message body through the stage
/// (given as a function of its own, so that only this stage's code is linked).
async fn batch_with<H, F>(
    pipeline: Arc<Pipeline>,
    stage: Stage,
    event: SqsEvent,
    handle: H,
) -> Result<SqsBatchResponse, lambda_runtime::Error>
where
    H: Fn(Arc<Pipeline>, String) -> F,
    F: Future<Output = Result<Outcome, StageError>> + Send + 'static,
{
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
        let handled = handle(pipeline.clone(), message.body.clone());
        tasks.push((
            message_id,
            tokio::spawn(async move {
                match handled.await {
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
