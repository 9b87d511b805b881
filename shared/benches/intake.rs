//! Verify + map per platform preset: what `POST /webhooks/{source}` spends on a platform's own
//! payload before the validation gates, for each shipped preset over its documented example
//! payload (`tests/it/fixtures/platforms/`), beside leadrelay's own capture event under Standard
//! Webhooks measured in the same run (the baseline).
//!
//! `cargo bench -p leadrelay-shared --bench intake`. Prints figures; asserts no timing.

use std::hint::black_box;
use std::path::Path;

use criterion::Criterion;
use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use leadrelay_shared::config::Config;
use leadrelay_shared::signature::{self, Delivery};
use leadrelay_shared::validate;

/// Each preset with the fixture it is measured on.
const PRESETS: &[(&str, &str)] = &[
    ("intercom", "intercom.json"),
    ("hubspot", "hubspot.json"),
    ("typeform", "typeform.json"),
    ("tally", "tally.json"),
    ("calendly", "calendly.json"),
    ("calcom", "calcom.json"),
    ("tidio", "tidio.json"),
    ("zendesk", "zendesk-trigger-ticket.json"),
    ("drift", "drift.json"),
    ("crisp", "crisp.json"),
    ("crisp-plugin", "crisp.json"),
    ("chatbase", "chatbase.json"),
    ("landbot", "landbot.json"),
];

const SECRET: &str = "bench-platform-secret-0123456789";

/// One signed request for a source.
struct Request {
    source: String,
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut text =
        std::fs::read_to_string(root.join("config/leadrelay.toml")).expect("config/leadrelay.toml");
    for (preset, _) in PRESETS {
        text.push_str(&format!(
            "\n[[sources]]\nid = \"{preset}\"\npreset = \"{preset}\"\nsecrets = [\"{SECRET}\"]\n"
        ));
    }
    let config = Config::parse(&text, "leadrelay.toml", &|_| None).expect("config parses");
    let now = Timestamp::now();

    let sign = |source: &str, body: Vec<u8>| -> Request {
        let source_config = config.source(source).expect("configured");
        let key = source_config.keys.first().expect("a key");
        let url = format!("https://leads.example.com/webhooks/{source}");
        let signed =
            signature::sign_request(&source_config.verifier, key, &url, &body, "evt_bench", now)
                .expect("signs in headers or the query");
        let mut headers = HeaderMap::new();
        for (name, value) in signed.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(&value).expect("value"),
            );
        }
        Request {
            source: source.to_owned(),
            url: signed.url,
            headers,
            body,
        }
    };
    let native = std::fs::read(root.join("events/webhooks/02-capture-emea-pricing.json"))
        .expect("sample event");
    let mut requests = vec![sign("website", native)];
    for (preset, fixture) in PRESETS {
        let body =
            std::fs::read(root.join("tests/it/fixtures/platforms").join(fixture)).expect("fixture");
        // Crisp's plugin hooks sign the compact body, as Crisp sends it.
        let body = if *preset == "crisp-plugin" {
            signature::declared::compact_json(&body)
        } else {
            body
        };
        requests.push(sign(preset, body));
    }

    // Every request must verify and map to a lead before it is timed.
    let run = |r: &Request| {
        let source = config.source(&r.source).expect("configured");
        let delivery = Delivery::post(&r.url, &r.headers, &r.body);
        let verified = signature::verify(&source.verifier, &source.keys, &delivery, now)
            .unwrap_or_else(|e| panic!("{}: {e}", r.source));
        let mapped = validate::read_payload(source.payload.as_ref(), &r.body, now)
            .unwrap_or_else(|e| panic!("{}: {e}", r.source));
        (verified, mapped)
    };
    for r in &requests {
        run(r);
    }

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("verify_and_map");
    for r in &requests {
        let name = if r.source == "website" {
            "baseline: standard_webhooks + capture event"
        } else {
            &r.source
        };
        group.bench_function(name, |b| b.iter(|| black_box(run(black_box(r)))));
    }
    group.finish();
    criterion.final_summary();
}
