//! report-hours on AWS Lambda: the lead table's stream invokes it with batches of item
//! changes; it counts the lead writes per capture hour and moves those hours' generations, so
//! the console rebuilds exactly the report buckets that changed. A failed batch fails the
//! invocation and the stream retries it (moving a generation twice is harmless).

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use leadrelay_aws::dynamo::report_hours::lead_writes_per_hour;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadrelay_aws::bootstrap::init_logs();
    // Built once per container, outside the handler.
    let store = leadrelay_aws::bootstrap::report_hours_from_environment().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let store = store.clone();
        async move {
            let hours = lead_writes_per_hour(&event.payload);
            store
                .bump_report_hours(&hours, jiff::Timestamp::now())
                .await?;
            Ok::<_, Error>(())
        }
    }))
    .await
}
