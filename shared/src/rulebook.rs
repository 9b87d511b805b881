//! The pure decisions before routing, compiled once from the configuration: enrichment from
//! the domain table and qualification into a tier with an SLA. No I/O happens here. Topic
//! matching lives in [`crate::topics`], routing in [`crate::routing`] (which never imports this
//! module; [`crate::replay`] runs the two together).

use std::collections::{HashMap, HashSet};

use crate::cleaning::{self, Phone};
use crate::config::{
    BehaviourConfig, CompanyRecord, Config, StatedFieldsConfig, StatedTrust, TierConfig,
};
use crate::model::{Enrichment, EventKind, GateAction, Lead, Metadata, Qualification, ScoreItem};
use crate::topics::{prospect_texts, TopicMatcher};
use crate::{json_path, stated};

/// The configuration, indexed for the hot path.
pub struct Rulebook {
    companies: HashMap<String, CompanyRecord>,
    /// The configuration's additions to the maintained free-mail list.
    free_mail: HashSet<String>,
    hand_raiser_pages: Vec<glob::Pattern>,
    event_tiers: HashMap<EventKind, u8>,
    tiers: Vec<TierConfig>,
    topics: TopicMatcher,
    topic_points: i32,
    /// Title words per seniority level (topic index = level index) and the level's points.
    seniority: TopicMatcher,
    seniority_levels: Vec<(String, i32)>,
    behaviour: BehaviourConfig,
    stated: StatedFieldsConfig,
}

impl Rulebook {
    pub fn new(config: &Config) -> Self {
        let companies = config
            .enrichment
            .all_companies()
            .map(|c| (table_key(&c.domain), c.clone()))
            .collect();
        let free_mail = config
            .enrichment
            .free_mail_domains
            .iter()
            .map(|d| table_key(d))
            .collect();
        let hand_raiser_pages = config
            .qualification
            .hand_raiser_pages
            .iter()
            // Patterns were validated at load; an invalid one cannot reach this point.
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        Rulebook {
            companies,
            free_mail,
            hand_raiser_pages,
            event_tiers: config
                .qualification
                .event_tiers
                .clone()
                .into_iter()
                .collect(),
            tiers: config.qualification.tiers.clone(),
            topics: TopicMatcher::new(&config.topics),
            topic_points: config.qualification.topic_points,
            seniority: TopicMatcher::new(
                &config
                    .qualification
                    .seniority
                    .iter()
                    .enumerate()
                    // Keys sort as the levels are listed, so index i is level i.
                    .map(|(i, l)| (format!("{i:04}"), l.titles.clone()))
                    .collect(),
            ),
            seniority_levels: config
                .qualification
                .seniority
                .iter()
                .map(|l| (l.level.clone(), l.points))
                .collect(),
            behaviour: config.qualification.behaviour.clone(),
            stated: config.enrichment.form_fields.clone(),
        }
    }

    /// Firmographics from the domain table, free-mail detection, and the prospect's name and
    /// phone number cleaned ([`crate::cleaning`]).
    pub fn enrich(&self, lead: &Lead) -> Enrichment {
        let capture = &lead.capture;
        // The full host is kept for the table lookup (an entry may name a subdomain); the
        // registrable domain is what the lead is filed under, so every subdomain of a company
        // is the same company.
        let host = capture
            .captured_email
            .as_deref()
            .and_then(cleaning::email_host);
        let domain = host
            .as_deref()
            .map(|h| cleaning::registrable_domain(h).unwrap_or_else(|| h.to_owned()));
        let mut enrichment = Enrichment {
            domain: domain.clone(),
            company: capture.company.clone(),
            name: capture.name.as_deref().and_then(cleaning::clean_name),
            ..Enrichment::default()
        };
        match (host, domain) {
            (Some(host), Some(domain)) => {
                if self.is_free_mail(&host, &domain) {
                    enrichment.free_mail = true;
                    enrichment.sources.push("free_mail_list".into());
                } else if let Some(record) = self.company_for(&host, &domain) {
                    enrichment.company = Some(record.name.clone());
                    enrichment.employees = record.employees;
                    enrichment.industry = record.industry.clone();
                    enrichment.country = record.country.as_ref().map(|c| c.to_ascii_uppercase());
                    enrichment.account_owner = record.account_owner.clone();
                    enrichment.sources.push("domain_table".into());
                    for (field, known) in [
                        ("company", true),
                        ("employees", record.employees.is_some()),
                        ("industry", record.industry.is_some()),
                        ("country", record.country.is_some()),
                        ("account_owner", record.account_owner.is_some()),
                    ] {
                        if known {
                            enrichment
                                .origins
                                .insert(field.into(), "domain_table".into());
                        }
                    }
                } else {
                    enrichment.sources.push("domain_table: no match".into());
                }
            }
            _ => enrichment.sources.push("no e-mail domain".into()),
        }
        self.apply_stated(&capture.form_fields, &mut enrichment);
        // Read after the lookup: the company's country is the default for national numbers.
        match capture
            .phone
            .as_deref()
            .and_then(|p| cleaning::normalise_phone(p, enrichment.country.as_deref()))
        {
            Some(Phone::E164(number)) => enrichment.phone_e164 = Some(number),
            Some(Phone::Unparsed(_)) => enrichment.sources.push("phone: kept as typed".into()),
            None => {}
        }
        enrichment.note_missing();
        enrichment
    }

    /// What the prospect stated in the form (country, company size, industry), normalised, in
    /// the configured order of trust against the table.
    fn apply_stated(
        &self,
        fields: &std::collections::BTreeMap<String, serde_json::Value>,
        enrichment: &mut Enrichment,
    ) {
        if self.stated.trust == StatedTrust::Never {
            return;
        }
        let first = self.stated.trust == StatedTrust::First;
        // The first configured name the form has, with its value as text.
        let find = |names: &[String]| {
            names.iter().find_map(|wanted| {
                fields
                    .iter()
                    .find(|(name, _)| stated::same_field_name(name, wanted))
                    .and_then(|(name, value)| Some((name.clone(), json_path::text_of(value)?)))
            })
        };
        let origin = |name: &str| format!("form field {name:?}");
        if let Some((name, code)) = find(&self.stated.country)
            .and_then(|(name, text)| Some((name, stated::country_code(&text)?)))
        {
            if first || enrichment.country.is_none() {
                enrichment.country = Some(code);
                enrichment.origins.insert("country".into(), origin(&name));
            }
        }
        if let Some((name, n)) = find(&self.stated.company_size)
            .and_then(|(name, text)| Some((name, stated::employees(&text)?)))
        {
            if first || enrichment.employees.is_none() {
                enrichment.employees = Some(n);
                enrichment.origins.insert("employees".into(), origin(&name));
            }
        }
        if let Some((name, industry)) = find(&self.stated.industry) {
            if first || enrichment.industry.is_none() {
                enrichment.industry = Some(industry);
                enrichment.origins.insert("industry".into(), origin(&name));
            }
        }
    }

    /// Whether the host or a parent of it, down to its registrable domain, is a free-mail
    /// provider on the maintained list or the configuration's additions. Never above the
    /// registrable domain, so that a suffix on a list (`co.uk`) cannot mark every company.
    fn is_free_mail(&self, host: &str, registrable: &str) -> bool {
        for candidate in cleaning::domain_and_parents(host) {
            if crate::lists::is_free_mail_domain(candidate) || self.free_mail.contains(candidate) {
                return true;
            }
            if candidate == registrable {
                break;
            }
        }
        false
    }

    /// Looks up a host, then its parents down to its registrable domain, so that
    /// `sales.eu.acme.co.uk` finds `eu.acme.co.uk` or else `acme.co.uk`, and never `co.uk`.
    fn company_for(&self, host: &str, registrable: &str) -> Option<&CompanyRecord> {
        for candidate in crate::cleaning::domain_and_parents(host) {
            if let Some(record) = self.companies.get(candidate) {
                return Some(record);
            }
            // Never above the registrable domain: `co.uk` is nobody's company.
            if candidate == registrable {
                return None;
            }
        }
        None
    }

    /// Tier, score with its breakdown, and the SLA that follows from the tier.
    pub fn qualify(&self, lead: &Lead) -> Qualification {
        match &lead.enrichment {
            Some(enrichment) => self.qualify_with(lead, enrichment),
            None => self.qualify_with(lead, &Enrichment::default()),
        }
    }

    /// [`Rulebook::qualify`] on `enrichment` instead of the lead's own (the enrich stage reads
    /// a provisional tier from what the local step found, before it is stored on the lead).
    pub fn qualify_with(&self, lead: &Lead, enrichment: &Enrichment) -> Qualification {
        let event = lead.event();
        let mut breakdown = Vec::new();
        let mut add = |signal: &str, points: i32| {
            breakdown.push(ScoreItem {
                signal: signal.to_owned(),
                points,
            })
        };

        let mut tier = self.event_tiers.get(&event).copied().unwrap_or(2);
        match event {
            EventKind::LeadCaptureFallback => add("asked a question the bot could not answer", 40),
            EventKind::LeadCapture => add("finished the conversation", 30),
            EventKind::LeadCapturePartial => add("partial capture", 10),
        }
        // Globs are written against the path, as in routing's `pages`, whatever the host.
        let on_hand_raiser_page = lead
            .capture
            .metadata
            .page_path()
            .is_some_and(|page| self.hand_raiser_pages.iter().any(|p| p.matches(&page)));
        if on_hand_raiser_page {
            add("on a hand-raiser page", 20);
            if event == EventKind::LeadCapture {
                tier = tier.min(1);
            }
        }
        match enrichment.employees {
            Some(n) if n >= 1000 => add("company of 1000+ employees", 25),
            Some(n) if n >= 200 => add("company of 200-999 employees", 15),
            Some(_) => add("company size known", 5),
            None => {}
        }
        if enrichment.account_owner.is_some() {
            add("named account", 15);
        }
        // The first listed level whose title words appear in the job title.
        let title = lead.capture.job_title.as_deref().unwrap_or("");
        if let Some((index, phrase)) = self.seniority.detect([title]).into_iter().next() {
            if let Some((level, points)) = self.seniority_levels.get(index) {
                add(&format!("{level} title (\"{phrase}\")"), *points);
            }
        }
        if enrichment.free_mail {
            add("free-mail address", -15);
            if enrichment.company.is_none() && event != EventKind::LeadCaptureFallback {
                tier = tier.max(self.lowest_tier());
            }
        }
        // Concepts the prospect raised (integration, scale, security, ...): each shows in the
        // breakdown with the phrase that matched, so the rep sees why it scored.
        if self.topic_points != 0 {
            for (topic, phrase) in self.topics.detect(prospect_texts(lead)) {
                let name = self.topics.name(topic);
                add(
                    &format!("asked about {name} (\"{phrase}\")"),
                    self.topic_points,
                );
            }
        }
        // Behaviour adds to the score only: routing can act on it through `min_score`.
        for (signal, points) in self.behaviour_signals(&lead.capture.metadata) {
            add(&signal, points);
        }
        let mut nurture = false;
        for flag in &lead.flags {
            let signal = match flag.action {
                GateAction::Flag => format!("flag: {}", flag.code),
                GateAction::Review => format!("flag: {} (review gate)", flag.code),
                GateAction::Nurture => {
                    nurture = true;
                    format!(
                        "flag: {} (nurture gate: tier {})",
                        flag.code,
                        self.lowest_tier()
                    )
                }
            };
            add(&signal, -10);
        }
        // Last, so that no signal above (a hand-raiser page, a fallback) lifts it back out.
        if nurture {
            tier = self.lowest_tier();
        }
        let tier = self.known_tier(tier);
        let sla_minutes = self
            .tiers
            .iter()
            .find(|t| t.tier == tier)
            .map(|t| t.sla_minutes)
            .unwrap_or(24 * 60);
        Qualification {
            tier,
            score: breakdown.iter().map(|item| item.points).sum(),
            sla_minutes,
            breakdown,
        }
    }

    /// The behaviour signals in the chatbot's metadata that reach their minimum, each with the
    /// figure it was read from.
    fn behaviour_signals(&self, metadata: &Metadata) -> Vec<(String, i32)> {
        let b = &self.behaviour;
        let mut signals = Vec::new();
        let first = |keys: &[String], read: fn(&serde_json::Value) -> Option<Visits>| {
            keys.iter()
                .find_map(|key| metadata.extra.get(key).and_then(read))
        };
        if b.pages_visited_points != 0 {
            if let Some(Visits::Count(pages)) = first(&b.pages_visited_keys, read_pages) {
                if pages >= b.pages_visited_min {
                    signals.push((format!("visited {pages} pages"), b.pages_visited_points));
                }
            }
        }
        if b.time_on_pricing_points != 0 {
            if let Some(Visits::Count(secs)) = first(&b.time_on_pricing_keys, read_count) {
                if secs >= b.time_on_pricing_min_secs {
                    signals.push((
                        format!("time on pricing ({})", minutes_and_seconds(secs)),
                        b.time_on_pricing_points,
                    ));
                }
            }
        }
        if b.return_visit_points != 0 {
            match first(&b.return_visit_keys, read_return) {
                Some(Visits::Returning) => {
                    signals.push(("returning visitor".to_owned(), b.return_visit_points))
                }
                Some(Visits::Count(visits)) if visits >= b.return_visit_min_visits => {
                    signals.push((
                        format!("returning visitor ({visits} visits)"),
                        b.return_visit_points,
                    ))
                }
                _ => {}
            }
        }
        signals
    }

    fn lowest_tier(&self) -> u8 {
        self.tiers.iter().map(|t| t.tier).max().unwrap_or(3)
    }

    /// The nearest defined tier at or below the requested urgency.
    fn known_tier(&self, wanted: u8) -> u8 {
        let mut defined: Vec<u8> = self.tiers.iter().map(|t| t.tier).collect();
        defined.sort_unstable();
        defined
            .iter()
            .copied()
            .find(|t| *t >= wanted)
            .or_else(|| defined.last().copied())
            .unwrap_or(wanted)
    }

    pub fn tier_label(&self, tier: u8) -> &str {
        self.tiers
            .iter()
            .find(|t| t.tier == tier)
            .map(|t| t.label.as_str())
            .unwrap_or("")
    }
}

/// A figure read from the chatbot's free-form metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visits {
    Count(u64),
    /// A returning visitor whose visit count was not sent.
    Returning,
}

/// A non-negative finite number, rounded down; anything else (text, negative, a float that
/// is not finite) is no figure at all.
fn read_count(value: &serde_json::Value) -> Option<Visits> {
    let number = value.as_f64().filter(|n| n.is_finite() && *n >= 0.0)?;
    // Saturates for absurd figures rather than wrapping.
    Some(Visits::Count(number.floor() as u64))
}

/// A page count, or an array of pages (its length).
fn read_pages(value: &serde_json::Value) -> Option<Visits> {
    match value {
        serde_json::Value::Array(pages) => Some(Visits::Count(pages.len() as u64)),
        other => read_count(other),
    }
}

/// `true` (count unknown), `false` (a first visit), or a visit count.
fn read_return(value: &serde_json::Value) -> Option<Visits> {
    match value {
        serde_json::Value::Bool(true) => Some(Visits::Returning),
        serde_json::Value::Bool(false) => Some(Visits::Count(1)),
        other => read_count(other),
    }
}

/// `45s`, `2m 05s`.
fn minutes_and_seconds(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m {:02}s", secs / 60, secs % 60)
    }
}

/// A configured domain in the form e-mail hosts are compared in; an entry that is not a host
/// name is kept lower-cased so it still matches what it matched before.
fn table_key(domain: &str) -> String {
    cleaning::normalise_host(domain).unwrap_or_else(|| domain.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CaptureEvent, LeadState, Metadata, Timeline};

    fn lead(email: &str, name: &str, phone: &str) -> Lead {
        Lead {
            id: "lead-1".into(),
            source: "website".into(),
            event_id: "evt-1".into(),
            trace_id: "trace-1".into(),
            state: LeadState::Captured,
            capture: CaptureEvent {
                event: Some(EventKind::LeadCapture),
                timestamp: None,
                visitor_id: None,
                conversation_id: None,
                captured_email: Some(email.into()),
                name: Some(name.into()),
                company: None,
                phone: Some(phone.into()),
                job_title: None,
                trigger_query: None,
                conversation_transcript_url: None,
                transcript: Vec::new(),
                form_fields: Default::default(),
                metadata: Metadata::default(),
            },
            incomplete: false,
            flags: Vec::new(),
            enrichment: None,
            qualification: None,
            assignment: None,
            timeline: Timeline::default(),
            last_failure: None,
            close_reason: None,
            merged_into: None,
            claim: None,
            escalations: Vec::new(),
            activities: Vec::new(),
            misroutes: Vec::new(),
            reroutes: Vec::new(),
            revision: 0,
        }
    }

    fn rulebook() -> Rulebook {
        let text = include_str!("../../config/leadrelay.toml");
        let config = Config::parse(text, "leadrelay.toml", &|_| None).expect("valid config");
        Rulebook::new(&config)
    }

    #[test]
    fn a_subdomain_address_finds_its_company_and_name_and_phone_are_cleaned() {
        let enrichment = rulebook().enrich(&lead(
            "Tom@Sales.EU.Initech.co.uk",
            "  tom   O'BRIEN ",
            "020 7946 0958",
        ));
        assert_eq!(enrichment.domain.as_deref(), Some("initech.co.uk"));
        assert_eq!(enrichment.company.as_deref(), Some("Initech UK"));
        assert_eq!(enrichment.country.as_deref(), Some("GB"));
        assert_eq!(enrichment.sources, vec!["domain_table".to_owned()]);
        assert!(enrichment.missing.is_empty());
        assert_eq!(enrichment.name.as_deref(), Some("Tom O'Brien"));
        // National format, read against the company's country.
        assert_eq!(enrichment.phone_e164.as_deref(), Some("+442079460958"));
    }

    #[test]
    fn without_a_known_country_only_international_numbers_are_normalised() {
        let rulebook = rulebook();
        let national = rulebook.enrich(&lead("jane@unknown-co.com", "JANE DOE", "020 7946 0958"));
        assert_eq!(national.domain.as_deref(), Some("unknown-co.com"));
        assert_eq!(national.country, None);
        assert_eq!(national.phone_e164, None);
        assert!(national
            .sources
            .contains(&"phone: kept as typed".to_owned()));
        assert_eq!(national.name.as_deref(), Some("Jane Doe"));

        let international =
            rulebook.enrich(&lead("jane@unknown-co.com", "Jane", "+1 (415) 555-2671"));
        assert_eq!(international.phone_e164.as_deref(), Some("+14155552671"));
    }

    #[test]
    fn free_mail_comes_from_the_maintained_list_subdomains_included() {
        let rulebook = rulebook();
        for email in ["sam@gmail.com", "Sam@Mail.Yahoo.co.uk", "x@web.de"] {
            let enrichment = rulebook.enrich(&lead(email, "Sam", ""));
            assert!(enrichment.free_mail, "{email}");
            assert_eq!(enrichment.company, None, "{email}");
        }
        for email in ["tom@initech.co.uk", "jane@unknown-co.com"] {
            assert!(
                !rulebook.enrich(&lead(email, "Tom", "")).free_mail,
                "{email}"
            );
        }
    }

    #[test]
    fn configured_free_mail_domains_add_to_the_maintained_list() {
        let text = include_str!("../../config/leadrelay.toml").replacen(
            "[enrichment]\n",
            "[enrichment]\nfree_mail_domains = [\"Regional-ISP.net\", \"co.uk\"]\n",
            1,
        );
        let config = Config::parse(&text, "leadrelay.toml", &|_| None).expect("valid config");
        let rulebook = Rulebook::new(&config);
        let isp = rulebook.enrich(&lead("jo@mail.regional-isp.net", "Jo", ""));
        assert!(isp.free_mail);
        assert_eq!(isp.sources, vec!["free_mail_list".to_owned()]);
        // The maintained list still applies.
        assert!(rulebook.enrich(&lead("jo@gmail.com", "Jo", "")).free_mail);
        // A public suffix on the list never marks the companies below it.
        let company = rulebook.enrich(&lead("tom@initech.co.uk", "Tom", ""));
        assert!(!company.free_mail);
        assert_eq!(company.company.as_deref(), Some("Initech UK"));
    }

    fn flagged(action: GateAction) -> Lead {
        let mut lead = lead("info@globex-logistics.com", "Globex", "");
        lead.capture.event = Some(EventKind::LeadCaptureFallback);
        lead.capture.metadata.source_url = Some("/pricing".into());
        lead.flags.push(crate::model::Flag {
            code: "role_address".into(),
            detail: "a role address, not a person's: info@".into(),
            action,
        });
        lead
    }

    #[test]
    fn a_nurture_gate_forces_the_lowest_tier_and_says_so() {
        let rulebook = rulebook();
        let mut lead = flagged(GateAction::Nurture);
        lead.enrichment = Some(rulebook.enrich(&lead));
        let nurtured = rulebook.qualify(&lead);
        // A fallback question on the pricing page would be tier 1.
        assert_eq!((nurtured.tier, nurtured.sla_minutes), (3, 1440));
        assert!(
            nurtured.breakdown.contains(&ScoreItem {
                signal: "flag: role_address (nurture gate: tier 3)".into(),
                points: -10,
            }),
            "{:?}",
            nurtured.breakdown
        );
        // Review and flag leave the tier alone; the breakdown names the gate either way.
        for (action, signal) in [
            (GateAction::Review, "flag: role_address (review gate)"),
            (GateAction::Flag, "flag: role_address"),
        ] {
            let mut lead = flagged(action);
            lead.enrichment = Some(rulebook.enrich(&lead));
            let q = rulebook.qualify(&lead);
            assert_eq!(q.tier, 1, "{action:?}");
            assert!(q.breakdown.iter().any(|i| i.signal == signal), "{action:?}");
        }
    }

    /// The behaviour items of a lead whose metadata carries `extra`, and its tier.
    fn behaviour(rulebook: &Rulebook, extra: serde_json::Value) -> (Vec<ScoreItem>, u8) {
        let mut lead = lead("jane@unknown-co.com", "Jane", "");
        lead.capture.metadata.extra = serde_json::from_value(extra).expect("an object");
        lead.enrichment = Some(rulebook.enrich(&lead));
        let q = rulebook.qualify(&lead);
        let items = q
            .breakdown
            .into_iter()
            .filter(|i| {
                i.signal.starts_with("visited")
                    || i.signal.contains("pricing")
                    || i.signal.starts_with("returning")
            })
            .collect();
        (items, q.tier)
    }

    fn item(signal: &str, points: i32) -> ScoreItem {
        ScoreItem {
            signal: signal.to_owned(),
            points,
        }
    }

    #[test]
    fn behaviour_signals_score_with_their_figures() {
        let rulebook = rulebook();
        let (items, _) = behaviour(
            &rulebook,
            serde_json::json!({"pages_visited": 7, "time_on_pricing_secs": 125, "visit_count": 3}),
        );
        assert_eq!(
            items,
            [
                item("visited 7 pages", 10),
                item("time on pricing (2m 05s)", 10),
                item("returning visitor (3 visits)", 10),
            ]
        );
        // An array of pages counts its entries; `true` is a return without a count; the
        // second key of a signal is read when the first is absent.
        let (items, _) = behaviour(
            &rulebook,
            serde_json::json!({
                "pages_visited": ["/", "/product", "/pricing", "/docs", "/about"],
                "pricing_time_secs": 60.9,
                "returning_visitor": true,
            }),
        );
        assert_eq!(
            items,
            [
                item("visited 5 pages", 10),
                item("time on pricing (1m 00s)", 10),
                item("returning visitor", 10),
            ]
        );
    }

    #[test]
    fn behaviour_below_its_minimum_or_of_the_wrong_type_scores_nothing() {
        let rulebook = rulebook();
        for extra in [
            serde_json::json!({"pages_visited": 4, "time_on_pricing_secs": 59, "visit_count": 1}),
            serde_json::json!({"returning_visitor": false, "pages_visited": []}),
            serde_json::json!({
                "pages_visited": "seven",
                "time_on_pricing_secs": -300,
                "returning_visitor": "yes",
                "visit_count": {"n": 3},
            }),
            serde_json::json!({"pages_visited": null, "time_on_pricing_secs": [120]}),
            serde_json::json!({"utm_source": "newsletter"}),
        ] {
            assert_eq!(behaviour(&rulebook, extra.clone()).0, [], "{extra}");
        }
        // An absurd figure saturates instead of overflowing.
        let (items, _) = behaviour(&rulebook, serde_json::json!({"pages_visited": 1e300}));
        assert_eq!(items, [item(&format!("visited {} pages", u64::MAX), 10)]);
    }

    #[test]
    fn behaviour_keys_minimums_and_points_are_configurable_and_never_move_the_tier() {
        let text = include_str!("../../config/leadrelay.toml").replacen(
            "[[qualification.tiers]]",
            "[qualification.behaviour]\npages_visited_keys = [\"pv\"]\npages_visited_min = 2\npages_visited_points = 25\ntime_on_pricing_points = 0\nreturn_visit_min_visits = 4\n\n[[qualification.tiers]]",
            1,
        );
        let config = Config::parse(&text, "leadrelay.toml", &|_| None).expect("valid config");
        let rulebook = Rulebook::new(&config);
        let extra = serde_json::json!({
            "pv": 2, "pages_visited": 50, "time_on_pricing_secs": 600, "visit_count": 3,
        });
        let (items, tier) = behaviour(&rulebook, extra.clone());
        assert_eq!(items, [item("visited 2 pages", 25)]);
        // A plain capture is tier 2 with or without behaviour.
        let (_, without) = behaviour(&rulebook, serde_json::json!({}));
        assert_eq!((tier, without), (2, 2));
        let (items, tier) = behaviour(&self::rulebook(), extra);
        assert_eq!(items.len(), 3);
        assert_eq!(tier, 2);

        for (setting, error) in [
            (
                "return_visit_min_visits = 1",
                "return_visit_min_visits: must be at least 2",
            ),
            (
                "pages_visited_min = 0",
                "pages_visited_min: must be at least 1",
            ),
            (
                "time_on_pricing_keys = [\"\"]",
                "time_on_pricing_keys: a key must not be empty",
            ),
        ] {
            let text = include_str!("../../config/leadrelay.toml").replacen(
                "[[qualification.tiers]]",
                &format!("[qualification.behaviour]\n{setting}\n\n[[qualification.tiers]]"),
                1,
            );
            let refused = Config::parse(&text, "leadrelay.toml", &|_| None)
                .expect_err(setting)
                .to_string();
            assert!(refused.contains(error), "{refused}");
        }
    }

    #[test]
    fn older_enrichments_without_the_cleaned_fields_still_read() {
        let stored = r#"{"domain":"initech.co.uk","free_mail":false,"sources":["domain_table"]}"#;
        let enrichment: Enrichment = serde_json::from_str(stored).expect("reads");
        assert_eq!(enrichment.name, None);
        assert_eq!(enrichment.phone_e164, None);
        let written = serde_json::to_string(&enrichment).expect("writes");
        assert!(!written.contains("phone_e164"), "{written}");
    }

    #[test]
    fn load_reads_the_csv_beside_the_config_and_enrichment_uses_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = crate::config::tests::MINIMAL.replace(
            "[routing]",
            "[enrichment]\ncompanies_csv = \"crm/companies.csv\"\n\n[routing]",
        );
        std::fs::write(dir.path().join("leadrelay.toml"), toml).expect("write");
        std::fs::create_dir(dir.path().join("crm")).expect("mkdir");
        std::fs::write(
            dir.path().join("crm/companies.csv"),
            "domain,company,employees,industry,country,account_owner\nacme.co.uk,Acme UK,250,,GB,alice\n",
        )
        .expect("write");
        let config =
            crate::config::Config::load(&dir.path().join("leadrelay.toml")).expect("loads");
        let rulebook = Rulebook::new(&config);
        let lead: Lead = serde_json::from_value(serde_json::json!({
            "id": "l", "source": "website", "event_id": "e", "trace_id": "t", "state": "captured",
            "capture": {"event": "lead_capture", "captured_email": "jo@sales.acme.co.uk"},
            "incomplete": false, "flags": [], "timeline": {}
        }))
        .expect("lead");
        let enrichment = rulebook.enrich(&lead);
        assert_eq!(enrichment.company.as_deref(), Some("Acme UK"));
        assert_eq!(enrichment.account_owner.as_deref(), Some("alice"));

        std::fs::remove_file(dir.path().join("crm/companies.csv")).expect("rm");
        let error = crate::config::Config::load(&dir.path().join("leadrelay.toml"))
            .expect_err("missing csv");
        assert!(error.to_string().contains("companies.csv"), "{error}");
    }
}
