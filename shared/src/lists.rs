//! Word lists vendored from maintained npm packages, hashed once on first use.
//!
//! The files live in `shared/data/` with their licences; `make update-free-mail` and
//! `make update-role-addresses` refresh them. Each file is one lower-case entry per line;
//! `#` lines are the header naming the package, its version and its licence.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Free and disposable mailbox domains (npm `free-email-domains`, MIT).
static FREE_MAIL_DOMAINS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| entries(include_str!("../data/free-email-domains.txt")).collect());

/// Local parts that name a role or a group rather than a person (npm
/// `role-based-email-addresses`, MIT).
static ROLE_LOCAL_PARTS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| entries(include_str!("../data/role-based-email-addresses.txt")).collect());

fn entries(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Whether `domain` (lower case, exactly) is on the maintained free-mail list.
pub fn is_free_mail_domain(domain: &str) -> bool {
    FREE_MAIL_DOMAINS.contains(domain)
}

/// Whether `local_part` (lower case, without a `+tag`) is on the maintained role list.
pub fn is_role_local_part(local_part: &str) -> bool {
    ROLE_LOCAL_PARTS.contains(local_part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_lists_load_without_their_headers() {
        assert!(FREE_MAIL_DOMAINS.len() > 1_000);
        assert!(ROLE_LOCAL_PARTS.len() > 100);
        assert!(FREE_MAIL_DOMAINS.iter().all(|d| !d.starts_with('#')));
        for domain in ["gmail.com", "web.de", "yahoo.co.uk", "outlook.com"] {
            assert!(is_free_mail_domain(domain), "{domain}");
        }
        for local in ["info", "sales", "noreply", "support", "admin"] {
            assert!(is_role_local_part(local), "{local}");
        }
        assert!(!is_free_mail_domain("acme-robotics.com"));
        assert!(!is_role_local_part("jane.doe"));
    }

    #[test]
    fn entries_are_lower_case_and_bare() {
        // Lookups compare exactly; an upper-case or padded entry could never match.
        for entry in FREE_MAIL_DOMAINS.iter().chain(ROLE_LOCAL_PARTS.iter()) {
            assert_eq!(*entry, entry.to_lowercase(), "{entry}");
            assert!(!entry.contains(char::is_whitespace), "{entry:?}");
        }
    }
}
