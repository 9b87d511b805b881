//! Creates the table and queues as `template.yaml` defines them, for emulators and tests.

use std::collections::HashMap;

use anyhow::Context as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use leadrelay_shared::model::Stage;

use crate::sqs::QueueUrls;

/// The lead table: `pk`/`sk`, TTL on `expires_at`, the sparse `open_sla` index, the
/// `by_capture_day` report index, and a stream of new images (the report-hours function's
/// source).
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) -> anyhow::Result<()> {
    let key = |attribute: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
    };
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
    };
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sla_shard", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sla_due_at", ScalarAttributeType::N)?)
        .attribute_definitions(attribute("report_day", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("captured_at", ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("open_sla")
                .key_schema(key("sla_shard", KeyType::Hash)?)
                .key_schema(key("sla_due_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()?,
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by_capture_day")
                .key_schema(key("report_day", KeyType::Hash)?)
                .key_schema(key("captured_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("facts")
                        .build(),
                )
                .build()?,
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()?,
        )
        .send()
        .await
        .context("enabling TTL")?;
    Ok(())
}

/// One work queue and one dead-letter queue per stage, names prefixed with `prefix`.
pub async fn create_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u32,
) -> anyhow::Result<QueueUrls> {
    let mut urls = QueueUrls::default();
    for stage in Stage::ALL {
        let dlq = client
            .create_queue()
            .queue_name(format!("{prefix}-{stage}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .context("creating a dead-letter queue")?
            .queue_url
            .context("no queue URL")?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .context("no DLQ ARN")?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count,
        })
        .to_string();
        let work = client
            .create_queue()
            .queue_name(format!("{prefix}-{stage}"))
            .set_attributes(Some(HashMap::from([
                (QueueAttributeName::RedrivePolicy, redrive),
                (
                    QueueAttributeName::VisibilityTimeout,
                    visibility_timeout_secs.to_string(),
                ),
            ])))
            .send()
            .await
            .context("creating a work queue")?
            .queue_url
            .context("no queue URL")?;
        urls.work.insert(stage, work);
        urls.dead.insert(stage, dlq);
    }
    Ok(urls)
}
