//! The test harness: the real portal and the real sandbox on random ports, a browser-like HTTP client, and a
//! log capture shared by the whole test binary.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::LOCATION;
use url::Url;
use zylker_portal::app::{Portal, PortalSettings, SESSION_COOKIE, SessionKey};
use zylker_portal::sandbox::{
    self, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, RunningSandbox, SandboxClient, SandboxConfig,
};
use zylker_portal::tokens::{
    OAuthToken, SignIns, StoreSpec, TokenStore, now_millis, open_portal_stores,
};
use zylker_portal::zoho::{ClientCredentials, CrmLimits};

pub const PRIYA: &str = "priya.raman@zylker.com";
pub const ARJUN: &str = "arjun.mehta@zylker.com";
pub const SOFIA: &str = "sofia.khan@zylker.com";
pub const LIAM: &str = "liam.o'brien@zylker.com";

pub const SCOPE: &str = "ZohoCRM.modules.ALL,ZohoCRM.settings.modules.READ,ZohoCRM.settings.fields.READ,ZohoCRM.users.READ,ZohoCRM.org.READ,ZohoSearch.securesearch.READ";

/// Everything logged by this test binary (the portal's and the sandbox's workers run on other threads, so the
/// capture is global).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global log capture once, at debug level for everything (`TEST_LOG=1` also prints it).
pub fn init_log_capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let buffer = log_buffer().clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || CaptureWriter(buffer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Which store the portal gets.
pub enum StoreChoice {
    List,
    /// A SQLite file in a temporary directory (reopened from the path on restart, like a new process).
    SqliteFile,
    /// A store the test made (sign-outs kept in memory).
    Given(Arc<dyn TokenStore>),
    /// The SDK's CSV file (`file:PATH`) in a temporary directory, reopened on restart like the SQLite file.
    CsvFile,
}

pub struct TestAppOptions {
    pub store: StoreChoice,
    pub leeway: Duration,
    pub scope: &'static str,
    pub http_timeout: Duration,
    /// The portal's gate (`--crm-concurrency`, `--crm-queue-timeout-ms`).
    pub crm_limits: CrmLimits,
    /// Whether the portal serves `/metrics` on a listener of its own (`--metrics-bind`).
    pub metrics: bool,
    /// Zoho's limits at the sandbox (latency, concurrency cap); none by default.
    pub sandbox_crm: sandbox::CrmLimits,
    pub pending_login_ttl: Duration,
    pub body_read_timeout: Duration,
    /// The URL people reach the portal at, when not its own address (a TLS proxy in front): the redirect URL
    /// the sandbox sends browsers to, which the test browser maps back to the portal's address.
    pub public_url: Option<Url>,
}

impl Default for TestAppOptions {
    fn default() -> Self {
        let tuning = Tuning::default();
        TestAppOptions {
            store: StoreChoice::List,
            leeway: tuning.leeway,
            scope: tuning.scope,
            http_timeout: tuning.http_timeout,
            pending_login_ttl: tuning.pending_login_ttl,
            body_read_timeout: tuning.body_read_timeout,
            public_url: tuning.public_url,
            crm_limits: tuning.crm_limits,
            metrics: false,
            sandbox_crm: sandbox::CrmLimits::default(),
        }
    }
}

/// The portal's settings of [`TestAppOptions`]: a restart or a twin keeps them.
#[derive(Clone)]
struct Tuning {
    leeway: Duration,
    scope: &'static str,
    http_timeout: Duration,
    pending_login_ttl: Duration,
    body_read_timeout: Duration,
    public_url: Option<Url>,
    crm_limits: CrmLimits,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            leeway: Duration::from_secs(60),
            scope: SCOPE,
            http_timeout: Duration::from_secs(10),
            crm_limits: CrmLimits::default(),
            pending_login_ttl: zylker_portal::app::DEFAULT_PENDING_LOGIN_TTL,
            body_read_timeout: zylker_portal::app::DEFAULT_BODY_READ_TIMEOUT,
            public_url: None,
        }
    }
}

/// A running portal and sandbox, and a browser-like client for the portal.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: Url,
    pub port: u16,
    /// `http://localhost:PORT`: a different site from the portal, as Zoho is.
    pub sandbox_url: Url,
    /// `http://127.0.0.1:PORT/metrics` when the portal serves metrics.
    pub metrics_url: Option<Url>,
    /// The browser most tests use; [`TestApp::new_browser`] makes more.
    pub browser: Browser,
    pub store: Arc<dyn TokenStore>,
    pub session_key: SessionKey,
    /// The store `serve` would be given (`list`, `sqlite:PATH`, `file:PATH`).
    store_spec: StoreSpec,
    _tempdir: tempfile::TempDir,
    tuning: Tuning,
    portal: ServerHandle,
    /// Kept so the sandbox serves as long as the app.
    sandbox: Option<RunningSandbox>,
    /// A plain client for the sandbox's control surface.
    control: reqwest::Client,
}

/// A browser: its own cookies, no redirects followed (tests follow `Location` by hand).
pub struct Browser {
    pub address: Url,
    /// Where the portal's redirect URL points (its address, unless a test put a proxy's URL in front).
    pub public_url: Url,
    pub client: reqwest::Client,
    pub cookies: Arc<Jar>,
}

impl Browser {
    fn new(address: &Url, public_url: &Url) -> Browser {
        let cookies = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(cookies.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("test client");
        Browser {
            address: address.clone(),
            public_url: public_url.clone(),
            client,
            cookies,
        }
    }
}

impl std::ops::Deref for TestApp {
    type Target = Browser;

    fn deref(&self) -> &Browser {
        &self.browser
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(TestAppOptions::default()).await
    }

    /// A portal on a SQLite file, as `serve` runs by default: what [`TestApp::restart`] and
    /// [`TestApp::twin`] need.
    pub async fn spawn_on_sqlite() -> TestApp {
        TestApp::spawn_with(TestAppOptions {
            store: StoreChoice::SqliteFile,
            ..TestAppOptions::default()
        })
        .await
    }

    pub async fn spawn_with(options: TestAppOptions) -> TestApp {
        init_log_capture();
        let tuning = Tuning {
            leeway: options.leeway,
            scope: options.scope,
            http_timeout: options.http_timeout,
            pending_login_ttl: options.pending_login_ttl,
            body_read_timeout: options.body_read_timeout,
            public_url: options.public_url,
            crm_limits: options.crm_limits,
        };
        let portal_listener = TcpListener::bind("127.0.0.1:0").expect("bind portal");
        let port = portal_listener.local_addr().expect("portal addr").port();
        let address = Url::parse(&format!("http://127.0.0.1:{port}")).expect("portal url");
        let public_url = tuning.public_url.clone().unwrap_or(address.clone());
        let redirect_url = public_url.join("/oauth/callback").expect("redirect url");

        let sandbox_listener = TcpListener::bind("127.0.0.1:0").expect("bind sandbox");
        let sandbox_port = sandbox_listener.local_addr().expect("sandbox addr").port();
        let sandbox_public = Url::parse(&format!("http://localhost:{sandbox_port}")).expect("url");
        let sandbox = sandbox::spawn(
            sandbox_listener,
            SandboxConfig {
                public_url: Some(sandbox_public),
                clients: vec![SandboxClient {
                    client_id: DEMO_CLIENT_ID.into(),
                    client_secret: DEMO_CLIENT_SECRET.into(),
                    redirect_uris: vec![redirect_url.to_string()],
                }],
                access_ttl: Duration::from_secs(3600),
                control: true,
                crm: options.sandbox_crm,
                state_file: None,
            },
        )
        .expect("sandbox starts");
        let sandbox_url = sandbox.url().clone();

        let tempdir = tempfile::tempdir().expect("tempdir");
        let store_spec = match &options.store {
            StoreChoice::List | StoreChoice::Given(_) => StoreSpec::List,
            StoreChoice::SqliteFile => StoreSpec::SqliteFile(tempdir.path().join("zohooauth.db")),
            StoreChoice::CsvFile => StoreSpec::File(tempdir.path().join("zohooauth.csv")),
        };
        let (mut store, sign_ins) = stores_for(&store_spec);
        if let StoreChoice::Given(given) = &options.store {
            store = Arc::clone(given);
        }
        let session_key = SessionKey::generate();
        let metrics_listener = options
            .metrics
            .then(|| TcpListener::bind("127.0.0.1:0").expect("bind metrics"));
        let metrics_url = metrics_listener.as_ref().map(|listener| {
            let port = listener.local_addr().expect("metrics addr").port();
            Url::parse(&format!("http://127.0.0.1:{port}/metrics")).expect("metrics url")
        });
        let portal = start_portal(
            (portal_listener, metrics_listener),
            &address,
            &sandbox_url,
            (store.clone(), sign_ins),
            &session_key,
            &tuning,
        );
        TestApp {
            browser: Browser::new(&address, &public_url),
            address,
            port,
            sandbox_url,
            metrics_url,
            store,
            session_key,
            store_spec,
            _tempdir: tempdir,
            tuning,
            portal,
            sandbox: Some(sandbox),
            control: reqwest::Client::new(),
        }
    }

    /// Stops the portal and starts a new one on the same port with the same store file and session key: what
    /// a restart of the process looks like to a browser. The sandbox (Zoho) keeps running.
    pub async fn restart(mut self) -> TestApp {
        self.portal.stop(true).await;
        assert!(
            self.store_spec.file_path().is_some(),
            "restart needs a store in a file"
        );
        let (store, sign_ins) = stores_for(&self.store_spec);
        let listener = bind_again(self.port).await;
        self.portal = start_portal(
            (listener, None),
            &self.address,
            &self.sandbox_url,
            (store.clone(), sign_ins),
            &self.session_key,
            &self.tuning,
        );
        self.store = store;
        self
    }

    /// [`Self::restart`] with the portal asking Zoho for `scope` from now on (`--scope` changed).
    pub async fn restart_asking_for(mut self, scope: &'static str) -> TestApp {
        self.tuning.scope = scope;
        self.restart().await
    }

    /// A second portal on the same store file, session key and Zoho, as behind a load balancer: its address
    /// and handle. It reads the sign-ins as a deployment's portals do (what it read holds for at most a
    /// second).
    pub fn twin(&self) -> (Url, ServerHandle) {
        assert!(
            self.store_spec.file_path().is_some(),
            "a twin needs a store in a file"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind twin");
        let port = listener.local_addr().expect("twin addr").port();
        let address = Url::parse(&format!("http://127.0.0.1:{port}")).expect("twin url");
        let (store, sign_ins) = stores_for(&self.store_spec);
        let handle = start_portal(
            (listener, None),
            &address,
            &self.sandbox_url,
            (store, sign_ins),
            &self.session_key,
            &self.tuning,
        );
        (address, handle)
    }

    /// Another portal on `spec` (opened as `serve` opens it), with this one's session key and Zoho: where a
    /// deployment moves to after `tokens copy`. Its address and handle.
    pub async fn portal_on(&self, spec: &StoreSpec) -> (Url, ServerHandle) {
        // The database stores' drivers block: opened off the async thread, as `serve` opens them before its
        // runtime runs.
        let stores = {
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || stores_for(&spec))
                .await
                .expect("the stores open")
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind another portal");
        let port = listener.local_addr().expect("portal addr").port();
        let address = Url::parse(&format!("http://127.0.0.1:{port}")).expect("portal url");
        let handle = start_portal(
            (listener, None),
            &address,
            &self.sandbox_url,
            stores,
            &self.session_key,
            &self.tuning,
        );
        (address, handle)
    }

    /// Another browser, with its own cookies.
    pub fn new_browser(&self) -> Browser {
        Browser::new(&self.address, &self.browser.public_url)
    }

    /// Another browser holding only a copy of a session cookie (its value as [`Browser::session_cookie`]
    /// gives it): what someone who copied the cookie has.
    pub fn browser_with_cookie(&self, session_cookie: &str) -> Browser {
        let browser = self.new_browser();
        browser.cookies.add_cookie_str(
            &format!("{SESSION_COOKIE}={session_cookie}; Path=/"),
            &self.address,
        );
        browser
    }

    /// The SQLite file the store lives in (`sqlite:PATH`), for tests that look at the portal's own tables.
    pub fn sqlite_file(&self) -> &Path {
        match &self.store_spec {
            StoreSpec::SqliteFile(path) => path,
            other => panic!("the store is {other}, not a SQLite file"),
        }
    }

    /// The session `browser`'s cookie holds, decrypted with the portal's key: key -> JSON text, as the portal's
    /// session cookie (`routes::cookie_session`, in actix-session's format) holds it.
    pub fn decrypted_session(
        &self,
        browser: &Browser,
    ) -> serde_json::Map<String, serde_json::Value> {
        use actix_web::cookie::{Cookie, CookieJar, Key};
        let value = browser.session_cookie().expect("a session cookie");
        // The value is sent percent-encoded.
        let value = Cookie::parse_encoded(format!("{SESSION_COOKIE}={value}"))
            .expect("a cookie")
            .value()
            .to_owned();
        let key = Key::try_from(self.session_key.master()).expect("a 64-byte key");
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(SESSION_COOKIE, value));
        let cookie = jar
            .private(&key)
            .get(SESSION_COOKIE)
            .expect("the cookie decrypts with the portal's key");
        serde_json::from_str(cookie.value()).expect("the session is a JSON map")
    }

    /// Rewrites the session `browser`'s cookie holds, encrypted with the portal's key: what a stale cookie (a
    /// profile cached at login, since changed at Zoho) looks like to the portal.
    pub fn rewrite_session(
        &self,
        browser: &Browser,
        change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) {
        use actix_web::cookie::{Cookie, CookieJar, Key};
        let mut session = self.decrypted_session(browser);
        change(&mut session);
        let key = Key::try_from(self.session_key.master()).expect("a 64-byte key");
        let mut jar = CookieJar::new();
        jar.private_mut(&key).add(Cookie::new(
            SESSION_COOKIE,
            serde_json::to_string(&session).expect("json"),
        ));
        let cookie = jar.get(SESSION_COOKIE).expect("the cookie");
        browser
            .cookies
            .add_cookie_str(&format!("{}; Path=/", cookie.encoded()), &browser.address);
    }

    /// Puts a row into the store as another process (or another organization's portal) would.
    pub async fn insert_token(&self, mut token: OAuthToken) -> OAuthToken {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.save_token(&mut token).map(|()| token))
            .await
            .expect("join")
            .expect("store writes")
    }

    /// Deletes one row as another process would.
    pub async fn delete_in_store(&self, id: &str) {
        let (store, id) = (self.store.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || store.delete_token(&id))
            .await
            .expect("join")
            .expect("store deletes");
        wait_out_trusted_reads().await;
    }

    /// Every stored token (read off the async thread, as the portal does).
    pub async fn stored_tokens(&self) -> Vec<OAuthToken> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.get_tokens())
            .await
            .expect("join")
            .expect("store reads")
    }

    pub async fn stored_token_of(&self, email: &str) -> Option<OAuthToken> {
        self.stored_tokens().await.into_iter().find(|token| {
            token
                .user_name
                .as_deref()
                .is_some_and(|name| name.starts_with(&format!("{email}:")))
        })
    }

    /// Moves a stored token's expiry into the past, as if an hour had gone by.
    pub async fn expire_in_store(&self, email: &str) {
        let mut token = self.stored_token_of(email).await.expect("token stored");
        token.expiry_time = Some(zylker_portal::tokens::now_millis() - 1_000);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.save_token(&mut token))
            .await
            .expect("join")
            .expect("store writes");
        wait_out_trusted_reads().await;
    }

    pub async fn sandbox_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .control
            .post(self.sandbox_url.join(path).expect("url"))
            .header(sandbox::CONTROL_HEADER, "1")
            .json(&body)
            .send()
            .await
            .expect("sandbox control");
        assert!(response.status().is_success(), "sandbox control {path}");
        response.json().await.expect("json")
    }

    pub async fn counters(&self) -> Counters {
        self.control
            .get(self.sandbox_url.join("/_sandbox/counters").expect("url"))
            .send()
            .await
            .expect("sandbox control")
            .json()
            .await
            .expect("counters")
    }

    /// Stops Zoho (the sandbox): what an outage looks like to the portal.
    pub async fn stop_sandbox(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.stop().await;
        }
    }

    pub async fn expire_access_tokens_at_sandbox(&self) {
        self.sandbox_post("/_sandbox/expire-access-tokens", serde_json::json!({}))
            .await;
    }

    pub async fn revoke_refresh_tokens_at_sandbox(&self) {
        self.sandbox_post("/_sandbox/revoke-refresh-tokens", serde_json::json!({}))
            .await;
    }

    pub async fn inject(&self, injection: serde_json::Value) {
        let answer = self.sandbox_post("/_sandbox/inject", injection).await;
        assert_eq!(answer["ok"], true);
    }
}

impl Browser {
    /// `url`, moved from the portal's public URL to its address (what a TLS proxy in front would do).
    pub fn at_portal(&self, url: &Url) -> Url {
        if url.origin() != self.public_url.origin() {
            return url.clone();
        }
        let mut moved = self.address.join(url.path()).expect("portal path");
        moved.set_query(url.query());
        moved
    }

    pub fn url(&self, path: &str) -> Url {
        self.address.join(path).expect("portal path")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request("GET", path).await
    }

    /// `path` asked with any method (`"DELETE"`, `"PUT"`, …), without a body.
    pub async fn request(&self, method: &str, path: &str) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        self.client
            .request(method, self.url(path))
            .send()
            .await
            .expect("portal answers")
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("portal answers")
    }

    /// The CSRF token of the signed-in session, read from the landing page's forms.
    pub async fn csrf_token(&self) -> String {
        let (_, body) = self.get_text("/").await;
        csrf_from(&body).expect("the page carries a CSRF token")
    }

    /// The session cookie's value, as the browser holds it.
    pub fn session_cookie(&self) -> Option<String> {
        let header = self.cookies.cookies(&self.address)?;
        let header = header.to_str().ok()?.to_owned();
        header
            .split("; ")
            .find_map(|pair| pair.strip_prefix(&format!("{SESSION_COOKIE}=")))
            .map(str::to_owned)
    }

    /// `GET /login`: the URL of Zoho's consent page the portal sends the browser to.
    pub async fn start_login(&self) -> Url {
        let response = self.get("/login").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "/login redirects");
        location(&response)
    }

    /// Shows the consent page and answers it as `email` with `decision` (`accept` or `deny`), as a browser
    /// submits the form (its hidden inputs repeat the query); returns where the sandbox redirects: the callback.
    pub async fn consent(&self, auth_url: &Url, email: &str, decision: &str) -> Url {
        let page = self
            .client
            .get(auth_url.clone())
            .send()
            .await
            .expect("sandbox");
        assert_eq!(page.status(), StatusCode::OK, "the consent page shows");
        let page = page.text().await.expect("consent page");
        assert!(
            page.contains("decision"),
            "the consent page has the buttons"
        );
        let mut form: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
        form.push(("email".into(), email.into()));
        form.push(("decision".into(), decision.into()));
        let answer = self
            .client
            .post(auth_url.join("/oauth/v2/auth").expect("url"))
            .form(&form)
            .send()
            .await
            .expect("sandbox");
        assert_eq!(
            answer.status(),
            StatusCode::FOUND,
            "the consent form redirects"
        );
        location(&answer)
    }

    /// Follows the callback URL into the portal (at its own address when the URL is the public one).
    pub async fn follow(&self, url: &Url) -> reqwest::Response {
        self.client
            .get(self.at_portal(url))
            .send()
            .await
            .expect("portal answers")
    }

    /// A full login as `email`; returns the callback URL the browser was sent to (it carries the code).
    pub async fn login_as(&self, email: &str) -> Url {
        let auth_url = self.start_login().await;
        let mut callback = self.consent(&auth_url, email, "accept").await;
        // One more round when the portal asks Zoho again with prompt=consent.
        for _ in 0..2 {
            let response = self.follow(&callback).await;
            assert_eq!(
                response.status(),
                StatusCode::SEE_OTHER,
                "the callback succeeds: {}",
                response.text().await.unwrap_or_default()
            );
            let next = location(&response);
            if next.path() == "/login" {
                let auth_url = self.start_login().await;
                callback = self.consent(&auth_url, email, "accept").await;
                continue;
            }
            assert_eq!(next.path(), "/", "a login lands on the start page");
            return callback;
        }
        panic!("the login did not finish in two rounds");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting; the runtime ends with the test anyway.
        let handle = self.portal.clone();
        drop(handle.stop(false));
    }
}

#[derive(Debug, serde::Deserialize, PartialEq, Eq, Default, Clone, Copy)]
pub struct Counters {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub throttled_refreshes: u64,
    pub revocations: u64,
    pub crm_calls: u64,
    pub unauthorized: u64,
    /// CRM calls the sandbox refused over its concurrency cap (or credits).
    pub crm_429: u64,
    /// The most CRM calls the sandbox had in flight at once.
    pub max_concurrent_crm: u64,
    /// The most searches the sandbox had in flight at once.
    pub max_concurrent_search: u64,
}

fn start_portal(
    (listener, metrics_listener): (TcpListener, Option<TcpListener>),
    address: &Url,
    sandbox_url: &Url,
    (store, sign_ins): (Arc<dyn TokenStore>, SignIns),
    session_key: &SessionKey,
    tuning: &Tuning,
) -> ServerHandle {
    let public_url = tuning.public_url.clone().unwrap_or(address.clone());
    let settings = PortalSettings {
        client: ClientCredentials {
            client_id: DEMO_CLIENT_ID.into(),
            client_secret: DEMO_CLIENT_SECRET.into(),
            redirect_url: public_url.join("/oauth/callback").expect("url"),
        },
        public_url,
        accounts_url: sandbox_url.clone(),
        scope: tuning.scope.into(),
        store,
        session_key: Some(session_key.clone()),
        refresh_leeway: tuning.leeway,
        http_timeout: tuning.http_timeout,
        workers: None,
        sign_ins,
        crm_limits: tuning.crm_limits,
        metrics_listener,
        pending_login_ttl: tuning.pending_login_ttl,
        body_read_timeout: tuning.body_read_timeout,
    };
    Portal::build(listener, settings)
        .expect("the portal builds")
        .spawn()
}

/// What `serve` opens for a store spec: the tokens, and the sign-ins beside them.
fn stores_for(spec: &StoreSpec) -> (Arc<dyn TokenStore>, SignIns) {
    let stores = open_portal_stores(spec, now_millis() / 1000).expect("the portal's stores");
    (stores.tokens, stores.sign_ins)
}

async fn bind_again(port: u16) -> TcpListener {
    for _ in 0..50 {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("port {port} did not come free");
}

/// The `Location` of a redirect, resolved against the request URL.
pub fn location(response: &reqwest::Response) -> Url {
    let value = response
        .headers()
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .expect("ascii Location");
    response.url().join(value).expect("a URL")
}

/// The first CSRF token in a page.
pub fn csrf_from(body: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = body.find(marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_owned())
}

/// The callback URL with one query parameter replaced (or removed when `value` is `None`).
pub fn with_param(url: &Url, name: &str, value: Option<&str>) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(key, _)| key != name)
        .collect();
    let mut changed = url.clone();
    {
        let mut query = changed.query_pairs_mut();
        query.clear();
        for (key, v) in &pairs {
            query.append_pair(key, v);
        }
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    changed
}

/// A query parameter's value.
pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Waits until the portal reads the store again: a write by another program (this test, here) is seen within
/// the time the portal trusts what it read (`TRUSTED_READ`), as in production.
pub async fn wait_out_trusted_reads() {
    tokio::time::sleep(zylker_portal::tokens::manager::TRUSTED_READ + Duration::from_millis(100))
        .await;
}

/// Asks `path` as `browser` and follows the `303` it must answer to the sign-in page: where it was sent (path
/// and query), and the sign-in page (which says why).
pub async fn sent_to_sign_in(browser: &Browser, path: &str) -> (String, String) {
    let response = browser.get(path).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{path} sends the browser to sign in"
    );
    let to = location(&response);
    assert_eq!(to.path(), "/sign-in", "{path}");
    let to = match to.query() {
        Some(query) => format!("{}?{query}", to.path()),
        None => to.path().to_owned(),
    };
    let (status, page) = browser.get_text(&to).await;
    assert_eq!(status, StatusCode::OK, "the sign-in page shows");
    (to, page)
}
