//! The configuration loader: any text is parsed and validated, or refused with an error that
//! names a line; it never panics.
#![no_main]

use leadrelay_shared::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `*_env` names resolve (to a URL for names that mention one, else to a Standard Webhooks
    // secret), except names starting with UNSET: both the set and the unset paths are reached.
    let env = |name: &str| {
        let value = if name.starts_with("UNSET") {
            return None;
        } else if name.contains("URL") {
            "https://hooks.slack.com/services/T0/B0/fuzz"
        } else {
            "whsec_ZnV6ei1zZWNyZXQ="
        };
        Some(value.to_owned())
    };
    match Config::parse(text, "fuzz.toml", &env) {
        Ok(config) => {
            // A valid configuration is usable: every source resolves its keys and scheme.
            for source in &config.sources {
                let source = source.get_ref();
                let _ = source.signature_scheme();
                assert!(config.source(&source.id).is_some());
            }
        }
        Err(ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. }) => {
            assert!(line >= 1, "error line numbers start at 1");
            assert!(
                line <= text.matches('\n').count() + 1,
                "error line {line} past the end of the text"
            );
        }
        Err(_) => {}
    }
});
