//! sla-watch on AWS Lambda: an EventBridge schedule invokes it; each run escalates the leads
//! the sparse due index holds and answers with what it did. The scheduled event's content is
//! not needed, so any event runs one sweep (handy for a manual `aws lambda invoke`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use leadrelay_shared::stages::sla;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadrelay_aws::bootstrap::init_logs();
    // Built once per container, outside the handler.
    let pipeline = leadrelay_aws::bootstrap::from_environment().await?;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let pipeline = pipeline.clone();
        async move {
            let report = sla::sweep(&pipeline).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
