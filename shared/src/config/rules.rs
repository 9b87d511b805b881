//! `[routing]` and `[[rules]]`: who gets which lead. The rules are checked as a whole: every
//! reference resolves, and no rule is unreachable or overlaps another in a way whose order
//! would surprise (first match wins).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{Config, ConfigError, Validator};
use crate::model::EventKind;

/// Where a rule (or an on-call policy) sends a lead: exactly one of the four.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default)]
    pub rep: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    /// The company's owner: its named-account owner, else its existing CRM account owner.
    /// A rule with this target does not apply to a company without an owner.
    #[serde(default)]
    pub account_owner: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub when: Conditions,
    pub assign: Spanned<TargetConfig>,
    /// Who may claim the leads this rule assigns, unless their queue or pool says.
    #[serde(default)]
    pub claim: Option<super::ClaimPolicy>,
}

/// Conditions over the enriched, qualified lead. Every condition present must hold; `all`,
/// `any` and `not` combine nested sets. An empty set matches every lead.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// ISO 3166 country codes (from enrichment).
    #[serde(default)]
    pub countries: Option<Vec<String>>,
    /// Names of `[routing.regions]` entries.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// The domain is on the ABM list (`[[routing.named_accounts]]`).
    #[serde(default)]
    pub named_account: Option<bool>,
    /// The company already has an account owner in the CRM export.
    #[serde(default)]
    pub existing_account: Option<bool>,
    #[serde(default)]
    pub min_employees: Option<u32>,
    #[serde(default)]
    pub max_employees: Option<u32>,
    /// Industries, compared without regard to case.
    #[serde(default)]
    pub industries: Option<Vec<String>>,
    #[serde(default)]
    pub tiers: Option<Vec<u8>>,
    #[serde(default)]
    pub min_score: Option<i32>,
    #[serde(default)]
    pub max_score: Option<i32>,
    /// Configured source ids (`website`, `forms`, ...).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
    /// Globs over the path of `metadata.source_url`, such as `/pricing/enterprise*`.
    #[serde(default)]
    pub pages: Option<Vec<String>>,
    /// Names of `[topics]` detected in the trigger question or the transcript.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    #[serde(default)]
    pub free_mail: Option<bool>,
    /// A partial capture (contact details without a finished conversation).
    #[serde(default)]
    pub incomplete: Option<bool>,
    /// Form fields by name (compared without regard to case, spaces, `-` or `_`), each with the
    /// answers that match (without regard to case; any answer of a multiple choice):
    /// `form_fields = { plan = ["Enterprise"], seats = ["50+"] }`.
    #[serde(default)]
    pub form_fields: Option<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub all: Option<Vec<Conditions>>,
    #[serde(default)]
    pub any: Option<Vec<Conditions>>,
    #[serde(default)]
    pub not: Option<Box<Conditions>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedAccount {
    pub domain: String,
    pub owner: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Where a lead goes when no rule matches and where every fallback chain ends: a lead
    /// never waits unowned. Its manager is alerted.
    pub fallback_queue: Spanned<String>,
    /// Territories by name, each a list of country codes.
    #[serde(default)]
    pub regions: BTreeMap<String, Vec<String>>,
    /// The ABM list: target domains and the rep who owns each.
    #[serde(default)]
    pub named_accounts: Vec<Spanned<NamedAccount>>,
    /// A second lead from the same e-mail address within this many hours of the first being
    /// routed merges into it (same owner, no new count); 0 turns merging off. Default 24.
    #[serde(default)]
    pub merge_window_hours: Option<Spanned<u32>>,
}

/// The merge window when none is configured.
pub const DEFAULT_MERGE_WINDOW_HOURS: u32 = 24;
/// The longest merge window: the contact index is kept this long (DynamoDB TTL).
pub const MAX_MERGE_WINDOW_HOURS: u32 = 30 * 24;

impl RoutingConfig {
    /// The duplicate-merge window, `None` when merging is off.
    pub fn merge_window(&self) -> Option<jiff::SignedDuration> {
        let hours = self
            .merge_window_hours
            .as_ref()
            .map_or(DEFAULT_MERGE_WINDOW_HOURS, |h| *h.get_ref());
        (hours > 0).then(|| jiff::SignedDuration::from_hours(i64::from(hours)))
    }
}

impl RoutingConfig {
    /// Where every fallback chain ends must be a queue.
    pub(super) fn check_fallback(
        &self,
        v: &Validator<'_>,
        queue_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        let fallback = &self.fallback_queue;
        if !queue_ids.contains(fallback.get_ref()) {
            return Err(v.invalid(
                fallback.span(),
                "routing.fallback_queue",
                format!("unknown queue {:?}", fallback.get_ref()),
            ));
        }
        Ok(())
    }

    /// The merge window fits in how long the contact index is kept.
    pub(super) fn check_merge_window(&self, v: &Validator<'_>) -> Result<(), ConfigError> {
        if let Some(hours) = &self.merge_window_hours {
            if *hours.get_ref() > MAX_MERGE_WINDOW_HOURS {
                return Err(v.invalid(
                    hours.span(),
                    "routing.merge_window_hours",
                    format!(
                        "{} hours is longer than the contact index is kept ({} hours); 0 turns \
                         merging off",
                        hours.get_ref(),
                        MAX_MERGE_WINDOW_HOURS
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Named accounts' owners are reps; regions are lists of country codes.
    fn check_territories(
        &self,
        v: &Validator<'_>,
        rep_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        for (index, account) in self.named_accounts.iter().enumerate() {
            let owner = &account.get_ref().owner;
            if !rep_ids.contains(owner) {
                return Err(v.invalid(
                    account.span(),
                    format!("routing.named_accounts[{index}].owner"),
                    format!("unknown rep {owner:?}"),
                ));
            }
        }
        for (region, countries) in &self.regions {
            if let Some((n, bad)) = countries
                .iter()
                .enumerate()
                .find(|(_, c)| !is_country_code(c))
            {
                return Err(v.invalid(
                    0..0,
                    format!("routing.regions.{region}[{n}]"),
                    format!("{bad:?} is not an ISO 3166-1 alpha-2 country code (such as GB or US)"),
                ));
            }
        }
        Ok(())
    }
}

/// The ids a target may name.
pub(super) struct Known<'a> {
    pub(super) reps: &'a HashSet<String>,
    pub(super) pools: &'a HashSet<String>,
    pub(super) queues: &'a HashSet<String>,
}

impl Validator<'_> {
    /// `[routing]`'s territories, then each rule's target and conditions, then their order.
    pub(super) fn check_rules(
        &self,
        config: &Config,
        known: &Known<'_>,
        tiers: &HashSet<u8>,
    ) -> Result<(), ConfigError> {
        config.routing.check_territories(self, known.reps)?;
        let mut shapes = Vec::with_capacity(config.rules.len());
        for (index, rule) in config.rules.iter().enumerate() {
            let r = rule.get_ref();
            let key = format!("rules[{index}] ({:?})", r.name);
            self.check_target(&r.assign, &format!("{key}.assign"), known)?;
            self.check_conditions(&r.when, rule.span(), &format!("{key}.when"), config, tiers)?;
            shapes.push(RuleShape::of(r, config));
        }
        self.check_rule_order(config, &shapes)
    }

    pub(super) fn check_target(
        &self,
        target: &Spanned<TargetConfig>,
        key: &str,
        known: &Known<'_>,
    ) -> Result<(), ConfigError> {
        let span = target.span();
        let t = target.get_ref();
        let chosen = [
            t.rep.is_some(),
            t.pool.is_some(),
            t.queue.is_some(),
            t.account_owner == Some(true),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if chosen != 1 {
            return Err(self.invalid(
                span,
                key,
                "set exactly one of rep, pool, queue or account_owner = true",
            ));
        }
        let unknown = |kind: &str, id: &str| {
            self.invalid(
                span.clone(),
                format!("{key}.{kind}"),
                format!("unknown {kind} {id:?}"),
            )
        };
        match (&t.rep, &t.pool, &t.queue) {
            (Some(rep), _, _) if !known.reps.contains(rep) => Err(unknown("rep", rep)),
            (_, Some(pool), _) if !known.pools.contains(pool) => Err(unknown("pool", pool)),
            (_, _, Some(queue)) if !known.queues.contains(queue) => Err(unknown("queue", queue)),
            _ => Ok(()),
        }
    }

    fn check_conditions(
        &self,
        when: &Conditions,
        span: Range<usize>,
        key: &str,
        config: &Config,
        tiers: &HashSet<u8>,
    ) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            self.invalid(span.clone(), format!("{key}.{field}"), message)
        };
        if let Some(countries) = &when.countries {
            if let Some(c) = countries.iter().find(|c| !is_country_code(c)) {
                return Err(bad(
                    "countries",
                    format!("{c:?} is not an ISO 3166-1 alpha-2 country code (such as GB or US)"),
                ));
            }
        }
        if let Some(regions) = &when.regions {
            if let Some(r) = regions
                .iter()
                .find(|r| !config.routing.regions.contains_key(*r))
            {
                return Err(bad(
                    "regions",
                    format!("unknown region {r:?} (define it under [routing.regions])"),
                ));
            }
        }
        if let Some(topics) = &when.topics {
            if let Some(t) = topics.iter().find(|t| !config.topics.contains_key(*t)) {
                return Err(bad(
                    "topics",
                    format!("unknown topic {t:?} (define it under [topics])"),
                ));
            }
        }
        if let Some(sources) = &when.sources {
            if let Some(s) = sources.iter().find(|s| config.source(s).is_none()) {
                return Err(bad("sources", format!("unknown source {s:?}")));
            }
        }
        if let Some(wanted) = &when.tiers {
            if let Some(t) = wanted.iter().find(|t| !tiers.contains(t)) {
                return Err(bad("tiers", format!("tier {t} is not defined")));
            }
        }
        if let Some(pages) = &when.pages {
            for page in pages {
                glob::Pattern::new(page).map_err(|e| bad("pages", format!("{page:?}: {e}")))?;
            }
        }
        if let (Some(min), Some(max)) = (when.min_employees, when.max_employees) {
            if min > max {
                return Err(bad(
                    "min_employees",
                    format!("{min} is above max_employees {max}: the rule can never match"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (when.min_score, when.max_score) {
            if min > max {
                return Err(bad(
                    "min_score",
                    format!("{min} is above max_score {max}: the rule can never match"),
                ));
            }
        }
        for (n, nested) in when.all.iter().flatten().enumerate() {
            self.check_conditions(
                nested,
                span.clone(),
                &format!("{key}.all[{n}]"),
                config,
                tiers,
            )?;
        }
        for (n, nested) in when.any.iter().flatten().enumerate() {
            self.check_conditions(
                nested,
                span.clone(),
                &format!("{key}.any[{n}]"),
                config,
                tiers,
            )?;
        }
        if let Some(nested) = &when.not {
            self.check_conditions(nested, span.clone(), &format!("{key}.not"), config, tiers)?;
        }
        if when.any.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad("any", "an empty `any` can never match".into()));
        }
        Ok(())
    }

    /// First match wins, so a rule that an earlier, broader rule always beats is dead, and two
    /// rules that partly overlap on the same fields depend on an order few readers notice.
    fn check_rule_order(&self, config: &Config, shapes: &[RuleShape]) -> Result<(), ConfigError> {
        for (j, later) in shapes.iter().enumerate() {
            let Some(later_fields) = &later.fields else {
                continue;
            };
            for (i, earlier) in shapes[..j].iter().enumerate() {
                let Some(earlier_fields) = &earlier.fields else {
                    continue;
                };
                let rule = |k: usize| &config.rules[k];
                let name = |k: usize| &config.rules[k].get_ref().name;
                let line = |k: usize| super::line_of(self.text, config.rules[k].span().start);
                if earlier.always_applies && implies(later_fields, earlier_fields) {
                    return Err(self.invalid(
                        rule(j).span(),
                        format!("rules[{j}] ({:?})", name(j)),
                        format!(
                            "unreachable: every lead it matches is taken first by rule {:?} (line {}); move it above that rule or narrow that rule",
                            name(i),
                            line(i)
                        ),
                    ));
                }
                if earlier.target == later.target {
                    continue;
                }
                let same_fields = earlier_fields.keys().eq(later_fields.keys());
                // A narrower size or score band before a wider one is the usual way to write
                // bands; a value listed in two rules' sets is dead in the second one.
                let only_bands = earlier_fields
                    .values()
                    .all(|c| !matches!(c, Constraint::OneOf(_)));
                if !same_fields || (only_bands && implies(earlier_fields, later_fields)) {
                    continue;
                }
                if let Some(shared) = overlap(earlier_fields, later_fields) {
                    return Err(self.invalid(
                        rule(j).span(),
                        format!("rules[{j}] ({:?})", name(j)),
                        format!(
                            "overlaps rule {:?} (line {}) on {shared}: those leads go to the first rule only; give each value to one rule, or make one rule a strict subset of the other",
                            name(i),
                            line(i)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An assigned ISO 3166-1 alpha-2 code, in either case: "gb" passes, "UK" and "XX" do not.
pub(crate) fn is_country_code(code: &str) -> bool {
    isocountry::CountryCode::for_alpha2_caseless(code).is_ok()
}

/// One field's constraint in a rule made only of plain conditions.
#[derive(Debug, Clone, PartialEq)]
enum Constraint {
    OneOf(BTreeSet<String>),
    Between(i64, i64),
    Is(bool),
}

/// What the order checks need to know about a rule.
struct RuleShape {
    /// `None` when the rule uses `any` or `not`: too rich to compare safely, so not compared.
    fields: Option<std::collections::BTreeMap<String, Constraint>>,
    /// False for account-owner rules, which fall through when the company has no owner.
    always_applies: bool,
    target: TargetConfig,
}

impl RuleShape {
    fn of(rule: &RuleConfig, config: &Config) -> RuleShape {
        let mut fields = Some(std::collections::BTreeMap::new());
        collect(&rule.when, config, &mut fields);
        RuleShape {
            fields,
            always_applies: rule.assign.get_ref().account_owner != Some(true),
            target: rule.assign.get_ref().clone(),
        }
    }
}

fn collect(
    when: &Conditions,
    config: &Config,
    fields: &mut Option<std::collections::BTreeMap<String, Constraint>>,
) {
    if when.any.is_some() || when.not.is_some() {
        *fields = None;
        return;
    }
    let Some(map) = fields.as_mut() else { return };
    let mut put = |name: &str, constraint: Constraint| {
        let merged = match (map.remove(name), constraint) {
            (Some(Constraint::OneOf(a)), Constraint::OneOf(b)) => {
                Constraint::OneOf(a.intersection(&b).cloned().collect())
            }
            (Some(Constraint::Between(a, b)), Constraint::Between(c, d)) => {
                Constraint::Between(a.max(c), b.min(d))
            }
            (_, constraint) => constraint,
        };
        map.insert(name.to_owned(), merged);
    };
    let set = |items: &[String]| {
        // Lower-cased as routing compares them (Unicode-aware), so "Énergie" and "énergie" are one value.
        Constraint::OneOf(items.iter().map(|i| i.to_lowercase()).collect())
    };
    if let Some(c) = &when.countries {
        put("country", set(c));
    }
    if let Some(regions) = &when.regions {
        let countries: Vec<String> = regions
            .iter()
            .filter_map(|r| config.routing.regions.get(r))
            .flatten()
            .cloned()
            .collect();
        put("country", set(&countries));
    }
    if let Some(i) = &when.industries {
        put("industry", set(i));
    }
    if let Some(s) = &when.sources {
        put("source", set(s));
    }
    for (field, answers) in when.form_fields.iter().flatten() {
        put(
            &format!("form_field:{}", crate::stated::field_key(field)),
            set(answers),
        );
    }
    if let Some(e) = &when.events {
        let names: Vec<String> = e.iter().map(|e| e.as_str().to_owned()).collect();
        put("event", set(&names));
    }
    if let Some(t) = &when.tiers {
        let names: Vec<String> = t.iter().map(u8::to_string).collect();
        put("tier", set(&names));
    }
    if let Some(p) = &when.pages {
        put("page", Constraint::OneOf(p.iter().cloned().collect()));
    }
    if let Some(t) = &when.topics {
        put("topic", set(t));
    }
    if when.min_employees.is_some() || when.max_employees.is_some() {
        put(
            "employees",
            Constraint::Between(
                when.min_employees.map_or(0, i64::from),
                when.max_employees.map_or(i64::MAX, i64::from),
            ),
        );
    }
    if when.min_score.is_some() || when.max_score.is_some() {
        put(
            "score",
            Constraint::Between(
                when.min_score.map_or(i64::MIN, i64::from),
                when.max_score.map_or(i64::MAX, i64::from),
            ),
        );
    }
    for (name, flag) in [
        ("named_account", when.named_account),
        ("existing_account", when.existing_account),
        ("free_mail", when.free_mail),
        ("incomplete", when.incomplete),
    ] {
        if let Some(flag) = flag {
            put(name, Constraint::Is(flag));
        }
    }
    for nested in when.all.iter().flatten() {
        collect(nested, config, fields);
    }
}

/// Every lead that satisfies `specific` satisfies `general`.
fn implies(
    specific: &std::collections::BTreeMap<String, Constraint>,
    general: &std::collections::BTreeMap<String, Constraint>,
) -> bool {
    general
        .iter()
        .all(|(name, wanted)| match (specific.get(name), wanted) {
            (Some(Constraint::OneOf(s)), Constraint::OneOf(g)) => s.is_subset(g),
            (Some(Constraint::Between(a, b)), Constraint::Between(c, d)) => c <= a && b <= d,
            (Some(Constraint::Is(a)), Constraint::Is(b)) => a == b,
            _ => false,
        })
}

/// Describes what both rules match, field by field, if every field overlaps.
fn overlap(
    a: &std::collections::BTreeMap<String, Constraint>,
    b: &std::collections::BTreeMap<String, Constraint>,
) -> Option<String> {
    let mut parts = Vec::new();
    for (name, left) in a {
        let right = b.get(name)?;
        match (left, right) {
            (Constraint::OneOf(x), Constraint::OneOf(y)) => {
                let both: Vec<&str> = x.intersection(y).map(String::as_str).collect();
                if both.is_empty() {
                    return None;
                }
                let both = both.join(", ");
                let shown = if *name == "country" {
                    both.to_ascii_uppercase()
                } else {
                    both
                };
                parts.push(format!("{name} {shown}"));
            }
            (Constraint::Between(p, q), Constraint::Between(r, s)) => {
                let (low, high) = ((*p).max(*r), (*q).min(*s));
                if low > high {
                    return None;
                }
                parts.push(format!(
                    "{name} {low}..{}",
                    if high == i64::MAX {
                        "".into()
                    } else {
                        high.to_string()
                    }
                ));
            }
            (Constraint::Is(x), Constraint::Is(y)) => {
                if x != y {
                    return None;
                }
                parts.push(format!("{name} = {x}"));
            }
            _ => return None,
        }
    }
    Some(parts.join(" and "))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, MINIMAL};

    #[test]
    fn an_unknown_rep_in_a_rule_names_the_line_and_key() {
        let text = MINIMAL.replace("assign.rep = \"alice\"", "assign.rep = \"bob\"");
        let error = parse(&text).expect_err("unknown rep").to_string();
        assert!(error.starts_with("leadrelay.toml:19:"), "{error}");
        assert!(
            error.contains("rules[0] (\"UK\").assign.rep: unknown rep \"bob\""),
            "{error}"
        );
    }

    #[test]
    fn the_fallback_queue_must_exist() {
        let text = MINIMAL.replace("fallback_queue = \"inbox\"", "fallback_queue = \"nowhere\"");
        let error = parse(&text).expect_err("unknown queue").to_string();
        assert!(
            error.contains("routing.fallback_queue: unknown queue \"nowhere\""),
            "{error}"
        );
    }

    #[test]
    fn the_merge_window_defaults_to_a_day_and_is_bounded() {
        let day = jiff::SignedDuration::from_hours(24);
        assert_eq!(
            parse(MINIMAL).expect("valid").routing.merge_window(),
            Some(day)
        );
        let with = |hours: &str| {
            MINIMAL.replace(
                "fallback_queue = \"inbox\"",
                &format!("fallback_queue = \"inbox\"\nmerge_window_hours = {hours}"),
            )
        };
        assert_eq!(
            parse(&with("0")).expect("valid").routing.merge_window(),
            None
        );
        assert_eq!(
            parse(&with("2")).expect("valid").routing.merge_window(),
            Some(jiff::SignedDuration::from_hours(2))
        );
        let error = parse(&with("721")).expect_err("too long").to_string();
        assert!(error.contains("routing.merge_window_hours"), "{error}");
        parse(&with("-1")).expect_err("negative");
    }
}
