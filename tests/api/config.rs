//! `serve`'s configuration as a newcomer gets it wrong: the bind address without a public URL, a public URL
//! without a scheme or on another port, empty client credentials, an address in use.

use std::net::TcpListener;
use std::path::Path;

use reqwest::StatusCode;
use url::Url;

use crate::helpers::PRIYA;
use crate::serve::{
    DemoPortal, RunningBinary, assert_full_login_reaches_the_leads, free_port, location_of,
    run_to_exit,
};

/// What the portal logs when the public URL's port is not the one it listens on.
const PORT_MISMATCH: &str = "is not the port the portal listens on";

/// The `redirect_uri` that `/login` sends to Zoho.
async fn redirect_uri_sent_by_login(public_url: &Url) -> (Url, Url) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(public_url.join("/login").expect("url"))
        .send()
        .await
        .expect("portal");
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "/login redirects");
    let auth_url = location_of(&response);
    let redirect_uri = auth_url
        .query_pairs()
        .find(|(name, _)| name == "redirect_uri")
        .map(|(_, value)| Url::parse(&value).expect("a URL"))
        .expect("a redirect_uri");
    (auth_url, redirect_uri)
}

#[tokio::test]
async fn bind_alone_moves_the_demo_redirect_url_with_it() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let public_url = format!("http://localhost:{port}");
    let mut portal = DemoPortal::start_with(&["serve", "--bind", &bind], &[], &public_url).await;

    let (_, redirect_uri) = redirect_uri_sent_by_login(&portal.public_url).await;

    assert_eq!(
        redirect_uri.as_str(),
        format!("http://localhost:{port}/oauth/callback")
    );
    assert_full_login_reaches_the_leads(&portal).await;
    let (stdout, stderr) = portal.running.wait_for_output("portal listening").await;
    assert!(
        stdout.contains(&format!("portal: http://localhost:{port}/")),
        "the banner names the derived URL: {stdout}"
    );
    assert!(!stderr.contains(PORT_MISMATCH), "{stderr}");
}

#[tokio::test]
async fn a_public_url_on_another_port_than_the_bind_is_allowed_and_logged_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let store = format!("sqlite:{}", dir.path().join("t.db").display());
    let mut running = RunningBinary::start(
        dir.path(),
        &["serve", "--bind", &bind],
        &[
            ("ZOHO_CLIENT_ID", "1000.BEHINDAPROXY"),
            ("ZOHO_CLIENT_SECRET", "proxy-client-secret"),
            ("PORTAL_PUBLIC_URL", "https://portal.zylker.academy"),
            ("TOKEN_STORE", &store),
        ],
    );
    let local = Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
    running
        .wait_until_ready(&local.join("/healthz").expect("url"))
        .await;

    let (auth_url, redirect_uri) = redirect_uri_sent_by_login(&local).await;

    assert_eq!(auth_url.host_str(), Some("accounts.zoho.com"));
    assert_eq!(
        redirect_uri.as_str(),
        "https://portal.zylker.academy/oauth/callback",
        "the public URL given is kept"
    );
    let (_, stderr) = running.wait_for_output("portal listening").await;
    let mismatches: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(PORT_MISMATCH))
        .collect();
    assert_eq!(mismatches.len(), 1, "said once: {stderr}");
    assert!(
        mismatches[0].contains("(443)") && mismatches[0].contains(&format!("({port})")),
        "both ports are named: {}",
        mismatches[0]
    );
    assert!(!stderr.contains("proxy-client-secret"), "{stderr}");
}

#[test]
fn a_public_url_without_a_scheme_is_refused_saying_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("t.db").display());
    for (args, env) in [
        (
            vec!["serve", "--public-url", "localhost:8080"],
            vec![("TOKEN_STORE", store.as_str())],
        ),
        (
            vec!["serve"],
            vec![
                ("PORTAL_PUBLIC_URL", "portal.zylker.academy"),
                ("TOKEN_STORE", store.as_str()),
            ],
        ),
    ] {
        let bind = format!("127.0.0.1:{}", free_port());
        let mut env = env;
        env.push(("PORTAL_BIND", &bind));

        let (status, _, stderr) = run_to_exit(dir.path(), &args, &env);

        assert!(!status.success(), "{args:?} {env:?} was accepted");
        assert!(
            stderr.contains("--public-url")
                && stderr.contains("no scheme")
                && stderr.contains("http://"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn empty_client_credentials_mean_demo_mode() {
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut portal = DemoPortal::start_with(
        &["serve"],
        &[
            ("ZOHO_CLIENT_ID", ""),
            ("ZOHO_CLIENT_SECRET", ""),
            ("PORTAL_BIND", &format!("127.0.0.1:{port}")),
            ("PORTAL_PUBLIC_URL", &public_url),
        ],
        &public_url,
    )
    .await;

    let (auth_url, _) = redirect_uri_sent_by_login(&portal.public_url).await;

    assert_ne!(auth_url.host_str(), Some("accounts.zoho.com"));
    let client_id = auth_url
        .query_pairs()
        .find(|(name, _)| name == "client_id")
        .map(|(_, value)| value.into_owned());
    assert_eq!(client_id.as_deref(), Some("1000.ZYLKERACADEMYDEMO"));
    let browser = portal.login_as(PRIYA).await;
    let leads = browser
        .get(portal.public_url.join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("portal");
    assert_eq!(leads.status(), StatusCode::OK);
    let (stdout, _) = portal.running.wait_for_output("demo mode").await;
    assert!(stdout.contains("demo mode"), "{stdout}");
}

#[test]
fn an_address_in_use_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("t.db").display());
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let taken = taken.local_addr().map(|a| (taken, a)).expect("address");
    let busy = taken.1.to_string();
    let free = format!("127.0.0.1:{}", free_port());
    for (args, named) in [
        (
            vec!["serve", "--bind", busy.as_str(), "--sandbox-bind", &free],
            "--bind",
        ),
        (
            vec!["serve", "--bind", &free, "--sandbox-bind", &busy],
            "--sandbox-bind",
        ),
    ] {
        let (status, _, stderr) = run_to_exit(dir.path(), &args, &[("TOKEN_STORE", &store)]);

        assert!(!status.success(), "{args:?}");
        assert!(
            stderr.contains(&format!("cannot listen on {busy}")) && stderr.contains(named),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_sandbox_state_file_that_is_a_file_of_its_token_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let store = zylker_portal::tokens::SqliteStore::open(&path).expect("a store");
    zylker_portal::tokens::TokenStore::save_token(
        &store,
        &mut zylker_portal::tokens::conformance::sample_token(PRIYA),
    )
    .expect("a token");
    drop(store);
    let wal = format!("{}-wal", path.display());
    wait_for_the_last_connection_to_close(Path::new(&wal));
    let before = std::fs::read(&path).expect("read");
    let spec = format!("sqlite:{}", path.display());

    for state in [path.display().to_string(), wal] {
        let bind = format!("127.0.0.1:{}", free_port());
        let sandbox_bind = format!("127.0.0.1:{}", free_port());
        let (status, _, stderr) = run_to_exit(
            dir.path(),
            &[
                "serve",
                "--store",
                &spec,
                "--sandbox-state",
                &state,
                "--bind",
                &bind,
                "--sandbox-bind",
                &sandbox_bind,
            ],
            &[],
        );

        assert!(
            !status.success(),
            "{state} was taken as the sandbox's state"
        );
        assert!(
            stderr.contains("--sandbox-state") && stderr.contains("is a file of the token store"),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "byte-identical"
    );
}

#[tokio::test]
async fn serve_refuses_another_applications_database_unless_asked_to_add_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    rusqlite::Connection::open(&path)
        .expect("create")
        .execute_batch("CREATE TABLE foo (x TEXT); INSERT INTO foo VALUES ('kept');")
        .expect("another application's table");
    let before = std::fs::read(&path).expect("read");
    let spec = format!("sqlite:{}", path.display());
    let bind = format!("127.0.0.1:{}", free_port());

    let (status, _, stderr) = run_to_exit(
        dir.path(),
        &["serve", "--store", &spec, "--bind", &bind],
        &[],
    );

    assert!(!status.success(), "the file was taken");
    assert!(
        stderr.contains("no oauthtoken table") && stderr.contains("?create=1"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "byte-identical"
    );

    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let portal = DemoPortal::start_with(
        &["serve", "--bind", &format!("127.0.0.1:{port}")],
        &[
            ("TOKEN_STORE", &format!("{spec}?create=1")),
            ("PORTAL_PUBLIC_URL", &public_url),
        ],
        &public_url,
    )
    .await;
    assert_full_login_reaches_the_leads(&portal).await;
    let database = rusqlite::Connection::open(&path).expect("open");
    let kept: String = database
        .query_row("SELECT x FROM foo", [], |row| row.get(0))
        .expect("the other table stays");
    let tokens: i64 = database
        .query_row("SELECT count(*) FROM oauthtoken", [], |row| row.get(0))
        .expect("the token table was added");
    assert_eq!((kept.as_str(), tokens), ("kept", 1));
}

/// Waits until the pool of a dropped store has closed its last connection: SQLite then checkpoints the log
/// into the file and deletes the log. Until then the file's bytes may still change (the pool's threads can
/// hold it a moment past the drop), and a "left as it was" comparison would race with that, not with the
/// code under test.
fn wait_for_the_last_connection_to_close(wal: &Path) {
    for _ in 0..200 {
        if !wal.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "{} is still there 10 s after the store was dropped",
        wal.display()
    );
}
