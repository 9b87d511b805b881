//! The AWS adapters against moto server (started by `make test` through scripts/with-moto.sh).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use leadrelay_aws::provision::{create_queues, create_table};
use leadrelay_aws::{DynamoStore, QueueUrls, SqsQueues};

/// A moto server to talk to.
pub struct Moto {
    pub sdk: SdkConfig,
    pub endpoint: String,
}

/// A fresh table and fresh queues (unique names), ready for the adapters.
pub struct Deployment {
    pub table: String,
    pub urls: QueueUrls,
    pub store: DynamoStore,
    pub queues: SqsQueues,
    /// The table's stream, as the report-hours function's event source mapping reads it.
    pub report_stream: ReportStream,
}

/// The report-hours function's event source mapping, played by the test: reads the table's
/// stream from moto with the DynamoDB Streams API (raw JSON, as Lambda's poller gets it),
/// and hands each batch, wrapped as the Lambda event, to the function's handler code.
#[derive(Clone)]
pub struct ReportStream {
    endpoint: String,
    table: String,
    store: DynamoStore,
    /// Each shard's last record handed over, as a checkpoint (moto's iterators do not survive
    /// a cancelled transaction, which replaces its table objects): records are handed once.
    checkpoints: std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl ReportStream {
    async fn call(&self, target: &str, body: serde_json::Value) -> serde_json::Value {
        let response = super::http_client()
            .post(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", target)
            // moto reads the service and region from the credential scope; it checks no
            // signature.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20261126/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers");
        let status = response.status();
        let answer: serde_json::Value = response.json().await.expect("JSON");
        assert!(status.is_success(), "{target}: {status} {answer}");
        answer
    }

    /// The stream records written since the last call, as the Lambda event the report-hours
    /// function gets (`{"Records": [...]}`, each record with its `eventSourceARN`), at most
    /// `limit`; `None` when there are none.
    pub async fn next_event(&self, limit: usize) -> Option<serde_json::Value> {
        let mut checkpoints = self.checkpoints.lock().await;
        let table = self
            .call(
                "DynamoDB_20120810.DescribeTable",
                serde_json::json!({ "TableName": self.table }),
            )
            .await;
        let arn = table["Table"]["LatestStreamArn"]
            .as_str()
            .expect("the table has a stream")
            .to_owned();
        let stream = self
            .call(
                "DynamoDBStreams_20120810.DescribeStream",
                serde_json::json!({ "StreamArn": arn }),
            )
            .await;
        for shard in stream["StreamDescription"]["Shards"]
            .as_array()
            .expect("shards")
        {
            let shard_id = shard["ShardId"].as_str().expect("shard id").to_owned();
            let start = match checkpoints.get(&shard_id) {
                Some(last) => serde_json::json!({
                    "StreamArn": arn,
                    "ShardId": shard_id,
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": last,
                }),
                None => serde_json::json!({
                    "StreamArn": arn,
                    "ShardId": shard_id,
                    "ShardIteratorType": "TRIM_HORIZON",
                }),
            };
            let iterator = self
                .call("DynamoDBStreams_20120810.GetShardIterator", start)
                .await["ShardIterator"]
                .as_str()
                .expect("iterator")
                .to_owned();
            let page = self
                .call(
                    "DynamoDBStreams_20120810.GetRecords",
                    serde_json::json!({ "ShardIterator": iterator, "Limit": limit }),
                )
                .await;
            let mut records = page["Records"].as_array().cloned().unwrap_or_default();
            let Some(last) = records.last() else { continue };
            let last = last["dynamodb"]["SequenceNumber"]
                .as_str()
                .expect("sequence number");
            checkpoints.insert(shard_id.clone(), last.to_owned());
            for record in &mut records {
                record["eventSourceARN"] = serde_json::Value::String(arn.clone());
            }
            return Some(serde_json::json!({ "Records": records }));
        }
        None
    }

    /// Hands every stream record written since the last call to the handler's code, in
    /// batches of up to 100; returns how many records there were.
    pub async fn pump(&self) -> usize {
        let mut handed = 0;
        while let Some(event) = self.next_event(100).await {
            let event: aws_lambda_events::dynamodb::Event =
                serde_json::from_value(event).expect("the stream's records are a Lambda event");
            handed += event.records.len();
            let hours = leadrelay_aws::dynamo::report_hours::lead_writes_per_hour(&event);
            self.store
                .bump_report_hours(&hours, jiff::Timestamp::now())
                .await
                .expect("bumped");
        }
        handed
    }
}

/// Connects to the moto server named by LEADRELAY_MOTO_URL, with fixed dummy credentials
/// (the credential chain never probes a metadata address).
pub async fn moto() -> Moto {
    let endpoint = std::env::var("LEADRELAY_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "LEADRELAY_MOTO_URL is not set: run the suite with `make test`, which installs \
             and starts moto server (or scripts/with-moto.sh cargo test)"
        )
    });
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(leadrelay_aws::https_client())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    Moto { sdk, endpoint }
}

impl Moto {
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk)
    }

    pub async fn deploy(&self, max_receives: u32, visibility_secs: u32) -> Deployment {
        let name = format!("leadrelay-{}", uuid::Uuid::new_v4().simple());
        create_table(&self.dynamodb(), &name).await.expect("table");
        let urls = create_queues(&self.sqs(), &name, max_receives, visibility_secs)
            .await
            .expect("queues");
        let store = DynamoStore::new(self.dynamodb(), &name);
        Deployment {
            report_stream: ReportStream {
                endpoint: self.endpoint.clone(),
                table: name.clone(),
                store: store.clone(),
                checkpoints: Default::default(),
            },
            store,
            queues: SqsQueues::new(self.sqs(), urls.clone()),
            table: name,
            urls,
        }
    }
}
