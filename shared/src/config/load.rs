//! Where the configuration meets the machine. [`Config::load`] reads the file, looks `*_env`
//! names up in the process environment, reads the files it names beside it and resolves their
//! paths; everything else is the pure path of [`Config::parse`], which the AWS adapter calls
//! with SSM parameters as the environment.

use std::path::Path;

use super::{Config, ConfigError};

/// How `*_env` names are looked up: the process environment for [`Config::load`], SSM
/// parameters on AWS, a closure in tests.
#[derive(Clone, Copy)]
pub(super) struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env(lookup)
    }

    pub(super) fn get(self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// The variable's value, or the message every `*_env` key gives when it is unset.
    pub(super) fn require(self, name: &str) -> Result<String, String> {
        self.get(name).ok_or_else(|| unset(name))
    }

    /// The secrets one variable holds, separated by commas, spaces or newlines.
    pub(super) fn secrets(self, name: &str) -> Result<Vec<String>, String> {
        Ok(self
            .require(name)?
            .split([',', ' ', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// An unset variable, named; never a value.
pub(super) fn unset(name: &str) -> String {
    format!("environment variable {name} is not set")
}

impl Config {
    /// Reads, parses and validates a configuration file; `*_env` names come from the process
    /// environment, and the files it names are found beside it. Every command of the embedded
    /// binary starts here, so it also parses the Salesforce JWT key ([`Config::parse`] only
    /// checks its PEM; the Lambda functions parse it where they sign) and makes every one of the
    /// [`super::DeepChecks`] ([`super::DeepChecks::all`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let read_beside = |name: &str| {
            let file = dir.join(name);
            read(&file).map(|text| (file.display().to_string(), text))
        };
        let mut config = Config::from_text(
            &text,
            &path.display().to_string(),
            Env::new(&process_env),
            Some(&read_beside),
            super::DeepChecks::all(),
        )?;
        // Opened when the providers are built, so that a bad file fails the start naming it.
        if let Some(geoip) = config.enrichment.geoip.as_mut() {
            let geoip = geoip.get_mut();
            geoip.resolved = Some(dir.join(&geoip.database));
        }
        if let Some(salesforce) = &config.notify.salesforce {
            salesforce.signing_key()?;
        }
        Ok(config)
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MINIMAL;

    #[test]
    fn the_example_csv_imports_against_the_shipped_team() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let config = Config::load(&root.join("leadrelay.toml")).expect("shipped config");
        let text = std::fs::read_to_string(root.join("companies.example.csv")).expect("csv");
        let rows = config
            .import_companies(&text, "companies.example.csv")
            .expect("valid example");
        assert!(rows
            .iter()
            .any(|r| r.account_owner.as_deref() == Some("erin")));
    }

    #[test]
    fn the_geoip_database_is_found_beside_the_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = MINIMAL.replace(
            "[routing]",
            "[enrichment]\nproviders = [\"geoip\"]\n\n[enrichment.geoip]\n\
             database = \"geo/country.mmdb\"\nbudget_ms = 20\n\n[routing]",
        );
        std::fs::write(dir.path().join("leadrelay.toml"), toml).expect("write");
        let config = Config::load(&dir.path().join("leadrelay.toml")).expect("loads");
        let geoip = config.enrichment.geoip.as_ref().expect("configured");
        assert_eq!(geoip.get_ref().path(), dir.path().join("geo/country.mmdb"));
        assert_eq!(config.enrichment.configured_providers(), ["geoip"]);
        // The file itself is opened (and named when missing) by `leadrelay-geoip`.
    }
}
