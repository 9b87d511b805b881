//! Topics detected in what the prospect wrote: configurable phrase sets matched on word
//! boundaries, without regard to case or plural (`APIs` matches `api`, `integrations` matches
//! `integration`), so that "rapid" never matches "api".

use std::collections::{BTreeMap, HashMap};

use crate::model::Lead;

/// The default phrase sets, used when the configuration has no `[topics]`.
pub fn default_topics() -> BTreeMap<String, Vec<String>> {
    let sets: [(&str, &[&str]); 7] = [
        (
            "api",
            &[
                "api",
                "integration",
                "integrate",
                "webhook",
                "sdk",
                "graphql",
                "endpoint",
            ],
        ),
        (
            "scale",
            &[
                "batch",
                "batch processing",
                "bulk",
                "million records",
                "throughput",
                "rate limit",
                "high volume",
            ],
        ),
        (
            "security",
            &[
                "security",
                "soc 2",
                "soc2",
                "sso",
                "saml",
                "gdpr",
                "hipaa",
                "iso 27001",
                "compliance",
                "encryption",
                "dpa",
            ],
        ),
        (
            "sla",
            &["sla", "uptime", "availability guarantee", "support plan"],
        ),
        (
            "migration",
            &[
                "migration",
                "migrate",
                "data migration",
                "import our data",
                "switch from",
                "move from",
            ],
        ),
        (
            "competitor",
            &[
                "competitor",
                "compared to",
                "versus",
                "vs",
                "alternative to",
            ],
        ),
        (
            "pricing",
            &[
                "price",
                "pricing",
                "quote",
                "procurement",
                "invoice",
                "purchase order",
                "discount",
                "budget",
                "contract",
            ],
        ),
    ];
    sets.into_iter()
        .map(|(name, phrases)| {
            (
                name.to_owned(),
                phrases.iter().map(|p| (*p).to_owned()).collect(),
            )
        })
        .collect()
}

/// Words of a text, lower-cased and reduced to a singular-ish stem.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| stem(&w.to_lowercase()))
}

/// Folds common English plurals: `apis` → `api`, `processes` → `process`, `policies` →
/// `policy`. Short words and words ending in `ss` are left alone.
fn stem(word: &str) -> String {
    if word.len() <= 3 || word.ends_with("ss") {
        return word.to_owned();
    }
    if let Some(base) = word.strip_suffix("ies") {
        return format!("{base}y");
    }
    for suffix in ["sses", "shes", "ches", "xes"] {
        if word.ends_with(suffix) {
            return word[..word.len() - 2].to_owned();
        }
    }
    word.strip_suffix('s').unwrap_or(word).to_owned()
}

/// Phrase sets compiled for matching: each phrase is a sequence of stems, indexed by its
/// first stem so a text is scanned once whatever the number of phrases.
#[derive(Debug, Clone, Default)]
pub struct TopicMatcher {
    names: Vec<String>,
    by_first_word: HashMap<String, Vec<(Vec<String>, usize)>>,
}

impl TopicMatcher {
    pub fn new(topics: &BTreeMap<String, Vec<String>>) -> Self {
        let mut matcher = TopicMatcher::default();
        for (index, (name, phrases)) in topics.iter().enumerate() {
            matcher.names.push(name.clone());
            for phrase in phrases {
                let stems: Vec<String> = words(phrase).collect();
                if let Some(first) = stems.first() {
                    matcher
                        .by_first_word
                        .entry(first.clone())
                        .or_default()
                        .push((stems.clone(), index));
                }
            }
        }
        matcher
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn name(&self, index: usize) -> &str {
        self.names.get(index).map(String::as_str).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.by_first_word.is_empty()
    }

    /// Which topics (by index, ascending) appear in any of the texts, with the first phrase
    /// that matched each.
    pub fn detect<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Vec<(usize, String)> {
        let mut found: BTreeMap<usize, String> = BTreeMap::new();
        for text in texts {
            let stems: Vec<String> = words(text).collect();
            for start in 0..stems.len() {
                let Some(candidates) = self.by_first_word.get(&stems[start]) else {
                    continue;
                };
                for (phrase, topic) in candidates {
                    if stems[start..].starts_with(phrase) {
                        found.entry(*topic).or_insert_with(|| phrase.join(" "));
                    }
                }
            }
        }
        found.into_iter().collect()
    }
}

/// What the prospect said: the trigger question and their own turns of the transcript (the
/// bot's turns would make every lead sound like the product page).
pub fn prospect_texts(lead: &Lead) -> impl Iterator<Item = &str> {
    let capture = &lead.capture;
    capture.trigger_query.iter().map(String::as_str).chain(
        capture
            .transcript
            .iter()
            .filter(|t| t.role != "bot" && t.role != "assistant")
            .map(|t| t.text.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(text: &str) -> Vec<String> {
        let matcher = TopicMatcher::new(&default_topics());
        matcher
            .detect([text])
            .into_iter()
            .map(|(i, _)| matcher.name(i).to_owned())
            .collect()
    }

    #[test]
    fn the_seed_question_is_about_the_api_and_scale() {
        assert_eq!(
            detected("Does your API support batch processing for over 1 million records?"),
            ["api", "scale"]
        );
    }

    #[test]
    fn matching_ignores_case_and_plurals_but_respects_word_boundaries() {
        assert_eq!(
            detected("Which INTEGRATIONS and APIs do you have?"),
            ["api"]
        );
        assert!(detected("We need a rapid rollout").is_empty());
        assert_eq!(
            detected("Are you SOC 2 compliant? We need SSO."),
            ["security"]
        );
        assert_eq!(detected("What are your SLAs?"), ["sla"]);
    }
}
