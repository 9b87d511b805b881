//! An e-mail address with an optional display name (`Ana Diaz <ana@acme.com>` or
//! `ana@acme.com`), as the configuration writes senders and the renderers address messages.
//! Parsed by `email_address` (RFC 5322); the e-mail adapters turn it into their own type.

use std::fmt;
use std::str::FromStr;

use email_address::{EmailAddress, Options};

/// A checked address and the name shown beside it.
#[derive(Clone, PartialEq, Eq)]
pub struct Mailbox {
    name: Option<String>,
    address: EmailAddress,
}

/// Why a text is not a mailbox. Carries no part of the text: it may be a prospect's address.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not an e-mail address: {0}")]
pub struct InvalidMailbox(#[source] email_address::Error);

impl Mailbox {
    /// `address` alone (no display text), shown as `name`.
    pub fn new(name: Option<String>, address: &str) -> Result<Self, InvalidMailbox> {
        let options = Options::default().without_display_text();
        let address =
            EmailAddress::parse_with_options(address.trim(), options).map_err(InvalidMailbox)?;
        Ok(Mailbox { name, address })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `local@domain`, without the name.
    pub fn address(&self) -> &str {
        self.address.as_str()
    }

    pub fn domain(&self) -> &str {
        self.address.domain()
    }
}

impl FromStr for Mailbox {
    type Err = InvalidMailbox;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = EmailAddress::from_str(text.trim()).map_err(InvalidMailbox)?;
        let name = Some(parsed.display_part().trim().trim_matches('"').trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        Mailbox::new(name, &parsed.email())
    }
}

// Prospect PII: the address is never printed by `{:?}`.
impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("domain", &self.domain())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_and_one_with_a_name_parse() {
        let bare: Mailbox = "alerts@acme.example".parse().expect("bare");
        assert_eq!(bare.address(), "alerts@acme.example");
        assert_eq!(bare.name(), None);
        let named: Mailbox = "leadrelay <alerts@acme.example>".parse().expect("named");
        assert_eq!(named.address(), "alerts@acme.example");
        assert_eq!(named.name(), Some("leadrelay"));
        assert_eq!(named.domain(), "acme.example");
        let quoted: Mailbox = "\"Acme, Inc\" <a@acme.example>".parse().expect("quoted");
        assert_eq!(quoted.name(), Some("Acme, Inc"));
    }

    #[test]
    fn what_is_not_an_address_is_refused() {
        for text in [
            "",
            "not an address",
            "a@",
            "@acme.example",
            "a b@acme.example",
        ] {
            assert!(text.parse::<Mailbox>().is_err(), "{text:?}");
        }
        assert!(Mailbox::new(Some("x".into()), "x <a@acme.example>").is_err());
    }
}
