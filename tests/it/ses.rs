//! E-mail on AWS: the notify path as the Lambda builds it (bootstrap from SSM) sends through
//! Amazon SES (API v2, raw MIME) against moto. moto keeps what it accepted, with the raw
//! message, and shows it at `/moto-api/data.json` (`ses` → `RawMessage`); the assertions read
//! the real messages from there. A sender SES has not verified is refused (`MessageRejected`),
//! which must reach the stage typed as permanent.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::aws::{moto, Moto};
use crate::support::{example_config, initech_lead, Edit};
use aws_sdk_ssm::types::ParameterType;
use jiff::Timestamp;
use leadrelay_aws::bootstrap::{self, Deployment as Env};
use leadrelay_shared::claim_link;
use leadrelay_shared::model::{Envelope, Lead, LeadState, Stage};
use leadrelay_shared::stages::{Pipeline, StageError};
use mail_parser::MessageParser;
use serde_json::Value;

const SENDER: &str = "alerts@yourco.example";

/// The functions' pipeline on a fresh deployment, with e-mail on (EMEA reps alerted by
/// e-mail) and, when given, `LEADRELAY_SES_FROM`.
async fn pipeline(moto: &Moto, ses_from: Option<&str>) -> Arc<Pipeline> {
    let deployment = moto.deploy(2, 30).await;
    let mut config = example_config()
        .edit("terminal = true", "terminal = false")
        .edit(
            "http_timeout_ms = 5000\n",
            "http_timeout_ms = 5000\n\n[notify.email]\nfrom = \"leadrelay <alerts@yourco.example>\"\n\
             smtp_host = \"smtp.ignored-on-aws.example\"\n",
        );
    for rep in ["bruno", "fatima"] {
        let line = format!("email = \"{rep}@yourco.example\"\n");
        config = config.edit(&line, &format!("{line}alert_email = true\n"));
    }
    let prefix = format!("/{}/", deployment.table);
    moto.ssm()
        .put_parameter()
        .name(format!("{prefix}config"))
        .value(config)
        .r#type(ParameterType::String)
        .send()
        .await
        .expect("put parameter");
    let mut env = HashMap::from([
        (bootstrap::ENV_TABLE.to_owned(), deployment.table.clone()),
        (
            bootstrap::ENV_CONFIG_PARAMETER.to_owned(),
            format!("{prefix}config"),
        ),
    ]);
    if let Some(from) = ses_from {
        env.insert(bootstrap::ENV_SES_FROM.to_owned(), from.to_owned());
    }
    for stage in Stage::ALL {
        env.insert(
            bootstrap::queue_env(stage, false),
            deployment.urls.work[&stage].clone(),
        );
        env.insert(
            bootstrap::queue_env(stage, true),
            deployment.urls.dead[&stage].clone(),
        );
    }
    let env = Env::from_env(|name| env.get(name).cloned()).expect("environment");
    bootstrap::notify_pipeline(&moto.sdk, &env)
        .await
        .expect("the functions' start-up")
}

/// The Initech lead, with markup in the name to prove the HTML part escapes it.
fn uk_lead(id: &str, email: &str) -> Lead {
    let mut lead = initech_lead(id, email, Timestamp::now());
    lead.capture.name = Some("Tom <b>Baker</b>".into());
    lead
}

async fn route_and_notify(pipeline: &Pipeline, lead: &Lead) -> Result<(), StageError> {
    pipeline.store.create_lead(lead).await.expect("stored");
    let route = Envelope::new(&lead.id, Stage::Route, &lead.trace_id).to_json();
    pipeline.handle(Stage::Route, &route).await.expect("routed");
    let notify = Envelope::new(&lead.id, Stage::Notify, &lead.trace_id).to_json();
    pipeline.handle(Stage::Notify, &notify).await.map(|_| ())
}

/// The raw messages moto's SES accepted that mention `needle` (a lead id).
async fn sent_with(moto: &Moto, needle: &str) -> Vec<(String, Vec<String>, String)> {
    let data: Value = crate::support::http_client()
        .get(format!("{}/moto-api/data.json", moto.endpoint))
        .send()
        .await
        .expect("moto data")
        .json()
        .await
        .expect("json");
    data["ses"]["RawMessage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let raw = m["raw_data"].as_str()?;
            raw.contains(needle).then(|| {
                let to = m["destinations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect();
                (
                    m["source"].as_str().unwrap_or("").to_owned(),
                    to,
                    raw.to_owned(),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_function_sends_the_alert_and_the_acknowledgement_through_ses() {
    let moto = moto().await;
    aws_sdk_sesv2::Client::new(&moto.sdk)
        .create_email_identity()
        .email_identity(SENDER)
        .send()
        .await
        .expect("verified sender");
    let pipeline = pipeline(&moto, None).await;
    let id = format!("ses{}", uuid::Uuid::new_v4().simple());
    let prospect = format!("tom.{id}@initech.co.uk");
    route_and_notify(&pipeline, &uk_lead(&id, &prospect))
        .await
        .expect("notified");
    let lead = pipeline
        .store
        .get_lead(&id)
        .await
        .expect("read")
        .expect("lead");
    assert_eq!(lead.state, LeadState::Notified);
    let owner = lead.assignment.expect("owned").owner;
    let rep = pipeline.config.rep(owner.id()).expect("a rep");
    let rep_address = rep.email.clone().expect("address");

    let sent = sent_with(&moto, &id).await;
    assert_eq!(sent.len(), 2, "the rep's alert and the acknowledgement");
    let alert = sent
        .iter()
        .find(|(_, to, _)| to.contains(&rep_address))
        .expect("the alert, addressed to the owner");
    assert_eq!(alert.0, SENDER);
    let message = MessageParser::default()
        .parse(alert.2.as_bytes())
        .expect("MIME");
    assert_eq!(
        message.subject(),
        Some("[Tier 2 · SLA 15 min] Tom <b>Baker</b>, Initech UK")
    );
    let html = message.body_html(0).expect("html part");
    assert!(html.contains("Tom &lt;b&gt;Baker&lt;/b&gt;"), "{html}");
    let text = message.body_text(0).expect("text part");
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Claim this lead: "))
        .expect("claim link");
    let (_, query) = link.split_once('?').expect("query");
    assert_eq!(
        claim_link::verify(
            &pipeline.config.claim.link_keys,
            &id,
            query,
            Timestamp::now()
        ),
        Ok(rep.id.clone())
    );

    let ack = sent
        .iter()
        .find(|(_, to, _)| to.contains(&prospect))
        .expect("the acknowledgement");
    let message = MessageParser::default()
        .parse(ack.2.as_bytes())
        .expect("MIME");
    let reply_to = message
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert_eq!(reply_to, Some(rep_address.as_str()));
    assert!(message
        .body_text(0)
        .expect("text")
        .contains("will get back to you within 15 minutes"));

    // A replayed message sends nothing again.
    let notify = Envelope::new(&id, Stage::Notify, "t").to_json();
    pipeline
        .handle(Stage::Notify, &notify)
        .await
        .expect("replay");
    assert_eq!(sent_with(&moto, &id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_ses_refuses_is_a_permanent_failure() {
    let moto = moto().await;
    let pipeline = pipeline(&moto, Some("leadrelay <nobody@unverified-sender.example>")).await;
    let id = format!("ses{}", uuid::Uuid::new_v4().simple());
    // Permanent: not retried; recorded on the lead, naming the channel, and the notify
    // message parked in the dead-letter queue (delivery rules, docs/alerts.md).
    route_and_notify(&pipeline, &uk_lead(&id, "ann@initech.co.uk"))
        .await
        .expect("a permanent refusal is parked, not retried");
    let failure = pipeline
        .store
        .get_lead(&id)
        .await
        .expect("read")
        .expect("lead")
        .last_failure
        .expect("recorded");
    assert!(failure.error.contains("email"), "{}", failure.error);
    assert!(
        failure.error.contains("MessageRejected"),
        "{}",
        failure.error
    );
    assert!(sent_with(&moto, &id).await.is_empty());
}
