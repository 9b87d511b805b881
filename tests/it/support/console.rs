//! Signing in to the console over HTTP as a browser would, for the console's tests: the form's
//! login cookie and token, the session cookie, each form's CSRF token. Cookies are handled by
//! hand: they are `Secure`, which an HTTP client's cookie store keeps off plain-HTTP requests.

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

use super::Server;

/// The demo accounts of the shipped configuration (`[[console.accounts]]`).
pub const OPERATOR: (&str, &str) = ("ops@yourco.example", "leadrelay-demo-operator");
/// Manages the `amer` team (alice, dana).
pub const MANAGER: (&str, &str) = ("manager@yourco.example", "leadrelay-demo-manager");
/// The rep `alice` of the `amer` team.
pub const ALICE: (&str, &str) = ("alice@yourco.example", "leadrelay-demo-alice");

const FORM: &str = "application/x-www-form-urlencoded";

fn encode(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).expect("form fields")
}

/// A response as the console's tests read it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// One signed-in browser.
pub struct ConsoleSession {
    pub base: String,
    pub http: reqwest::Client,
    /// The session id from the `__Host-leadrelay-session` cookie.
    pub session: String,
}

/// A client that follows no redirect: the tests read each `Location`.
pub fn no_redirects() -> reqwest::Client {
    leadrelay_https::client(|builder| builder.redirect(Policy::none())).expect("HTTP client")
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let set_cookies = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let body = response.text().await.unwrap_or_default();
    Page {
        status,
        location,
        set_cookies,
        body,
    }
}

/// The value of cookie `name` in a `Set-Cookie` list.
pub fn cookie_value(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The `value` of the hidden input `name` (the first one) in a page.
pub fn hidden(body: &str, name: &str) -> Option<String> {
    let at = body.find(&format!("name=\"{name}\""))?;
    let tag_start = body[..at].rfind('<')?;
    let tag_end = at + body[at..].find('>')?;
    let tag = &body[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1)?;
    Some(value.split('"').next()?.to_owned())
}

/// Posts the sign-in form as the login page served it (its cookie and token).
pub async fn sign_in_form(base: &str, login: &str, password: &str, next: &str) -> Page {
    let http = no_redirects();
    let form = page(
        http.get(format!("{base}/console/login"))
            .send()
            .await
            .expect("login page"),
    )
    .await;
    let token = cookie_value(&form.set_cookies, "__Host-leadrelay-login").expect("login cookie");
    assert_eq!(
        hidden(&form.body, "login_csrf").as_deref(),
        Some(token.as_str())
    );
    page(
        http.post(format!("{base}/console/login"))
            .header(COOKIE, format!("__Host-leadrelay-login={token}"))
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[
                ("login", login),
                ("password", password),
                ("login_csrf", token.as_str()),
                ("next", next),
            ]))
            .send()
            .await
            .expect("sign in"),
    )
    .await
}

impl ConsoleSession {
    /// Signs in with `account` (login, password); panics unless the console lets them in.
    pub async fn sign_in(server: &Server, account: (&str, &str)) -> ConsoleSession {
        ConsoleSession::sign_in_at(&server.base, account).await
    }

    /// [`ConsoleSession::sign_in`] to a console served at `base`.
    pub async fn sign_in_at(base: &str, account: (&str, &str)) -> ConsoleSession {
        let answer = sign_in_form(base, account.0, account.1, "/console/leads").await;
        assert_eq!(
            answer.status, 303,
            "signing in as {}: {}",
            account.0, answer.body
        );
        let session = cookie_value(&answer.set_cookies, "__Host-leadrelay-session")
            .expect("a session cookie");
        ConsoleSession {
            base: base.to_owned(),
            http: no_redirects(),
            session,
        }
    }

    fn cookie(&self) -> String {
        format!("__Host-leadrelay-session={}", self.session)
    }

    pub async fn get(&self, path: &str) -> Page {
        page(
            self.http
                .get(format!("{}{path}", self.base))
                .header(COOKIE, self.cookie())
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// Posts `fields` to `path` exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        page(
            self.http
                .post(format!("{}{path}", self.base))
                .header(COOKIE, self.cookie())
                .header(CONTENT_TYPE, FORM)
                .body(encode(fields))
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// This session's CSRF token, read from a console page's forms.
    pub async fn csrf(&self) -> String {
        let page = self.get("/console/people").await;
        hidden(&page.body, "csrf").expect("a csrf field on the people page")
    }

    /// Posts `fields` with this session's CSRF token, as the console's own forms do.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", token.as_str()));
        self.post_raw(path, &all).await
    }
}
