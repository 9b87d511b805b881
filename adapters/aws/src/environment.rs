//! The AWS SDK's configuration as a Lambda function gets it: region, credentials and endpoint
//! overrides from the environment variables, and nothing else.
//!
//! Not `aws-config`'s loader: its default chain (profile files, SSO, STS web identity, the
//! container and instance metadata endpoints) is linked into a binary that calls it whether a
//! process uses it or not, and Lambda hands a function its execution role's credentials and its
//! region as variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`), valid for the life of the execution environment. The operators' tools keep
//! the chain ([`crate::sdk_config`], feature `default-chain`).

use std::collections::HashMap;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_types::region::Region;
use aws_types::sdk_config::{RetryConfig, SharedCredentialsProvider, TimeoutConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use aws_types::SdkConfig;

/// The global endpoint override; `AWS_ENDPOINT_URL_<SERVICE>` overrides it for one service.
const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// The SDK service ids of the clients leadrelay builds, as `AWS_ENDPOINT_URL_<SERVICE>` spells
/// them after upper-casing (`SESv2` → `AWS_ENDPOINT_URL_SESV2`).
const SERVICES: [&str; 5] = ["DynamoDB", "SQS", "SSM", "SESv2", "SNS"];
/// `aws-config`'s default connect timeout, kept so that a function behaves as it did with it.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// Why the environment does not configure the AWS clients. Names variables, never values of
/// the credential ones.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvConfigError {
    #[error("environment variable {0} is not set (Lambda sets it for every function)")]
    Missing(&'static str),
    #[error("environment variable {name} must be true or false, not {value:?}")]
    NotABool { name: &'static str, value: String },
}

/// The SDK configuration from the environment `env` looks up, over [`crate::https_client`]:
///
/// - region: `AWS_REGION`, else `AWS_DEFAULT_REGION` (required);
/// - credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (required), `AWS_SESSION_TOKEN`;
/// - endpoints: `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` (`DYNAMODB`, `SQS`, `SSM`,
///   `SESV2`, `SNS`), unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true; the tests and the
///   cold-start bench point the functions at moto this way;
/// - `AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT`.
///
/// Retries and timeouts are `aws-config`'s defaults (standard retries, 3 attempts; a 3.1 s
/// connect timeout). Profiles, `AWS_PROFILE` and every other `AWS_*` setting are not read.
/// Empty values count as unset, as the SDK counts them.
pub fn lambda_sdk_config(
    env: impl Fn(&str) -> Option<String>,
) -> Result<SdkConfig, EnvConfigError> {
    let get = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let require = |name: &'static str| get(name).ok_or(EnvConfigError::Missing(name));
    let flag = |name: &'static str| match get(name) {
        None => Ok(None),
        Some(value) if value.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(value) if value.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(value) => Err(EnvConfigError::NotABool { name, value }),
    };

    let region = get("AWS_REGION")
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .ok_or(EnvConfigError::Missing("AWS_REGION"))?;
    let credentials = Credentials::new(
        require("AWS_ACCESS_KEY_ID")?,
        require("AWS_SECRET_ACCESS_KEY")?,
        get("AWS_SESSION_TOKEN"),
        None,
        "Environment",
    );
    let endpoints = if flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")? == Some(true) {
        Endpoints::default()
    } else {
        Endpoints {
            global: get(ENDPOINT_URL),
            services: SERVICES
                .iter()
                .filter_map(|service| {
                    let name = service_variable(ENDPOINT_URL, service);
                    Some((name.clone(), get(&name)?))
                })
                .collect(),
        }
    };

    let mut builder = SdkConfig::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(crate::https_client())
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .time_source(aws_smithy_async::time::SystemTimeSource::new());
    builder.set_sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep());
    builder.set_endpoint_url(endpoints.global.clone());
    if let Some(fips) = flag("AWS_USE_FIPS_ENDPOINT")? {
        builder = builder.use_fips(fips);
    }
    if let Some(dual_stack) = flag("AWS_USE_DUALSTACK_ENDPOINT")? {
        builder = builder.use_dual_stack(dual_stack);
    }
    Ok(builder.service_config(endpoints).build())
}

/// `AWS_ENDPOINT_URL_DYNAMODB` for `AWS_ENDPOINT_URL` and `DynamoDB`, as the SDK names it.
fn service_variable(variable: &str, service_id: &str) -> String {
    format!(
        "{variable}_{}",
        service_id.to_ascii_uppercase().replace(' ', "_")
    )
}

/// The endpoint overrides read at start. Each client asks its service's first and falls back
/// to the global one (`SdkConfig::endpoint_url`).
#[derive(Debug, Default)]
struct Endpoints {
    global: Option<String>,
    services: HashMap<String, String>,
}

impl LoadServiceConfig for Endpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        // The endpoint is the only setting read here; any other key has no value.
        if key.env() != ENDPOINT_URL {
            return None;
        }
        self.services
            .get(&service_variable(key.env(), key.service_id()))
            .or(self.global.as_ref())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
        ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLE"),
    ];

    fn endpoint(sdk: &SdkConfig, service: &str) -> Option<String> {
        let key = ServiceConfigKey::builder()
            .service_id(service)
            .env(ENDPOINT_URL)
            .profile("endpoint_url")
            .build()
            .expect("key");
        sdk.service_config()
            .and_then(|c| c.load_config(key))
            .or_else(|| sdk.endpoint_url().map(str::to_owned))
    }

    #[tokio::test]
    async fn a_lambda_environment_gives_region_credentials_and_the_sdk_defaults() {
        use aws_credential_types::provider::ProvideCredentials as _;
        let sdk = lambda_sdk_config(env(&LAMBDA)).expect("configured");
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        let credentials = sdk
            .credentials_provider()
            .expect("a provider")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(credentials.session_token(), Some("IQoJb3JpZ2luX2VjEXAMPLE"));
        assert_eq!(sdk.retry_config().map(|r| r.max_attempts()), Some(3));
        assert_eq!(
            sdk.timeout_config().and_then(|t| t.connect_timeout()),
            Some(CONNECT_TIMEOUT)
        );
        assert!(sdk.http_client().is_some() && sdk.sleep_impl().is_some());
        assert_eq!(endpoint(&sdk, "DynamoDB"), None);
        assert_eq!(sdk.use_fips(), None);
    }

    #[test]
    fn endpoints_come_from_aws_endpoint_url_and_the_per_service_variables() {
        let mut vars = LAMBDA.to_vec();
        vars.extend([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9324"),
            ("AWS_ENDPOINT_URL_SESV2", "http://127.0.0.1:8005"),
        ]);
        let sdk = lambda_sdk_config(env(&vars)).expect("configured");
        assert_eq!(
            endpoint(&sdk, "DynamoDB").as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            endpoint(&sdk, "SQS").as_deref(),
            Some("http://127.0.0.1:9324")
        );
        assert_eq!(
            endpoint(&sdk, "SESv2").as_deref(),
            Some("http://127.0.0.1:8005")
        );

        vars.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        let sdk = lambda_sdk_config(env(&vars)).expect("configured");
        assert_eq!(endpoint(&sdk, "DynamoDB"), None);
        assert_eq!(endpoint(&sdk, "SQS"), None);
    }

    #[test]
    fn the_default_region_and_the_endpoint_flags_are_read() {
        let vars = [
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_REGION", " "),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_USE_FIPS_ENDPOINT", "TRUE"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "false"),
        ];
        let sdk = lambda_sdk_config(env(&vars)).expect("configured");
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert_eq!(sdk.use_fips(), Some(true));
        assert_eq!(sdk.use_dual_stack(), Some(false));
    }

    #[test]
    fn a_missing_region_or_credential_stops_the_start_naming_the_variable() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let vars: Vec<_> = LAMBDA.into_iter().filter(|(k, _)| *k != missing).collect();
            let error = lambda_sdk_config(env(&vars)).expect_err(missing);
            assert_eq!(error, EnvConfigError::Missing(missing));
            assert!(error.to_string().contains(missing), "{error}");
        }
        let mut vars = LAMBDA.to_vec();
        vars.push(("AWS_USE_FIPS_ENDPOINT", "yes"));
        let error = lambda_sdk_config(env(&vars)).expect_err("not a bool");
        assert_eq!(
            error.to_string(),
            "environment variable AWS_USE_FIPS_ENDPOINT must be true or false, not \"yes\""
        );
        // A profile is not read: with no variables there is no configuration at all.
        let error = lambda_sdk_config(env(&[("AWS_PROFILE", "default")])).expect_err("none");
        assert_eq!(error, EnvConfigError::Missing("AWS_REGION"));
    }
}
