//! Headers on every response, the session cookie's attributes, CSRF, 404s, health.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, SET_COOKIE};

use crate::helpers::{PRIYA, TestApp};

fn assert_security_headers(response: &reqwest::Response) {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header(CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "CSP has {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(header(reqwest::header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(header(REFERRER_POLICY), "no-referrer");
    assert_eq!(header(reqwest::header::X_FRAME_OPTIONS), "DENY");
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    for path in [
        "/",
        "/crm/Leads",
        "/no/such/page",
        "/healthz",
        "/static/portal.css",
    ] {
        let response = app.get(path).await;
        assert_security_headers(&response);
    }
    let login = app.get("/login").await;
    assert_security_headers(&login);
}

#[tokio::test]
async fn pages_with_crm_data_are_not_cached() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    for path in ["/", "/crm/Leads", "/crm/Leads?page=2"] {
        let response = app.get(path).await;
        assert_eq!(
            response
                .headers()
                .get(CACHE_CONTROL)
                .expect("cache-control"),
            "no-store"
        );
    }
}

/// The `Set-Cookie` of the session cookie.
fn set_session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| {
            v.starts_with(&format!("{}=", zylker_portal::app::SESSION_COOKIE))
                || v.starts_with(&format!("{}=", zylker_portal::app::SECURE_SESSION_COOKIE))
        })
        .expect("the session cookie is set")
        .to_owned()
}

#[tokio::test]
async fn session_cookie_is_http_only_and_same_site_lax() {
    let app = TestApp::spawn().await;

    let response = app.get("/login").await;

    let cookie = set_session_cookie(&response);
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http public URL: not Secure"
    );
}

#[tokio::test]
async fn session_cookie_is_secure_when_the_public_url_is_https() {
    // A portal behind a TLS-terminating proxy: it listens on plain http, people reach it at https.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let public_url = url::Url::parse("https://portal.zylker.example").expect("url");
    let settings = zylker_portal::app::PortalSettings {
        client: zylker_portal::zoho::ClientCredentials {
            client_id: "1000.HTTPSPORTAL".into(),
            client_secret: "https-portal-secret".into(),
            redirect_url: public_url.join("/oauth/callback").expect("url"),
        },
        public_url,
        accounts_url: url::Url::parse("https://accounts.zoho.com").expect("url"),
        scope: "ZohoCRM.modules.ALL".into(),
        store: std::sync::Arc::new(zylker_portal::tokens::ListStore::new()),
        session_key: Some(zylker_portal::app::SessionKey::generate()),
        refresh_leeway: std::time::Duration::from_secs(60),
        http_timeout: std::time::Duration::from_secs(5),
        workers: Some(1),
        sign_ins: zylker_portal::tokens::SignIns::in_memory(),
        crm_limits: zylker_portal::zoho::CrmLimits::default(),
        metrics_listener: None,
        pending_login_ttl: zylker_portal::app::DEFAULT_PENDING_LOGIN_TTL,
        body_read_timeout: zylker_portal::app::DEFAULT_BODY_READ_TIMEOUT,
    };
    let portal = zylker_portal::app::Portal::build(listener, settings)
        .expect("builds")
        .spawn();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let response = client
        .get(format!("http://127.0.0.1:{port}/login"))
        .send()
        .await
        .expect("answered");

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = set_session_cookie(&response);
    assert!(cookie.starts_with("__Host-zylker_session="), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let location = response.headers()["location"].to_str().expect("location");
    assert!(
        location.contains("redirect_uri=https%3A%2F%2Fportal.zylker.example%2Foauth%2Fcallback"),
        "{location}"
    );
    portal.stop(true).await;
}

#[tokio::test]
async fn logout_without_a_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let missing = app.post_form("/logout", &[]).await;
    let wrong = app
        .post_form("/logout", &[("csrf_token", "not-the-token")])
        .await;
    let disconnect = app.post_form("/disconnect", &[]).await;

    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(disconnect.status(), StatusCode::FORBIDDEN);
    let (_, body) = app.get_text("/").await;
    assert!(body.contains("Priya Raman"), "still signed in");
    assert_eq!(app.stored_tokens().await.len(), 1, "still connected");
}

#[tokio::test]
async fn a_new_lead_without_a_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let response = app
        .post_form("/crm/Leads", &[("Last_Name", "Forged")])
        .await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_routes_get_the_404_page() {
    let app = TestApp::spawn().await;

    let (status, body) = app.get_text("/no/such/page").await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Page not found"));
    assert!(body.contains("Back to the start page"));
    assert!(
        body.contains("/static/portal.css"),
        "inside the normal layout"
    );
}

/// The methods an `Allow` header names, sorted.
fn allowed_methods(response: &reqwest::Response) -> Vec<String> {
    let mut methods: Vec<String> = response
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    methods.sort();
    methods
}

#[tokio::test]
async fn a_known_path_asked_with_the_wrong_method_gets_405_naming_the_allowed_ones() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    for (method, path, allowed) in [
        ("DELETE", "/crm/Leads", &["GET", "HEAD", "POST"][..]),
        ("GET", "/logout", &["POST"][..]),
        ("PUT", "/healthz", &["GET", "HEAD"][..]),
        ("POST", "/crm/Contacts", &["GET", "HEAD"][..]),
        ("POST", "/crm/Leads/new", &["GET", "HEAD"][..]),
        ("PATCH", "/admin/tokens", &["GET", "HEAD"][..]),
        ("GET", "/admin/tokens/1/delete", &["POST"][..]),
        ("GET", "/disconnect", &["POST"][..]),
    ] {
        let response = app.request(method, path).await;

        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(allowed_methods(&response), allowed, "{method} {path}");
        assert_security_headers(&response);
        let body = response.text().await.expect("body");
        assert!(
            body.contains("does not accept that kind of request"),
            "{method} {path}: {body}"
        );
        assert!(
            body.contains("/static/portal.css") && body.contains("Priya Raman"),
            "{method} {path}: inside the signed-in layout"
        );
    }
    assert_eq!(
        app.stored_tokens().await.len(),
        1,
        "nothing was disconnected"
    );
}

#[tokio::test]
async fn unknown_paths_stay_404_whatever_the_method() {
    let app = TestApp::spawn().await;

    for method in ["GET", "POST", "DELETE", "PUT"] {
        for path in ["/no/such/page", "/crm", "/crm/Leads/1/2", "/admin/tokens/1"] {
            let response = app.request(method, path).await;

            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert!(response.headers().get(reqwest::header::ALLOW).is_none());
        }
    }
}

#[tokio::test]
async fn healthz_says_ok_when_the_store_reads() {
    let app = TestApp::spawn().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn head_requests_get_the_get_answer_without_a_body() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();

    for path in ["/healthz", "/", "/static/portal.css"] {
        let response = client.head(app.url(path)).send().await.expect("portal");

        assert_eq!(response.status(), StatusCode::OK, "HEAD {path}");
        assert!(
            response.headers().contains_key("content-security-policy"),
            "HEAD {path} carries the security headers"
        );
        assert!(
            response.bytes().await.expect("body").is_empty(),
            "HEAD {path}"
        );
    }
}

#[tokio::test]
async fn pages_that_change_nothing_do_not_reissue_the_session_cookie() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.get("/").await; // takes the welcome flash and records the modules: a change

    for path in ["/", "/crm/Leads", "/crm/Leads?page=2"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers().get(SET_COOKIE).is_none(),
            "{path} re-sent the cookie"
        );
    }
}

#[tokio::test]
async fn every_signed_in_page_carries_sign_out_and_disconnect() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let (_, list) = app.get_text("/crm/Leads").await;
    let record = list
        .split("href=\"")
        .filter_map(|part| part.split('"').next())
        .find(|link| link.starts_with("/crm/Leads/") && !link.ends_with("/new"))
        .expect("a record link")
        .to_owned();

    for path in [
        "/",
        "/crm/Leads",
        record.as_str(),
        "/crm/Leads/new",
        "/admin/tokens",
        "/no/such/page",
    ] {
        let (_, body) = app.get_text(path).await;
        assert!(body.contains("action=\"/logout\""), "{path} has Sign out");
        assert!(
            body.contains("action=\"/disconnect\""),
            "{path} has Disconnect"
        );
        assert!(
            body.contains("name=\"csrf_token\""),
            "{path} forms carry the CSRF token"
        );
    }
}

#[tokio::test]
async fn an_oversized_form_gets_413_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;
    let padding = "x".repeat(zylker_portal::routes::extractor_configs::FORM_LIMIT + 1);

    let response = app
        .post_form(
            "/disconnect",
            &[("csrf_token", &csrf), ("padding", &padding)],
        )
        .await;

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        app.stored_token_of(PRIYA).await.is_some(),
        "not disconnected"
    );
}

#[tokio::test]
async fn a_form_that_is_not_urlencoded_gets_415_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;

    let response = app
        .client
        .post(app.url("/disconnect"))
        .json(&serde_json::json!({ "csrf_token": csrf }))
        .send()
        .await
        .expect("portal answers");

    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        app.stored_token_of(PRIYA).await.is_some(),
        "not disconnected"
    );
}

#[tokio::test]
async fn the_stylesheet_is_served_from_the_binary_with_a_validator() {
    let app = TestApp::spawn().await;

    let response = app.get("/static/portal.css").await;
    let content_type = response.headers().get("content-type").cloned();
    let cache = response.headers().get(CACHE_CONTROL).cloned();
    let etag = response.headers().get("etag").cloned().expect("an ETag");
    let body = response.text().await.expect("body");
    let again = app
        .client
        .get(app.url("/static/portal.css"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("portal answers");

    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/css; charset=utf-8")
    );
    assert!(cache.is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("max-age"))));
    assert_eq!(body, include_str!("../../static/portal.css"));
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        app.get("/static/nothing.css").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A store whose reads hang (each for `HANG`) once `hang` is set, as a database that accepts connections and
/// never answers does; it counts the reads that started.
struct HangingStore {
    inner: zylker_portal::tokens::ListStore,
    hang: std::sync::atomic::AtomicBool,
    reads: std::sync::atomic::AtomicUsize,
}

const HANG: std::time::Duration = std::time::Duration::from_secs(10);

impl zylker_portal::tokens::TokenStore for HangingStore {
    fn find_token(
        &self,
        partial: &zylker_portal::tokens::OAuthToken,
    ) -> Result<Option<zylker_portal::tokens::OAuthToken>, zylker_portal::tokens::StoreError> {
        self.inner.find_token(partial)
    }

    fn save_token(
        &self,
        token: &mut zylker_portal::tokens::OAuthToken,
    ) -> Result<(), zylker_portal::tokens::StoreError> {
        self.inner.save_token(token)
    }

    fn delete_token(&self, id: &str) -> Result<(), zylker_portal::tokens::StoreError> {
        self.inner.delete_token(id)
    }

    fn get_tokens(
        &self,
    ) -> Result<Vec<zylker_portal::tokens::OAuthToken>, zylker_portal::tokens::StoreError> {
        self.inner.get_tokens()
    }

    fn delete_tokens(&self) -> Result<(), zylker_portal::tokens::StoreError> {
        self.inner.delete_tokens()
    }

    fn find_token_by_id(
        &self,
        id: &str,
    ) -> Result<Option<zylker_portal::tokens::OAuthToken>, zylker_portal::tokens::StoreError> {
        use std::sync::atomic::Ordering;
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            std::thread::sleep(HANG);
        }
        self.inner.find_token_by_id(id)
    }
}

#[tokio::test]
async fn healthz_on_a_hung_store_says_only_unavailable_within_a_second_and_reads_it_once() {
    use std::sync::atomic::Ordering;
    let store = std::sync::Arc::new(HangingStore {
        inner: zylker_portal::tokens::ListStore::default(),
        hang: false.into(),
        reads: 0.into(),
    });
    let app = TestApp::spawn_with(crate::helpers::TestAppOptions {
        store: crate::helpers::StoreChoice::Given(store.clone()),
        metrics: true,
        ..crate::helpers::TestAppOptions::default()
    })
    .await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    store.hang.store(true, Ordering::SeqCst);
    let reads_before = store.reads.load(Ordering::SeqCst);

    // Twenty load balancers ask at once.
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..20).map(|_| async {
        let response = app.get("/healthz").await;
        (response.status(), response.text().await.expect("body"))
    }))
    .await;
    let took = started.elapsed();

    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(body, serde_json::json!({"status": "unavailable"}));
    }
    // The probe gives up after 800 ms; the store would have answered after 10 s.
    assert!(
        took < std::time::Duration::from_secs(4),
        "twenty checks answered in {took:?}, not after the store's {HANG:?}"
    );
    assert_eq!(
        store.reads.load(Ordering::SeqCst) - reads_before,
        1,
        "checks that came while the store was being read waited for that read"
    );
    let metrics_health = app
        .metrics_url
        .clone()
        .expect("metrics")
        .join("/healthz")
        .expect("url");
    let response = reqwest::get(metrics_health)
        .await
        .expect("metrics listener");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["store"]
            .as_str()
            .is_some_and(|reason| reason.contains("did not answer a read within 800 ms")),
        "the metrics listener says why: {body}"
    );
}
