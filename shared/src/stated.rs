//! What the prospect stated in a form, read as firmographics: a country written any common way
//! ("United Kingdom", "UK", "Deutschland", "DEU") becomes its ISO 3166-1 alpha-2 code, and a
//! company size written as a band ("1,000–5,000", "51-200 employees", "500+", "10k") becomes
//! the band's lower bound, the number routing's `min_employees`/`max_employees` compare.

use isocountry::CountryCode;
use unicode_normalization::UnicodeNormalization;

/// Names people write that are neither an ISO code nor the ISO short name, lower case and
/// without accents. The ISO names themselves are matched from `isocountry`.
const COUNTRY_ALIASES: &[(&str, &str)] = &[
    ("uk", "GB"),
    ("u.k.", "GB"),
    ("united kingdom", "GB"),
    ("great britain", "GB"),
    ("britain", "GB"),
    ("england", "GB"),
    ("scotland", "GB"),
    ("wales", "GB"),
    ("northern ireland", "GB"),
    ("us", "US"),
    ("u.s.", "US"),
    ("usa", "US"),
    ("u.s.a.", "US"),
    ("united states", "US"),
    ("america", "US"),
    ("deutschland", "DE"),
    ("espana", "ES"),
    ("italia", "IT"),
    ("nederland", "NL"),
    ("netherlands", "NL"),
    ("the netherlands", "NL"),
    ("holland", "NL"),
    ("belgique", "BE"),
    ("belgie", "BE"),
    ("schweiz", "CH"),
    ("suisse", "CH"),
    ("svizzera", "CH"),
    ("osterreich", "AT"),
    ("sverige", "SE"),
    ("norge", "NO"),
    ("danmark", "DK"),
    ("suomi", "FI"),
    ("polska", "PL"),
    ("eire", "IE"),
    ("brasil", "BR"),
    ("mexico", "MX"),
    ("czechia", "CZ"),
    ("czech republic", "CZ"),
    ("russia", "RU"),
    ("south korea", "KR"),
    ("korea", "KR"),
    ("taiwan", "TW"),
    ("vietnam", "VN"),
    ("turkey", "TR"),
    ("turkiye", "TR"),
    ("iran", "IR"),
    ("uae", "AE"),
    ("united arab emirates", "AE"),
    ("bolivia", "BO"),
    ("venezuela", "VE"),
    ("tanzania", "TZ"),
    ("syria", "SY"),
    ("laos", "LA"),
    ("moldova", "MD"),
    ("ivory coast", "CI"),
    ("cote d'ivoire", "CI"),
    ("hong kong", "HK"),
    ("macau", "MO"),
    ("new zealand", "NZ"),
    ("aotearoa", "NZ"),
    ("nippon", "JP"),
];

/// Lower case, accents removed, inner whitespace collapsed.
fn fold(text: &str) -> String {
    let stripped: String = text
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    stripped
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The ISO 3166-1 alpha-2 code of a country as a visitor wrote it, if it can be told.
pub fn country_code(text: &str) -> Option<String> {
    let folded = fold(text);
    if folded.is_empty() {
        return None;
    }
    if let Some((_, code)) = COUNTRY_ALIASES.iter().find(|(name, _)| *name == folded) {
        return Some((*code).to_owned());
    }
    let by_code = match folded.len() {
        2 => CountryCode::for_alpha2_caseless(&folded).ok(),
        3 => CountryCode::for_alpha3_caseless(&folded).ok(),
        _ => None,
    };
    if let Some(code) = by_code {
        return Some(code.alpha2().to_owned());
    }
    // ISO names, whole or before a comma or bracket, punctuation aside: "Korea, Republic of"
    // reads as "Korea (Republic of)", "Bolivia" as "Bolivia (Plurinational State of)".
    let words = |s: &str| -> String {
        s.split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let wanted = words(&folded);
    CountryCode::iter()
        .find(|code| {
            let name = fold(code.name());
            let short = name.split([',', '(']).next().unwrap_or(&name);
            words(&name) == wanted || words(short) == wanted
        })
        .map(|code| code.alpha2().to_owned())
}

/// The lower bound of a company size as written: "1,000–5,000" → 1000, "51-200 employees" → 51,
/// "500+" → 500, "10k" → 10000, "under 10" → 1. `None` when no number is in it.
pub fn employees(text: &str) -> Option<u32> {
    let folded = fold(text);
    let below = folded.starts_with('<')
        || ["under ", "less than ", "fewer than ", "up to "]
            .iter()
            .any(|p| folded.starts_with(p));
    let first = numbers(&folded).into_iter().next()?;
    Some(if below { 1 } else { first })
}

/// The numbers in `text`, reading "1,000", "1.000" and "1 000" as one thousand and a `k` or `m`
/// right after a number as thousands or millions.
fn numbers(text: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut digits = String::new();
        while i < chars.len() {
            let c = chars[i];
            let grouped = matches!(c, ',' | '.' | ' ' | '\u{a0}')
                && chars.get(i + 1..i + 4).is_some_and(|next| {
                    next.iter().all(char::is_ascii_digit)
                        && chars.get(i + 4).is_none_or(|after| !after.is_ascii_digit())
                });
            if c.is_ascii_digit() {
                digits.push(c);
            } else if !grouped {
                break;
            }
            i += 1;
        }
        let multiplier = match chars.get(i) {
            Some('k') => 1_000,
            Some('m') => 1_000_000,
            _ => 1,
        };
        if let Ok(n) = digits.parse::<u64>() {
            found.push(u32::try_from(n.saturating_mul(multiplier)).unwrap_or(u32::MAX));
        }
    }
    found
}

/// A form field's name compared loosely: case, spaces, hyphens and underscores do not matter
/// ("Company size" = "company_size" = "company-size").
pub fn same_field_name(a: &str, b: &str) -> bool {
    field_key(a) == field_key(b)
}

/// A form field's name as [`same_field_name`] compares it: lower case, without spaces, `-` or
/// `_`.
pub fn field_key(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The language the prospect stated: `language` or `locale` in the capture's metadata, else a
/// form field of that name; as written (`de`, `pt-BR`, `en_GB`), `None` when absent or blank.
pub fn language(lead: &crate::model::Lead) -> Option<String> {
    let text = |value: &serde_json::Value| {
        value
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 35)
            .map(str::to_owned)
    };
    let metadata = &lead.capture.metadata.extra;
    ["language", "locale"]
        .iter()
        .find_map(|name| metadata.get(*name).and_then(text))
        .or_else(|| {
            lead.capture.form_fields.iter().find_map(|(name, value)| {
                matches!(field_key(name).as_str(), "language" | "locale")
                    .then(|| text(value))
                    .flatten()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_read_however_they_are_written() {
        for (written, code) in [
            ("United Kingdom", "GB"),
            ("UK", "GB"),
            ("  england ", "GB"),
            ("gb", "GB"),
            ("GBR", "GB"),
            ("Deutschland", "DE"),
            ("Germany", "DE"),
            ("Österreich", "AT"),
            ("España", "ES"),
            ("United States", "US"),
            ("USA", "US"),
            ("France", "FR"),
            ("Korea, Republic of", "KR"),
            ("South Korea", "KR"),
            ("Ireland", "IE"),
            ("Brazil", "BR"),
            ("Japan", "JP"),
        ] {
            assert_eq!(country_code(written).as_deref(), Some(code), "{written}");
        }
        for unknown in ["", "Atlantis", "EU", "Europe", "12", "xx"] {
            assert_eq!(country_code(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn company_sizes_become_the_lower_bound_of_their_band() {
        for (written, lower) in [
            ("1,000–5,000", 1000),
            ("1.000-5.000", 1000),
            ("51-200 employees", 51),
            ("500+", 500),
            ("10k", 10_000),
            ("10K+", 10_000),
            ("250", 250),
            ("10 000 - 50 000", 10_000),
            ("Under 10", 1),
            ("<50", 1),
            ("5001+ employees", 5001),
            ("1, 2", 1),
        ] {
            assert_eq!(employees(written), Some(lower), "{written}");
        }
        assert_eq!(employees("a few"), None);
        assert_eq!(employees("99999999999"), Some(u32::MAX));
    }

    #[test]
    fn field_names_compare_loosely() {
        assert!(same_field_name("Company size", "company_size"));
        assert!(same_field_name("COUNTRY", "country"));
        assert!(!same_field_name("country", "country_code"));
    }
}
