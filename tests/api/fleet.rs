//! Several portals on one store, as behind a load balancer: one refresh per expiry across all of them.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use url::Url;

use crate::databases::{Server, TestDatabase};
use crate::helpers::{PRIYA, TestApp};
use crate::private_postgres::PrivatePostgres;
use crate::serve::{RunningBinary, free_port, location_of};
use crate::zoho_sdk::Sdk;
use zylker_portal::sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
use zylker_portal::secret::Secret;

/// Three portals on one SQLite file (each with its own token manager, so its own in-process single flight), one
/// browser cookie, the access token expired in the store, the sandbox's token endpoint slowed so that every
/// portal finds the token wanting while the first refresh is on its way: 300 pages, spread over the three, make
/// one refresh at Zoho. Without the store's refresh lease each portal refreshes once (three).
#[tokio::test]
async fn three_portals_on_one_sqlite_file_make_one_refresh_per_expiry() {
    let app = TestApp::spawn_on_sqlite().await;
    let (twin_a, handle_a) = app.twin();
    let (twin_b, handle_b) = app.twin();
    app.login_as(PRIYA).await;
    let cookie = format!(
        "{}={}",
        zylker_portal::app::SESSION_COOKIE,
        app.session_cookie().expect("a session cookie")
    );
    app.expire_in_store(PRIYA).await;
    app.inject(json!({"target": "token", "delay_ms": 400, "count": 1}))
        .await;
    let before = app.counters().await.refreshes;

    let portals = [app.address.clone(), twin_a, twin_b];
    let client = reqwest::Client::new();
    let pages = (0..300).map(|n| {
        let url = portals[n % portals.len()].join("/crm/Leads").expect("url");
        let request = client
            .get(url)
            .header(reqwest::header::COOKIE, cookie.clone());
        async move { request.send().await.expect("a page").status() }
    });
    let statuses = join_all(pages).await;

    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(not_ok.is_empty(), "every page is served: {not_ok:?}");
    assert_eq!(
        app.counters().await.refreshes - before,
        1,
        "one refresh at Zoho for the three portals"
    );
    handle_a.stop(false).await;
    handle_b.stop(false).await;
}

/// A fleet as deployed: a sandbox process (Zoho), `serve` processes on one database sharing the session key and
/// the balancer's public URL, and one browser.
pub(crate) struct Fleet {
    pub(crate) sandbox_url: Url,
    ports: Vec<u16>,
    pub(crate) store: String,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    pub(crate) browser: reqwest::Client,
    portals: Vec<Option<RunningBinary>>,
    _sandbox: RunningBinary,
    database: Option<TestDatabase>,
    /// `TOKEN_ENCRYPTION_KEYS` of the portals started from now on; `None`: no encryption.
    pub(crate) keyring: Option<String>,
    _dir: tempfile::TempDir,
}

/// The session key every portal of a fleet shares, so that a cookie one issued opens pages on all of them (and
/// on a portal restarted on the same store).
fn fleet_session_key() -> String {
    hex::encode([7u8; 64])
}

impl Fleet {
    pub(crate) async fn start(database: TestDatabase, processes: usize) -> Fleet {
        let store = database.spec();
        Fleet::start_on(store, Some(database), processes).await
    }

    /// As [`start`](Self::start), every portal with token encryption on with `keyring`.
    pub(crate) async fn start_encrypted(
        database: TestDatabase,
        processes: usize,
        keyring: Option<String>,
    ) -> Fleet {
        let store = database.spec();
        Fleet::start_with(store, Some(database), processes, keyring).await
    }

    /// `processes` portals on the store `store` (which `database`, when given, holds until the fleet ends).
    pub(crate) async fn start_on(
        store: String,
        database: Option<TestDatabase>,
        processes: usize,
    ) -> Fleet {
        Fleet::start_with(store, database, processes, None).await
    }

    /// As [`start_on`](Self::start_on), the portals encrypting with `keyring` when given.
    async fn start_with(
        store: String,
        database: Option<TestDatabase>,
        processes: usize,
        keyring: Option<String>,
    ) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).expect("folder");
            path
        };
        let ports: Vec<u16> = (0..processes).map(|_| free_port()).collect();
        let public_url = portal_url(ports[0]);
        let redirect = public_url.join("/oauth/callback").expect("url");
        let sandbox_bind = format!("127.0.0.1:{}", free_port());
        let sandbox_url = Url::parse(&format!("http://{sandbox_bind}")).expect("url");
        let mut sandbox = RunningBinary::start(
            &folder("sandbox"),
            &["sandbox"],
            &[
                ("SANDBOX_BIND", &sandbox_bind),
                ("SANDBOX_REDIRECT_URIS", redirect.as_str()),
            ],
        );
        sandbox
            .wait_until_ready(&sandbox_url.join("/_sandbox/counters").expect("url"))
            .await;
        for n in 0..processes {
            folder(&format!("portal{n}"));
        }
        // Cookies ignore ports: one jar serves every portal, as one browser behind the balancer.
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let browser = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut fleet = Fleet {
            sandbox_url,
            ports,
            store,
            jar,
            browser,
            portals: (0..processes).map(|_| None).collect(),
            _sandbox: sandbox,
            database,
            keyring,
            _dir: dir,
        };
        for n in 0..processes {
            fleet.start_portal(n).await;
        }
        fleet
    }

    /// Starts portal `n` (again) on its port and the fleet's store, and waits until it answers.
    pub(crate) async fn start_portal(&mut self, n: usize) {
        let port = self.ports[n];
        let bind = format!("127.0.0.1:{port}");
        let public_url = self.portal(0);
        let session_key = fleet_session_key();
        let mut env = vec![
            ("PORTAL_BIND", bind.as_str()),
            // Behind a load balancer every portal has the balancer's address; here, the first portal's.
            ("PORTAL_PUBLIC_URL", public_url.as_str()),
            ("ZOHO_CLIENT_ID", DEMO_CLIENT_ID),
            ("ZOHO_CLIENT_SECRET", DEMO_CLIENT_SECRET),
            ("ZOHO_ACCOUNTS_URL", self.sandbox_url.as_str()),
            ("TOKEN_STORE", &self.store),
            ("SESSION_KEY", &session_key),
        ];
        if let Some(keyring) = &self.keyring {
            env.push(("TOKEN_ENCRYPTION_KEYS", keyring));
        }
        let mut running = RunningBinary::start(
            &self._dir.path().join(format!("portal{n}")),
            &["serve"],
            &env,
        );
        running
            .wait_until_ready(&portal_url(port).join("/healthz").expect("url"))
            .await;
        self.portals[n] = Some(running);
    }

    /// Kills portal `n` with SIGKILL (as the kernel's OOM killer or a power cut would end it) and waits for it.
    pub(crate) fn kill_portal(&mut self, n: usize) {
        // RunningBinary's drop is `kill` (SIGKILL) and `wait`.
        self.portals[n] = None;
    }

    /// Stops portal `n` as an operator does (SIGTERM: it finishes its requests and closes its store), and waits.
    pub(crate) fn stop_portal(&mut self, n: usize) {
        let Some(mut running) = self.portals[n].take() else {
            return;
        };
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &running.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "SIGTERM was not sent");
        let status = running.child.wait().expect("the portal stops");
        assert!(
            status.success(),
            "portal {n} did not stop cleanly ({status}):\n{}",
            running.stderr()
        );
    }

    /// What portal `n` has written to stderr (its log) so far.
    pub(crate) fn portal_log(&self, n: usize) -> String {
        self.portals[n]
            .as_ref()
            .map(RunningBinary::stderr)
            .unwrap_or_default()
    }

    /// The values of one text column of every row of the token table, read with SQL on a thread of its own
    /// (the database drivers start runtimes of their own): the rows as they are in the database.
    pub(crate) fn column(&self, column: &str) -> Vec<Option<String>> {
        let database = self.database.as_ref().expect("a fleet on a test database");
        let query = format!("SELECT {column} FROM oauthtoken");
        std::thread::scope(|scope| {
            scope
                .spawn(|| database.query_texts(&query))
                .join()
                .expect("query")
        })
    }

    pub(crate) fn portal(&self, n: usize) -> Url {
        portal_url(self.ports[n % self.ports.len()])
    }

    /// Logs in through the first portal as a browser does.
    pub(crate) async fn login(&self) {
        let signed_in = sign_in(&self.browser, &self.portal(0), PRIYA)
            .await
            .expect("the login's requests are answered");
        assert!(signed_in, "logged in");
    }

    /// The stored tokens, read through the portal's own store on a thread outside the runtime (the database
    /// drivers start runtimes of their own).
    pub(crate) fn stored(&self) -> Vec<zylker_portal::tokens::OAuthToken> {
        let spec: zylker_portal::tokens::StoreSpec = self.store.parse().expect("spec");
        std::thread::spawn(move || {
            zylker_portal::tokens::open_store(&spec)
                .expect("the store")
                .get_tokens()
                .expect("tokens")
        })
        .join()
        .expect("read")
    }

    /// Expires every stored access token in the store (compare-and-set with the same token, expiry in 1970).
    /// Expires every stored access token behind the portals' backs, then waits until they read the store again.
    pub(crate) async fn expire(&self) {
        let spec: zylker_portal::tokens::StoreSpec = self.store.parse().expect("spec");
        std::thread::spawn(move || {
            let tokens = zylker_portal::tokens::open_store(&spec).expect("the store");
            for token in tokens.get_tokens().expect("tokens") {
                let id = token.id.as_deref().expect("an id");
                let access = token.access_token.as_ref().map(Secret::expose_secret);
                assert!(
                    tokens
                        .compare_and_set_access_token(id, access, access.expect("a token"), 1)
                        .expect("expire")
                );
            }
        })
        .join()
        .expect("expired");
        crate::helpers::wait_out_trusted_reads().await;
    }

    /// Makes the sandbox's next token answer take `delay_ms`.
    async fn slow_token_endpoint(&self, delay_ms: u64) {
        sandbox_control(
            &self.sandbox_url,
            "inject",
            json!({"target": "token", "delay_ms": delay_ms, "count": 1}),
        )
        .await;
    }

    /// The refreshes the sandbox has answered.
    pub(crate) async fn refreshes(&self) -> u64 {
        let counters: serde_json::Value =
            reqwest::get(self.sandbox_url.join("/_sandbox/counters").expect("url"))
                .await
                .expect("counters")
                .json()
                .await
                .expect("json");
        counters["refreshes"].as_u64().expect("a count")
    }

    /// The browser's cookie as a `Cookie` header, for a copy of it.
    fn cookie_header(&self) -> String {
        reqwest::cookie::CookieStore::cookies(self.jar.as_ref(), &self.portal(0))
            .expect("the session cookie")
            .to_str()
            .expect("text")
            .to_owned()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.portals.clear();
        // Dropped off the runtime: the PostgreSQL driver starts a runtime of its own.
        let database = self.database.take();
        let _ = std::thread::spawn(move || drop(database)).join();
    }
}

fn portal_url(port: u16) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}")).expect("url")
}

/// Makes the control call `/_sandbox/{call}` with the JSON `body` on the sandbox at `sandbox`, as tests drive
/// Zoho (expire or revoke tokens, inject faults, move the clock).
pub(crate) async fn sandbox_control(sandbox: &Url, call: &str, body: serde_json::Value) {
    let response = reqwest::Client::new()
        .post(sandbox.join(&format!("/_sandbox/{call}")).expect("url"))
        .header(zylker_portal::sandbox::CONTROL_HEADER, "1")
        .json(&body)
        .send()
        .await
        .expect("the sandbox answers");
    assert!(
        response.status().is_success(),
        "{call}: {}",
        response.status()
    );
}

/// Logs `browser` (a client that keeps cookies and follows no redirects) in as `email` through `portal`, as a
/// browser does: `/login`, the sandbox's consent form, the callback, and a second round when the portal asks
/// with `prompt=consent`. `Ok(true)` when the callback's redirect to a signed-in page reached the browser;
/// `Ok(false)` when the portal answered the login otherwise; `Err` when a request got no answer (a portal
/// killed meanwhile), so that a test of crashes can tell an answered login from a lost one.
pub(crate) async fn sign_in(
    browser: &reqwest::Client,
    portal: &Url,
    email: &str,
) -> Result<bool, reqwest::Error> {
    let mut login = portal.join("/login").expect("url");
    for _ in 0..2 {
        let response = browser.get(login.clone()).send().await?;
        if response.status() != StatusCode::SEE_OTHER {
            return Ok(false);
        }
        let auth_url = location_of(&response);
        let mut form: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
        form.push(("email".into(), email.into()));
        form.push(("decision".into(), "accept".into()));
        let consent = browser
            .post(auth_url.join("/oauth/v2/auth").expect("url"))
            .form(&form)
            .send()
            .await?;
        if consent.status() != StatusCode::FOUND {
            return Ok(false);
        }
        let callback = browser.get(location_of(&consent)).send().await?;
        if callback.status() != StatusCode::SEE_OTHER {
            return Ok(false);
        }
        let next = location_of(&callback);
        if next.path() != "/login" {
            return Ok(true);
        }
        login = next;
    }
    Ok(false)
}

/// A fresh database of the test's own, made off the runtime; `None` with `ZYLKER_SKIP_DB_TESTS=1`.
pub(crate) fn database_of(server: Server) -> Option<TestDatabase> {
    std::thread::spawn(move || TestDatabase::create(server))
        .join()
        .expect("a test database")
}

/// `processes` `serve` processes on one database: the access token expired in the store and the token endpoint
/// slowed, 300 pages spread over them make one refresh at Zoho; a sign-out on one is then refused by another.
async fn one_refresh_per_expiry_across(server: Server, processes: usize) {
    one_refresh_per_expiry_across_with(server, processes, None).await;
}

/// As [`one_refresh_per_expiry_across`], every portal encrypting its tokens with `keyring` when given.
async fn one_refresh_per_expiry_across_with(
    server: Server,
    processes: usize,
    keyring: Option<String>,
) {
    let Some(database) = database_of(server) else {
        return;
    };
    let encrypted = keyring.is_some();
    let fleet = Fleet::start_encrypted(database, processes, keyring).await;
    fleet.login().await;
    fleet.expire().await;
    fleet.slow_token_endpoint(400).await;
    let before = fleet.refreshes().await;

    let pages = (0..300).map(|n| {
        let request = fleet
            .browser
            .get(fleet.portal(n).join("/crm/Leads").expect("url"));
        async move { request.send().await.expect("a page").status() }
    });
    let statuses = join_all(pages).await;
    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(not_ok.is_empty(), "every page is served: {not_ok:?}");
    let made = fleet.refreshes().await - before;
    eprintln!(
        "{server:?}: 300 pages over {processes} processes (encryption {encrypted}): {made} refresh(es) at Zoho"
    );
    assert_eq!(made, 1, "one refresh at Zoho for the {processes} processes");
    if encrypted {
        let stored = fleet.stored();
        assert_eq!(stored.len(), 1);
        let access = stored[0].access_token.as_ref().map(Secret::expose_secret);
        assert!(
            access.is_some_and(|a| a.starts_with("enc:v1:")),
            "the refreshed token is stored encrypted"
        );
    }

    if processes < 2 {
        return;
    }
    // Signing out on the second portal ends the sign-in on the others too, within a second (each trusts what it
    // read for 900 ms): a copy of the cookie is refused there.
    let copied = fleet.cookie_header();
    let page = fleet
        .browser
        .get(fleet.portal(1).join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).expect("a csrf field") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').expect("end")];
    let logout = fleet
        .browser
        .post(fleet.portal(1).join("/logout").expect("url"))
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let last = processes - 1;
    let mut refused = false;
    for _ in 0..50 {
        let status = stranger
            .get(fleet.portal(last).join("/crm/Leads").expect("url"))
            .header(reqwest::header::COOKIE, &copied)
            .send()
            .await
            .expect("page")
            .status();
        if status == StatusCode::SEE_OTHER {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "another portal refuses the signed-out cookie");
}

#[tokio::test]
async fn three_portal_processes_on_one_postgres_database_make_one_refresh_and_share_sign_outs() {
    one_refresh_per_expiry_across(Server::Postgres, 3).await;
}

#[tokio::test]
async fn three_portal_processes_on_one_mysql_database_make_one_refresh_and_share_sign_outs() {
    one_refresh_per_expiry_across(Server::MySql, 3).await;
}

/// The same with token encryption on: the refresh lease passes through the encrypted store to the database, so
/// the fleet still makes one refresh per expiry.
#[tokio::test]
async fn three_encrypting_portal_processes_on_one_postgres_database_make_one_refresh() {
    let keyring = format!("fleet:{}", "5a".repeat(32));
    one_refresh_per_expiry_across_with(Server::Postgres, 3, Some(keyring)).await;
}

/// The figures the README gives for one and ten processes (`cargo test --test api fleet -- --ignored
/// --nocapture`): heavier than a test needs to be on every run.
#[tokio::test]
#[ignore]
async fn one_and_ten_portal_processes_on_postgres_make_one_refresh_each() {
    one_refresh_per_expiry_across(Server::Postgres, 1).await;
    one_refresh_per_expiry_across(Server::Postgres, 10).await;
}

/// A portal killed with SIGKILL while it holds the refresh lease, its call to Zoho still on its way: nothing is
/// lost; meanwhile another portal's page waits for the lease no longer than the queue timeout and says Zoho is
/// busy; the lease lapses (the HTTP timeout plus 5 s), and that portal then refreshes and serves the page.
#[tokio::test]
async fn a_portal_killed_mid_refresh_loses_nothing_and_its_lease_lapses() {
    let Some(database) = database_of(Server::Postgres) else {
        return;
    };
    let mut fleet = Fleet::start(database, 2).await;
    fleet.login().await;
    fleet.expire().await;
    let expired = fleet.stored();
    fleet.slow_token_endpoint(10_000).await;

    // The first portal takes the lease and waits on Zoho...
    let first = fleet
        .browser
        .get(fleet.portal(0).join("/crm/Leads").expect("url"));
    let in_flight = tokio::spawn(async move { first.send().await });
    let lease_held = fleet.database.as_ref().expect("the database").spec();
    let spec: zylker_portal::tokens::StoreSpec = lease_held.parse().expect("spec");
    let mut held = false;
    for _ in 0..100 {
        let spec = spec.clone();
        let leases = std::thread::spawn(move || {
            let zylker_portal::tokens::StoreSpec::Postgres(database) = spec else {
                unreachable!("a PostgreSQL spec")
            };
            crate::databases::postgres_client(&database)
                .expect("connect")
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}",
                        zylker_portal::tokens::REFRESH_LEASE_TABLE
                    ),
                    &[],
                )
                .map(|row| row.get::<_, i64>(0))
                .unwrap_or(0)
        })
        .join()
        .expect("count");
        if leases > 0 {
            held = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(held, "the first portal took the refresh lease");
    // ...and is killed there.
    fleet.portals[0] = None;
    let _ = in_flight.await;

    // While the dead portal's lease lives, a page waits for it no longer than the queue timeout (10 s).
    let started = std::time::Instant::now();
    let page = || {
        fleet
            .browser
            .get(fleet.portal(1).join("/crm/Leads").expect("url"))
            .send()
    };
    let response = page().await.expect("the second portal answers");
    let waited = started.elapsed();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "Zoho is busy meanwhile"
    );
    assert!(
        waited < std::time::Duration::from_secs(13),
        "bounded by the queue timeout: {waited:?}"
    );
    // The lease lapses (the HTTP timeout plus 5 s after it was taken); the page is then served.
    let mut response = page().await.expect("the second portal answers");
    for _ in 0..30 {
        if response.status() == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        response = page().await.expect("the second portal answers");
    }
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "served once the lease lapsed"
    );
    let stored = fleet.stored();
    assert_eq!(stored.len(), expired.len(), "no token lost");
    assert_eq!(stored[0].user_name, expired[0].user_name);
    assert_eq!(
        stored[0].refresh_token, expired[0].refresh_token,
        "the refresh token kept"
    );
    assert_ne!(
        stored[0].access_token, expired[0].access_token,
        "a new access token stored"
    );
}

/// A real database restart under running portals: two portals on a PostgreSQL server of the test's own, which is
/// stopped (`pg_ctl stop -m fast`, as an operator restarts it) and started again. While it is down, pages answer
/// 503 at once with the "token store is unavailable" page inside the layout and `/healthz` answers 503; once it
/// is back, both portals serve the same browser again within seconds, without a restart or a new login.
#[tokio::test]
async fn a_database_stopped_and_started_under_two_portals_gives_503_pages_then_service_again() {
    let Some(server) = std::thread::spawn(PrivatePostgres::start)
        .join()
        .expect("a private server")
    else {
        return;
    };
    let fleet = Fleet::start_on(server.spec(), None, 2).await;
    fleet.login().await;
    let page = |n: usize| {
        fleet
            .browser
            .get(fleet.portal(n).join("/crm/Leads").expect("url"))
            .send()
    };
    for n in 0..2 {
        assert_eq!(page(n).await.expect("page").status(), StatusCode::OK);
    }

    let server = std::thread::spawn(move || {
        server.stop();
        server
    })
    .join()
    .expect("stopped");
    // A token read less than the trust window ago still serves; past it, every page asks the store.
    crate::helpers::wait_out_trusted_reads().await;
    for n in 0..2 {
        let started = std::time::Instant::now();
        let response = page(n).await.expect("an answer while the database is down");
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "portal {n}"
        );
        assert!(
            response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER),
            "asks to come back"
        );
        let text = response.text().await.expect("a page");
        assert!(text.contains("token store is unavailable"), "{text}");
        assert!(
            text.contains("class=\"topbar\""),
            "inside the layout: {text}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "answered in {:?}, not left hanging",
            started.elapsed()
        );
        let health = reqwest::get(fleet.portal(n).join("/healthz").expect("url"))
            .await
            .expect("healthz");
        assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
        let health: serde_json::Value = health.json().await.expect("json");
        assert_eq!(health["status"], "unavailable", "{health}");
    }

    let server = std::thread::spawn(move || {
        server.start_again();
        server
    })
    .join()
    .expect("started again");
    let back = std::time::Instant::now();
    for n in 0..2 {
        loop {
            let status = page(n).await.expect("page").status();
            if status == StatusCode::OK {
                break;
            }
            assert!(
                back.elapsed() < std::time::Duration::from_secs(15),
                "portal {n} still answers {status} {:?} after the database came back",
                back.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "both portals served the same session again {:?} after the database came back",
        back.elapsed()
    );
    drop(fleet);
    std::thread::spawn(move || drop(server))
        .join()
        .expect("server dropped");
}

/// The Zoho Python SDK as one more member of the fleet, against the sandbox, on the SDK `DBStore`'s MySQL table.
/// A portal logs in and its access token expires. The SDK starts as an application does (`Initializer.initialize`
/// with its `DBStore` and the sandbox as its data centre): it refreshes the token at the sandbox, saves it through
/// its store and lists Leads with it; the portal then serves pages with the SDK's token, refreshing nothing. The
/// other way: the token expires again, the portal refreshes it, and the SDK finds the portal's new token.
#[tokio::test]
async fn the_python_sdk_and_a_portal_refresh_each_others_token_against_the_sandbox() {
    let Some(database) = database_of(Server::MySql) else {
        return;
    };
    let sdk = Sdk::new(&database);
    let fleet = Fleet::start(database, 1).await;
    fleet.login().await;
    let page = || async {
        fleet
            .browser
            .get(fleet.portal(0).join("/crm/Leads").expect("url"))
            .send()
            .await
            .expect("page")
            .status()
    };
    fleet.expire().await;
    let expired = fleet.stored().remove(0);
    let user_name = expired.user_name.clone().expect("a user name");
    let before = fleet.refreshes().await;

    let started = sdk.run(
        "start_against",
        json!({
            "user_name": user_name,
            "api_url": expired.api_domain.as_deref().expect("an api domain"),
            "accounts_url": fleet.sandbox_url.as_str(),
        }),
    );
    assert_eq!(
        fleet.refreshes().await - before,
        1,
        "the SDK refreshed at the sandbox"
    );
    assert!(
        started["leads"].as_u64() > Some(0),
        "the SDK listed Leads: {}",
        started["leads"]
    );
    let by_sdk = fleet.stored().remove(0);
    assert_eq!(by_sdk.id, expired.id, "the same row");
    assert_eq!(
        by_sdk.refresh_token, expired.refresh_token,
        "the same refresh token"
    );
    assert_ne!(
        by_sdk.access_token, expired.access_token,
        "a new access token"
    );
    assert!(by_sdk.expiry_time > Some(now_ms()), "valid for a while");
    assert_eq!(
        started["token"]["access_token"].as_str(),
        by_sdk.access_token.as_ref().map(Secret::expose_secret),
        "what the SDK saved is what the store holds"
    );

    assert_eq!(
        page().await,
        StatusCode::OK,
        "the portal serves with the SDK's token"
    );
    assert_eq!(
        fleet.refreshes().await - before,
        1,
        "and refreshes nothing itself"
    );
    assert_eq!(fleet.stored().remove(0).access_token, by_sdk.access_token);

    fleet.expire().await;
    assert_eq!(page().await, StatusCode::OK);
    assert_eq!(fleet.refreshes().await - before, 2, "the portal refreshed");
    let by_portal = fleet.stored().remove(0);
    assert_ne!(by_portal.access_token, by_sdk.access_token);
    assert_eq!(
        sdk.find_by_user_name(&user_name)["access_token"].as_str(),
        by_portal.access_token.as_ref().map(Secret::expose_secret),
        "the SDK finds the portal's new token"
    );
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since_epoch.as_millis()).expect("in range")
}

/// Two portals on one store but each with a Zoho of its own (as two demo portals, each with its own sandbox):
/// a token one of them stored names an `api_domain` the other does not talk to. The other portal's page says
/// what is wrong and what to do, rather than "Zoho answered with an error", and the token is left alone.
#[tokio::test]
async fn a_token_made_through_another_zoho_gets_a_page_that_says_so_and_is_kept() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    // What the other portal's login wrote: the same user's token, made through its own sandbox.
    let mut token = app.stored_token_of(PRIYA).await.expect("token stored");
    let other_zoho = format!("http://127.0.0.1:{}", free_port());
    token.api_domain = Some(other_zoho.clone());
    app.insert_token(token).await;

    let (status, page) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        page.contains("is not the one your sign-in was made with"),
        "{page}"
    );
    assert!(page.contains("Try a fleet on one machine"), "{page}");
    assert!(
        !page.contains("Zoho answered with an error"),
        "not the generic page: {page}"
    );
    let kept = app.stored_token_of(PRIYA).await.expect("the token is kept");
    assert_eq!(kept.api_domain.as_deref(), Some(other_zoho.as_str()));
}
