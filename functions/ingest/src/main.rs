//! Ingest on AWS Lambda: API Gateway HTTP API events served by the very same axum routes as
//! the embedded server, so the two can never answer differently.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lambda_http::tower::ServiceExt as _;
use lambda_http::Error;
use leadrelay_web::{intake_router, Api, Peer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadrelay_aws::bootstrap::init_logs();
    // Built once per container, outside the handler.
    let pipeline = leadrelay_aws::bootstrap::from_environment().await?;
    // The queue consumers are separate functions; this one is ready once built. API Gateway
    // sends it the intake's routes only (the claim function serves the others), so it mounts
    // only those and links no Slack responder.
    let app = intake_router(Api::for_intake(pipeline, Arc::new(AtomicBool::new(true))))
        .map_request(Peer::from_api_gateway);
    lambda_http::run(app).await
}
