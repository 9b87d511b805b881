//! leadrelay on AWS: the DynamoDB lead store, the SQS queues, configuration and secrets from
//! SSM, and the Lambda glue the functions share; with the `notify` feature, e-mail through SES
//! and SMS through SNS. The stage code is `leadrelay-shared`'s.

pub mod bootstrap;
pub mod dynamo;
pub mod lambda;
pub mod provision;
#[cfg(feature = "notify")]
pub mod ses;
#[cfg(feature = "notify")]
pub mod sns;
pub mod sqs;

pub use dynamo::DynamoStore;
#[cfg(feature = "notify")]
pub use ses::SesMailer;
#[cfg(feature = "notify")]
pub use sns::SnsSms;
pub use sqs::{QueueUrls, SqsQueues};

/// What an SDK call's failure was, for errors and logs. The SDK's Display is terse
/// ("service error"); the service's code and message say what happened.
pub(crate) fn describe<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown"),
            service.message().unwrap_or("")
        ),
        None => format!("{error:?}").chars().take(300).collect(),
    }
}
