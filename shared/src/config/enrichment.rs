//! `[enrichment]`: the free-mail additions, the firmographics table (inline, and the CRM export
//! as CSV) and the order the I/O providers are tried in. The providers' own sections are in
//! [`super::providers`].

use std::collections::HashSet;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use super::load::{self, Env};
use super::providers::{
    self, CrmLookupConfig, CrmSource, GeoipConfig, HttpProviderConfig, TranscriptConfig,
};
use super::rules::is_country_code;
use super::{Config, ConfigError, Validator};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    /// Free-mail domains beyond the maintained list that is always checked
    /// ([`crate::lists`]); a listed domain covers its subdomains.
    pub free_mail_domains: Vec<String>,
    pub companies: Vec<Spanned<CompanyRecord>>,
    /// The CRM export RevOps keeps (`domain,company,employees,industry,country,account_owner`),
    /// relative to the configuration file; read by [`Config::load`].
    pub companies_csv: Option<String>,
    /// The rows of `companies_csv`, validated.
    #[serde(skip)]
    pub imported: Vec<CompanyRecord>,
    /// The providers that do I/O, in the order they are tried after the local table (see
    /// [`crate::enrichment`]). Each name must be configured below.
    pub providers: Vec<Spanned<String>>,
    /// The most one provider may take for one lead, unless its own section says otherwise.
    pub provider_budget_ms: u64,
    /// `[enrichment.geoip]`: the visitor's country from their IP address.
    pub geoip: Option<Spanned<GeoipConfig>>,
    /// `[enrichment.transcript]`: the conversation fetched from `conversation_transcript_url`.
    pub transcript: Option<Spanned<TranscriptConfig>>,
    /// `[[enrichment.http]]`: firmographics APIs looked up by company domain.
    pub http: Vec<Spanned<HttpProviderConfig>>,
    /// `[enrichment.crm]`: the prospect's existing owner, looked up in HubSpot or Salesforce.
    pub crm: Option<Spanned<CrmLookupConfig>>,
    /// `[enrichment.form_fields]`: which form fields hold what the prospect stated about their
    /// company, and how far it is trusted.
    pub form_fields: StatedFieldsConfig,
}

/// How far what the prospect typed is trusted against the firmographics table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatedTrust {
    /// The table (the CRM export) wins; the form fills what it does not know, before the I/O
    /// providers are asked.
    #[default]
    AfterTable,
    /// The prospect's own answer wins over the table and every provider.
    First,
    /// Form fields are not read as firmographics.
    Never,
}

/// `[enrichment.form_fields]`: the form field names (compared without regard to case, spaces,
/// `-` or `_`) that hold the prospect's country, company size and industry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatedFieldsConfig {
    pub trust: StatedTrust,
    pub country: Vec<String>,
    pub company_size: Vec<String>,
    pub industry: Vec<String>,
}

impl Default for StatedFieldsConfig {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        StatedFieldsConfig {
            trust: StatedTrust::AfterTable,
            country: names(&["country", "country_code", "company_country"]),
            company_size: names(&[
                "company_size",
                "employees",
                "numemployees",
                "employee_count",
            ]),
            industry: names(&["industry", "company_industry"]),
        }
    }
}

impl EnrichmentConfig {
    /// The provider names `providers` may list: every provider section configured.
    pub fn configured_providers(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.geoip.is_some() {
            names.push(providers::GEOIP.to_owned());
        }
        if self.transcript.is_some() {
            names.push(providers::TRANSCRIPT.to_owned());
        }
        if self.crm.is_some() {
            names.push(providers::CRM.to_owned());
        }
        names.extend(self.http.iter().map(|h| h.get_ref().name.clone()));
        names
    }

    /// The `[[enrichment.http]]` section called `name`.
    pub fn http_provider(&self, name: &str) -> Option<&HttpProviderConfig> {
        self.http
            .iter()
            .map(Spanned::get_ref)
            .find(|h| h.name == name)
    }

    /// Every known company: the inline table, then the imported CSV.
    pub fn all_companies(&self) -> impl Iterator<Item = &CompanyRecord> {
        self.companies
            .iter()
            .map(|c| c.get_ref())
            .chain(self.imported.iter())
    }
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        EnrichmentConfig {
            free_mail_domains: Vec::new(),
            companies: Vec::new(),
            companies_csv: None,
            imported: Vec::new(),
            providers: Vec::new(),
            form_fields: StatedFieldsConfig::default(),
            provider_budget_ms: 500,
            geoip: None,
            transcript: None,
            http: Vec::new(),
            crm: None,
        }
    }
}

/// One row of the firmographics table RevOps keeps (a CRM export).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyRecord {
    pub domain: String,
    pub name: String,
    #[serde(default)]
    pub employees: Option<u32>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub account_owner: Option<String>,
}

impl Config {
    /// Reads the firmographics CSV (a header row, then one company per row; empty cells are
    /// unknown). Every error names the file, the line and the column.
    pub fn import_companies(
        &self,
        text: &str,
        path: &str,
    ) -> Result<Vec<CompanyRecord>, ConfigError> {
        let invalid = |line: u64, key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: usize::try_from(line).unwrap_or(usize::MAX),
            key: key.to_owned(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|error| invalid(1, "header", error.to_string()))?
            .clone();
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|error| {
                let line = error.position().map(|p| p.line()).unwrap_or(1);
                invalid(line, "companies_csv", error.to_string())
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(1);
            let row: CsvRow = record.deserialize(Some(&headers)).map_err(|error| {
                match error.kind() {
                    // Named by its column header, as RevOps sees it in their spreadsheet.
                    csv::ErrorKind::Deserialize { err, .. } => {
                        let column = err
                            .field()
                            .and_then(|i| headers.get(usize::try_from(i).ok()?))
                            .unwrap_or("companies_csv");
                        invalid(line, column, err.kind().to_string())
                    }
                    _ => invalid(line, "companies_csv", error.to_string()),
                }
            })?;
            self.check_row(&row)
                .map_err(|(column, message)| invalid(line, column, message))?;
            records.push(CompanyRecord {
                domain: row.domain,
                name: row.company,
                employees: row.employees,
                industry: row.industry,
                country: row.country,
                account_owner: row.account_owner,
            });
        }
        Ok(records)
    }

    /// A row's domain, country and owner; the error names the column.
    fn check_row(&self, row: &CsvRow) -> Result<(), (&'static str, String)> {
        if row.domain.is_empty() || !row.domain.contains('.') {
            return Err(("domain", format!("{:?} is not a domain", row.domain)));
        }
        if let Some(country) = row.country.as_deref().filter(|c| !is_country_code(c)) {
            return Err((
                "country",
                format!("{country:?} is not an ISO 3166-1 alpha-2 country code"),
            ));
        }
        if let Some(owner) = row
            .account_owner
            .as_deref()
            .filter(|o| self.rep(o).is_none())
        {
            return Err(("account_owner", format!("unknown rep {owner:?}")));
        }
        Ok(())
    }
}

/// One row of the companies CSV, by its column headers.
#[derive(Deserialize)]
struct CsvRow {
    domain: String,
    company: String,
    employees: Option<u32>,
    industry: Option<String>,
    country: Option<String>,
    account_owner: Option<String>,
}

impl EnrichmentConfig {
    /// Owners are reps, provider sections are valid and resolved, and `providers` lists only
    /// configured ones, once each.
    pub(super) fn check(
        &mut self,
        v: &Validator<'_>,
        rep_ids: &HashSet<String>,
        env: Env<'_>,
    ) -> Result<(), ConfigError> {
        for (index, company) in self.companies.iter().enumerate() {
            if let Some(owner) = &company.get_ref().account_owner {
                if !rep_ids.contains(owner) {
                    return Err(v.invalid(
                        company.span(),
                        format!("enrichment.companies[{index}].account_owner"),
                        format!("unknown rep {owner:?}"),
                    ));
                }
            }
        }
        self.check_http_providers(v, env)?;
        self.check_provider_list(v)?;
        if self.provider_budget_ms == 0 {
            return Err(v.invalid(0..0, "enrichment.provider_budget_ms", "must be above 0"));
        }
        self.check_provider_sections(v)
    }

    /// `[[enrichment.http]]`: each section valid, names unique, API keys resolved (errors name
    /// the variable, never its value).
    fn check_http_providers(&mut self, v: &Validator<'_>, env: Env<'_>) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (index, section) in self.http.iter_mut().enumerate() {
            let span = section.span();
            let key = format!("enrichment.http[{index}]");
            let section = section.get_mut();
            section.problems().map_err(|(field, message)| {
                v.invalid(span.clone(), format!("{key}.{field}"), message)
            })?;
            if !names.insert(section.name.clone()) {
                return Err(v.invalid(
                    span,
                    format!("{key}.name"),
                    format!("duplicate provider name {:?}", section.name),
                ));
            }
            if let Some(variable) = &section.api_key_env {
                let value = env
                    .get(variable)
                    .filter(|value| !value.trim().is_empty())
                    .ok_or_else(|| {
                        v.invalid(
                            span.clone(),
                            format!("{key}.api_key_env"),
                            load::unset(variable),
                        )
                    })?;
                section.api_key = Some(SecretString::from(value.trim().to_owned()));
            }
        }
        Ok(())
    }

    /// `providers`: each name configured, and listed once.
    fn check_provider_list(&self, v: &Validator<'_>) -> Result<(), ConfigError> {
        let known = self.configured_providers();
        let mut listed = HashSet::new();
        for (index, name) in self.providers.iter().enumerate() {
            let key = format!("enrichment.providers[{index}]");
            if !known.contains(name.get_ref()) {
                let message = if known.is_empty() {
                    format!(
                        "unknown provider {:?}: no provider is configured",
                        name.get_ref()
                    )
                } else {
                    format!(
                        "unknown provider {:?}; configured: {}",
                        name.get_ref(),
                        known.join(", ")
                    )
                };
                return Err(v.invalid(name.span(), key, message));
            }
            if !listed.insert(name.get_ref().as_str()) {
                return Err(v.invalid(name.span(), key, "listed twice"));
            }
        }
        Ok(())
    }

    /// `[enrichment.crm]`: its budget and breaker, and the CRM's credentials configured where
    /// the write-back keeps them.
    pub(super) fn check_crm(
        &self,
        v: &Validator<'_>,
        notify: &super::NotifyConfig,
    ) -> Result<(), ConfigError> {
        let Some(crm) = &self.crm else {
            return Ok(());
        };
        if let Some(index) = self
            .http
            .iter()
            .position(|h| h.get_ref().name == providers::CRM)
        {
            return Err(v.invalid(
                self.http[index].span(),
                format!("enrichment.http[{index}].name"),
                "\"crm\" names the [enrichment.crm] lookup: choose another name",
            ));
        }
        let (span, section) = (crm.span(), crm.get_ref());
        if section.budget_ms == Some(0) {
            return Err(v.invalid(
                span,
                "enrichment.crm.budget_ms",
                "must be above 0 (leave it out for provider_budget_ms)",
            ));
        }
        if section.breaker_failures == 0 {
            return Err(v.invalid(span, "enrichment.crm.breaker_failures", "must be above 0"));
        }
        let configured = match section.source {
            CrmSource::Hubspot => notify.hubspot.is_some(),
            CrmSource::Salesforce => notify.salesforce.is_some(),
        };
        if !configured {
            let name = section.source.as_str();
            return Err(v.invalid(
                span,
                "enrichment.crm.source",
                format!(
                    "{name:?} needs [notify.{name}]: the lookup uses the credentials configured there"
                ),
            ));
        }
        Ok(())
    }

    /// `[enrichment.geoip]` and `[enrichment.transcript]`.
    fn check_provider_sections(&self, v: &Validator<'_>) -> Result<(), ConfigError> {
        if let Some(geoip) = &self.geoip {
            if geoip.get_ref().database.trim().is_empty() {
                return Err(v.invalid(
                    geoip.span(),
                    "enrichment.geoip.database",
                    "must name a .mmdb file",
                ));
            }
            if geoip.get_ref().budget_ms == Some(0) {
                return Err(v.invalid(
                    geoip.span(),
                    "enrichment.geoip.budget_ms",
                    "must be above 0 (leave it out for provider_budget_ms)",
                ));
            }
        }
        if let Some(transcript) = &self.transcript {
            if transcript.get_ref().budget_ms == Some(0) {
                return Err(v.invalid(
                    transcript.span(),
                    "enrichment.transcript.budget_ms",
                    "must be above 0 (leave it out for provider_budget_ms)",
                ));
            }
            if transcript.get_ref().max_bytes == 0 {
                return Err(v.invalid(
                    transcript.span(),
                    "enrichment.transcript.max_bytes",
                    "must be above 0",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::tests::{parse, MINIMAL};

    #[test]
    fn the_firmographics_csv_is_imported_and_each_bad_cell_names_its_line() {
        let config = parse(MINIMAL).expect("valid");
        let csv = "domain,company,employees,industry,country,account_owner\n\
                   acme.co.uk, Acme UK ,250,Manufacturing,gb,alice\n\
                   \n\
                   \"initech.com\",\"Initech, Inc.\",,,,\n";
        let rows = config
            .import_companies(csv, "companies.csv")
            .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "Acme UK");
        assert_eq!(rows[0].employees, Some(250));
        assert_eq!(rows[0].account_owner.as_deref(), Some("alice"));
        assert_eq!(rows[1].name, "Initech, Inc.");
        assert_eq!(
            (rows[1].employees, rows[1].country.as_deref()),
            (None, None)
        );

        let header = "domain,company,employees,industry,country,account_owner\n";
        let refused = |body: &str| {
            config
                .import_companies(&format!("{header}ok.com,Ok,,,,\n{body}"), "companies.csv")
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused("bad.com,Bad,lots,,,\n"),
            "companies.csv:3: employees: invalid digit found in string"
        );
        assert_eq!(
            refused("uk.com,UK Ltd,,,UK,\n"),
            "companies.csv:3: country: \"UK\" is not an ISO 3166-1 alpha-2 country code"
        );
        assert_eq!(
            refused("bob.com,Bob,,,,bob\n"),
            "companies.csv:3: account_owner: unknown rep \"bob\""
        );
        assert!(refused("nodomain,X,,,,\n").contains("companies.csv:3: domain"));
    }

    const HTTP_PROVIDER: &str = r#"
[[enrichment.http]]
name = "clearbit"
url = "https://company.example/v2/companies/find?domain={domain}"
api_key_env = "CLEARBIT_KEY"
budget_ms = 300
"#;

    fn with_provider(section: &str) -> String {
        MINIMAL.replace(
            "[[reps]]",
            "[enrichment]\nproviders = [\"clearbit\"]\n\n[[reps]]",
        ) + section
    }

    #[test]
    fn an_http_provider_is_configured_with_defaults_and_its_key_from_the_environment() {
        let env = |name: &str| (name == "CLEARBIT_KEY").then(|| "sk_test_123".to_owned());
        let config = Config::parse(&with_provider(HTTP_PROVIDER), "x.toml", &env).expect("valid");
        assert_eq!(config.enrichment.configured_providers(), vec!["clearbit"]);
        let http = config
            .enrichment
            .http_provider("clearbit")
            .expect("section");
        assert_eq!(http.budget_ms, Some(300));
        assert_eq!((http.retries, http.cache_ttl_hours), (1, 24));
        assert_eq!((http.breaker_failures, http.breaker_cooldown_secs), (5, 30));
        assert_eq!(http.fields.company.as_deref(), Some("/name"));
        assert_eq!(http.fields.country.as_deref(), Some("/geo/countryCode"));
        assert_eq!(
            http.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
            Some("sk_test_123".into())
        );
        assert!(!format!("{http:?}").contains("sk_test_123"));
    }

    #[test]
    fn an_http_provider_error_names_the_line_and_key_never_the_secret() {
        let text = with_provider(HTTP_PROVIDER);
        let error = parse(&text).expect_err("unset key").to_string();
        assert!(error.starts_with("leadrelay.toml:30:"), "{error}");
        assert!(
            error.contains(
                "enrichment.http[0].api_key_env: environment variable CLEARBIT_KEY is not set"
            ),
            "{error}"
        );

        let text = with_provider(&HTTP_PROVIDER.replace("?domain={domain}", ""));
        let env = |_: &str| Some("sk_test_123".to_owned());
        let error = Config::parse(&text, "x.toml", &env)
            .expect_err("no {domain}")
            .to_string();
        assert!(
            error.contains("enrichment.http[0].url: must contain {domain}"),
            "{error}"
        );
        assert!(!error.contains("sk_test_123"));

        let text = with_provider(&format!(
            "{HTTP_PROVIDER}[enrichment.http.fields]\ncountry = \"geo.countryCode\"\n"
        ));
        let error = Config::parse(&text, "x.toml", &env)
            .expect_err("bad pointer")
            .to_string();
        assert!(
            error.contains("enrichment.http[0].fields.country"),
            "{error}"
        );

        let listed_twice = with_provider(&format!("{HTTP_PROVIDER}{HTTP_PROVIDER}"));
        let error = Config::parse(&listed_twice, "x.toml", &env)
            .expect_err("twice")
            .to_string();
        assert!(
            error.contains("duplicate provider name \"clearbit\""),
            "{error}"
        );
    }

    #[test]
    fn a_listed_provider_must_be_configured() {
        let error = parse(&with_provider(""))
            .expect_err("not configured")
            .to_string();
        assert!(
            error.contains("unknown provider \"clearbit\": no provider is configured"),
            "{error}"
        );
    }

    #[test]
    fn provider_sections_are_validated() {
        let with = |section: &str| {
            parse(&MINIMAL.replace("[routing]", &format!("{section}\n\n[routing]")))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let error =
            with("[enrichment.geoip]\ndatabase = \"x.mmdb\"\nbudget_ms = 0").expect_err("0");
        assert!(
            error.contains("enrichment.geoip.budget_ms: must be above 0"),
            "{error}"
        );
        let error = with("[enrichment.transcript]\nmax_bytes = 0").expect_err("0");
        assert!(
            error.contains("enrichment.transcript.max_bytes: must be above 0"),
            "{error}"
        );
        let error = with("[enrichment]\nproviders = [\"transcript\"]").expect_err("unconfigured");
        assert!(error.contains("no provider is configured"), "{error}");
        with("[enrichment]\nproviders = [\"transcript\"]\n\n[enrichment.transcript]")
            .expect("an empty section takes the defaults");
    }

    #[test]
    fn the_crm_lookup_needs_the_crms_write_back_credentials() {
        let env = |name: &str| (name == "HUBSPOT_TOKEN").then(|| "pat-1".to_owned());
        let with = |sections: &str| {
            let text = MINIMAL.replace(
                "[routing]",
                &format!("[enrichment]\nproviders = [\"crm\"]\n\n{sections}\n\n[routing]"),
            );
            Config::parse(&text, "x.toml", &env).map_err(|e| e.to_string())
        };
        let error = with("[enrichment.crm]\nsource = \"hubspot\"").expect_err("no hubspot");
        assert!(
            error.contains(
                "enrichment.crm.source: \"hubspot\" needs [notify.hubspot]: the lookup uses the \
                 credentials configured there"
            ),
            "{error}"
        );
        let hubspot = "[notify.hubspot]\ntoken_env = \"HUBSPOT_TOKEN\"";
        let config = with(&format!(
            "[enrichment.crm]\nsource = \"hubspot\"\n\n{hubspot}"
        ))
        .expect("valid");
        assert_eq!(config.enrichment.configured_providers(), ["crm"]);
        let crm = config.enrichment.crm.as_ref().expect("section").get_ref();
        assert_eq!(crm.source, CrmSource::Hubspot);
        assert_eq!(crm.cache_ttl.0, std::time::Duration::from_secs(600));
        assert!(crm.company);
        assert_eq!(crm.budget_ms, None);

        let error = with(&format!(
            "[enrichment.crm]\nsource = \"hubspot\"\nbudget_ms = 0\n\n{hubspot}"
        ))
        .expect_err("0");
        assert!(
            error.contains("enrichment.crm.budget_ms: must be above 0"),
            "{error}"
        );
        let error = with(&format!(
            "[enrichment.crm]\nsource = \"salesforce\"\n\n{hubspot}"
        ))
        .expect_err("no salesforce");
        assert!(error.contains("needs [notify.salesforce]"), "{error}");
        let error = with(&format!(
            "[enrichment.crm]\nsource = \"hubspot\"\n\n[[enrichment.http]]\nname = \"crm\"\n\
             url = \"https://a.example/{{domain}}\"\n\n{hubspot}"
        ))
        .expect_err("name taken");
        assert!(error.contains("enrichment.http[0].name"), "{error}");
    }

    #[test]
    fn the_commented_provider_examples_in_the_shipped_config_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml");
        let text = std::fs::read_to_string(&path).expect("config/leadrelay.toml exists");
        // The [enrichment] block from the provider order to the HTTP provider's last pointer,
        // and the lines of the geoip and transcript sections and the source's allowed hosts.
        let keys = [
            "transcript_hosts =",
            "[enrichment.geoip]",
            "database =",
            "budget_ms =",
            "[enrichment.transcript]",
            "max_bytes =",
        ];
        let mut inside = false;
        let mut uncommented = Vec::new();
        for line in text.lines() {
            if line.starts_with("# providers = [") {
                inside = true;
            }
            let rest = line.strip_prefix('#').map(str::trim_start);
            let keep = match rest {
                Some(rest) if inside => rest,
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest,
                _ => line,
            };
            uncommented.push(keep);
            if line.starts_with("# country = ") {
                inside = false;
            }
        }
        let env = |name: &str| (name == "CLEARBIT_API_KEY").then(|| "key".to_owned());
        let config = Config::parse(&uncommented.join("\n"), "leadrelay.toml", &env)
            .expect("the uncommented examples validate");
        assert_eq!(
            config.enrichment.configured_providers(),
            ["geoip", "transcript", "clearbit"]
        );
        assert_eq!(config.enrichment.providers.len(), 3);
        assert_eq!(
            config.source("website").map(|s| s.transcript_hosts.clone()),
            Some(vec!["transcripts.chatbot.example".to_owned()])
        );
        assert_eq!(
            config.enrichment.companies.len(),
            parse(&text).map_or(0, |c| c.enrichment.companies.len())
        );
    }
}
