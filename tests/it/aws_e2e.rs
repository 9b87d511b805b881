//! The four Lambda handlers wired to the AWS adapters against moto: real SQS queues with
//! redrive policies, a real table, configuration and secrets in SSM. Fed with API Gateway
//! HTTP API and SQS events of the shapes AWS sends (fixtures in events/aws/), with the event
//! source mapping's part (receive, delete what succeeded) played by the test.

use std::sync::Arc;
use std::time::Duration;

use crate::support::aws::{moto, Deployment, Moto};
use crate::support::{
    eventually, example_config, root, sample, with_retry_schedule, Edit, HandClock,
};
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use aws_sdk_ssm::types::ParameterType;
use lambda_http::tower::ServiceExt as _;
use leadrelay_aws::bootstrap::{self, Deployment as Env};
use leadrelay_shared::model::Stage;
use leadrelay_shared::stages::Pipeline;
use leadrelay_web::{intake_router, Api};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const MAX_RECEIVES: u32 = 2;
const SECRET: &str = "whsec_bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE=";

struct Stack {
    moto: Moto,
    deployment: Deployment,
    pipeline: Arc<Pipeline>,
    slack: MockServer,
    /// What the template gives every function (`LEADRELAY_*`).
    function_env: Env,
}

/// A deployment on moto: table, queues, the TOML config and the secrets in SSM.
async fn stack(slack_status: u16) -> Stack {
    let moto = moto().await;
    let deployment = moto.deploy(MAX_RECEIVES, 30).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(slack_status))
        .mount(&slack)
        .await;

    // Secrets live in SSM, named by the config's *_env keys; the config holds none.
    let config = example_config()
        .edit(
            &format!("secrets = [\"{SECRET}\"]"),
            "secrets_env = \"WEBSITE_WEBHOOK_SECRETS\"",
        )
        .edit(
            "email = \"bruno@yourco.example\"",
            "email = \"bruno@yourco.example\"\nslack_webhook_url_env = \"SLACK_BRUNO\"",
        )
        .edit("terminal = true", "terminal = false");
    // One retry, then the stage moves the message to its DLQ itself (MAX_RECEIVES attempts).
    let config = with_retry_schedule(&config, &["0s"], 15);
    let prefix = format!("/{}/", deployment.table);
    let ssm = moto.ssm();
    for (name, value, kind) in [
        (format!("{prefix}config"), config, ParameterType::String),
        (
            format!("{prefix}secrets/WEBSITE_WEBHOOK_SECRETS"),
            SECRET.to_owned(),
            ParameterType::SecureString,
        ),
        (
            format!("{prefix}secrets/SLACK_BRUNO"),
            format!("{}/services/T/B/X", slack.uri()),
            ParameterType::SecureString,
        ),
    ] {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .send()
            .await
            .expect("put parameter");
    }

    // The environment the template gives every function.
    let mut env = std::collections::HashMap::from([
        (bootstrap::ENV_TABLE.to_owned(), deployment.table.clone()),
        (
            bootstrap::ENV_CONFIG_PARAMETER.to_owned(),
            format!("{prefix}config"),
        ),
        (
            bootstrap::ENV_SECRETS_PATH.to_owned(),
            format!("{prefix}secrets/"),
        ),
    ]);
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
    let function_env = Env::from_env(|name| env.get(name).cloned()).expect("environment");
    let pipeline = bootstrap::every_stage_pipeline(&moto.sdk, &function_env)
        .await
        .expect("the functions' start-up");
    Stack {
        moto,
        deployment,
        pipeline,
        slack,
        function_env,
    }
}

/// Posts a signed webhook through the ingest function's router, as API Gateway delivers it.
async fn invoke_ingest(stack: &Stack, event_id: &str, body: &[u8]) -> (u16, Value) {
    let fixture = std::fs::read_to_string(root().join("events/aws/apigw-http-webhook.json"))
        .expect("fixture");
    let mut event: Value = serde_json::from_str(&fixture).expect("json");
    let source = stack.pipeline.config.source("website").expect("source");
    for (name, value) in leadrelay::cli::signed_headers(source, event_id, body).expect("sign") {
        event["headers"][name] = value.into();
    }
    event["body"] = String::from_utf8(body.to_vec()).expect("utf-8").into();
    let request = lambda_http::request::from_str(&event.to_string()).expect("API Gateway event");
    let app = intake_router(Api::for_intake(
        stack.pipeline.clone(),
        Arc::new(true.into()),
    ));
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One poll of `stage`'s queue handed to its function, like the SQS event source mapping:
/// receive, invoke with an SQS event, delete what the function did not report as failed.
async fn poll_once(stack: &Stack, stage: Stage) -> usize {
    let sqs = stack.moto.sqs();
    let url = &stack.deployment.urls.work[&stage];
    let received = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let messages = received.messages();
    if messages.is_empty() {
        return 0;
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{stage}"),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let event: SqsEvent =
        serde_json::from_value(json!({ "Records": records })).expect("SQS event shape");
    let response = leadrelay_aws::lambda::handle_batch(stack.pipeline.clone(), stage, event)
        .await
        .expect("batch handled");
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert!(failed.iter().all(|id| !id.is_empty()));
    for m in messages {
        if !failed.contains(&m.message_id().unwrap_or_default()) {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    messages.len()
}

/// Polls every stage until `done` holds.
async fn run_until<F, Fut>(stack: &Stack, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(Duration::from_secs(30), what, || async {
        for stage in Stage::ALL {
            poll_once(stack, stage).await;
        }
        done().await.then_some(())
    })
    .await;
}

async fn lead_state(stack: &Stack, lead_id: &str) -> String {
    stack
        .pipeline
        .store
        .get_lead(lead_id)
        .await
        .expect("read")
        .map(|l| l.state.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_ends_as_a_notified_lead_and_a_duplicate_changes_nothing() {
    let stack = stack(200).await;
    let (status, body) =
        invoke_ingest(&stack, "msg_aws_1", &sample("02-capture-emea-pricing.json")).await;
    assert_eq!(status, 202, "{body}");
    let lead_id = body["lead_id"].as_str().expect("lead id").to_owned();

    let (status, again) =
        invoke_ingest(&stack, "msg_aws_1", &sample("02-capture-emea-pricing.json")).await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["lead_id"], lead_id.as_str());

    let (s, id) = (&stack, lead_id.as_str());
    run_until(s, "the lead notified", || async move {
        lead_state(s, id).await == "notified"
    })
    .await;
    // Drain the duplicate's extra envelope too: still one alert, one owner, one count.
    for _ in 0..3 {
        for stage in Stage::ALL {
            poll_once(&stack, stage).await;
        }
    }
    let lead = stack
        .pipeline
        .store
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(lead.assignment.expect("owner").owner.id(), "bruno");
    assert_eq!(
        stack.slack.received_requests().await.map(|r| r.len()),
        Some(1)
    );
    assert_eq!(
        stack
            .pipeline
            .store
            .counter("open_leads:rep:bruno")
            .await
            .expect("counter"),
        1
    );

    // The ingest function answers refusals exactly as the embedded server does.
    let fixture = std::fs::read_to_string(root().join("events/aws/apigw-http-webhook.json"))
        .expect("fixture");
    let request = lambda_http::request::from_str(&fixture).expect("event");
    let app = intake_router(Api::for_intake(
        stack.pipeline.clone(),
        Arc::new(true.into()),
    ));
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(
        response.status().as_u16(),
        401,
        "the fixture's signature is a placeholder"
    );
    // It serves the intake only: the claim routes are the claim function's (template.yaml).
    for path in ["/claim/some-lead", "/slack/interactivity", "/inbound/email"] {
        let mut post = lambda_http::request::from_str(&fixture).expect("event");
        *post.uri_mut() = path.parse().expect("path");
        let response = app.clone().oneshot(post).await.expect("infallible");
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_notifier_dead_letters_and_replay_notifies_once() {
    let stack = stack(500).await;
    let (status, body) = invoke_ingest(
        &stack,
        "msg_aws_poison",
        &sample("02-capture-emea-pricing.json"),
    )
    .await;
    assert_eq!(status, 202);
    let lead_id = body["lead_id"].as_str().expect("lead id").to_owned();

    // The stage gives up once its retry schedule is spent and moves the message to its DLQ.
    let queues = &stack.deployment.queues;
    run_until(&stack, "the notify message in its DLQ", || async move {
        queues.dead_letter_depth(Stage::Notify).await.unwrap_or(0) == 1
    })
    .await;
    assert_eq!(lead_state(&stack, &lead_id).await, "routed");
    let lead = stack
        .pipeline
        .store
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    let failure = lead.last_failure.expect("failure recorded");
    assert_eq!(failure.stage, Stage::Notify);
    assert!(
        failure.error.contains("slack answered 500"),
        "{}",
        failure.error
    );

    // `dlq list` shows it with the lead and the error; a dry run changes nothing.
    let mut out = Vec::new();
    let total = leadrelay::dlq::list(
        &stack.deployment.queues,
        &stack.deployment.store,
        &leadrelay::dlq::Filter::default(),
        &mut out,
    )
    .await
    .expect("list");
    let listing = String::from_utf8(out).expect("utf-8");
    assert_eq!(total, 1, "{listing}");
    assert!(
        listing.contains(&lead_id) && listing.contains("slack answered 500"),
        "{listing}"
    );
    // Parked by the stage itself (not by SQS's redrive), with its receive count.
    assert!(listing.contains("gave up after 2 attempts"), "{listing}");
    let filter = leadrelay::dlq::Filter {
        stage: Some(Stage::Notify),
        ..Default::default()
    };
    let would = leadrelay::dlq::replay(
        &stack.deployment.queues,
        &filter,
        true,
        100,
        &mut Vec::new(),
    )
    .await
    .expect("dry run");
    assert_eq!(would, 1);

    // The fault is fixed: Slack answers again. Replay, and the lead is notified exactly once.
    stack.slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&stack.slack)
        .await;
    let replayed = leadrelay::dlq::replay(
        &stack.deployment.queues,
        &filter,
        false,
        100,
        &mut Vec::new(),
    )
    .await
    .expect("replay");
    assert_eq!(replayed, 1);
    let (s, id) = (&stack, lead_id.as_str());
    run_until(s, "the replayed lead notified", || async move {
        lead_state(s, id).await == "notified"
    })
    .await;
    assert_eq!(
        stack.slack.received_requests().await.map(|r| r.len()),
        Some(1)
    );
    assert_eq!(
        stack
            .deployment
            .queues
            .dead_letter_depth(Stage::Notify)
            .await
            .expect("depth"),
        0
    );

    // Replaying the same envelope again (an operator's second replay) sends nothing new.
    stack
        .pipeline
        .queue
        .send(
            Stage::Notify,
            &leadrelay_shared::model::Envelope::new(&lead_id, Stage::Notify, "t"),
        )
        .await
        .expect("send");
    for _ in 0..2 {
        poll_once(&stack, Stage::Notify).await;
    }
    assert_eq!(
        stack.slack.received_requests().await.map(|r| r.len()),
        Some(1)
    );
}

/// The claim function's routes, fed an API Gateway HTTP API event for `method path?query`.
async fn invoke_claim(stack: &Stack, method: &str, path: &str, query: &str) -> (u16, String) {
    let fixture = std::fs::read_to_string(root().join("events/aws/apigw-http-webhook.json"))
        .expect("fixture");
    let mut event: Value = serde_json::from_str(&fixture).expect("json");
    event["routeKey"] = format!("{method} /claim/{{lead_id}}").into();
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["pathParameters"] = json!({ "lead_id": path.trim_start_matches("/claim/") });
    event["body"] = "".into();
    event["headers"]["content-type"] = "application/x-www-form-urlencoded".into();
    let request = lambda_http::request::from_str(&event.to_string()).expect("API Gateway event");
    let app = leadrelay_web::claim_router(Api::new(stack.pipeline.clone(), Arc::new(true.into())));
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_an_unclaimed_lead_escalates_and_its_new_owner_claims_it_by_link() {
    let stack = stack(200).await;
    let (status, body) = invoke_ingest(
        &stack,
        "msg_aws_sla",
        &sample("02-capture-emea-pricing.json"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let lead_id = body["lead_id"].as_str().expect("lead id").to_owned();
    let (s, id) = (&stack, lead_id.as_str());
    run_until(s, "the lead notified", || async move {
        lead_state(s, id).await == "notified"
    })
    .await;
    let lead = stack
        .pipeline
        .store
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("lead");
    let due = lead.timeline.sla_due_at.expect("an SLA");

    // The scheduled sla function, a minute past the deadline (its event carries nothing it
    // needs, as events/aws/eventbridge-sla-schedule.json shows).
    let later = due + jiff::SignedDuration::from_mins(1);
    let p = &stack.pipeline;
    let watch = Pipeline::new(
        p.config.clone(),
        p.store.clone(),
        p.queue.clone(),
        p.notifier.clone(),
        Arc::new(HandClock::new(later)),
    );
    let report = leadrelay_shared::stages::sla::sweep(&watch)
        .await
        .expect("sla-watch");
    assert_eq!(report.escalated, vec![(lead_id.clone(), 1)]);
    let lead = stack
        .pipeline
        .store
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("lead");
    assert_eq!(
        lead.assignment.as_ref().expect("owner").owner.id(),
        "fatima"
    );
    assert_eq!(lead.escalations[0].from.id(), "bruno");
    // The escalation's alert goes out through the notify function on SQS.
    run_until(s, "the escalation notified", || async move {
        lead_state(s, id).await == "notified"
    })
    .await;
    assert_eq!(
        stack
            .pipeline
            .store
            .counter("sla_streak:rep:bruno")
            .await
            .expect("counter"),
        1
    );

    // Fatima's signed link, through the claim function: the page, then the claim.
    let link = leadrelay_shared::claim_link::url_for(
        &stack.pipeline.config,
        &lead_id,
        "fatima",
        jiff::Timestamp::now(),
    )
    .expect("a link");
    let query = link.split_once('?').expect("query").1.to_owned();
    let path = format!("/claim/{lead_id}");
    let (status, html) = invoke_claim(&stack, "GET", &path, &query).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(
        lead_state(&stack, &lead_id).await,
        "notified",
        "opening claims nothing"
    );
    let (status, html) = invoke_claim(&stack, "POST", &path, &query).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("You own this lead now"), "{html}");
    let lead = stack
        .pipeline
        .store
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("lead");
    assert_eq!(lead.claim.as_ref().map(|c| c.rep.as_str()), Some("fatima"));
    // Claimed: out of the sparse index, so no later run escalates it.
    let much_later = later + jiff::SignedDuration::from_hours(2);
    assert!(stack
        .pipeline
        .store
        .due_leads(much_later, 10)
        .await
        .expect("due")
        .is_empty());
}

/// `[notify.sms] provider = "sns"`: the SNS adapter publishes to a phone number; a number SNS
/// refuses is a permanent failure (the notify stage parks it and delivers the other channels).
#[tokio::test]
async fn sms_through_sns_publishes_and_a_refused_number_is_permanent() {
    use leadrelay_shared::ports::SmsSender as _;
    let moto = moto().await;
    let sns = leadrelay_aws::SnsSms::new(
        aws_sdk_sns::Client::new(&moto.sdk),
        Some("LeadRelay".into()),
    );
    sns.send_sms(
        "+4915123456789",
        "Tier 1: Tom Baker Claim: https://x.example/c",
    )
    .await
    .expect("published");
    let refused = sns
        .send_sms("not-a-number", "x")
        .await
        .expect_err("refused");
    assert!(refused.is_permanent(), "{refused}");
    assert_eq!(refused.channel(), "sms");
}

/// The variables Lambda gives a function, with `endpoints` pointing it at moto.
fn lambda_environment(endpoints: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut vars: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
    ]
    .into_iter()
    .chain(endpoints.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // A profile the loader's chain would read; the functions read the environment only.
    vars.push(("AWS_PROFILE".into(), "no-such-profile".into()));
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_configure_the_sdk_from_the_environment_alone() {
    let stack = stack(200).await;
    let moto_url = stack.moto.endpoint.clone();
    // AWS_ENDPOINT_URL, as `make test` and the cold-start bench point the functions at moto.
    let sdk =
        leadrelay_aws::lambda_sdk_config(lambda_environment(&[("AWS_ENDPOINT_URL", &moto_url)]))
            .expect("the Lambda environment");
    bootstrap::pipeline(&sdk, &stack.function_env)
        .await
        .expect("configuration and secrets read from SSM on moto");
    // Per service: the global endpoint leads nowhere (nothing listens on the discard port), so
    // the lead below gets through only if each client takes its own variable.
    let sdk = leadrelay_aws::lambda_sdk_config(lambda_environment(&[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ENDPOINT_URL_DYNAMODB", &moto_url),
        ("AWS_ENDPOINT_URL_SQS", &moto_url),
        ("AWS_ENDPOINT_URL_SSM", &moto_url),
    ]))
    .expect("the Lambda environment");
    let pipeline = bootstrap::every_stage_pipeline(&sdk, &stack.function_env)
        .await
        .expect("the functions' start-up");
    let stack = Stack { pipeline, ..stack };
    let (status, body) = invoke_ingest(
        &stack,
        "msg_aws_env_1",
        &sample("02-capture-emea-pricing.json"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let lead_id = body["lead_id"].as_str().expect("lead id").to_owned();
    let (s, id) = (&stack, lead_id.as_str());
    run_until(s, "the lead notified", || async move {
        lead_state(s, id).await == "notified"
    })
    .await;
    assert_eq!(
        stack.slack.received_requests().await.map(|r| r.len()),
        Some(1)
    );
}

/// A deployment on moto whose configuration writes leads to Salesforce with the JWT bearer
/// flow and looks owners up there (`[enrichment.crm]`), `key` being the private key's
/// SecureString: the functions' environment, and the configuration's parameter and text.
async fn jwt_deployment(moto: &Moto, key: &str) -> (Env, String, String) {
    let config = example_config()
        .edit(
            "\n[claim]\n",
            "\n[notify.salesforce]\nauth = \"jwt_bearer\"\nlogin_url = \"https://login.salesforce.com\"\n\
             client_id_env = \"SF_CLIENT_ID\"\nusername = \"leadrelay@yourco.example\"\n\
             private_key_env = \"SF_PRIVATE_KEY\"\n\n[claim]\n",
        )
        .edit_first("[enrichment]\n", "[enrichment]\nproviders = [\"crm\"]\n")
        + "\n[enrichment.crm]\nsource = \"salesforce\"\nbudget_ms = 2000\n";
    config_deployment(
        moto,
        config,
        &[
            ("SF_CLIENT_ID", "3MVG9leadrelayTestConsumerKey"),
            ("SF_PRIVATE_KEY", key),
        ],
    )
    .await
}

/// A deployment on moto with `config` in SSM and `secrets` as SecureStrings under its secrets
/// path: the functions' environment, and the configuration's parameter and text.
async fn config_deployment(
    moto: &Moto,
    config: String,
    secrets: &[(&str, &str)],
) -> (Env, String, String) {
    let deployment = moto.deploy(MAX_RECEIVES, 30).await;
    let prefix = format!("/{}/", deployment.table);
    let parameter = format!("{prefix}config");
    let ssm = moto.ssm();
    let secrets = secrets.iter().map(|(name, value)| {
        (
            format!("{prefix}secrets/{name}"),
            (*value).to_owned(),
            ParameterType::SecureString,
        )
    });
    for (name, value, kind) in
        std::iter::once((parameter.clone(), config.clone(), ParameterType::String)).chain(secrets)
    {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .send()
            .await
            .expect("put parameter");
    }
    let env = std::collections::HashMap::from([
        (bootstrap::ENV_TABLE.to_owned(), deployment.table.clone()),
        (
            bootstrap::ENV_CONFIG_PARAMETER.to_owned(),
            parameter.clone(),
        ),
        (
            bootstrap::ENV_SECRETS_PATH.to_owned(),
            format!("{prefix}secrets/"),
        ),
    ]);
    let function_env = Env::from_env(|name| env.get(name).cloned()).expect("environment");
    (function_env, parameter, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_phone_outside_its_plan_stops_enrich_and_a_malformed_one_every_function() {
    let moto = moto().await;
    let with_phone = |phone: &str| {
        example_config().edit_first(
            "name = \"Alice Martin\"\n",
            &format!("name = \"Alice Martin\"\nphone = \"{phone}\"\n"),
        )
    };
    let refusal = |parameter: &str, config: &str, phone: &str| {
        let line = 1 + config
            .lines()
            .position(|l| l.starts_with("phone = "))
            .expect("written");
        format!(
            "ssm:{parameter}:{line}: reps[0].phone: \"{phone}\" is not a valid E.164 number \
             such as +447700900123"
        )
    };

    // The shape of a UK mobile number, one digit short. Only enrich, which links the phone
    // metadata to clean prospects' numbers, checks the numbering plan; the others start.
    let short = "+44740012345";
    let (env, parameter, config) = config_deployment(&moto, with_phone(short), &[]).await;
    bootstrap::pipeline(&moto.sdk, &env)
        .await
        .expect("ingest, route, claim and sla check the shape only");
    bootstrap::notify_pipeline(&moto.sdk, &env)
        .await
        .expect("notify checks the shape only");
    let enrich = bootstrap::enrich_pipeline(&moto.sdk, &env)
        .await
        .err()
        .expect("enrich checks the plan");
    let enrich = format!("{enrich:#}");
    assert!(
        enrich.contains(&refusal(&parameter, &config, short)),
        "{enrich}"
    );

    // Not E.164 at all (spaces): every function refuses it, with the same message.
    let spaced = "+44 7400 123456";
    let (env, parameter, config) = config_deployment(&moto, with_phone(spaced), &[]).await;
    let expected = refusal(&parameter, &config, spaced);
    let errors = [
        bootstrap::pipeline(&moto.sdk, &env).await.err(),
        bootstrap::notify_pipeline(&moto.sdk, &env).await.err(),
        bootstrap::enrich_pipeline(&moto.sdk, &env).await.err(),
    ];
    for error in errors {
        let error = format!("{:#}", error.expect("refused"));
        assert!(error.contains(&expected), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_key_that_cannot_sign_stops_the_functions_that_sign_and_no_other() {
    let moto = moto().await;
    // Well-formed PEM, but an EC key: RS256 cannot sign with it.
    let ec_key =
        std::fs::read_to_string(root().join("tests/it/fixtures/salesforce/ec-p256-key.pem"))
            .expect("fixture");
    let (env, parameter, config) = jwt_deployment(&moto, &ec_key).await;
    // Ingest, route, claim and sla check the key's PEM only, and start.
    bootstrap::pipeline(&moto.sdk, &env)
        .await
        .expect("the functions that never sign start");
    // Notify and enrich (the CRM lookup) sign: their start stops with the configuration error
    // the check gave every function before, naming the setting and the variable, not the key.
    let line = 1 + config
        .lines()
        .position(|l| l.starts_with("private_key_env"))
        .expect("written");
    let expected = format!(
        "ssm:{parameter}:{line}: notify.salesforce.private_key_env: SF_PRIVATE_KEY: not an RSA \
         private key ring can sign with: "
    );
    let notify = bootstrap::notify_pipeline(&moto.sdk, &env)
        .await
        .err()
        .expect("notify refuses the key")
        .to_string();
    assert!(notify.starts_with(&expected), "{notify}");
    let enrich = bootstrap::enrich_pipeline(&moto.sdk, &env)
        .await
        .err()
        .expect("enrich refuses the key");
    let enrich = format!("{enrich:#}");
    assert!(enrich.contains(&expected), "{enrich}");
    for error in [&notify, &enrich] {
        assert!(
            !error.contains("BEGIN") && !error.contains("MIG"),
            "{error}"
        );
    }

    // A value that is no PEM private key at all still stops every function.
    let public =
        std::fs::read_to_string(root().join("tests/it/fixtures/salesforce/jwt-test-key.pub.pem"))
            .expect("fixture");
    let (env, parameter, _) = jwt_deployment(&moto, &public).await;
    let error = bootstrap::pipeline(&moto.sdk, &env)
        .await
        .err()
        .expect("refused by the configuration check");
    let error = format!("{error:#}");
    assert!(
        error.contains(&format!("ssm:{parameter}:"))
            && error.contains(
                "notify.salesforce.private_key_env: SF_PRIVATE_KEY: not a PEM private key"
            ),
        "{error}"
    );
}
