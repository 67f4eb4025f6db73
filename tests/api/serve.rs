//! The built binary, as a newcomer or a deployment script runs it: the `serve` interface of the README (flags,
//! environment, demo mode, refusals), the standalone `zylker-portal sandbox` and `zylker-portal session-key`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use url::Url;

use crate::helpers::PRIYA;

/// Every variable the binary reads; each child starts without them, so the developer's shell cannot leak in.
pub(crate) const CONFIG_VARIABLES: &[&str] = &[
    "PORTAL_BIND",
    "PORTAL_PUBLIC_URL",
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_ACCOUNTS_URL",
    "ZOHO_SCOPE",
    "TOKEN_STORE",
    "SESSION_KEY",
    "TOKEN_ENCRYPTION_KEYS",
    "TOKEN_REFRESH_LEEWAY_SECS",
    "SANDBOX_BIND",
    "SANDBOX_PUBLIC_URL",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_REDIRECT_URIS",
    "SANDBOX_ACCESS_TTL_SECS",
    "SANDBOX_WORKERS",
    "ZOHO_CRM_CONCURRENCY",
    "ZOHO_CRM_QUEUE_TIMEOUT_MS",
    "METRICS_BIND",
    "SANDBOX_CRM_LATENCY_MS",
    "SANDBOX_EDITION",
    "SANDBOX_CRM_CONCURRENCY",
    "SANDBOX_CRM_CREDITS",
    "SANDBOX_STATE",
];

/// How long a child may take to start listening. A readiness wait, not a measurement: a slow machine only
/// waits longer.
const STARTUP_WAIT: Duration = Duration::from_secs(60);

/// A port that was free a moment ago (the child binds it by number, as a deployment would).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// The `zylker-portal` binary with a clean configuration environment, its output going to files in `dir`.
fn portal_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zylker-portal"));
    command.args(args).current_dir(dir).stdin(Stdio::null());
    for variable in CONFIG_VARIABLES {
        command.env_remove(variable);
    }
    command.env("RUST_LOG", "info");
    for (name, value) in env {
        command.env(name, value);
    }
    let stdout = File::create(dir.join("stdout.txt")).expect("stdout file");
    let stderr = File::create(dir.join("stderr.txt")).expect("stderr file");
    command.stdout(stdout).stderr(stderr);
    command
}

/// A running child that is killed when the test ends, however it ends.
pub(crate) struct RunningBinary {
    pub(crate) child: Child,
    dir: PathBuf,
}

impl RunningBinary {
    pub(crate) fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> RunningBinary {
        let child = portal_command(dir, args, env)
            .spawn()
            .expect("the zylker-portal binary starts");
        RunningBinary {
            child,
            dir: dir.to_owned(),
        }
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.txt")).unwrap_or_default()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// Waits until stdout and stderr together hold `expected` (a banner is printed around the time the server
    /// starts answering, so reading it right after the first answer could race); returns stdout then stderr.
    pub(crate) async fn wait_for_output(&mut self, expected: &str) -> (String, String) {
        let started = Instant::now();
        loop {
            let (stdout, stderr) = (self.stdout(), self.stderr());
            if stdout.contains(expected) || stderr.contains(expected) {
                return (stdout, stderr);
            }
            assert!(
                started.elapsed() < STARTUP_WAIT && self.child.try_wait().ok().flatten().is_none(),
                "the binary never printed {expected:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `url` until it answers 200; panics with the child's output if the child exits first.
    pub(crate) async fn wait_until_ready(&mut self, url: &Url) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!(
                    "the binary exited with {status} before serving {url}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            if let Ok(response) = client.get(url.clone()).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                started.elapsed() < STARTUP_WAIT,
                "{url} never answered\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to its end (for the configurations it must refuse): its exit status, stdout and stderr.
pub(crate) fn run_to_exit(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    let mut running = RunningBinary::start(dir, args, env);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = running.child.try_wait().expect("child status") {
            break status;
        }
        assert!(
            started.elapsed() < STARTUP_WAIT,
            "the binary kept running instead of refusing its configuration\nstderr:\n{}",
            running.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, running.stdout(), running.stderr())
}

/// A demo-mode portal on free loopback ports, configured only through the environment.
pub(crate) struct DemoPortal {
    pub(crate) running: RunningBinary,
    pub(crate) public_url: Url,
    _dir: tempfile::TempDir,
}

impl DemoPortal {
    pub(crate) async fn start(args: &[&str]) -> DemoPortal {
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        DemoPortal::start_with(
            args,
            &[
                ("PORTAL_BIND", &format!("127.0.0.1:{port}")),
                ("PORTAL_PUBLIC_URL", &public_url),
            ],
            &public_url,
        )
        .await
    }

    /// Starts the binary with `args` and `env`, the sandbox on a free port and the store in a fresh folder;
    /// `public_url` is where the test reaches the portal (where `args` and `env` make it listen).
    pub(crate) async fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        public_url: &str,
    ) -> DemoPortal {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox_bind = format!("127.0.0.1:{}", free_port());
        let store = format!("sqlite:{}", dir.path().join("t.db").display());
        let mut variables = vec![
            ("SANDBOX_BIND", sandbox_bind.as_str()),
            ("TOKEN_STORE", &store),
        ];
        variables.extend_from_slice(env);
        let mut running = RunningBinary::start(dir.path(), args, &variables);
        let public_url = Url::parse(public_url).expect("public URL");
        running
            .wait_until_ready(&public_url.join("/healthz").expect("url"))
            .await;
        DemoPortal {
            running,
            public_url,
            _dir: dir,
        }
    }

    /// Logs in as `email` the way a browser does: `/login`, the sandbox's consent form, the callback; returns
    /// the cookie-keeping client, now signed in.
    pub(crate) async fn login_as(&self, email: &str) -> reqwest::Client {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut login = self.public_url.join("/login").expect("url");
        // A second round only when the portal asks Zoho again with prompt=consent.
        for _ in 0..2 {
            let response = browser.get(login.clone()).send().await.expect("portal");
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "/login redirects");
            let auth_url = location_of(&response);
            assert_ne!(
                auth_url.origin(),
                self.public_url.origin(),
                "the consent page is the sandbox's"
            );
            assert_eq!(auth_url.path(), "/oauth/v2/auth");

            let mut form: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
            form.push(("email".into(), email.into()));
            form.push(("decision".into(), "accept".into()));
            let answer = browser
                .post(auth_url.join("/oauth/v2/auth").expect("url"))
                .form(&form)
                .send()
                .await
                .expect("sandbox");
            assert_eq!(answer.status(), StatusCode::FOUND, "consent redirects");
            let callback = location_of(&answer);
            assert_eq!(
                callback.as_str().split('?').next(),
                Some(
                    self.public_url
                        .join("/oauth/callback")
                        .expect("url")
                        .as_str()
                ),
                "the sandbox sends the browser to {{public-url}}/oauth/callback"
            );

            let response = browser.get(callback).send().await.expect("portal");
            assert_eq!(
                response.status(),
                StatusCode::SEE_OTHER,
                "the callback succeeds: {}",
                response.text().await.unwrap_or_default()
            );
            let next = location_of(&response);
            if next.path() != "/login" {
                return browser;
            }
            login = next;
        }
        panic!("the login did not finish in two rounds");
    }
}

pub(crate) fn location_of(response: &reqwest::Response) -> Url {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location header");
    response.url().join(location).expect("Location is a URL")
}

/// Logs in as Priya through the running binary and checks the Leads page.
pub(crate) async fn assert_full_login_reaches_the_leads(portal: &DemoPortal) {
    let browser = portal.login_as(PRIYA).await;
    let response = browser
        .get(portal.public_url.join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("portal");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.expect("page");
    assert!(body.contains("<h1>Leads</h1>"), "{body}");
    assert!(body.contains("<table class=\"records\""), "{body}");
    assert!(body.contains("Priya Raman"), "{body}");
}

#[tokio::test]
async fn serve_without_zoho_credentials_runs_the_demo_on_the_embedded_sandbox() {
    let mut portal = DemoPortal::start(&["serve"]).await;

    assert_full_login_reaches_the_leads(&portal).await;

    let (stdout, _) = portal.running.wait_for_output("Set ZOHO_CLIENT_ID").await;
    assert!(stdout.contains("demo mode"), "{stdout}");
    // The banner comes from the sandbox's persona table: every persona, with its profile.
    for email in [
        "priya.raman@zylker.com",
        "arjun.mehta@zylker.com",
        "sofia.khan@zylker.com",
        "liam.o'brien@zylker.com",
    ] {
        assert!(stdout.contains(email), "{stdout}");
    }
    assert!(stdout.contains("profile Administrator"), "{stdout}");
    let stderr = portal.running.stderr();
    assert!(
        stderr.contains("demo mode") && stderr.contains("embedded Zoho sandbox"),
        "one log line says demo mode: {stderr}"
    );
    assert!(
        stderr.contains("no SESSION_KEY configured") && stderr.contains("restarts"),
        "one log line says sessions end at restart: {stderr}"
    );
    assert!(
        stderr.contains("`zylker-portal session-key` prints a key to set"),
        "the same line says how to get a key: {stderr}"
    );
}

#[tokio::test]
async fn no_subcommand_serves_as_serve_does() {
    let portal = DemoPortal::start(&[]).await;

    assert_full_login_reaches_the_leads(&portal).await;
}

#[tokio::test]
async fn serve_keeps_sign_ins_in_the_sqlite_store_file() {
    let portal = DemoPortal::start(&["serve"]).await;
    let browser = portal.login_as(PRIYA).await;
    let count = |table: &str| -> i64 {
        let database = rusqlite::Connection::open(portal._dir.path().join("t.db")).expect("open");
        database
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("the table is in the store's file")
    };
    assert_eq!(count("portal_sign_ins"), 1, "the sign-in is a record");
    let landing = browser
        .get(portal.public_url.clone())
        .send()
        .await
        .expect("portal")
        .text()
        .await
        .expect("page");
    let csrf =
        crate::helpers::csrf_from(&landing).expect("a signed-in page carries the CSRF token");

    let response = browser
        .post(portal.public_url.join("/logout").expect("url"))
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .expect("portal");

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        (count("portal_sign_ins"), count("oauthtoken")),
        (0, 1),
        "the sign-in is gone; the token stays"
    );
}

/// The HTTP worker threads of a running process (actix-web names them `actix-server worker N`).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with("actix-server w"))
        .count()
}

#[tokio::test]
async fn workers_sets_the_number_of_http_worker_threads() {
    // Demo mode: the embedded sandbox has workers of its own, the same in both runs.
    let one = DemoPortal::start(&["serve", "--workers", "1"]).await;
    let three = DemoPortal::start(&["serve", "--workers", "3"]).await;

    assert_full_login_reaches_the_leads(&one).await;
    assert_eq!(
        worker_threads(three.running.child.id()) - worker_threads(one.running.child.id()),
        2
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bind = format!("127.0.0.1:{}", free_port());
    let (status, _, stderr) = run_to_exit(
        dir.path(),
        &["serve"],
        &[("PORTAL_WORKERS", "0"), ("PORTAL_BIND", &bind)],
    );
    assert!(!status.success(), "no workers was accepted");
    assert!(stderr.contains("--workers"), "{stderr}");
}

#[test]
fn only_one_of_client_id_and_secret_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("t.db").display());
    // An empty value counts as not set (`ZOHO_CLIENT_SECRET=` in a unit file), never as a value.
    for given in [
        vec![("ZOHO_CLIENT_ID", "1000.ONLYTHEID")],
        vec![("ZOHO_CLIENT_SECRET", "only-the-secret")],
        vec![
            ("ZOHO_CLIENT_ID", "1000.ONLYTHEID"),
            ("ZOHO_CLIENT_SECRET", ""),
        ],
        vec![
            ("ZOHO_CLIENT_ID", ""),
            ("ZOHO_CLIENT_SECRET", "only-the-secret"),
        ],
    ] {
        let bind = format!("127.0.0.1:{}", free_port());
        let mut env = given.clone();
        env.extend([("PORTAL_BIND", bind.as_str()), ("TOKEN_STORE", &store)]);
        let (status, _, stderr) = run_to_exit(dir.path(), &["serve"], &env);

        assert!(!status.success(), "{given:?} was accepted");
        assert!(
            stderr.contains("ZOHO_CLIENT_ID")
                && stderr.contains("ZOHO_CLIENT_SECRET")
                && stderr.contains("an empty value counts as not set"),
            "{stderr}"
        );
        assert!(!stderr.contains("only-the-secret"), "{stderr}");
    }
}

#[test]
fn a_session_key_shorter_than_64_bytes_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("t.db").display());
    // 63 bytes, hex.
    let short_key = "c0ffee".repeat(21);
    let bind = format!("127.0.0.1:{}", free_port());
    let sandbox_bind = format!("127.0.0.1:{}", free_port());

    let (status, stdout, stderr) = run_to_exit(
        dir.path(),
        &["serve"],
        &[
            ("SESSION_KEY", &short_key),
            ("PORTAL_BIND", &bind),
            ("SANDBOX_BIND", &sandbox_bind),
            ("TOKEN_STORE", &store),
        ],
    );

    assert!(!status.success());
    assert!(
        stderr.contains("SESSION_KEY") && stderr.contains("64 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("decodes to 63 bytes"),
        "the length counts decoded bytes, not the 126 characters given: {stderr}"
    );
    assert!(stderr.contains("zylker-portal session-key"), "{stderr}");
    assert!(!stderr.contains("c0ffee"), "{stderr}");
    assert!(!stdout.contains("c0ffee"), "{stdout}");
}

#[test]
fn a_store_that_cannot_be_opened_is_refused_naming_it_as_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = "sqlite:/nonexistent-folder/x.db";
    assert!(
        !Path::new("/nonexistent-folder").exists(),
        "the folder is missing"
    );
    let bind = format!("127.0.0.1:{}", free_port());
    let sandbox_bind = format!("127.0.0.1:{}", free_port());

    let (status, _, stderr) = run_to_exit(
        dir.path(),
        &[
            "serve",
            "--store",
            spec,
            "--bind",
            &bind,
            "--sandbox-bind",
            &sandbox_bind,
        ],
        &[],
    );

    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains(&format!("cannot open the token store {spec}")),
        "the store is named as `tokens` names it, in the form it was given: {stderr}"
    );
    assert!(!stderr.contains("SqliteFile"), "{stderr}");
}

#[test]
fn session_key_command_prints_one_fresh_hex_key_that_the_portal_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut keys = Vec::new();
    for _ in 0..2 {
        let (status, stdout, stderr) = run_to_exit(dir.path(), &["session-key"], &[]);

        assert!(status.success(), "{status}\nstderr:\n{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "exactly one line: {stdout:?}");
        let key = lines[0];
        assert_eq!(stdout, format!("{key}\n"), "nothing else on stdout");
        assert_eq!(key.len(), 128, "64 bytes, hex: {key:?}");
        assert!(
            key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "lowercase hex: {key:?}"
        );
        let parsed = key.parse::<zylker_portal::app::SessionKey>();
        assert!(parsed.is_ok(), "the portal refuses it: {parsed:?}");
        assert!(!stderr.contains(key), "the key reached the log: {stderr}");
        keys.push(key.to_owned());
    }
    assert_ne!(keys[0], keys[1], "each run prints a fresh key");
}

#[tokio::test]
async fn sandbox_command_serves_the_consent_page_and_prints_the_demo_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bind = format!("127.0.0.1:{}", free_port());
    let mut sandbox = RunningBinary::start(dir.path(), &["sandbox", "--bind", &bind], &[]);
    let sandbox_url = Url::parse(&format!("http://{bind}")).expect("url");
    let mut consent = sandbox_url.join("/oauth/v2/auth").expect("url");
    consent
        .query_pairs_mut()
        .append_pair("client_id", zylker_portal::sandbox::DEMO_CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", zylker_portal::sandbox::DEMO_REDIRECT_URI)
        .append_pair("scope", "ZohoCRM.modules.ALL")
        .append_pair("state", "s");

    sandbox.wait_until_ready(&consent).await;
    let page = reqwest::get(consent.clone())
        .await
        .expect("sandbox")
        .text()
        .await
        .expect("page");

    assert!(
        page.contains("<form method=\"post\" action=\"/oauth/v2/auth\""),
        "{page}"
    );
    assert!(page.contains(PRIYA), "{page}");
    let (stdout, _) = sandbox.wait_for_output("Press Ctrl-C").await;
    assert!(
        stdout.contains(zylker_portal::sandbox::DEMO_CLIENT_ID),
        "{stdout}"
    );
    assert!(
        stdout.contains(zylker_portal::sandbox::DEMO_CLIENT_SECRET),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("http://{bind}")), "{stdout}");
    let counters = reqwest::get(format!("http://{bind}/_sandbox/counters"))
        .await
        .expect("sandbox");
    assert_eq!(
        counters.status(),
        200,
        "the demo sandbox has its control surface"
    );
}

#[tokio::test]
async fn sandbox_command_reads_its_flags_from_sandbox_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bind = format!("127.0.0.1:{}", free_port());
    let public_url = format!(
        "http://localhost:{}",
        bind.rsplit(':').next().expect("port")
    );
    let mut sandbox = RunningBinary::start(
        dir.path(),
        &["sandbox"],
        &[
            ("SANDBOX_BIND", &bind),
            ("SANDBOX_PUBLIC_URL", &public_url),
            ("SANDBOX_CLIENT_ID", "1000.FROMTHEENV"),
            ("SANDBOX_CLIENT_SECRET", "env-secret"),
            (
                "SANDBOX_REDIRECT_URIS",
                "http://127.0.0.1:9999/oauth/callback http://127.0.0.1:9998/cb",
            ),
        ],
    );
    let mut consent = Url::parse(&format!("http://{bind}/oauth/v2/auth")).expect("url");
    consent
        .query_pairs_mut()
        .append_pair("client_id", "1000.FROMTHEENV")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", "http://127.0.0.1:9998/cb")
        .append_pair("scope", "ZohoCRM.modules.ALL");

    sandbox.wait_until_ready(&consent).await;

    let (stdout, _) = sandbox.wait_for_output("Press Ctrl-C").await;
    assert!(stdout.contains(&public_url), "{stdout}");
    assert!(stdout.contains("1000.FROMTHEENV"), "{stdout}");
    assert!(
        stdout.contains("http://127.0.0.1:9999/oauth/callback"),
        "{stdout}"
    );
    assert!(!stdout.contains("env-secret"), "{stdout}");
    let control = reqwest::Client::new()
        .post(format!("http://{bind}/_sandbox/revoke-refresh-tokens"))
        .header(zylker_portal::sandbox::CONTROL_HEADER, "1")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("sandbox");
    assert_eq!(
        control.status(),
        404,
        "a sandbox with a client of its own keeps the control surface off"
    );
}

/// The files in `dir` that git would offer to add under the repository's `.gitignore` (copied into `dir`, a
/// fresh repository), leaving out the test's own: the `.gitignore` and the child's captured output.
fn files_gitignore_misses(dir: &Path) -> Vec<String> {
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(dir)
        .output()
        .expect("git status runs");
    assert!(status.status.success(), "git status: {status:?}");
    String::from_utf8_lossy(&status.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("?? "))
        .filter(|name| ![".gitignore", "stdout.txt", "stderr.txt"].contains(name))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn gitignore_covers_every_file_the_demo_writes_in_its_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let init = Command::new("git")
        .args(["init", "--quiet"])
        .current_dir(dir.path())
        .status()
        .expect("git init runs");
    assert!(init.success());
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitignore"),
        dir.path().join(".gitignore"),
    )
    .expect("the repository's .gitignore");
    // The demo as `cargo run --release` runs it: the default store and sandbox state, in the working folder.
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let env = [
        ("PORTAL_BIND", format!("127.0.0.1:{port}")),
        ("PORTAL_PUBLIC_URL", public_url.clone()),
        ("SANDBOX_BIND", format!("127.0.0.1:{}", free_port())),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut running = RunningBinary::start(dir.path(), &["serve"], &env);
    let public_url = Url::parse(&public_url).expect("url");
    running
        .wait_until_ready(&public_url.join("/healthz").expect("url"))
        .await;
    let portal = DemoPortal {
        running,
        public_url,
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    portal.login_as(PRIYA).await;
    let written = ["zohooauth.db", "zylker-sandbox.json"];
    let started = Instant::now();
    while !written.iter().all(|name| dir.path().join(name).exists()) {
        assert!(
            started.elapsed() < STARTUP_WAIT,
            "the demo wrote {written:?} in its folder"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let while_running = files_gitignore_misses(dir.path());
    drop(portal);
    let after_a_kill = files_gitignore_misses(dir.path());

    assert!(
        while_running.is_empty() && after_a_kill.is_empty(),
        ".gitignore misses what the demo wrote: {while_running:?} while it ran, {after_a_kill:?} after a kill"
    );
}

#[test]
fn a_store_password_never_reaches_the_output_whatever_it_contains() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Refused as malformed (the raw `/`, `#`, `?` end the URL's authority early), and, percent-encoded, a spec
    // that parses but whose server is not there (port 1).
    for spec in [
        "postgres://portal:Se/Cr#Et?x@127.0.0.1:1/zohooauth",
        "mysql://portal:12#SeCrEt@127.0.0.1:1/zohooauth",
        "postgres://portal:p@SeCrEt/x%@127.0.0.1:1/zohooauth",
        "postgres://portal:Se%2FCr%23Et%3F%40@127.0.0.1:1/zohooauth",
    ] {
        let bind = format!("127.0.0.1:{}", free_port());
        let sandbox_bind = format!("127.0.0.1:{}", free_port());

        let (status, stdout, stderr) = run_to_exit(
            dir.path(),
            &[
                "serve",
                "--store",
                spec,
                "--bind",
                &bind,
                "--sandbox-bind",
                &sandbox_bind,
            ],
            &[],
        );

        assert!(!status.success(), "{spec}: {status}");
        assert!(
            stderr.contains("portal:***@127.0.0.1:1"),
            "{spec}: the store is named with its password masked: {stderr}"
        );
        for shown in [&stdout, &stderr] {
            assert!(
                !shown.contains("CrEt") && !shown.contains("Cr%23Et"),
                "{spec}: the password leaked: {shown}"
            );
        }
    }
}
