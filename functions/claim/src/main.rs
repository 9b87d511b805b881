//! Claiming on AWS Lambda: `GET`/`POST /claim/{lead}` (signed links) and
//! `POST /slack/interactivity` (the Slack Claim button), served by the same axum routes as the
//! embedded server.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lambda_http::Error;
use leadrelay_web::{claim_router, Api};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadrelay_aws::bootstrap::init_logs();
    // Built once per container, outside the handler.
    let pipeline = leadrelay_aws::bootstrap::from_environment().await?;
    let app = claim_router(Api::new(pipeline, Arc::new(AtomicBool::new(true))));
    lambda_http::run(app).await
}
