//! leadrelay on AWS: the DynamoDB lead store, the SQS queues, configuration and secrets from
//! SSM, and the Lambda glue the functions share; with the `notify` feature, e-mail through SES
//! and SMS through SNS. The stage code is `leadrelay-shared`'s.

pub mod bootstrap;
pub mod dynamo;
pub mod environment;
pub mod lambda;
pub mod provision;
#[cfg(feature = "notify")]
pub mod ses;
#[cfg(feature = "notify")]
pub mod sns;
pub mod sqs;

pub use dynamo::DynamoStore;
pub use environment::{lambda_sdk_config, EnvConfigError};
#[cfg(feature = "notify")]
pub use ses::SesMailer;
#[cfg(feature = "notify")]
pub use sns::SnsSms;
pub use sqs::{QueueUrls, SqsQueues};

/// The HTTPS client every AWS SDK client here uses: rustls with ring's cryptography and the
/// system's root certificates. The SDK's default (aws-lc-rs) is not compiled in, which keeps
/// the Lambda binaries small.
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS configuration as `aws-config`'s default chain finds it (environment, profiles, SSO,
/// STS web identity, the container and instance metadata endpoints), with [`https_client`]:
/// for the operators' tools. The Lambda functions use [`lambda_sdk_config`], which does not
/// link the chain.
#[cfg(feature = "default-chain")]
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

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
