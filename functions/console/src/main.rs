//! The web console on AWS Lambda: every `/console` path, served by the same axum routes as
//! `leadrelay serve`, with sessions and the audit log in the DynamoDB table and the SQS
//! dead-letter queues behind the operations page.

use lambda_http::Error;
use leadrelay_console::{router, Console};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadrelay_aws::bootstrap::init_logs();
    // Built once per container, outside the handler.
    let parts = leadrelay_aws::bootstrap::console_from_environment().await?;
    let secrets = parts.secrets;
    let console = Console::new(parts.pipeline, parts.store, Some(parts.dead_letters))
        .with_secrets(move |name| secrets.get(name).cloned());
    let app = router(console);
    lambda_http::run(app).await
}
