//! IP geolocation: the visitor's IP address → the country they chatted from, read from a
//! MaxMind-format database (GeoLite2-Country, GeoIP2-Country, or a City database).
//!
//! The database is opened once, at start; a lookup is a memory walk of microseconds, so it runs
//! inline in the async call.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use leadrelay_shared::config::GeoipConfig;
use maxminddb::{PathElement, Reader};

use leadrelay_shared::enrichment::{
    Budgeted, EnrichmentProvider, Findings, LookupRequest, ProviderError, SetupError,
};

/// The name `[enrichment] providers` lists.
pub use leadrelay_shared::config::providers::GEOIP as NAME;

/// The provider: an open reader over the whole database, held in memory.
pub struct Geoip {
    reader: Reader<Vec<u8>>,
}

impl Geoip {
    /// Opens the database; the error names the file, so a start that fails says which.
    pub fn open(config: &GeoipConfig) -> Result<Self, SetupError> {
        let path = config.path();
        let reader = Reader::open_readfile(&path).map_err(|error| SetupError {
            provider: NAME.into(),
            message: format!("cannot open the database {}: {error}", path.display()),
        })?;
        Ok(Geoip { reader })
    }

    /// The provider with its budget, as `leadrelay_providers::from_config` lists it.
    pub fn budgeted(config: &GeoipConfig, default_budget_ms: u64) -> Result<Budgeted, SetupError> {
        Ok(Budgeted {
            provider: Arc::new(Geoip::open(config)?),
            budget: Duration::from_millis(config.budget_ms.unwrap_or(default_budget_ms)),
        })
    }

    /// The country of `ip`, ISO 3166-1 alpha-2 upper case; `None` for an address no database
    /// can place (private, loopback, ...) or one this database does not hold.
    pub fn country(&self, ip: IpAddr) -> Result<Option<String>, ProviderError> {
        // A dual-stack server may report an IPv4 visitor as ::ffff:a.b.c.d; not every database
        // aliases that range to its IPv4 tree, so look the IPv4 address up.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            IpAddr::V4(_) => ip,
        };
        if !is_public(ip) {
            return Ok(None);
        }
        let failed = |error: maxminddb::MaxMindDbError| {
            ProviderError::Failed(format!("database lookup failed: {error}"))
        };
        let found = self.reader.lookup(ip).map_err(failed)?;
        if !found.has_data() {
            return Ok(None);
        }
        let code: Option<String> = found
            .decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")])
            .map_err(failed)?;
        // Anything but two letters is not a country code routing could use.
        Ok(code
            .filter(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()))
            .map(|c| c.to_ascii_uppercase()))
    }
}

#[async_trait]
impl EnrichmentProvider for Geoip {
    fn name(&self) -> &str {
        NAME
    }

    fn wanted(&self, request: &LookupRequest<'_>) -> Result<(), String> {
        if request.enrichment.visitor_country.is_some() {
            return Err("visitor country already known".into());
        }
        match request.visitor_ip() {
            Some(_) => Ok(()),
            None => Err("no visitor IP address".into()),
        }
    }

    async fn lookup(
        &self,
        request: &LookupRequest<'_>,
        _budget: Duration,
    ) -> Result<Findings, ProviderError> {
        let Some(ip) = request.visitor_ip() else {
            return Ok(Findings::default());
        };
        Ok(Findings {
            visitor_country: self.country(ip)?,
            ..Findings::default()
        })
    }
}

/// Whether `ip` is an address on the public internet, which a geolocation database can place.
/// (Documentation ranges count as public: the test database uses them.)
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT (RFC 6598).
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7, unique local (RFC 4193).
                || (first & 0xfe00) == 0xfc00
                // fe80::/10, link local.
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture() -> GeoipConfig {
        GeoipConfig {
            database: "geoip-test.mmdb".into(),
            budget_ms: None,
            resolved: Some(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geoip-test.mmdb"),
            ),
        }
    }

    fn country(geoip: &Geoip, ip: &str) -> Option<String> {
        geoip
            .country(ip.parse().expect("an IP address"))
            .expect("lookup")
    }

    #[test]
    fn a_known_address_gives_its_country_in_upper_case() {
        let geoip = Geoip::open(&fixture()).expect("opens");
        assert_eq!(country(&geoip, "203.0.113.7").as_deref(), Some("PT"));
        assert_eq!(country(&geoip, "198.51.100.7").as_deref(), Some("DE"));
        // The database holds "gb".
        assert_eq!(country(&geoip, "198.51.100.200").as_deref(), Some("GB"));
    }

    #[test]
    fn ipv6_and_ipv4_mapped_addresses_are_looked_up() {
        let geoip = Geoip::open(&fixture()).expect("opens");
        assert_eq!(country(&geoip, "2001:db8::1").as_deref(), Some("JP"));
        assert_eq!(country(&geoip, "::ffff:203.0.113.7").as_deref(), Some("PT"));
    }

    #[test]
    fn private_loopback_and_unknown_addresses_have_no_country() {
        let geoip = Geoip::open(&fixture()).expect("opens");
        // 10/8 is in the test database with a country; it must not be asked about.
        for ip in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "169.254.0.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(country(&geoip, ip), None, "{ip}");
        }
        // Not in the database; in it without a country.
        assert_eq!(country(&geoip, "8.8.8.8"), None);
        assert_eq!(country(&geoip, "192.0.2.1"), None);
    }

    #[tokio::test]
    async fn the_visitor_country_fills_the_country_and_a_lead_without_an_ip_is_skipped() {
        use leadrelay_shared::model::{Enrichment, Lead, ProviderOutcome};
        let lead = |ip: serde_json::Value| -> Lead {
            serde_json::from_value(serde_json::json!({
                "id": "l", "source": "website", "event_id": "e", "trace_id": "t",
                "state": "captured", "incomplete": false, "flags": [], "timeline": {},
                "capture": {"event": "lead_capture", "captured_email": "jo@acme.io",
                            "metadata": {"ip_address": ip}}
            }))
            .expect("lead")
        };
        let providers =
            leadrelay_shared::enrichment::Providers::new(vec![
                Geoip::budgeted(&fixture(), 100).expect("opens")
            ]);
        let budget = Duration::from_secs(1);
        let (found, _) = providers
            .enrich(&lead(" 203.0.113.7 ".into()), Enrichment::default(), budget)
            .await;
        assert_eq!(found.visitor_country.as_deref(), Some("PT"));
        assert_eq!(found.country.as_deref(), Some("PT"));
        assert_eq!(found.sources, ["geoip"]);

        let (private, _) = providers
            .enrich(&lead("10.0.0.1".into()), Enrichment::default(), budget)
            .await;
        assert_eq!(private.providers[0].outcome, ProviderOutcome::NoMatch);
        assert_eq!(private.country, None);

        for ip in [serde_json::Value::Null, "not-an-ip".into()] {
            let (skipped, _) = providers
                .enrich(&lead(ip), Enrichment::default(), budget)
                .await;
            assert_eq!(skipped.providers[0].outcome, ProviderOutcome::Skipped);
            assert_eq!(skipped.providers[0].detail, "no visitor IP address");
        }
        let known = Enrichment {
            visitor_country: Some("FR".into()),
            ..Enrichment::default()
        };
        let (skipped, _) = providers
            .enrich(&lead("203.0.113.7".into()), known, budget)
            .await;
        assert_eq!(skipped.providers[0].outcome, ProviderOutcome::Skipped);
    }

    #[test]
    fn a_missing_or_broken_database_fails_the_start_naming_the_file() {
        let mut config = fixture();
        config.resolved = Some(PathBuf::from("/nonexistent/GeoLite2-Country.mmdb"));
        let error = Geoip::open(&config).err().expect("refused").to_string();
        assert!(
            error.starts_with("enrichment provider geoip: cannot open the database")
                && error.contains("/nonexistent/GeoLite2-Country.mmdb"),
            "{error}"
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let junk = dir.path().join("junk.mmdb");
        std::fs::write(&junk, b"not a maxmind database").expect("write");
        config.resolved = Some(junk);
        let error = Geoip::open(&config).err().expect("refused").to_string();
        assert!(error.contains("junk.mmdb"), "{error}");
    }
}
