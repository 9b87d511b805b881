//! The notify stage on AWS Lambda: consumes its SQS queue in batches, reports partial failures.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadrelay_aws::bootstrap::init_logs();
    // Built once per container, outside the handler.
    let pipeline = leadrelay_aws::bootstrap::notify_from_environment().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        leadrelay_aws::lambda::notify_batch(pipeline.clone(), event.payload)
    }))
    .await
}
