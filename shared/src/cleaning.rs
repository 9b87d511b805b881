//! Data cleaning before anyone sees the lead: names, phone numbers, e-mail domains.
//!
//! Pure functions, no I/O. Each one takes what the prospect typed and returns either a cleaned
//! value or, where cleaning can fail, a typed result that keeps the original text, so nothing the
//! prospect gave is ever lost.

use std::str::FromStr;
use std::sync::{LazyLock, PoisonError, RwLock};

use email_address::EmailAddress;
use phonenumber::country;
use phonenumber::metadata::{Database, Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};
use rustc_hash::FxHashMap;
use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

/// Particles that stay lower case inside a name (`Ludwig van Beethoven`, `Jean de la Fontaine`).
const PARTICLES: &[&str] = &[
    "van", "von", "de", "der", "den", "du", "da", "di", "del", "della", "la", "le",
];

/// Cleans a person's name, or `None` when nothing but whitespace was given.
///
/// The rule:
///
/// 1. Whitespace is trimmed and every inner run of whitespace becomes one space.
/// 2. Each word (a run without whitespace) that already has both upper- and lower-case letters
///    (`McDONALD`, `deMarco`, `Jane`) was written that way on purpose and is kept as it is.
/// 3. A word in one case only (`jane`, `DOE`, `ÉMILE`) is title-cased, so `  jane   DOE ` becomes
///    `Jane Doe`:
///    - each part after a hyphen or an apostrophe starts a new capital: `jean-luc` → `Jean-Luc`,
///      `o'brien` → `O'Brien`;
///    - `Mc` followed by a letter gets a second capital: `mcdonald` → `McDonald`. `Mac` does not,
///      because too many names merely start with it (`Mack`, `Macy`, `Machado`);
///    - particles (`van`, `von`, `de`, `der`, `den`, `du`, `da`, `di`, `del`, `della`, `la`,
///      `le`) stay lower case, but only between other words: a particle that is the first or the
///      last word is a given name or a surname in its own right (`Le Minh`, `Minh Le`).
///
/// Letters are cased with Unicode rules, so `ÉMILE zola` becomes `Émile Zola`.
pub fn clean_name(raw: &str) -> Option<String> {
    let words: Vec<&str> = raw.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let last = words.len() - 1;
    let cased: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let has_upper = word.chars().any(char::is_uppercase);
            let has_lower = word.chars().any(char::is_lowercase);
            if has_upper && has_lower {
                return (*word).to_owned();
            }
            let lower = word.to_lowercase();
            if i != 0 && i != last && PARTICLES.contains(&lower.as_str()) {
                lower
            } else {
                title_case_word(&lower)
            }
        })
        .collect();
    Some(cased.join(" "))
}

/// Capitalises each part of an already lower-cased word, parts being split at hyphens and
/// apostrophes (both the typewriter `'` and the typographic `’`).
fn title_case_word(lower: &str) -> String {
    let mut out = String::with_capacity(lower.len());
    let mut part = String::new();
    for c in lower.chars() {
        if matches!(c, '-' | '\'' | '’') {
            out.push_str(&title_case_part(&part));
            out.push(c);
            part.clear();
        } else {
            part.push(c);
        }
    }
    out.push_str(&title_case_part(&part));
    out
}

fn title_case_part(part: &str) -> String {
    // `mc` + at least one letter: the letter after it is a capital too.
    if let Some(rest) = part.strip_prefix("mc") {
        if rest.chars().next().is_some_and(char::is_alphabetic) {
            return format!("Mc{}", capitalise(rest));
        }
    }
    capitalise(part)
}

/// The first character upper-cased (which may take more than one character, as with `ß`), the
/// rest as given.
fn capitalise(part: &str) -> String {
    let mut chars = part.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A phone number after cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phone {
    /// A valid number in E.164 form, `+442079460958`.
    E164(String),
    /// Not a number we could read as valid (wrong length, unknown country code, no country to
    /// read a national number against): the text as given, trimmed, for a human to read.
    Unparsed(String),
}

impl Phone {
    /// The E.164 form, if the number could be normalised.
    pub fn e164(&self) -> Option<&str> {
        match self {
            Phone::E164(number) => Some(number),
            Phone::Unparsed(_) => None,
        }
    }
}

/// Parses a phone number into E.164, reading national numbers (`020 7946 0958`) against
/// `default_country` (ISO 3166-1 alpha-2, any case). Without a known default country only
/// numbers written with their country code (`+44 20 ...`) can be read. `None` when nothing but
/// whitespace was given.
///
/// A number is only normalised when it is valid for its country, not merely well-formed: a
/// wrong-length number stays [`Phone::Unparsed`] rather than becoming a confident-looking but
/// undialable E.164 string.
pub fn normalise_phone(raw: &str, default_country: Option<&str>) -> Option<Phone> {
    let text = raw.trim();
    if text.is_empty() {
        return None;
    }
    let region =
        default_country.and_then(|c| country::Id::from_str(&c.trim().to_ascii_uppercase()).ok());
    let phone = match phonenumber::parse(region, text) {
        Ok(number) if is_valid(&number) => Phone::E164(e164(&number)),
        _ => Phone::Unparsed(text.to_owned()),
    };
    Some(phone)
}

/// Whether `number` is valid for its country: the answer of the crate's `is_valid`, over the
/// same metadata and by the same steps (the region by its leading digits, then the general
/// pattern and any one number type's pattern), but with each pattern compiled once and found
/// by its address. The crate looks every pattern up by its text in a locked LRU cache on each
/// use, hashing patterns of hundreds of bytes dozens of times per number: most of the cost of
/// a valid number.
fn is_valid(number: &phonenumber::PhoneNumber) -> bool {
    let db: &'static Database = &DATABASE;
    let code = number.code().value();
    let national = number.national().to_string();
    let Some(regions) = db.region(&code) else {
        return false;
    };
    let meta = if let [region] = regions[..] {
        if region == "001" {
            db.by_code(&code).and_then(|metas| metas.into_iter().next())
        } else {
            country::Id::from_str(region)
                .ok()
                .and_then(|id| db.by_id(id.as_ref()))
        }
    } else {
        regions.iter().find_map(|region| {
            let meta = db.by_id(*region)?;
            let here = match meta.leading_digits() {
                Some(leading) => starts_with_match(leading.as_str(), &national, || {
                    leading.find(&national).is_some_and(|m| m.start() == 0)
                }),
                None => has_number_type(meta, &national),
            };
            here.then_some(meta)
        })
    };
    meta.is_some_and(|meta| has_number_type(meta, &national))
}

/// The crate's `number_type(meta, national) != Unknown`: the general pattern matches, and so
/// does the pattern of one of the number types it tells apart.
fn has_number_type(meta: &Metadata, national: &str) -> bool {
    let d = meta.descriptors();
    matches_descriptor(d.general(), national)
        && [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ]
        .into_iter()
        .flatten()
        .any(|desc| matches_descriptor(desc, national))
}

/// A descriptor's test: a possible length (when it lists any), and its pattern matching from
/// the first digit.
fn matches_descriptor(desc: &Descriptor, national: &str) -> bool {
    let lengths = desc.possible_length();
    let length = u16::try_from(national.len()).unwrap_or(u16::MAX);
    if !lengths.is_empty() && !lengths.contains(&length) {
        return false;
    }
    let pattern = desc.national_number();
    starts_with_match(pattern.as_str(), national, || {
        pattern.find(national).is_some_and(|m| m.start() == 0)
    })
}

/// Whether the leftmost match of the pattern `source` in `text` starts at its beginning, as
/// the crate tests it. The pattern is compiled on first use as the crate compiles it
/// (whitespace ignored) and kept, keyed by the address of its text: the metadata is a static
/// that never moves. A pattern that does not compile here is left to `crate_test`.
fn starts_with_match(source: &str, text: &str, crate_test: impl FnOnce() -> bool) -> bool {
    /// Patterns by the address and length of their text; `None` for one that did not compile.
    type Compiled = FxHashMap<(usize, usize), Option<Regex>>;
    static COMPILED: LazyLock<RwLock<Compiled>> = LazyLock::new(Default::default);
    let at_start = |regex: &Regex| regex.find(text).is_some_and(|m| m.start() == 0);
    let key = (source.as_ptr() as usize, source.len());
    // The read guard ends with this statement, before any write below.
    let known = COMPILED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .map(|regex| regex.as_ref().map(at_start));
    match known {
        Some(Some(answer)) => answer,
        Some(None) => crate_test(),
        None => {
            let regex = RegexBuilder::new(source)
                .ignore_whitespace(true)
                .build()
                .ok();
            let answer = match &regex {
                Some(regex) => at_start(regex),
                None => crate_test(),
            };
            COMPILED
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, regex);
            answer
        }
    }
}

/// `+`, the country code and the national number with its leading zeros: what the crate's
/// E.164 formatter writes, without the search for a national format pattern that it runs
/// first and E.164 never uses (most of its cost).
fn e164(number: &phonenumber::PhoneNumber) -> String {
    format!("+{}{}", number.code().value(), number.national())
}

/// A host name in its canonical form for comparison: trimmed, without the trailing dot of a
/// fully qualified name, lower-cased, and internationalised names in their ASCII (punycode)
/// form, so `Bücher.DE.` and `xn--bcher-kva.de` are the same host. `None` for anything that is
/// not a host name (empty, an IP address, invalid characters).
pub fn normalise_host(raw: &str) -> Option<String> {
    let text = raw.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return None;
    }
    match url::Host::parse(text) {
        Ok(url::Host::Domain(host)) if !host.is_empty() => Some(host),
        _ => None,
    }
}

/// The registrable domain of a host by the public suffix list, in the form of
/// [`normalise_host`]: `Sales.EU.Acme.co.uk.` → `acme.co.uk`, `foo.github.io` → `foo.github.io`
/// (`github.io` is itself a public suffix). `None` when the host is not a host name or is a
/// public suffix with nothing registered under it (`co.uk`).
pub fn registrable_domain(raw: &str) -> Option<String> {
    let host = normalise_host(raw)?;
    psl::domain_str(&host).map(str::to_owned)
}

/// The domain of an e-mail address, read by an RFC 5322 parser rather than by splitting at the
/// last `@`, in the form of [`normalise_host`]. `None` when the address does not parse or its
/// domain is not a host name (an address literal such as `[192.0.2.1]`).
pub fn email_host(email: &str) -> Option<String> {
    let parsed = EmailAddress::from_str(email.trim()).ok()?;
    normalise_host(parsed.domain())
}

/// The local part of an e-mail address as the validation gates compare it: NFKC-normalised
/// (so fullwidth `ｉｎｆｏ` is `info`) and lower-cased. The local part is never used to reach
/// anyone, only compared against lists of roles and junk addresses.
pub fn normalise_local_part(local_part: &str) -> String {
    local_part.nfkc().collect::<String>().to_lowercase()
}

/// The first label of a host, given in the form of [`normalise_host`], that mixes scripts
/// (UTS #39 mixed-script detection: `аcme`, a Cyrillic `а` before Latin letters), shown in
/// Unicode. Whole-script names (`bücher`, `пример`) and mixtures that one writing system uses
/// (Han with Katakana) are not mixed.
pub fn mixed_script_label(host: &str) -> Option<String> {
    host.split('.')
        .filter(|label| label.starts_with("xn--"))
        .filter_map(|label| {
            let (unicode, decoded) = idna::domain_to_unicode(label);
            // A punycode label that does not decode is not a name anyone typed: it mixes
            // nothing that can be shown, and the host already failed to be a valid name.
            decoded.ok().map(|()| unicode)
        })
        .find(|label| !label.as_str().is_single_script())
}

/// A domain, then each parent down to a two-label name (never a bare top-level domain):
/// `a.eu.acme.com` → `a.eu.acme.com`, `eu.acme.com`, `acme.com`. Lookups by domain try these in
/// order, so an entry for a company also covers its subdomains.
pub fn domain_and_parents(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |candidate| {
        candidate
            .split_once('.')
            .map(|(_, parent)| parent)
            .filter(|parent| parent.contains('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_comes_with_its_parents_but_never_a_bare_tld() {
        fn all(d: &str) -> Vec<&str> {
            domain_and_parents(d).collect()
        }
        assert_eq!(
            all("a.eu.acme.com"),
            ["a.eu.acme.com", "eu.acme.com", "acme.com"]
        );
        assert_eq!(all("acme.com"), ["acme.com"]);
        assert_eq!(all("localhost"), ["localhost"]);
    }

    #[test]
    fn names_are_trimmed_collapsed_and_title_cased_when_in_one_case() {
        assert_eq!(clean_name("  jane   DOE ").as_deref(), Some("Jane Doe"));
        assert_eq!(clean_name("  jane   doe ").as_deref(), Some("Jane Doe"));
        assert_eq!(clean_name("JANE DOE").as_deref(), Some("Jane Doe"));
        assert_eq!(clean_name("jane\tdoe\n").as_deref(), Some("Jane Doe"));
        assert_eq!(clean_name(""), None);
        assert_eq!(clean_name(" \t\n "), None);
    }

    #[test]
    fn mixed_case_names_are_kept_as_written() {
        assert_eq!(clean_name("McDONALD").as_deref(), Some("McDONALD"));
        assert_eq!(
            clean_name("  Jane  deMarco ").as_deref(),
            Some("Jane deMarco")
        );
        assert_eq!(
            clean_name("Ludwig Van Beethoven").as_deref(),
            Some("Ludwig Van Beethoven")
        );
        // Only the words in one case are cased.
        assert_eq!(clean_name("Émile ZOLA").as_deref(), Some("Émile Zola"));
        assert_eq!(clean_name("JEAN-Luc").as_deref(), Some("JEAN-Luc"));
    }

    #[test]
    fn prefixes_apostrophes_and_hyphens() {
        assert_eq!(clean_name("mcdonald").as_deref(), Some("McDonald"));
        assert_eq!(clean_name("MCDONALD").as_deref(), Some("McDonald"));
        assert_eq!(clean_name("macdonald").as_deref(), Some("Macdonald"));
        assert_eq!(clean_name("mack").as_deref(), Some("Mack"));
        assert_eq!(clean_name("mc").as_deref(), Some("Mc"));
        assert_eq!(clean_name("o'brien").as_deref(), Some("O'Brien"));
        assert_eq!(clean_name("O’BRIEN").as_deref(), Some("O’Brien"));
        assert_eq!(
            clean_name("jean-luc picard").as_deref(),
            Some("Jean-Luc Picard")
        );
        assert_eq!(
            clean_name("mary-kate mcneil").as_deref(),
            Some("Mary-Kate McNeil")
        );
        assert_eq!(clean_name("-").as_deref(), Some("-"));
    }

    #[test]
    fn particles_stay_lower_case_only_between_words() {
        assert_eq!(
            clean_name("ludwig VAN beethoven").as_deref(),
            Some("Ludwig van Beethoven")
        );
        assert_eq!(
            clean_name("JEAN DE LA FONTAINE").as_deref(),
            Some("Jean de la Fontaine")
        );
        assert_eq!(
            clean_name("leonardo da vinci").as_deref(),
            Some("Leonardo da Vinci")
        );
        assert_eq!(clean_name("minh le").as_deref(), Some("Minh Le"));
        assert_eq!(clean_name("de souza").as_deref(), Some("De Souza"));
    }

    #[test]
    fn unicode_names_are_cased_by_unicode_rules() {
        assert_eq!(clean_name("ÉMILE zola").as_deref(), Some("Émile Zola"));
        assert_eq!(clean_name("ÉMILE ZOLA").as_deref(), Some("Émile Zola"));
        assert_eq!(clean_name("jürgen große").as_deref(), Some("Jürgen Große"));
        assert_eq!(clean_name("ΟΔΥΣΣΕΥΣ").as_deref(), Some("Οδυσσευς"));
        // No cased letters at all: nothing to case, only whitespace to clean.
        assert_eq!(clean_name(" 山田  太郎 ").as_deref(), Some("山田 太郎"));
    }

    #[test]
    fn national_numbers_are_read_against_the_default_country() {
        assert_eq!(
            normalise_phone("020 7946 0958", Some("GB")),
            Some(Phone::E164("+442079460958".into()))
        );
        assert_eq!(
            normalise_phone(" 020 7946 0958 ", Some("gb")),
            Some(Phone::E164("+442079460958".into()))
        );
        assert_eq!(
            normalise_phone("(415) 555-2671", Some("US")),
            Some(Phone::E164("+14155552671".into()))
        );
    }

    #[test]
    fn international_numbers_need_no_default_country() {
        assert_eq!(
            normalise_phone("+1 (415) 555-2671", None),
            Some(Phone::E164("+14155552671".into()))
        );
        // The country code wins over the default country.
        assert_eq!(
            normalise_phone("+44 20 7946 0958", Some("US")),
            Some(Phone::E164("+442079460958".into()))
        );
    }

    /// The E.164 text is written directly; it must be what the crate's formatter writes,
    /// leading zeros of the national number (Italy) and non-geographic codes included.
    #[test]
    fn e164_is_written_as_the_formatter_writes_it() {
        let numbers = [
            ("+44 20 7946 0321", None),
            ("020 7946 0958", Some(country::Id::GB)),
            ("+39 06 6982 1234", None),
            ("06 6982 1234", Some(country::Id::IT)),
            ("+1 (415) 555-2671", None),
            ("+49 30 901820", None),
            ("+81 3-1234-5678", None),
            ("+800 1234 5678", None),
            ("+61 2 9374 4000", None),
        ];
        for (text, region) in numbers {
            let number = phonenumber::parse(region, text).expect(text);
            assert!(number.is_valid(), "{text}");
            assert_eq!(
                e164(&number),
                number.format().mode(phonenumber::Mode::E164).to_string(),
                "{text}"
            );
        }
    }

    /// The local validity check answers as the crate's `is_valid` for every example number
    /// in the metadata (each country code, each number type) and for each example with its
    /// last digit changed or dropped: valid and invalid numbers of every region.
    #[test]
    fn validity_is_the_crates_answer() {
        let (mut checked, mut valid) = (0, 0);
        for code in 1u16..1000 {
            let Some(metas) = DATABASE.by_code(&code) else {
                continue;
            };
            let mut nationals = Vec::new();
            for meta in metas {
                let d = meta.descriptors();
                let descriptors = [
                    Some(d.general()),
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.voip(),
                    d.personal_number(),
                    d.pager(),
                    d.uan(),
                    d.voicemail(),
                ];
                for example in descriptors
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.example())
                {
                    let mut changed = example.to_owned();
                    if let Some(last) = changed.pop() {
                        let digit = last.to_digit(10).unwrap_or(0);
                        nationals.push(changed.clone());
                        changed.push(char::from_digit((digit + 1) % 10, 10).unwrap_or('0'));
                        nationals.push(changed);
                    }
                    nationals.push(example.to_owned());
                }
            }
            for national in nationals {
                let text = format!("+{code}{national}");
                if let Ok(number) = phonenumber::parse(None, &text) {
                    let expected = number.is_valid();
                    assert_eq!(is_valid(&number), expected, "{text}");
                    checked += 1;
                    valid += usize::from(expected);
                }
            }
        }
        // Both answers are well represented, or the comparison proves little.
        assert!(valid > 1_000, "{valid} valid of {checked}");
        assert!(checked - valid > 1_000, "{valid} valid of {checked}");
    }

    #[test]
    fn unreadable_numbers_are_kept_as_given() {
        // A national number without a country to read it against.
        assert_eq!(
            normalise_phone("020 7946 0958", None),
            Some(Phone::Unparsed("020 7946 0958".into()))
        );
        // An unknown default country is no country at all.
        assert_eq!(
            normalise_phone("020 7946 0958", Some("XX")),
            Some(Phone::Unparsed("020 7946 0958".into()))
        );
        // Well-formed but too short to be valid.
        assert_eq!(
            normalise_phone("+44 20 7946", None),
            Some(Phone::Unparsed("+44 20 7946".into()))
        );
        assert_eq!(
            normalise_phone(" call me ", Some("GB")),
            Some(Phone::Unparsed("call me".into()))
        );
        assert_eq!(normalise_phone("", Some("GB")), None);
        assert_eq!(normalise_phone("   ", None), None);
        assert_eq!(
            normalise_phone("+1 (415) 555-2671", None)
                .as_ref()
                .and_then(Phone::e164),
            Some("+14155552671")
        );
        assert_eq!(Phone::Unparsed("x".into()).e164(), None);
    }

    #[test]
    fn hosts_are_lower_cased_without_trailing_dot_and_in_ascii() {
        assert_eq!(
            normalise_host(" Sales.EU.Acme.co.uk. ").as_deref(),
            Some("sales.eu.acme.co.uk")
        );
        assert_eq!(
            normalise_host("Bücher.DE").as_deref(),
            Some("xn--bcher-kva.de")
        );
        assert_eq!(
            normalise_host("xn--bcher-kva.de").as_deref(),
            Some("xn--bcher-kva.de")
        );
        assert_eq!(normalise_host(""), None);
        assert_eq!(normalise_host("."), None);
        assert_eq!(normalise_host("192.0.2.1"), None);
        assert_eq!(normalise_host("bad host.com"), None);
    }

    #[test]
    fn registrable_domain_follows_the_public_suffix_list() {
        assert_eq!(
            registrable_domain("Sales.EU.Acme.co.uk.").as_deref(),
            Some("acme.co.uk")
        );
        assert_eq!(
            registrable_domain("acme.co.uk").as_deref(),
            Some("acme.co.uk")
        );
        assert_eq!(
            registrable_domain("eu.acme.com").as_deref(),
            Some("acme.com")
        );
        assert_eq!(
            registrable_domain("foo.github.io").as_deref(),
            Some("foo.github.io")
        );
        assert_eq!(
            registrable_domain("www.Bücher.de").as_deref(),
            Some("xn--bcher-kva.de")
        );
        assert_eq!(
            registrable_domain("shop.пример.рф").as_deref(),
            Some("xn--e1afmkfd.xn--p1ai")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain(""), None);
        assert_eq!(registrable_domain("   "), None);
        assert_eq!(registrable_domain("[192.0.2.1]"), None);
    }

    #[test]
    fn look_alike_letters_map_to_the_host_they_imitate() {
        // Fullwidth letters are compatibility forms of ASCII: IDNA maps them.
        assert_eq!(normalise_host("ａcme.com").as_deref(), Some("acme.com"));
        assert_eq!(
            email_host("jo@ＹＯＵＲＣＯ.com").as_deref(),
            Some("yourco.com")
        );
        // A Cyrillic `а` has no ASCII form: a different host, in punycode.
        assert_eq!(
            normalise_host("аcme.com").as_deref(),
            Some("xn--cme-5cd.com")
        );
    }

    #[test]
    fn a_label_mixing_scripts_is_found_in_unicode() {
        assert_eq!(
            mixed_script_label("xn--cme-5cd.com").as_deref(),
            Some("аcme")
        );
        assert_eq!(
            mixed_script_label("eu.xn--cme-5cd.com").as_deref(),
            Some("аcme")
        );
        for host in [
            "acme.com",
            "xn--bcher-kva.de",
            "xn--e1afmkfd.xn--p1ai",
            "xn--r8jz45g.jp",
        ] {
            assert_eq!(mixed_script_label(host), None, "{host}");
        }
    }

    #[test]
    fn local_parts_are_compared_nfkc_and_lower_cased() {
        assert_eq!(normalise_local_part("ＩＮＦＯ"), "info");
        assert_eq!(normalise_local_part("Sales+Web"), "sales+web");
        assert_eq!(normalise_local_part("Jürgen"), "jürgen");
    }

    #[test]
    fn email_host_uses_a_real_parser() {
        assert_eq!(
            email_host(" Jane.Doe@Sales.EU.Acme.co.uk ").as_deref(),
            Some("sales.eu.acme.co.uk")
        );
        assert_eq!(
            email_host("\"at@sign\"@acme.com").as_deref(),
            Some("acme.com")
        );
        assert_eq!(email_host("not-an-email"), None);
        assert_eq!(email_host("two@@signs.com"), None);
        assert_eq!(email_host("jane@[192.0.2.1]"), None);
        assert_eq!(email_host(""), None);
    }
}
