//! The whole flow in headless Chromium: the portal on 127.0.0.1, the sandbox on localhost (two sites, as
//! Zoho and the portal are). A deep link opened signed out goes through the sign-in page and Zoho's consent to
//! the record; axe-core checks every page on the way for accessibility. Saves screenshots of the records and
//! record pages under `target/`, and the README's copies in `docs/` with `ZYLKER_UPDATE_SCREENSHOT=1`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use zylker_portal::tokens::{OAuthToken, now_millis};

use crate::helpers::{ARJUN, PRIYA, SOFIA, TestApp};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(20);
/// The desktop width the pages are checked at.
const WIDTH: u32 = 1280;

/// axe-core, as `.ci/run` installs it from the npm registry (`npm ci` in `tests/browser/`).
const AXE: &str = "tests/browser/node_modules/axe-core/axe.min.js";

/// Kills chromedriver when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

async fn start_chromedriver() -> Option<(Driver, String)> {
    if !Path::new(CHROMEDRIVER).exists() {
        if std::env::var("ZYLKER_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
            eprintln!(
                "browser test skipped: ZYLKER_SKIP_BROWSER_TESTS=1 and {CHROMEDRIVER} is missing"
            );
            return None;
        }
        panic!(
            "{CHROMEDRIVER} is missing: install chromium and chromium-driver \
             (`apt-get install -y chromium chromium-driver`), or set ZYLKER_SKIP_BROWSER_TESTS=1 to skip"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some((driver, format!("http://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start listening on port {port}");
}

/// The source of axe-core, read once.
fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(AXE);
        std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "{} cannot be read ({error}): axe-core comes from the npm registry; run \
                 `npm ci --prefix tests/browser` (as .ci/run does)",
                path.display()
            )
        })
    })
}

/// A headless Chromium at 1280 × 900, driven through chromedriver (stopped when this is dropped).
struct Chromium {
    client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// One rule axe-core found broken on a page, with the elements that break it.
#[derive(Debug, serde::Deserialize)]
struct Violation {
    id: String,
    impact: Option<String>,
    help: String,
    #[serde(rename = "helpUrl")]
    help_url: String,
    nodes: Vec<ViolationNode>,
}

#[derive(Debug, serde::Deserialize)]
struct ViolationNode {
    target: serde_json::Value,
    html: String,
    #[serde(rename = "failureSummary", default)]
    failure_summary: Option<String>,
}

impl Violation {
    /// Whether axe rates it "serious" or "critical": the ones the test fails on.
    fn is_serious(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "[{}] {}: {} ({})",
            self.impact.as_deref().unwrap_or("?"),
            self.id,
            self.help,
            self.help_url
        )?;
        for node in &self.nodes {
            writeln!(f, "    at {}: {}", node.target, node.html)?;
            if let Some(summary) = &node.failure_summary {
                for line in summary.lines() {
                    writeln!(f, "      {line}")?;
                }
            }
        }
        Ok(())
    }
}

impl Chromium {
    /// Starts chromedriver and a Chromium session; `None` when the browser test is to be skipped.
    async fn start() -> Option<Chromium> {
        let (driver, webdriver_url) = start_chromedriver().await?;
        let profile = tempfile::tempdir().expect("tempdir");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={WIDTH},900"),
                ],
            }),
        );
        // chromedriver is on loopback: plain HTTP, no TLS.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver_url)
            .await
            .expect("a Chromium session");
        Some(Chromium {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// What axe-core finds on the page shown now, every impact.
    async fn axe_violations(&self) -> Vec<Violation> {
        // Injected through WebDriver, which the pages' Content-Security-Policy does not govern; once a page.
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .expect("a script runs");
        if loaded != json!(true) {
            self.client
                .execute(axe_source(), vec![])
                .await
                .expect("axe-core loads");
        }
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   axe.run(document, { resultTypes: ["violations"] })
                      .then((results) => done({ violations: results.violations }))
                      .catch((error) => done({ error: String(error) }));"#,
                vec![],
            )
            .await
            .expect("axe runs");
        if let Some(error) = found.get("error") {
            panic!("axe-core failed: {error}");
        }
        serde_json::from_value(found["violations"].clone()).expect("axe's violations")
    }

    /// Runs axe-core on the page shown now and fails, printing them, on any "serious" or "critical"
    /// violation. `page_name` names the page in the report.
    async fn assert_accessible(&self, page_name: &str) {
        if let Err(report) = self.accessibility_report(page_name).await {
            panic!("{report}");
        }
    }

    /// What [`Chromium::assert_accessible`] checks: `Err` with the report of the page's serious and critical
    /// violations, when it has any.
    async fn accessibility_report(&self, page_name: &str) -> Result<(), String> {
        let violations = self.axe_violations().await;
        let serious: Vec<&Violation> = violations.iter().filter(|v| v.is_serious()).collect();
        let url = self.client.current_url().await.expect("url");
        if serious.is_empty() {
            eprintln!(
                "axe: {page_name} ({}): no serious or critical violation ({} minor)",
                url.path(),
                violations.len()
            );
            return Ok(());
        }
        let report: String = serious.iter().map(ToString::to_string).collect();
        Err(format!(
            "axe-core finds {} serious or critical violation(s) on the {page_name} page ({url}):\n{report}",
            serious.len()
        ))
    }

    /// Presses `key` on whatever has the keyboard focus, as a person at the keyboard does.
    async fn press(&self, key: Key) {
        let key = char::from(key);
        let keyboard = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client
            .perform_actions(keyboard)
            .await
            .expect("a key press");
    }

    /// Tabs through the page until the focused element's text is `text` (at most 20 presses), and checks that
    /// it shows where the focus is.
    async fn tab_to(&self, text: &str) {
        for _ in 0..20 {
            self.press(Key::Tab).await;
            let focused = self.client.active_element().await.expect("the focus");
            if focused.text().await.expect("its text").trim() == text {
                let outline = focused.css_value("outline-style").await.expect("outline");
                assert_eq!(
                    outline, "solid",
                    "the keyboard focus on {text:?} is visible"
                );
                return;
            }
        }
        panic!("{text:?} cannot be reached with the Tab key");
    }

    /// Answers the sandbox's consent page: picks `email` and accepts.
    async fn consent_as(&self, email: &str) {
        let accept = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("[name=\"decision\"][value=\"accept\"]"))
            .await
            .expect("the consent page");
        let consent_url = self.client.current_url().await.expect("url");
        assert_eq!(consent_url.host_str(), Some("localhost"));
        let chooser = self
            .client
            .find(Locator::Css("[name=\"email\"]"))
            .await
            .expect("the persona chooser");
        if chooser.tag_name().await.expect("tag") == "select" {
            chooser.select_by_value(email).await.expect("select");
        } else {
            self.client
                .find(Locator::Css(&format!(
                    "input[name=\"email\"][value=\"{email}\"]"
                )))
                .await
                .expect("the persona's radio button")
                .click()
                .await
                .expect("click");
        }
        accept.click().await.expect("accept");
    }

    /// Clicks the element `css` (`what`, for the failure's message).
    async fn click(&self, css: &str, what: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{what} ({css})"))
            .click()
            .await
            .expect("click");
    }

    /// Waits for the element `css` to show (`what`, for the failure's message).
    async fn wait_for(&self, css: &str, what: &str) {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{what} ({css})"));
    }

    /// Opens `url` and waits for `css` to show.
    async fn open(&self, url: &str, css: &str) {
        self.client.goto(url).await.expect("page");
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{css} on {url}"));
    }

    /// A screenshot named `name`.png under `target/`; one the README shows (`in_readme`) is written in `docs/`
    /// as well with `ZYLKER_UPDATE_SCREENSHOT=1`, so that a test run leaves the work tree clean.
    async fn save_screenshot(&self, name: &str, in_readme: bool) {
        let screenshot = self.client.screenshot().await.expect("screenshot");
        let mut targets = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR"))];
        if in_readme
            && std::env::var_os("ZYLKER_UPDATE_SCREENSHOT").is_some_and(|value| value == "1")
        {
            targets.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"));
        }
        for dir in targets {
            std::fs::create_dir_all(&dir).expect("the screenshot's folder");
            std::fs::write(dir.join(format!("{name}.png")), &screenshot).expect("write screenshot");
        }
    }
}

/// The text of the element `css`.
async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css}"))
        .text()
        .await
        .expect("its text")
}

/// The left, top, right and bottom edges of the element `css`.
async fn edges(browser: &Client, css: &str) -> (f64, f64, f64, f64) {
    let (x, y, width, height) = browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css}"))
        .rectangle()
        .await
        .expect("its rectangle");
    (x, y, x + width, y + height)
}

#[tokio::test]
async fn a_deep_link_opened_signed_out_signs_in_through_zoho_and_lands_on_the_record_every_page_accessible()
 {
    let Some(chromium) = Chromium::start().await else {
        return;
    };
    let browser = &chromium.client;
    let app = TestApp::spawn().await;
    // Two more people with a token, so the administrators' page lists several rows, and one stored by another
    // program for a colleague with a long address (the row that pushed the last column past the table's edge).
    for email in [SOFIA, ARJUN] {
        app.new_browser().login_as(email).await;
    }
    let org = app
        .stored_token_of(SOFIA)
        .await
        .and_then(|token| token.user_name)
        .and_then(|user| user.rsplit_once(':').map(|(_, org)| org.to_owned()))
        .expect("Sofia's org");
    app.insert_token(OAuthToken {
        user_name: Some(format!(
            "venkataraghavan.subramaniam.iyer.admissions.office@zylkeracademy.example:{org}"
        )),
        client_id: Some("1000.ANOTHERPROGRAM".into()),
        refresh_token: Some("1000.another-programs-refresh-token-value".into()),
        access_token: Some("1000.another-programs-access-token-value".into()),
        expiry_time: Some(now_millis() + 3_600_000),
        api_domain: Some("https://www.zohoapis.com.au".into()),
        ..OAuthToken::default()
    })
    .await;
    // A record to link to, as a colleague would send it.
    let record = {
        let colleague = app.new_browser();
        colleague.login_as(PRIYA).await;
        let (_, list) = colleague.get_text("/crm/Leads").await;
        list.split("href=\"")
            .filter_map(|part| part.split('"').next())
            .find(|link| {
                link.strip_prefix("/crm/Leads/")
                    .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            })
            .expect("a record link")
            .to_owned()
    };

    // The landing page, signed out.
    chromium.open(app.address.as_str(), "a.btn-primary").await;
    chromium.assert_accessible("landing").await;

    // The deep link, signed out: the sign-in page says why and offers the login.
    chromium.open(app.url(&record).as_str(), "h1").await;
    let sign_in = browser.current_url().await.expect("url");
    assert_eq!(sign_in.path(), "/sign-in");
    assert_eq!(
        browser
            .find(Locator::Css("h1"))
            .await
            .expect("h1")
            .text()
            .await
            .expect("text"),
        "Sign in to see this page"
    );
    chromium.assert_accessible("sign-in").await;
    chromium.save_screenshot("screenshot-sign-in", false).await;

    // Keyboard only: Tab to "Login with Zoho" (its focus shows) and press Enter.
    chromium.tab_to("Login with Zoho").await;
    chromium.press(Key::Enter).await;
    chromium.consent_as(PRIYA).await;

    // Back at the portal, signed in, on the record.
    chromium.wait_for("dl.fields", "the record page").await;
    let landed = browser.current_url().await.expect("url");
    assert_eq!(landed.host_str(), Some("127.0.0.1"));
    assert_eq!(landed.path(), record, "the login lands on the deep link");
    assert!(
        browser.find(Locator::Css(".who-name")).await.is_ok(),
        "signed in"
    );
    chromium.assert_accessible("record").await;
    // The README's picture without the one-time welcome.
    chromium.open(landed.as_str(), "dl.fields").await;
    chromium.save_screenshot("screenshot-record", true).await;

    // Edit its status from the record page: the form, then the record with the new status.
    let heading = text_of(browser, "h1").await;
    chromium
        .click("a[href$=\"/edit\"]", "the record page's Edit link")
        .await;
    chromium
        .wait_for("select[name=\"Lead_Status\"]", "the edit form")
        .await;
    chromium.assert_accessible("edit").await;
    let status = browser
        .find(Locator::Css("select[name=\"Lead_Status\"]"))
        .await
        .expect("the status");
    let was = status
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    let now = if was == "Contacted" {
        "Pre-Qualified"
    } else {
        "Contacted"
    };
    status.select_by_value(now).await.expect("a new status");
    chromium
        .click("form.form button[type=\"submit\"]", "save")
        .await;
    chromium
        .wait_for("dl.fields", "back on the record page")
        .await;
    assert_eq!(browser.current_url().await.expect("url").path(), record);
    let fields = text_of(browser, "dl.fields").await;
    assert!(
        fields.contains(now),
        "the record shows its new status {now}: {fields}"
    );

    // Search for it by its last name from the list's search box.
    chromium
        .open(app.url("/crm/Leads").as_str(), "input[name=\"q\"]")
        .await;
    let last_name = heading
        .split_whitespace()
        .last()
        .expect("a name")
        .to_owned();
    let search_box = browser
        .find(Locator::Css("input[name=\"q\"]"))
        .await
        .expect("the search box");
    search_box.send_keys(&last_name).await.expect("type");
    search_box.send_keys("\u{E007}").await.expect("Enter");
    chromium.wait_for(".search-summary", "search results").await;
    let found = browser
        .find(Locator::Css(&format!("table.records a[href=\"{record}\"]")))
        .await;
    assert!(found.is_ok(), "the search for {last_name} finds {record}");
    chromium.assert_accessible("search").await;
    chromium.save_screenshot("screenshot-search", true).await;

    // Sort the list by creation time from its heading, then the other way.
    chromium
        .open(app.url("/crm/Leads").as_str(), "th a.sort")
        .await;
    for order in ["ascending", "descending"] {
        chromium
            .click("th a.sort", "the Created heading's link")
            .await;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!("th[aria-sort=\"{order}\"]")))
            .await
            .unwrap_or_else(|_| panic!("the list sorted {order} by creation time"));
    }
    chromium.assert_accessible("sorted-list").await;

    // The list.
    chromium
        .open(app.url("/crm/Leads").as_str(), "table.records tbody tr")
        .await;
    let rows = browser
        .find_all(Locator::Css("table.records tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 20);
    chromium.assert_accessible("list").await;
    chromium.save_screenshot("screenshot-records", true).await;

    // A new lead, empty and with the field errors of an empty form.
    chromium
        .open(app.url("/crm/Leads/new").as_str(), "form.form")
        .await;
    chromium.assert_accessible("new-lead").await;
    chromium
        .click("form.form button[type=\"submit\"]", "save")
        .await;
    chromium.wait_for(".field-error", "field errors").await;
    chromium.assert_accessible("new-lead-with-errors").await;

    // The administrators' page at 1280 px: the last column's button is inside the table and the window.
    chromium
        .open(app.url("/admin/tokens").as_str(), "table.tokens tbody tr")
        .await;
    chromium.assert_accessible("admin").await;
    chromium
        .save_screenshot("screenshot-admin-tokens", false)
        .await;
    let table = edges(browser, ".table-wrap").await;
    let viewport_width = browser
        .execute("return document.documentElement.clientWidth;", vec![])
        .await
        .expect("width")
        .as_f64()
        .expect("a number");
    let buttons = browser
        .find_all(Locator::Css("table.tokens td.actions button"))
        .await
        .expect("the row buttons");
    assert_eq!(buttons.len(), 4, "a row for each of the four people");
    for button in buttons {
        assert_eq!(button.text().await.expect("text"), "Revoke and delete");
        let (x, _, width, _) = button.rectangle().await.expect("its rectangle");
        assert!(
            x >= table.0 && x + width <= table.2 && x + width <= viewport_width,
            "the button ({x}..{}) is inside the table ({}..{}) and the {viewport_width} px window",
            x + width,
            table.0,
            table.2
        );
    }
    let overflow = browser
        .execute(
            "const wrap = document.querySelector('.table-wrap'); return wrap.scrollWidth - wrap.clientWidth;",
            vec![],
        )
        .await
        .expect("overflow");
    assert_eq!(overflow, json!(0), "the table needs no sideways scrolling");

    // An error page.
    chromium
        .open(app.url("/no/such/page").as_str(), ".error-page")
        .await;
    chromium.assert_accessible("error").await;

    // Sign out.
    chromium
        .click("form[action=\"/logout\"] button", "Sign out")
        .await;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::LinkText("Login with Zoho"))
        .await
        .expect("signed out");
    assert_eq!(
        app.stored_tokens().await.len(),
        4,
        "signing out keeps the token"
    );
    // The signed-out error page too.
    chromium
        .open(app.url("/no/such/page").as_str(), ".error-page")
        .await;
    chromium.assert_accessible("error-signed-out").await;

    chromium.client.close().await.expect("close");
}

/// The check itself fails where it must: on a page with an unlabelled input and text too faint to read,
/// axe-core finds both, as critical and serious, and the report names them.
#[tokio::test]
async fn axe_flags_a_deliberately_inaccessible_page() {
    let Some(chromium) = Chromium::start().await else {
        return;
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/inaccessible.html");
    let url = url::Url::from_file_path(&fixture).expect("a file URL");
    chromium.open(url.as_str(), "input").await;

    let violations = chromium.axe_violations().await;

    let serious: Vec<&str> = violations
        .iter()
        .filter(|v| v.is_serious())
        .map(|v| v.id.as_str())
        .collect();
    for rule in ["label", "color-contrast"] {
        assert!(
            serious.contains(&rule),
            "axe flags {rule} as serious or critical; it found {serious:?}"
        );
    }
    let report = chromium
        .accessibility_report("inaccessible fixture")
        .await
        .expect_err("the check fails on the fixture");
    eprintln!("{report}");
    assert!(
        report.contains("] label:") && report.contains("] color-contrast:"),
        "the report names the rules broken: {report}"
    );
    chromium.client.close().await.expect("close");
}
