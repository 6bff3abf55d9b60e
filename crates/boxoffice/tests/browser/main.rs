//! The web shop in a real browser: Debian's Chromium, headless, driven through `chromedriver`
//! (WebDriver) by fantoccini, against a server on port 0 — the journeys of fans, organisers and
//! door staff (`journeys`), and of an on-sale behind a waiting room (`queue`), with a screenshot
//! of each main page under `target/browser-screenshots/` and accessibility checked on each: the
//! basics (a language, a title, one `h1`, a label for every field, a name for every button and
//! image), and axe-core's WCAG 2.1 A/AA rules when it is installed (`npm install --prefix
//! target/npm axe-core`; CI does).
//!
//! Without Chromium and chromedriver each test says so and passes; with `BOXOFFICE_CI=1` (CI
//! installs them) that is a failure.

#![allow(clippy::unwrap_used)]

const ON_POSTGRES: bool = false;

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod journeys;
mod queue;

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session, and the chromedriver that runs it (stopped on drop).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends chromedriver and the Chromium it started: they share a process group of their own
    /// (killing chromedriver alone leaves every Chromium process of the session running).
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A fresh browser, or `None` (said on stderr) when this machine has no Chromium.
    pub async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("BOXOFFICE_CI").is_err(),
                "CI needs Chromium: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "skipped: no {CHROMIUM} or {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = helpers::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver listens");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1200,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        // A chromedriver that answered the port probe has been seen to refuse the session
        // request a moment later, under a loaded machine: the session is asked for up to three
        // times.
        let mut attempts = 0;
        let client = loop {
            attempts += 1;
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let session = ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match session {
                Ok(client) => break client,
                Err(error) if attempts < 3 => {
                    eprintln!("no WebDriver session yet ({error}); asking again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!("a WebDriver session: {error:?}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Types `text` into the field `#id`.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("#{id}")))
            .await
            .unwrap_or_else(|_| panic!("a field #{id}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the button whose text contains `text` (or, if there is none, the link).
    pub async fn click(&self, text: &str) {
        for kind in ["button", "a"] {
            let xpath = format!("//{kind}[contains(normalize-space(.), '{text}')]");
            if let Ok(element) = self.client.find(Locator::XPath(&xpath)).await {
                element.click().await.unwrap();
                return;
            }
        }
        panic!("something to click that says {text:?}");
    }

    /// Presses `key` where the focus is.
    pub async fn press(&self, key: Key) {
        self.focused()
            .await
            .send_keys(&key.to_string())
            .await
            .unwrap();
    }

    /// Types `text` where the focus is.
    pub async fn type_here(&self, text: &str) {
        self.focused().await.send_keys(text).await.unwrap();
    }

    async fn focused(&self) -> fantoccini::elements::Element {
        self.client
            .active_element()
            .await
            .expect("something has the focus")
    }

    /// Presses Tab (60 times at most) until the focus is on the element `css` names, and checks
    /// that a sighted keyboard user can see where the focus is (an outline).
    pub async fn tab_to(&self, css: &str) {
        for _ in 0..60 {
            let here: Value = self
                .client
                .execute(
                    "const at = document.activeElement;
                     return at && at.matches(arguments[0])
                       ? getComputedStyle(at).outlineStyle : null;",
                    vec![json!(css)],
                )
                .await
                .unwrap();
            if let Some(outline) = here.as_str() {
                assert_ne!(outline, "none", "the focus on {css} shows");
                return;
            }
            self.press(Key::Tab).await;
        }
        panic!("Tab never reaches {css}");
    }

    /// Waits (a few seconds at most) for an element matching `css`: the page after a form that
    /// comes back to the same path.
    pub async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("an element {css} appears"));
    }

    /// Waits (a few seconds at most) until the first element matching `css` says `expected`,
    /// and fails with what it said last.
    pub async fn wait_for_text(&self, css: &str, expected: &str) {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                last = element.text().await.unwrap_or_default();
                if last.contains(expected) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} says {last:?}, not {expected:?}");
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("an element {css}"))
            .text()
            .await
            .unwrap()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Saves a screenshot of the page as `target/browser-screenshots/NAME.png`, then checks the
    /// page's accessibility basics.
    pub async fn snapshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        self.check_accessibility(name).await;
    }

    /// Shows the page at a phone's width (390 CSS pixels), saves `NAME-phone.png`, and checks that
    /// nothing makes the page wider than the screen; then back to the desktop width.
    pub async fn check_phone_width(&self, name: &str) {
        self.client.set_window_size(390, 844).await.unwrap();
        let wider: Value = self
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                Vec::new(),
            )
            .await
            .unwrap();
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::create_dir_all(screenshots_dir()).unwrap();
        std::fs::write(screenshots_dir().join(format!("{name}-phone.png")), png).unwrap();
        self.client.set_window_size(1200, 1000).await.unwrap();
        assert!(
            wider.as_i64().unwrap_or_default() <= 0,
            "{name} is wider than a phone by {wider} px"
        );
    }

    /// The house's basics (a language, a title, exactly one `h1`, a label for every field, a
    /// name for every button and image), then axe-core's WCAG 2.1 A and AA rules (contrast,
    /// landmarks, ARIA, ...) when it is installed; what fails is named in the failure.
    async fn check_accessibility(&self, name: &str) {
        let problems: Value = self
            .client
            .execute(ACCESSIBILITY_CHECK, Vec::new())
            .await
            .expect("the check runs");
        let mut problems = problems.as_array().cloned().unwrap_or_default();
        if let Some(axe) = axe_source() {
            self.client
                .execute(&axe, Vec::new())
                .await
                .expect("axe-core loads");
            let violations: Value = self
                .client
                .execute_async(AXE_RUN, Vec::new())
                .await
                .expect("axe-core runs");
            problems.extend(violations.as_array().cloned().unwrap_or_default());
        }
        assert!(
            problems.is_empty(),
            "accessibility problems on {name}: {problems:#?}"
        );
    }
}

const ACCESSIBILITY_CHECK: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push("no lang on <html>");
if (!document.title.trim()) problems.push("no <title>");
const h1 = document.querySelectorAll("h1").length;
if (h1 !== 1) problems.push(h1 + " h1 elements");
for (const field of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
  const labelled = (field.id && document.querySelector('label[for="' + field.id + '"]'))
    || field.closest("label") || field.getAttribute("aria-label");
  if (!labelled) problems.push("a field without a label: " + (field.name || field.outerHTML));
}
for (const button of document.querySelectorAll("button, a")) {
  if (!button.hidden && !button.textContent.trim() && !button.getAttribute("aria-label"))
    problems.push("a button or link without a name: " + button.outerHTML);
}
for (const image of document.querySelectorAll("img")) {
  if (!image.hasAttribute("alt")) problems.push("an image without alt: " + image.outerHTML);
}
return problems;
"#;

/// Runs axe-core on the page for the WCAG 2.0 and 2.1 A and AA rules and answers its
/// violations, one line each with the first places it found them.
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } })
  .then(result => done(result.violations.map(v =>
    v.id + " (" + v.impact + "): " + v.help + " at " +
    v.nodes.slice(0, 3).map(n => n.target.join(" ") + " [" + n.failureSummary + "]").join("; "))))
  .catch(error => done(["axe-core failed: " + error]));
"#;

/// axe-core's script (`npm install --prefix target/npm axe-core`, as CI does; or the file
/// `BOXOFFICE_AXE_JS` names), read once. Without it the house's checks run alone, said once on
/// stderr; in CI that is a failure.
fn axe_source() -> Option<String> {
    static AXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let path = std::env::var_os("BOXOFFICE_AXE_JS")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("npm/node_modules/axe-core/axe.min.js"));
        match std::fs::read_to_string(&path) {
            Ok(source) => Some(source),
            Err(error) => {
                assert!(
                    std::env::var("BOXOFFICE_CI").is_err(),
                    "CI checks pages with axe-core, not found at {}: {error}",
                    path.display()
                );
                eprintln!(
                    "axe-core not found at {} ({error}): only the basic accessibility checks run \
                     (npm install --prefix target/npm axe-core)",
                    path.display()
                );
                None
            }
        }
    })
    .clone()
}

/// The build's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// `target/browser-screenshots`, beside the build.
fn screenshots_dir() -> PathBuf {
    target_dir().join("browser-screenshots")
}
