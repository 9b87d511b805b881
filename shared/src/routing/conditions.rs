//! Rule conditions compiled for the hot path: sets are hashed, globs parsed, regions expanded
//! and topics resolved to indexes once at load. A test answers yes/no fast; `explain` says why.

use std::collections::HashMap;

use rustc_hash::FxHashSet;

use crate::config::Conditions;
use crate::model::EventKind;
use crate::topics::TopicMatcher;

/// What conditions look at, computed once per lead.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub country: Option<String>,
    pub employees: Option<u32>,
    /// Lower case.
    pub industry: Option<String>,
    pub tier: Option<u8>,
    pub score: Option<i32>,
    pub source: String,
    pub event: Option<EventKind>,
    /// The path of `metadata.source_url`.
    pub page: Option<String>,
    /// Indexes into the topic matcher, with the phrase that matched.
    pub topics: Vec<(usize, String)>,
    pub free_mail: bool,
    pub incomplete: bool,
    /// The ABM owner, when the domain is on the named-account list.
    pub named_owner: Option<String>,
    /// The CRM account owner from the firmographics table.
    pub existing_owner: Option<String>,
    /// Every form field by name, with its answers as lower-case text (one per choice).
    pub form_fields: Vec<(String, Vec<String>)>,
}

impl Facts {
    /// The answers of the form field called `name` (compared loosely).
    fn form_field(&self, name: &str) -> Option<&[String]> {
        self.form_fields
            .iter()
            .find(|(field, _)| crate::stated::same_field_name(field, name))
            .map(|(_, answers)| answers.as_slice())
    }
}

#[derive(Debug, Clone)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    // Every rule tried probes these sets with the lead's value: a fast non-keyed hash, as the
    // keys come from the configuration, not from visitors.
    Country {
        set: FxHashSet<String>,
        label: String,
    },
    NamedAccount(bool),
    ExistingAccount(bool),
    MinEmployees(u32),
    MaxEmployees(u32),
    Industry(FxHashSet<String>),
    Tier(Vec<u8>),
    MinScore(i32),
    MaxScore(i32),
    Source(Vec<String>),
    Event(Vec<EventKind>),
    Page(Vec<glob::Pattern>),
    Topic(Vec<usize>),
    FreeMail(bool),
    Incomplete(bool),
    /// A form field whose answer (any, for a multiple choice) is one of these, lower case.
    FormField {
        name: String,
        answers: FxHashSet<String>,
    },
}

impl Cond {
    /// Compiles validated conditions; a set of several conditions is their conjunction.
    pub fn compile(
        when: &Conditions,
        regions: &HashMap<String, Vec<String>>,
        topics: &TopicMatcher,
    ) -> Cond {
        let mut all = Vec::new();
        let upper = |v: &[String]| {
            v.iter()
                .map(|c| c.to_ascii_uppercase())
                .collect::<FxHashSet<_>>()
        };
        if let Some(countries) = &when.countries {
            all.push(Cond::Country {
                set: upper(countries),
                label: format!("countries {}", countries.join(", ")),
            });
        }
        if let Some(names) = &when.regions {
            let countries: Vec<String> = names
                .iter()
                .filter_map(|r| regions.get(r))
                .flatten()
                .cloned()
                .collect();
            all.push(Cond::Country {
                set: upper(&countries),
                label: format!("region {}", names.join(", ")),
            });
        }
        if let Some(wanted) = when.named_account {
            all.push(Cond::NamedAccount(wanted));
        }
        if let Some(wanted) = when.existing_account {
            all.push(Cond::ExistingAccount(wanted));
        }
        if let Some(min) = when.min_employees {
            all.push(Cond::MinEmployees(min));
        }
        if let Some(max) = when.max_employees {
            all.push(Cond::MaxEmployees(max));
        }
        if let Some(industries) = &when.industries {
            all.push(Cond::Industry(
                industries.iter().map(|i| i.to_lowercase()).collect(),
            ));
        }
        if let Some(tiers) = &when.tiers {
            all.push(Cond::Tier(tiers.clone()));
        }
        if let Some(min) = when.min_score {
            all.push(Cond::MinScore(min));
        }
        if let Some(max) = when.max_score {
            all.push(Cond::MaxScore(max));
        }
        if let Some(sources) = &when.sources {
            all.push(Cond::Source(sources.clone()));
        }
        if let Some(events) = &when.events {
            all.push(Cond::Event(events.clone()));
        }
        if let Some(pages) = &when.pages {
            // Validated at load.
            all.push(Cond::Page(
                pages
                    .iter()
                    .filter_map(|p| glob::Pattern::new(p).ok())
                    .collect(),
            ));
        }
        if let Some(names) = &when.topics {
            all.push(Cond::Topic(
                names.iter().filter_map(|n| topics.index_of(n)).collect(),
            ));
        }
        if let Some(wanted) = when.free_mail {
            all.push(Cond::FreeMail(wanted));
        }
        if let Some(wanted) = when.incomplete {
            all.push(Cond::Incomplete(wanted));
        }
        for (name, answers) in when.form_fields.iter().flatten() {
            all.push(Cond::FormField {
                name: name.clone(),
                answers: answers.iter().map(|a| a.trim().to_lowercase()).collect(),
            });
        }
        for nested in when.all.iter().flatten() {
            all.push(Cond::compile(nested, regions, topics));
        }
        if let Some(any) = &when.any {
            all.push(Cond::Any(
                any.iter()
                    .map(|c| Cond::compile(c, regions, topics))
                    .collect(),
            ));
        }
        if let Some(not) = &when.not {
            all.push(Cond::Not(Box::new(Cond::compile(not, regions, topics))));
        }
        if all.len() == 1 {
            all.pop().unwrap_or(Cond::All(Vec::new()))
        } else {
            Cond::All(all)
        }
    }

    pub fn uses_topics(&self) -> bool {
        match self {
            Cond::Topic(_) => true,
            Cond::All(c) | Cond::Any(c) => c.iter().any(Cond::uses_topics),
            Cond::Not(c) => c.uses_topics(),
            _ => false,
        }
    }

    /// Whether the condition reads form fields (so facts need not collect them otherwise).
    pub fn uses_form_fields(&self) -> bool {
        match self {
            Cond::FormField { .. } => true,
            Cond::All(c) | Cond::Any(c) => c.iter().any(Cond::uses_form_fields),
            Cond::Not(c) => c.uses_form_fields(),
            _ => false,
        }
    }

    /// Whether the condition holds; allocation-free.
    pub fn holds(&self, facts: &Facts) -> bool {
        match self {
            Cond::All(all) => all.iter().all(|c| c.holds(facts)),
            Cond::Any(any) => any.iter().any(|c| c.holds(facts)),
            Cond::Not(inner) => !inner.holds(facts),
            Cond::Country { set, .. } => facts.country.as_ref().is_some_and(|c| set.contains(c)),
            Cond::NamedAccount(wanted) => facts.named_owner.is_some() == *wanted,
            Cond::ExistingAccount(wanted) => facts.existing_owner.is_some() == *wanted,
            Cond::MinEmployees(min) => facts.employees.is_some_and(|n| n >= *min),
            Cond::MaxEmployees(max) => facts.employees.is_some_and(|n| n <= *max),
            Cond::Industry(set) => facts.industry.as_ref().is_some_and(|i| set.contains(i)),
            Cond::Tier(tiers) => facts.tier.is_some_and(|t| tiers.contains(&t)),
            Cond::MinScore(min) => facts.score.is_some_and(|s| s >= *min),
            Cond::MaxScore(max) => facts.score.is_some_and(|s| s <= *max),
            Cond::Source(sources) => sources.contains(&facts.source),
            Cond::Event(events) => facts.event.is_some_and(|e| events.contains(&e)),
            Cond::Page(pages) => facts
                .page
                .as_deref()
                .is_some_and(|page| pages.iter().any(|p| p.matches(page))),
            Cond::Topic(wanted) => facts.topics.iter().any(|(t, _)| wanted.contains(t)),
            Cond::FreeMail(wanted) => facts.free_mail == *wanted,
            Cond::Incomplete(wanted) => facts.incomplete == *wanted,
            Cond::FormField { name, answers } => facts
                .form_field(name)
                .is_some_and(|given| given.iter().any(|a| answers.contains(a))),
        }
    }

    /// `Ok(why it holds)` or `Err(the condition that failed, with the lead's value)`.
    pub fn explain(&self, facts: &Facts, topics: &TopicMatcher) -> Result<String, String> {
        let shown = |value: Option<String>| value.unwrap_or_else(|| "unknown".into());
        let verdict = |holds: bool, text: String| if holds { Ok(text) } else { Err(text) };
        match self {
            Cond::All(all) => {
                if all.is_empty() {
                    return Ok("no conditions: matches every lead".into());
                }
                let mut reasons = Vec::with_capacity(all.len());
                for cond in all {
                    reasons.push(cond.explain(facts, topics)?);
                }
                Ok(reasons.join("; "))
            }
            Cond::Any(any) => {
                let mut failures = Vec::with_capacity(any.len());
                for cond in any {
                    match cond.explain(facts, topics) {
                        Ok(reason) => return Ok(reason),
                        Err(failure) => failures.push(failure),
                    }
                }
                Err(format!("none of: {}", failures.join(" | ")))
            }
            Cond::Not(inner) => match inner.explain(facts, topics) {
                Ok(reason) => Err(format!("not wanted: {reason}")),
                Err(reason) => Ok(format!("as wanted, {reason}")),
            },
            Cond::Country { set, label } => verdict(
                self.holds(facts),
                format!(
                    "country {} {} {label}",
                    shown(facts.country.clone()),
                    in_or_not(facts.country.as_ref().is_some_and(|c| set.contains(c)))
                ),
            ),
            Cond::NamedAccount(wanted) => verdict(
                self.holds(facts),
                match &facts.named_owner {
                    Some(owner) => format!("named account (owner {owner})"),
                    None if *wanted => "not on the named-account list".into(),
                    None => "not a named account".into(),
                },
            ),
            Cond::ExistingAccount(_) => verdict(
                self.holds(facts),
                match &facts.existing_owner {
                    Some(owner) => format!("existing account owned by {owner}"),
                    None => "no existing account owner".into(),
                },
            ),
            Cond::MinEmployees(min) => verdict(
                self.holds(facts),
                format!(
                    "employees {} (at least {min} wanted)",
                    shown(facts.employees.map(|n| n.to_string()))
                ),
            ),
            Cond::MaxEmployees(max) => verdict(
                self.holds(facts),
                format!(
                    "employees {} (at most {max} wanted)",
                    shown(facts.employees.map(|n| n.to_string()))
                ),
            ),
            Cond::Industry(set) => verdict(
                self.holds(facts),
                format!(
                    "industry {} {} {}",
                    shown(facts.industry.clone()),
                    in_or_not(self.holds(facts)),
                    sorted(set.iter().cloned()).join(", ")
                ),
            ),
            Cond::Tier(tiers) => verdict(
                self.holds(facts),
                format!(
                    "tier {} {} {tiers:?}",
                    shown(facts.tier.map(|t| t.to_string())),
                    in_or_not(self.holds(facts))
                ),
            ),
            Cond::MinScore(min) => verdict(
                self.holds(facts),
                format!(
                    "score {} (at least {min} wanted)",
                    shown(facts.score.map(|s| s.to_string()))
                ),
            ),
            Cond::MaxScore(max) => verdict(
                self.holds(facts),
                format!(
                    "score {} (at most {max} wanted)",
                    shown(facts.score.map(|s| s.to_string()))
                ),
            ),
            Cond::Source(sources) => verdict(
                self.holds(facts),
                format!(
                    "source {} {} {}",
                    facts.source,
                    in_or_not(self.holds(facts)),
                    sources.join(", ")
                ),
            ),
            Cond::Event(events) => verdict(
                self.holds(facts),
                format!(
                    "event {} {} {}",
                    shown(facts.event.map(|e| e.to_string())),
                    in_or_not(self.holds(facts)),
                    events
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Cond::Page(pages) => verdict(
                self.holds(facts),
                format!(
                    "page {} {} {}",
                    shown(facts.page.clone()),
                    if self.holds(facts) {
                        "matches"
                    } else {
                        "does not match"
                    },
                    pages
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Cond::Topic(wanted) => {
                let names = wanted
                    .iter()
                    .map(|t| topics.name(*t))
                    .collect::<Vec<_>>()
                    .join(", ");
                match facts.topics.iter().find(|(t, _)| wanted.contains(t)) {
                    Some((t, phrase)) => Ok(format!("topic {} (\"{phrase}\")", topics.name(*t))),
                    None => Err(format!(
                        "no topic among {names} in the question or transcript"
                    )),
                }
            }
            Cond::FreeMail(_) => verdict(
                self.holds(facts),
                if facts.free_mail {
                    "free-mail address".into()
                } else {
                    "business address".into()
                },
            ),
            Cond::Incomplete(_) => verdict(
                self.holds(facts),
                if facts.incomplete {
                    "partial capture".into()
                } else {
                    "complete capture".into()
                },
            ),
            Cond::FormField { name, answers } => verdict(
                self.holds(facts),
                format!(
                    "form field {name:?} {} {} {}",
                    facts
                        .form_field(name)
                        .map(|given| given.join(", "))
                        .unwrap_or_else(|| "not given".into()),
                    in_or_not(self.holds(facts)),
                    sorted(answers.iter().cloned()).join(", ")
                ),
            ),
        }
    }
}

fn in_or_not(holds: bool) -> &'static str {
    if holds {
        "in"
    } else {
        "not in"
    }
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items
}
