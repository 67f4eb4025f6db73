//! The sandbox's state file: tokens, the clock, created and updated records and credits outlive a restart, in
//! process and in a demo-mode `serve` restarted with the same session key; a broken file stops the start and is
//! left as it is; a file others may read is tightened to 0600.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;
use zylker_portal::cli::sandbox::{STATE_FILE_NAME, state_file_for};
use zylker_portal::sandbox::{self, SandboxConfig};
use zylker_portal::tokens::StoreSpec;

use crate::limits::{free_port, portal_binary};
use crate::support::{PRIYA, Sandbox, config};

fn kept_in(path: &Path) -> SandboxConfig {
    SandboxConfig {
        state_file: Some(path.to_owned()),
        ..config(true)
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("the state file")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_restarted_sandbox_keeps_its_tokens_its_clock_and_the_records_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let first = Sandbox::start_with(kept_in(&path)).await;
    let priya = first.login(PRIYA).await;
    let (status, created) = first
        .create(
            &priya.access,
            "Leads",
            json!({"data": [{"Last_Name": "Persisted"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let lead = created["data"][0]["details"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    first
        .control("advance-clock", json!({"seconds": 1800}))
        .await;
    first.running.stop().await;
    assert_eq!(mode_of(&path), 0o600);

    let second = Sandbox::start_with(kept_in(&path)).await;

    assert_eq!(
        second.crm(&priya.access, "org").await.status(),
        StatusCode::OK,
        "the access token outlived the restart"
    );
    let (status, record) = second
        .crm_json(&priya.access, &format!("Leads/{lead}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["data"][0]["Last_Name"], "Persisted");
    // Half an hour had passed before the restart: 31 more minutes end the one-hour token.
    second
        .control("advance-clock", json!({"seconds": 1860}))
        .await;
    let (status, _) = second.crm_json(&priya.access, "org").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the clock outlived it too"
    );
    assert!(
        second.refresh(&priya.refresh).await["access_token"].is_string(),
        "and the refresh token"
    );
}

#[tokio::test]
async fn a_restarted_sandbox_keeps_the_updates_of_seeded_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let first = Sandbox::start_with(kept_in(&path)).await;
    let priya = first.login(PRIYA).await;
    let (_, page) = first
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=200&page=2")
        .await;
    let lead = page["data"][0]["id"]
        .as_str()
        .expect("a seeded lead")
        .to_owned();
    let (untouched_status, untouched_before) = first
        .crm_json(
            &priya.access,
            &format!("Leads/{}", page["data"][1]["id"].as_str().expect("another")),
        )
        .await;
    assert_eq!(untouched_status, StatusCode::OK);
    let answer = first
        .http
        .put(first.url(&format!("/crm/v8/Leads/{lead}")))
        .header("Authorization", format!("Zoho-oauthtoken {}", priya.access))
        .json(&json!({"data": [{"Lead_Status": "Contacted", "Phone": "+91 90000 55555"}]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status(), StatusCode::OK);
    let (_, updated) = first
        .crm_json(&priya.access, &format!("Leads/{lead}"))
        .await;
    first.running.stop().await;

    let second = Sandbox::start_with(kept_in(&path)).await;

    let (status, record) = second
        .crm_json(&priya.access, &format!("Leads/{lead}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record, updated, "the update outlived the restart");
    assert_eq!(record["data"][0]["Phone"], "+91 90000 55555");
    let (_, untouched_after) = second
        .crm_json(
            &priya.access,
            &format!("Leads/{}", page["data"][1]["id"].as_str().expect("another")),
        )
        .await;
    assert_eq!(
        untouched_after, untouched_before,
        "the other seeded leads as seeded"
    );
}

#[tokio::test]
async fn without_a_state_file_a_restart_forgets() {
    let first = Sandbox::start().await;
    let priya = first.login(PRIYA).await;
    first.running.stop().await;

    let second = Sandbox::start().await;

    let (status, _) = second.crm_json(&priya.access, "org").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Starts a sandbox on `path` in process; the error it gives, if any.
async fn start_error(path: &Path) -> Option<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    match sandbox::spawn(listener, kept_in(path)) {
        Ok(running) => {
            running.stop().await;
            None
        }
        Err(error) => Some(error.to_string()),
    }
}

#[tokio::test]
async fn a_state_file_that_cannot_be_used_stops_the_start_and_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let good = Sandbox::start_with(kept_in(&path)).await;
    good.login(PRIYA).await;
    good.running.stop().await;
    let written: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");

    let mut unknown_persona = written.clone();
    let refresh = unknown_persona["tokens"]["refresh"]
        .as_object_mut()
        .expect("refresh tokens")
        .values_mut()
        .next()
        .expect("one");
    refresh["persona"] = json!(99);
    let mut later_format = written.clone();
    later_format["format"] = json!(2);
    for (case, contents) in [
        (
            "not JSON",
            r#"{"format":1,"tokens":"1000.abcdef.secret"#.to_owned(),
        ),
        ("not a state file", r#"{"1000.abcdef.secret":1}"#.to_owned()),
        ("an unknown persona", unknown_persona.to_string()),
        ("a later format", later_format.to_string()),
    ] {
        std::fs::write(&path, &contents).expect("write");

        let error = start_error(&path)
            .await
            .unwrap_or_else(|| panic!("{case}: accepted"));

        assert!(
            error.contains(&path.display().to_string()) && error.contains("move it aside"),
            "{case}: {error}"
        );
        assert!(
            !error.contains("1000."),
            "{case}: the error quotes the file: {error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            contents,
            "{case}: the file was changed"
        );
    }
    std::fs::write(&path, written.to_string()).expect("write");
    assert_eq!(start_error(&path).await, None, "the file as written starts");
}

#[test]
fn the_demo_keeps_its_sandbox_state_beside_a_token_store_file_unless_told() {
    let sqlite = StoreSpec::SqliteFile(PathBuf::from("/srv/portal/zohooauth.db"));
    let csv = StoreSpec::File(PathBuf::from("tokens.csv"));

    assert_eq!(
        state_file_for(None, &sqlite),
        Some(PathBuf::from("/srv/portal").join(STATE_FILE_NAME))
    );
    assert_eq!(
        state_file_for(None, &csv),
        Some(PathBuf::from(STATE_FILE_NAME))
    );
    assert_eq!(state_file_for(None, &StoreSpec::SqliteMemory), None);
    assert_eq!(state_file_for(None, &StoreSpec::List), None);
    assert_eq!(state_file_for(Some("none"), &sqlite), None);
    assert_eq!(
        state_file_for(Some("/var/lib/z.json"), &StoreSpec::List),
        Some(PathBuf::from("/var/lib/z.json"))
    );
}

/// A demo-mode `zylker-portal serve` in `dir` on fixed ports, so that a restart is the same portal and sandbox.
struct DemoServe {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    public_url: Url,
    sandbox_url: String,
    child: Option<Child>,
}

impl DemoServe {
    fn new(dir: &Path) -> DemoServe {
        let (port, sandbox_port) = (free_port(), free_port());
        let public_url = format!("http://127.0.0.1:{port}");
        DemoServe {
            dir: dir.to_owned(),
            env: vec![
                ("PORTAL_BIND", format!("127.0.0.1:{port}")),
                ("PORTAL_PUBLIC_URL", public_url.clone()),
                ("SANDBOX_BIND", format!("127.0.0.1:{sandbox_port}")),
                (
                    "TOKEN_STORE",
                    format!("sqlite:{}", dir.join("zohooauth.db").display()),
                ),
                // 64 bytes, hex: the same key at every start.
                ("SESSION_KEY", "5e".repeat(64)),
            ],
            public_url: Url::parse(&public_url).expect("a URL"),
            sandbox_url: format!("http://127.0.0.1:{sandbox_port}"),
            child: None,
        }
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join("serve-stderr.txt")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn command(&self) -> Command {
        let mut command = portal_binary();
        command
            .arg("serve")
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.stderr_path()).expect("a log file"))
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    async fn start(&mut self) {
        let mut child = self.command().spawn().expect("the binary starts");
        let health = self.public_url.join("/healthz").expect("a URL");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                panic!("serve exited with {status}: {}", self.stderr());
            }
            if let Ok(answer) = reqwest::get(health.clone()).await
                && answer.status() == StatusCode::OK
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    /// Ends the process the hard way: nothing it would do at a clean stop happens.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn sandbox_counters(&self) -> Value {
        reqwest::get(format!("{}/_sandbox/counters", self.sandbox_url))
            .await
            .expect("the sandbox")
            .json()
            .await
            .expect("JSON counters")
    }

    /// Logs in as `email` as a browser does (the portal's `/login`, the sandbox's consent form, the
    /// callback); returns the cookie-keeping client.
    async fn login_as(&self, email: &str) -> reqwest::Client {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let login = browser
            .get(self.public_url.join("/login").expect("a URL"))
            .send()
            .await
            .expect("the portal");
        let consent = location_of(&login);
        let mut form: Vec<(String, String)> = consent.query_pairs().into_owned().collect();
        form.push(("email".into(), email.into()));
        form.push(("decision".into(), "accept".into()));
        let decided = browser
            .post(consent.join("/oauth/v2/auth").expect("a URL"))
            .form(&form)
            .send()
            .await
            .expect("the sandbox");
        let callback = browser
            .get(location_of(&decided))
            .send()
            .await
            .expect("the portal");
        assert_eq!(callback.status(), StatusCode::SEE_OTHER, "the login ends");
        browser
    }

    async fn leads_page(&self, browser: &reqwest::Client) -> (StatusCode, String) {
        let response = browser
            .get(self.public_url.join("/crm/Leads").expect("a URL"))
            .send()
            .await
            .expect("the portal");
        let status = response.status();
        (status, response.text().await.expect("a page"))
    }
}

impl Drop for DemoServe {
    fn drop(&mut self) {
        self.kill();
    }
}

fn location_of(response: &reqwest::Response) -> Url {
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("a Location header on a {}", response.status()));
    response.url().join(location).expect("Location is a URL")
}

#[tokio::test]
async fn a_demo_restarted_with_the_same_session_key_shows_the_signed_in_browser_its_leads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join(STATE_FILE_NAME);
    let mut demo = DemoServe::new(dir.path());
    demo.start().await;
    let browser = demo.login_as(PRIYA).await;
    assert_eq!(demo.leads_page(&browser).await.0, StatusCode::OK);
    demo.kill();
    assert_eq!(mode_of(&state_file), 0o600, "the state file is the owner's");
    std::fs::set_permissions(&state_file, std::fs::Permissions::from_mode(0o644))
        .expect("loosen it");

    demo.start().await;
    let (status, page) = demo.leads_page(&browser).await;

    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<table class=\"records\""), "{page}");
    assert!(page.contains("Priya Raman"), "still signed in: {page}");
    let counters = demo.sandbox_counters().await;
    assert_eq!(
        (&counters["code_exchanges"], &counters["refreshes"]),
        (&json!(0), &json!(0)),
        "no new authorization at the sandbox: {counters}"
    );
    assert_eq!(
        mode_of(&state_file),
        0o600,
        "a world-readable state file is tightened at start"
    );
}

#[tokio::test]
async fn a_demo_whose_sandbox_state_file_is_broken_does_not_start_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join(STATE_FILE_NAME);
    std::fs::write(&state_file, "not the sandbox's").expect("write");
    let demo = DemoServe::new(dir.path());

    let status = demo.command().status().expect("the binary runs");

    assert!(!status.success(), "a broken state file was accepted");
    let stderr = demo.stderr();
    assert!(
        stderr.contains(STATE_FILE_NAME) && stderr.contains("move it aside"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&state_file).expect("read"),
        "not the sandbox's"
    );
}
