//! The pure decisions before routing, compiled once from the configuration: enrichment from
//! the domain table and qualification into a tier with an SLA. No I/O happens here. Routing
//! lives in [`crate::routing`].

use std::collections::{HashMap, HashSet};

use crate::config::{CompanyRecord, Config, TierConfig};
use crate::model::{Enrichment, EventKind, Lead, Qualification, ScoreItem};

/// The configuration, indexed for the hot path.
pub struct Rulebook {
    companies: HashMap<String, CompanyRecord>,
    free_mail: HashSet<String>,
    hand_raiser_pages: Vec<glob::Pattern>,
    event_tiers: HashMap<EventKind, u8>,
    tiers: Vec<TierConfig>,
}

impl Rulebook {
    pub fn new(config: &Config) -> Self {
        let companies = config
            .enrichment
            .companies
            .iter()
            .map(|c| (c.get_ref().domain.to_ascii_lowercase(), c.get_ref().clone()))
            .collect();
        let free_mail = config
            .enrichment
            .free_mail_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
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
        }
    }

    /// Firmographics from the domain table, and free-mail detection.
    pub fn enrich(&self, lead: &Lead) -> Enrichment {
        let domain = lead
            .capture
            .captured_email
            .as_deref()
            .and_then(|email| email.rsplit_once('@'))
            .map(|(_, domain)| domain.trim().to_ascii_lowercase());
        let mut enrichment = Enrichment {
            domain: domain.clone(),
            company: lead.capture.company.clone(),
            ..Enrichment::default()
        };
        let Some(domain) = domain else {
            enrichment.sources.push("no e-mail domain".into());
            enrichment.missing = vec!["company".into(), "country".into()];
            return enrichment;
        };
        if self.free_mail.contains(&domain) {
            enrichment.free_mail = true;
            enrichment.sources.push("free_mail_list".into());
        } else if let Some(record) = self.company_for(&domain) {
            enrichment.company = Some(record.name.clone());
            enrichment.employees = record.employees;
            enrichment.industry = record.industry.clone();
            enrichment.country = record.country.as_ref().map(|c| c.to_ascii_uppercase());
            enrichment.account_owner = record.account_owner.clone();
            enrichment.sources.push("domain_table".into());
        } else {
            enrichment.sources.push("domain_table: no match".into());
        }
        for (field, known) in [
            ("company", enrichment.company.is_some()),
            ("employees", enrichment.employees.is_some()),
            ("country", enrichment.country.is_some()),
        ] {
            if !known {
                enrichment.missing.push(field.into());
            }
        }
        enrichment
    }

    /// Looks up a domain, then its parents, so that `eu.acme.com` finds `acme.com`.
    fn company_for(&self, domain: &str) -> Option<&CompanyRecord> {
        let mut candidate = domain;
        loop {
            if let Some(record) = self.companies.get(candidate) {
                return Some(record);
            }
            let (_, parent) = candidate.split_once('.')?;
            if !parent.contains('.') {
                return None;
            }
            candidate = parent;
        }
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
        if enrichment.free_mail {
            add("free-mail address", -15);
            if enrichment.company.is_none() && event != EventKind::LeadCaptureFallback {
                tier = tier.max(self.lowest_tier());
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
