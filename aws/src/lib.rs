//! leadrelay on AWS: the DynamoDB lead store, the SQS queues, configuration and secrets from
//! SSM, and the Lambda glue the functions share. The stage code is `leadrelay-shared`'s.

pub mod bootstrap;
pub mod dynamo;
pub mod lambda;
pub mod provision;
pub mod sqs;

pub use dynamo::DynamoStore;
pub use sqs::{QueueUrls, SqsQueues};
