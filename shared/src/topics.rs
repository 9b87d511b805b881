//! Topics detected in what the prospect wrote: configurable phrase sets matched on word
//! boundaries, without regard to case or plural (`APIs` matches `api`, `integrations` matches
//! `integration`), so that "rapid" never matches "api".
//!
//! Qualification scores them ([`crate::rulebook`]), routing rules test them
//! ([`crate::routing`]), and the configuration takes [`default_topics`] when it has no
//! `[topics]`; this module imports only the lead model.

use std::collections::BTreeMap;
use std::ops::Range;

use rustc_hash::FxHashMap;

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

/// The stems of `text`, as [`words`] gives them, written one after the other into `buf` with
/// their places in `spans`: a lead's texts are scanned on every lead, and this makes no
/// allocation per word.
fn stems_into(text: &str, buf: &mut String, spans: &mut Vec<Range<usize>>) {
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let start = buf.len();
        if word.is_ascii() {
            // ASCII lower-cases letter by letter (no final sigma or other context rules).
            buf.extend(word.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            buf.push_str(&word.to_lowercase());
        }
        stem_in_place(buf, start);
        spans.push(start..buf.len());
    }
}

/// [`stem`] on the word `buf[start..]`, in place.
fn stem_in_place(buf: &mut String, start: usize) {
    let word = &buf[start..];
    if word.len() <= 3 || word.ends_with("ss") {
        return;
    }
    // Every suffix is ASCII, so each cut falls on a character boundary.
    if word.ends_with("ies") {
        buf.truncate(buf.len() - 3);
        buf.push('y');
    } else if ["sses", "shes", "ches", "xes"]
        .iter()
        .any(|suffix| word.ends_with(suffix))
    {
        buf.truncate(buf.len() - 2);
    } else if word.ends_with('s') {
        buf.truncate(buf.len() - 1);
    }
}

/// Phrase sets compiled for matching: each phrase is a sequence of stems, indexed by its
/// first stem so a text is scanned once whatever the number of phrases.
#[derive(Debug, Clone, Default)]
pub struct TopicMatcher {
    names: Vec<String>,
    by_first_word: FxHashMap<String, Vec<(Vec<String>, usize)>>,
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
        let mut buf = String::new();
        let mut spans = Vec::new();
        for text in texts {
            buf.clear();
            spans.clear();
            stems_into(text, &mut buf, &mut spans);
            for start in 0..spans.len() {
                let Some(candidates) = self.by_first_word.get(&buf[spans[start].clone()]) else {
                    continue;
                };
                for (phrase, topic) in candidates {
                    let rest = &spans[start..];
                    let matches = rest.len() >= phrase.len()
                        && phrase
                            .iter()
                            .zip(rest)
                            .all(|(stem, span)| *stem == buf[span.clone()]);
                    if matches {
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

    /// The in-place stems are the stems of `words`, whatever the text: plurals of each
    /// kind, short words, mixed case, non-ASCII letters (final sigma, dotted I), digits.
    #[test]
    fn stems_in_place_are_the_stems_of_words() {
        let texts = [
            "Does your API support batch processing for over 1 million records?",
            "Which INTEGRATIONS and APIs do you have? Policies, processes, boxes, wishes, churches",
            "bus gas ss iss sss ies xies a b c bss class glasses QUOTES Quotes",
            "ΟΔΥΣΣΕΥΣ ΣΟΦΟΣ İstanbul straße STRASSE Ǆemal café CAFÉS naïves",
            "",
            "  --  ",
            "SOC2 soc 2 iso 27001 x86s 1000s",
        ];
        for text in texts {
            let mut buf = String::new();
            let mut spans = Vec::new();
            stems_into(text, &mut buf, &mut spans);
            let in_place: Vec<&str> = spans.iter().map(|span| &buf[span.clone()]).collect();
            let expected: Vec<String> = words(text).collect();
            assert_eq!(in_place, expected, "{text}");
        }
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
