//! The whole flow in headless Chromium: the portal on 127.0.0.1, the sandbox on localhost (two sites, as
//! Zoho and the portal are). Saves a screenshot of the records page under `target/`, and the README's copy in
//! `docs/` with `ZYLKER_UPDATE_SCREENSHOT=1`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::{PRIYA, TestApp};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(20);

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

#[tokio::test]
async fn browser_logs_in_through_zoho_sees_leads_opens_a_record_and_signs_out() {
    let Some((_driver, webdriver_url)) = start_chromedriver().await else {
        return;
    };
    let app = TestApp::spawn().await;
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
                "--window-size=1280,900",
            ],
        }),
    );
    // chromedriver is on loopback: plain HTTP, no TLS.
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&webdriver_url)
        .await
        .expect("a Chromium session");

    // Extra screenshots for whoever works on the look: ZYLKER_SCREENSHOTS=/some/dir.
    let shots = std::env::var_os("ZYLKER_SCREENSHOTS").map(std::path::PathBuf::from);
    let snap = |name: &'static str| {
        let browser = &browser;
        let shots = shots.clone();
        async move {
            if let Some(dir) = shots {
                let png = browser.screenshot().await.expect("screenshot");
                std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
            }
        }
    };

    // The landing page: Login with Zoho.
    browser.goto(app.address.as_str()).await.expect("portal");
    snap("landing").await;
    browser
        .find(Locator::LinkText("Login with Zoho"))
        .await
        .expect("the login button")
        .click()
        .await
        .expect("click");

    // Zoho's consent page on the other site: pick Priya and accept.
    let accept = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[name=\"decision\"][value=\"accept\"]"))
        .await
        .expect("the consent page");
    let consent_url = browser.current_url().await.expect("url");
    assert_eq!(consent_url.host_str(), Some("localhost"));
    let chooser = browser
        .find(Locator::Css("[name=\"email\"]"))
        .await
        .expect("the persona chooser");
    if chooser.tag_name().await.expect("tag") == "select" {
        chooser.select_by_value(PRIYA).await.expect("select Priya");
    } else {
        browser
            .find(Locator::Css(&format!(
                "input[name=\"email\"][value=\"{PRIYA}\"]"
            )))
            .await
            .expect("Priya's radio button")
            .click()
            .await
            .expect("click");
    }
    snap("consent").await;
    accept.click().await.expect("accept");

    // Back at the portal, signed in: open Leads.
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(".who-name"))
        .await
        .expect("signed in");
    assert_eq!(
        browser.current_url().await.expect("url").host_str(),
        Some("127.0.0.1")
    );
    snap("home").await;
    browser
        .find(Locator::Css("nav.modules a[href=\"/crm/Leads\"]"))
        .await
        .expect("Leads in the navigation")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("table.records tbody tr"))
        .await
        .expect("the Leads table");
    let rows = browser
        .find_all(Locator::Css("table.records tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 20);
    // Under target/, so that a test run leaves the work tree clean; the README's picture in docs/ changes only
    // when asked: ZYLKER_UPDATE_SCREENSHOT=1.
    let screenshot = browser.screenshot().await.expect("screenshot");
    let mut targets = vec![Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf()];
    if std::env::var_os("ZYLKER_UPDATE_SCREENSHOT").is_some_and(|value| value == "1") {
        targets.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"));
    }
    for dir in targets {
        std::fs::create_dir_all(&dir).expect("the screenshot's folder");
        std::fs::write(dir.join("screenshot-records.png"), &screenshot).expect("write screenshot");
    }

    // One record.
    let first = browser
        .find(Locator::Css("table.records tbody tr td a"))
        .await
        .expect("a record link");
    let name = first.text().await.expect("name");
    first.click().await.expect("click");
    let heading = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("dl.fields"))
        .await
        .and(browser.find(Locator::Css("h1")).await)
        .expect("the record page");
    assert_eq!(heading.text().await.expect("heading"), name);
    snap("record").await;
    if shots.is_some() {
        for (path, name) in [
            ("crm/Leads/new", "new-lead"),
            ("crm/Contacts", "contacts"),
            ("admin/tokens", "admin-tokens"),
            ("no/such/page", "not-found"),
        ] {
            browser.goto(app.url(path).as_str()).await.expect("page");
            snap(name).await;
        }
        browser
            .goto(app.url("crm/Leads/new").as_str())
            .await
            .expect("form");
        browser
            .find(Locator::Css("form.form button[type=\"submit\"]"))
            .await
            .expect("save")
            .click()
            .await
            .expect("click");
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(".field-error"))
            .await
            .expect("field errors");
        snap("new-lead-errors").await;
        browser.set_window_size(390, 844).await.expect("phone size");
        browser
            .goto(app.url("crm/Leads").as_str())
            .await
            .expect("leads");
        snap("leads-phone").await;
        browser
            .set_window_size(1280, 900)
            .await
            .expect("desktop size");
    }

    // Sign out.
    browser
        .find(Locator::Css("form[action=\"/logout\"] button"))
        .await
        .expect("Sign out")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::LinkText("Login with Zoho"))
        .await
        .expect("signed out");
    assert_eq!(
        app.stored_tokens().await.len(),
        1,
        "signing out keeps the token"
    );

    browser.close().await.expect("close");
}
