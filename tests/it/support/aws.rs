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
        Deployment {
            store: DynamoStore::new(self.dynamodb(), &name),
            queues: SqsQueues::new(self.sqs(), urls.clone()),
            table: name,
            urls,
        }
    }
}
