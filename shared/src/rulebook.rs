//! The pure decisions before routing, compiled once from the configuration: enrichment from
//! the domain table and qualification into a tier with an SLA. No I/O happens here. Routing
//! lives in [`crate::routing`].

use std::collections::{HashMap, HashSet};

use crate::cleaning::{self, Phone};
use crate::config::{CompanyRecord, Config, TierConfig};
use crate::model::{Enrichment, EventKind, Lead, Qualification, ScoreItem};
use crate::routing::topics::{prospect_texts, TopicMatcher};

/// The configuration, indexed for the hot path.
pub struct Rulebook {
    companies: HashMap<String, CompanyRecord>,
    free_mail: HashSet<String>,
    hand_raiser_pages: Vec<glob::Pattern>,
    event_tiers: HashMap<EventKind, u8>,
    tiers: Vec<TierConfig>,
    topics: TopicMatcher,
    topic_points: i32,
    /// Title words per seniority level (topic index = level index) and the level's points.
    seniority: TopicMatcher,
    seniority_levels: Vec<(String, i32)>,
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
                if self.free_mail.contains(&host) || self.free_mail.contains(&domain) {
                    enrichment.free_mail = true;
                    enrichment.sources.push("free_mail_list".into());
                } else if let Some(record) = self.company_for(&host, &domain) {
                    enrichment.company = Some(record.name.clone());
                    enrichment.employees = record.employees;
                    enrichment.industry = record.industry.clone();
                    enrichment.country = record.country.as_ref().map(|c| c.to_ascii_uppercase());
                    enrichment.account_owner = record.account_owner.clone();
                    enrichment.sources.push("domain_table".into());
                } else {
                    enrichment.sources.push("domain_table: no match".into());
                }
            }
            _ => enrichment.sources.push("no e-mail domain".into()),
        }
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
        let event = lead.event();
        let enrichment = lead.enrichment.clone().unwrap_or_default();
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
        for flag in &lead.flags {
            add(&format!("flag: {}", flag.code), -10);
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
    fn older_enrichments_without_the_cleaned_fields_still_read() {
        let stored = r#"{"domain":"initech.co.uk","free_mail":false,"sources":["domain_table"]}"#;
        let enrichment: Enrichment = serde_json::from_str(stored).expect("reads");
        assert_eq!(enrichment.name, None);
        assert_eq!(enrichment.phone_e164, None);
        let written = serde_json::to_string(&enrichment).expect("writes");
        assert!(!written.contains("phone_e164"), "{written}");
    }
}
