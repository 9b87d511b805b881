//! `[notify.salesforce]`: Salesforce write-back. The prospect becomes a Lead upserted on an
//! external id field, owned by the rep's user or the queue, with a Task carrying the context.
//! Authentication is a connected (or external client) app's OAuth 2.0 client-credentials or
//! JWT bearer flow; the secrets come from variables named here.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::load::Env;
use super::{Config, ConfigError, Interval, Validator};
use crate::jwt::{self, RsaKey};

/// How leadrelay gets its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceAuth {
    /// `grant_type=client_credentials` with the app's consumer key and secret, at the org's
    /// My Domain; the token acts as the app's "Run As" user.
    ClientCredentials,
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`: an RS256 JWT signed with the
    /// private key whose certificate the app holds; the token acts as `username`.
    JwtBearer,
}

/// Whose `OwnerId` a Lead that already exists in Salesforce gets. A new Lead always gets the
/// routed owner; Salesforce's upsert cannot set a field on insert only, so leadrelay reads the
/// Lead's owner first for every policy but `overwrite`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceOwnerPolicy {
    /// Never change an existing Lead's owner.
    #[default]
    KeepExisting,
    /// Take a Lead that sits in a queue (owner id `00G…`); keep one a user owns.
    ReplaceQueue,
    /// Always set the routed owner.
    Overwrite,
}

/// `[notify.salesforce]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    pub auth: SalesforceAuth,
    /// Write each lead to Salesforce (the Lead and its Task). `false`: the connection serves
    /// the CRM owner lookup only (`[enrichment.crm]`).
    #[serde(default = "yes")]
    pub write_back: bool,
    /// Where the token request goes: the org's My Domain (`https://acme.my.salesforce.com`,
    /// required for the client-credentials flow), or for the JWT bearer flow also
    /// `https://login.salesforce.com` / `https://test.salesforce.com`.
    pub login_url: String,
    /// JWT bearer: the token's `aud`; defaults to `login_url`. Salesforce expects
    /// `https://login.salesforce.com` (production), `https://test.salesforce.com` (sandbox) or
    /// an Experience Cloud site's URL.
    #[serde(default)]
    pub audience: Option<String>,
    /// The REST API version, `62.0`: requests go to `/services/data/v62.0/...`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The variable holding the app's consumer key (the client id, the JWT's `iss`).
    pub client_id_env: String,
    /// Client credentials: the variable holding the consumer secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// JWT bearer: the Salesforce username the token acts as (the JWT's `sub`).
    #[serde(default)]
    pub username: Option<String>,
    /// JWT bearer: the variable holding the PEM private key (PKCS#8 or PKCS#1, unencrypted).
    #[serde(default)]
    pub private_key_env: Option<String>,
    /// How long an access token is used before a new one is asked for. Salesforce's token
    /// answers carry no expiry (it follows the org's session timeout), so this stays below
    /// it; a token refused earlier (`INVALID_SESSION_ID`) is replaced at once anyway.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime: Interval,
    /// The Lead's custom field holding the leadrelay lead id: Text, External ID and Unique.
    #[serde(default = "default_external_id_field")]
    pub external_id_field: String,
    /// The Lead's `LeadSource`; empty to leave it unset.
    #[serde(default = "default_lead_source")]
    pub lead_source: String,
    #[serde(default)]
    pub owner_policy: SalesforceOwnerPolicy,
    /// Whether an escalation moves the Lead to its new owner (and gives them a Task). Off: an
    /// escalation refreshes the Lead's fields and leaves its owner alone.
    #[serde(default)]
    pub escalation_reassigns: bool,
    /// The owner (a user `005…` or a queue `00G…`) of leads whose owner has no Salesforce id
    /// (a broadcast pool, a rep or queue without one). Without it such leads are not written.
    #[serde(default)]
    pub default_owner_id: Option<String>,
    /// Create a Task for the owner with the lead's context, due at the SLA deadline.
    #[serde(default = "yes")]
    pub create_task: bool,
    /// A Task custom field (Text, External ID, Unique) to upsert the Task on instead of
    /// creating it: a retry whose answer was lost then cannot create a second Task.
    #[serde(default)]
    pub task_external_id_field: Option<String>,
    /// The Task's `Status` (a value of the org's Task Status picklist).
    #[serde(default = "default_task_status")]
    pub task_status: String,
    #[serde(skip)]
    pub client_id: Option<SecretString>,
    #[serde(skip)]
    pub client_secret: Option<SecretString>,
    /// JWT bearer: the key's PEM text, its shape checked; [`SalesforceConfig::signing_key`]
    /// parses it.
    #[serde(skip)]
    pub private_key: Option<PrivateKeyPem>,
}

/// The JWT bearer flow's private key as the configuration holds it: PEM text that is shaped
/// like an unencrypted private key ([`jwt::check_pem`]), not yet parsed. Every Lambda function
/// checks the whole configuration at start; only those that sign tokens (the Salesforce
/// channel, the CRM lookup) parse the key ([`SalesforceConfig::signing_key`]).
#[derive(Clone)]
pub struct PrivateKeyPem {
    pem: SecretString,
    /// The variable that held it, and where `private_key_env` is written: a key that cannot
    /// sign is reported as the configuration check reports its other mistakes.
    variable: String,
    path: String,
    line: usize,
}

impl std::fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeyPem")
            .field("variable", &self.variable)
            .finish_non_exhaustive()
    }
}

fn default_api_version() -> String {
    "62.0".into()
}

fn default_token_lifetime() -> Interval {
    Interval::from_secs(3600)
}

fn default_external_id_field() -> String {
    "Leadrelay_Id__c".into()
}

fn default_lead_source() -> String {
    "Web".into()
}

fn default_task_status() -> String {
    "Not Started".into()
}

fn yes() -> bool {
    true
}

/// A key and its problem, placed by the validator.
type Problem = (String, String);

const KEY: &str = "notify.salesforce";

const MAX_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl SalesforceConfig {
    /// The URLs and names checked, the secrets read from their variables and the private key's
    /// PEM checked (not parsed: [`SalesforceConfig::signing_key`]); errors name the key, never
    /// a secret.
    pub(super) fn resolve(&mut self, env: Env<'_>) -> Result<(), Problem> {
        let problem = |key: &str, message: String| (format!("{KEY}.{key}"), message);
        self.login_url = base_url(&self.login_url).map_err(|m| problem("login_url", m))?;
        if let Some(audience) = &self.audience {
            self.audience = Some(base_url(audience).map_err(|m| problem("audience", m))?);
        }
        if !is_api_version(&self.api_version) {
            return Err(problem(
                "api_version",
                format!(
                    "{:?} is not an API version such as \"62.0\"",
                    self.api_version
                ),
            ));
        }
        // Salesforce's longest session timeout is 24 hours: a token kept longer is refused.
        if self.token_lifetime.0.is_zero() || self.token_lifetime.0 > MAX_TOKEN_LIFETIME {
            return Err(problem(
                "token_lifetime",
                "must be above 0 and at most 24h (Salesforce's longest session)".into(),
            ));
        }
        if !is_custom_field(&self.external_id_field) {
            return Err(problem(
                "external_id_field",
                format!(
                    "{:?} is not a custom field's API name such as \"Leadrelay_Id__c\"",
                    self.external_id_field
                ),
            ));
        }
        if let Some(field) = &self.task_external_id_field {
            if !is_custom_field(field) {
                return Err(problem(
                    "task_external_id_field",
                    format!("{field:?} is not a custom field's API name such as \"Leadrelay_Task_Id__c\""),
                ));
            }
        }
        if let Some(id) = &self.default_owner_id {
            if !is_owner_id(id) {
                return Err(problem(
                    "default_owner_id",
                    format!("{id:?} is not a Salesforce user (005…) or queue (00G…) id"),
                ));
            }
        }
        let variable = |key: &str, name: &str| {
            env.require(name)
                .map(SecretString::from)
                .map_err(|message| problem(key, message))
        };
        self.client_id = Some(variable("client_id_env", &self.client_id_env)?);
        match self.auth {
            SalesforceAuth::ClientCredentials => {
                let name = self.client_secret_env.as_deref().ok_or_else(|| {
                    problem(
                        "client_secret_env",
                        "the client_credentials flow needs the consumer secret's variable".into(),
                    )
                })?;
                self.client_secret = Some(variable("client_secret_env", name)?);
            }
            SalesforceAuth::JwtBearer => {
                if self.username.as_deref().is_none_or(str::is_empty) {
                    return Err(problem(
                        "username",
                        "the jwt_bearer flow needs the Salesforce username the token acts as"
                            .into(),
                    ));
                }
                let name = self.private_key_env.as_deref().ok_or_else(|| {
                    problem(
                        "private_key_env",
                        "the jwt_bearer flow needs the private key's variable".into(),
                    )
                })?;
                let pem = env
                    .require(name)
                    .map_err(|message| problem("private_key_env", message))?;
                jwt::check_pem(&pem)
                    .map_err(|e| problem("private_key_env", format!("{name}: {e}")))?;
                // Placed by `place_key` once the validator knows the line.
                self.private_key = Some(PrivateKeyPem {
                    pem: SecretString::from(pem),
                    variable: name.to_owned(),
                    path: String::new(),
                    line: 0,
                });
            }
        }
        Ok(())
    }

    /// Where `private_key_env` is written, for [`SalesforceConfig::signing_key`]'s error.
    pub(super) fn place_key(&mut self, v: &Validator<'_>) {
        if let Some(key) = &mut self.private_key {
            let key_name = format!("{KEY}.private_key_env");
            if let ConfigError::Invalid { path, line, .. } =
                v.invalid(v.section("notify.salesforce"), key_name, "")
            {
                key.path = path;
                key.line = line;
            }
        }
    }

    /// The JWT bearer flow's key parsed with ring (`None` for client credentials). Called where
    /// tokens are signed, when that process starts: a key ring refuses fails it with the error
    /// the configuration check gives for its other mistakes, naming `private_key_env` and its
    /// variable, never the key.
    pub fn signing_key(&self) -> Result<Option<RsaKey>, ConfigError> {
        let Some(key) = &self.private_key else {
            return Ok(None);
        };
        RsaKey::from_pem(key.pem.expose_secret())
            .map(Some)
            .map_err(|e| ConfigError::Invalid {
                path: key.path.clone(),
                line: key.line,
                key: format!("{KEY}.private_key_env"),
                message: format!("{}: {e}", key.variable),
            })
    }

    /// The JWT's `aud`.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.login_url)
    }
}

/// An https URL without credentials, query or fragment (plain http only for a loopback host:
/// a test's stand-in), without its trailing slash.
fn base_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        scheme => {
            return Err(format!(
                "scheme {scheme:?}: https is required (plain http only for a loopback host)"
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL carries credentials: use the *_env settings".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL takes no query or fragment".into());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// `62.0`: digits, a dot, digits.
fn is_api_version(text: &str) -> bool {
    text.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty()
            && !minor.is_empty()
            && major.len() <= 3
            && minor.len() <= 2
            && major
                .bytes()
                .chain(minor.bytes())
                .all(|b| b.is_ascii_digit())
    })
}

/// A custom field's API name: a letter, then letters, digits and single underscores, ending
/// `__c` (a managed package's `ns__Name__c` too). It goes into request paths as it is.
fn is_custom_field(name: &str) -> bool {
    let Some(stem) = name.strip_suffix("__c") else {
        return false;
    };
    !stem.is_empty()
        && name.len() <= 80
        && stem.starts_with(|c: char| c.is_ascii_alphabetic())
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !stem.ends_with('_')
}

/// A Salesforce record id (15 or 18 letters and digits) with the given key prefix.
fn is_id_with_prefix(id: &str, prefix: &str) -> bool {
    matches!(id.len(), 15 | 18)
        && id.chars().all(|c| c.is_ascii_alphanumeric())
        && id.starts_with(prefix)
}

/// A User id (`005…`).
pub fn is_user_id(id: &str) -> bool {
    is_id_with_prefix(id, "005")
}

/// A queue's Group id (`00G…`).
pub fn is_queue_id(id: &str) -> bool {
    is_id_with_prefix(id, "00G")
}

/// A user or a queue: what can own a Lead.
pub fn is_owner_id(id: &str) -> bool {
    is_user_id(id) || is_queue_id(id)
}

impl Validator<'_> {
    /// The reps' `salesforce_user_id` are user ids and the queues' `salesforce_queue_id` queue
    /// ids: a wrong kind of id would fail every write for that owner.
    pub(super) fn check_salesforce_ids(&self, config: &Config) -> Result<(), ConfigError> {
        for (index, rep) in config.reps.iter().enumerate() {
            if let Some(id) = &rep.get_ref().salesforce_user_id {
                if !is_user_id(id) {
                    return Err(self.invalid(
                        rep.span(),
                        format!("reps[{index}].salesforce_user_id"),
                        format!("{id:?} is not a Salesforce user id (15 or 18 characters, 005…)"),
                    ));
                }
            }
        }
        for (index, queue) in config.queues.iter().enumerate() {
            if let Some(id) = &queue.get_ref().salesforce_queue_id {
                if !is_queue_id(id) {
                    return Err(self.invalid(
                        queue.span(),
                        format!("queues[{index}].salesforce_queue_id"),
                        format!("{id:?} is not a Salesforce queue id (15 or 18 characters, 00G…)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MINIMAL;
    use crate::config::Config;

    const PEM: &str = include_str!("../../../tests/it/fixtures/salesforce/jwt-test-key.pem");

    fn env(name: &str) -> Option<String> {
        match name {
            "SF_CLIENT_ID" => Some("3MVG9-consumer-key".into()),
            "SF_CLIENT_SECRET" => Some("s3cr3t-consumer-secret".into()),
            "SF_PRIVATE_KEY" => Some(PEM.into()),
            "SF_BAD_KEY" => {
                Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into())
            }
            "SF_NOT_PEM" => Some("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".into()),
            _ => None,
        }
    }

    fn parse(section: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{MINIMAL}\n[notify]\n[notify.salesforce]\n{section}\n"),
            "leadrelay.toml",
            &env,
        )
    }

    const CLIENT_CREDENTIALS: &str = "auth = \"client_credentials\"\nlogin_url = \"https://acme.my.salesforce.com/\"\nclient_id_env = \"SF_CLIENT_ID\"\nclient_secret_env = \"SF_CLIENT_SECRET\"";
    const JWT: &str = "auth = \"jwt_bearer\"\nlogin_url = \"https://login.salesforce.com\"\nclient_id_env = \"SF_CLIENT_ID\"\nusername = \"leadrelay@acme.example\"\nprivate_key_env = \"SF_PRIVATE_KEY\"";

    #[test]
    fn both_flows_load_with_their_secrets_and_the_documented_defaults() {
        let config = parse(CLIENT_CREDENTIALS).expect("valid");
        let sf = config.notify.salesforce.expect("the section");
        assert_eq!(sf.auth, SalesforceAuth::ClientCredentials);
        assert_eq!(sf.login_url, "https://acme.my.salesforce.com");
        assert_eq!(sf.api_version, "62.0");
        assert_eq!(sf.external_id_field, "Leadrelay_Id__c");
        assert_eq!(sf.lead_source, "Web");
        assert_eq!(sf.owner_policy, SalesforceOwnerPolicy::KeepExisting);
        assert!(!sf.escalation_reassigns && sf.create_task);
        assert_eq!(sf.token_lifetime, Interval::from_secs(3600));
        assert_eq!(sf.task_status, "Not Started");
        assert!(sf.client_id.is_some() && sf.client_secret.is_some() && sf.private_key.is_none());

        let config = parse(&format!("{JWT}\nowner_policy = \"replace_queue\"\naudience = \"https://test.salesforce.com\"\ndefault_owner_id = \"00G5e000000AbCdEAF\""))
            .expect("valid");
        let sf = config.notify.salesforce.expect("the section");
        assert!(sf.private_key.is_some() && sf.client_secret.is_none());
        assert_eq!(sf.audience(), "https://test.salesforce.com");
        assert_eq!(sf.owner_policy, SalesforceOwnerPolicy::ReplaceQueue);
        let sf = parse(JWT)
            .expect("valid")
            .notify
            .salesforce
            .expect("section");
        assert_eq!(sf.audience(), "https://login.salesforce.com");
    }

    #[test]
    fn mistakes_name_their_key_and_never_a_secret() {
        for (section, key) in [
            (
                CLIENT_CREDENTIALS.replace("https://acme", "http://acme"),
                "notify.salesforce.login_url",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\napi_version = \"v62\""),
                "notify.salesforce.api_version",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\nexternal_id_field = \"Email\""),
                "notify.salesforce.external_id_field",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\nexternal_id_field = \"Id__c/x\""),
                "notify.salesforce.external_id_field",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\ntask_external_id_field = \"x\""),
                "notify.salesforce.task_external_id_field",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\ndefault_owner_id = \"001000000000001\""),
                "notify.salesforce.default_owner_id",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\ntoken_lifetime = \"0s\""),
                "notify.salesforce.token_lifetime",
            ),
            (
                format!("{CLIENT_CREDENTIALS}\ntoken_lifetime = \"25h\""),
                "notify.salesforce.token_lifetime",
            ),
            (
                CLIENT_CREDENTIALS.replace("SF_CLIENT_SECRET", "NOPE"),
                "notify.salesforce.client_secret_env",
            ),
            (
                CLIENT_CREDENTIALS.replace("\nclient_secret_env = \"SF_CLIENT_SECRET\"", ""),
                "notify.salesforce.client_secret_env",
            ),
            (
                CLIENT_CREDENTIALS.replace("SF_CLIENT_ID", "NOPE"),
                "notify.salesforce.client_id_env",
            ),
            (
                JWT.replace("\nusername = \"leadrelay@acme.example\"", ""),
                "notify.salesforce.username",
            ),
            (
                JWT.replace("SF_PRIVATE_KEY", "SF_NOT_PEM"),
                "notify.salesforce.private_key_env",
            ),
            (
                JWT.replace("\nprivate_key_env = \"SF_PRIVATE_KEY\"", ""),
                "notify.salesforce.private_key_env",
            ),
            (
                format!("{JWT}\naudience = \"login.salesforce.com\""),
                "notify.salesforce.audience",
            ),
            (
                format!("{JWT}\nowner_policy = \"sometimes\""),
                "owner_policy",
            ),
        ] {
            let error = parse(&section).expect_err(key).to_string();
            assert!(error.contains(key), "{key}: {error}");
            assert!(
                !error.contains("s3cr3t") && !error.contains("MII"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_key_that_only_ring_refuses_passes_the_check_and_fails_where_it_is_parsed() {
        // The check every function runs: PEM and base64 only.
        let section = JWT.replace("SF_PRIVATE_KEY", "SF_BAD_KEY");
        let config = parse(&section).expect("PEM-shaped");
        let sf = config.notify.salesforce.expect("the section");
        assert!(!format!("{sf:?}").contains("AAAA"), "{sf:?}");
        // Where tokens are signed: the configuration error the check gave before, at the line
        // of `private_key_env`.
        let error = sf.signing_key().expect_err("ring refuses it");
        let text = format!("{MINIMAL}\n[notify]\n[notify.salesforce]\n{section}\n");
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with("private_key_env"))
            .expect("written");
        assert_eq!(
            error.to_string(),
            format!(
                "leadrelay.toml:{line}: notify.salesforce.private_key_env: SF_BAD_KEY: not an \
                 RSA private key ring can sign with: InvalidEncoding"
            )
        );
        let good = parse(JWT)
            .expect("valid")
            .notify
            .salesforce
            .expect("section");
        assert!(good.signing_key().expect("parses").is_some());
        let none = parse(CLIENT_CREDENTIALS).expect("valid");
        assert!(none
            .notify
            .salesforce
            .expect("section")
            .signing_key()
            .expect("no key")
            .is_none());
    }

    #[test]
    fn owner_ids_are_checked_by_kind() {
        let with = |rep: &str, queue: &str| {
            let text = MINIMAL
                .replace("name = \"Alice\"\n", &format!("name = \"Alice\"\n{rep}\n"))
                .replace(
                    "name = \"Sales inbox\"\n",
                    &format!("name = \"Sales inbox\"\n{queue}\n"),
                );
            crate::config::tests::parse(&text)
        };
        assert!(with(
            "salesforce_user_id = \"0055e000001AbCdAAK\"",
            "salesforce_queue_id = \"00G5e000000AbCd\""
        )
        .is_ok());
        let error = with("salesforce_user_id = \"00G5e000000AbCd\"", "")
            .expect_err("a queue id on a rep")
            .to_string();
        assert!(error.contains("reps[0].salesforce_user_id"), "{error}");
        let error = with("", "salesforce_queue_id = \"0055e000001AbCd\"")
            .expect_err("a user id on a queue")
            .to_string();
        assert!(error.contains("queues[0].salesforce_queue_id"), "{error}");
        assert!(with("salesforce_user_id = \"005-not-an-id\"", "").is_err());
    }
}
