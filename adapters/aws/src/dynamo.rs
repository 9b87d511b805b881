//! The lead store on one DynamoDB table (single-table design).
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | lead | `LEAD#<id>` | `LEAD` | `state`, `body` (the lead as JSON), `last_failure`, `captured_at`; `sla_shard` + `sla_due_at` only while an SLA is open (the sparse `open_sla` index); `report_day` (`<UTC capture day>#<shard 0..7>`) + `facts` (the report's `LeadFacts` as JSON), written with every lead write, for the `by_capture_day` index (range `captured_at`, projecting `facts`) |
//! | webhook event | `EVENT#<source>#<event id>` | `EVENT` | `lead_id`; TTL `expires_at` |
//! | signed body (schemes without a signed timestamp) | `BODY#<source>#<hex SHA-256 of the body>` | `BODY` | `lead_id`; TTL `expires_at` (the source's replay window; also checked on write: TTL deletion lags) |
//! | delivery receipt | `LEAD#<id>` | `DELIVERY#<channel>` | `lease_until` (in-progress expiry), `delivered_at`; TTL `expires_at` |
//! | counter | `COUNTER#<name>` | `COUNTER` | `value`, updated atomically |
//! | pool ledger | `LEDGER#<pool>` | `PERIOD#<period>` | `version`, `body` (the ledger as JSON) |
//! | contact index | `CONTACT#<normalised e-mail>` | `CONTACT` | `lead_id` (the person's open lead), `routed_at`; TTL `expires_at` (the longest merge window) |
//! | cache entry | `CACHE#<key>` | `CACHE` | `value`; TTL `expires_at` (also checked on read: TTL deletion lags) |
//! | unmatched activity | `UNMATCHED#<UTC day received>` | `<received ms, 13 digits>#<activity key>` | `body`; TTL `expires_at`; one partition per day, so a listing reads only its days |
//! | unmatched activity key | `UNMATCHEDKEY#<activity key>` | `UNMATCHEDKEY` | written with the event in one transaction, so a replay is kept once; TTL `expires_at` |
//! | console session | `SESSION#<hex SHA-256 of the cookie's id>` | `SESSION` | `body` (the session as JSON); TTL `expires_at` (the session's end; also checked on read: TTL deletion lags) |
//! | console audit entry | `CONSOLEAUDIT#<UTC day>` | `<UTC RFC 3339, milliseconds>#<random>` | `body` (the action as JSON); TTL `expires_at` (400 days); one partition per day, read newest first |
//! | report hour | `REPORTHOURS#<UTC month>` | `HOUR#<hours since the epoch, 10 digits>` | `generation` and `bumped_at` (moved by the report-hours function from the table's stream), `built_generation` + `fingerprint` + `bucket` (the dashboard's report records); see [`report_hours`] |
//! | report month listed | `REPORTHOURS#<UTC month>` | `COMPLETE` | the month's hours of leads written before the stream were listed |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
pub use aws_sdk_dynamodb::Client;
use jiff::Timestamp;
use leadrelay_shared::console::{ConsoleAction, Session};
use leadrelay_shared::model::{Lead, LeadState, StageFailure, UnmatchedActivity};
use leadrelay_shared::ports::{
    decode_stored_lead, skip_undecodable, ConsoleStore, Created, DeliveryReceipt, DeliveryStart,
    EnrichmentCache, LeadStore, PostedMessage, ReplayGuard, StoreError,
};
use leadrelay_shared::report::LeadFacts;
use leadrelay_shared::routing::duplicates::ContactLookup;
use leadrelay_shared::routing::effects::{ContactWrite, CounterBump, Effects, LedgerWrite};
use leadrelay_shared::routing::ledger::PoolLedger;

pub mod report_hours;

/// How long a webhook event id is remembered for dedupe.
const EVENT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The sort key of a message a delivery posted (`POSTED#<receipt>`), beside the lead's item.
const POSTED_PREFIX: &str = "POSTED#";
/// How long delivery receipts (and the messages deliveries posted) are kept.
const RECEIPT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an activity event that matched no lead is kept for the handoff audit.
const UNMATCHED_TTL: Duration = Duration::from_secs(180 * 24 * 3600);
/// How long the console's audit log keeps an entry.
const AUDIT_TTL: Duration = leadrelay_shared::console::audit::KEPT_FOR;
/// The partition prefix of the console's audit log (one partition per UTC day).
const AUDIT_PREFIX: &str = "CONSOLEAUDIT#";
/// The sparse SLA index is spread over this many partitions to avoid a hot key.
const SLA_SHARDS: u32 = 8;
/// The capture-day report index is spread over this many partitions per day: 1,500 leads a
/// second stay under a partition's write limit.
const REPORT_SHARDS: u32 = 8;
/// BatchGetItem takes at most this many keys per request.
const BATCH_GET_MAX: usize = 100;
/// Rounds of retrying the keys a BatchGetItem left unprocessed (throttling) before giving up.
const BATCH_GET_ROUNDS: u32 = 5;
/// How long a contact-index entry is kept: no merge window is longer.
const CONTACT_TTL: Duration =
    Duration::from_secs(leadrelay_shared::config::MAX_MERGE_WINDOW_HOURS as u64 * 3600);

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// What report reads cost, since the store was made.
    report_reads: Arc<ReportReads>,
    /// `Some(settle)` where the table's stream moves the report hours' generations
    /// ([`DynamoStore::with_report_buckets`]); `None`: no buckets, reports read the facts.
    report_buckets: Option<Duration>,
}

/// The items report queries returned and the read capacity DynamoDB says they consumed.
#[derive(Debug, Default)]
pub struct ReportReads {
    items: AtomicU64,
    /// Read capacity units, in thousandths.
    capacity_milli: AtomicU64,
    queries: AtomicU64,
}

/// A snapshot of [`ReportReads`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportReadCount {
    pub queries: u64,
    pub items: u64,
    /// `None` when the service reported no consumed capacity (emulators may not).
    pub capacity_units: Option<f64>,
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

fn counter_key(name: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(format!("COUNTER#{name}"))),
        ("sk".into(), s("COUNTER")),
    ])
}

fn contact_key(contact: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(format!("CONTACT#{contact}"))),
        ("sk".into(), s("CONTACT")),
    ])
}

fn ledger_key(pool: &str, period: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(format!("LEDGER#{pool}"))),
        ("sk".into(), s(format!("PERIOD#{period}"))),
    ])
}

fn session_key(key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(format!("SESSION#{key}"))),
        ("sk".into(), s("SESSION")),
    ])
}

/// An instant as an audit sort key's prefix: UTC RFC 3339 with exactly three fractional
/// digits, so that the keys of one day sort as their instants do.
fn audit_instant(at: Timestamp) -> String {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        utc.date(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.millisecond()
    )
}

fn cache_key(key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(format!("CACHE#{key}"))),
        ("sk".into(), s("CACHE")),
    ])
}

/// A counter item's value; an item without one has never been added to.
fn counter_value(name: &str, item: &HashMap<String, AttributeValue>) -> Result<i64, StoreError> {
    match item.get("value") {
        None => Ok(0),
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("counter {name} is not an integer"))),
    }
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// What one item of an `advance_lead` transaction guards, to name it when the write is refused.
enum Guard {
    Lead,
    Counter {
        name: String,
        limit: Option<i64>,
    },
    Ledger {
        pool: String,
        period: String,
        expected: u64,
    },
    Release {
        name: String,
    },
    Contact {
        contact: String,
    },
    Reset {
        name: String,
    },
}

impl Guard {
    /// Why the transaction was refused, when this item's condition failed.
    fn refused(&self) -> String {
        match self {
            Guard::Lead => "the lead moved".to_owned(),
            Guard::Counter {
                name,
                limit: Some(limit),
            } => format!("counter {name} at its limit {limit}"),
            Guard::Counter { name, limit: None } => format!("counter {name} refused the write"),
            Guard::Ledger {
                pool,
                period,
                expected,
            } => format!("ledger {pool}/{period} moved since version {expected}"),
            Guard::Release { name } => format!("counter {name} is already 0"),
            Guard::Contact { contact } => format!("contact {contact} got another open lead"),
            Guard::Reset { name } => format!("counter {name} refused the reset"),
        }
    }

    /// The item's name, when another transaction was writing it at the same time.
    fn busy(&self, lead_id: &str) -> String {
        let item = match self {
            Guard::Lead => format!("lead {lead_id}"),
            Guard::Counter { name, .. } => format!("counter {name}"),
            Guard::Ledger { pool, period, .. } => format!("ledger {pool}/{period}"),
            Guard::Release { name } => format!("counter {name}"),
            Guard::Contact { contact } => format!("contact {contact}"),
            Guard::Reset { name } => format!("counter {name}"),
        };
        format!("{item} was being written by another transaction")
    }
}

fn unavailable<E>(error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // The SDK's own text is terse ("service error"); the service's code and message lead.
    StoreError::Unavailable {
        context: crate::describe(&error),
        source: Some(Box::new(error)),
    }
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable {
        context: format!("invalid request: {error}"),
        source: Some(Box::new(error)),
    }
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

/// The lead's partition of the capture-day report index: its UTC capture day and a shard
/// from its id.
fn report_day(id: &str, captured_at: Timestamp) -> String {
    let hash = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!(
        "{}#{}",
        captured_at.to_zoned(jiff::tz::TimeZone::UTC).date(),
        hash % REPORT_SHARDS
    )
}

fn encode_facts(lead: &Lead) -> Result<String, StoreError> {
    serde_json::to_string(&LeadFacts::of(lead)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The capture time a lead item is stored under (now for a lead without one).
fn captured_ms(lead: &Lead) -> i64 {
    lead.timeline
        .captured_at
        .unwrap_or_else(Timestamp::now)
        .as_millisecond()
}

/// A lead item's body and last failure; a body this version cannot read is
/// [`StoreError::Undecodable`] naming the lead, as in the embedded store.
fn decode(item: &HashMap<String, AttributeValue>) -> Result<Lead, StoreError> {
    let id = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .and_then(|pk| pk.strip_prefix("LEAD#"))
        .ok_or_else(|| StoreError::Corrupt("lead item without an id".into()))?;
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("lead {id} has no body")))?;
    let failure = item.get("last_failure").and_then(|v| v.as_s().ok());
    decode_stored_lead(id, body, failure.map(String::as_str))
}

/// The JSON attribute `body` of an item as a `T`; `what` names the item in the error.
fn json_body<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
    what: &str,
) -> Result<T, StoreError> {
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: no body")))?;
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn encode_body(lead: &Lead) -> Result<String, StoreError> {
    encode_body_at(lead, lead.revision)
}

/// The lead's body as stored at `revision`.
fn encode_body_at(lead: &Lead, revision: u64) -> Result<String, StoreError> {
    // last_failure is its own attribute, so recording one never races a stage's write.
    let mut copy = lead.clone();
    copy.last_failure = None;
    copy.revision = revision;
    serde_json::to_string(&copy).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The partition of the unmatched activity events received on `at`'s UTC day.
fn unmatched_day_pk(at: Timestamp) -> String {
    format!("UNMATCHED#{}", at.to_zoned(jiff::tz::TimeZone::UTC).date())
}

fn expires(after: Duration) -> AttributeValue {
    n(Timestamp::now().as_second() + i64::try_from(after.as_secs()).unwrap_or(i64::MAX / 2))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            report_reads: Arc::default(),
            report_buckets: None,
        }
    }

    /// Keeps the dashboard's report buckets in the table: only where the report-hours
    /// function consumes the table's stream (a deployment of `template.yaml`), since nothing
    /// else moves an hour's generation. A bucket is not kept while its hour's last move is
    /// younger than `settle` (the capture index may still lag the write it followed).
    pub fn with_report_buckets(mut self, settle: Duration) -> Self {
        self.report_buckets = Some(settle);
        self
    }

    /// The queries, items and read capacity report reads ([`LeadStore::lead_facts`]) have
    /// cost through this store and its clones.
    pub fn report_reads(&self) -> ReportReadCount {
        let milli = self.report_reads.capacity_milli.load(Ordering::Relaxed);
        ReportReadCount {
            queries: self.report_reads.queries.load(Ordering::Relaxed),
            items: self.report_reads.items.load(Ordering::Relaxed),
            capacity_units: (milli > 0).then(|| milli as f64 / 1000.0),
        }
    }

    /// Adds one page of a report read to [`DynamoStore::report_reads`].
    fn count_report_page(
        &self,
        items: i32,
        consumed: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>,
    ) {
        let reads = &self.report_reads;
        reads.queries.fetch_add(1, Ordering::Relaxed);
        reads
            .items
            .fetch_add(u64::try_from(items).unwrap_or(0), Ordering::Relaxed);
        if let Some(units) = consumed.and_then(|c| c.capacity_units) {
            reads
                .capacity_milli
                .fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
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
                Some(actual) if actual == expected => StoreError::Stale(id.to_owned()),
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

    /// The items stored under `keys` (distinct), consistently read, in no particular order;
    /// keys without an item are left out. BatchGetItem's chunks and its unprocessed keys
    /// (throttling) are handled here, with a backoff; `what` names them in an error.
    async fn batch_get(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        what: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let mut round = 0;
            loop {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                found.extend(
                    output
                        .responses
                        .and_then(|mut tables| tables.remove(&self.table))
                        .unwrap_or_default(),
                );
                // Throttled keys come back unprocessed: ask again for those, with a backoff.
                match output
                    .unprocessed_keys
                    .and_then(|mut tables| tables.remove(&self.table))
                {
                    Some(rest) if !rest.keys.is_empty() => {
                        round += 1;
                        if round > BATCH_GET_ROUNDS {
                            return Err(StoreError::unavailable_because(format!(
                                "{} {what} still unprocessed after {BATCH_GET_ROUNDS} retries",
                                rest.keys.len()
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(25 << round)).await;
                        request = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// Sets a counter to zero.
    fn counter_reset(&self, name: &str) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(counter_key(name)))
            .update_expression("SET #value = :zero")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(build_error)
    }

    /// Adds one to a counter; with a limit, only while the counter is below it (missing = 0).
    fn counter_bump(&self, bump: &CounterBump) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(counter_key(&bump.name)))
            .update_expression("ADD #value :one")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":one", n(1));
        if let Some(limit) = bump.limit {
            // A missing counter is 0: it may start only if 0 is below the limit.
            let condition = if limit > 0 {
                "attribute_not_exists(#value) OR #value < :limit"
            } else {
                "#value < :limit"
            };
            update = update
                .condition_expression(condition)
                .expression_attribute_values(":limit", n(limit));
        }
        update.build().map_err(build_error)
    }

    /// Replaces a pool ledger if its stored version is still the one read; also returns that.
    fn ledger_put(&self, write: &LedgerWrite) -> Result<(Put, u64), StoreError> {
        let (pool, period) = (&write.pool, &write.period);
        let version = write.ledger.version;
        let (Some(expected), Ok(stored_version)) = (version.checked_sub(1), i64::try_from(version))
        else {
            return Err(StoreError::unavailable_because(format!(
                "invalid request: ledger {pool}/{period} written at version {version}; a write \
                 carries the version read plus one"
            )));
        };
        let body = serde_json::to_string(&write.ledger)
            .map_err(|e| StoreError::Corrupt(format!("ledger {pool}/{period}: {e}")))?;
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(ledger_key(pool, period)))
            .item("version", n(stored_version))
            .item("body", s(body));
        put = if expected == 0 {
            // A missing ledger is version 0; a stored one never is.
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(stored_version - 1))
        };
        Ok((put.build().map_err(build_error)?, expected))
    }

    /// Points a contact at its new open lead, only if the entry still names the lead read.
    fn contact_put(&self, contact: &ContactWrite) -> Result<Put, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(contact_key(&contact.contact)))
            .item("lead_id", s(contact.lead_id.clone()))
            .item("routed_at", n(contact.routed_at.as_millisecond()))
            .item("expires_at", expires(CONTACT_TTL));
        put = match &contact.replaces {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(replaces) => put
                .condition_expression("lead_id = :replaces")
                .expression_attribute_values(":replaces", s(replaces.clone())),
        };
        put.build().map_err(build_error)
    }

    /// The lead an event or body record names, read back after its conditional put failed.
    async fn duplicate_of(&self, pk: String, sk: &str) -> Result<Created, StoreError> {
        let existing = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let lead_id = existing
            .item
            .as_ref()
            .and_then(|i| i.get("lead_id"))
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("{sk} record without lead_id")))?
            .clone();
        let item = self
            .lead_item(&lead_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(lead_id.clone()))?;
        Ok(Created::Duplicate(Box::new(decode(&item)?)))
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
    async fn create_lead_guarded(
        &self,
        lead: &Lead,
        replay: Option<&ReplayGuard>,
    ) -> Result<Created, StoreError> {
        let event_pk = format!("EVENT#{}#{}", lead.source, lead.event_id);
        let captured_at = captured_ms(lead);
        let mut item = lead_key(&lead.id);
        item.insert("state".into(), s(lead.state.as_str()));
        item.insert("body".into(), s(encode_body(lead)?));
        item.insert("captured_at".into(), n(captured_at));
        item.insert("facts".into(), s(encode_facts(lead)?));
        item.insert(
            "report_day".into(),
            s(report_day(
                &lead.id,
                Timestamp::from_millisecond(captured_at).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
        );
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
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(event).build())
            .transact_items(TransactWriteItem::builder().put(put_lead).build());
        let body_pk = replay.map(|r| format!("BODY#{}#{}", lead.source, r.body_sha256));
        if let (Some(replay), Some(body_pk)) = (replay, &body_pk) {
            // TTL deletion lags by days: an expired record is replaced, not a duplicate.
            let body = Put::builder()
                .table_name(&self.table)
                .item("pk", s(body_pk.clone()))
                .item("sk", s("BODY"))
                .item("lead_id", s(lead.id.clone()))
                .item("expires_at", n(replay.expires_at.as_second()))
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(replay.now.as_second()))
                .build()
                .map_err(build_error)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().put(body).build());
        }
        let error = match transaction.send().await {
            Ok(_) => return Ok(Created::New),
            Err(error) => error,
        };
        let codes = cancellation_codes(&error).unwrap_or_default();
        let failed = |index: usize| {
            codes
                .get(index)
                .cloned()
                .flatten()
                .is_some_and(|code| code == "ConditionalCheckFailed")
        };
        // The event id first, so a retry of one event names its own lead.
        let (pk, sk) = match (failed(0), failed(2), body_pk) {
            (true, _, _) => (event_pk, "EVENT"),
            (false, true, Some(body_pk)) => (body_pk, "BODY"),
            _ => return Err(unavailable(error)),
        };
        self.duplicate_of(pk, sk).await
    }

    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, StoreError> {
        self.lead_item(id).await?.as_ref().map(decode).transpose()
    }

    async fn advance_lead(
        &self,
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let next_revision = lead.revision + 1;
        let mut values = HashMap::from([
            (":to".to_owned(), s(lead.state.as_str())),
            (":from".to_owned(), s(from.as_str())),
            (":body".to_owned(), s(encode_body_at(lead, next_revision)?)),
            (
                ":rev".to_owned(),
                AttributeValue::N(lead.revision.to_string()),
            ),
            (
                ":next".to_owned(),
                AttributeValue::N(next_revision.to_string()),
            ),
        ]);
        // The report index's attributes with every write, so an item written before it
        // existed joins it on its next write.
        let captured_at = captured_ms(lead);
        values.insert(":facts".into(), s(encode_facts(lead)?));
        values.insert(":captured".into(), n(captured_at));
        values.insert(
            ":day".into(),
            s(report_day(
                &lead.id,
                Timestamp::from_millisecond(captured_at).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
        );
        let mut expression = "SET #state = :to, #body = :body, #rev = :next, facts = :facts, \
                              report_day = :day, captured_at = if_not_exists(captured_at, :captured)"
            .to_owned();
        match lead.sla_watch_at() {
            // Sparse index: only leads sla-watch must look at carry these two attributes.
            Some(due) => {
                expression.push_str(", sla_shard = :shard, sla_due_at = :due");
                values.insert(":shard".into(), s(sla_shard(&lead.id)));
                values.insert(":due".into(), n(due.as_millisecond()));
            }
            None => expression.push_str(" REMOVE sla_shard, sla_due_at"),
        }
        let names = HashMap::from([
            ("#state".to_owned(), "state".to_owned()),
            ("#body".to_owned(), "body".to_owned()),
            ("#rev".to_owned(), "revision".to_owned()),
        ]);
        // Leads written before revisions existed have none: they read as revision 0.
        let condition = if lead.revision == 0 {
            "#state = :from AND (attribute_not_exists(#rev) OR #rev = :rev)"
        } else {
            "#state = :from AND #rev = :rev"
        };

        if effects.counters.is_empty()
            && effects.ledgers.is_empty()
            && effects.releases.is_empty()
            && effects.contact.is_none()
            && effects.resets.is_empty()
        {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(lead_key(&lead.id)))
                .update_expression(expression)
                .condition_expression(condition)
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

        // One transaction: the lead first (its index decides Conflict), then every guard.
        let update_lead = Update::builder()
            .table_name(&self.table)
            .set_key(Some(lead_key(&lead.id)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_error)?;
        let mut guards = vec![Guard::Lead];
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update_lead).build());
        for bump in &effects.counters {
            let item = TransactWriteItem::builder()
                .update(self.counter_bump(bump)?)
                .build();
            transaction = transaction.transact_items(item);
            guards.push(Guard::Counter {
                name: bump.name.clone(),
                limit: bump.limit,
            });
        }
        for name in &effects.releases {
            // Never below zero: the caller closes without the release when this refuses.
            let release = Update::builder()
                .table_name(&self.table)
                .set_key(Some(counter_key(name)))
                .update_expression("ADD #value :minus_one")
                .condition_expression("#value > :zero")
                .expression_attribute_names("#value", "value")
                .expression_attribute_values(":minus_one", n(-1))
                .expression_attribute_values(":zero", n(0))
                .build()
                .map_err(build_error)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().update(release).build());
            guards.push(Guard::Release { name: name.clone() });
        }
        for write in &effects.ledgers {
            let (put, expected) = self.ledger_put(write)?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
            guards.push(Guard::Ledger {
                pool: write.pool.clone(),
                period: write.period.clone(),
                expected,
            });
        }
        if let Some(contact) = &effects.contact {
            let put = self.contact_put(contact)?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
            guards.push(Guard::Contact {
                contact: contact.contact.clone(),
            });
        }
        for name in &effects.resets {
            transaction = transaction.transact_items(
                TransactWriteItem::builder()
                    .update(self.counter_reset(name)?)
                    .build(),
            );
            guards.push(Guard::Reset { name: name.clone() });
        }
        let error = match transaction.send().await {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let Some(codes) = cancellation_codes(&error) else {
            return Err(unavailable(error));
        };
        let failed = |wanted: &str| {
            codes
                .iter()
                .zip(&guards)
                .find(|(code, _)| code.as_deref() == Some(wanted))
                .map(|(_, guard)| guard)
        };
        // DynamoDB reports every item whose condition failed; the lead's state comes first.
        match failed("ConditionalCheckFailed") {
            Some(Guard::Lead) => return Err(self.conflict(&lead.id, from).await),
            Some(guard) => return Err(StoreError::Contended(guard.refused())),
            None => {}
        }
        // A concurrent transaction on one of the items: nothing was written, decide again.
        if let Some(guard) = failed("TransactionConflict") {
            return Err(StoreError::Contended(guard.busy(&lead.id)));
        }
        Err(unavailable(error))
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

    async fn clear_failure(&self, lead_id: &str, seen: &StageFailure) -> Result<(), StoreError> {
        // Stored as this same serialisation by record_failure, so equal text is the same
        // failure; a failure recorded since the read no longer matches and stays.
        let text = serde_json::to_string(seen).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lead_key(lead_id)))
            .update_expression("REMOVE last_failure")
            .condition_expression("last_failure = :seen")
            .expression_attribute_values(":seen", s(text))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
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

    async fn record_posted(
        &self,
        lead_id: &str,
        receipt: &str,
        message: &PostedMessage,
    ) -> Result<(), StoreError> {
        // Beside the lead's delivery receipts, for as long as they are kept.
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("LEAD#{lead_id}")))
            .item("sk", s(format!("{POSTED_PREFIX}{receipt}")))
            .item("channel", s(message.channel.clone()))
            .item("ts", s(message.ts.clone()))
            .item("expires_at", expires(RECEIPT_TTL))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delivery_receipts(&self, lead_id: &str) -> Result<Vec<DeliveryReceipt>, StoreError> {
        let mut receipts = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :delivery)")
            .expression_attribute_values(":pk", s(format!("LEAD#{lead_id}")))
            .expression_attribute_values(":delivery", s("DELIVERY#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            let channel = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| sk.strip_prefix("DELIVERY#"))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("a receipt of lead {lead_id} has no channel"))
                })?
                .to_owned();
            let at =
                |name: &str| number(&item, name).and_then(|m| Timestamp::from_millisecond(m).ok());
            receipts.push(DeliveryReceipt {
                channel,
                delivered_at: at("delivered_at"),
                lease_until: at("lease_until"),
            });
        }
        // The sort key orders them by channel already; said, not assumed.
        receipts.sort_by(|a, b| a.channel.cmp(&b.channel));
        Ok(receipts)
    }

    async fn posted_messages(&self, lead_id: &str) -> Result<Vec<PostedMessage>, StoreError> {
        let mut posted = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :posted)")
            .expression_attribute_values(":pk", s(format!("LEAD#{lead_id}")))
            .expression_attribute_values(":posted", s(POSTED_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            match (text("channel"), text("ts")) {
                (Some(channel), Some(ts)) => posted.push(PostedMessage { channel, ts }),
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "a posted message of lead {lead_id} has no channel or ts"
                    )))
                }
            }
        }
        Ok(posted)
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
            .set_key(Some(counter_key(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        item.map_or(Ok(0), |item| counter_value(name, &item))
    }

    async fn counters(&self, names: &[String]) -> Result<Vec<i64>, StoreError> {
        // BatchGetItem refuses duplicate keys: ask for each name once.
        let mut unique: Vec<&str> = names.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let keys = unique.iter().map(|name| counter_key(name)).collect();
        let mut found: HashMap<String, i64> = HashMap::with_capacity(unique.len());
        for item in self.batch_get(keys, "counters").await? {
            let name = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("COUNTER#"))
                .ok_or_else(|| StoreError::Corrupt("counter item without a name".into()))?
                .to_owned();
            let value = counter_value(&name, &item)?;
            found.insert(name, value);
        }
        Ok(names
            .iter()
            .map(|name| found.get(name).copied().unwrap_or(0))
            .collect())
    }

    async fn ledger(&self, pool: &str, period: &str) -> Result<PoolLedger, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(ledger_key(pool, period)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        let Some(item) = item else {
            return Ok(PoolLedger::default());
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("ledger {pool}/{period}: {what}"));
        let mut ledger: PoolLedger = json_body(&item, &format!("ledger {pool}/{period}"))?;
        // The attribute is what the version guard compares, so it is the one to trust.
        ledger.version = number::<i64>(&item, "version")
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| corrupt("no valid version"))?;
        Ok(ledger)
    }

    async fn open_lead_for_contact(
        &self,
        contact: &str,
        since: Timestamp,
    ) -> Result<ContactLookup, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(contact_key(contact)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        let indexed = match item {
            None => None,
            Some(item) => Some(
                item.get("lead_id")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| StoreError::Corrupt("contact entry without lead_id".into()))?
                    .clone(),
            ),
        };
        // A quarantined lead is no merge target: the new lead routes on its own.
        let lead = match &indexed {
            Some(id) => skip_undecodable(self.get_lead(id).await.transpose())?.pop(),
            None => None,
        };
        Ok(ContactLookup::judge(indexed, lead, since))
    }

    /// Queries each shard of the sparse `open_sla` index for deadlines at or before `now`,
    /// then reads those leads (strongly consistent: the index lags the table, so a lead claimed
    /// a moment ago is dropped here rather than escalated).
    async fn due_leads(&self, now: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let page_limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let shards = (0..SLA_SHARDS).map(|shard| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("open_sla")
                .key_condition_expression("sla_shard = :shard AND sla_due_at <= :now")
                .expression_attribute_values(":shard", s(format!("SLA#{shard}")))
                .expression_attribute_values(":now", n(now.as_millisecond()))
                .limit(page_limit)
                .send()
        });
        let mut due: Vec<(i64, String)> = Vec::new();
        for page in futures::future::join_all(shards).await {
            for item in page.map_err(unavailable)?.items.unwrap_or_default() {
                let id = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.strip_prefix("LEAD#"))
                    .ok_or_else(|| StoreError::Corrupt("index entry without a lead id".into()))?;
                due.push((number(&item, "sla_due_at").unwrap_or(0), id.to_owned()));
            }
        }
        due.sort();
        due.truncate(limit);
        let mut leads = Vec::with_capacity(due.len());
        for (_, id) in due {
            // A quarantined lead is skipped with a warning, not the end of the sweep.
            for lead in skip_undecodable(self.get_lead(&id).await.transpose())? {
                if lead.sla_watch_at().is_some_and(|at| at <= now) {
                    leads.push(lead);
                }
            }
        }
        Ok(leads)
    }

    async fn reset_counter(&self, name: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(name)))
            .update_expression("SET #value = :zero")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_counter(&self, name: &str, value: i64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(name)))
            .update_expression("SET #value = :value")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":value", n(value))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn keep_unmatched(&self, event: &UnmatchedActivity) -> Result<bool, StoreError> {
        let received = event.activity.received_at;
        let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("UNMATCHEDKEY#{}", event.activity.key)))
            .item("sk", s("UNMATCHEDKEY"))
            .item("expires_at", expires(UNMATCHED_TTL))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let kept = Put::builder()
            .table_name(&self.table)
            .item("pk", s(unmatched_day_pk(received)))
            .item(
                "sk",
                s(format!(
                    "{:013}#{}",
                    received.as_millisecond().max(0),
                    event.activity.key
                )),
            )
            .item("body", s(body))
            .item("expires_at", expires(UNMATCHED_TTL))
            .build()
            .map_err(build_error)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(TransactWriteItem::builder().put(kept).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(error) => {
                let replay = cancellation_codes(&error)
                    .and_then(|codes| codes.first().cloned().flatten())
                    .is_some_and(|code| code == "ConditionalCheckFailed");
                if replay {
                    Ok(false)
                } else {
                    Err(unavailable(error))
                }
            }
        }
    }

    /// One query per UTC day from `since` to today: never a scan.
    async fn unmatched_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<UnmatchedActivity>, StoreError> {
        let mut found = Vec::new();
        let now = Timestamp::now();
        // Nothing older is kept: do not query the days before.
        let kept_for =
            jiff::SignedDuration::try_from(UNMATCHED_TTL).unwrap_or(jiff::SignedDuration::ZERO);
        let since = since.max(now.saturating_sub(kept_for).unwrap_or(since));
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        let mut day = since.to_zoned(jiff::tz::TimeZone::UTC).date();
        while day <= today && found.len() < limit {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :day AND sk >= :from")
                    .expression_attribute_values(":day", s(format!("UNMATCHED#{day}")))
                    .expression_attribute_values(
                        ":from",
                        s(format!("{:013}", since.as_millisecond().max(0))),
                    )
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in page.items.unwrap_or_default() {
                    found.push(json_body(&item, "unmatched event")?);
                }
                start = page.last_evaluated_key;
                if start.is_none() || found.len() >= limit {
                    break;
                }
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        found.truncate(limit);
        Ok(found)
    }

    /// One query per UTC day of the window and shard of the `by_capture_day` index, which
    /// projects the facts: never a scan, and no lead item is read.
    async fn lead_facts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LeadFacts>, StoreError> {
        let mut facts = Vec::new();
        if to <= from {
            return Ok(facts);
        }
        let utc = |at: Timestamp| at.to_zoned(jiff::tz::TimeZone::UTC).date();
        // The window's last instant: `to` is exclusive, BETWEEN is not.
        let until = to.as_millisecond() - 1;
        let last_instant = Timestamp::from_millisecond(until).unwrap_or(to);
        let (first, last) = (utc(from), utc(last_instant));
        let mut day = first;
        while day <= last {
            let shards = (0..REPORT_SHARDS).map(|shard| {
                let partition = format!("{day}#{shard}");
                async move {
                    let mut found = Vec::new();
                    let mut start = None;
                    loop {
                        let page = self
                            .client
                            .query()
                            .table_name(&self.table)
                            .index_name("by_capture_day")
                            .key_condition_expression(
                                "report_day = :day AND captured_at BETWEEN :from AND :to",
                            )
                            .expression_attribute_values(":day", s(partition.clone()))
                            .expression_attribute_values(":from", n(from.as_millisecond()))
                            .expression_attribute_values(":to", n(until))
                            .return_consumed_capacity(
                                aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total,
                            )
                            .set_exclusive_start_key(start)
                            .send()
                            .await
                            .map_err(unavailable)?;
                        self.count_report_page(page.count, page.consumed_capacity.as_ref());
                        for item in page.items.unwrap_or_default() {
                            let text =
                                item.get("facts")
                                    .and_then(|v| v.as_s().ok())
                                    .ok_or_else(|| {
                                        StoreError::Corrupt(
                                            "report index entry without facts".into(),
                                        )
                                    })?;
                            let one: LeadFacts = serde_json::from_str(text)
                                .map_err(|e| StoreError::Corrupt(format!("lead facts: {e}")))?;
                            found.push(one);
                        }
                        start = page.last_evaluated_key;
                        if start.is_none() {
                            return Ok::<_, StoreError>(found);
                        }
                    }
                }
            });
            for shard in futures::future::join_all(shards).await {
                facts.extend(shard?);
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        Ok(facts)
    }

    /// From the report-hour items where the table's stream keeps them
    /// ([`DynamoStore::with_report_buckets`]); `None` otherwise.
    async fn report_hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<Vec<leadrelay_shared::ports::ReportHour>>, StoreError> {
        match self.report_buckets {
            Some(_) => self.stored_report_hours(from, to).await.map(Some),
            None => Ok(None),
        }
    }

    async fn put_report_hours(
        &self,
        built: &[leadrelay_shared::ports::BuiltHour],
    ) -> Result<usize, StoreError> {
        match self.report_buckets {
            Some(settle) => self.keep_report_hours(built, settle).await,
            None => Ok(0),
        }
    }

    /// An operator tool (`rules diff`), not a hot path: it scans the whole table, keeping only
    /// the `limit` oldest matches in memory.
    async fn leads_since(&self, since: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut found: Vec<(i64, String, HashMap<String, AttributeValue>)> = Vec::new();
        let mut start = None;
        loop {
            // captured_at is stored in milliseconds, so `since` counts to the millisecond.
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :lead AND captured_at >= :since")
                .expression_attribute_values(":lead", s("LEAD"))
                .expression_attribute_values(":since", n(since.as_millisecond()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items.unwrap_or_default() {
                let id = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.strip_prefix("LEAD#"))
                    .ok_or_else(|| StoreError::Corrupt("lead item without an id".into()))?
                    .to_owned();
                let captured = number(&item, "captured_at").ok_or_else(|| {
                    StoreError::Corrupt(format!("lead {id} has no valid captured_at"))
                })?;
                found.push((captured, id, item));
            }
            if found.len() > limit.saturating_mul(2) {
                keep_oldest(&mut found, limit);
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        keep_oldest(&mut found, limit);
        skip_undecodable(found.iter().map(|(_, _, item)| decode(item)))
    }

    /// The `by_capture_day` index read newest first, day by day from today back to `since`
    /// (each of a day's shards, at most `limit` keys each), then the newest `limit` leads
    /// fetched by key: no scan, whatever the table's size.
    async fn recent_leads(&self, since: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError> {
        let page_size = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let utc = |at: Timestamp| at.to_zoned(jiff::tz::TimeZone::UTC).date();
        let first = utc(since);
        // From tomorrow: a lead stamped by a clock a little ahead of this one is still found.
        let mut day = utc(Timestamp::now().max(since) + std::time::Duration::from_secs(86_400));
        let mut newest: Vec<(i64, String)> = Vec::new();
        while day >= first && newest.len() < limit {
            let shards = (0..REPORT_SHARDS).map(|shard| {
                let partition = format!("{day}#{shard}");
                async move {
                    let page = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name("by_capture_day")
                        .key_condition_expression("report_day = :day AND captured_at >= :since")
                        .expression_attribute_values(":day", s(partition))
                        .expression_attribute_values(":since", n(since.as_millisecond()))
                        .scan_index_forward(false)
                        .limit(page_size)
                        .send()
                        .await
                        .map_err(unavailable)?;
                    page.items
                        .unwrap_or_default()
                        .into_iter()
                        .map(|item| {
                            let id = item
                                .get("pk")
                                .and_then(|v| v.as_s().ok())
                                .and_then(|pk| pk.strip_prefix("LEAD#"))
                                .ok_or_else(|| {
                                    StoreError::Corrupt("report index entry without a lead".into())
                                })?
                                .to_owned();
                            let captured = number(&item, "captured_at").unwrap_or_default();
                            Ok((captured, id))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                }
            });
            for found in futures::future::join_all(shards).await {
                newest.extend(found?);
            }
            match day.yesterday() {
                Ok(before) => day = before,
                Err(_) => break,
            }
        }
        newest.sort_unstable_by(|a, b| b.cmp(a));
        newest.truncate(limit);
        let keys = newest.iter().map(|(_, id)| lead_key(id)).collect();
        let items = self.batch_get(keys, "leads").await?;
        let mut leads = skip_undecodable(items.iter().map(decode))?;
        leads.sort_unstable_by(|a, b| {
            (b.timeline.captured_at, &b.id).cmp(&(a.timeline.captured_at, &a.id))
        });
        Ok(leads)
    }
}

#[async_trait]
impl EnrichmentCache for DynamoStore {
    async fn cached(&self, key: &str, now: Timestamp) -> Result<Option<String>, StoreError> {
        // An eventually consistent read: a stale miss costs one lookup, at half the price.
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(cache_key(key)))
            .send()
            .await
            .map_err(unavailable)?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        // DynamoDB deletes expired items up to days late: expiry is checked here too.
        if number::<i64>(&item, "expires_at").is_none_or(|at| at <= now.as_second()) {
            return Ok(None);
        }
        Ok(item
            .get("value")
            .and_then(|v| v.as_s().ok())
            .map(String::to_owned))
    }

    async fn cache(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        let mut item = cache_key(key);
        item.insert("value".into(), s(value));
        item.insert("expires_at".into(), n(expires_at.as_second()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl ConsoleStore for DynamoStore {
    async fn start_session(&self, session: &Session) -> Result<(), StoreError> {
        let body =
            serde_json::to_string(session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = session_key(&session.key);
        item.insert("body".into(), s(body));
        // TTL counts whole seconds: rounded up, so the item outlives the session, never less.
        let end = session.expires_at;
        let ttl = end.as_second() + i64::from(end.subsec_nanosecond() > 0);
        item.insert("expires_at".into(), n(ttl));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn session(&self, key: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        // Strongly consistent: a session started a moment ago on another instance opens here.
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(session_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let session: Session = json_body(&item, "console session")?;
        // DynamoDB deletes expired items up to days late: expiry is checked here too.
        Ok(session.is_live(now).then_some(session))
    }

    async fn end_session(&self, key: &str) -> Result<(), StoreError> {
        // Deleting a missing item succeeds: signing out twice is not an error.
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(session_key(key)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_action(&self, action: &ConsoleAction) -> Result<(), StoreError> {
        let body = serde_json::to_string(action).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let day = action.at.to_zoned(jiff::tz::TimeZone::UTC).date();
        // A random suffix keeps two entries of one millisecond apart.
        let sk = format!(
            "{}#{}",
            audit_instant(action.at),
            uuid::Uuid::new_v4().simple()
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{AUDIT_PREFIX}{day}")))
            .item("sk", s(sk))
            .item("body", s(body))
            .item("expires_at", expires(AUDIT_TTL))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// One query per UTC day, from today back to `since`'s day, newest first, until `limit`
    /// entries are found: never a scan.
    async fn actions_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConsoleAction>, StoreError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let now = Timestamp::now();
        // Nothing older is kept: do not query the days before.
        let kept_for =
            jiff::SignedDuration::try_from(AUDIT_TTL).unwrap_or(jiff::SignedDuration::ZERO);
        let oldest = since.max(now.saturating_sub(kept_for).unwrap_or(since));
        let first = oldest.to_zoned(jiff::tz::TimeZone::UTC).date();
        let mut day = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        // Keys of `since`'s millisecond and after; its entries before `since` are skipped below.
        let from = audit_instant(since);
        while day >= first && found.len() < limit {
            let mut start = None;
            loop {
                let wanted = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :day AND sk >= :from")
                    .expression_attribute_values(":day", s(format!("{AUDIT_PREFIX}{day}")))
                    .expression_attribute_values(":from", s(from.clone()))
                    .scan_index_forward(false)
                    .limit(wanted)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in page.items.unwrap_or_default() {
                    let action: ConsoleAction = json_body(&item, "console audit entry")?;
                    if action.at >= since && found.len() < limit {
                        found.push(action);
                    }
                }
                start = page.last_evaluated_key;
                if start.is_none() || found.len() >= limit {
                    break;
                }
            }
            let Ok(previous) = day.yesterday() else { break };
            day = previous;
        }
        Ok(found)
    }
}

/// Sorts by captured time (then id, for a stable order) and keeps the first `limit`.
fn keep_oldest(found: &mut Vec<(i64, String, HashMap<String, AttributeValue>)>, limit: usize) {
    found.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    found.truncate(limit);
}
