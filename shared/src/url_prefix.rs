//! Where a URL taken from a request may point, compared parsed (scheme, host, port and whole
//! path segments), never as a string prefix: `https://hooks.slack.com` as a string prefix
//! would let `https://hooks.slack.com@evil.example/` and `https://hooks.slack.com.evil.example/`
//! through.

use url::Url;

/// Why a configured prefix is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("not a URL ({0})")]
    NotAUrl(#[from] url::ParseError),
    #[error("must be an https URL (plain http only for a loopback host)")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must have no query or fragment")]
    QueryOrFragment,
    #[error("must end with '/' so that it ends on a whole path segment")]
    NoTrailingSlash,
}

/// A parsed URL prefix: `https://host[:port]/segment/.../`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPrefix {
    scheme: String,
    host: url::Host<String>,
    port: Option<u16>,
    /// The path's segments, without the empty one after the trailing `/`.
    segments: Vec<String>,
}

impl UrlPrefix {
    /// Parses and checks a prefix: a clean https URL (http on a loopback host, for local
    /// stand-ins) whose path ends with `/`.
    pub fn parse(text: &str) -> Result<Self, PrefixError> {
        let url = Url::parse(text)?;
        let host = url.host().ok_or(PrefixError::NotHttps)?.to_owned();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            _ => return Err(PrefixError::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(PrefixError::Credentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(PrefixError::QueryOrFragment);
        }
        // The parser keeps the raw text's path; it must end where a segment ends.
        if !url.path().ends_with('/') || !text.trim_end().ends_with('/') {
            return Err(PrefixError::NoTrailingSlash);
        }
        Ok(UrlPrefix {
            scheme: url.scheme().to_owned(),
            host,
            port: url.port_or_known_default(),
            segments: segments(&url),
        })
    }

    /// Whether `candidate` is under this prefix: same scheme, host and port, no credentials,
    /// and the prefix's path segments first, each whole.
    pub fn contains(&self, candidate: &str) -> bool {
        let Ok(url) = Url::parse(candidate) else {
            return false;
        };
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        url.scheme() == self.scheme
            && url.host().map(|h| h.to_owned()).as_ref() == Some(&self.host)
            && url.port_or_known_default() == self.port
            && segments(&url).starts_with(&self.segments)
    }
}

/// The path's segments, percent-encoded as the parser normalised them, with the empty last
/// one of a trailing `/` dropped.
fn segments(url: &Url) -> Vec<String> {
    let mut segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();
    if segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    segments
}

fn is_loopback(host: &url::Host<String>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack() -> UrlPrefix {
        UrlPrefix::parse("https://hooks.slack.com/").expect("valid")
    }

    #[test]
    fn slacks_own_urls_are_inside() {
        let prefix = slack();
        assert!(prefix.contains("https://hooks.slack.com/actions/T1/1/abc"));
        assert!(prefix.contains("https://HOOKS.slack.com:443/actions/T1/1/abc"));
    }

    #[test]
    fn look_alike_hosts_credentials_and_other_ports_are_outside() {
        let prefix = slack();
        for outside in [
            "https://hooks.slack.com@evil.example/",
            "https://hooks.slack.com@evil.example/actions/T1/1/abc",
            "https://hooks.slack.com.evil.example/",
            "https://hooks.slack.com.evil.example/actions/T1",
            "https://user:pw@hooks.slack.com/actions/T1",
            "https://hooks.slack.com:8443/actions/T1",
            "http://hooks.slack.com/actions/T1",
            "https://evil.example/https://hooks.slack.com/",
            "hooks.slack.com/actions",
            "",
        ] {
            assert!(!prefix.contains(outside), "{outside} was let through");
        }
    }

    #[test]
    fn path_prefixes_match_whole_segments_after_normalisation() {
        let prefix = UrlPrefix::parse("https://hooks.example/slack/").expect("valid");
        assert!(prefix.contains("https://hooks.example/slack/actions/1"));
        assert!(!prefix.contains("https://hooks.example/slackers/actions/1"));
        assert!(!prefix.contains("https://hooks.example/slack/../admin"));
        assert!(!prefix.contains("https://hooks.example/slack/%2e%2e/admin"));
        assert!(!prefix.contains("https://hooks.example/other/"));
    }

    #[test]
    fn only_clean_https_prefixes_ending_in_a_slash_are_accepted() {
        assert_eq!(
            UrlPrefix::parse("https://hooks.slack.com"),
            Err(PrefixError::NoTrailingSlash)
        );
        assert_eq!(
            UrlPrefix::parse("https://hooks.example/slack"),
            Err(PrefixError::NoTrailingSlash)
        );
        assert_eq!(
            UrlPrefix::parse("http://hooks.slack.com/"),
            Err(PrefixError::NotHttps)
        );
        assert_eq!(
            UrlPrefix::parse("https://u:p@hooks.slack.com/"),
            Err(PrefixError::Credentials)
        );
        assert_eq!(
            UrlPrefix::parse("https://hooks.slack.com/?x=1"),
            Err(PrefixError::QueryOrFragment)
        );
        assert!(matches!(
            UrlPrefix::parse("hooks.slack.com/"),
            Err(PrefixError::NotAUrl(_))
        ));
        assert!(UrlPrefix::parse("https://hooks.slack-gov.com/").is_ok());
        // A local stand-in (tests, a dev proxy) may use plain http on loopback only.
        assert!(UrlPrefix::parse("http://127.0.0.1:9000/").is_ok());
        assert!(UrlPrefix::parse("http://localhost:9000/").is_ok());
    }
}
