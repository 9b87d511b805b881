//! The frame every console page shares (navigation, who is signed in, sign-out) and the small
//! formatting helpers the pages use for times and durations.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use maud::{html, Markup, DOCTYPE};

use crate::auth::Signed;

/// The sections of the console, in navigation order: path, label, and whether only an
/// operator sees it.
const SECTIONS: [(&str, &str, bool); 5] = [
    ("/console/leads", "Live leads", false),
    ("/console/dashboard", "Dashboard", false),
    ("/console/people", "People", false),
    ("/console/operations", "Operations", true),
    ("/console/audit", "Audit log", true),
];

/// An HTML page as a response.
pub(crate) struct Page(Markup);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.0.into_string(),
        )
            .into_response()
    }
}

/// A whole document around `body`.
pub(crate) fn document(title: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · leadrelay" }
                link rel="stylesheet" href=(crate::assets::STYLESHEET);
                script src=(crate::assets::SCRIPT) defer {}
            }
            body { (body) }
        }
    })
}

/// A console page: the navigation (the current section marked), who is signed in, then `body`.
pub(crate) fn shell(signed: &Signed, active: &str, title: &str, body: Markup) -> Page {
    let viewer = &signed.viewer;
    document(
        title,
        html! {
            a.skip href="#main" { "Skip to content" }
            header.top {
                span.brand { "leadrelay" }
                nav aria-label="Console" {
                    ul {
                        @for (path, label, operator_only) in SECTIONS {
                            @if !operator_only || viewer.is_operator() {
                                li {
                                    @if path == active {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                div.who {
                    span { (viewer.name) " · " (viewer.role.as_str()) }
                    form method="post" action="/console/logout" {
                        (csrf(signed))
                        button.link type="submit" { "Sign out" }
                    }
                }
            }
            main #main tabindex="-1" {
                h1 { (title) }
                (body)
            }
        },
    )
}

/// The hidden field every action form carries.
pub(crate) fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.session.csrf); }
}

/// A page with a title and one message, for refusals.
pub(crate) fn bare(title: &str, message: &str) -> Page {
    document(
        title,
        html! {
            main.signin {
                h1 { (title) }
                p { (message) }
                p { a href="/console/leads" { "Back to the console" } }
            }
        },
    )
}

/// Percent-encodes a query value.
pub(crate) fn query_escape(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}

/// `14:02:11` (UTC) for today's instants, `2026-11-24 14:02` for older ones.
pub(crate) fn clock(at: Timestamp, now: Timestamp) -> String {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    if now.duration_since(at) < SignedDuration::from_hours(20) {
        utc.strftime("%H:%M:%S").to_string()
    } else {
        utc.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// A duration as people say it: `45s`, `12m 05s`, `3h 20m`, `2d 4h`.
pub(crate) fn span(duration: SignedDuration) -> String {
    let secs = duration.as_secs().abs();
    let sign = if duration.is_negative() { "-" } else { "" };
    let text = match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    };
    format!("{sign}{text}")
}

/// An instant, its time in UTC and how long ago, with the machine-readable form for the
/// script that keeps "ago" current.
pub(crate) fn when(at: Option<Timestamp>, now: Timestamp) -> Markup {
    match at {
        None => html! { span.none { "–" } },
        Some(at) => html! {
            time datetime=(at.to_string()) title=(at.to_string()) {
                (clock(at, now)) " UTC"
            }
        },
    }
}

/// Part of a page (the live table's rows), for the script that refreshes it.
pub(crate) fn fragment(markup: Markup) -> Page {
    Page(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_way_people_say_them() {
        assert_eq!(span(SignedDuration::from_secs(45)), "45s");
        assert_eq!(span(SignedDuration::from_secs(725)), "12m 05s");
        assert_eq!(
            span(SignedDuration::from_secs(3 * 3600 + 20 * 60)),
            "3h 20m"
        );
        assert_eq!(span(SignedDuration::from_secs(-90)), "-1m 30s");
        assert_eq!(span(SignedDuration::from_hours(52)), "2d 4h");
    }
}
