use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;

use super::*;
use crate::model::{CaptureEvent, EventKind};

/// A provider whose behaviour the test sets: answer, fail, or hang.
struct Scripted {
    name: &'static str,
    delay: Duration,
    answer: Result<Findings, ProviderError>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(
        name: &'static str,
        delay: Duration,
        answer: Result<Findings, ProviderError>,
    ) -> Arc<Self> {
        Arc::new(Scripted {
            name,
            delay,
            answer,
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl EnrichmentProvider for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn wanted(&self, request: &LookupRequest<'_>) -> Result<(), String> {
        request
            .company_domain()
            .map(|_| ())
            .ok_or_else(|| "no company domain".to_owned())
    }

    async fn lookup(
        &self,
        _request: &LookupRequest<'_>,
        _budget: Duration,
    ) -> Result<Findings, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.answer.clone()
    }
}

fn lead() -> Lead {
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCapture),
        captured_email: Some("ana@newco.io".into()),
        ..CaptureEvent::default()
    };
    Lead::captured(
        "lead-1".into(),
        "trace-1".into(),
        "website".into(),
        "evt-1".into(),
        capture,
        Vec::new(),
        Timestamp::UNIX_EPOCH,
    )
}

fn local() -> Enrichment {
    let mut enrichment = Enrichment {
        domain: Some("newco.io".into()),
        sources: vec!["domain_table: no match".into()],
        ..Enrichment::default()
    };
    enrichment.note_missing();
    enrichment
}

fn company(name: &str, employees: u32, country: &str) -> Findings {
    Findings {
        company: Some(name.into()),
        employees: Some(employees),
        country: Some(country.into()),
        ..Findings::default()
    }
}

fn budgeted(provider: Arc<Scripted>, millis: u64) -> Budgeted {
    Budgeted {
        provider,
        budget: Duration::from_millis(millis),
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_fills_the_missing_fields_and_the_lead_is_complete() {
    let api = Scripted::new(
        "api",
        Duration::from_millis(40),
        Ok(company("NewCo", 120, "PT")),
    );
    let providers = Providers::new(vec![budgeted(api, 300)]);
    let (enrichment, transcript) = providers
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    assert_eq!(enrichment.company.as_deref(), Some("NewCo"));
    assert_eq!(enrichment.employees, Some(120));
    assert_eq!(enrichment.country.as_deref(), Some("PT"));
    assert!(enrichment.missing.is_empty(), "{:?}", enrichment.missing);
    assert_eq!(enrichment.status, EnrichmentStatus::Complete);
    assert!(enrichment.sources.contains(&"api".to_owned()));
    let report = &enrichment.providers[0];
    assert_eq!(report.outcome, ProviderOutcome::Answered);
    assert_eq!(report.detail, "company, employees, country");
    assert_eq!(report.elapsed_ms, 40);
    assert!(transcript.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_costs_its_budget_and_no_more() {
    let hanging = Scripted::new("api", Duration::from_secs(3600), Ok(Findings::default()));
    let providers = Providers::new(vec![budgeted(hanging, 250)]);
    let started = Instant::now();
    let (enrichment, _) = providers
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(enrichment.status, EnrichmentStatus::Failed);
    let report = &enrichment.providers[0];
    assert_eq!(report.outcome, ProviderOutcome::TimedOut);
    assert_eq!(report.detail, "timed out after 250 ms");
    assert_eq!(enrichment.missing, vec!["company", "employees", "country"]);
}

#[tokio::test(start_paused = true)]
async fn the_leads_budget_caps_every_provider_together() {
    let slow = Scripted::new(
        "slow",
        Duration::from_millis(700),
        Ok(company("A", 1, "US")),
    );
    let next = Scripted::new(
        "next",
        Duration::from_millis(700),
        Ok(company("B", 2, "US")),
    );
    let last = Scripted::new("last", Duration::from_millis(10), Ok(company("C", 3, "US")));
    let providers = Providers::new(vec![
        budgeted(slow, 600),
        budgeted(next.clone(), 600),
        budgeted(last.clone(), 600),
    ]);
    let started = Instant::now();
    let (enrichment, _) = providers
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    // 600 ms for the first, the 400 left for the second, nothing for the third.
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let outcomes: Vec<_> = enrichment.providers.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            ProviderOutcome::TimedOut,
            ProviderOutcome::TimedOut,
            ProviderOutcome::TimedOut
        ]
    );
    assert_eq!(enrichment.providers[1].detail, "timed out after 400 ms");
    assert!(enrichment.providers[2]
        .detail
        .contains("budget of 1000 ms was spent"));
    assert_eq!(next.calls.load(Ordering::SeqCst), 1);
    assert_eq!(last.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_then_an_answer_is_partial_and_earlier_providers_win() {
    let down = Scripted::new(
        "down",
        Duration::ZERO,
        Err(ProviderError::Failed("answered 503".into())),
    );
    let first = Scripted::new("first", Duration::ZERO, Ok(company("First", 10, "FR")));
    let second = Scripted::new(
        "second",
        Duration::ZERO,
        Ok(Findings {
            industry: Some("Retail".into()),
            ..company("Second", 20, "DE")
        }),
    );
    let providers = Providers::new(vec![
        budgeted(down, 100),
        budgeted(first, 100),
        budgeted(second, 100),
    ]);
    let (enrichment, _) = providers
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    assert_eq!(enrichment.status, EnrichmentStatus::Partial);
    assert_eq!(enrichment.company.as_deref(), Some("First"));
    assert_eq!(enrichment.country.as_deref(), Some("FR"));
    assert_eq!(enrichment.industry.as_deref(), Some("Retail"));
    assert_eq!(enrichment.providers[0].outcome, ProviderOutcome::Failed);
    assert_eq!(enrichment.providers[0].detail, "answered 503");
    assert_eq!(enrichment.providers[2].detail, "industry");
}

#[tokio::test(start_paused = true)]
async fn a_provider_with_nothing_to_do_is_skipped_without_a_call() {
    let api = Scripted::new("api", Duration::ZERO, Ok(company("X", 1, "US")));
    let providers = Providers::new(vec![budgeted(api.clone(), 100)]);
    let free_mail = Enrichment {
        domain: Some("gmail.com".into()),
        free_mail: true,
        ..Enrichment::default()
    };
    let (enrichment, _) = providers
        .enrich(&lead(), free_mail, Duration::from_secs(1))
        .await;
    assert_eq!(enrichment.providers[0].outcome, ProviderOutcome::Skipped);
    assert_eq!(enrichment.providers[0].detail, "no company domain");
    assert_eq!(enrichment.status, EnrichmentStatus::Complete);
    assert_eq!(api.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_visitors_country_fills_the_country_only_when_the_company_has_none() {
    let geo = Scripted::new(
        "geoip",
        Duration::ZERO,
        Ok(Findings {
            visitor_country: Some("IE".into()),
            ..Findings::default()
        }),
    );
    let providers = Providers::new(vec![budgeted(geo, 50)]);
    let (unknown, _) = providers
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    assert_eq!(unknown.country.as_deref(), Some("IE"));
    assert_eq!(unknown.visitor_country.as_deref(), Some("IE"));

    let known = Enrichment {
        country: Some("US".into()),
        ..local()
    };
    let (known, _) = providers
        .enrich(&lead(), known, Duration::from_secs(1))
        .await;
    assert_eq!(known.country.as_deref(), Some("US"));
    assert_eq!(known.visitor_country.as_deref(), Some("IE"));
}

#[tokio::test(start_paused = true)]
async fn a_providers_note_says_what_it_found_or_why_it_took_nothing() {
    let found = Scripted::new(
        "crm",
        Duration::from_millis(5),
        Ok(Findings {
            account_owner: Some("dana".into()),
            note: Some("contact 501 owned by 34 = rep dana".into()),
            ..Findings::default()
        }),
    );
    let (enrichment, _) = Providers::new(vec![budgeted(found, 300)])
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    assert_eq!(enrichment.account_owner.as_deref(), Some("dana"));
    let report = &enrichment.providers[0];
    assert_eq!(report.outcome, ProviderOutcome::Answered);
    assert_eq!(
        report.detail,
        "account_owner (contact 501 owned by 34 = rep dana)"
    );

    let unmapped = Scripted::new(
        "crm",
        Duration::from_millis(5),
        Ok(Findings {
            note: Some("owner 99 is no rep's".into()),
            ..Findings::default()
        }),
    );
    let (enrichment, _) = Providers::new(vec![budgeted(unmapped, 300)])
        .enrich(&lead(), local(), Duration::from_secs(1))
        .await;
    assert_eq!(enrichment.account_owner, None);
    let report = &enrichment.providers[0];
    assert_eq!(report.outcome, ProviderOutcome::NoMatch);
    assert_eq!(report.detail, "owner 99 is no rep's");
    assert_eq!(enrichment.status, EnrichmentStatus::Complete);
}
