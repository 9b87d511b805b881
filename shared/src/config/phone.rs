//! The reps' phone numbers (`reps[].phone`, for SMS alerts), checked at two depths.
//!
//! [`is_e164`], the shape, is what every parse checks: `+`, a country calling code that is
//! assigned, and a national number, 15 digits at most in all. It needs no phone metadata.
//! [`in_numbering_plan`] also asks whether the national number can exist in that country
//! (its length and leading digits, against `phonenumber`'s metadata). That check brings the
//! metadata and a regular-expression engine with it (0.68 MB of a Lambda function's zip), so
//! only the entry points that link them anyway ask it: [`super::Config::load`] (every command
//! of the embedded binary) and [`super::Config::parse_with`] given [`super::DeepChecks::phones`]
//! (the Lambda enrich function, which cleans the prospects' numbers with the same metadata).

use std::ops::Range;

use super::{Config, ConfigError, Validator};

/// The country calling codes of `phonenumber`'s metadata (a test keeps the two equal): the
/// ITU-T assignments with a numbering plan a rep's phone can belong to. The global services
/// without one (freephone 800, 808, the satellite and network codes 870–883, 888) are not
/// listed, as the metadata does not list them. Sorted. No code is the prefix of another, so
/// a number starts with at most one.
const COUNTRY_CODES: [u16; 207] = [
    1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54,
    55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98, 211,
    212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253,
    254, 255, 256, 257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298,
    299, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376, 377,
    378, 380, 381, 382, 383, 385, 386, 387, 389, 420, 421, 423, 500, 501, 502, 503, 504, 505, 506,
    507, 508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 670, 672, 673, 674, 675, 676,
    677, 678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692, 850, 852, 853, 855,
    856, 880, 886, 960, 961, 962, 963, 964, 965, 966, 967, 968, 970, 971, 972, 973, 974, 975, 976,
    977, 979, 992, 993, 994, 995, 996, 998,
];

/// E.164 allows 15 digits, country code included.
const MAX_DIGITS: usize = 15;
/// The shortest national numbers in use have four digits (Saint Helena, Tristan da Cunha).
const MIN_NATIONAL_DIGITS: usize = 4;

/// A number written in E.164 (`+447700900123`): `+`, an assigned country calling code, then
/// at least four digits of national number, 15 digits at most, nothing else (no spaces).
pub(crate) fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
        || digits.len() > MAX_DIGITS
    {
        return false;
    }
    (1..=3).any(|n| {
        digits.len() >= n + MIN_NATIONAL_DIGITS
            && digits[..n]
                .parse::<u16>()
                .is_ok_and(|code| COUNTRY_CODES.binary_search(&code).is_ok())
    })
}

/// [`is_e164`], and a number `phonenumber` finds valid: its national number's length and
/// leading digits fit its country's numbering plan.
pub(super) fn in_numbering_plan(phone: &str) -> bool {
    is_e164(phone) && phonenumber::parse(None, phone).is_ok_and(|n| phonenumber::is_valid(&n))
}

impl Validator<'_> {
    /// A phone number refused, at its rep: the same message whichever check refused it.
    pub(super) fn invalid_phone(&self, span: Range<usize>, rep: &str, phone: &str) -> ConfigError {
        self.invalid(
            span,
            format!("{rep}.phone"),
            format!("{phone:?} is not a valid E.164 number such as +447700900123"),
        )
    }

    /// Every rep's phone number against `valid` (the shape was checked with the rest).
    pub(super) fn check_phones(
        &self,
        config: &Config,
        valid: fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        for (index, rep) in config.reps.iter().enumerate() {
            if let Some(phone) = rep.get_ref().phone.as_deref().filter(|p| !valid(p)) {
                return Err(self.invalid_phone(rep.span(), &format!("reps[{index}]"), phone));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use phonenumber::metadata::DATABASE;

    use super::*;
    use crate::config::tests::{no_env, MINIMAL};
    use crate::config::DeepChecks;

    /// MINIMAL with a phone for alice (line 10) and a second rep, bob, with his (line 15).
    fn with_phones(alice: &str, bob: &str) -> String {
        MINIMAL.replace(
            "name = \"Alice\"\n",
            &format!(
                "name = \"Alice\"\nphone = \"{alice}\"\n\n\
                 [[reps]]\nid = \"bob\"\nname = \"Bob\"\nphone = \"{bob}\"\n"
            ),
        )
    }

    /// The configuration as the enrich function parses it.
    fn enrichs_parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, "leadrelay.toml", &no_env, DeepChecks::phones())
    }

    #[test]
    fn parse_checks_the_shape_and_enrichs_parse_and_load_the_numbering_plan() {
        // Bob's number has the shape (a UK mobile one digit short) but no UK number is like it.
        let text = with_phones("+447400123456", "+44740012345");
        let config = Config::parse(&text, "leadrelay.toml", &no_env).expect("shape only");
        assert_eq!(
            config.rep("bob").and_then(|r| r.phone.as_deref()),
            Some("+44740012345")
        );

        let expected = "leadrelay.toml:15: reps[1].phone: \"+44740012345\" is not a valid \
                        E.164 number such as +447700900123";
        let error = enrichs_parse(&text)
            .expect_err("not in the UK plan")
            .to_string();
        assert_eq!(error, expected);

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("leadrelay.toml");
        std::fs::write(&file, &text).expect("write");
        let error = Config::load(&file)
            .expect_err("load checks in full")
            .to_string();
        assert_eq!(
            error,
            expected.replace("leadrelay.toml", &file.display().to_string())
        );

        // Both numbers valid: every entry point accepts them.
        let text = with_phones("+447400123456", "+12015550123");
        enrichs_parse(&text).expect("valid numbers");
        std::fs::write(&file, &text).expect("write");
        Config::load(&file).expect("valid numbers");
    }

    #[test]
    fn a_number_without_the_shape_is_refused_by_every_entry_point_with_one_message() {
        let text = with_phones("+44 7400 123456", "+12015550123");
        let expected = "leadrelay.toml:10: reps[0].phone: \"+44 7400 123456\" is not a valid \
                        E.164 number such as +447700900123";
        for checks in [DeepChecks::default(), DeepChecks::phones()] {
            let error =
                Config::parse_with(&text, "leadrelay.toml", &no_env, checks).expect_err("spaces");
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn the_country_codes_are_the_metadatas_sorted_and_prefix_free() {
        let metadata: BTreeSet<u16> = DATABASE.iter().map(|m| m.country_code()).collect();
        assert_eq!(
            COUNTRY_CODES.iter().copied().collect::<BTreeSet<_>>(),
            metadata
        );
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]), "sorted");
        for code in COUNTRY_CODES {
            let text = code.to_string();
            for other in COUNTRY_CODES.iter().filter(|&&o| o != code) {
                assert!(
                    !other.to_string().starts_with(&text),
                    "{code} prefixes {other}"
                );
            }
        }
    }

    #[test]
    fn every_example_mobile_number_has_the_shape_and_is_in_the_plan() {
        let mut checked = 0;
        for region in DATABASE.iter() {
            let Some(example) = region.descriptors().mobile().and_then(|d| d.example()) else {
                continue;
            };
            let phone = format!("+{}{example}", region.country_code());
            assert!(is_e164(&phone), "{} {phone}", region.id());
            assert!(in_numbering_plan(&phone), "{} {phone}", region.id());
            checked += 1;
        }
        assert!(checked > 200, "{checked} regions with a mobile example");
    }

    #[test]
    fn the_shape_refuses_what_is_not_e164() {
        for bad in [
            "",
            "+",
            "447700900123",                // no +
            "+44 7700 900123",             // spaces
            "+44-7700-900123",             // dashes
            "+4915123456789x",             // a letter
            "+07700900123",                // a national prefix after the +
            "+1555",                       // three national digits
            "+2827700900",                 // 28x is not assigned
            "+8012345678",                 // nor is 801
            "+80012345678",                // freephone: no rep's phone
            "+4477009001234567",           // 16 digits
            "++447700900123",              // two +
            "+\u{0664}\u{0664}7700900123", // Arabic-Indic digits
        ] {
            assert!(!is_e164(bad), "{bad:?}");
            assert!(!in_numbering_plan(bad), "{bad:?}");
        }
        for good in [
            "+447700900123",
            "+15555550123",
            "+4915123456789",
            "+2903123",
        ] {
            assert!(is_e164(good), "{good}");
        }
    }

    #[test]
    fn the_plan_refuses_numbers_of_the_right_shape_its_country_cannot_have() {
        for shaped in [
            "+44740012345", // a UK mobile one digit short
            "+1555555012",  // a NANP number one digit short
            "+4412345",     // five digits: no UK number is that short
        ] {
            assert!(is_e164(shaped), "{shaped}");
            assert!(!in_numbering_plan(shaped), "{shaped}");
        }
    }
}
