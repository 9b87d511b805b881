//! The lead store on one DynamoDB table (single-table design).
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | lead | `LEAD#<id>` | `LEAD` | `state`, `body` (the lead as JSON), `last_failure`, `captured_at`; `sla_shard` + `sla_due_at` only while an SLA is open (the sparse `open_sla` index) |
//! | webhook event | `EVENT#<source>#<event id>` | `EVENT` | `lead_id`; TTL `expires_at` |
//! | delivery receipt | `LEAD#<id>` | `DELIVERY#<channel>` | `lease_until` (in-progress expiry), `delivered_at`; TTL `expires_at` |
//! | counter | `COUNTER#<name>` | `COUNTER` | `value`, updated atomically |

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
pub use aws_sdk_dynamodb::Client;
use jiff::Timestamp;
use leadrelay_shared::model::{Lead, LeadState, StageFailure};
use leadrelay_shared::ports::{Created, DeliveryStart, LeadStore, StoreError};

/// How long a webhook event id is remembered for dedupe.
const EVENT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long delivery receipts are kept.
const RECEIPT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The sparse SLA index is spread over this many partitions to avoid a hot key.
const SLA_SHARDS: u32 = 8;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn lead_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(format!("LEAD#{id}"))),
        ("sk".into(), s("LEAD")),
    ])
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug>(error: SdkError<E>) -> StoreError {
    StoreError::Unavailable(crate::describe(&error))
}

fn build_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("invalid request: {error}"))
}

fn is_conditional_failure<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// `Some(reasons)` when a transaction was cancelled, one code per item (`None` = not the cause).
fn cancellation_codes(
    error: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>,
) -> Option<Vec<Option<String>>> {
    match error.as_service_error()? {
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => Some(
            e.cancellation_reasons()
                .iter()
                .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

fn sla_shard(id: &str) -> String {
    let hash = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("SLA#{}", hash % SLA_SHARDS)
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Lead, StoreError> {
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("lead item without body".into()))?;
    let mut lead: Lead =
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(failure) = item.get("last_failure").and_then(|v| v.as_s().ok()) {
        lead.last_failure =
            Some(serde_json::from_str(failure).map_err(|e| StoreError::Corrupt(e.to_string()))?);
    }
    Ok(lead)
}

fn encode_body(lead: &Lead) -> Result<String, StoreError> {
    // last_failure is its own attribute, so recording one never races a stage's write.
    let mut copy = lead.clone();
    copy.last_failure = None;
    serde_json::to_string(&copy).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn expires(after: Duration) -> AttributeValue {
    n(Timestamp::now().as_second() + i64::try_from(after.as_secs()).unwrap_or(i64::MAX / 2))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    async fn lead_item(
        &self,
        id: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(lead_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// The state the lead is really in, after a conditional write lost.
    async fn conflict(&self, id: &str, expected: LeadState) -> StoreError {
        match self.lead_item(id).await {
            Ok(Some(item)) => match item
                .get("state")
                .and_then(|v| v.as_s().ok())
                .and_then(|s| LeadState::parse(s))
            {
                Some(actual) => StoreError::Conflict {
                    lead_id: id.to_owned(),
                    expected,
                    actual,
                },
                None => StoreError::Corrupt(format!("lead {id} has no valid state")),
            },
            Ok(None) => StoreError::NotFound(id.to_owned()),
            Err(e) => e,
        }
    }

    fn delivery_key(lead_id: &str, channel: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".into(), s(format!("LEAD#{lead_id}"))),
            ("sk".into(), s(format!("DELIVERY#{channel}"))),
        ])
    }
}

#[async_trait]
impl LeadStore for DynamoStore {
    async fn create_lead(&self, lead: &Lead) -> Result<Created, StoreError> {
        let event_pk = format!("EVENT#{}#{}", lead.source, lead.event_id);
        let captured_at = lead
            .timeline
            .captured_at
            .unwrap_or_else(Timestamp::now)
            .as_millisecond();
        let mut item = lead_key(&lead.id);
        item.insert("state".into(), s(lead.state.as_str()));
        item.insert("body".into(), s(encode_body(lead)?));
        item.insert("captured_at".into(), n(captured_at));
        let event = Put::builder()
            .table_name(&self.table)
            .item("pk", s(event_pk.clone()))
            .item("sk", s("EVENT"))
            .item("lead_id", s(lead.id.clone()))
            .item("expires_at", expires(EVENT_TTL))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let put_lead = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(event).build())
            .transact_items(TransactWriteItem::builder().put(put_lead).build())
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(Created::New),
            Err(error) => error,
        };
        let event_taken = cancellation_codes(&error)
            .and_then(|codes| codes.first().cloned().flatten())
            .is_some_and(|code| code == "ConditionalCheckFailed");
        if !event_taken {
            return Err(unavailable(error));
        }
        let existing = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(event_pk))
            .key("sk", s("EVENT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let lead_id = existing
            .item
            .as_ref()
            .and_then(|i| i.get("lead_id"))
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt("event record without lead_id".into()))?
            .clone();
        let item = self
            .lead_item(&lead_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(lead_id.clone()))?;
        Ok(Created::Duplicate(Box::new(decode(&item)?)))
    }

    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, StoreError> {
        self.lead_item(id).await?.as_ref().map(decode).transpose()
    }

    async fn advance_lead(
        &self,
        lead: &Lead,
        from: LeadState,
        increment: &[String],
    ) -> Result<(), StoreError> {
        let mut values = HashMap::from([
            (":to".to_owned(), s(lead.state.as_str())),
            (":from".to_owned(), s(from.as_str())),
            (":body".to_owned(), s(encode_body(lead)?)),
        ]);
        let mut expression = "SET #state = :to, #body = :body".to_owned();
        if let Some(due) = lead.timeline.sla_due_at {
            // Sparse index: only leads with an open SLA carry these two attributes.
            expression.push_str(", sla_shard = :shard, sla_due_at = :due");
            values.insert(":shard".into(), s(sla_shard(&lead.id)));
            values.insert(":due".into(), n(due.as_millisecond()));
        }
        let names = HashMap::from([
            ("#state".to_owned(), "state".to_owned()),
            ("#body".to_owned(), "body".to_owned()),
        ]);

        if increment.is_empty() {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(lead_key(&lead.id)))
                .update_expression(expression)
                .condition_expression("#state = :from")
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(e) if is_conditional_failure(&e) => Err(self.conflict(&lead.id, from).await),
                Err(e) => Err(unavailable(e)),
            };
        }

        let update_lead = Update::builder()
            .table_name(&self.table)
            .set_key(Some(lead_key(&lead.id)))
            .update_expression(expression)
            .condition_expression("#state = :from")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_error)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update_lead).build());
        for name in increment {
            let counter = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("COUNTER#{name}")))
                .key("sk", s("COUNTER"))
                .update_expression("ADD #value :one")
                .expression_attribute_names("#value", "value")
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(build_error)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().update(counter).build());
        }
        match transaction.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let lost = cancellation_codes(&e)
                    .and_then(|codes| codes.first().cloned().flatten())
                    .is_some_and(|code| code == "ConditionalCheckFailed");
                if lost {
                    Err(self.conflict(&lead.id, from).await)
                } else {
                    Err(unavailable(e))
                }
            }
        }
    }

    async fn record_failure(
        &self,
        lead_id: &str,
        failure: &StageFailure,
    ) -> Result<(), StoreError> {
        let text =
            serde_json::to_string(failure).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lead_key(lead_id)))
            .update_expression("SET last_failure = :failure")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":failure", s(text))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::NotFound(lead_id.to_owned())),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn begin_delivery(
        &self,
        lead_id: &str,
        channel: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<DeliveryStart, StoreError> {
        let now_ms = now.as_millisecond();
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::delivery_key(lead_id, channel)))
            .update_expression("SET lease_until = :until, expires_at = :expires")
            .condition_expression(
                "attribute_not_exists(delivered_at) AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":expires", expires(RECEIPT_TTL))
            .send()
            .await;
        match result {
            Ok(_) => Ok(DeliveryStart::Proceed),
            Err(e) if is_conditional_failure(&e) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::delivery_key(lead_id, channel)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(unavailable)?
                    .item
                    .unwrap_or_default();
                if item.contains_key("delivered_at") {
                    return Ok(DeliveryStart::AlreadyDelivered);
                }
                let held_until = item
                    .get("lease_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                    .unwrap_or(now);
                Ok(DeliveryStart::InFlight { until: held_until })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn finish_delivery(
        &self,
        lead_id: &str,
        channel: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::delivery_key(lead_id, channel)))
            .update_expression("SET delivered_at = :at REMOVE lease_until")
            .expression_attribute_values(":at", n(at.as_millisecond()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release_delivery(&self, lead_id: &str, channel: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::delivery_key(lead_id, channel)))
            .update_expression("REMOVE lease_until")
            .condition_expression("attribute_not_exists(delivered_at)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Delivered meanwhile: nothing to release.
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn counter(&self, name: &str) -> Result<i64, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("COUNTER#{name}")))
            .key("sk", s("COUNTER"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        Ok(item
            .as_ref()
            .and_then(|i| i.get("value"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}
