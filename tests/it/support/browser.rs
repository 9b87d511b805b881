//! Headless Chromium driven over WebDriver (chromedriver), for the console's browser tests.
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port with a fresh profile
//! directory; dropping it (a failing test included) kills chromedriver and the Chromium it
//! started, by their process group. Where chromedriver or Chromium is missing the tests fail,
//! naming `scripts/install-browser.sh`, unless `LEADRELAY_SKIP_BROWSER=1` says to skip them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::{eventually, process::free_port};

/// The window every test and screenshot uses.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 900;

/// How long a page element may take to appear (a page load, a redirect after a form).
const FIND: Duration = Duration::from_secs(10);

/// Without the networking flags Chromium keeps calling home (updates, sync, field trials)
/// on a machine that has no network; QUIC and the GPU are of no use headless.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Where chromedriver and Chromium are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub chromedriver: PathBuf,
    pub chromium: PathBuf,
}

/// The tools, or `None` when the browser tests are to be skipped (`LEADRELAY_SKIP_BROWSER=1`,
/// which CI never sets). Panics, naming the install script, when a tool is missing.
pub fn tools() -> Option<Tools> {
    let env = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let chromedriver = env("CHROMEDRIVER").or_else(|| on_path(&["chromedriver"]));
    let chromium =
        env("CHROMIUM").or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]));
    let skip = std::env::var("LEADRELAY_SKIP_BROWSER").ok();
    match resolve(skip.as_deref(), chromedriver, chromium) {
        Ok(Some(tools)) => Some(tools),
        Ok(None) => {
            eprintln!("LEADRELAY_SKIP_BROWSER=1: browser test skipped");
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// What to do with what was found: run, skip on request, or fail saying how to install.
pub fn resolve(
    skip: Option<&str>,
    chromedriver: Option<PathBuf>,
    chromium: Option<PathBuf>,
) -> Result<Option<Tools>, String> {
    if skip == Some("1") {
        return Ok(None);
    }
    match (chromedriver, chromium) {
        (Some(chromedriver), Some(chromium)) => Ok(Some(Tools {
            chromedriver,
            chromium,
        })),
        (driver, browser) => {
            let missing: Vec<&str> = [
                driver.is_none().then_some("chromedriver"),
                browser.is_none().then_some("chromium"),
            ]
            .into_iter()
            .flatten()
            .collect();
            Err(format!(
                "the console's browser tests need headless Chromium and chromedriver; not found: \
                 {}. Install them with scripts/install-browser.sh (`make test` runs it), or set \
                 CHROMEDRIVER / CHROMIUM to their paths. LEADRELAY_SKIP_BROWSER=1 skips these \
                 tests.",
                missing.join(", ")
            ))
        }
    }
}

/// The first of `names` found as an executable file on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// chromedriver as a child in its own process group, so that Chromium's processes, which it
/// starts in that group, go with it.
struct Driver {
    child: Child,
    port: u16,
    reaped: bool,
}

impl Driver {
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with the negated id of the group this child leads (it was
            // started with process_group(0)): signals only processes this test started.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A headless Chromium session on the console at `base`.
pub struct Browser {
    pub client: Client,
    pub base: String,
    // Dropped in this order: the processes, then their profile and log directory.
    driver: Driver,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session with a fresh profile, `WIDTH`x`HEIGHT`.
    pub async fn start(tools: &Tools, base: &str) -> Browser {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tools.chromedriver.display()));
        let driver = Driver {
            child,
            port,
            reaped: false,
        };
        let status = format!("http://127.0.0.1:{port}/status");
        let http = super::http_client();
        eventually(Duration::from_secs(20), "chromedriver ready", || async {
            let body: Value = http.get(&status).send().await.ok()?.json().await.ok()?;
            (body["value"]["ready"] == true).then_some(())
        })
        .await;

        let profile = dir.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={WIDTH},{HEIGHT}"));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tools.chromium,
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no Chromium session: {e}\nchromedriver log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let browser = Browser {
            client,
            base: base.to_owned(),
            driver,
            dir,
        };
        browser.size_viewport().await;
        browser
    }

    /// Makes the page's viewport (what a screenshot shows) `WIDTH`x`HEIGHT`: the window
    /// size WebDriver sets includes the browser's own frame.
    async fn size_viewport(&self) {
        let window = &self.client;
        window
            .set_window_size(WIDTH, HEIGHT)
            .await
            .expect("window size");
        let inner = self
            .run("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let side = |i: usize, want: u32| {
            let got = inner[i].as_u64().and_then(|v| u32::try_from(v).ok());
            let got = got.unwrap_or_else(|| panic!("no viewport size: {inner}"));
            want + want.saturating_sub(got)
        };
        let (width, height) = (side(0, WIDTH), side(1, HEIGHT));
        window
            .set_window_size(width, height)
            .await
            .expect("window size");
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    pub async fn close(self) {
        let Browser {
            client,
            mut driver,
            dir,
            ..
        } = self;
        let _ = client.close().await;
        driver.kill();
        drop(dir);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens a path of the console's site.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(FIND)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no element {css} on {} within {FIND:?}: {e}\n{}",
                self.path().await,
                self.body_text().await
            ),
        }
    }

    /// Whether an element matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .is_ok_and(|found| !found.is_empty())
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// The visible text of the whole page.
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page's text contains `what`; panics with the page's text after
    /// `deadline`.
    pub async fn wait_for_text(&self, what: &str, deadline: Duration) -> String {
        let started = Instant::now();
        loop {
            let text = self.body_text().await;
            if text.contains(what) {
                return text;
            }
            assert!(
                started.elapsed() < deadline,
                "{:?} did not appear on {} within {deadline:?}; the page says:\n{text}",
                what,
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page shown is `path` (after a form's redirect).
    pub async fn wait_for_path(&self, path: &str) {
        let started = Instant::now();
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                started.elapsed() < FIND,
                "the browser is on {now}, not {path}; the page says:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types into the field matching `css`, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks the element matching `css` (a button submits its form).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Signs in through the form and waits until the console shows `landing`.
    pub async fn sign_in(&self, login: &str, password: &str, landing: &str) {
        self.open("/console/login").await;
        self.type_into("#login", login).await;
        self.type_into("#password", password).await;
        self.click("form[action='/console/login'] button[type=submit]")
            .await;
        self.wait_for_path(landing).await;
    }

    /// Signs out with the button every console page has (a refusal page has none: from
    /// there, through the live list).
    pub async fn sign_out(&self) {
        if !self.has("form[action='/console/logout']").await {
            self.open("/console/leads").await;
        }
        self.click("form[action='/console/logout'] button[type=submit]")
            .await;
        self.wait_for_path("/console/login").await;
    }

    /// The HTTP status of `GET path` as the browser's own request (its session cookie
    /// included) sees it: a page's text cannot tell a 403 from a 200.
    pub async fn status_of(&self, path: &str) -> u16 {
        let answer = self
            .client
            .execute_async(
                "const [path, done] = arguments; \
                 fetch(path, { credentials: 'same-origin', redirect: 'manual' }) \
                   .then(r => done(r.status), e => done(-1));",
                vec![json!(path)],
            )
            .await
            .unwrap_or_else(|e| panic!("fetch {path}: {e}"));
        answer
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("fetch {path} failed: {answer}"))
    }

    /// The value of the headline figure labelled `label` (`.figure` > `.label`, `.value`).
    pub async fn figure(&self, label: &str) -> String {
        let value = self
            .run(
                "for (const figure of document.querySelectorAll('.figure')) { \
                   const label = figure.querySelector('.label'); \
                   const value = figure.querySelector('.value'); \
                   if (label && value && label.textContent.trim() === arguments[0]) \
                     return value.textContent.trim(); \
                 } \
                 return null;",
                vec![json!(label)],
            )
            .await;
        match value {
            Value::String(text) => text,
            _ => panic!(
                "no figure {label:?} on {}; the page says:\n{}",
                self.path().await,
                self.body_text().await
            ),
        }
    }

    /// Runs `script` in the page (for what a person could do with the developer tools).
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_fails_naming_the_install_script_unless_skipping_is_asked_for() {
        let chromium = Some(PathBuf::from("/usr/bin/chromium"));
        let message = resolve(None, None, chromium.clone()).expect_err("no driver: a failure");
        assert!(message.contains("scripts/install-browser.sh"), "{message}");
        assert!(message.contains("not found: chromedriver."), "{message}");
        let message = resolve(Some("0"), None, None).expect_err("0 does not skip");
        assert!(message.contains("chromedriver, chromium"), "{message}");

        assert_eq!(resolve(Some("1"), None, None), Ok(None));
        let driver = Some(PathBuf::from("/usr/bin/chromedriver"));
        assert_eq!(
            resolve(None, driver.clone(), chromium.clone()),
            Ok(Some(Tools {
                chromedriver: PathBuf::from("/usr/bin/chromedriver"),
                chromium: PathBuf::from("/usr/bin/chromium"),
            }))
        );
    }
}
