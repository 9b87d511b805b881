//! Signing in and out, the session behind every page, and the CSRF token behind every action.
//!
//! - Passwords: Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), verified on the
//!   blocking pool, at most two at a time; an unknown login is checked against a dummy hash so
//!   both answers take as long. After [`MAX_FAILURES`] failures for one login within
//!   [`FAILURE_WINDOW`], that login is refused without checking until the window ends.
//! - Sessions: a random 256-bit id in a `__Host-` cookie (`HttpOnly`, `Secure`,
//!   `SameSite=Lax`, path `/`), a new one at every sign-in; the store keeps only its digest.
//! - CSRF: every form carries the session's own random token, compared in constant time; the
//!   sign-in form, which has no session yet, carries a token bound to a short-lived cookie.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::console::{Session, Viewer};
use maud::html;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::{page, Console, Refusal};

const SESSION_COOKIE: &str = "__Host-leadrelay-session";
const LOGIN_COOKIE: &str = "__Host-leadrelay-login";
/// Failed sign-ins for one login before it is locked for the rest of the window.
pub(crate) const MAX_FAILURES: u32 = 5;
pub(crate) const FAILURE_WINDOW: SignedDuration = SignedDuration::from_mins(15);
/// The largest sign-in form read: a login, a password and two tokens.
const MAX_SIGN_IN_BYTES: usize = 16 * 1024;
/// The largest form the console reads (the what-if's pasted configuration is the big one).
const MAX_FORM_BYTES: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/login", get(login_page).post(sign_in))
        .route("/console/logout", post(sign_out))
}

/// Failed sign-ins per login, and the gate that keeps Argon2 from taking every core.
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, (u32, Timestamp)>>,
    hashing: Semaphore,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            failures: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(2),
        }
    }
}

impl Throttle {
    fn locked(&self, login: &str, now: Timestamp) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(login).is_some_and(|(count, since)| {
            *count >= MAX_FAILURES && now.duration_since(*since) < FAILURE_WINDOW
        })
    }

    fn failed(&self, login: &str, now: Timestamp) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget windows that are over, so the map cannot grow without bound.
        failures.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        let entry = failures.entry(login.to_owned()).or_insert((0, now));
        entry.0 += 1;
    }

    fn succeeded(&self, login: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(login);
    }
}

/// An Argon2id PHC string for `password` (`leadrelay console hash-password`).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `hash` (a malformed hash matches nothing).
fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .and_then(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed))
        .is_ok()
}

/// A hash no password is known for: what an unknown login is checked against.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// 256 random bits as hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS's random source failing is not something to serve pages through.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    leadrelay_shared::console::session::hex(&bytes)
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(name: &str, value: &str, max_age_secs: i64, same_site: &str) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; Secure; SameSite={same_site}; Max-Age={max_age_secs}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where to go after signing in: a console path of this site, never an address elsewhere.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/console")
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/console/leads".to_owned(),
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(Query(query): Query<NextQuery>) -> Response {
    login_form(StatusCode::OK, query.next.as_deref(), None)
}

fn login_form(status: StatusCode, next: Option<&str>, problem: Option<&str>) -> Response {
    let token = random_token();
    let body = html! {
        main.signin {
            h1 { "Sign in to leadrelay" }
            @if let Some(problem) = problem {
                p.problem role="alert" { (problem) }
            }
            form method="post" action="/console/login" {
                input type="hidden" name="login_csrf" value=(token);
                input type="hidden" name="next" value=(local_next(next));
                label for="login" { "Login" }
                input #login name="login" type="text" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut response = (status, page::document("Sign in", body)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, 600, "Strict"),
    );
    response
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_csrf: String,
    next: Option<String>,
}

async fn sign_in(State(console): State<Console>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let Ok(body) = axum::body::to_bytes(body, MAX_SIGN_IN_BYTES).await else {
        return Refusal::BadRequest("the sign-in form is larger than 16 KiB".into())
            .into_response();
    };
    let Ok(form) = serde_urlencoded::from_bytes::<SignInForm>(&body) else {
        return Refusal::BadRequest("the sign-in form could not be read".into()).into_response();
    };
    let next = form.next.as_deref();
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same(c, &form.login_csrf)) {
        return login_form(
            StatusCode::FORBIDDEN,
            next,
            Some("This sign-in form expired. Please try again."),
        );
    }
    let Some(accounts) = console.config().console.as_ref() else {
        return Refusal::NotFound("no console").into_response();
    };
    let now = console.pipeline.clock.now();
    if console.throttle.locked(&form.login, now) {
        return login_form(
            StatusCode::TOO_MANY_REQUESTS,
            next,
            Some("Too many failed attempts for this login. Wait 15 minutes and try again."),
        );
    }
    let account = accounts.account(&form.login);
    let hash = account
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let matches = {
        let Ok(_permit) = console.throttle.hashing.acquire().await else {
            return Refusal::Unavailable.into_response();
        };
        let password = form.password.clone();
        tokio::task::spawn_blocking(move || password_matches(&password, &hash))
            .await
            .unwrap_or(false)
    };
    let Some(account) = account.filter(|_| matches) else {
        // Only configured logins are counted: an unknown one has nothing to lock, and counting
        // every string tried would let anyone grow the map.
        if let Some(known) = account {
            console.throttle.failed(&known.login, now);
        }
        let who = account.map_or("-", |a| a.login.as_str());
        console
            .audit(who, "sign-in-refused", who, "wrong login or password")
            .await;
        return login_form(
            StatusCode::UNAUTHORIZED,
            next,
            Some("Wrong login or password."),
        );
    };
    console.throttle.succeeded(&account.login);
    let id = random_token();
    let hours = i64::from(accounts.session_hours);
    let session = Session {
        key: Session::key(&id),
        login: account.login.clone(),
        csrf: random_token(),
        created_at: now,
        expires_at: now + SignedDuration::from_hours(hours),
    };
    if let Err(e) = console.store.start_session(&session).await {
        return Refusal::from(e).into_response();
    }
    console
        .audit(&account.login, "sign-in", &account.login, "signed in")
        .await;
    let mut response = Redirect::to(&local_next(next)).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, hours * 3600, "Lax"),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", 0, "Strict"),
    );
    response
}

async fn sign_out(State(console): State<Console>, action: Action<Empty>) -> Response {
    let signed = action.signed;
    if let Err(e) = console.store.end_session(&signed.session.key).await {
        return Refusal::from(e).into_response();
    }
    console
        .audit(
            &signed.viewer.login,
            "sign-out",
            &signed.viewer.login,
            "signed out",
        )
        .await;
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, "Lax"));
    response
}

/// A form with no fields but its CSRF token.
#[derive(Deserialize)]
pub(crate) struct Empty {}

/// The signed-in person behind a request, and their session.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub viewer: Viewer,
    pub session: Session,
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Refusal> {
        let next = || Refusal::SignIn {
            next: match parts.method {
                Method::GET => parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                _ => "/console/leads".to_owned(),
            },
        };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE).filter(|id| !id.is_empty()) else {
            return Err(next());
        };
        let now = console.pipeline.clock.now();
        let Some(session) = console.store.session(&Session::key(id), now).await? else {
            return Err(next());
        };
        // An account removed from the configuration is signed out at its next request.
        let Some(account) = console
            .config()
            .console
            .as_ref()
            .and_then(|c| c.account(&session.login))
        else {
            return Err(next());
        };
        Ok(Signed {
            viewer: Viewer::of(account),
            session,
        })
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A POSTed console form: the signed-in person, their form, and proof that the form came
/// from their session (its CSRF token). No action handler can forget the check: they all take
/// their form through this.
pub(crate) struct Action<T> {
    pub signed: Signed,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Console> for Action<T> {
    type Rejection = Refusal;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Refusal> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| Refusal::BadRequest("the form is larger than 1 MiB".into()))?;
        let token = serde_urlencoded::from_bytes::<CsrfField>(&body)
            .map(|f| f.csrf)
            .unwrap_or_default();
        if !same(&token, &signed.session.csrf) {
            return Err(Refusal::Forged);
        }
        let form = serde_urlencoded::from_bytes::<T>(&body)
            .map_err(|e| Refusal::BadRequest(format!("the form could not be read: {e}")))?;
        Ok(Action { signed, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$"));
        assert!(password_matches("correct horse", &hash));
        assert!(!password_matches("correct horsE", &hash));
        assert!(!password_matches("correct horse", "not a hash"));
    }

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(
            local_next(Some("/console/leads?state=routed")),
            "/console/leads?state=routed"
        );
        for hostile in [
            "https://evil.example/",
            "//evil.example/console",
            "/console\\@evil",
            "/other",
        ] {
            assert_eq!(local_next(Some(hostile)), "/console/leads", "{hostile}");
        }
    }

    #[test]
    fn a_throttled_login_unlocks_when_its_window_ends() {
        let throttle = Throttle::default();
        let start = Timestamp::from_second(1_800_000_000).expect("instant");
        for _ in 0..MAX_FAILURES {
            assert!(!throttle.locked("maria", start));
            throttle.failed("maria", start);
        }
        assert!(throttle.locked("maria", start));
        assert!(!throttle.locked("lee", start));
        assert!(!throttle.locked("maria", start + FAILURE_WINDOW));
    }
}
