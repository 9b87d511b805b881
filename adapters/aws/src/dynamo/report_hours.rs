//! The dashboard's report buckets on DynamoDB: one item per UTC capture hour, in one
//! partition per UTC month (`REPORTHOURS#2026-11`, sort key `HOUR#0000493122`), holding the
//! hour's generation and its bucket ([`leadrelay_shared::ports::ReportHour`]).
//!
//! The SQLite store moves an hour's generation in the same transaction as every write of a
//! lead's facts. Here that would put one item of every hour into every lead write's
//! `TransactWriteItems`, and concurrent transactions on one item are cancelled, not queued:
//! the lead writes of a busy hour would fail each other. So the generation moves after the
//! write instead: the report-hours function reads the table's stream (at least once, in
//! order per lead, retried until it succeeds) and adds each batch's lead writes per hour
//! ([`DynamoStore::bump_report_hours`]). Until its bump lands, a bucket built before a write
//! reads as current: the dashboard lags by the stream's delay (about a second).
//!
//! The facts a bucket is built from come from the `by_capture_day` index, which may lag the
//! write a bump follows; a bucket is therefore not kept while its hour's last bump is younger
//! than the store's settle time, and that hour is rebuilt at each read until it is.
//!
//! The hours of leads written before the stream existed have no item: a month is listed from
//! the capture index once, the first time a window reaches it, and marked `COMPLETE`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt as _, TryStreamExt as _};
use jiff::civil::Date;
use jiff::Timestamp;
use leadrelay_shared::ports::{BuiltHour, ReportBucket, ReportHour, StoreError};
use leadrelay_shared::report::rollup::{hour_of, hour_start, hours_overlapping};

use super::{is_conditional_failure, n, number, s, unavailable, DynamoStore, REPORT_SHARDS};

const PARTITION_PREFIX: &str = "REPORTHOURS#";
const HOUR_PREFIX: &str = "HOUR#";
/// The sort key of a month's marker: its hours of leads older than the stream are listed.
const COMPLETE: &str = "COMPLETE";
/// A bucket larger than this (DynamoDB's item limit is 400 KB) is not kept: its hour (some
/// 10,000 leads) is rebuilt from its facts at each read instead.
pub const MAX_BUCKET_BYTES: usize = 350 * 1024;
/// Writes (and capture-index queries) in flight at once.
const IN_FLIGHT: usize = 16;
/// The hours one query of a month's partition reads (a week).
const HOURS_PER_QUERY: usize = 7 * 24;

/// The lead writes of a stream batch, counted per capture hour: every inserted or modified
/// lead item (`pk` `LEAD#…`, `sk` `LEAD`, with a `captured_at`); other items (a lead's
/// delivery receipts share its `pk`) and removals are not lead writes. Needs the stream's new images (`NEW_IMAGE` or `NEW_AND_OLD_IMAGES`).
pub fn lead_writes_per_hour(event: &StreamEvent) -> BTreeMap<i64, u64> {
    let mut hours = BTreeMap::new();
    for record in &event.records {
        if record.event_name == "REMOVE" {
            continue;
        }
        let image = &record.change.new_image;
        let is_lead = matches!(
            (image.get("pk"), image.get("sk")),
            (
                Some(serde_dynamo::AttributeValue::S(pk)),
                Some(serde_dynamo::AttributeValue::S(sk)),
            ) if pk.starts_with("LEAD#") && sk == "LEAD"
        );
        let captured = match image.get("captured_at") {
            Some(serde_dynamo::AttributeValue::N(ms)) => ms.parse::<i64>().ok(),
            _ => None,
        }
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
        if let (true, Some(at)) = (is_lead, captured) {
            *hours.entry(hour_of(at)).or_default() += 1;
        }
    }
    hours
}

/// `2026-11`: the month partition `hour` is kept in; `None` for an hour out of range.
fn month_of(hour: i64) -> Option<Date> {
    let start = hour_start(hour)?;
    Some(
        start
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .first_of_month(),
    )
}

/// The first and last hour of `month`.
fn month_hours(month: Date) -> Result<(i64, i64), StoreError> {
    let start = |date: Date| {
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|zoned| hour_of(zoned.timestamp()))
            .map_err(|e| StoreError::Corrupt(format!("report month: {e}")))
    };
    let next = month
        .checked_add(jiff::Span::new().months(1))
        .map_err(|e| StoreError::Corrupt(format!("report month: {e}")))?;
    Ok((start(month)?, start(next)? - 1))
}

fn partition(month: Date) -> String {
    format!("{PARTITION_PREFIX}{}", month.strftime("%Y-%m"))
}

/// Hours before the epoch have no item (their sort keys would not order).
fn sort_key(hour: i64) -> String {
    format!("{HOUR_PREFIX}{hour:010}")
}

fn hour_key(hour: i64) -> Option<HashMap<String, AttributeValue>> {
    (hour >= 0).then_some(())?;
    Some(HashMap::from([
        ("pk".into(), s(partition(month_of(hour)?))),
        ("sk".into(), s(sort_key(hour))),
    ]))
}

/// A report-hour item as [`ReportHour`]; `None` for an item that is not one.
fn decode_hour(item: &HashMap<String, AttributeValue>) -> Option<ReportHour> {
    let hour = item
        .get("sk")?
        .as_s()
        .ok()?
        .strip_prefix(HOUR_PREFIX)?
        .parse()
        .ok()?;
    let bucket = match (
        number(item, "built_generation"),
        number(item, "fingerprint"),
        item.get("bucket").and_then(|b| b.as_b().ok()),
    ) {
        (Some(generation), Some(fingerprint), Some(bytes)) => Some(ReportBucket {
            generation,
            fingerprint,
            bytes: bytes.as_ref().to_vec(),
        }),
        _ => None,
    };
    Some(ReportHour {
        hour,
        generation: number(item, "generation").unwrap_or_default(),
        bucket,
    })
}

impl DynamoStore {
    /// Moves each hour's generation by its count of lead writes and stamps it `now`
    /// ([`lead_writes_per_hour`]); creates the hour's item if it has none. Every hour is
    /// attempted; the first failure is returned (the stream retries the batch, and moving a
    /// generation twice only makes a bucket stale once more).
    pub async fn bump_report_hours(
        &self,
        hours: &BTreeMap<i64, u64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let bumps = hours.iter().filter_map(|(&hour, &writes)| {
            let key = hour_key(hour)?;
            let writes = i64::try_from(writes).unwrap_or(i64::MAX);
            Some(async move {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .update_expression("ADD generation :writes SET bumped_at = :now")
                    .expression_attribute_values(":writes", n(writes))
                    .expression_attribute_values(":now", n(now.as_millisecond()))
                    .send()
                    .await
                    .map(drop)
                    .map_err(unavailable)
            })
        });
        let results: Vec<_> = futures::stream::iter(bumps)
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// [`leadrelay_shared::ports::LeadStore::report_hours`]: one query per week of the
    /// window, all at once, after listing any month not yet listed.
    pub(super) async fn stored_report_hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ReportHour>, StoreError> {
        let (first, end) = hours_overlapping(from, to);
        let (first, last) = (first.max(0), end - 1);
        if last < first {
            return Ok(Vec::new());
        }
        let (Some(mut month), Some(last_month)) = (month_of(first), month_of(last)) else {
            return Ok(Vec::new());
        };
        let mut months = Vec::new();
        while month <= last_month {
            months.push(month);
            month = month
                .checked_add(jiff::Span::new().months(1))
                .map_err(|e| StoreError::Corrupt(format!("report month: {e}")))?;
        }
        let listed = months.into_iter().map(|month| async move {
            self.list_month_once(month).await?;
            // A month's hours are read a week at a time, at once: one partition's pages come
            // one after another, and a busy month's buckets are megabytes.
            let (start, end) = month_hours(month)?;
            let (first, last) = (first.max(start), last.min(end));
            let chunks = (first..=last)
                .step_by(HOURS_PER_QUERY)
                .map(|from| (from, (from + HOURS_PER_QUERY as i64 - 1).min(last)));
            let queries = chunks.map(|(from, to)| self.query_hours(month, from, to));
            futures::future::try_join_all(queries).await
        });
        let mut hours: Vec<ReportHour> = futures::future::try_join_all(listed)
            .await?
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        hours.sort_by_key(|h| h.hour);
        Ok(hours)
    }

    /// The hour items of `month` from `first` to `last` (inclusive; hours of other months are
    /// not in its partition). Eventually consistent: a generation read a moment late only
    /// delays a change (as the stream does), and a bucket built from it is refused, since the
    /// put's condition reads the generation as it is.
    async fn query_hours(
        &self,
        month: Date,
        first: i64,
        last: i64,
    ) -> Result<Vec<ReportHour>, StoreError> {
        let mut hours = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :month AND sk BETWEEN :first AND :last")
            .expression_attribute_values(":month", s(partition(month)))
            .expression_attribute_values(":first", s(sort_key(first)))
            .expression_attribute_values(":last", s(sort_key(last)))
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            self.count_report_page(page.count, page.consumed_capacity.as_ref());
            hours.extend(page.items().iter().filter_map(decode_hour));
        }
        Ok(hours)
    }

    /// Gives every hour of `month` that holds a lead an item, once: from the capture index
    /// (one query per day and shard, reading only `captured_at`), then marks the month. Each
    /// hour listed moves by one, so a bucket kept before (a month listed again after its
    /// marker was deleted, as a repair) is rebuilt.
    async fn list_month_once(&self, month: Date) -> Result<(), StoreError> {
        let marker = HashMap::from([
            ("pk".to_owned(), s(partition(month))),
            ("sk".to_owned(), s(COMPLETE)),
        ]);
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .set_key(Some(marker.clone()))
            .send()
            .await
            .map_err(unavailable)?;
        if found.item.is_some() {
            return Ok(());
        }
        let mut days = Vec::new();
        let mut day = month;
        while day <= month.last_of_month() {
            days.push(day);
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        let partitions: Vec<String> = days
            .iter()
            .flat_map(|day| (0..REPORT_SHARDS).map(move |shard| format!("{day}#{shard}")))
            .collect();
        let hours: BTreeSet<i64> = futures::stream::iter(partitions)
            .map(|partition| self.capture_hours(partition))
            .buffer_unordered(IN_FLIGHT)
            .try_fold(BTreeSet::new(), |mut all, some| async move {
                all.extend(some);
                Ok(all)
            })
            .await?;
        let touches = hours.into_iter().filter_map(|hour| {
            let key = hour_key(hour)?;
            Some(async move {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    // Leads this old are in the index: a bucket may be kept at once.
                    .update_expression(
                        "ADD generation :one SET bumped_at = if_not_exists(bumped_at, :never)",
                    )
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":never", n(0))
                    .send()
                    .await
                    .map(drop)
                    .map_err(unavailable)
            })
        });
        futures::stream::iter(touches)
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        let mut item = marker;
        item.insert("listed_at".into(), n(Timestamp::now().as_millisecond()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        tracing::info!(month = %month.strftime("%Y-%m"), "report hours listed from the capture index");
        Ok(())
    }

    /// The capture hours of one `by_capture_day` partition.
    async fn capture_hours(&self, partition: String) -> Result<BTreeSet<i64>, StoreError> {
        let mut hours = BTreeSet::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_capture_day")
            .key_condition_expression("report_day = :day")
            .expression_attribute_values(":day", s(partition))
            .projection_expression("captured_at")
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            if let Some(at) =
                number(&item, "captured_at").and_then(|ms| Timestamp::from_millisecond(ms).ok())
            {
                hours.insert(hour_of(at));
            }
        }
        Ok(hours)
    }

    /// [`leadrelay_shared::ports::LeadStore::put_report_hours`]: each bucket is written only
    /// where its hour's generation is still the one it was built at and its last bump is at
    /// least `settle` old; an oversized bucket is not kept.
    pub(super) async fn keep_report_hours(
        &self,
        built: &[BuiltHour],
        settle: Duration,
    ) -> Result<usize, StoreError> {
        let settled = Timestamp::now().as_millisecond()
            - i64::try_from(settle.as_millis()).unwrap_or(i64::MAX / 2);
        let mut puts = Vec::with_capacity(built.len());
        for one in built {
            if one.bucket.bytes.len() > MAX_BUCKET_BYTES {
                tracing::warn!(
                    hour = one.hour,
                    bytes = one.bucket.bytes.len(),
                    "report bucket too large to keep: the hour is rebuilt at each read"
                );
                continue;
            }
            if let Some(key) = hour_key(one.hour) {
                puts.push(self.keep_bucket(key, one.bucket.clone(), settled));
            }
        }
        let kept: Vec<usize> = futures::stream::iter(puts)
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(kept.into_iter().sum())
    }

    /// Writes one bucket under [`DynamoStore::keep_report_hours`]'s condition: 1 if kept.
    async fn keep_bucket(
        &self,
        key: HashMap<String, AttributeValue>,
        bucket: ReportBucket,
        settled: i64,
    ) -> Result<usize, StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(
                "SET built_generation = :generation, fingerprint = :fingerprint, #bucket = :bucket",
            )
            // BUCKET is one of DynamoDB's reserved words.
            .expression_attribute_names("#bucket", "bucket")
            .condition_expression("generation = :generation AND bumped_at <= :settled")
            .expression_attribute_values(
                ":generation",
                AttributeValue::N(bucket.generation.to_string()),
            )
            .expression_attribute_values(
                ":fingerprint",
                AttributeValue::N(bucket.fingerprint.to_string()),
            )
            .expression_attribute_values(":bucket", AttributeValue::B(bucket.bytes.into()))
            .expression_attribute_values(":settled", n(settled))
            .send()
            .await;
        match written {
            Ok(_) => Ok(1),
            Err(error) if is_conditional_failure(&error) => Ok(0),
            Err(error) => Err(unavailable(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> StreamEvent {
        serde_json::from_value(json).expect("a stream event")
    }

    fn record(name: &str, image: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "eventID": "1",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1764150000.0,
                "Keys": {"pk": image["pk"], "sk": image["sk"]},
                "NewImage": image,
                "SequenceNumber": "111",
                "SizeBytes": 26,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/2026"
        })
    }

    #[test]
    fn lead_writes_are_counted_per_capture_hour_and_nothing_else_is() {
        let at = |text: &str| text.parse::<Timestamp>().expect("time");
        let lead = |id: &str, captured: &str| {
            serde_json::json!({
                "pk": {"S": format!("LEAD#{id}")},
                "sk": {"S": "LEAD"},
                "captured_at": {"N": at(captured).as_millisecond().to_string()},
                "facts": {"S": "{}"}
            })
        };
        let counter = serde_json::json!({
            "pk": {"S": "COUNTER#rep"}, "sk": {"S": "COUNTER"}, "value": {"N": "3"}
        });
        let receipt = serde_json::json!({
            "pk": {"S": "LEAD#a"}, "sk": {"S": "DELIVERY#slack"}, "delivered_at": {"N": "1"},
            "captured_at": {"N": at("2026-11-26T09:05:00Z").as_millisecond().to_string()}
        });
        let hours = lead_writes_per_hour(&event(serde_json::json!({"Records": [
            record("INSERT", lead("a", "2026-11-26T09:05:00Z")),
            record("MODIFY", lead("a", "2026-11-26T09:05:00Z")),
            record("INSERT", lead("b", "2026-11-26T09:59:59.999Z")),
            record("INSERT", lead("c", "2026-11-26T10:00:00Z")),
            record("INSERT", counter),
            record("INSERT", receipt),
            record("REMOVE", lead("d", "2026-11-26T11:00:00Z")),
        ]})));
        let nine = hour_of(at("2026-11-26T09:00:00Z"));
        assert_eq!(hours, BTreeMap::from([(nine, 3), (nine + 1, 1)]));
    }

    #[test]
    fn an_hour_is_kept_in_its_utc_months_partition_under_a_sort_key_that_orders() {
        let hour = hour_of("2026-11-30T23:30:00Z".parse().expect("time"));
        let key = hour_key(hour).expect("key");
        assert_eq!(key["pk"].as_s().expect("s"), "REPORTHOURS#2026-11");
        assert_eq!(key["sk"].as_s().expect("s"), &format!("HOUR#{hour:010}"));
        let next = hour_key(hour + 1).expect("key");
        assert_eq!(next["pk"].as_s().expect("s"), "REPORTHOURS#2026-12");
        assert!(sort_key(9) < sort_key(10) && sort_key(99_999) < sort_key(100_000));
        assert!(hour_key(-1).is_none());
        let november = month_of(hour).expect("month");
        let (first, last) = month_hours(november).expect("hours");
        assert_eq!(month_of(first), Some(november));
        assert_eq!(month_of(last), Some(november));
        assert_eq!(last, hour);
        assert_eq!(last - first + 1, 30 * 24);
        assert_ne!(month_of(first - 1), Some(november));
    }
}
