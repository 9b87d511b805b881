//! The configuration loader: any text is parsed and validated, or refused with an error that
//! names a line; it never panics. Environment look-ups (`*_env` keys) resolve to a fixed
//! secret so that the validation behind them runs too.
#![no_main]

use leadrelay_shared::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name.len() % 2 == 0).then(|| "whsec_ZnV6ei1zZWNyZXQ=".to_owned());
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
